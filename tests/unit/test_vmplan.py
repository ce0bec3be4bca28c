"""The VM lane's pure parts (tests/vm/plan.py): kernel arguments, cache keys, qemu's command line,
and reading the guest's console."""

import pytest

from tests.vm import plan


@pytest.mark.parametrize(
    ("arg", "suite", "package", "foreign"),
    [
        ("linux-image-cloud-amd64", "bookworm", "linux-image-cloud-amd64", False),
        ("bookworm:linux-image-amd64", "bookworm", "linux-image-amd64", False),
        ("trixie:linux-image-cloud-amd64", "trixie", "linux-image-cloud-amd64", True),
        ("bookworm-backports:linux-image-cloud-amd64", "bookworm-backports", "linux-image-cloud-amd64", True),
        ("bullseye:linux-image-5.10.0-30-cloud-amd64", "bullseye", "linux-image-5.10.0-30-cloud-amd64", True),
    ],
)
def test_kernel_arguments(arg, suite, package, foreign):
    spec = plan.parse_kernel(arg)
    assert (spec.suite, spec.package, spec.foreign) == (suite, package, foreign)
    assert plan.parse_kernel(str(spec)) == spec


@pytest.mark.parametrize(
    ("arg", "says"),
    [
        ("Trixie:linux-image-amd64", "suite 'Trixie'"),
        ("trixie:", "'' is not a Debian package name"),
        ("linux image", "'linux image' is not a Debian package name"),
        ("a:b:linux-image-amd64", "suite 'a:b'"),
    ],
)
def test_bad_kernel_arguments_name_the_part(arg, says):
    with pytest.raises(ValueError, match=f"kernel {arg!r}: .*{says}".replace("(", r"\(")):
        plan.parse_kernel(arg)


def test_backports_sources_include_their_base_suite():
    assert plan.apt_sources("bookworm-backports") == [
        f"deb {plan.MIRROR} bookworm main",
        f"deb {plan.MIRROR} bookworm-backports main",
    ]
    assert f"deb {plan.SECURITY_MIRROR} bullseye-security main" in plan.apt_sources("bullseye")
    assert plan.apt_sources("sid") == [f"deb {plan.MIRROR} sid main"]


def test_image_key_changes_with_every_input():
    spec = plan.parse_kernel("linux-image-cloud-amd64")
    base = plan.image_key(spec, ["nftables", "init v1"], "wheels-1")
    assert plan.image_key(spec, ["nftables", "init v1"], "wheels-1") == base
    assert (
        plan.image_key(
            plan.parse_kernel("trixie:linux-image-cloud-amd64"), ["nftables", "init v1"], "wheels-1"
        )
        != base
    )
    assert plan.image_key(spec, ["nftables", "init v2"], "wheels-1") != base
    assert plan.image_key(spec, ["nftables", "init v1"], "wheels-2") != base
    assert plan.image_dir_name(plan.parse_kernel("trixie:linux-image-cloud-amd64"), "k") == (
        "image-trixie-linux-image-cloud-amd64-k"
    )


def test_wheelhouse_key_ignores_requirement_order():
    assert plan.wheelhouse_key("3.11", ["a", "b"]) == plan.wheelhouse_key("3.11", ["b", "a"])
    assert plan.wheelhouse_key("3.11", ["a"]) != plan.wheelhouse_key("3.12", ["a"])


def test_qemu_argv_accelerators_and_disks():
    tcg = plan.qemu_argv("tcg", "vmlinuz", "initrd.img", "root.img", "run.img", 2048, 2, "/vmtest-init")
    assert tcg[tcg.index("-accel") + 1] == "tcg,thread=multi" and "-cpu" not in tcg
    assert "file=root.img,if=virtio,format=raw,snapshot=on" in tcg
    assert "file=run.img,if=virtio,format=raw,readonly=on" in tcg
    assert "init=/vmtest-init" in tcg[tcg.index("-append") + 1]
    assert "-no-reboot" in tcg and tcg[tcg.index("-smp") + 1] == "2" and tcg[tcg.index("-m") + 1] == "2048"
    kvm = plan.qemu_argv("kvm", "vmlinuz", "initrd.img", "root.img", "run.img", 2048, 2, "/vmtest-init")
    assert kvm[kvm.index("-accel") + 1] == "kvm"
    with pytest.raises(ValueError, match="--accel: 'hvf' is not kvm or tcg"):
        plan.qemu_argv("hvf", "v", "i", "r", "u", 1, 1, "/i")


def test_console_reading():
    assert plan.exit_code("VMTEST-EXIT=0") == 0
    assert plan.exit_code("[  12.3] VMTEST-EXIT=1\r") == 1
    assert plan.exit_code("echo VMTEST-EXIT=$rc") is None
    lines = [
        "guest: kernel 6.1.0-57-cloud-amd64, nftables v1.0.6 (Lester Gooch #5), Python 3.11.2, 2 cpus",
        "F.. [100%]",
        "FAILED tests/e2e/test_never_dark.py::test_x[A] - AssertionError",
        "1 failed, 2 passed in 73.21s (0:01:13)",
        "VMTEST-EXIT=1",
    ]
    assert plan.pytest_summary(lines) == "1 failed, 2 passed"
    assert plan.pytest_summary(["===== 3 passed, 1 skipped in 5.00s ====="]) == "3 passed, 1 skipped"
    assert plan.pytest_summary(["no tests ran in 0.01s"]) is None
    assert plan.guest_kernel(lines) == "6.1.0-57-cloud-amd64"


def test_guest_command_is_one_quoted_line():
    assert plan.guest_command(["-k", "a and b", "tests/x.py"]) == "python -m pytest -k 'a and b' tests/x.py"


def test_summary_read_through_colour_codes():
    line = "\x1b[31m\x1b[1m3 failed\x1b[0m, \x1b[31m\x1b[1m1 error\x1b[0m\x1b[31m in 205.70s (0:03:25)\x1b[0m"
    assert plan.pytest_summary([line]) == "3 failed, 1 error"
