import pytest

from fqdn_policy.dnsproxy.ratelimit import ClientRateLimiter


def test_burst_then_rate():
    limiter = ClientRateLimiter(rate=10, burst=5)
    assert [limiter.allow("10.244.1.10", 0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert limiter.allow("10.244.1.11", 0.0)  # another client is not affected
    assert not limiter.allow("10.244.1.10", 0.05)  # half a token
    assert limiter.allow("10.244.1.10", 0.1)  # one token after 0.1 s at 10/s
    assert not limiter.allow("10.244.1.10", 0.1)
    assert limiter.limited == 4


def test_table_stays_bounded():
    limiter = ClientRateLimiter(rate=10, burst=5, max_clients=100)
    for i in range(1000):
        limiter.allow(f"10.244.{i // 256}.{i % 256}", float(i))
    assert len(limiter._buckets) <= 100


def test_nonsense_refused():
    with pytest.raises(ValueError, match="rate must be positive"):
        ClientRateLimiter(rate=0)
