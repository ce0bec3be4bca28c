"""The load-time rows of tests/conformance/cases.yaml, and the docs table kept in step with the rows."""

from pathlib import Path

import pytest
import yaml

from fqdn_policy.policy.match.names import InvalidName, compile_pattern, validate_name, validate_pattern
from fqdn_policy.policy.spec.breadth import pattern_warnings

ROOT = Path(__file__).resolve().parents[2]
TABLE = yaml.safe_load((ROOT / "tests/conformance/cases.yaml").read_text())


@pytest.mark.parametrize("row", TABLE["invalid"], ids=lambda r: r.get("pattern", r.get("name")))
def test_invalid_rows_are_refused(row):
    check = validate_pattern if "pattern" in row else validate_name
    with pytest.raises(InvalidName) as caught:
        check(row.get("pattern", row.get("name")))
    assert row["error"] in str(caught.value)


@pytest.mark.parametrize("row", TABLE["warnings"], ids=lambda r: r["pattern"])
def test_warning_rows_are_accepted_with_their_warning(row):
    pattern = validate_pattern(row["pattern"])  # accepted: a warning never refuses
    warnings = pattern_warnings(pattern)
    if row["warning"] is None:
        assert warnings == ()
    else:
        assert any(row["warning"] in w for w in warnings), warnings
    if "matches" in row:  # what the warning is about: a name its author likely did not mean
        assert compile_pattern(row["pattern"]).matches(row["matches"])


def test_every_row_is_documented():
    doc = (ROOT / "docs/semantics.md").read_text()
    missing = [case["id"] for case in TABLE["cases"] if f"`{case['id']}`" not in doc]
    assert not missing, f"rows not referenced in docs/semantics.md: {missing}"
