"""What deploy/monitoring/ asks of Prometheus, read from the files themselves (so a new alert or panel
is checked without touching the tests), and the metric names a PromQL expression uses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
# Grafana's variables, as Grafana would substitute them before sending a query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$node": ".*"}
# Series Prometheus makes itself for each scrape, not the agent.
SCRAPE_SERIES = {"up"}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_KEYWORDS |= {"and", "or", "unless", "inf", "nan"}


def prometheus_rule() -> dict[str, Any]:
    return yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())


def rule_groups() -> dict[str, Any]:
    """The PrometheusRule's spec as a Prometheus rule file (what the operator hands Prometheus)."""
    return {"groups": prometheus_rule()["spec"]["groups"]}


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups()["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads((MONITORING / "dashboard.json").read_text())


def grafana_query(text: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        text = text.replace(variable, value)
    return text


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every panel target and query variable, variables substituted;
    a `label_values(METRIC, LABEL)` variable becomes the selector Grafana sends for it."""
    out = [
        (panel["title"], grafana_query(target["expr"]))
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            (metric,) = re.fullmatch(r"label_values\((\w+), *\w+\)", variable["query"]["query"]).groups()
            out.append((f"variable {variable['name']}", metric))
    return out


def exported_names(exposition: str) -> set[str]:
    """The series names an agent's /metrics text can have, from its families (HELP and TYPE lines
    count: a family with no samples yet, like drops of a pod before any drop, is still exported)."""
    from prometheus_client.parser import text_string_to_metric_families

    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "summary": ("_count", "_sum"),
    }
    names = set()
    for family in text_string_to_metric_families(exposition):
        names.update(f"{family.name}{suffix}" for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (not functions, keywords, labels or durations)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        if word.lower() in _KEYWORDS or re.match(r"\s*\(", text[match.end() :]):
            continue
        names.add(word)
    return names
