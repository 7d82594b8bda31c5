"""Call search: full text over transcripts (English words, Chinese character bigrams) plus filters.

    search_calls(store, "信用卡 lost", since=..., queue="cards", limit=50) -> list[CallHit]

On SQLite the terms live in an FTS5 table, on PostgreSQL in a tsvector column with a GIN index, both kept
in step with CallStore.add_line (recordings/textsearch.py says how the terms are made). Hits are calls,
newest first, each with snippets of up to three matching lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, String, column, or_, select
from sqlalchemy import text as sql

from recordings.models import Call, IntentRecord, TranscriptLine
from recordings.store import aware
from recordings.textsearch import Query, parse_query, snippet

if TYPE_CHECKING:
    from recordings.store import CallStore

MAX_LIMIT = 500
SNIPPETS_PER_CALL = 3


@dataclass(frozen=True)
class Snippet:
    seq: int
    speaker: str
    text: str  # the matched words in [brackets]


@dataclass(frozen=True)
class CallHit:
    call_id: str
    started_at: datetime
    ended_at: datetime | None
    caller: str
    language: str
    outcome: str | None
    last_intent: str | None
    queue: str | None
    agent: str | None
    snippets: tuple[Snippet, ...]


class SearchError(ValueError):
    """The search cannot be run as asked (the message says why)."""


def search_calls(
    store: CallStore,
    text: str | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    intent: str | None = None,
    outcome: str | None = None,
    queue: str | None = None,
    agent: str | None = None,
    lang: str | None = None,
    caller: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[CallHit]:
    """Calls matching every given filter, newest first; with text, only calls whose transcript has a line
    holding every word of it (a Chinese run anywhere inside a line's words)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise SearchError(f"limit must be 1 to {MAX_LIMIT}")
    if offset < 0:
        raise SearchError("offset must not be negative")
    if since and until and since > until:
        raise SearchError("since is after until")
    dialect = store.engine.dialect.name
    q = select(Call.id, Call.started_at, Call.ended_at, Call.caller, Call.language, Call.outcome, Call.last_intent,
               Call.queue, Call.agent)
    for col, value in ((Call.outcome, outcome), (Call.queue, queue), (Call.agent, agent), (Call.language, lang)):
        if value:
            q = q.where(col == value)
    if caller:
        q = q.where(Call.caller.contains(caller.strip(), autoescape=True))
    if since:
        q = q.where(Call.started_at >= since)
    if until:
        q = q.where(Call.started_at < until)
    if intent:
        q = q.where(or_(Call.last_intent == intent,
                        Call.id.in_(select(IntentRecord.call_id).where(IntentRecord.intent == intent))))
    query: Query | None = None
    if text and text.strip():
        query = parse_query(text)
        if not query:
            raise SearchError(f"nothing to search for in {text!r} (words or Chinese characters are needed)")
        q = q.where(Call.id.in_(_calls_matching(dialect, query)))
    q = q.order_by(Call.started_at.desc(), Call.id).limit(limit).offset(offset)
    with store.engine.connect() as conn:
        calls = conn.execute(q).all()
        snippets: dict[str, list[Snippet]] = {}
        if calls and query is not None and text:
            # The lines of this page's calls (a few hundred), matched here rather than by a second search.
            rows = conn.execute(
                select(TranscriptLine.call_id, TranscriptLine.seq, TranscriptLine.speaker, TranscriptLine.text)
                .where(TranscriptLine.call_id.in_([c.id for c in calls]))
                .order_by(TranscriptLine.call_id, TranscriptLine.seq)
            ).all()
            for r in rows:
                got = snippets.setdefault(r.call_id, [])
                if len(got) < SNIPPETS_PER_CALL and query.matches(r.text):
                    got.append(Snippet(r.seq, r.speaker, snippet(r.text, text)))
    return [
        CallHit(c.id, aware(c.started_at), aware(c.ended_at) if c.ended_at else None, c.caller, c.language,
                c.outcome, c.last_intent, c.queue, c.agent, tuple(snippets.get(c.id, ())))
        for c in calls
    ]


def _calls_matching(dialect: str, query: Query) -> Any:
    """A subquery of the ids of calls with a line matching the query."""
    if dialect == "sqlite":
        lines = (sql("SELECT rowid AS id FROM transcript_fts WHERE transcript_fts MATCH :fts")
                 .bindparams(fts=query.fts5()).columns(column("id", Integer)))
        return select(TranscriptLine.call_id).where(TranscriptLine.id.in_(lines))
    if dialect == "postgresql":  # the index table keeps call_id: calls are found without the lines
        return (sql("SELECT call_id FROM transcript_search WHERE tsv @@ to_tsquery('simple', :tsq)")
                .bindparams(tsq=query.tsquery()).columns(column("call_id", String)))
    raise SearchError(f"full-text search needs SQLite or PostgreSQL, not {dialect}")
