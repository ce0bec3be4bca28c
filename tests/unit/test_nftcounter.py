"""fqdn_policy.enforcer.nftcounter: one named counter read over netlink, against libnftables and a real kernel."""

import os
import shutil
import struct
import subprocess
import sys
import textwrap

import pytest

from fqdn_policy.enforcer.netlink import NLMSG_ERROR, NLMSGHDR, attribute, message
from fqdn_policy.enforcer.nftcounter import (
    NFNL_SUBSYS_NFTABLES,
    NFT_MSG_NEWOBJ,
    NFTA_COUNTER_BYTES,
    NFTA_COUNTER_PACKETS,
    NFTA_OBJ_DATA,
    CounterError,
    CounterValue,
    counter_request,
    parse_counter_reply,
)


def test_request_names_the_table_the_counter_and_its_type():
    raw = counter_request("fqdn_policy", "drops_unlogged", 7)
    length, kind, flags, seq, _ = NLMSGHDR.unpack_from(raw)
    assert (length, kind, flags, seq) == (len(raw), (10 << 8) | 19, 1, 7)
    assert b"fqdn_policy\0" in raw and b"drops_unlogged\0" in raw


def reply(seq, packets, size):
    data = attribute(NFTA_COUNTER_BYTES, struct.pack("!Q", size))
    data += attribute(NFTA_COUNTER_PACKETS, struct.pack("!Q", packets))
    body = b"\x01\x00\x00\x00" + attribute(NFTA_OBJ_DATA | 0x8000, data)
    return message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWOBJ, 0, seq, body)


def test_reply_parsing_and_errors():
    assert parse_counter_reply(reply(3, 12, 720), 3) == CounterValue(12, 720)
    assert parse_counter_reply(reply(4, 12, 720), 3) is None  # another request's answer
    refusal = message(NLMSG_ERROR, 0, 3, struct.pack("=i", -2) + b"\0" * 16)
    with pytest.raises(CounterError) as caught:
        parse_counter_reply(refusal, 3)
    assert caught.value.errno == 2
    no_data = message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWOBJ, 0, 3, b"\x01\x00\x00\x00")
    with pytest.raises(CounterError):
        parse_counter_reply(no_data, 3)


KERNEL_CHECK = textwrap.dedent(
    """
    import socket, subprocess
    from fqdn_policy.enforcer.nft import Nft, NftError
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["nft", "-f", "-"], check=True, text=True, input='''
    table inet t {
        counter c { }
        chain out { type filter hook output priority 0; udp dport 9 counter name c; }
    }''')
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(5):
        s.sendto(b"x", ("127.0.0.1", 9))
    nft = Nft()
    listed = nft.run([{"list": {"counter": {"family": "inet", "table": "t", "name": "c"}}}])
    packets = next(i["counter"]["packets"] for i in listed if "counter" in i)
    print(nft.counter("t", "c"), packets)
    try:
        nft.counter("t", "missing")
    except NftError as error:
        print("refused", error)
    """
)


@pytest.mark.netns
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root for a netns")
def test_reads_what_libnftables_reads_in_a_throwaway_namespace():
    out = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", KERNEL_CHECK],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    ).stdout.splitlines()
    assert out[0] == "5 5"
    assert out[1].startswith("refused counter inet t missing:")
