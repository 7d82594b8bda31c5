"""Per-address login rate limit (on top of the per-account lockout in recordings/users.py).

`LoginRateLimiter(per_minute=20)`: `hit(address) -> None` while under the limit, else the seconds until
the oldest attempt in the last minute leaves the window (the login answers 429 with `Retry-After`). Every
POST /login counts, right or wrong, and is counted before the password is hashed, so a flood costs no
scrypt. Bounded memory: at most `max_addresses` addresses are tracked (the oldest forgotten first).
Behind a reverse proxy every request comes from the proxy's address: set the limit with that in mind.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

WINDOW_S = 60.0


class LoginRateLimiter:
    def __init__(self, per_minute: int = 20, *, max_addresses: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError(f"login attempts per minute must be at least 1, not {per_minute}")
        self.per_minute = per_minute
        self.max_addresses = max_addresses
        self._clock = clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._refused: dict[str, int] = {}  # refusals in a row per address (the first one is audited)

    def hit(self, address: str) -> int | None:
        """Counts one attempt from `address`; None if allowed, else the whole seconds to wait."""
        now = self._clock()
        hits = self._hits.get(address)
        if hits is None:
            if len(self._hits) >= self.max_addresses:
                self._hits.popitem(last=False)
            hits = self._hits[address] = deque()
        else:
            self._hits.move_to_end(address)
        while hits and now - hits[0] >= WINDOW_S:
            hits.popleft()
        if len(hits) >= self.per_minute:
            if len(self._refused) >= self.max_addresses:
                self._refused.clear()
            self._refused[address] = self._refused.get(address, 0) + 1
            return max(1, math.ceil(WINDOW_S - (now - hits[0])))
        self._refused.pop(address, None)
        hits.append(now)
        return None

    def refusals(self, address: str) -> int:
        """Attempts refused in a row from `address` (1 right after the first refusal)."""
        return self._refused.get(address, 0)
