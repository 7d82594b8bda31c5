"""CallStore: the call record and transcript, each write committed before it returns.

The schema is brought up to date by Alembic at start-up (recordings/migrate.py). Transcript lines have
card numbers masked before they are stored, and are indexed for full-text search in the same transaction
(recordings/search.py). With a journal directory, writes that cannot reach the database go to a local
fsync'd journal and are written, in order and once, when it returns (recordings/journal.py).

Group commit: writes from several threads at once share one transaction. A writer queues its write;
the first writer to find no commit in progress takes everything queued (in arrival order) and commits
it as one transaction, the others wait for theirs. Each write still returns only once it is committed
(or journalled), so a caller that waits for each of its writes (a call session) keeps its order and the
"durable when it returns" contract; with one writer thread nothing changes. A batch the database refuses
is written again one write per transaction, so one bad write fails alone (its caller gets the error).

From an event loop, `run_async(store.method, ...)` runs a write method without a thread hop: its writes
are queued from the loop thread and committed by the store's own writer thread (group commit as above);
the coroutine returns once they are committed (or journalled), with the same "durable when it returns"
contract. A committed batch wakes each waiting loop once, not once per write.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, cast

from sqlalchemy import Table, bindparam, create_engine, event, exc, func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import sessionmaker

from recordings.journal import Journal, encode, orphan_journals, read_entries
from recordings.migrate import upgrade
from recordings.models import (
    AgentSession,
    AgentStateChange,
    Call,
    CallbackRecord,
    Complaint,
    DtmfRecord,
    IntentRecord,
    Leg,
    QueueEntry,
    SlotValue,
    TranscriptLine,
)
from recordings.privacy import mask_dtmf, mask_secrets
from recordings.textsearch import index_terms

log = logging.getLogger(__name__)

QUEUE_STATUSES = ("queued", "answered", "abandoned")
COMPLAINT_STATUSES = ("open", "in_progress", "resolved", "closed")


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(dt: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were written in UTC."""
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def new_id() -> str:
    return uuid.uuid4().hex


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
    recording_deleted: bool = False


@dataclass(frozen=True)
class ComplaintView:
    ticket: str
    call_id: str | None
    created_at: datetime
    category: str
    status: str
    text: str


class _Pending:
    """One queued write: the operation, its arguments, and what its caller gets back."""

    __slots__ = ("args", "done", "error", "op", "result", "waiter")

    def __init__(self, op: str, args: dict[str, Any]) -> None:
        self.op, self.args = op, args
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]] | None = None  # run_async


def _resolve(items: list[_Pending]) -> None:
    """On the waiting loop: hands committed writes' outcomes to their run_async futures."""
    for p in items:
        assert p.waiter is not None
        fut = p.waiter[1]
        if not fut.done():
            if p.error is not None:
                fut.set_exception(p.error)
            else:
                fut.set_result(p.result)


# A transaction cost ~0.7 ms of CPU here (Python, SQLite's locks and WAL write, the wake-ups) whatever its
# size. Calls at 100/s (3 writes each, SQLite): unthrottled 1.1-1.2 writes per transaction, 2.3 ms CPU per
# call; at most one commit per 10 ms: 2.8-3.0, 1.75 ms; per 20 ms: 5.0-5.3, 1.3 ms (bench/README.md, issue #7).
GATHER_S = 0.02


def _is_unreachable(e: BaseException) -> bool:
    """Errors that mean "the database is not there now" (journal and retry), not "this write is wrong"."""
    if isinstance(e, exc.OperationalError | exc.InterfaceError):
        return True
    return isinstance(e, exc.DBAPIError) and bool(e.connection_invalidated)


