"""Element writes over netlink against a real kernel, read back through libnftables.

Each test runs a script in a throw-away network namespace (`unshare -n`: it goes when the script ends,
however it ends) and compares what the netlink path wrote with what the libnftables path writes.
"""

import json
import os
import shutil
import textwrap

import pytest

from tests.lab.unshared import run_unshared

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root for a netns"),
]

PRELUDE = """
import asyncio, errno, json, time
from fqdn_policy.enforcer.elementsocket import ElementSocket
from fqdn_policy.enforcer.elementwire import ElementChange, ElementRefused
from fqdn_policy.enforcer.inventory import allow_elements
from fqdn_policy.enforcer.nft import Nft
from fqdn_policy.enforcer.ruleset import base_ruleset, element_commands
from fqdn_policy.enforcer.writer import SetWriter
from fqdn_policy.policy.state.elements import ElementWrite

nft = Nft()
nft.run(base_ruleset("fqdn_policy"))
sock = ElementSocket()

def w(src, dst, proto=None, port=None, timeout=600, name="www.example.com"):
    return ElementWrite((src, dst, proto, port), timeout, 0.0, name)

def listed(table="fqdn_policy"):
    return sorted(
        ([list(e.element), e.timeout, e.expires, e.name] for e in allow_elements(nft, table)), key=str
    )

def refusal(fn):
    try:
        fn()
    except ElementRefused as error:
        return [error.errno, str(error)]
    return None
"""


def in_namespace(script: str):
    """Run PRELUDE + script in a new network namespace; what it printed, as JSON."""
    done = run_unshared(PRELUDE + textwrap.dedent(script))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_what_netlink_writes_is_what_libnftables_writes():
    out = in_namespace(
        """
        writes = [
            w("10.244.1.10", "198.51.100.10"),
            w("10.244.1.10", "198.51.100.10", "udp", timeout=30),
            w("10.244.1.10", "198.51.100.10", "tcp", 443, name="a" * 200),
            w("10.244.1.10", "198.51.100.11", "sctp", 9, name=""),
            w("2001:db8:244::10", "2001:db8:100::10", timeout=3600),
            w("2001:db8:244::10", "2001:db8:100::10", "tcp"),
            w("2001:db8:244::10", "2001:db8:100::10", "udp", 53, name="dns.example"),
        ]
        nft.run(base_ruleset("via_libnftables"))
        nft.run(element_commands("via_libnftables", writes))
        sock.write([ElementChange("fqdn_policy", tuple(writes))])
        print(json.dumps([listed(), listed("via_libnftables")]))
        """
    )
    netlink, libnftables = out
    assert len(netlink) == 7
    for mine, theirs in zip(netlink, libnftables, strict=True):
        assert (mine[0], mine[1], mine[3]) == (theirs[0], theirs[1], theirs[3])  # key, timeout, comment
        assert abs(mine[2] - theirs[2]) <= 1  # expires, listed in whole seconds
        assert mine[1] - 1 <= mine[2] <= mine[1]  # listed in whole seconds, rounded down
    assert "a" * 127 in [e[3] for e in netlink]


@pytest.mark.skipif(
    tuple(int(p) for p in os.uname().release.split(".")[:2] if p.isdigit()) < (6, 10),
    reason="a re-added element refreshes its expiry from Linux 6.10 on",
)
def test_writing_an_element_again_moves_its_expiry():
    out = in_namespace(
        """
        sock.write([ElementChange("fqdn_policy", (w("10.244.1.10", "198.51.100.10", timeout=60),))])
        first = listed()
        sock.write([ElementChange("fqdn_policy", (w("10.244.1.10", "198.51.100.10", timeout=900),))])
        print(json.dumps([first, listed()]))
        """
    )
    (before,), (after,) = out
    assert before[1] == 60 and 59 <= before[2] <= 60
    assert after[1] == 900 and 899 <= after[2] <= 900


def test_delete_and_the_refusal_of_a_missing_element():
    out = in_namespace(
        """
        element = ("10.244.1.10", "198.51.100.10", "tcp", 443)
        sock.write([ElementChange("fqdn_policy", (w(*element),))])
        written = listed()
        sock.write([ElementChange("fqdn_policy", (), (element,))])
        gone = listed()
        again = refusal(lambda: sock.write([ElementChange("fqdn_policy", (), (element,))]))
        print(json.dumps([len(written), gone, again]))
        """
    )
    written, gone, again = out
    assert written == 1 and gone == []
    assert again[0] == 2
    assert "delete 1 element(s) from set inet fqdn_policy allow_v4_port" in again[1]


