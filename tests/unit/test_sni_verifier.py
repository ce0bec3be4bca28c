"""The verify-sni core (fqdn_policy.sni.verifier): queued packets in, per-packet actions and one decision
per connection out. Packets built by hand; the judge is a stand-in that allows one name."""

import pytest

from fqdn_policy.sni import verifier
from fqdn_policy.sni.segment import ACK, PSH, SYN
from fqdn_policy.sni.verifier import Action, PacketAction, SniVerifier
from tests.fuzz.sni_seeds import client_hello, http_request
from tests.unit.test_sni_segment import ipv4, ipv6, tcp

ISN = 0xFFFFFF00  # near the wrap, so sequence arithmetic is exercised
HELLO = client_hello("good.example")
BAD = client_hello("other.example")


class AllowOne:
    def __init__(self, name="good.example"):
        self.name = name
        self.asked = []

    def __call__(self, src, dst, port, inspection):
        self.asked.append((src, dst, port, inspection.name))
        return inspection.name == self.name, f"judged {inspection.name}"


def syn(sport=40000, dport=443, seq=ISN):
    return ipv4(tcp(b"", sport=sport, dport=dport, seq=seq, flags=SYN))


def data(payload, offset=0, sport=40000, dport=443):
    return ipv4(tcp(payload, sport=sport, dport=dport, seq=(ISN + 1 + offset) & 0xFFFFFFFF, flags=PSH | ACK))


def test_an_allowed_name_in_one_segment_is_allowed_and_decided_once():
    judge = AllowOne()
    core = SniVerifier(judge)
    assert core.on_packet(1, syn(), 0.0).actions == [PacketAction(1, Action.PASS)]
    step = core.on_packet(2, data(HELLO), 0.01)
    assert step.actions == [PacketAction(2, Action.ALLOW)]
    (decided,) = step.decided
    assert decided.flow == ("10.244.1.10", "198.51.100.7", 40000, 443)
    assert (decided.allowed, decided.inspection.name, decided.detail) == (
        True,
        "good.example",
        "judged good.example",
    )
    assert judge.asked == [("10.244.1.10", "198.51.100.7", 443, "good.example")]
    # a straggler queued before the verdict reached the kernel gets the same verdict, without a new decision
    again = core.on_packet(3, data(b"more", offset=len(HELLO)), 0.02)
    assert again == verifier.Step([PacketAction(3, Action.ALLOW)], [])


def test_another_name_is_denied():
    core = SniVerifier(AllowOne())
    core.on_packet(1, syn(), 0.0)
    step = core.on_packet(2, data(BAD), 0.0)
    assert step.actions == [PacketAction(2, Action.DENY)]
    assert step.decided[0].inspection.name == "other.example" and not step.decided[0].allowed


