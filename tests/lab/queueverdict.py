"""Gives the verdicts for one NFQUEUE queue, as the agent's SNI check will; prints one JSON line a packet.

    python -m tests.lab.queueverdict QUEUE --mark 0x4 --seconds 10

Binds the queue (printing {"event": "bound"} once it is), then for every queued IPv4/IPv6 TCP packet:
one without TCP payload (the handshake's last ACK, a FIN) is accepted as it is; one with payload is
given NF_REPEAT with `--mark`, so the chain runs again from its top and its mark rules decide. Each
line says the packet id, its TCP payload (hex) and the verdict. Exits after `--seconds`.
"""

from __future__ import annotations

import argparse
import json
import select
import struct
import time
from collections.abc import Sequence

from fqdn_policy.enforcer.nfqueuesocket import NfqueueSocket
from fqdn_policy.enforcer.nfqueuewire import NF_ACCEPT, NF_REPEAT, QueuedPacket


def tcp_payload(packet: bytes) -> bytes | None:
    """The TCP payload of an IPv4 or IPv6 packet (no IPv6 extension headers); None if not TCP."""
    version = packet[0] >> 4 if packet else 0
    if version == 4 and len(packet) >= 20 and packet[9] == 6:
        l4 = packet[(packet[0] & 0x0F) * 4 : struct.unpack_from("!H", packet, 2)[0]]
    elif version == 6 and len(packet) >= 40 and packet[6] == 6:
        l4 = packet[40 : 40 + struct.unpack_from("!H", packet, 4)[0]]
    else:
        return None
    return l4[(l4[12] >> 4) * 4 :] if len(l4) >= 20 else None


def answer(queue: NfqueueSocket, packet: QueuedPacket, mark: int) -> dict[str, object]:
    payload = tcp_payload(packet.payload)
    if payload:
        queue.verdict(packet.packet_id, NF_REPEAT, mark)
        verdict = "repeat"
    else:
        queue.verdict(packet.packet_id, NF_ACCEPT)
        verdict = "accept"
    hexed = payload.hex() if payload is not None else None
    return {"id": packet.packet_id, "hook": packet.hook, "tcp_payload": hexed, "verdict": verdict}


def run(queue_number: int, mark: int, seconds: float) -> None:
    queue = NfqueueSocket(queue_number)
    queue.bind()
    print(json.dumps({"event": "bound"}), flush=True)
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            select.select([queue], [], [], min(left, 0.2))
            for packet in queue.receive():
                print(json.dumps(answer(queue, packet, mark)), flush=True)
    finally:
        queue.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab.queueverdict")
    p.add_argument("queue", type=int)
    p.add_argument("--mark", type=lambda text: int(text, 0), required=True)
    p.add_argument("--seconds", type=float, default=10.0)
    a = p.parse_args(argv)
    run(a.queue, a.mark, a.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
