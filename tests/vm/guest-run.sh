#!/bin/sh
# The VM lane's per-run script, from the run disk (/mnt/run): install this tree's wheel into the
# image's venv (no network: --no-index --no-deps), run pytest as root, print the exit marker.
set -u
export PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root PYTHONUNBUFFERED=1
# The lab's patience for its own processes (tests/lab/slowdown.py): under TCG a Python process
# starts some 5-10x slower than on the host. Bounds the tests assert stay as written.
export FQDN_LAB_SLOWDOWN="${FQDN_LAB_SLOWDOWN:-6}"
# Tests that change the kernel itself (tests/e2e/test_kernel_features.py) run only where this is set.
export FQDN_POLICY_VM_GUEST=1
# Without udev nothing loads the entropy device's driver; early getrandom() may wait for it.
modprobe -q virtio_rng 2>/dev/null || true
ip link set lo up
cp -a /mnt/run/src /tmp/src
cd /tmp/src || { echo "VMTEST-EXIT=3"; exit 3; }
if ! pip install -q --no-index --no-deps /mnt/run/wheels/*.whl; then
  echo "guest: installing the project's wheel failed"
  echo "VMTEST-EXIT=3"
  exit 3
fi
echo "guest: kernel $(uname -r), $(nft --version), $(python --version), $(nproc) cpus"
eval "$(cat /mnt/run/pytest-command)"
rc=$?
echo "VMTEST-EXIT=$rc"
