"""Builds and caches what the VM lane boots: a host wheelhouse and a bookworm image per kernel.

Everything cached lives under the cache directory (not the repository), in directories named by a key
of their inputs, built under a temporary name and renamed when complete: an interrupted build is never
mistaken for a cached one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.vm import plan

HOST_PYTHON = "/usr/bin/python3"  # Debian's: the same 3.11 as the guest's, so the wheels fit
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def log(message: str) -> None:
    print(f"vmtest: {message}", file=sys.stderr, flush=True)


def run(argv: list[str], **kwargs: object) -> None:
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


def quiet(argv: list[str]) -> None:
    """Run a build step; its output is shown only when it fails."""
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"vmtest: {' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def requirements(pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """The project's runtime and test dependencies, as pyproject.toml states them."""
    project = tomllib.loads(pyproject.read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["test"]]


def host_venv(cache: Path) -> Path:
    """A small venv of the host's Debian Python with pip, setuptools and wheel, for `pip wheel`."""
    version = subprocess.run(
        [HOST_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if version != "3.11":
        raise SystemExit(f"vmtest: {HOST_PYTHON} is Python {version}; the bookworm guest's is 3.11")
    # The project's wheel is built in it without isolation: it holds pyproject.toml's build requirements.
    build_requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    venv = cache / f"hostvenv-3.11-{plan.digest(build_requires)}"
    if not (venv / "ok").exists():
        shutil.rmtree(venv, ignore_errors=True)
        run([HOST_PYTHON, "-m", "venv", str(venv)])
        quiet([str(venv / "bin/pip"), "install", "-q", "--upgrade", "pip", "wheel", *build_requires])
        (venv / "ok").touch()
    return venv


def ensure_wheelhouse(cache: Path, venv: Path) -> Path:
    reqs = requirements()
    path = cache / f"wheels-{plan.wheelhouse_key('3.11', reqs)}"
    if path.exists():
        return path
    log(f"building the wheelhouse {path}")
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    quiet([str(venv / "bin/pip"), "wheel", "-q", "--wheel-dir", str(tmp), *reqs])
    (tmp / "requirements.txt").write_text("\n".join(reqs) + "\n")
    tmp.rename(path)
    return path


# Commands run in the image's chroot get a clean environment: the host's PIP_* settings (find-links,
# indexes) must not leak into the guest's offline install.
_CHROOT = 'env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root chroot "$1"'


def image_hooks(spec: plan.KernelSpec) -> list[str]:
    """mmdebstrap's customize hooks: no host paths in them (those come from the environment,
    VMTEST_HERE and VMTEST_WHEELS), so the cache key is the same in every checkout."""
    hooks = [
        'cp "$VMTEST_HERE/guest-init.sh" "$1/vmtest-init" && chmod 755 "$1/vmtest-init"',
        'mkdir -p "$1/tmp/wheels" && cp "$VMTEST_WHEELS"/* "$1/tmp/wheels/"',
        f"{_CHROOT} python3 -m venv /opt/venv",
        f"{_CHROOT} /opt/venv/bin/pip install -q --no-index --find-links /tmp/wheels"
        " -r /tmp/wheels/requirements.txt",
        'rm -rf "$1/tmp/wheels"',
    ]
    if spec.foreign:
        # Double quotes only: mmdebstrap runs each hook as sh -c '...'. A one-line-format list must
        # not be named *.sources, which apt reads as deb822.
        sources = " ".join(f'"{line}"' for line in plan.apt_sources(spec.suite))
        hooks += [
            'cp "$VMTEST_HERE/foreign-kernel.sh" "$1/tmp/foreign-kernel.sh"',
            f'printf "%s\\n" {sources} >"$1/tmp/kernel.list"',
            f"{_CHROOT} sh /tmp/foreign-kernel.sh /tmp/kernel.list {spec.package}",
            'rm -f "$1/tmp/foreign-kernel.sh" "$1/tmp/kernel.list"',
        ]
    hooks.append('rm -rf "$1/var/cache/apt/archives"/*.deb "$1/var/lib/apt/lists"/*_Packages')
    return hooks


def image_packages(spec: plan.KernelSpec) -> list[str]:
    # zstd: newer kernels' initramfs is zstd-compressed (sid's accepts nothing else); bookworm's own
    # kernel image does not need it, and its image key stays as it was.
    return [*plan.GUEST_PACKAGES, *(["zstd"] if spec.foreign else [spec.package])]


def _mmdebstrap_argv(spec: plan.KernelSpec, rootdir: Path) -> list[str]:
    packages = image_packages(spec)
    hooks = image_hooks(spec)
    argv = [
        "mmdebstrap",
        "--mode=root",
        "--variant=apt",
        "--aptopt=APT::Install-Recommends false",
        # Documentation and translations are most of a minimal system's size and nothing here reads them.
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        f"--include={','.join(packages)}",
        *(f"--customize-hook={hook}" for hook in hooks),
        plan.BASE_SUITE,
        str(rootdir),
        *plan.apt_sources(plan.BASE_SUITE),
    ]
    return argv


def ensure_image(cache: Path, spec: plan.KernelSpec, wheels: Path, rebuild: bool = False) -> Path:
    """The cached image for a kernel: root.img (ext4), vmlinuz, initrd.img and kernel-release."""
    names = ["guest-init.sh", *(["foreign-kernel.sh"] if spec.foreign else [])]
    scripts = [(HERE / name).read_text() for name in names]
    key = plan.image_key(spec, [*image_packages(spec), *image_hooks(spec), *scripts], wheels.name)
    path = cache / plan.image_dir_name(spec, key)
    # One builder per image at a time: a second one would delete the first one's rootfs while
    # mmdebstrap has /proc and /dev mounted in it. A dead builder's mounts die with its namespace.
    with open(cache / f"{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if rebuild:
            shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            _build_image(cache, spec, wheels, path)
    return path


def _build_image(cache: Path, spec: plan.KernelSpec, wheels: Path, path: Path) -> None:
    log(f"building the image {path} (kernel {spec})")
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rootdir = tmp / "rootfs"
    env = {**os.environ, "VMTEST_HERE": str(HERE), "VMTEST_WHEELS": str(wheels)}
    with open(tmp / "build.log", "w") as buildlog:
        try:
            run(_mmdebstrap_argv(spec, rootdir), stdout=buildlog, stderr=subprocess.STDOUT, env=env)
        except subprocess.CalledProcessError as e:
            tail = (tmp / "build.log").read_text().splitlines()[-30:]
            raise SystemExit(
                f"vmtest: building the image for {spec} failed ({e.returncode}):\n" + "\n".join(tail)
            ) from None
    kernels = sorted((rootdir / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise SystemExit(f"vmtest: {spec}: expected one /boot/vmlinuz-* in the image, found {kernels}")
    release = kernels[0].name.removeprefix("vmlinuz-")
    initrd = rootdir / "boot" / f"initrd.img-{release}"
    if not initrd.exists():
        raise SystemExit(f"vmtest: {spec}: the image has no {initrd.name} (initramfs-tools did not run)")
    shutil.copy2(kernels[0], tmp / "vmlinuz")
    shutil.copy2(initrd, tmp / "initrd.img")
    (tmp / "kernel-release").write_text(release + "\n")
    size = plan.image_size_mb(_tree_mb(rootdir))
    quiet(["mkfs.ext4", "-q", "-F", "-L", "vmroot", "-d", str(rootdir), str(tmp / "root.img"), f"{size}M"])
    shutil.rmtree(rootdir)
    tmp.rename(path)
    # Older images of the same kernel argument are never used again: their key is gone.
    for stale in cache.glob(plan.image_dir_name(spec, "?" * 16)):
        if stale != path and not stale.name.endswith(".tmp"):
            log(f"removing the superseded image {stale}")
            shutil.rmtree(stale)


def _tree_mb(path: Path) -> int:
    out = subprocess.run(["du", "-sm", str(path)], check=True, capture_output=True, text=True).stdout
    return int(out.split()[0])
