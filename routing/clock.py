"""Time sources: the distributor reads time through a clock so tests can move it by hand."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds for durations (waits, wrap-up, handle times)."""
        ...

    def now(self) -> datetime:
        """The wall-clock time, timezone-aware (opening hours, records)."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to: `advance(seconds)`."""

    def __init__(self, start: datetime | None = None, mono: float = 1000.0) -> None:
        self._wall = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday morning
        if self._wall.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._mono = mono

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return self._wall

    def set_wall(self, wall: datetime) -> None:
        """Jumps the wall clock (opening-hours tests); durations are unaffected."""
        if wall.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware time")
        self._wall = wall

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)
