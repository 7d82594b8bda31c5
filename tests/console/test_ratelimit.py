"""Per-address login rate limit (console/ratelimit.py): 429 with Retry-After before any password is hashed,
one audit entry per burst, the window moving on, other addresses unaffected, bounded memory."""

from __future__ import annotations

from typing import Any

import pytest

from console.context import CONSOLE
from console.ratelimit import LoginRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_counts_per_address_in_a_sliding_minute() -> None:
    clock = Clock()
    limit = LoginRateLimiter(3, clock=clock)
    assert [limit.hit("10.0.0.1") for _ in range(3)] == [None, None, None]
    clock.now += 20
    assert limit.hit("10.0.0.1") == 40 and limit.refusals("10.0.0.1") == 1
    assert limit.hit("10.0.0.1") == 40 and limit.refusals("10.0.0.1") == 2
    assert limit.hit("10.0.0.2") is None  # another address has its own budget
    clock.now += 40  # the first three attempts leave the window
    assert limit.hit("10.0.0.1") is None and limit.refusals("10.0.0.1") == 0
    with pytest.raises(ValueError, match="at least 1"):
        LoginRateLimiter(0)


def test_limiter_memory_is_bounded() -> None:
    limit = LoginRateLimiter(1, max_addresses=100)
    for i in range(1000):
        limit.hit(f"10.0.{i // 256}.{i % 256}")
    assert len(limit._hits) == 100
    assert limit.hit("10.0.3.231") is not None  # the newest is still remembered
    assert limit.hit("10.0.0.0") is None  # the oldest was forgotten


async def test_login_flood_gets_429_with_retry_after_even_with_the_right_password(console: Any) -> None:
    clock = Clock()
    console.client.server.app[CONSOLE].login_limit = LoginRateLimiter(3, clock=clock)
    for _ in range(3):
        r = await console.login("sam", "wrong-password-x")
        assert r.status == 401
    for _ in range(3):
        r = await console.login("sam")  # the right password: refused too, before it is checked
        assert r.status == 429 and r.headers["Retry-After"] == "60"
        assert "Too many login attempts" in await r.text()
    assert not console.users.get_user("sam").locked()  # refused attempts did not count against the account
    limited = [a for a in console.users.audit_log(50) if a.action == "login_rate_limited"]
    assert len(limited) == 1 and limited[0].target == "127.0.0.1"
    clock.now += 61
    r = await console.login("sam")
    assert r.status == 302
