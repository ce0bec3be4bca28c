"""The `fqdn-policy` command."""

from __future__ import annotations

import argparse
import importlib.metadata
import ipaddress
import sys
from pathlib import Path

from fqdn_policy import logs
from fqdn_policy.agent import eventloop
from fqdn_policy.agent.dnsguard import DnsGuard
from fqdn_policy.agent.eventloop import EventLoop
from fqdn_policy.agent.runtime import DEFAULT_METRICS, GC_THRESHOLD, Agent, AgentConfig, StartupError
from fqdn_policy.cli.agentclient import DEFAULT_URL
from fqdn_policy.cli.explaincmd import run_explain
from fqdn_policy.cli.statuscmd import run_status
from fqdn_policy.dnsproxy.ratelimit import DEFAULT_RATE
from fqdn_policy.dnsproxy.server import TcpLimits
from fqdn_policy.dnsproxy.upstream import DEFAULT_MAX_IN_FLIGHT, UpstreamAddress
from fqdn_policy.enforcer import ruleset
from fqdn_policy.enforcer.dnsredirect import DEFAULT_DNS_TABLE
from fqdn_policy.enforcer.guard import DEFAULT_GUARD_MARK, guard_table, validate_mark
from fqdn_policy.enforcer.nft import Nft, NftError
from fqdn_policy.enforcer.refresh import Refresh
from fqdn_policy.ops.decisionlog import DEFAULT_LINE_RATE, DEFAULT_WINDOW, LogMode
from fqdn_policy.policy.diagnose.explain import PROTOCOLS
from fqdn_policy.policy.spec import crd
from fqdn_policy.policy.state.allowtable import DEFAULT_MAX_ADDRESSES_PER_NAME
from fqdn_policy.policy.state.budget import DEFAULT_MAX_ENTRIES, DEFAULT_MAX_ENTRIES_PER_POD
from fqdn_policy.policy.state.ttl import (
    DEFAULT_MAX_TTL,
    DEFAULT_MIN_TTL,
    DEFAULT_REFRESH_SLACK,
    MAX_REFRESH_SLACK,
)
from fqdn_policy.sources.base import PolicySource, SourceConfigError
from fqdn_policy.sources.fileloader import PolicyFileError, load_file, pattern_warnings
from fqdn_policy.sources.filesource import DEFAULT_WATCH_INTERVAL, FileSource

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3


def host_port(text: str) -> tuple[str, int]:
    """IP:PORT or [IPv6]:PORT; a bare address means port 53."""
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not IP:PORT, [IPv6]:PORT or an IP address") from None
    return host, number


def metrics_address(text: str) -> tuple[str, int] | None:
    """IP:PORT, [IPv6]:PORT, or `off`."""
    if text == "off":
        return None
    has_port = "]:" in text if text.startswith("[") else text.count(":") == 1
    if not has_port:  # unlike DNS there is no usual port to assume
        raise argparse.ArgumentTypeError(f"{text!r} is not IP:PORT, [IPv6]:PORT or off")
    return host_port(text)


def network(text: str) -> str:
    try:
        return ipaddress.ip_network(text, strict=False).compressed
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an address or CIDR range") from None


def nflog_group(text: str) -> int | None:
    if text == "off":
        return None
    try:
        group = int(text)
        if not 0 <= group <= 65535:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a group number 0-65535 or 'off'") from None
    return group


def positive_int(text: str) -> int:
    try:
        value = int(text)
        if value < 1:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1") from None
    return value


def line_rate(text: str) -> float:
    try:
        value = float(text)
        if not value >= 0 or value == float("inf"):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of lines per second (0 = no limit)"
        ) from None
    return value


def port_number(text: str) -> int:
    try:
        number = int(text)
        if not 0 < number < 65536:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)") from None
    return number


def guard_mark(text: str) -> int:
    try:
        return validate_mark(int(text, 0))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None


