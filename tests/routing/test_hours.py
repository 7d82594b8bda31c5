"""Opening hours per queue: timezone-aware, holidays, the next opening for the after-hours message."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from routing import OpeningHours

SH = ZoneInfo("Asia/Shanghai")
HOURS = OpeningHours.from_spec("Asia/Shanghai", {"mon-fri": "08:00-20:00", "sat": "09:00-12:00"},
                               holidays=["2026-01-01", date(2026, 2, 17)])


def test_open_inside_hours_in_the_queues_own_zone() -> None:
    assert HOURS.is_open(datetime(2026, 1, 5, 8, 0, tzinfo=SH))  # Monday 08:00 Shanghai
    assert HOURS.is_open(datetime(2026, 1, 5, 0, 30, tzinfo=UTC))  # = 08:30 in Shanghai
    assert not HOURS.is_open(datetime(2026, 1, 5, 20, 0, tzinfo=SH))  # the end is exclusive
    assert not HOURS.is_open(datetime(2026, 1, 4, 23, 59, tzinfo=UTC))  # Mon 07:59 in Shanghai
    assert not HOURS.is_open(datetime(2026, 1, 10, 12, 0, tzinfo=SH))  # Saturday afternoon
    assert not HOURS.is_open(datetime(2026, 1, 11, 10, 0, tzinfo=SH))  # Sunday


def test_holidays_close_all_day_and_next_opening_skips_them() -> None:
    assert not HOURS.is_open(datetime(2026, 1, 1, 10, 0, tzinfo=SH))  # a Thursday, but a holiday
    assert HOURS.next_opening(datetime(2026, 1, 1, 10, 0, tzinfo=SH)) == datetime(2026, 1, 2, 8, 0, tzinfo=SH)


def test_next_opening_after_hours_and_over_the_weekend() -> None:
    assert HOURS.next_opening(datetime(2026, 1, 5, 21, 0, tzinfo=SH)) == datetime(2026, 1, 6, 8, 0, tzinfo=SH)
    assert HOURS.next_opening(datetime(2026, 1, 5, 6, 0, tzinfo=SH)) == datetime(2026, 1, 5, 8, 0, tzinfo=SH)
    assert HOURS.next_opening(datetime(2026, 1, 10, 13, 0, tzinfo=SH)) == datetime(2026, 1, 12, 8, 0, tzinfo=SH)
    now = datetime(2026, 1, 5, 10, 0, tzinfo=SH)
    assert HOURS.next_opening(now) == now  # already open
    nxt = HOURS.next_opening(datetime(2026, 1, 5, 21, 0, tzinfo=SH))
    assert nxt is not None and nxt.utcoffset() is not None and nxt.tzinfo == SH


def test_overnight_ranges_and_daylight_saving() -> None:
    night = OpeningHours.from_spec("Europe/London", {"daily": "22:00-06:00"})
    london = ZoneInfo("Europe/London")
    assert night.is_open(datetime(2026, 7, 1, 23, 0, tzinfo=london))
    assert night.is_open(datetime(2026, 7, 2, 5, 59, tzinfo=london))
    assert not night.is_open(datetime(2026, 7, 2, 6, 0, tzinfo=london))
    ny = OpeningHours.from_spec("America/New_York", {"mon-fri": "09:00-17:00"})
    # 09:00 in New York is 13:00 UTC in summer (EDT) and 14:00 UTC in winter (EST)
    assert ny.is_open(datetime(2026, 7, 6, 13, 0, tzinfo=UTC))
    assert not ny.is_open(datetime(2026, 1, 5, 13, 0, tzinfo=UTC))
    assert ny.is_open(datetime(2026, 1, 5, 14, 0, tzinfo=UTC))


def test_default_is_always_open_and_bad_input_is_refused() -> None:
    assert OpeningHours.always().is_open(datetime(2026, 1, 1, 3, tzinfo=UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        HOURS.is_open(datetime(2026, 1, 5, 10, 0))
    with pytest.raises(Exception):  # noqa: B017 - ZoneInfoNotFoundError
        OpeningHours.from_spec("Mars/Olympus", {"mon": "08:00-09:00"})
    with pytest.raises(ValueError):
        OpeningHours.from_spec("UTC", {"mon": "08:00-25:00"})
    assert OpeningHours.from_spec("UTC", {}).next_opening(datetime(2026, 1, 1, tzinfo=UTC)) is None