class CallStore:
    """Blocking repository; the call session runs it off the event loop (one writer thread).

    journal_dir: where writes go while the database is unreachable (None: such writes raise).
    retry_s: how often a journal waiting for the database tries it again.
    gather_s: run_async's writer thread commits at most once per gather_s, so that under load the writes of
    calls starting and ending together share one transaction (a write may then return up to gather_s
    later); a write after a quiet spell is committed at once.
    """

    def __init__(self, url: str, *, journal_dir: str | Path | None = None, retry_s: float = 1.0,
                 gather_s: float = GATHER_S) -> None:
        self.url = url
        self.gather_s = gather_s  # run_async: how long the writer thread lets writes gather before a commit
        kwargs: dict[str, Any] = {"future": True}
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        elif url.startswith("postgresql"):
            kwargs["pool_pre_ping"] = True  # a restarted server leaves dead pooled connections behind
            kwargs["connect_args"] = {"connect_timeout": 3}
        self.engine: Engine = create_engine(url, **kwargs)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._seq_lock = threading.Lock()
        self._next_seq: dict[str, int] = {}  # this process's open calls: the next line number
        self._queued_at: dict[str, datetime] = {}  # open queue entries: when they were queued
        self._write_lock = threading.RLock()
        queue_lock = threading.Lock()
        self._queue_cv = threading.Condition(queue_lock)  # group commit (module docstring)
        self._wake = threading.Condition(queue_lock)  # the writer thread of run_async waits on it
        self._queued: list[_Pending] = []
        self._committing = False
        self._defer = threading.local()  # run_async on this thread: (loop, writes queued, not awaited)
        self._writer: threading.Thread | None = None
        self._writer_stop = False
        self.batches = 0  # transactions the write path committed, and the writes in them (bench, tests)
        self.batched_writes = 0
        self.grouped_writes = 0  # writes that went in an executemany with others
        self.retry_s = retry_s
        self._journal: Journal | None = None
        self._drainer: threading.Thread | None = None
        self._closed = threading.Event()
        self._ops: dict[str, Callable[..., Any]] = {
            name.removeprefix("_op_"): getattr(self, name) for name in dir(self) if name.startswith("_op_")
        }
        if journal_dir is not None:
            self._journal = Journal(journal_dir)
            self._replay_orphans(Path(journal_dir))
            if self._journal.count and not self.flush_journal():  # a dead process with our pid left it
                self._start_drainer()

    def close(self) -> None:
        with self._queue_cv:  # writers still in flight on other threads finish first
            self._queue_cv.wait_for(lambda: not self._queued and not self._committing, timeout=30)
            self._writer_stop = True
            self._wake.notify_all()
        if self._writer is not None:
            self._writer.join(timeout=30)
        self._closed.set()
        if self._drainer is not None:
            self._drainer.join(timeout=10)
        if self._journal is not None:
            self.flush_journal()
            if self._journal.count:
                log.error("records: %d writes still in %s; they are written at the next start-up",
                          self._journal.count, self._journal.path)
            self._journal.close()
        self.engine.dispose()

    # -- the write path: database, or journal while it is away -------------------------------------
    @property
    def journal_pending(self) -> int:
        """Writes waiting in the local journal for the database."""
        return self._journal.count if self._journal is not None else 0

    def _write(self, op: str, args: dict[str, Any]) -> Any:
        return self._wait(self._enqueue(op, args))

    def _enqueue(self, op: str, args: dict[str, Any]) -> _Pending:
        item = _Pending(op, args)
        deferred: tuple[asyncio.AbstractEventLoop, list[_Pending]] | None = getattr(self._defer, "run", None)
        if deferred is not None:  # run_async: a future on the calling loop, resolved by whoever commits it
            item.waiter = (deferred[0], deferred[0].create_future())
            deferred[1].append(item)
        with self._queue_cv:
            self._queued.append(item)
            if deferred is not None:
                self._wake.notify()
        return item

    def _wait(self, item: _Pending) -> Any:
        """Returns once `item` is committed or journalled; commits the queue itself if nobody else is.
        Under run_async it returns at once (None): the writer thread commits, run_async awaits."""
        if item.waiter is not None:
            return None
        with self._queue_cv:
            while not item.done and self._committing:
                self._queue_cv.wait()
            if item.done:
                batch: list[_Pending] = []
            else:
                self._committing = True
                batch, self._queued = self._queued, []
        if batch:
            self._commit_taken(batch)
        if item.error is not None:
            raise item.error
        return item.result

    def _commit_taken(self, batch: list[_Pending]) -> None:
        """Commits a batch this thread took from the queue, then lets the others go on."""
        try:
            self._commit(batch)
        finally:
            with self._queue_cv:
                self._committing = False
                for pending in batch:
                    if not pending.done:  # _commit raised something unexpected: its writers get it
                        pending.done, pending.error = True, RuntimeError("record write aborted")
                self._queue_cv.notify_all()
                if self._queued:
                    self._wake.notify()
            self._wake_loops(batch)

    @staticmethod
    def _wake_loops(batch: list[_Pending]) -> None:
        """One call_soon_threadsafe per waiting loop and batch (not per write)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        for p in batch:
            if p.waiter is not None:
                by_loop.setdefault(p.waiter[0], []).append(p)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def _writer_loop(self) -> None:
        """The writer thread of run_async: commits whatever is queued whenever nobody else is committing."""
        last = 0.0  # when the last commit ended
        while True:
            with self._queue_cv:
                while not (self._queued and not self._committing):
                    if self._writer_stop and not self._queued:
                        return
                    self._wake.wait(1.0)
            # at most one commit per gather_s: under load the writes arriving meanwhile share the transaction;
            # a write after a quiet spell is committed at once
            wait = last + self.gather_s - time.monotonic()
            if wait > 0 and not self._writer_stop:
                time.sleep(wait)
            with self._queue_cv:
                if not self._queued or self._committing:
                    continue
                self._committing = True
                batch, self._queued = self._queued, []
            try:
                self._commit_taken(batch)
            except Exception:  # _commit_taken has already failed the batch's writes; keep serving
                log.exception("records: writer thread: commit failed")
            last = time.monotonic()

    # The write methods run_async takes: they only queue writes (no reads that would block the loop).
    WRITES: ClassVar[frozenset[str]] = frozenset({
        "start_call", "open_call", "update_call", "add_line", "end_call", "close_call", "mark_recording_deleted",
        "add_leg", "leg_answered", "end_leg", "add_intent", "add_dtmf", "queue_entered", "queue_left",
        "agent_login", "agent_state", "agent_logout", "add_complaint",
    })

    def is_write(self, fn: Callable[..., Any]) -> bool:
        """True for this store's write methods (bound to it), the ones run_async takes."""
        return getattr(fn, "__self__", None) is self and getattr(fn, "__name__", "") in self.WRITES

    async def run_async(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Runs one of this store's write methods (not readers) from an event loop: its writes are
        queued here, committed by the store's writer thread, and awaited; returns what the method returns.
        Its writes and those of earlier run_async calls commit in the order they were made."""
        if not self.is_write(fn):
            raise ValueError(f"run_async takes this store's write methods, not {fn!r}")
        loop = asyncio.get_running_loop()
        if self._writer is None or not self._writer.is_alive():
            if self._writer_stop:
                raise RuntimeError("records: the store is closed")
            self._writer = threading.Thread(target=self._writer_loop, name="records-writer", daemon=True)
            self._writer.start()
        items: list[_Pending] = []
        self._defer.run = (loop, items)
        try:
            result = fn(*args, **kwargs)
        finally:
            self._defer.run = None
        for p in items:
            assert p.waiter is not None
            await p.waiter[1]
        return result

    def _commit(self, batch: list[_Pending]) -> None:
        """Writes a batch in one transaction; refused: one by one; unreachable: to the journal."""
        with self._write_lock:
            self.batches += 1
            self.batched_writes += len(batch)
            if self._journal is not None and self._journal.count:
                self._to_journal(batch)  # the journal keeps the order: nothing overtakes it
                return
            try:
                with self.engine.begin() as conn:
                    results = self._run_batch(conn, batch)
            except Exception as e:
                if self._journal is not None and _is_unreachable(e):
                    self._unreachable(e, batch)
                    return
                if len(batch) == 1:
                    batch[0].done, batch[0].error = True, e
                    return
                self._commit_each(batch)
                return
            for p, r in zip(batch, results, strict=True):
                p.done, p.result = True, r

    def _run_batch(self, conn: Connection, batch: list[_Pending]) -> list[Any]:
        """Runs a batch's writes in order; runs of the same statement go as one executemany (SQLAlchemy's
        per-execute overhead was ~40 µs, per row of an executemany ~8 µs)."""
        results: list[Any] = []
        i = 0
        while i < len(batch):
            key = _group_key(batch[i])
            j = i + 1
            if key is not None:
                while j < len(batch) and _group_key(batch[j]) == key:
                    j += 1
            if j - i == 1:
                p = batch[i]
                results.append(self._ops[p.op](conn, **p.args))
            else:
                assert key is not None
                _execute_group(conn, key, [p.args for p in batch[i:j]])
                self.grouped_writes += j - i
                results.extend([None] * (j - i))
            i = j
        return results

    def _commit_each(self, batch: list[_Pending]) -> None:
        """A batch the database refused: each write in its own transaction, so only the bad one fails."""
        for n, p in enumerate(batch):
            try:
                with self.engine.begin() as conn:
                    p.result = self._ops[p.op](conn, **p.args)
                p.done = True
            except Exception as e:
                if self._journal is not None and _is_unreachable(e):
                    self._unreachable(e, batch[n:])
                    return
                p.done, p.error = True, e

    def _unreachable(self, e: BaseException, batch: list[_Pending]) -> None:
        assert self._journal is not None
        log.error("records: database unreachable (%s); journalling to %s",
                  str(e).splitlines()[0][:200], self._journal.path)
        self._to_journal(batch)

    def _to_journal(self, batch: list[_Pending]) -> None:
        assert self._journal is not None
        for p in batch:
            try:
                self._journal.append(p.op, p.args)
                p.done = True
            except Exception as e:  # the disk too: the caller learns its write is not kept
                log.error("call %s: records: journal write failed for %s: %s", _call_of(p.args), p.op, e)
                p.done, p.error = True, e
        self._start_drainer()

    def _start_drainer(self) -> None:
        if self._drainer is None or not self._drainer.is_alive():
            self._drainer = threading.Thread(target=self._drain, name="records-journal", daemon=True)
            self._drainer.start()

    def _drain(self) -> None:
        while not self._closed.wait(self.retry_s):
            try:
                if self.flush_journal():
                    return
            except Exception:
                log.exception("records: writing the journal failed; trying again")

    def flush_journal(self) -> bool:
        """Writes the journal to the database if it is back; True when nothing is left waiting."""
        if self._journal is None or self._journal.count == 0:
            return True
        try:  # probe without holding the write lock, so writers keep journalling meanwhile
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as e:
            if _is_unreachable(e):
                return False
            raise
        with self._write_lock:
            entries = list(self._journal.entries())
            try:
                self._apply(entries)
            except Exception as e:
                if _is_unreachable(e):
                    return False
                # One entry the database refuses must not hold up the others: one at a time, and the
                # refused ones are kept beside the journal for a person to look at.
                log.error("records: journal replay refused (%s); writing entries one by one", e)
                if not self._apply_each(entries, self._journal.path.with_suffix(".rejected.jsonl")):
                    return False
            self._journal.clear()
        log.warning("records: database back; %d journalled writes written", len(entries))
        return True

    def _apply_each(self, entries: list[tuple[str, dict[str, Any]]], rejected: Path) -> bool:
        for op, args in entries:
            try:
                self._apply([(op, args)])
            except Exception as e:
                if _is_unreachable(e):
                    return False
                log.error("call %s: journalled %s refused by the database, kept in %s: %s", _call_of(args), op,
                          rejected, e)
                with open(rejected, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"op": op, "args": encode(args), "error": str(e)[:500]},
                                       ensure_ascii=False) + "\n")
        return True

    def _apply(self, entries: list[tuple[str, dict[str, Any]]]) -> None:
        """One transaction for the lot: all written or none (then tried again, idempotently)."""
        with self.engine.begin() as conn:
            for op, args in entries:
                fn = self._ops.get(op)
                if fn is None:
                    log.error("records: journal entry with unknown operation %r skipped", op)
                    continue
                if op == "add_line":
                    fn(conn, replay=True, **args)
                else:
                    fn(conn, **args)

    def _replay_orphans(self, directory: Path) -> None:
        own = self._journal.path if self._journal else None
        for path, handle in orphan_journals(directory, own):
            try:
                entries = list(read_entries(path))
                if entries:
                    try:
                        self._apply(entries)
                    except Exception as e:
                        if _is_unreachable(e):
                            raise
                        log.error("records: journal %s replay refused (%s); writing entries one by one", path, e)
                        if not self._apply_each(entries, path.with_suffix(".rejected.jsonl")):
                            log.error("records: journal %s kept for the next start-up: database unreachable", path)
                            continue
                    log.warning("records: %d writes from journal %s written", len(entries), path)
                path.unlink()
            except Exception as e:
                if not _is_unreachable(e):
                    raise
                log.error("records: journal %s kept for the next start-up: database unreachable", path)
            finally:
                handle.close()

    # -- calls and transcript lines -----------------------------------------------------------------
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
        with self._seq_lock:
            self._next_seq.setdefault(call_id, 1)
        self._write("start_call", dict(id=call_id, sip_call_id=sip_call_id, caller=caller[:128],
                                       called=called[:128], started_at=utcnow(), worker=worker,
                                       recording_path=recording_path))

    def _op_start_call(self, conn: Connection, **values: Any) -> None:
        _insert_ignore(conn, Call, values, ["id"])

    def open_call(
        self,
        call_id: str,
        *,
        sip_call_id: str,
        caller: str,
        called: str,
        worker: str = "",
        recording_path: str | None = None,
        codec: str = "",
    ) -> str:
        """start_call, add_leg("caller") and leg_answered as one write (one transaction): the record of an
        answered call. Returns the caller leg's id (for close_call)."""
        with self._seq_lock:
            self._next_seq.setdefault(call_id, 1)
        leg_id, now = new_id(), utcnow()
        self._write("open_call", dict(
            call=dict(id=call_id, sip_call_id=sip_call_id, caller=caller[:128], called=called[:128], started_at=now,
                      worker=worker, recording_path=recording_path),
            leg=dict(id=leg_id, call_id=call_id, kind="caller", sip_call_id=sip_call_id[:255], peer=caller[:255],
                     codec=codec[:16], started_at=now, answered_at=now)))
        return leg_id

    def _op_open_call(self, conn: Connection, call: dict[str, Any], leg: dict[str, Any]) -> None:
        _insert_ignore(conn, Call, call, ["id"])
        _insert_ignore(conn, Leg, leg, ["id"])

    def close_call(self, call_id: str, *, outcome: str, end_reason: str, legs: dict[str, str] | None = None,
                   fields: dict[str, Any] | None = None) -> None:
        """end_leg for each of `legs` (leg id → end reason), update_call(**fields) and end_call as one write."""
        if fields:
            self._check_call_fields(fields)
        with self._seq_lock:
            self._next_seq.pop(call_id, None)
        now = utcnow()
        self._write("close_call", dict(
            call_id=call_id, outcome=outcome, end_reason=end_reason, at=now, fields=dict(fields or {}),
            legs=[{"_key": leg, "ended_at": now, "end_reason": why[:64]} for leg, why in (legs or {}).items()]))

    def _op_close_call(self, conn: Connection, call_id: str, outcome: str, end_reason: str, at: datetime,
                       fields: dict[str, Any], legs: list[dict[str, Any]]) -> None:
        if legs:
            conn.execute(_update_by_id(Leg, "id"), legs)
        if fields:
            conn.execute(_update_by_id(Call, "id"), {"_key": call_id, **fields})
        conn.execute(_end_call_stmt(), _end_call_params(call_id, outcome, end_reason, at))

    def update_call(self, call_id: str, **fields: Any) -> None:
        self._check_call_fields(fields)
        self._write("update_call", dict(call_id=call_id, fields=fields))

    @staticmethod
    def _check_call_fields(fields: dict[str, Any]) -> None:
        unknown = set(fields) - _CALL_FIELDS
        if unknown:
            raise ValueError(f"unknown call fields: {sorted(unknown)}")

    def _op_update_call(self, conn: Connection, call_id: str, fields: dict[str, Any]) -> None:
        if fields:
            conn.execute(_update_by_id(Call, "id"), {"_key": call_id, **fields})

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
        """Appends a line (card numbers masked) and commits it; returns its sequence number in the call."""
        values = dict(call_id=call_id, speaker=speaker, text=mask_secrets(text), start_s=round(start_s, 3),
                      end_s=None if end_s is None else round(end_s, 3), intent=intent, confidence=confidence,
                      language=language)
        # Core inserts, not ORM flushes: this runs for every line of every call (profiled: half the cost).
        with self._seq_lock:
            seq = self._next_seq.get(call_id)
            if seq is None and (self._journal is None or self._journal.count == 0):
                try:
                    with self.engine.connect() as conn:
                        last = conn.scalar(select(func.max(TranscriptLine.seq))
                                           .where(TranscriptLine.call_id == call_id))
                    seq = (last or 0) + 1
                except Exception as e:
                    if not _is_unreachable(e) or self._journal is None:
                        raise
            values["seq"] = seq  # None: unknown while the database is away; numbered at replay
            item = self._enqueue("add_line", values)  # queued in number order; committed below, unlocked
            if seq is not None:
                self._next_seq[call_id] = seq + 1
        self._wait(item)
        return seq or 0

    def _op_add_line(self, conn: Connection, replay: bool = False, **values: Any) -> None:
        if values.get("seq") is None:
            last = conn.scalar(select(func.max(TranscriptLine.seq)).where(TranscriptLine.call_id == values["call_id"]))
            values["seq"] = (last or 0) + 1
        line_id = conn.execute(_line_stmt(conn, replay=replay), values).scalar()
        if line_id is not None:
            _index_line(conn, line_id, values["call_id"], values["text"])

    def end_call(self, call_id: str, *, outcome: str, end_reason: str) -> None:
        """Closes the record once; a second close keeps the first outcome."""
        with self._seq_lock:
            self._next_seq.pop(call_id, None)
        self._write("end_call", dict(call_id=call_id, outcome=outcome, end_reason=end_reason, at=utcnow()))

    def _op_end_call(self, conn: Connection, call_id: str, outcome: str, end_reason: str, at: datetime) -> None:
        conn.execute(_end_call_stmt(), _end_call_params(call_id, outcome, end_reason, at))

    def close_interrupted(self, worker: str) -> int:
        """Closes calls a dead process left open; returns how many."""
        with self._sessions.begin() as db:
            result = db.execute(
                update(Call)
                .where(Call.ended_at.is_(None), Call.worker == worker)
                .values(ended_at=utcnow(), outcome="interrupted", end_reason="worker_restart")
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def mark_recording_deleted(self, call_id: str) -> None:
        self._write("update_call", dict(call_id=call_id, fields={"recording_deleted": True}))

    # -- legs, intents, keys, queues, agents, complaints ---------------------------------------------
    def add_leg(self, call_id: str, kind: str, *, sip_call_id: str = "", peer: str = "", codec: str = "") -> str:
        """A SIP leg of the call (kind: caller or agent); returns its id for end_leg."""
        leg_id = new_id()
        self._write("insert", dict(table="legs", values=dict(
            id=leg_id, call_id=call_id, kind=kind[:16], sip_call_id=sip_call_id[:255], peer=peer[:255],
            codec=codec[:16], started_at=utcnow())))
        return leg_id

    def leg_answered(self, leg_id: str) -> None:
        self._write("update", dict(table="legs", id=leg_id, values={"answered_at": utcnow()}))

    def end_leg(self, leg_id: str, end_reason: str) -> None:
        self._write("update", dict(table="legs", id=leg_id, values={"ended_at": utcnow(),
                                                                     "end_reason": end_reason[:64]}))

    def add_intent(self, call_id: str, intent: str, *, confidence: float | None = None,
                   slots: dict[str, Any] | None = None, source: str = "speech", line_seq: int | None = None) -> str:
        """An intent understood during the call, with its slots (values masked like transcript text)."""
        intent_id = new_id()
        self._write("add_intent", dict(
            id=intent_id, call_id=call_id, at=utcnow(), intent=intent[:64], confidence=confidence,
            source=source[:16], line_seq=line_seq,
            slots={str(k)[:64]: mask_secrets(str(v)) for k, v in (slots or {}).items()}))
        return intent_id

    def _op_add_intent(self, conn: Connection, slots: dict[str, str], **values: Any) -> None:
        if _insert_ignore(conn, IntentRecord, values, ["id"]) and slots:
            conn.execute(_cached("slots", lambda: insert(_table(SlotValue))),
                         [{"intent_id": values["id"], "name": k, "value": v} for k, v in slots.items()])

    def add_dtmf(self, call_id: str, digits: str, *, secret: bool = False) -> None:
        """Keys pressed; during secret entry (PIN, card number) only '*' per key is stored."""
        self._write("insert", dict(table="dtmf", values=dict(
            id=new_id(), call_id=call_id, at=utcnow(), digits=mask_dtmf(digits[:64], secret), secret=secret)))

    def queue_entered(self, call_id: str, queue: str) -> str:
        """The call joins a queue; returns the entry id for queue_left."""
        entry_id, now = new_id(), utcnow()
        self._queued_at[entry_id] = now
        self._write("insert", dict(table="queue_entries", values=dict(
            id=entry_id, call_id=call_id, queue=queue[:64], status="queued", queued_at=now)))
        return entry_id

    def queue_left(self, entry_id: str, status: str, *, agent: str | None = None) -> None:
        """The call left the queue: answered (by agent) or abandoned; the wait is recorded."""
        if status not in ("answered", "abandoned"):
            raise ValueError(f"queue entry status must be answered or abandoned, not {status!r}")
        now = utcnow()
        since = self._queued_at.pop(entry_id, None)
        values: dict[str, Any] = {"status": status, "left_at": now, "agent": agent}
        if since is not None:
            values["wait_s"] = round((now - since).total_seconds(), 3)
        self._write("update", dict(table="queue_entries", id=entry_id, values=values))

    def agent_login(self, agent: str) -> str:
        session_id = new_id()
        now = utcnow()
        self._write("insert", dict(table="agent_sessions", values=dict(id=session_id, agent=agent[:128],
                                                                        started_at=now)))
        self.agent_state(agent, "ready", reason="login", session_id=session_id)
        return session_id

    def agent_state(self, agent: str, state: str, *, reason: str = "", session_id: str | None = None) -> None:
        self._write("insert", dict(table="agent_states", values=dict(
            id=new_id(), session_id=session_id, agent=agent[:128], at=utcnow(), state=state[:32], reason=reason[:64])))

    def agent_logout(self, session_id: str, agent: str) -> None:
        self.agent_state(agent, "logged_out", reason="logout", session_id=session_id)
        self._write("update", dict(table="agent_sessions", id=session_id, values={"ended_at": utcnow()}))

    def add_complaint(self, category: str, text: str, *, call_id: str | None = None) -> str:
        """Files a complaint; returns its ticket number (C-YYYYMMDD-XXXXXX)."""
        now = utcnow()
        ticket = f"C-{now:%Y%m%d}-{secrets.token_hex(3).upper()}"
        self._write("insert", dict(table="complaints", values=dict(
            id=new_id(), ticket=ticket, call_id=call_id, created_at=now, category=category[:64] or "other",
            status="open", text=mask_secrets(text))))
        return ticket

    def set_complaint_status(self, ticket: str, status: str) -> None:
        if status not in COMPLAINT_STATUSES:
            raise ValueError(f"complaint status must be one of {', '.join(COMPLAINT_STATUSES)}, not {status!r}")
        with self.engine.begin() as conn:
            n = conn.execute(update(Complaint).where(Complaint.ticket == ticket).values(status=status)).rowcount
        if not n:
            raise KeyError(f"no complaint {ticket!r}")

    def complaints(self, *, call_id: str | None = None, limit: int = 100) -> list[ComplaintView]:
        q = select(Complaint).order_by(Complaint.created_at.desc()).limit(limit)
        if call_id:
            q = q.where(Complaint.call_id == call_id)
        with self._sessions() as db:
            return [ComplaintView(c.ticket, c.call_id, aware(c.created_at), c.category, c.status, c.text)
                    for c in db.scalars(q)]

    _TABLES: ClassVar[dict[str, Any]] = {
        "legs": Leg, "dtmf": DtmfRecord, "queue_entries": QueueEntry, "agent_sessions": AgentSession,
        "agent_states": AgentStateChange, "complaints": Complaint, "callbacks": CallbackRecord,
    }

    def insert_row(self, table: str, values: dict[str, Any]) -> None:
        """Inserts a row (with a client-made `id`) into one of the record tables above, through the write path:
        committed before it returns, or journalled while the database is away (recordings/callbacks.py)."""
        if table not in self._TABLES:
            raise ValueError(f"unknown record table {table!r}")
        self._write("insert", dict(table=table, values=values))

    def update_row(self, table: str, row_id: str, values: dict[str, Any]) -> None:
        """Updates one row of a record table by id, through the write path (as `insert_row`)."""
        if table not in self._TABLES:
            raise ValueError(f"unknown record table {table!r}")
        self._write("update", dict(table=table, id=row_id, values=values))

    def _op_insert(self, conn: Connection, table: str, values: dict[str, Any]) -> None:
        _insert_ignore(conn, self._TABLES[table], values, ["id"])

    def _op_update(self, conn: Connection, table: str, id: str, values: dict[str, Any]) -> None:
        if values:
            conn.execute(_update_by_id(self._TABLES[table], "id"), {"_key": id, **values})

    # -- reading ----------------------------------------------------------------------------------------
    def get_call(self, call_id: str) -> CallView | None:
        with self._sessions() as db:
            c = db.get(Call, call_id)
            if c is None:
                return None
            return _call_view(c)

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
            return [_call_view(c) for c in db.scalars(select(Call).order_by(Call.started_at.desc()).limit(limit))]


def _call_view(c: Call) -> CallView:
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
        recording_deleted=bool(c.recording_deleted),
    )


