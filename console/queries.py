"""Read-only queries the console needs beyond CallStore's methods, written against the public models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.engine import Engine

from recordings import CallStore
from recordings.models import Call, TranscriptLine
from recordings.sentiment import SentimentStore

MAX_RESULTS = 200


@dataclass(frozen=True)
class CallFilter:
    text: str = ""
    date_from: datetime | None = None
    date_to: datetime | None = None  # inclusive day when parsed from a date
    outcome: str = ""
    caller: str = ""
    language: str = ""
    limit: int = 50


class BadFilter(ValueError):
    pass


def parse_filter(params: dict[str, str]) -> CallFilter:
    """From query parameters; raises BadFilter naming the parameter."""

    def day(name: str) -> datetime | None:
        raw = params.get(name, "").strip()
        if not raw:
            return None
        try:
            return datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise BadFilter(f"{name}: expected a date like 2026-12-01, got {raw[:40]!r}") from None

    try:
        limit = int(params.get("limit", "50") or 50)
    except ValueError:
        raise BadFilter("limit: expected a number") from None
    if not 1 <= limit <= MAX_RESULTS:
        raise BadFilter(f"limit: between 1 and {MAX_RESULTS}")
    text = params.get("q", "").strip()
    if len(text) > 200:
        raise BadFilter("q: at most 200 characters")
    date_to = day("to")
    return CallFilter(
        text=text,
        date_from=day("from"),
        date_to=date_to + timedelta(days=1) if date_to else None,
        outcome=params.get("outcome", "").strip()[:32],
        caller=params.get("caller", "").strip()[:128],
        language=params.get("language", "").strip()[:8],
        limit=limit,
    )


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search_calls(store: CallStore, f: CallFilter) -> list[dict[str, Any]]:
    """Newest first: full-text search (recordings/search.py) when it is there, else LIKE over the lines."""
    try:
        from recordings import search as full_text
    except ImportError:  # an older recordings package: the LIKE search below
        return like_search(store.engine, f)
    try:
        hits = full_text.search_calls(
            store, f.text or None, since=f.date_from, until=f.date_to, caller=f.caller or None,
            lang=f.language or None, limit=f.limit,
            outcome=f.outcome if f.outcome and f.outcome != "in_progress" else None,
        )
    except full_text.SearchError as exc:
        raise BadFilter(str(exc)) from None
    out = []
    for h in hits:
        if f.outcome == "in_progress" and h.ended_at is not None:
            continue
        out.append({
            "id": h.call_id, "caller": h.caller, "language": h.language,
            "started_at": _iso(h.started_at), "ended_at": _iso(h.ended_at),
            "duration_s": round((h.ended_at - h.started_at).total_seconds(), 1) if h.ended_at else None,
            "outcome": h.outcome, "intent": h.last_intent, "queue": h.queue, "agent": h.agent,
            "snippets": [{"seq": sn.seq, "speaker": sn.speaker, "text": sn.text} for sn in h.snippets],
        })
    return with_sentiment(store.engine, out)


def with_sentiment(engine: Engine, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adds each call's caller sentiment (recordings/sentiment.py) as `sentiment` (None: never scored)."""
    moods = SentimentStore(engine).for_calls(c["id"] for c in calls)
    for c in calls:
        c["sentiment"] = moods.get(c["id"])
    return calls


def like_search(engine: Engine, f: CallFilter) -> list[dict[str, Any]]:
    """Newest first. Text matches transcript lines, the caller number or the intent (LIKE, both languages)."""
    q = select(Call).order_by(Call.started_at.desc()).limit(f.limit)
    if f.text:
        pattern = _like(f.text)
        in_lines = select(TranscriptLine.call_id).where(TranscriptLine.text.like(pattern, escape="\\"))
        q = q.where(or_(Call.id.in_(in_lines), Call.caller.like(pattern, escape="\\"),
                        Call.last_intent.like(pattern, escape="\\")))
    if f.date_from:
        q = q.where(Call.started_at >= f.date_from)
    if f.date_to:
        q = q.where(Call.started_at < f.date_to)
    if f.outcome:
        q = q.where(Call.outcome == f.outcome) if f.outcome != "in_progress" else q.where(Call.ended_at.is_(None))
    if f.caller:
        q = q.where(Call.caller.like(_like(f.caller), escape="\\"))
    if f.language:
        q = q.where(Call.language == f.language)
    with engine.connect() as conn:
        found = [call_dict(r) for r in conn.execute(q)]
    return with_sentiment(engine, found)


def call_detail(engine: Engine, call_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(Call).where(Call.id == call_id)).first()
    return with_sentiment(engine, [call_dict(row)])[0] if row is not None else None


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).isoformat(timespec="seconds")


def call_dict(row: Any) -> dict[str, Any]:
    started = row.started_at if row.started_at.tzinfo else row.started_at.replace(tzinfo=UTC)
    ended = row.ended_at and (row.ended_at if row.ended_at.tzinfo else row.ended_at.replace(tzinfo=UTC))
    return {
        "id": row.id,
        "caller": row.caller,
        "called": row.called,
        "language": row.language,
        "started_at": _iso(row.started_at),
        "ended_at": _iso(row.ended_at),
        "duration_s": round((ended - started).total_seconds(), 1) if ended else None,
        "outcome": row.outcome,
        "end_reason": row.end_reason,
        "intent": row.last_intent,
        "queue": row.queue,
        "agent": row.agent,
        "queued_at": _iso(row.queued_at),
        "agent_answered_at": _iso(row.agent_answered_at),
        "has_recording": bool(row.recording_path),
        "worker": row.worker,
    }


def timeline(call: dict[str, Any], lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The call's milestones and routing notes in order, for the call page."""
    items = [{"at": call["started_at"], "what": "started", "text": call["caller"] or ""}]
    if call.get("queued_at"):
        items.append({"at": call["queued_at"], "what": "queued", "text": call.get("queue") or ""})
    if call.get("agent_answered_at"):
        items.append({"at": call["agent_answered_at"], "what": "agent", "text": call.get("agent") or ""})
    items += [{"at": f"+{ln['start_s']:.1f}s", "what": "event", "text": ln["text"]}
              for ln in lines if ln["speaker"] == "event"]
    if call.get("ended_at"):
        items.append({"at": call["ended_at"], "what": "ended", "text": f"{call['outcome']} ({call['end_reason']})"})
    return items
