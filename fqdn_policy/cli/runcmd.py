"""`fqdn-policy run`: the agent. Its flags are the components' own settings (fqdn_policy.settings)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fqdn_policy import logs
from fqdn_policy.agent import eventloop
from fqdn_policy.agent.config import AgentConfig
from fqdn_policy.agent.runtime import Agent, StartupError
from fqdn_policy.cli.exitcodes import EXIT_OK, EXIT_RUNTIME, EXIT_USAGE
from fqdn_policy.settings import SettingError, add_flags, from_args
from fqdn_policy.sources.base import PolicySource, SourceConfigError
from fqdn_policy.sources.config import SourceConfig
from fqdn_policy.sources.filesource import FileSource


def add_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run", help="run the DNS proxy and enforcer", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_flags(run, SourceConfig)
    add_flags(run, AgentConfig)
    run.set_defaults(handler=run_agent)


def run_agent(args: argparse.Namespace) -> int:
    try:  # refusals that need more than one flag, or a whole component, to see
        source_config = from_args(SourceConfig, args)
        config = from_args(AgentConfig, args)
    except SettingError as error:
        print(f"fqdn-policy run: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    logs.configure()
    try:
        source = policy_source(source_config)
    except SourceConfigError as error:
        print(f"fqdn-policy: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        eventloop.run(Agent(config, source).run_forever(), config.event_loop)
    except StartupError as error:
        logs.get("fqdn_policy.agent").error("agent.start_failed", error=str(error))
        print(f"fqdn-policy: {error}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


def policy_source(config: SourceConfig) -> PolicySource:
    if not config.kubernetes:
        assert config.policy is not None  # SourceConfig: exactly one of the two
        return FileSource(config.policy, config.watch_interval)
    # Imported here: standalone mode does not need the kubernetes client loaded.
    from fqdn_policy.sources.eventsink import EventRecorder
    from fqdn_policy.sources.kubeapi import api_client, list_calls, node_name
    from fqdn_policy.sources.kubesource import KubernetesSource

    node = node_name()
    client, choice = api_client(config.kubeconfig)
    events = EventRecorder(client, node)
    host = client.configuration.host
    return KubernetesSource(
        list_calls(client, node),
        description=f"kubernetes {host} node {node} (configuration: {choice.describe()})",
        notices=events.record,
        close_notices=events.close,
    )
