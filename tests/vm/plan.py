"""What the VM test lane builds and boots, as plain data: no I/O here (scripts/vmtest does that).

A kernel argument is `PACKAGE` (a bookworm package, installed normally) or `SUITE:PACKAGE` (only the
kernel's .deb files are taken from SUITE; the userland stays bookworm's, whose Python 3.11 matches the
wheelhouse). Images are cached under a key of everything that goes into them.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

BASE_SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
# Bumped when the way an image is built changes in a way its inputs do not show.
IMAGE_FORMAT = 1

# The guest's userland: what the lab and the selected tests call (nft, ip/ss/tc, conntrack, sysctl,
# dig, mount, modinfo/rmmod), python3 for the venv, initramfs-tools and kmod to boot a kernel and
# load its nftables modules.
GUEST_PACKAGES: tuple[str, ...] = (
    "initramfs-tools",
    "kmod",
    "nftables",
    "libnftables1",
    "iproute2",
    "conntrack",
    "dnsutils",
    "procps",
    "mount",
    # /etc/protocols and /etc/services: libnftables resolves names such as "tcp" and "ipv6-icmp"
    # through them (without it: "Could not resolve protocol name"); every real Debian node has it.
    "netbase",
    "python3",
    "python3-venv",
    # tests/e2e/test_sni.py's second TLS client (curl --resolve)
    "curl",
)

# The tests the lane runs by default: the article, the conformance table, lifecycle, restart, and
# the continuous-resolution test that catches a refresh which the kernel silently ignores; and the
# kernel-specific tests of the refresh strategies and of a missing feature (which only a guest may
# run: it takes a module away from the kernel); and NFQUEUE, whose queue statement the development
# host's kernel lacks, and the verify-sni datapath built on it.
DEFAULT_TESTS: tuple[str, ...] = (
    "tests/e2e/test_article.py",
    "tests/conformance",
    "tests/e2e/test_lifecycle.py",
    "tests/e2e/test_restart.py",
    "tests/e2e/test_never_dark.py",
    "tests/e2e/test_kernel_features.py",
    "tests/e2e/test_refresh.py",
    "tests/unit/test_refresh_kernel.py",
    "tests/e2e/test_nfqueue.py",
    "tests/unit/test_nfqueuesocket.py",
    "tests/e2e/test_sni.py",
)

# Debian 12's stock kernel; the newest Debian offers; the oldest LTS Debian still serves.
MATRIX: tuple[str, ...] = (
    "linux-image-cloud-amd64",
    "sid:linux-image-cloud-amd64",
    "bullseye:linux-image-cloud-amd64",
)

BOOT_MARKER = "VMTEST-BOOTED"
EXIT_MARKER = "VMTEST-EXIT="
_EXIT_RE = re.compile(rf"{re.escape(EXIT_MARKER)}(\d+)")
_SUITE_RE = re.compile(r"^[a-z]+(-[a-z]+)?$")
_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


@dataclass(frozen=True)
class KernelSpec:
    suite: str
    package: str

    @property
    def foreign(self) -> bool:
        """True when only the kernel comes from another suite than the userland's."""
        return self.suite != BASE_SUITE

    def __str__(self) -> str:
        return self.package if not self.foreign else f"{self.suite}:{self.package}"


def parse_kernel(arg: str) -> KernelSpec:
    suite, sep, package = arg.rpartition(":")
    suite = suite if sep else BASE_SUITE
    if not _SUITE_RE.match(suite):
        raise ValueError(
            f"kernel {arg!r}: suite {suite!r} is not a Debian suite name (e.g. trixie, bullseye)"
        )
    if not _PACKAGE_RE.match(package):
        raise ValueError(f"kernel {arg!r}: {package!r} is not a Debian package name")
    return KernelSpec(suite, package)


def apt_sources(suite: str) -> list[str]:
    """One-line apt sources for a suite: its main archive and, for a stable release, its security
    archive (where a released suite's kernel updates go)."""
    lines = [f"deb {MIRROR} {suite} main"]
    if suite in ("bookworm", "trixie"):
        lines.append(f"deb {SECURITY_MIRROR} {suite}-security main")
    elif suite == "bullseye":
        lines.append(f"deb {SECURITY_MIRROR} bullseye-security main")
    if suite.endswith("-backports"):
        base = suite.removesuffix("-backports")
        lines.insert(0, f"deb {MIRROR} {base} main")
    return lines


def digest(parts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def wheelhouse_key(python_version: str, requirements: Sequence[str]) -> str:
    return digest([python_version, *sorted(requirements)])


def image_key(spec: KernelSpec, recipe: Sequence[str], wheels: str) -> str:
    """The cache key of an image: its kernel, its recipe (packages, build hooks, the scripts it holds)
    and its wheelhouse."""
    return digest([str(IMAGE_FORMAT), str(spec), *recipe, wheels])


def image_dir_name(spec: KernelSpec, key: str) -> str:
    slug = re.sub(r"[^a-z0-9.-]+", "-", str(spec))
    return f"image-{slug}-{key}"


def guest_command(pytest_args: Sequence[str]) -> str:
    """The pytest command line the guest runs, as one shell-quoted line for its run disk."""
    return shlex.join(["python", "-m", "pytest", *pytest_args])


def kernel_append(init: str) -> str:
    # panic=-1 with -no-reboot: a kernel panic ends qemu at once instead of hanging the lane.
    return f"console=ttyS0 root=/dev/vda rw init={init} panic=-1 quiet loglevel=4"


def qemu_argv(
    accel: str, kernel: str, initrd: str, root_img: str, run_img: str, memory_mb: int, cpus: int, init: str
) -> list[str]:
    if accel not in ("kvm", "tcg"):
        raise ValueError(f"--accel: {accel!r} is not kvm or tcg")
    accel_args = ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg,thread=multi"]
    return [
        "qemu-system-x86_64",
        *accel_args,
        "-smp",
        str(cpus),
        "-m",
        str(memory_mb),
        "-nodefaults",
        "-no-reboot",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-kernel",
        kernel,
        "-initrd",
        initrd,
        "-append",
        kernel_append(init),
        # snapshot=on: the guest's writes go to a throw-away overlay, so the cached image stays pristine.
        "-drive",
        f"file={root_img},if=virtio,format=raw,snapshot=on",
        "-drive",
        f"file={run_img},if=virtio,format=raw,readonly=on",
        "-nic",
        "none",
    ]


def exit_code(console_line: str) -> int | None:
    """The guest's pytest exit code if this console line is the final marker."""
    m = _EXIT_RE.search(console_line)
    return int(m.group(1)) if m else None


def image_size_mb(tree_mb: int) -> int:
    """Room for the tree plus what the tests write (the overlay takes writes, but ext4 needs free space)."""
    return tree_mb + tree_mb // 2 + 256


_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
_SUMMARY_RE = re.compile(
    r"^=*\s*(\d+ (passed|failed|errors?|skipped|xfailed|xpassed|deselected)\b.*) in [\d.]+s"
)
_GUEST_RE = re.compile(r"^guest: kernel (\S+),")


def pytest_summary(lines: Iterable[str]) -> str | None:
    """pytest's closing counts ("12 passed, 1 failed") from the console, the last one seen."""
    found = None
    for line in lines:
        m = _SUMMARY_RE.match(_ANSI_RE.sub("", line).strip())
        if m:
            found = m.group(1)
    return found


def guest_kernel(lines: Iterable[str]) -> str | None:
    """The kernel release the guest reported (`uname -r`)."""
    for line in lines:
        m = _GUEST_RE.match(line.strip())
        if m:
            return m.group(1)
    return None
