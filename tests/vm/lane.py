"""scripts/vmtest: boot a Debian kernel under qemu and run the end-to-end tests inside it.

    scripts/vmtest KERNEL [--accel auto|kvm|tcg] [--rebuild] [-- PYTEST-ARGS]
    scripts/vmtest --matrix

KERNEL is a bookworm package (linux-image-cloud-amd64) or SUITE:PACKAGE (trixie:linux-image-cloud-amd64).
The exit code is pytest's in the guest (a matrix: 0 only when every kernel passed); 124 when the guest
hung or never reported. docs/kernels.md has the details.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.vm import plan
from tests.vm.boot import boot, make_run_disk
from tests.vm.build import ensure_image, ensure_wheelhouse, host_venv, log

CACHE = Path(os.environ.get("VMTEST_CACHE", "/var/cache/fqdn-policy-vmtest"))
HUNG = 124
# pytest-timeout per test inside the guest: TCG runs Python some 5-10x slower than the host, and
# the suite's 120 s is sized for the host. A hung test still fails, just later.
GUEST_TEST_TIMEOUT = 900


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    argv = list(argv)
    pytest_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, pytest_args = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(prog="scripts/vmtest", description=__doc__.split("\n\n")[0])
    p.add_argument("kernel", nargs="?", help="PACKAGE or SUITE:PACKAGE, e.g. linux-image-cloud-amd64")
    p.add_argument(
        "--matrix", action="store_true", help=f"every kernel of the matrix: {', '.join(plan.MATRIX)}"
    )
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"], default=os.environ.get("VMTEST_ACCEL", "auto"))
    p.add_argument("--rebuild", action="store_true", help="build the kernel's image again even if cached")
    p.add_argument("--build-only", action="store_true", help="build (or find) the images, boot nothing")
    p.add_argument(
        "--timeout", type=float, default=2700, help="seconds before a guest is killed (default 2700)"
    )
    p.add_argument("--memory", type=int, default=2048, help="guest memory in MiB (default 2048)")
    p.add_argument("--cpus", type=int, default=2, help="guest CPUs (default 2)")
    args = p.parse_args(argv)
    if bool(args.kernel) == args.matrix:
        p.error("give one KERNEL or --matrix")
    return args, pytest_args


def pytest_argv(extra: list[str]) -> list[str]:
    # -v: one line per test as it ends, so a slow guest shows progress on the console.
    base = ["-p", "no:cacheprovider", "--color=no", f"--timeout={GUEST_TEST_TIMEOUT}", "-rfE"]
    return [*base, *(extra or ["-v", *plan.DEFAULT_TESTS])]


def run_kernel(kernel: str, args: argparse.Namespace, pytest_args: list[str]) -> tuple[int, str]:
    try:
        spec = plan.parse_kernel(kernel)
    except ValueError as e:
        raise SystemExit(f"vmtest: {e}") from None
    started = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    venv = host_venv(CACHE)
    image = ensure_image(CACHE, spec, ensure_wheelhouse(CACHE, venv), rebuild=args.rebuild)
    built = time.monotonic() - started
    if args.build_only:
        line = f"{spec}: image {image} ({(image / 'kernel-release').read_text().strip()}), {built:.0f} s"
        log(line)
        return 0, line
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=CACHE))
    try:
        run_img = make_run_disk(workdir, venv, pytest_argv(pytest_args))
        outcome = boot(image, run_img, args.accel, args.timeout, args.memory, args.cpus)
        lines = outcome.console.read_text(errors="replace").splitlines()
        summary = plan.pytest_summary(lines) or "no pytest summary"
        release = plan.guest_kernel(lines) or (image / "kernel-release").read_text().strip()
        kept = CACHE / "last-console" / f"{image.name}.log"
        kept.parent.mkdir(exist_ok=True)
        shutil.copy2(outcome.console, kept)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    code = outcome.code if outcome.code is not None else HUNG
    why = f" ({outcome.reason})" if outcome.reason else ""
    line = (
        f"{spec} ({release}): {summary}, exit {code}{why}; {outcome.accel.upper()}, "
        f"image {built:.0f} s, guest {outcome.seconds:.0f} s; console: {kept}"
    )
    log(line)
    return code, line


def main(argv: Sequence[str] | None = None) -> int:
    args, pytest_args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        raise SystemExit("vmtest: run as root (mmdebstrap --mode=root, and the guest's lab needs root)")
    kernels = list(plan.MATRIX) if args.matrix else [args.kernel]
    results = [run_kernel(k, args, pytest_args) for k in kernels]
    if len(results) > 1:
        print("\nvmtest matrix:", *(f"  {line}" for _, line in results), sep="\n", flush=True)
    failed = [code for code, _ in results if code != 0]
    return failed[0] if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
