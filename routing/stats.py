"""Live queue statistics: counts, waits, service level, speed of answer, handle times."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime


class RollingMean:
    """Mean of the last `size` values (recent handle times for the expected-wait estimate)."""

    def __init__(self, size: int = 50) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(value)

    def __len__(self) -> int:
        return len(self._values)

    def mean(self, default: float) -> float:
        return sum(self._values) / len(self._values) if self._values else default


@dataclass(frozen=True)
class AbandonedCall:
    call_id: str
    wait_s: float
    reason: str  # caller_left, timeout, ...
    at: datetime


@dataclass
class QueueStatistics:
    """Counters since start (or `reset()`); `service_level_s` is the N of "answered within N s".

    Service level = answered within N s / (answered + abandoned), in percent.
    """

    service_level_s: float = 20.0
    offered: int = 0
    answered: int = 0
    answered_in_sl: int = 0
    abandoned: int = 0
    overflowed_in: int = 0
    overflowed_out: int = 0
    callbacks_requested: int = 0
    no_answers: int = 0
    total_answer_wait_s: float = 0.0
    abandoned_calls: deque[AbandonedCall] = field(default_factory=lambda: deque(maxlen=1000))
    handle_times: RollingMean = field(default_factory=RollingMean)

    def record_answer(self, wait_s: float) -> None:
        self.answered += 1
        self.total_answer_wait_s += wait_s
        if wait_s <= self.service_level_s:
            self.answered_in_sl += 1

    def record_abandon(self, call_id: str, wait_s: float, reason: str, at: datetime) -> None:
        self.abandoned += 1
        self.abandoned_calls.append(AbandonedCall(call_id, wait_s, reason, at))

    @property
    def service_level_pct(self) -> float | None:
        ended = self.answered + self.abandoned
        return None if ended == 0 else 100.0 * self.answered_in_sl / ended

    @property
    def average_speed_of_answer_s(self) -> float | None:
        return None if self.answered == 0 else self.total_answer_wait_s / self.answered

    def reset(self) -> None:
        fresh = QueueStatistics(self.service_level_s)
        fresh.handle_times = self.handle_times  # the estimate keeps its memory
        self.__dict__.update(fresh.__dict__)
