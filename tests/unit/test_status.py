"""`fqdn-policy status`'s document and table, from kernel elements and the agent's /state."""

import pytest

from fqdn_policy.cli.statuscmd import build_status, duration_text, render_table
from fqdn_policy.enforcer.inventory import ListedElement, parse_element

STATE = {
    "pods": [
        {"pod": "default/web", "ips": ["10.244.1.10"], "enforced": True, "policies": ["default/p"]},
        {"pod": "default/idle", "ips": ["10.244.1.12"], "enforced": True, "policies": ["default/p"]},
        {"pod": "default/free", "ips": ["10.244.1.11"], "enforced": False, "policies": []},
    ]
}
ELEMENTS = [
    ListedElement(("10.244.1.10", "198.51.100.10", "tcp", 443), 300, 250.4, "www.google.com"),
    ListedElement(("10.244.1.10", "198.51.100.30", None, None), 300, 61.0, "api.example.com"),
    ListedElement(("10.244.1.99", "198.51.100.20", "udp", None), 300, 5.0, ""),  # a deleted pod's
]


def test_with_the_agent_every_enforced_pod_is_listed_by_name():
    doc = build_status("fqdn_policy", ELEMENTS, STATE)
    assert doc["table"] == "inet fqdn_policy" and doc["elements"] == 3
    assert [p["pod"] for p in doc["pods"]] == ["default/idle", "default/web", None]
    web = doc["pods"][1]
    assert [(a["destination"], a["protocol"], a["port"], a["name"]) for a in web["allowed"]] == [
        ("198.51.100.30", None, None, "api.example.com"),
        ("198.51.100.10", "tcp", 443, "www.google.com"),
    ]
    assert doc["pods"][0]["allowed"] == []  # enforced, nothing allowed now
    assert doc["pods"][2]["ips"] == ["10.244.1.99"]


def test_without_the_agent_pods_are_their_addresses():
    doc = build_status("fqdn_policy", ELEMENTS, None)
    assert [(p["pod"], p["ips"]) for p in doc["pods"]] == [(None, ["10.244.1.10"]), (None, ["10.244.1.99"])]


def test_table_rendering():
    lines = render_table(build_status("fqdn_policy", ELEMENTS, STATE)).splitlines()
    assert lines[0].split() == ["POD", "POD", "ADDRESS", "DESTINATION", "PORT", "LEFT", "NAME"]
    assert lines[1].split() == ["default/idle", "10.244.1.12", "(nothing", "allowed", "now)"]
    assert lines[2].split() == [
        "default/web",
        "10.244.1.10",
        "198.51.100.30",
        "any",
        "1m01s",
        "api.example.com",
    ]
    assert lines[3].split() == [
        "default/web",
        "10.244.1.10",
        "198.51.100.10",
        "tcp/443",
        "4m10s",
        "www.google.com",
    ]
    assert lines[4].split() == ["(unknown", "pod)", "10.244.1.99", "198.51.100.20", "udp/any", "5s", "?"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.9, "59s"), (60, "1m00s"), (3599, "59m59s"), (3600, "1h00m"), (-3, "0s")],
)
def test_duration_text(seconds, text):
    assert duration_text(seconds) == text


@pytest.mark.parametrize(
    ("item", "listed"),
    [
        (
            {
                "elem": {
                    "val": {"concat": ["10.244.1.10", "198.51.100.10", "tcp", 443]},
                    "timeout": 300,
                    "expires": 299,
                    "comment": "www.google.com",
                }
            },
            ListedElement(("10.244.1.10", "198.51.100.10", "tcp", 443), 300, 299.0, "www.google.com"),
        ),
        (
            {"elem": {"val": {"concat": ["10.244.1.10", "198.51.100.11", "udp"]}, "timeout": 60}},
            ListedElement(("10.244.1.10", "198.51.100.11", "udp", None), 60, 60.0, ""),
        ),
        (
            {
                "elem": {
                    "val": {"concat": ["2001:db8:244::10", "2001:db8:100::10"]},
                    "timeout": 5,
                    "expires": 1,
                }
            },
            ListedElement(("2001:db8:244::10", "2001:db8:100::10", None, None), 5, 1.0, ""),
        ),
    ],
)
def test_parse_listed_element(item, listed):
    assert parse_element(item) == listed
