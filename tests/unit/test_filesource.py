"""Standalone mode's source: the policy file, polled and re-read on SIGHUP."""

import asyncio

import pytest
import yaml
from structlog.testing import capture_logs

from fqdn_policy.sources.base import SourceRefused
from fqdn_policy.sources.filesource import FileSource

POLICY = {
    "apiVersion": "fqdn.policy.dev/v1alpha1",
    "kind": "FQDNNetworkPolicy",
    "metadata": {"name": "p"},
    "spec": {"podSelector": {}, "egress": [{"matches": [{"name": "www.example.com"}]}]},
}


def write(path, *docs):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump_all(docs))
    tmp.replace(path)


def test_a_bad_file_refuses_the_start(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("kind: Nonsense\n")
    with pytest.raises(SourceRefused, match="policy file refused"):
        asyncio.run(FileSource(path, 0.02).first())


def test_changes_reloads_and_refusals(tmp_path):
    path = tmp_path / "policy.yaml"
    write(path, POLICY)

    async def scenario():
        source = FileSource(path, watch_interval=0.02)
        first = await source.first()
        assert len(first.policies) == 1
        write(path, POLICY, {**POLICY, "metadata": {"name": "q"}})
        update = await asyncio.wait_for(source.next(), 2)
        assert update.reason == "file changed" and len(update.policy_set.policies) == 2
        path.write_text("kind: Nonsense\n")  # refused, logged once, not at every poll
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(source.next(), 0.3)
        write(path, POLICY)
        update = await asyncio.wait_for(source.next(), 2)
        assert len(update.policy_set.policies) == 1
        source.reload("SIGHUP")  # re-read although unchanged
        update = await asyncio.wait_for(source.next(), 0.5)
        assert update.reason == "SIGHUP"

    with capture_logs() as logs:
        asyncio.run(scenario())
    refused = [e for e in logs if e["event"] == "policy.refused"]
    assert len(refused) == 1 and "'Nonsense' is not a known kind" in refused[0]["problems"][0]


def test_a_reload_reuses_the_unchanged_documents(tmp_path):
    path = tmp_path / "policy.yaml"
    write(path, POLICY, {**POLICY, "metadata": {"name": "q"}})

    async def scenario():
        source = FileSource(path, watch_interval=0.02)
        first = await source.first()
        source.reload("SIGHUP")
        again = (await asyncio.wait_for(source.next(), 2)).policy_set
        assert again.policies[0] is first.policies[0] and again.policies[1] is first.policies[1]
        write(path, POLICY, {**POLICY, "metadata": {"name": "r"}})
        changed = (await asyncio.wait_for(source.next(), 2)).policy_set
        assert changed.policies[0] is first.policies[0] and changed.policies[1].name == "r"
        assert (source.documents.hits, source.documents.misses) == (3, 3)

    asyncio.run(scenario())
