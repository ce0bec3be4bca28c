"""Replays the GKE article on this machine, inside throwaway network namespaces.

Builds a node with two pods and a fake internet (tests.lab), runs the real `fqdn-policy run` with
config/policy.yaml in the node, and shows, step by step, what each pod can resolve and reach, with the
agent's own log lines (decisions, drops, would-drops) rendered for reading. First in audit mode (the
staged rollout: nothing is dropped, would-drops are logged), then enforced, then with the policy
reloaded. Exits 1 if any step's verdict is not the expected one. Nothing outside the namespaces it
creates is touched; they are deleted at the end.

    scripts/demo.py [--plain]      (--plain: no colours)
"""

from __future__ import annotations

import argparse
import os
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
SHOWN = ("dns.decision", "egress.dropped", "egress.would_drop", "policy.loaded", "policy.reconciled")
DROP_TIMEOUT = 1.5  # seconds a connect waits before calling it a timeout (a drop never answers)


class Screen:
    def __init__(self, colour: bool) -> None:
        codes = {"green": "32", "red": "31", "yellow": "33", "dim": "2", "bold": "1"}
        self.c = {k: (f"\033[{v}m" if colour else "") for k, v in codes.items()}
        self.reset = "\033[0m" if colour else ""
        self.failures = 0

    def paint(self, colour: str, text: str) -> str:
        return f"{self.c[colour]}{text}{self.reset}"

    def say(self, text: str = "") -> None:
        print(text, flush=True)


def describe(entry: dict[str, Any]) -> tuple[str, str] | None:
    """One agent log line as (colour, readable text), or None for lines the demo does not show."""
    event = entry.get("event")
    if event == "dns.decision":
        outcome = entry.get("outcome")
        head = f"decision  {entry.get('pod')} asked {entry.get('qname')} ({entry.get('qtype')}): {outcome}"
        if outcome == "allowed":
            rules = ", ".join(entry.get("rules", []))
            allowed = ", ".join(f"{a['address']} for {a['timeout']} s" for a in entry.get("allowed", []))
            grants = ", ".join(entry.get("grants", []))
            return "green", f"{head} by {rules}: {allowed or 'already allowed'} on {grants}"
        return "dim", head
    if event in ("egress.dropped", "egress.would_drop"):
        verb = {"drop": "DROPPED", "reject": "REJECTED"}.get(
            entry.get("verdict", ""), "WOULD DROP (audit, accepted)"
        )
        names = ", ".join(_name_text(n) for n in entry.get("names", []))
        port = entry.get("port")
        where = f"{entry.get('destination')} {entry.get('protocol')}{f'/{port}' if port else ''}"
        because = f"{entry.get('reason')}: {names}" if names else entry.get("explanation", "")
        colour = "red" if event == "egress.dropped" else "yellow"
        return colour, f"{verb}  {entry.get('pod')} -> {where}  [{because}]"
    if event == "policy.loaded":
        return "dim", f"policy reloaded ({entry.get('reason')}): {entry.get('policies')} policies"
    if event == "policy.reconciled":
        written, deleted = entry.get("elements_written"), entry.get("elements_deleted")
        return "dim", f"sets updated from what pods already resolved: +{written} -{deleted} elements"
    return None


def _name_text(name: dict[str, Any]) -> str:
    if not name["allowed"]:
        return f"{name['name']} (not allowed)"
    return f"{name['name']} (allowed on {', '.join(name.get('grants', []))})"


class Demo:
    def __init__(self, env: AgentLab, screen: Screen) -> None:
        self.env = env
        self.screen = screen
        self.seen = 0

    def show_logs(self, wait_for_event: str | None = None) -> None:
        """Print the agent's new log lines; first wait (up to 2 s) for an event starting with
        `wait_for_event` (decision lines are flushed twice a second)."""
        deadline = time.monotonic() + 2.0
        while True:
            new = [e for e in self.env.logs() if e.get("event") in SHOWN][self.seen :]
            if wait_for_event is None or any(e["event"].startswith(wait_for_event) for e in new):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.seen += len(new)
        for entry in new:
            shown = describe(entry)
            if shown is not None:
                self.screen.say(f"      {self.screen.paint(shown[0], 'log: ' + shown[1])}")

    def lookup(self, pod: str, label: str, name: str) -> str:
        answer = self.env.dns(pod, name)
        addresses = [a["data"] for a in answer["answers"]]
        self.screen.say(f"  {self.screen.paint('bold', label)}$ nslookup {name}  ->  {', '.join(addresses)}")
        self.show_logs("dns.decision")
        return addresses[0]

    def connect(self, pod: str, label: str, target: str, address: str, port: int, expect: str) -> None:
        probe = self.env.probe(pod, "tcp", address, str(port), "--timeout", str(DROP_TIMEOUT))
        result = probe["result"]
        ok = result == expect
        self.screen.failures += not ok
        colour = {"connected": "green", "refused": "yellow"}.get(result, "red")
        verdict = self.screen.paint(colour, result)
        if result != "connected":
            verdict += self.screen.paint("dim", f" after {probe['elapsed_ms'] / 1000:.3f} s")
        note = "" if ok else self.screen.paint("red", f"   (expected {expect}!)")
        self.screen.say(f"  {self.screen.paint('bold', label)}$ connect {target}:{port}  ->  {verdict}{note}")
        if pod == "pod-a":
            self.show_logs(None if result == "connected" else "egress.")
        else:
            self.show_logs()

    def step(self, pod: str, label: str, name: str, port: int, expect: str) -> None:
        address = self.lookup(pod, label, name)
        self.connect(pod, label, name, address, port, expect)


