"""The DNS redirect's pure parts: its nftables commands, who owns it, which conntrack entries move."""

import pytest

from fqdn_policy.agent import dnsguard
from fqdn_policy.agent.redirect import plan
from fqdn_policy.cli.main import main
from fqdn_policy.enforcer import conntrack, dnsredirect
from fqdn_policy.enforcer.dnsredirect import Redirect

V4 = Redirect(service=("10.96.0.10", 53), target=("169.254.20.53", 53))
V6 = Redirect(service=("fd00:96::a", 53), target=("fd00:20::53", 5353))


def test_install_is_one_nat_chain_before_kube_proxy_with_owned_rules():
    cmds = dnsredirect.install_commands("t", [V4, V6], "tok")
    chain = cmds[1]["add"]["chain"]
    assert (chain["type"], chain["hook"], chain["prio"]) == ("nat", "prerouting", -110)
    assert cmds[2] == {"flush": {"chain": {"family": "inet", "table": "t", "name": "prerouting"}}}
    rules = [c["add"]["rule"] for c in cmds[3:]]
    assert [r["expr"][1]["match"]["left"]["payload"]["protocol"] for r in rules] == ["udp", "tcp"] * 2
    assert {r["comment"] for r in rules} == {"fqdn-policy dns redirect owner=tok"}
    assert rules[0]["expr"][0]["match"]["left"]["payload"] == {"protocol": "ip", "field": "daddr"}
    assert rules[0]["expr"][2] == {"dnat": {"family": "ip", "addr": "169.254.20.53", "port": 53}}
    assert rules[2]["expr"][0]["match"]["right"] == "fd00:96::a"
    assert rules[2]["expr"][2] == {"dnat": {"family": "ip6", "addr": "fd00:20::53", "port": 5353}}


def test_remove_deletes_own_rules_by_handle_with_the_table():
    assert dnsredirect.remove_commands("t", [7, 8]) == [
        {"delete": {"rule": {"family": "inet", "table": "t", "chain": "prerouting", "handle": 7}}},
        {"delete": {"rule": {"family": "inet", "table": "t", "chain": "prerouting", "handle": 8}}},
        {"delete": {"table": {"family": "inet", "name": "t"}}},
    ]


def test_rule_owners_reads_tokens_from_comments():
    rules = [
        {"handle": 6, "comment": "fqdn-policy dns redirect owner=1-ab"},
        {"handle": 7, "comment": "someone else's"},
        {"handle": 8},
    ]
    assert dnsredirect.rule_owners(rules) == {6: "1-ab"}


def test_plan_targets_the_first_listen_address_of_each_family():
    listen = [("169.254.20.53", 53), ("fd00:20::53", 5353), ("10.0.0.1", 53)]
    assert plan([("10.96.0.10", 53), ("fd00:96::a", 53)], listen) == [V4, V6]


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ([("fd00:20::53", 53)], "no IPv4 --listen address"),
        ([("127.0.0.1", 53)], "is loopback"),
        ([("0.0.0.0", 53)], "is a wildcard"),
    ],
)
def test_plan_refuses_a_target_pods_cannot_reach(listen, message):
    with pytest.raises(ValueError, match=message):
        plan([("10.96.0.10", 53)], listen)


