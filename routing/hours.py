"""Opening hours and holidays per queue, in the queue's own timezone."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Interval = tuple[int, int]  # minutes from local midnight, [start, end), end may be 1440


def _minutes(text: str) -> int:
    hh, _, mm = text.strip().partition(":")
    value = int(hh) * 60 + int(mm or 0)
    if not 0 <= value <= 1440:
        raise ValueError(f"bad time of day {text!r}")
    return value


def _days(text: str) -> list[int]:
    text = text.strip().lower()
    if text in ("daily", "all", "*"):
        return list(range(7))
    out: list[int] = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        a = _DAYS.index(first[:3])
        b = _DAYS.index(last[:3]) if last else a
        out.extend(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return out


@dataclass(frozen=True)
class OpeningHours:
    """Weekly intervals (Monday = 0) plus holidays (local dates, closed all day).

    `always_open=True` (the default) ignores both: a queue without configured hours never closes.
    """

    tz: str = "UTC"
    weekly: Mapping[int, tuple[Interval, ...]] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()
    always_open: bool = True

    @classmethod
    def always(cls) -> OpeningHours:
        return cls()

    @classmethod
    def from_spec(
        cls, tz: str, spec: Mapping[str, str | Iterable[str]], holidays: Iterable[date | str] = ()
    ) -> OpeningHours:
        """`{"mon-fri": "08:00-20:00", "sat": ["09:00-12:00", "13:00-17:00"]}`; "22:00-06:00" runs past midnight."""
        ZoneInfo(tz)  # fails early on an unknown zone
        weekly: dict[int, list[Interval]] = {d: [] for d in range(7)}
        for days, ranges in spec.items():
            for rng in [ranges] if isinstance(ranges, str) else ranges:
                start_s, _, end_s = rng.partition("-")
                start, end = _minutes(start_s), _minutes(end_s)
                for d in _days(days):
                    if end > start:
                        weekly[d].append((start, end))
                    else:  # past midnight: the rest of this day and the start of the next
                        weekly[d].append((start, 1440))
                        if end > 0:
                            weekly[(d + 1) % 7].append((0, end))
        hol = frozenset(h if isinstance(h, date) else date.fromisoformat(h) for h in holidays)
        return cls(tz, {d: tuple(sorted(v)) for d, v in weekly.items()}, hol, always_open=False)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def is_open(self, now: datetime) -> bool:
        if self.always_open:
            return True
        local = _aware(now).astimezone(self.zone)
        if local.date() in self.holidays:
            return False
        m = local.hour * 60 + local.minute + local.second / 60
        return any(a <= m < b for a, b in self.weekly.get(local.weekday(), ()))

    def next_opening(self, now: datetime) -> datetime | None:
        """`now` when open; otherwise the next local opening time (in the queue's zone); None if never."""
        if self.is_open(now):
            return now
        local = _aware(now).astimezone(self.zone)
        for offset in range(0, 400):
            day = local.date() + timedelta(days=offset)
            if day in self.holidays:
                continue
            for start, _end in self.weekly.get(day.weekday(), ()):
                if start >= 1440:
                    continue
                at = datetime.combine(day, time(start // 60, start % 60), tzinfo=self.zone)
                if at > local:
                    return at
        return None


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("opening hours need a timezone-aware time")
    return now
