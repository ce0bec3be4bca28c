"""The load-time rows of tests/conformance/cases.yaml, and the docs table kept in step with the rows."""

from pathlib import Path

import pytest
import yaml

from policy.names import InvalidName, validate_name, validate_pattern

ROOT = Path(__file__).resolve().parents[2]
TABLE = yaml.safe_load((ROOT / "tests/conformance/cases.yaml").read_text())


@pytest.mark.parametrize("row", TABLE["invalid"], ids=lambda r: r.get("pattern", r.get("name")))
def test_invalid_rows_are_refused(row):
    check = validate_pattern if "pattern" in row else validate_name
    with pytest.raises(InvalidName) as caught:
        check(row.get("pattern", row.get("name")))
    assert row["error"] in str(caught.value)


def test_every_row_is_documented():
    doc = (ROOT / "docs/semantics.md").read_text()
    missing = [case["id"] for case in TABLE["cases"] if f"`{case['id']}`" not in doc]
    assert not missing, f"rows not referenced in docs/semantics.md: {missing}"