@pytest.mark.parametrize("cut", [1, 5, 9, len(HELLO) // 2, len(HELLO) - 1])
def test_a_split_client_hello_is_held_then_every_piece_gets_the_verdict(cut):
    core = SniVerifier(AllowOne())
    core.on_packet(1, syn(), 0.0)
    held = core.on_packet(2, data(HELLO[:cut]), 0.0)
    assert held == verifier.Step([], []) and core.held_flows == 1  # no verdict: the kernel keeps it
    step = core.on_packet(3, data(HELLO[cut:], offset=cut), 0.1)
    assert step.actions == [PacketAction(2, Action.ALLOW), PacketAction(3, Action.ALLOW)]
    assert step.decided[0].segments == 2 and core.held_flows == 0


def test_the_second_segment_sent_first_cannot_pose_as_the_start():
    """A client sends a ClientHello for an allowed name as its second segment, first: the SYN anchors the
    stream, so it is past a gap, and the connection is denied."""
    core = SniVerifier(AllowOne())
    core.on_packet(1, syn(), 0.0)
    step = core.on_packet(2, data(HELLO, offset=len(BAD)), 0.0)
    assert step.actions == [PacketAction(2, Action.DENY)]
    assert "out of order" in step.decided[0].inspection.reason


def test_first_data_without_a_syn_is_denied_once_the_grace_for_its_copy_is_over():
    core = SniVerifier(AllowOne())
    assert core.on_packet(2, data(HELLO), 0.0) == verifier.Step([], [])  # held: its SYN copy may be late
    assert core.next_deadline() == verifier.SYN_GRACE_SECONDS and core.held_flows == 1
    step = core.on_tick(verifier.SYN_GRACE_SECONDS)
    assert step.actions == [PacketAction(2, Action.DENY)]
    assert step.decided[0].inspection.reason == "no SYN seen for this connection"


def test_data_that_overtook_its_syn_copy_is_decided_when_the_copy_arrives():
    """The copy (NFLOG) and the data (NFQUEUE) come through different sockets: measured once in
    15,000 connections, the data first (bench.sniqueue)."""
    core = SniVerifier(AllowOne())
    assert core.on_packet(2, data(HELLO[:30]), 0.0).actions == []
    assert core.on_packet(3, data(HELLO[30:], offset=30), 0.01).actions == []
    step = core.on_syn(syn(), 0.02)
    assert step.actions == [PacketAction(2, Action.ALLOW), PacketAction(3, Action.ALLOW)]
    assert core.held_flows == 0 and core.next_deadline() is None


def test_an_incomplete_client_hello_is_denied_after_the_hold():
    core = SniVerifier(AllowOne())
    core.on_packet(1, syn(), 0.0)
    core.on_packet(2, data(HELLO[:20]), 0.0)
    assert core.next_deadline() == verifier.HOLD_SECONDS
    assert core.on_tick(verifier.HOLD_SECONDS - 0.01) == verifier.Step([], [])
    step = core.on_tick(verifier.HOLD_SECONDS)
    assert step.actions == [PacketAction(2, Action.DENY)]
    assert step.decided[0].inspection.reason == "first bytes incomplete after 2 s"
    assert core.next_deadline() is None


def test_segments_without_payload_pass_and_a_retransmission_is_held_with_the_rest():
    core = SniVerifier(AllowOne())
    core.on_packet(1, syn(), 0.0)
    assert core.on_packet(2, ipv4(tcp(b"", seq=ISN + 1, flags=ACK)), 0.0).actions == [
        PacketAction(2, Action.PASS)
    ]
    core.on_packet(3, data(HELLO[:30]), 0.0)
    core.on_packet(4, data(HELLO[:30]), 0.3)  # the client retransmits: nothing was acknowledged
    step = core.on_packet(5, data(HELLO[30:], offset=30), 0.3)
    assert [a.packet_id for a in step.actions] == [3, 4, 5] and {a.action for a in step.actions} == {
        Action.ALLOW
    }


def test_a_retransmission_that_disagrees_is_denied():
    core = SniVerifier(AllowOne())
    core.on_packet(1, syn(), 0.0)
    core.on_packet(2, data(HELLO[:30]), 0.0)
    step = core.on_packet(3, data(BAD[:40]), 0.1)
    assert {a.action for a in step.actions} == {Action.DENY} and [a.packet_id for a in step.actions] == [2, 3]


def test_http_host_on_port_80():
    core = SniVerifier(AllowOne())
    core.on_packet(1, syn(dport=80), 0.0)
    step = core.on_packet(2, data(http_request(b"good.example"), dport=80), 0.0)
    assert step.actions == [PacketAction(2, Action.ALLOW)] and step.decided[0].inspection.kind == "http"


def test_what_is_not_a_client_hello_is_denied_at_once():
    core = SniVerifier(AllowOne())
    core.on_packet(1, syn(), 0.0)
    step = core.on_packet(2, data(b"SSH-2.0-OpenSSH_9.6\r\n"), 0.0)
    assert step.actions == [PacketAction(2, Action.DENY)] and step.decided[0].inspection.kind == "other"


def test_an_unreadable_packet_is_denied_and_counted():
    core = SniVerifier(AllowOne())
    assert core.on_packet(9, b"\x45\x00", 0.0).actions == [PacketAction(9, Action.DENY)]
    assert core.unreadable == 1


def test_ipv6_connections_are_keyed_and_decided_alike():
    core = SniVerifier(AllowOne())
    core.on_packet(1, ipv6(tcp(b"", seq=ISN, flags=SYN)), 0.0)
    step = core.on_packet(2, ipv6(tcp(HELLO, seq=ISN + 1, flags=PSH | ACK)), 0.0)
    assert step.actions == [PacketAction(2, Action.ALLOW)]
    assert step.decided[0].flow == ("2001:db8:244::10", "2001:db8::7", 40000, 443)


def test_a_new_syn_on_a_decided_tuple_is_a_new_connection():
    core = SniVerifier(AllowOne())
    core.on_packet(1, syn(), 0.0)
    core.on_packet(2, data(HELLO), 0.0)
    core.on_packet(3, syn(seq=5000), 30.0)
    step = core.on_packet(4, ipv4(tcp(BAD, seq=5001, flags=PSH | ACK)), 30.0)
    assert step.actions == [PacketAction(4, Action.DENY)]


def test_held_connections_are_bounded(monkeypatch):
    monkeypatch.setattr(verifier, "MAX_HELD_FLOWS", 2)
    core = SniVerifier(AllowOne())
    for sport in (1, 2, 3):
        core.on_packet(sport, syn(sport=sport), 0.0)
    for sport in (1, 2):
        assert core.on_packet(10 + sport, data(HELLO[:10], sport=sport), 0.0).actions == []
    step = core.on_packet(13, data(HELLO[:10], sport=3), 0.0)
    assert step.actions == [PacketAction(13, Action.DENY)]
    assert step.decided[0].inspection.reason == "too many connections awaiting their first bytes"


def test_old_syns_and_verdicts_are_forgotten():
    core = SniVerifier(AllowOne())
    core.on_packet(1, syn(), 0.0)
    later = verifier.SYN_SECONDS + 1
    core.on_tick(later)
    core.on_packet(2, data(HELLO), later)
    step = core.on_tick(later + verifier.SYN_GRACE_SECONDS)
    assert step.decided[0].inspection.reason == "no SYN seen for this connection"
    core.on_tick(later + verifier.DECIDED_SECONDS + 1)
    # the verdict is forgotten: a straggler now is a data segment without a SYN
    core.on_packet(3, data(b"x", offset=len(HELLO)), later + 12)
    late = core.on_tick(later + 12 + verifier.SYN_GRACE_SECONDS)
    assert late.decided[0].inspection.reason == "no SYN seen for this connection"


def test_a_syn_copy_anchors_the_stream_like_a_queued_syn():
    core = SniVerifier(AllowOne())
    core.on_syn(syn(), 0.0)
    core.on_syn(ipv4(tcp(b"", seq=5, flags=SYN | ACK)), 0.0)  # a SYN-ACK is not a client's SYN
    core.on_syn(b"\x45", 0.0)  # nor is a cut copy
    assert core.on_packet(2, data(HELLO), 0.0).actions == [PacketAction(2, Action.ALLOW)]
    # the second segment sent first still cannot pose as the start
    core.on_syn(syn(sport=2), 0.0)
    assert core.on_packet(3, data(HELLO, offset=10, sport=2), 0.0).actions == [PacketAction(3, Action.DENY)]
