"""nfnetlink_queue (NFQUEUE) messages: build the bind, config and verdict requests, parse queued
packets. Pure: bytes in, packets out (the socket is enforcer.nfqueuesocket).

The project's own netlink code, not NetfilterQueue from PyPI: that package builds against
libnetfilter-queue-dev with Cython, and it runs a blocking callback loop that an asyncio agent would
need a thread for; the protocol is small (linux/netfilter/nfnetlink_queue.h) and the NFLOG reader's
framing (enforcer.netlink) already parses it. The nfgenmsg res_id carries the queue number; every
attribute value is big-endian.

How the queue is configured, and why (net/netfilter/nfnetlink_queue.c):

- NFQNL_COPY_PACKET: the packet from its network header, up to the copy range, arrives in
  NFQA_PAYLOAD; a longer packet is cut and NFQA_CAP_LEN says how long it was.
- NFQA_CFG_F_GSO set: a GSO packet (several segments the stack or GRO kept together) is queued
  whole, as one packet with one verdict, instead of being segmented in software by the kernel and
  queued segment by segment. The agent only reads the first bytes and never rewrites a packet, so
  a checksum the hardware has not filled in yet (NFQA_SKB_INFO says so) does not matter.
- NFQA_CFG_F_FAIL_OPEN deliberately cleared: when the queue is full, or the socket's receive buffer
  is, the kernel drops the packet instead of accepting it unverified. With the rule's queue
  statement lacking `bypass`, a queue nobody reads also drops: unverified flows fail closed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from fqdn_policy.enforcer.netlink import (
    NFGENMSG,
    NLM_F_ACK,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    NetlinkError,
    attribute,
    attributes,
    error_of,
    message,
    messages,
)

NFNL_SUBSYS_QUEUE = 3

NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3

NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_MARK = 3
NFQA_PAYLOAD = 10
NFQA_CAP_LEN = 13
NFQA_SKB_INFO = 14

NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQA_CFG_F_FAIL_OPEN = 1 << 0
NFQA_CFG_F_GSO = 1 << 2

NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_PACKET = 2

NF_DROP = 0
NF_ACCEPT = 1
NF_REPEAT = 4  # the hook runs the packet through its chains again, from the top

# NFQA_PAYLOAD's length is a u16 that counts its 4-byte header: the kernel copies at most this much.
MAX_COPY_RANGE = 0xFFFF - 4
DEFAULT_QUEUE_MAXLEN = 1024  # the kernel's own default (NFQNL_QMAX_DEFAULT)

_PACKET_HDR = struct.Struct("!IHB")  # packet_id, hw_protocol, hook (packed)
_VERDICT_HDR = struct.Struct("!II")  # verdict, packet_id
_U32 = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class QueuedPacket:
    """One packet the kernel holds until this socket gives it a verdict."""

    queue: int
    packet_id: int
    hw_protocol: int  # the packet's EtherType: 0x0800 IPv4, 0x86DD IPv6
    hook: int  # the netfilter hook it was queued from (NF_INET_FORWARD = 2)
    mark: int  # the packet mark (0 when the kernel left NFQA_MARK out, as it does for 0)
    payload: bytes  # from the network header, at most the copy range
    length: int  # the whole packet's length: above len(payload) when the copy range cut it


class Verdict(NamedTuple):
    packet_id: int
    verdict: int
    mark: int | None = None


def _kind(msg: int) -> int:
    return (NFNL_SUBSYS_QUEUE << 8) | msg


def bind_request(queue: int, seq: int, copy_range: int = MAX_COPY_RANGE) -> bytes:
    """NFQNL_MSG_CONFIG: bind this socket to `queue`, copying up to `copy_range` bytes of each packet.

    The command and the copy mode go in one message, so the queue never exists without a copy mode
    (the kernel drops what it would queue meanwhile). A queue bound by another socket answers EPERM
    (nfqnl_recv_config checks the owner's port id first); the binding goes when its socket closes.
    """
    body = NFGENMSG.pack(0, 0, queue)
    body += attribute(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0))
    body += attribute(NFQA_CFG_PARAMS, struct.pack("!IB", copy_range, NFQNL_COPY_PACKET))
    return message(_kind(NFQNL_MSG_CONFIG), NLM_F_REQUEST | NLM_F_ACK, seq, body)


def config_request(queue: int, seq: int, maxlen: int = DEFAULT_QUEUE_MAXLEN) -> bytes:
    """NFQNL_MSG_CONFIG for a bound queue: its length, GSO packets whole, fail-open cleared.

    FAIL_OPEN is in the mask with its flag bit 0, so the queue is fail-closed whatever it was before.
    """
    body = NFGENMSG.pack(0, 0, queue)
    body += attribute(NFQA_CFG_QUEUE_MAXLEN, _U32.pack(maxlen))
    body += attribute(NFQA_CFG_FLAGS, _U32.pack(NFQA_CFG_F_GSO))
    body += attribute(NFQA_CFG_MASK, _U32.pack(NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN))
    return message(_kind(NFQNL_MSG_CONFIG), NLM_F_REQUEST | NLM_F_ACK, seq, body)


def verdict_message(queue: int, packet_id: int, verdict: int, mark: int | None = None, seq: int = 0) -> bytes:
    """NFQNL_MSG_VERDICT for one packet, setting its mark first when `mark` is given.

    No NLM_F_ACK: the kernel answers only a refused verdict (ENOENT for an id it no longer holds)."""
    body = NFGENMSG.pack(0, 0, queue)
    body += attribute(NFQA_VERDICT_HDR, _VERDICT_HDR.pack(verdict, packet_id))
    if mark is not None:
        body += attribute(NFQA_MARK, _U32.pack(mark))
    return message(_kind(NFQNL_MSG_VERDICT), NLM_F_REQUEST, seq, body)


def verdict_messages(queue: int, verdicts: Iterable[Verdict]) -> bytes:
    """Several verdicts as one datagram: nfnetlink handles each message in it in turn."""
    return b"".join(verdict_message(queue, v.packet_id, v.verdict, v.mark) for v in verdicts)


def parse_datagram(data: bytes) -> Iterator[QueuedPacket | NetlinkError]:
    """Every message in one netlink datagram; anything malformed or of another kind is skipped."""
    for kind, seq, body in messages(data):
        if kind == NLMSG_ERROR:
            error = error_of(body, seq)
            if error is not None:
                yield error
        elif kind == _kind(NFQNL_MSG_PACKET):
            packet = _packet(body)
            if packet is not None:
                yield packet


def _packet(body: bytes) -> QueuedPacket | None:
    if len(body) < NFGENMSG.size:
        return None
    queue = NFGENMSG.unpack_from(body)[2]
    attrs = attributes(body)
    header = attrs.get(NFQA_PACKET_HDR, b"")
    if len(header) < _PACKET_HDR.size:
        return None
    packet_id, hw_protocol, hook = _PACKET_HDR.unpack_from(header)
    payload = attrs.get(NFQA_PAYLOAD, b"")
    mark = _u32(attrs.get(NFQA_MARK), 0)
    length = _u32(attrs.get(NFQA_CAP_LEN), len(payload))
    return QueuedPacket(queue, packet_id, hw_protocol, hook, mark, payload, length)


def _u32(value: bytes | None, default: int) -> int:
    return _U32.unpack_from(value)[0] if value is not None and len(value) >= _U32.size else default