def _insert_ignore_stmt(conn: Connection, model: Any, keys: list[str]) -> Any:
    """INSERT that does nothing when a row with the same key exists (journal replays are idempotent)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(model).on_conflict_do_nothing(index_elements=keys)
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(model).on_conflict_do_nothing(index_elements=keys)
    return insert(model)


def _insert_ignore(conn: Connection, model: Any, values: dict[str, Any], keys: list[str]) -> bool:
    """Returns True when the row was inserted (False: it was there already)."""
    return bool(conn.execute(_insert_ignore_cached(conn, model, keys), values).rowcount)


_CALL_FIELDS = frozenset(c.name for c in Call.__table__.columns) - {"id"}

# Statements built once and executed with parameters: building `insert(...).values(**row)` for every
# write cost more CPU than SQLite's own work (profiled: coercions and cache keys, ~0.5 ms a write).
_STATEMENTS: dict[Any, Any] = {}


def _call_of(args: dict[str, Any]) -> str:
    """The call a write belongs to, for log lines ("" for agent and complaint rows without one)."""
    return str(args.get("call_id") or args.get("id") or args.get("values", {}).get("call_id") or "")


def _group_key(p: _Pending) -> tuple[Any, ...] | None:
    """Writes with the same key run as one executemany of one statement (None: never grouped)."""
    a = p.args
    if p.op == "add_line":
        return ("add_line",) if a.get("seq") is not None else None
    if p.op in ("insert", "update"):
        return (p.op, a["table"], tuple(a["values"])) if a["values"] else None
    if p.op == "update_call":
        return ("update_call", tuple(a["fields"])) if a["fields"] else None
    if p.op in ("start_call", "end_call", "open_call"):
        return (p.op,)
    if p.op == "close_call":
        return ("close_call", tuple(a["fields"]))
    return None


def _execute_group(conn: Connection, key: tuple[Any, ...], rows: list[dict[str, Any]]) -> None:
    """The grouped form of the _op_ methods (same statements, many parameter sets, in order)."""
    op = key[0]
    if op == "add_line":
        ids = conn.execute(_line_stmt(conn, many=True), rows).scalars().all()
        index = INDEX_LINE_SQL.get(conn.dialect.name)
        if index is not None:
            conn.execute(index, [{"id": line_id, "call_id": r["call_id"], "terms": index_terms(r["text"])}
                                 for line_id, r in zip(ids, rows, strict=True)])
    elif op == "insert":
        conn.execute(_insert_ignore_cached(conn, CallStore._TABLES[key[1]], ["id"]), [r["values"] for r in rows])
    elif op == "update":
        conn.execute(_update_by_id(CallStore._TABLES[key[1]], "id"), [{"_key": r["id"], **r["values"]} for r in rows])
    elif op == "update_call":
        conn.execute(_update_by_id(Call, "id"), [{"_key": r["call_id"], **r["fields"]} for r in rows])
    elif op == "start_call":
        conn.execute(_insert_ignore_cached(conn, Call, ["id"]), rows)
    elif op == "end_call":
        conn.execute(_end_call_stmt(), [_end_call_params(**r) for r in rows])
    elif op == "open_call":
        conn.execute(_insert_ignore_cached(conn, Call, ["id"]), [r["call"] for r in rows])
        conn.execute(_insert_ignore_cached(conn, Leg, ["id"]), [r["leg"] for r in rows])
    elif op == "close_call":
        legs = [leg for r in rows for leg in r["legs"]]
        if legs:
            conn.execute(_update_by_id(Leg, "id"), legs)
        if key[1]:
            conn.execute(_update_by_id(Call, "id"), [{"_key": r["call_id"], **r["fields"]} for r in rows])
        conn.execute(_end_call_stmt(), [_end_call_params(r["call_id"], r["outcome"], r["end_reason"], r["at"])
                                        for r in rows])


def _insert_ignore_cached(conn: Connection, model: Any, keys: list[str]) -> Any:
    return _cached(("insert_ignore", conn.dialect.name, model.__tablename__, tuple(keys)),
                   lambda: _insert_ignore_stmt(conn, _table(model), keys))


def _line_stmt(conn: Connection, *, replay: bool = False, many: bool = False) -> Any:
    """INSERT of a transcript line returning its id (replay: ignore a line already there; many: for an
    executemany, ids in the order of the rows)."""
    lines = _table(TranscriptLine)
    return _cached(("line", conn.dialect.name, replay, many), lambda: (
        _insert_ignore_stmt(conn, lines, ["call_id", "seq"]) if replay else insert(lines)
    ).returning(lines.c.id, sort_by_parameter_order=many))


def _end_call_stmt() -> Any:
    calls = _table(Call)
    return _cached("end_call", lambda: update(calls).where(calls.c.id == bindparam("_key"), calls.c.ended_at.is_(None)))


def _end_call_params(call_id: str, outcome: str, end_reason: str, at: datetime) -> dict[str, Any]:
    return {"_key": call_id, "ended_at": at, "outcome": outcome, "end_reason": end_reason}


def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


def _cached(key: Any, build: Callable[[], Any]) -> Any:
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        stmt = _STATEMENTS[key] = build()
    return stmt


def _update_by_id(model: Any, column: str) -> Any:
    """UPDATE model SET <the parameters' columns> WHERE column = :_key (SET columns come from the call)."""
    table = model.__table__
    return _cached(("update", table.name, column), lambda: update(table).where(table.c[column] == bindparam("_key")))


INDEX_LINE_SQL = {
    "sqlite": text("INSERT INTO transcript_fts(rowid, terms) VALUES (:id, :terms)"),
    "postgresql": text("INSERT INTO transcript_search(line_id, call_id, tsv) "
                       "VALUES (:id, :call_id, to_tsvector('simple', :terms))"),
}


def _index_line(conn: Connection, line_id: int, call_id: str, text_: str) -> None:
    """Adds a line to the full-text index (recordings/search.py), in the transaction that stored it."""
    stmt = INDEX_LINE_SQL.get(conn.dialect.name)
    if stmt is not None:
        conn.execute(stmt, {"id": line_id, "call_id": call_id, "terms": index_terms(text_)})


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