def replay(env: AgentLab, screen: Screen, documents: list[Any]) -> None:
    say, dim = screen.say, (lambda text: screen.say(screen.paint("dim", text)))
    demo = Demo(env, screen)
    curl, other = "curl-client", "other"

    say(screen.paint("bold", "1. Staged rollout: --mode audit (nothing is dropped, would-drops are logged)"))
    env.start_agent("--mode", "audit")
    demo.step("pod-a", curl, "www.cloudflare.com", 443, "connected")
    dim("  the connection went through; the agent logged what enforcement would have done\n")
    assert env.stop_agent() == 0

    say(screen.paint("bold", "2. Enforced: the same agent restarted without --mode audit (sets adopted)"))
    env.start_agent()
    demo.step("pod-a", curl, "www.google.com", 443, "connected")
    demo.step("pod-a", curl, "api.yourdomain.com", 443, "connected")
    demo.step("pod-a", curl, "www.cloudflare.com", 443, "timeout")
    dim("  resolution is never blocked; the connection is dropped, so it times out")
    demo.connect("pod-a", curl, "www.google.com", "198.51.100.10", 80, "timeout")
    dim("  port 80 is not in the rule (TCP 443 only)")
    demo.connect("pod-a", curl, "2001:db8:100::20 (hard-coded)", "2001:db8:100::20", 443, "timeout")
    dim("  an address the pod never looked up through the proxy\n")
    say(f"{other} (no policy selects it):")
    demo.step("pod-b", other, "www.cloudflare.com", 443, "connected")

    say(screen.paint("bold", "\n3. The policy re-applied without ports (SIGHUP)"))
    for doc in documents:
        if doc.get("kind") == "FQDNNetworkPolicy":
            for rule in doc["spec"]["egress"]:
                rule.pop("ports", None)
    env.write_policy(documents)
    assert env.agent is not None
    env.agent.send_signal(signal.SIGHUP)
    wait_for(lambda: env.has_log("policy.loaded"), 5, "reload")
    demo.show_logs()
    demo.connect("pod-a", curl, "www.google.com", "198.51.100.10", 80, "connected")
    dim("  no new lookup was needed: the agent rewrote the sets from what the pod had resolved")

    say(screen.paint("bold", "\n4. Fast failure: the policy annotated fqdn.policy.dev/on-deny: reject"))
    for doc in documents:
        if doc.get("kind") == "FQDNNetworkPolicy":
            doc["metadata"]["annotations"] = {"fqdn.policy.dev/on-deny": "reject"}
    env.write_policy(documents)
    env.agent.send_signal(signal.SIGHUP)
    wait_for(lambda: env.count_log("policy.loaded") >= 2, 5, "reload")
    demo.show_logs()
    demo.connect("pod-a", curl, "www.cloudflare.com", "198.51.100.20", 443, "refused")
    dim("  refused at once (a TCP reset): the application gets an error instead of waiting for a timeout")
    env.stop_agent()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay the GKE article in network namespaces")
    parser.add_argument("--plain", action="store_true", help="no colours")
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # the lab runs its probes as `python -m tests.lab...`
    screen = Screen(colour=not args.plain and sys.stdout.isatty())
    documents: list[Any] = list(yaml.safe_load_all(POLICY.read_text()))
    started = time.monotonic()
    screen.say(
        f"{screen.paint('bold', 'fqdn-policy demo')}: the article's policy ({POLICY.relative_to(ROOT)}), "
        "in network namespaces"
    )
    screen.say("node: fqdn-policy is the pods' resolver; upstream is a fake internet on 198.51.100.53")
    screen.say("curl-client (app=curl-client) is selected by allow-out-fqdnnp; other is not\n")
    with Lab() as lab, tempfile.TemporaryDirectory() as tmp:
        env = AgentLab(lab, Path(tmp))
        env.write_policy(documents)
        with env.internet:
            replay(env, screen, documents)
            lines = len(env.logs())
    verdict = (
        screen.paint("green", "every step as expected")
        if not screen.failures
        else screen.paint("red", f"{screen.failures} step(s) not as expected")
    )
    screen.say(
        f"\n{verdict}; {time.monotonic() - started:.0f} s; namespaces removed. "
        f"The agent wrote {lines} JSON log lines (docs/drops.md shows them raw)."
    )
    return 0 if not screen.failures else 1


if __name__ == "__main__":
    sys.exit(main())
