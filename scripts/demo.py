"""Replays the GKE article on this machine, inside throwaway network namespaces.

Builds a node with two pods and a fake internet (tests.lab), runs the real `fqdn-policy run` with
config/policy.yaml in the node, and shows, step by step, what each pod can resolve and reach.
Nothing outside the namespaces it creates is touched; they are deleted at the end.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.agentlab import AgentLab, wait_for  # noqa: E402
from tests.lab.netlab import Lab  # noqa: E402

POLICY = ROOT / "config" / "policy.yaml"
GREEN, RED, DIM, BOLD, RESET = "\033[32m", "\033[31m", "\033[2m", "\033[1m", "\033[0m"


def say(text: str) -> None:
    print(text, flush=True)


def show_decision(env: AgentLab, seen: int) -> int:
    lines = [
        e for e in env.logs() if e.get("event") in ("dns.decision", "policy.loaded", "policy.reconciled")
    ]
    for entry in lines[seen:]:
        compact = {
            k: entry[k] for k in ("event", "pod", "qname", "outcome", "rules", "allowed") if k in entry
        }
        say(f"      {DIM}log: {json.dumps(compact)}{RESET}")
    return len(lines)


def step(env: AgentLab, pod: str, label: str, name: str, port: int, expect: str, seen: int) -> int:
    answer = env.dns(pod, name)
    time.sleep(0.6)  # decision lines are flushed twice a second
    addresses = [a["data"] for a in answer["answers"]]
    say(f"  {BOLD}{label}{RESET}$ nslookup {name}  ->  {answer['rcode']} {', '.join(addresses)}")
    seen = show_decision(env, seen)
    result = env.tcp(pod, addresses[0], port, timeout=2.0)
    ok = result == expect
    colour = GREEN if result == "connected" else RED
    say(
        f"  {BOLD}{label}{RESET}$ connect {name}:{port}  ->  {colour}{result}{RESET}"
        f"{'' if ok else f'   (expected {expect}!)'}"
    )
    return seen


def main() -> int:
    documents: list[Any] = list(yaml.safe_load_all(POLICY.read_text()))
    source = POLICY.relative_to(ROOT)
    say(f"{BOLD}fqdn-policy demo{RESET}: the article's policy ({source}), in network namespaces\n")
    with Lab() as lab, tempfile.TemporaryDirectory() as tmp:
        env = AgentLab(lab, Path(tmp))
        env.write_policy(documents)
        with env.internet:
            env.start_agent()
            say("node: fqdn-policy is the pods' resolver; upstream is a fake internet on 198.51.100.53\n")
            say("curl-client (app=curl-client, selected by allow-out-fqdnnp):")
            seen = step(env, "pod-a", "curl-client", "www.google.com", 443, "connected", 0)
            seen = step(env, "pod-a", "curl-client", "api.yourdomain.com", 443, "connected", seen)
            seen = step(env, "pod-a", "curl-client", "www.cloudflare.com", 443, "timeout", seen)
            say(f"  {DIM}resolution is never blocked; the connection is dropped, so it times out{RESET}")
            seen = step(env, "pod-a", "curl-client", "www.google.com", 80, "timeout", seen)
            say(f"  {DIM}port 80 is not in the rule (TCP 443 only){RESET}\n")
            say("other (no policy selects it):")
            seen = step(env, "pod-b", "other", "www.cloudflare.com", 443, "connected", seen)
            say("\nre-applying the policy without ports (SIGHUP):")
            for doc in documents:
                if doc.get("kind") == "FQDNNetworkPolicy":
                    for rule in doc["spec"]["egress"]:
                        rule.pop("ports", None)
            env.write_policy(documents)
            assert env.agent is not None
            env.agent.send_signal(signal.SIGHUP)
            wait_for(lambda: env.has_log("policy.loaded"), 5, "reload")
            seen = show_decision(env, seen)
            result = env.tcp("pod-a", "198.51.100.10", 80, timeout=2.0)
            colour = GREEN if result == "connected" else RED
            say(
                f"  {BOLD}curl-client{RESET}$ connect www.google.com:80  ->  {colour}{result}{RESET}"
                f"  {DIM}(no new lookup needed){RESET}"
            )
            start = time.monotonic()
            env.stop_agent()
            say(
                f"\nagent stopped cleanly in {time.monotonic() - start:.1f} s; namespaces removed. "
                f"Full JSON log lines: {len(env.logs())}."
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
