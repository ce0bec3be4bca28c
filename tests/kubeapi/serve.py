"""Runs the fake API server as a process (in a lab namespace), and drives it from another.

    python -m tests.kubeapi.serve --listen 10.244.1.1:6443 --token T --seed seed.json
    python -m tests.kubeapi.serve --control http://10.244.1.1:6443 put fqdnnetworkpolicies '{...}'
    python -m tests.kubeapi.serve --control URL delete pods default/curl-client
    python -m tests.kubeapi.serve --control URL expire|drop|bookmark|events   (events: prints them)
    python -m tests.kubeapi.serve --listen ... --tls-cert CERT --tls-key KEY   (HTTPS)
    python -m tests.kubeapi.serve --control URL wait

`seed.json` is a list of {"resource": plural, "object": {...}}.
"""

from __future__ import annotations

import argparse
import json
import signal
import ssl
import sys
import time
import urllib.request
from pathlib import Path

from tests.kubeapi.server import FakeApiServer


def serve(listen: str, token: str | None, seed: Path | None, tls: tuple[str, str] | None = None) -> None:
    host, _, port = listen.rpartition(":")
    server = FakeApiServer(host.strip("[]"), int(port), token, tls)
    if seed:
        for item in json.loads(seed.read_text()):
            server.cluster.put(item["resource"], item["object"])
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


def control(url: str, command: list[str]) -> None:
    """`url` may be https with the lab's self-signed certificate, not verified: a test drives its own fake."""
    context = ssl._create_unverified_context() if url.startswith("https") else None
    if command[0] == "wait":
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(
                    f"{url}/_fake/bookmark", data=b"null", timeout=1, context=context
                ).read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    if command[0] == "put":
        path, body = f"put/{command[1]}", command[2].encode()
    elif command[0] == "delete":
        path, body = f"delete/{command[1]}/{command[2]}", b"null"
    else:
        path, body = command[0], b"null"
    request = urllib.request.Request(
        f"{url}/_fake/{path}", data=body, headers={"Content-Type": "application/json"}
    )
    print(urllib.request.urlopen(request, timeout=5, context=context).read().decode())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen")
    parser.add_argument("--token")
    parser.add_argument("--seed", type=Path)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--control")
    parser.add_argument("command", nargs="*")
    args = parser.parse_args()
    if args.control:
        control(args.control, args.command)
    else:
        tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
        serve(args.listen, args.token, args.seed, tls)


if __name__ == "__main__":
    main()
