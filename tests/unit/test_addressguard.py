import pytest

from fqdn_policy.policy.match.addressguard import AddressGuard

ROWS = [
    (4, "127.0.0.1", True),
    (4, "127.255.255.254", True),
    (4, "169.254.169.254", True),
    (4, "0.0.0.0", True),
    (4, "198.51.100.10", False),
    (4, "10.244.1.1", True),  # node address below
    (4, "192.0.2.7", True),  # --protect range below
    (4, "192.0.3.7", False),
    (6, "::1", True),
    (6, "fe80::1", True),
    (6, "febf::1", True),
    (6, "fec0::1", False),
    (6, "::", True),
    (6, "2001:db8:100::10", False),
    (6, "2001:db8:244::1", True),  # node address
]


@pytest.mark.parametrize(("version", "address", "protected"), ROWS)
def test_protects(version, address, protected):
    guard = AddressGuard(["192.0.2.0/24"], ["10.244.1.1", "2001:db8:244::1"])
    assert guard.protects(version, address) is protected
