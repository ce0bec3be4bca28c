"""fqdn_policy.sources.events: which notices become Events, and when a repeat patches the count (time passed in)."""

from datetime import UTC, datetime

from fqdn_policy.sources.events import (
    BURST,
    REFILL_SECONDS,
    REPEAT_INTERVAL,
    Create,
    EventBook,
    Notice,
    ObjectRef,
    Patch,
)

WALL = datetime(2026, 12, 2, 15, 0, 0, tzinfo=UTC)
REF = ObjectRef("fqdn.policy.dev/v1alpha1", "FQDNNetworkPolicy", "team-a", "allow-out", "uid-1", "7")


def notice(message="spec.egress[0]: bad", ref=REF, reason="PolicyRefused"):
    return Notice(ref, reason, message)


def test_first_notice_creates_an_event_in_the_objects_namespace_from_this_node():
    action = EventBook("node-1", "a").note(notice(), WALL, 0.0)
    assert isinstance(action, Create) and action.namespace == "team-a"
    body = action.body
    assert body["involvedObject"] == {
        "apiVersion": "fqdn.policy.dev/v1alpha1",
        "kind": "FQDNNetworkPolicy",
        "namespace": "team-a",
        "name": "allow-out",
        "uid": "uid-1",
        "resourceVersion": "7",
    }
    assert body["source"] == {"component": "fqdn-policy", "host": "node-1"}
    assert (body["reason"], body["type"], body["count"]) == ("PolicyRefused", "Warning", 1)
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2026-12-02T15:00:00Z"
    assert body["metadata"]["name"].startswith("allow-out.")


def test_each_node_names_its_own_event():
    one = EventBook("node-1", "a").note(notice(), WALL, 0.0)
    two = EventBook("node-2", "a").note(notice(), WALL, 0.0)
    assert one.body["metadata"]["name"] != two.body["metadata"]["name"]


def test_a_repeat_is_counted_and_patched_at_most_once_per_interval():
    book = EventBook("node-1", "a")
    created = book.note(notice(), WALL, 0.0)
    assert book.note(notice(), WALL, 1.0) is None
    assert book.note(notice(), WALL, REPEAT_INTERVAL - 1) is None
    patch = book.note(notice(), WALL, REPEAT_INTERVAL + 1)
    assert isinstance(patch, Patch)
    assert (patch.namespace, patch.name) == ("team-a", created.body["metadata"]["name"])
    assert patch.body == {"count": 4, "lastTimestamp": "2026-12-02T15:00:00Z"}
    assert book.note(notice(), WALL, REPEAT_INTERVAL + 2) is None


def test_another_message_or_reason_is_another_event():
    book = EventBook("node-1", "a")
    assert isinstance(book.note(notice(), WALL, 0.0), Create)
    assert isinstance(book.note(notice("other problem"), WALL, 0.0), Create)
    assert isinstance(book.note(notice(reason="NotComposed"), WALL, 0.0), Create)


def test_creates_draw_on_one_bucket_refilled_over_time():
    book = EventBook("node-1", "a")
    refs = [ObjectRef("v1", "K", "ns", f"p{i}", f"u{i}") for i in range(BURST + 2)]
    sent = [book.note(notice(ref=r), WALL, 0.0) for r in refs]
    assert sum(a is not None for a in sent) == BURST and book.suppressed == 2
    assert book.note(notice(ref=refs[-1]), WALL, REFILL_SECONDS / 2) is None
    assert isinstance(book.note(notice(ref=refs[-1]), WALL, REFILL_SECONDS * 1.01), Create)


def test_long_messages_are_cut_to_what_the_api_server_takes():
    action = EventBook("node-1", "a").note(notice("x" * 5000), WALL, 0.0)
    assert len(action.body["message"]) == 1024