def _version() -> str:
    try:
        return importlib.metadata.version("fqdn-policy")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    # `@FILE` reads more arguments from FILE, one per line: how the DaemonSet takes its ConfigMap.
    parser = argparse.ArgumentParser(prog="fqdn-policy", description=__doc__, fromfile_prefix_chars="@")
    parser.add_argument("--version", action="version", version=f"fqdn-policy {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    d = argparse.ArgumentDefaultsHelpFormatter

    run = sub.add_parser("run", help="run the DNS proxy and enforcer", formatter_class=d)
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--policy", type=Path, help="YAML file of FQDNNetworkPolicy and Pod documents (standalone mode)"
    )
    source.add_argument(
        "--kubernetes",
        action="store_true",
        help="watch FQDNNetworkPolicies, NetworkPolicies and this node's Pods (NODE_NAME) on the API server",
    )
    run.add_argument(
        "--kubeconfig",
        type=Path,
        help="with --kubernetes: the kubeconfig file to use; without it $KUBECONFIG, then the pod's "
        "in-cluster service account, then ~/.kube/config (kubectl's order)",
    )
    run.add_argument(
        "--listen",
        type=host_port,
        action="append",
        help="address to serve DNS on, UDP and TCP (repeatable; default 127.0.0.1:53)",
    )
    run.add_argument(
        "--upstream",
        type=host_port,
        action="append",
        required=True,
        help="upstream resolver IP:PORT (repeatable: tried in turn when one does not answer)",
    )
    run.add_argument("--table", default=ruleset.DEFAULT_TABLE, help="name of the inet table this agent owns")
    run.add_argument(
        "--min-ttl",
        type=int,
        default=DEFAULT_MIN_TTL,
        help="shortest time (s) an answered address stays allowed",
    )
    run.add_argument(
        "--max-ttl",
        type=int,
        default=DEFAULT_MAX_TTL,
        help="longest time (s) an answered address stays allowed",
    )
    run.add_argument(
        "--refresh-slack",
        type=float,
        default=DEFAULT_REFRESH_SLACK,
        help=f"fraction of its timeout (at most {MAX_REFRESH_SLACK} s) an element outlives its answer, so "
        "repeated answers need no kernel write; 0 writes exact timeouts",
    )
    run.add_argument(
        "--max-addresses-per-name",
        type=int,
        default=DEFAULT_MAX_ADDRESSES_PER_NAME,
        help="addresses kept per pod and name; the oldest are dropped beyond it (logged)",
    )
    run.add_argument(
        "--max-entries-per-pod",
        type=positive_int,
        default=DEFAULT_MAX_ENTRIES_PER_POD,
        help="live allowed (name, address) entries one pod may hold; beyond it its soonest-ending "
        "entries are evicted (dns.budget_exceeded, docs/semantics.md)",
    )
    run.add_argument(
        "--max-entries",
        type=positive_int,
        default=DEFAULT_MAX_ENTRIES,
        help="live allowed (pod, name, address) entries of the whole agent; beyond it the soonest-ending "
        "entries of the pod holding the most are evicted",
    )
    run.add_argument(
        "--exempt",
        type=network,
        action="append",
        default=[],
        help="destination range never enforced, e.g. the cluster's pod and service ranges (repeatable)",
    )
    run.add_argument(
        "--protect",
        type=network,
        action="append",
        default=[],
        help="range answers may point at but never gets allowed, besides loopback, link-local "
        "and the node's own addresses (repeatable)",
    )
    run.add_argument(
        "--upstream-timeout", type=float, default=1.0, help="seconds to wait for one upstream attempt"
    )
    run.add_argument(
        "--attempts", type=int, default=3, help="upstream attempts before the client gets SERVFAIL"
    )
    run.add_argument(
        "--watch-interval",
        type=float,
        default=DEFAULT_WATCH_INTERVAL,
        help="seconds between checks of the policy file",
    )
    run.add_argument(
        "--watchdog-interval",
        type=float,
        default=1.0,
        help="seconds between checks that the nftables table is intact (it is rebuilt if not)",
    )

    run.add_argument(
        "--log-decisions",
        choices=[m.value for m in LogMode],
        default=LogMode.CHANGES.value,
        help="all: a line per lookup; changes: a line per kernel write or failure and per new "
        "(pod, name, outcome) in a window, repeats counted in a dns.repeated line; none: failures only",
    )
    run.add_argument(
        "--log-window", type=float, default=DEFAULT_WINDOW, help="seconds over which repeats are counted"
    )
    run.add_argument(
        "--log-rate",
        type=line_rate,
        default=DEFAULT_LINE_RATE,
        help="decision lines per second per pod (bursts of twice that); beyond it lines are folded: "
        "counted in dns.decisions_folded lines every 10 s and on /metrics; 0 = no limit",
    )
    run.add_argument(
        "--max-in-flight",
        type=int,
        default=DEFAULT_MAX_IN_FLIGHT,
        help="unanswered upstream queries at once; beyond it clients get SERVFAIL",
    )

    run.add_argument(
        "--client-rate",
        type=float,
        default=DEFAULT_RATE,
        help="UDP queries per second one client may send (bursts of twice that); beyond it REFUSED; "
        "0 = no limit",
    )

    run.add_argument(
        "--dns-service",
        type=host_port,
        action="append",
        default=[],
        help="cluster DNS service address (IP or IP:PORT, repeatable): pods' UDP and TCP DNS to it is "
        "DNATed to the first --listen address of its family while the agent runs (docs/kubernetes.md)",
    )
    run.add_argument(
        "--dns-table",
        default=DEFAULT_DNS_TABLE,
        help="name of the inet table holding the DNS redirect (removed when the agent stops)",
    )
    run.add_argument(
        "--mode",
        choices=[m.value for m in ruleset.Mode],
        default=ruleset.Mode.ENFORCE.value,
        help="enforce: deny what no rule allows; audit: decide, write and log everything, but accept "
        "denied connections and log each as egress.would_drop (docs/drops.md)",
    )
    run.add_argument(
        "--reject",
        action="store_true",
        help="deny with a fast failure (TCP reset, ICMP administratively prohibited) instead of a "
        "silent drop, for every pod; per policy: annotation fqdn.policy.dev/on-deny: reject",
    )
    run.add_argument(
        "--nflog-group",
        type=nflog_group,
        default=ruleset.DEFAULT_NFLOG_GROUP,
        help="NFLOG group the deny rules log to and the agent reads (egress.dropped lines); 'off' = none",
    )
    run.add_argument(
        "--drop-log-rate",
        type=positive_int,
        default=ruleset.DEFAULT_LOG_RATE,
        help="denied packets logged per second (bursts of twice that); beyond it they are denied "
        "and counted (egress.unlogged), not logged",
    )
    run.add_argument(
        "--metrics",
        type=metrics_address,
        default=f"{DEFAULT_METRICS[0]}:{DEFAULT_METRICS[1]}",  # a string: parsed by type, shown by --help
        metavar="IP:PORT|off",
        help="where to serve /metrics, /healthz, /readyz, /state and /explain over HTTP (docs/operations.md)",
    )
    run.add_argument(
        "--public-metrics",
        type=metrics_address,
        default="off",
        metavar="IP:PORT|off",
        help="a second listener serving only /metrics, for a Prometheus on another host (the node's "
        "address in a DaemonSet); /state and /explain stay on --metrics (docs/operations.md)",
    )
    run.add_argument(
        "--guard-mark",
        type=guard_mark,
        default=DEFAULT_GUARD_MARK,
        help="packet-mark bit the main table sets and the guard table checks, so enforced pods stay "
        "closed if the main table is deleted; must be a bit no other component sets "
        "(docs/failure-modes.md); 0 = no guard table",
    )
    run.add_argument(
        "--element-refresh",
        choices=["auto", *(r.value for r in Refresh)],
        default="auto",
        help="how an allowed element gets a later timeout: auto (probed at start: in-place update on "
        "Linux 6.10+, else replace = delete and add in one transaction), or insist on one "
        "(docs/kernels.md)",
    )
    run.add_argument(
        "--tcp-idle-timeout",
        type=float,
        default=TcpLimits().idle_timeout,
        help="seconds a DNS-over-TCP client has to send each whole query before it is disconnected",
    )
    run.add_argument(
        "--event-loop",
        choices=[k.value for k in EventLoop],
        default=EventLoop.ASYNCIO.value,
        help="the event loop: the standard one, or uvloop (opt-in: no measured gain here, and one e2e "
        "test fails intermittently with it; docs/benchmarks.md)",
    )
    run.add_argument(
        "--gc-young",
        type=positive_int,
        default=GC_THRESHOLD,
        help="allocations between two young-generation collections: higher = fewer, longer pauses",
    )
    run.add_argument(
        "--tcp-max-connections",
        type=int,
        default=TcpLimits().max_connections,
        help="open DNS-over-TCP connections per listen address; beyond it new ones are closed at once",
    )

    check = sub.add_parser("check", help="validate a policy file (exit 0 valid, 1 invalid)")
    check.add_argument("file", type=Path)

    guard = sub.add_parser(
        "dns-guard",
        help="remove the DNS redirect when no agent listens where it points (runs beside the agent)",
        formatter_class=d,
    )
    guard.add_argument("--dns-table", default=DEFAULT_DNS_TABLE, help="the redirect table to watch")
    guard.add_argument("--interval", type=float, default=1.0, help="seconds between looks")

    crd_cmd = sub.add_parser(
        "crd", help="print the FQDNNetworkPolicy CustomResourceDefinition generated from the schema"
    )
    crd_cmd.add_argument("--output", "-o", type=Path, help="write to this file instead of stdout")
    crd_cmd.add_argument(
        "--fields", action="store_true", help="print the spec's fields and checks as a Markdown table instead"
    )

    status = sub.add_parser(
        "status",
        help="per pod, what the kernel allows now, with names, ports and time left",
        formatter_class=d,
    )
    status.add_argument("-o", "--output", choices=["table", "json"], default="table")
    status.add_argument("--table", default=ruleset.DEFAULT_TABLE, help="the agent's inet table")
    status.add_argument("--agent", default=DEFAULT_URL, help="the agent's --metrics address, as a URL")

    explain = sub.add_parser(
        "explain",
        help="would a connection be allowed, by which policy and rule, or why not "
        "(exit 0 allowed, 4 dropped, 5 unknown pod; docs/operations.md)",
    )
    explain.add_argument(
        "--pod", required=True, metavar="NAMESPACE/NAME", help="the pod (a bare NAME means namespace default)"
    )
    explain.add_argument("--host", required=True, metavar="NAME", help="the DNS name the pod connects to")
    explain.add_argument("--port", type=port_number, help="destination port (default: any)")
    explain.add_argument(
        "--protocol",
        type=str.lower,
        choices=list(PROTOCOLS),
        help="tcp, udp or sctp (default tcp when --port is given)",
    )
    explain.add_argument(
        "--policy", type=Path, help="decide from this policy file instead of asking the running agent"
    )
    explain.add_argument("-o", "--output", choices=["text", "json"], default="text")
    explain.add_argument(
        "--table",
        default=ruleset.DEFAULT_TABLE,
        help=f"the agent's inet table (default {ruleset.DEFAULT_TABLE})",
    )
    explain.add_argument(
        "--agent",
        default=DEFAULT_URL,
        help=f"the agent's --metrics address, as a URL (default {DEFAULT_URL})",
    )

    teardown = sub.add_parser("teardown", help="delete this project's nftables table (lifts all enforcement)")
    teardown.add_argument("--table", default=ruleset.DEFAULT_TABLE)
    teardown.add_argument("--dns-table", default=DEFAULT_DNS_TABLE)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        return _check(args.file)
    if args.command == "teardown":
        return _teardown([args.table, guard_table(args.table), args.dns_table])
    if args.command == "crd":
        return _crd(args.output, args.fields)
    if args.command == "dns-guard":
        logs.configure()
        DnsGuard(args.dns_table, args.interval).run()
        return EXIT_OK
    if args.command == "status":
        return run_status(args.table, args.agent, args.output)
    if args.command == "explain":
        pod = args.pod if "/" in args.pod else f"default/{args.pod}"
        return run_explain(
            pod, args.host, args.protocol, args.port, args.policy, args.agent, args.table, args.output
        )
    return _run(args)


