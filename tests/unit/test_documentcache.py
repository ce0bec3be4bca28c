"""The policy file's document cache: a reload parses only changed documents, and changes nothing else
about loading: the same models, the same refusals with the same messages."""

from pathlib import Path

import pytest

from bench import workload
from fqdn_policy.sources.documentcache import DocumentCache, split_documents
from fqdn_policy.sources.fileloader import PolicyFileError, load_text
from tests.unit.test_loader import ARTICLE, ERROR_ROWS

REPO = Path(__file__).resolve().parents[2]


def policy(name: str, host: str) -> str:
    return (
        "apiVersion: networking.gke.io/v1alpha1\nkind: FQDNNetworkPolicy\n"
        f"metadata: {{name: {name}}}\nspec:\n  podSelector: {{}}\n  egress:\n  - matches: [{{name: {host}}}]\n"
    )


POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nstatus: {podIP: 10.244.1.1}\n"


def test_an_unchanged_document_is_not_parsed_again():
    cache = DocumentCache()
    text = "---\n".join([policy("p", "a.example.com"), policy("q", "b.example.com"), POD])
    first = load_text(text, "p.yaml", cache)
    assert (cache.hits, cache.misses, len(cache)) == (0, 3, 3)
    again = load_text(text, "p.yaml", cache)
    assert again == first and cache.hits == 3
    assert all(a is b for a, b in zip(again.policies + again.pods, first.policies + first.pods, strict=True))


def test_a_changed_document_is_parsed_and_the_others_are_kept():
    cache = DocumentCache()
    before = load_text("---\n".join([policy("p", "a.example.com"), policy("q", "b.example.com")]), "f", cache)
    after = load_text("---\n".join([policy("p", "a.example.com"), policy("q", "c.example.com")]), "f", cache)
    assert after.policies[0] is before.policies[0]
    assert [m.text for m in after.policies[1].egress[0].matchers] == ["c.example.com"]
    assert len(cache) == 2  # the old version of q is forgotten: the cache holds one file's documents


@pytest.mark.parametrize(("text", "fragment"), ERROR_ROWS)
def test_a_bad_file_is_refused_with_the_same_message_and_the_cache_kept(text, fragment):
    cache = DocumentCache()
    good = policy("p", "a.example.com")
    load_text(good, "p.yaml", cache)
    bad = text + "\n---\n" + good  # the bad document first: the rows' lines and document numbers hold
    with pytest.raises(PolicyFileError) as cached:
        load_text(bad, "p.yaml", cache)
    with pytest.raises(PolicyFileError) as whole:
        load_text(bad, "p.yaml")
    assert str(cached.value) == str(whole.value) and fragment in str(cached.value)
    assert len(cache) == 1 and cache.get(next(iter(cache._models))) is not None


def test_a_document_defined_twice_across_cached_documents_is_refused():
    cache = DocumentCache()
    load_text(policy("p", "a.example.com"), "f", cache)
    with pytest.raises(PolicyFileError, match="defined twice"):
        load_text(policy("p", "a.example.com") + "---\n" + policy("p", "b.example.com"), "f", cache)


@pytest.mark.parametrize(
    "text",
    [
        ARTICLE,
        "# a comment first\n" + ARTICLE,
        "--- " + "{apiVersion: v1, kind: Pod, metadata: {name: a}, status: {podIP: 10.244.1.1}}\n",
        "%YAML 1.1\n---\n" + POD,  # directives: not cut, parsed whole
        POD + "...\n---\n" + policy("p", "a.example.com"),
        "apiVersion: v1\nkind: List\nitems:\n- " + POD.replace("\n", "\n  ").rstrip() + "\n",
        "kind: FQDNNetworkPolicy\napiVersion: networking.gke.io/v1alpha1\nmetadata: {name: p}\n"
        "spec:\n  podSelector: {}\n  egress:\n  - matches:  # --- not a marker\n    - name: a.example.com\n",
    ],
)
def test_the_cached_load_equals_the_whole_load(text):
    cache = DocumentCache()
    assert load_text(text, "f", cache) == load_text(text, "f") == load_text(text, "f", cache)


def test_shipped_files_and_the_benchmark_workload_load_the_same_cached(tmp_path):
    manifest = workload.generate(tmp_path, workload.WorkloadSpec(policies=100, pods=10, target_elements=0))
    files = [tmp_path / manifest.files["policy"], REPO / "config/policy.yaml"]
    files += sorted((REPO / "deploy/examples").glob("*.yaml"))
    for path in files:
        text = path.read_text()
        cache = DocumentCache()
        assert load_text(text, "f", cache) == load_text(text, "f"), path
        assert len(cache) > 0, path


def test_split_cuts_only_at_document_markers():
    text = "a: 1\n---\nb: '---'\nc: |\n  ---x\n--- \nd: 1\n----\n"
    assert split_documents(text) == ["a: 1\n", "---\nb: '---'\nc: |\n  ---x\n", "--- \nd: 1\n----\n"]
    assert split_documents("%YAML 1.1\n---\na: 1\n") is None
