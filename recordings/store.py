"""CallStore: the call record and transcript, each write committed as it happens."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from recordings.models import Base, Call, TranscriptLine

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class LineView:
    """A transcript line as readers see it (detached from the database session)."""

    seq: int
    speaker: str
    text: str
    start_s: float
    end_s: float | None
    intent: str | None
    confidence: float | None


@dataclass(frozen=True)
class CallView:
    id: str
    sip_call_id: str
    caller: str
    called: str
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None
    end_reason: str | None
    last_intent: str | None
    queue: str | None
    agent: str | None
    recording_path: str | None
    language: str


class CallStore:
    """Blocking repository; the call session runs it off the event loop (one writer thread)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._seq_lock = threading.Lock()
        self._next_seq: dict[str, int] = {}  # this process's open calls: the next line number

    def close(self) -> None:
        self.engine.dispose()

    def start_call(
        self,
        call_id: str,
        *,
        sip_call_id: str,
        caller: str,
        called: str,
        worker: str = "",
        recording_path: str | None = None,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(Call).values(
                    id=call_id,
                    sip_call_id=sip_call_id,
                    caller=caller[:128],
                    called=called[:128],
                    started_at=utcnow(),
                    worker=worker,
                    recording_path=recording_path,
                )
            )

    def update_call(self, call_id: str, **fields: Any) -> None:
        allowed = {c.name for c in Call.__table__.columns} - {"id"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown call fields: {sorted(unknown)}")
        with self._sessions.begin() as db:
            db.execute(update(Call).where(Call.id == call_id).values(**fields))

    def add_line(
        self,
        call_id: str,
        speaker: str,
        text: str,
        start_s: float,
        end_s: float | None = None,
        *,
        intent: str | None = None,
        confidence: float | None = None,
        language: str = "",
    ) -> int:
        """Appends a line and commits it; returns its sequence number within the call."""
        # Core inserts, not ORM flushes: this runs for every line of every call (profiled: half the cost).
        with self._seq_lock, self.engine.begin() as conn:
            seq = self._next_seq.get(call_id)
            if seq is None:
                last = conn.scalar(select(func.max(TranscriptLine.seq)).where(TranscriptLine.call_id == call_id))
                seq = (last or 0) + 1
            conn.execute(
                insert(TranscriptLine).values(
                    call_id=call_id,
                    seq=seq,
                    speaker=speaker,
                    text=text,
                    start_s=round(start_s, 3),
                    end_s=None if end_s is None else round(end_s, 3),
                    intent=intent,
                    confidence=confidence,
                    language=language,
                )
            )
            self._next_seq[call_id] = seq + 1
        return seq

    def end_call(self, call_id: str, *, outcome: str, end_reason: str) -> None:
        """Closes the record once; a second close keeps the first outcome."""
        with self._seq_lock:
            self._next_seq.pop(call_id, None)
        with self._sessions.begin() as db:
            db.execute(
                update(Call)
                .where(Call.id == call_id, Call.ended_at.is_(None))
                .values(ended_at=utcnow(), outcome=outcome, end_reason=end_reason)
            )

    def close_interrupted(self, worker: str) -> int:
        """Closes calls a dead process left open; returns how many."""
        with self._sessions.begin() as db:
            result = db.execute(
                update(Call)
                .where(Call.ended_at.is_(None), Call.worker == worker)
                .values(ended_at=utcnow(), outcome="interrupted", end_reason="worker_restart")
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def get_call(self, call_id: str) -> CallView | None:
        with self._sessions() as db:
            c = db.get(Call, call_id)
            if c is None:
                return None
            return CallView(
                id=c.id,
                sip_call_id=c.sip_call_id,
                caller=c.caller,
                called=c.called,
                started_at=c.started_at,
                ended_at=c.ended_at,
                outcome=c.outcome,
                end_reason=c.end_reason,
                last_intent=c.last_intent,
                queue=c.queue,
                agent=c.agent,
                recording_path=c.recording_path,
                language=c.language,
            )

    def get_transcript(self, call_id: str) -> list[LineView]:
        with self._sessions() as db:
            rows = db.scalars(
                select(TranscriptLine).where(TranscriptLine.call_id == call_id).order_by(TranscriptLine.seq)
            ).all()
            return [
                LineView(r.seq, r.speaker, r.text, r.start_s, r.end_s, r.intent, r.confidence) for r in rows
            ]

    def find_by_sip_call_id(self, sip_call_id: str) -> CallView | None:
        with self._sessions() as db:
            call_id = db.scalar(
                select(Call.id).where(Call.sip_call_id == sip_call_id).order_by(Call.started_at.desc()).limit(1)
            )
        return self.get_call(call_id) if call_id else None

    def recent_calls(self, limit: int = 20) -> list[CallView]:
        with self._sessions() as db:
            ids = db.scalars(select(Call.id).order_by(Call.started_at.desc()).limit(limit)).all()
        return [v for v in (self.get_call(i) for i in ids) if v is not None]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