def _check(path: Path) -> int:
    try:
        policy_set = load_file(path)
    except PolicyFileError as error:
        print(error, file=sys.stderr)
        return EXIT_INVALID
    # Warnings do not make the file invalid: these patterns can be meant (docs/semantics.md).
    warnings = pattern_warnings(policy_set, str(path), path.read_text(encoding="utf-8"))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    noted = f", {len(warnings)} warnings" if warnings else ""
    print(f"{path}: OK: {len(policy_set.policies)} policies, {len(policy_set.pods)} pods{noted}")
    return EXIT_OK


def _crd(output: Path | None, fields: bool) -> int:
    text = crd.field_table() if fields else crd.render()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
    return EXIT_OK


def _teardown(tables: list[str]) -> int:
    try:
        nft = Nft()
        # One transaction: the guard table left alone for a moment would close every enforced pod.
        present = [t for t in tables if nft.table_exists(t)]
        nft.run([c for t in present for c in ruleset.delete_table(t)])
        for name in tables:
            verb = "deleted table" if name in present else "no table"
            print(f"{verb} {ruleset.FAMILY} {name}")
    except NftError as error:
        print(f"teardown failed: {error}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


def _source(args: argparse.Namespace) -> PolicySource:
    if not args.kubernetes:
        return FileSource(args.policy, args.watch_interval)
    # Imported here: standalone mode does not need the kubernetes client loaded.
    from fqdn_policy.sources.eventsink import EventRecorder
    from fqdn_policy.sources.kubeapi import api_client, list_calls, node_name
    from fqdn_policy.sources.kubesource import KubernetesSource

    node = node_name()
    client, choice = api_client(args.kubeconfig)
    events = EventRecorder(client, node)
    host = client.configuration.host
    return KubernetesSource(
        list_calls(client, node),
        description=f"kubernetes {host} node {node} (configuration: {choice.describe()})",
        notices=events.record,
        close_notices=events.close,
    )


def _run(args: argparse.Namespace) -> int:
    if args.kubeconfig and not args.kubernetes:
        print("fqdn-policy: --kubeconfig needs --kubernetes", file=sys.stderr)
        return EXIT_USAGE
    logs.configure()
    try:
        source = _source(args)
    except SourceConfigError as error:
        print(f"fqdn-policy: {error}", file=sys.stderr)
        return EXIT_USAGE
    config = AgentConfig(
        listen=args.listen or [("127.0.0.1", 53)],
        upstreams=[UpstreamAddress(h, p) for h, p in args.upstream],
        table=args.table,
        min_ttl=args.min_ttl,
        max_ttl=args.max_ttl,
        refresh_slack=args.refresh_slack,
        max_addresses_per_name=args.max_addresses_per_name,
        max_entries_per_pod=args.max_entries_per_pod,
        max_entries=args.max_entries,
        exempt=args.exempt,
        protected=args.protect,
        upstream_timeout=args.upstream_timeout,
        attempts=args.attempts,
        watchdog_interval=args.watchdog_interval,
        log_decisions=LogMode(args.log_decisions),
        log_window=args.log_window,
        log_rate=args.log_rate,
        max_in_flight=args.max_in_flight,
        client_rate=args.client_rate,
        dns_services=args.dns_service,
        dns_table=args.dns_table,
        mode=ruleset.Mode(args.mode),
        reject=args.reject,
        nflog_group=args.nflog_group,
        drop_log_rate=args.drop_log_rate,
        metrics=args.metrics,
        public_metrics=args.public_metrics,
        guard_mark=args.guard_mark,
        tcp_limits=TcpLimits(idle_timeout=args.tcp_idle_timeout, max_connections=args.tcp_max_connections),
        gc_young=args.gc_young,
        element_refresh=args.element_refresh,
    )
    try:
        eventloop.run(Agent(config, source).run_forever(), EventLoop(args.event_loop))
    except StartupError as error:
        logs.get("fqdn_policy.agent").error("agent.start_failed", error=str(error))
        print(f"fqdn-policy: {error}", file=sys.stderr)
        return EXIT_RUNTIME
    except ValueError as error:
        print(f"fqdn-policy: {error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