def test_a_missing_table_or_set_is_a_clear_error_and_the_socket_keeps_working():
    out = in_namespace(
        """
        element = w("10.244.1.10", "198.51.100.10")
        no_table = refusal(lambda: sock.write([ElementChange("absent", (element,))]))
        # a table with allow_v4 alone
        nft.run([c for c in base_ruleset("partial") if "set" not in c.get("add", {})][:1])
        nft.run([c for c in base_ruleset("partial") if c.get("add", {}).get("set", {}).get("name") == "allow_v4"])
        no_set = refusal(
            lambda: sock.write([ElementChange("partial", (element, w("2001:db8:244::1", "2001:db8::1")))])
        )
        half_written = nft.list_set("partial", "allow_v4")
        sock.write([ElementChange("partial", (element,))])
        print(json.dumps([no_table, no_set, len(half_written), len(nft.list_set("partial", "allow_v4"))]))
        """
    )
    no_table, no_set, half_written, after = out
    assert no_table == [
        2,
        "[Errno 2] add 1 element(s) to set inet absent allow_v4: No such file or directory"
        " (the table or the set does not exist)",
    ]
    assert no_set[0] == 2 and "set inet partial allow_v6" in no_set[1]
    assert half_written == 0  # the allow_v4 element of the refused batch was not written either
    assert after == 1


def test_five_thousand_elements_in_one_call_are_one_transaction():
    out = in_namespace(
        """
        writes = tuple(
            w(f"10.244.{i // 250}.1", f"198.51.100.{i % 250}", "tcp", 443, name=f"host{i}.example.com")
            for i in range(5000)
        )
        missing = ("10.244.9.9", "198.51.100.1", None, None)
        refused = refusal(
            lambda: sock.write([ElementChange("fqdn_policy", writes), ElementChange("fqdn_policy", (), (missing,))])
        )
        nothing = len(nft.list_set("fqdn_policy", "allow_v4_port"))
        sock.write([ElementChange("fqdn_policy", writes)])
        print(json.dumps([refused, nothing, len(nft.list_set("fqdn_policy", "allow_v4_port"))]))
        """
    )
    refused, nothing, written = out
    assert refused[0] == 2  # the delete at the end of the batch failed ...
    assert nothing == 0  # ... so none of the 5,000 writes before it took effect
    assert written == 5000


def test_one_bad_request_in_a_burst_fails_only_itself_and_order_holds_with_libnftables():
    out = in_namespace(
        """
        async def main():
            writer = SetWriter()
            outcomes = {}
            x = ("10.244.1.10", "198.51.100.10", None, None)
            y = ("10.244.1.10", "198.51.100.20", None, None)
            writer.submit_elements("fqdn_policy", [w(*x)], [], lambda e: outcomes.setdefault("x", e))
            writer.submit_elements(
                "fqdn_policy", [], [("10.244.1.10", "198.51.100.99", None, None)],
                lambda e: outcomes.setdefault("bad", e),
            )
            # a libnftables command between element requests runs in its place in the order
            writer.submit(element_commands("fqdn_policy", [], [x]), lambda e: outcomes.setdefault("json", e))
            writer.submit_elements("fqdn_policy", [w(*y)], [], lambda e: outcomes.setdefault("y", e))
            await writer.write([])
            return {k: (str(v) if v else None) for k, v in outcomes.items()}, writer.stats.transactions

        outcomes, transactions = asyncio.run(main())
        print(json.dumps([outcomes, transactions, [e[0] for e in listed()]]))
        """
    )
    outcomes, transactions, elements = out
    assert outcomes["x"] is None and outcomes["json"] is None and outcomes["y"] is None
    assert "delete 1 element(s) from set inet fqdn_policy allow_v4" in outcomes["bad"]
    assert transactions == 3  # elements, libnftables, elements
    assert elements == [["10.244.1.10", "198.51.100.20", None, None]]  # x added, then deleted in order


def test_a_failed_socket_is_replaced_on_the_next_write():
    out = in_namespace(
        """
        sock.write([ElementChange("fqdn_policy", (w("10.244.1.10", "198.51.100.10"),))])
        sock._sock.close()  # the descriptor fails under the writer
        try:
            sock.write([ElementChange("fqdn_policy", (w("10.244.1.10", "198.51.100.20"),))])
            failed = None
        except OSError as error:
            failed = [type(error).__name__, error.errno]
        sock.write([ElementChange("fqdn_policy", (w("10.244.1.10", "198.51.100.30"),))])
        print(json.dumps([failed, [e[0][1] for e in listed()]]))
        """
    )
    failed, destinations = out
    assert failed == ["OSError", 9]  # EBADF, not a refusal: the socket is dropped
    assert destinations == ["198.51.100.10", "198.51.100.30"]


def test_one_element_written_twice_in_a_burst_ends_as_through_libnftables():
    out = in_namespace(
        """
        nft.run(base_ruleset("via_libnftables"))
        first = w("10.244.1.10", "198.51.100.10", timeout=60, name="a.example")
        later = w("10.244.1.10", "198.51.100.10", timeout=900, name="b.example")
        sock.write([ElementChange("fqdn_policy", (first,)), ElementChange("fqdn_policy", (later,))])
        nft.run(element_commands("via_libnftables", [first]) + element_commands("via_libnftables", [later]))
        print(json.dumps([listed(), listed("via_libnftables")]))
        """
    )
    ((netlink,), (libnftables,)) = out
    assert (netlink[0], netlink[1], netlink[3]) == (libnftables[0], libnftables[1], libnftables[3])
    assert netlink[1] == 900