def test_cli_refuses_a_loopback_redirect_target_as_a_usage_error(tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text("")
    code = main(["run", "--policy", str(policy), "--upstream", "192.0.2.53", "--dns-service", "10.96.0.10"])
    assert code == 2
    assert "loopback" in capsys.readouterr().err


LISTING = """\
udp      17 25 src=10.244.1.10 dst=10.96.0.10 sport=40053 dport=53 src=10.244.2.5 dst=10.244.1.10 sport=53 dport=40053 mark=0 use=1
udp      17 29 src=10.244.1.11 dst=10.96.0.10 sport=5353 dport=53 [UNREPLIED] src=169.254.20.53 dst=10.244.1.11 sport=53 dport=5353 mark=0 use=1
udp      17 29 src=fd00:244::10 dst=fd00:96::a sport=1000 dport=53 src=fd00:20:0::53 dst=fd00:244::10 sport=5353 dport=1000 mark=0 use=1
conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.
"""


def test_conntrack_listing_parses_both_directions():
    first, second, third = conntrack.parse_entries(LISTING)
    assert (first.src, first.sport, first.reply_src, first.reply_sport) == (
        "10.244.1.10",
        40053,
        "10.244.2.5",
        53,
    )
    assert second.reply_src == "169.254.20.53"
    assert third.reply_src == "fd00:20::53"  # canonical, to compare with the listen address


def test_misrouted_entries_are_those_not_following_the_current_path():
    entries = conntrack.parse_entries(LISTING)
    target = ("169.254.20.53", 53)
    # Redirect installed: the flow still answered by a DNS pod must move to the proxy.
    assert [e.src for e in conntrack.misrouted(entries[:2], target, redirected=True)] == ["10.244.1.10"]
    # Redirect removed: the flow answered by the proxy must move back to the cluster DNS.
    assert [e.src for e in conntrack.misrouted(entries[:2], target, redirected=False)] == ["10.244.1.11"]
    assert conntrack.misrouted(entries[2:], ("fd00:20::0:53", 5353), redirected=True) == []


# -- the guard ------------------------------------------------------------------------------------

PROC_UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 6807: 3514FEA9:B35B 3514FEA9:041D 01 00000000:00000000 00:00000000 00000000     0        0 1093365 2 000000007cc55dd5 0
11097: 3514FEA9:041D 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1093363 2 000000008003d338 0
"""
PROC_UDP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
11097: 000000FD000000000000000053000000:041D 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1093364 2 000000007df0cd0f 0
  100: 00000000000000000000000000000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0 0
"""


def test_proc_net_udp_listeners_are_the_unconnected_sockets():
    # captured from sockets bound to 169.254.20.53:1053 and [fd00::53]:1053, plus a connected client
    assert dnsguard.udp_listeners(PROC_UDP) == {("169.254.20.53", 1053)}
    assert dnsguard.udp_listeners(PROC_UDP6) == {("fd00::53", 1053), ("::", 53)}


def test_a_target_is_served_by_its_own_address_or_the_wildcard():
    listeners = dnsguard.udp_listeners(PROC_UDP) | dnsguard.udp_listeners(PROC_UDP6)
    assert dnsguard.served(("169.254.20.53", 1053), listeners)
    assert not dnsguard.served(("169.254.20.53", 53), listeners)
    assert dnsguard.served(("fd00:0::53", 1053), listeners)
    assert dnsguard.served(("fd00::99", 53), listeners)  # [::]:53
    assert not dnsguard.served(("10.0.0.1", 1053), listeners)


def test_redirects_are_read_back_from_the_listed_chain():
    # `list chain` output of install_commands(..., [V4], "A"), captured from libnftables 1.0.6
    listed = [
        {"family": "inet", "table": "t", "chain": "prerouting", "handle": handle, "comment": "x",
         "expr": [
             {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.96.0.10"}},
             {"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "dport"}}, "right": 53}},
             {"dnat": {"family": "ip", "addr": "169.254.20.53", "port": 53}},
         ]}
        for handle, proto in ((2, "udp"), (3, "tcp"))
    ]  # fmt: skip
    assert dnsredirect.redirects_in(listed) == {2: V4, 3: V4}
    assert dnsredirect.redirects_in([{"handle": 9, "expr": [{"counter": None}]}]) == {}


def test_without_the_conntrack_tool_nothing_is_flushed_and_the_caller_is_told(monkeypatch):
    monkeypatch.setattr(conntrack, "TOOL", "no-such-conntrack-tool")
    assert conntrack.flush_misrouted(("10.96.0.10", 53), ("169.254.20.53", 53), redirected=True) is None
