import pytest

from tests.lab.slowdown import patience


def test_patience_is_scaled_by_the_environment(monkeypatch):
    monkeypatch.delenv("FQDN_LAB_SLOWDOWN", raising=False)
    assert patience(15) == 15
    monkeypatch.setenv("FQDN_LAB_SLOWDOWN", "6")
    assert patience(15) == 90


@pytest.mark.parametrize(("value", "says"), [("fast", "is not a number"), ("0.5", "is below 1")])
def test_bad_slowdown_names_the_variable(monkeypatch, value, says):
    monkeypatch.setenv("FQDN_LAB_SLOWDOWN", value)
    with pytest.raises(ValueError, match=f"FQDN_LAB_SLOWDOWN: '{value}' {says}"):
        patience(1)
