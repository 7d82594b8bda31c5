"""Each call's caller sentiment, kept with the call: the running score, its lowest line, the label, and
whether the call was ever flagged angry (migration 0004, table `call_sentiment`, one row per call).

`SentimentStore(engine)`: `save(...)` (upsert, committed at once), `get(call_id)`, `for_calls(ids)`,
`angry_call_ids(...)` and `summary(since=, until=)` for the dashboard. The scores come from
dialog/sentiment.py through hotline/sentiment_live.py; this module only keeps them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Float, Integer, String, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from recordings.models import Base, Call

log = logging.getLogger(__name__)

LABELS = ("angry", "negative", "neutral", "positive")


class CallSentiment(Base):
    __tablename__ = "call_sentiment"

    call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    minimum: Mapped[float] = mapped_column(Float)
    lines: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(16))
    angry: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0", index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def _row(r: Any) -> dict[str, Any]:
    return {"score": r.score, "minimum": r.minimum, "lines": r.lines, "label": r.label, "angry": bool(r.angry)}


_COLUMNS = (CallSentiment.call_id, CallSentiment.score, CallSentiment.minimum, CallSentiment.lines,
            CallSentiment.label, CallSentiment.angry)


class SentimentStore:
    """Reads and writes `call_sentiment` (the table comes from the migrations `CallStore` runs)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def save(self, call_id: str, *, score: float, minimum: float, lines: int, label: str, angry: bool) -> None:
        if not call_id or len(call_id) > 64:
            raise ValueError(f"call id must be 1-64 characters, not {call_id!r}")
        if label not in LABELS:
            raise ValueError(f"label must be one of {', '.join(LABELS)}, not {label!r}")
        if not (-1.0 <= score <= 1.0 and -1.0 <= minimum <= 1.0):
            raise ValueError(f"call {call_id}: scores must be in [-1, 1] ({score}, {minimum})")
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            done = conn.execute(
                update(CallSentiment).where(CallSentiment.call_id == call_id).values(
                    score=score, minimum=minimum, lines=lines, label=label, angry=angry, updated_at=now)
            ).rowcount
            if not done:
                conn.execute(insert(CallSentiment).values(
                    call_id=call_id, score=score, minimum=minimum, lines=lines, label=label, angry=angry,
                    updated_at=now))

    def get(self, call_id: str) -> dict[str, Any] | None:
        return self.for_calls([call_id]).get(call_id)

    def for_calls(self, call_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(dict.fromkeys(call_ids))
        out: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                q = select(*_COLUMNS).where(CallSentiment.call_id.in_(ids[i:i + 500]))
                for r in conn.execute(q):
                    out[r.call_id] = _row(r)
        return out

    def angry_call_ids(self, *, since: datetime | None = None, until: datetime | None = None,
                       limit: int = 10) -> list[str]:
        """The calls flagged angry, newest first."""
        q = select(CallSentiment.call_id).join(Call, Call.id == CallSentiment.call_id).where(
            CallSentiment.angry.is_(True))
        q = _window(q, since, until).order_by(Call.started_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(q)]

    def summary(self, *, since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
        """Over calls started in [since, until): how many were scored, flagged angry, their labels at the
        end of the call and the mean final score."""
        base = select(CallSentiment.label, CallSentiment.angry, func.count(), func.avg(CallSentiment.score)).join(
            Call, Call.id == CallSentiment.call_id)
        q = _window(base, since, until).group_by(CallSentiment.label, CallSentiment.angry)
        labels = dict.fromkeys(LABELS, 0)
        scored = angry = 0
        total = 0.0
        with self.engine.connect() as conn:
            for label, is_angry, n, avg in conn.execute(q):
                labels[label] = labels.get(label, 0) + n
                scored += n
                angry += n if is_angry else 0
                total += float(avg or 0.0) * n
        return {"scored": scored, "angry": angry, "angry_rate": angry / scored if scored else None,
                "labels": labels, "mean_score": round(total / scored, 3) if scored else None,
                "angry_calls": self.angry_call_ids(since=since, until=until)}


def _window(q: Any, since: datetime | None, until: datetime | None) -> Any:
    if since:
        q = q.where(Call.started_at >= since)
    if until:
        q = q.where(Call.started_at < until)
    return q
