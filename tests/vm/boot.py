"""One run of the VM lane: the per-run disk with this tree, then qemu until the guest's exit marker.

The guest's console is echoed line by line and kept in the run's console.log; a guest that does not
boot, or does not finish, within its bound is killed and the run fails saying which.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.vm import plan
from tests.vm.build import REPO, log, quiet

# KVM was seen to hang at boot on this kind of host: a guest that has not printed its boot marker
# by then is taken as a hung KVM and the run starts again under TCG (a TCG boot takes ~6-20 s).
KVM_BOOT_SECONDS = 45.0


@dataclass(frozen=True)
class Outcome:
    code: int | None  # pytest's exit code; None when the guest never said
    booted: bool  # the guest's init printed its boot marker
    accel: str
    seconds: float
    reason: str  # why there is no code, or "" when there is
    console: Path


def tree_files(repo: Path = REPO) -> list[str]:
    """This checkout's files as git sees them: tracked and untracked, not ignored, still present."""
    out = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout
    return sorted({f for f in out.decode().split("\0") if f and (repo / f).is_file()})


def make_run_disk(workdir: Path, venv: Path, pytest_args: list[str]) -> Path:
    """run.img: the tree (src/), its wheel (wheels/), the guest script and the pytest command."""
    stage = workdir / "stage"
    src = stage / "src"
    for name in tree_files():
        dest = src / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest)
    # The wheel is built from a copy: an in-tree build would leave build/ and *.egg-info behind.
    build = workdir / "build"
    shutil.copytree(src, build)
    pip = str(venv / "bin/pip")
    quiet([pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(stage / "wheels"), str(build)])
    shutil.rmtree(build)
    shutil.copy2(Path(__file__).with_name("guest-run.sh"), stage / "guest-run.sh")
    (stage / "pytest-command").write_text(plan.guest_command(pytest_args) + "\n")
    img = workdir / "run.img"
    size = plan.image_size_mb(_tree_mb(stage))
    quiet(["mkfs.ext4", "-q", "-F", "-L", "vmrun", "-d", str(stage), str(img), f"{size}M"])
    shutil.rmtree(stage)
    return img


def _tree_mb(path: Path) -> int:
    out = subprocess.run(["du", "-sm", str(path)], check=True, capture_output=True, text=True).stdout
    return int(out.split()[0])


def kvm_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def boot(image: Path, run_img: Path, accel: str, timeout: float, memory_mb: int, cpus: int) -> Outcome:
    """Boot once. With accel "auto", KVM first when /dev/kvm is usable, TCG if KVM does not boot."""
    if accel == "auto":
        if kvm_usable():
            first = _boot_once(image, run_img, "kvm", timeout, memory_mb, cpus, boot_timeout=KVM_BOOT_SECONDS)
            if first.booted:
                return first
            log(f"KVM did not boot ({first.reason or 'no boot marker'}); falling back to TCG")
        accel = "tcg"
    return _boot_once(image, run_img, accel, timeout, memory_mb, cpus, boot_timeout=None)


def _boot_once(
    image: Path,
    run_img: Path,
    accel: str,
    timeout: float,
    memory_mb: int,
    cpus: int,
    boot_timeout: float | None,
) -> Outcome:
    argv = plan.qemu_argv(
        accel,
        str(image / "vmlinuz"),
        str(image / "initrd.img"),
        str(image / "root.img"),
        str(run_img),
        memory_mb,
        cpus,
        "/vmtest-init",
    )
    console = run_img.with_name(f"console-{accel}.log")
    log(f"booting {image.name} under {accel.upper()} (timeout {timeout:.0f} s): {' '.join(argv)}")
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: queue.Queue[bytes | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc, lines), daemon=True).start()
    code: int | None = None
    booted = False
    reason = ""
    with open(console, "w") as out:
        while True:
            elapsed = time.monotonic() - start
            limit = boot_timeout if (boot_timeout is not None and not booted) else timeout
            try:
                raw = lines.get(timeout=max(0.1, limit - elapsed))
            except queue.Empty:
                reason = (
                    f"no boot marker after {limit:.0f} s"
                    if not booted
                    else f"no exit marker after {timeout:.0f} s"
                )
                break
            if raw is None:
                reason = f"qemu exited ({proc.wait()}) before the exit marker"
                break
            line = raw.decode(errors="replace").rstrip("\r\n")
            out.write(line + "\n")
            print(line, flush=True)
            booted = booted or plan.BOOT_MARKER in line
            code = plan.exit_code(line)
            if code is not None:
                break
    if proc.poll() is None:
        if code is not None:
            try:  # the guest powers itself off right after the marker
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        else:
            proc.kill()
        proc.wait()
    return Outcome(code, booted, accel, time.monotonic() - start, reason, console)


def _pump(proc: subprocess.Popen[bytes], lines: queue.Queue[bytes | None]) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        lines.put(raw)
    lines.put(None)
