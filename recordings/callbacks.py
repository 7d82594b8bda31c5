"""Promised callbacks, kept in the call database (table `callbacks`, migration 0006).

A caller who chose to be called back has hung up: the promise must outlive the worker that took it. Each
callback is one row: the call, queue, number, language, the screen pop's context, when it was requested,
the caller's place (queue arrival, priority, position), attempts, its state and the worker that owns it.

States: ``pending`` (waiting for an agent) → ``dialling`` (an agent is reserved, the customer is being
called) → ``connected`` (bridged to the agent) → ``done``; or ``failed`` (nobody answered, no agent) or
``expired`` (older than the queue's `callback.expire_after_s`). ``pending`` and ``dialling`` are *open*:
a worker starting up takes back the open callbacks it owns (`open_for(node)`), and in distributed mode the
callbacks of a worker whose heartbeat stopped are moved to a live one by one conditional UPDATE
(`claim(dead, me)`), the same ownership rule as the calls' `worker` column and the agents' `node` holds.

Personal data: the number is a phone number and the context holds what the caller said. With a key
(`recordings.encrypt`, HOTLINE_RECORDING_KEY) both are sealed with AES-256-GCM like the recordings at rest
(recordings/atrest.py); lists show `number_hint` (the last four digits). When a callback ends (done,
failed, expired) the number and context are erased from the row: the transcript keeps the account.
Deleting the call (retention) deletes its callbacks (foreign key, ON DELETE CASCADE).

Writes go through `CallStore.insert_row` / `update_row`: committed before they return, or journalled while
the database is away (recordings/journal.py) and written, in order, when it returns. Reads and claims go
to the database directly (at start-up and every few seconds; a failure is the caller's to log).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import wave
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from recordings.atrest import RecordingUnreadable, decrypt, encrypt
from recordings.models import CallbackRecord
from recordings.store import CallStore, aware, new_id, utcnow

log = logging.getLogger(__name__)

STATES = ("pending", "dialling", "connected", "done", "failed", "expired")
OPEN_STATES = ("pending", "dialling")
UNFINISHED = ("pending", "dialling", "connected")  # what a worker that died left: taken back at start-up
FINAL_STATES = ("done", "failed", "expired")
SEALED = "aes:"  # prefix of a sealed value: base64 of recordings.atrest.encrypt(...)


class CallbackUnreadable(ValueError):
    """A stored number or context cannot be read (sealed and no key, the wrong key, or damaged)."""


@dataclass(frozen=True)
class StoredCallback:
    """A callback as stored, the number and context opened."""

    id: str
    call_id: str
    queue: str
    number: str
    language: str
    context: dict[str, Any]
    requested_at: datetime
    queued_at: datetime
    priority: int
    place: int
    attempts: int
    state: str
    node: str
    queue_entry: str | None
    call_started_at: datetime | None  # the original call's start (transcript offsets of later lines)


def hint(number: str) -> str:
    """What lists show of a number: its last four digits ("*******0002")."""
    return ("*" * max(0, len(number) - 4) + number[-4:])[:32]


def seal(text: str, key: bytes | None) -> str:
    """`text` sealed with AES-256-GCM under `key` (None: kept as it is, like the rest of the records)."""
    if key is None:
        return text
    return SEALED + base64.b64encode(encrypt(text.encode(), key)).decode()


def unseal(value: str, key: bytes | None) -> str:
    if not value.startswith(SEALED):
        return value
    if key is None:
        raise CallbackUnreadable("the callback's number is sealed and no key is set (HOTLINE_RECORDING_KEY)")
    try:
        return decrypt(base64.b64decode(value[len(SEALED):]), key).decode()
    except (RecordingUnreadable, ValueError) as exc:
        raise CallbackUnreadable(f"the callback's number cannot be opened: {exc}") from None


class CallbackStore:
    """Blocking repository over a `CallStore` (run it off the event loop)."""

    TABLE = "callbacks"

    def __init__(self, store: CallStore, *, key: bytes | None = None) -> None:
        self.store, self.key = store, key

    # -- writes (journalled) ------------------------------------------------------------------------
    def add(self, call_id: str, *, queue: str, number: str, language: str, context: dict[str, Any],
            requested_at: datetime, queued_at: datetime, priority: int, place: int, node: str,
            queue_entry: str | None) -> str:
        """Stores a new pending callback; returns its id."""
        if not number.isdigit() or len(number) > 32:
            raise ValueError(f"call {call_id}: a callback number is 1 to 32 digits, not {number!r}")
        row_id = new_id()
        self.store.insert_row(self.TABLE, dict(
            id=row_id, call_id=call_id, queue=queue[:64], number=seal(number, self.key), number_hint=hint(number),
            language=language[:8], context=seal(json.dumps(context, ensure_ascii=False, default=str), self.key),
            requested_at=requested_at, queued_at=queued_at, priority=priority, place=place, attempts=0,
            state="pending", reason=None, node=node[:64], queue_entry=queue_entry, updated_at=utcnow()))
        return row_id

    def set_state(self, row_id: str, state: str, *, attempts: int | None = None, reason: str | None = None,
                  node: str | None = None) -> None:
        """Moves a callback to `state`; a final state erases its number and context (the transcript keeps them)."""
        if state not in STATES:
            raise ValueError(f"callback state must be one of {', '.join(STATES)}, not {state!r}")
        values: dict[str, Any] = {"state": state, "updated_at": utcnow()}
        if attempts is not None:
            values["attempts"] = attempts
        if reason is not None:
            values["reason"] = reason[:64]
        if node is not None:
            values["node"] = node[:64]
        if state in FINAL_STATES:
            values.update(number="", context="{}")
        self.store.update_row(self.TABLE, row_id, values)

    # -- reads and claims (the database itself) ---------------------------------------------------
    def open_for(self, node: str) -> list[StoredCallback]:
        """The unfinished callbacks `node` owns (pending, dialling, connected), in serving order (priority, then
        queue arrival, then request). A row that cannot be opened (no key, wrong key) is logged and left out."""
        from recordings.models import Call

        cb = CallbackRecord
        q = (select(cb, Call.started_at).join(Call, Call.id == cb.call_id, isouter=True)
             .where(cb.node == node, cb.state.in_(UNFINISHED))
             .order_by(cb.priority.desc(), cb.queued_at, cb.requested_at, cb.id))
        out = []
        with self.store.engine.connect() as conn:
            rows = conn.execute(q).all()
        for r in rows:
            try:
                out.append(self._view(r, r.started_at))
            except CallbackUnreadable as exc:
                log.error("call %s: callback %s cannot be restored: %s", r.call_id, r.id, exc)
        return out

    def claim(self, from_nodes: Iterable[str], to_node: str) -> int:
        """Moves the open callbacks of workers that are gone to `to_node` (one conditional UPDATE: two live
        workers never both take one). Returns how many were claimed."""
        nodes = [n for n in from_nodes if n != to_node]
        if not nodes:
            return 0
        cb = CallbackRecord
        with self.store.engine.begin() as conn:
            n = conn.execute(update(cb).where(cb.node.in_(nodes), cb.state.in_(UNFINISHED))
                             .values(node=to_node[:64], updated_at=utcnow())).rowcount
        if n:
            log.warning("%s: took over %d callbacks of %s", to_node, n, ", ".join(sorted(nodes)))
        return int(n or 0)

    def get(self, row_id: str) -> StoredCallback | None:
        from recordings.models import Call

        with self.store.engine.connect() as conn:
            r = conn.execute(select(CallbackRecord, Call.started_at)
                             .join(Call, Call.id == CallbackRecord.call_id, isouter=True)
                             .where(CallbackRecord.id == row_id)).first()
        return None if r is None else self._view(r, r.started_at)

    def for_call(self, call_id: str) -> list[dict[str, Any]]:
        """The call's callbacks without number or context (console, tests): state, attempts, hint, times."""
        cb = CallbackRecord
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(cb.id, cb.state, cb.attempts, cb.number_hint, cb.reason, cb.node,
                                       cb.requested_at, cb.updated_at).where(cb.call_id == call_id)
                                .order_by(cb.requested_at)).all()
        return [{"id": r.id, "state": r.state, "attempts": r.attempts, "number_hint": r.number_hint,
                 "reason": r.reason, "node": r.node, "requested_at": aware(r.requested_at),
                 "updated_at": aware(r.updated_at)} for r in rows]

    def open_counts(self) -> dict[str, int]:
        """Open callbacks per queue, over every worker (`hotline queues`)."""
        return open_counts(self.store.engine)

    def _view(self, r: Any, started_at: datetime | None) -> StoredCallback:
        row = r  # a Core row: the entity's columns, then the call's started_at
        try:
            context = json.loads(unseal(row.context, self.key) or "{}")
        except ValueError as exc:
            if isinstance(exc, CallbackUnreadable):
                raise
            context = {}
        return StoredCallback(
            id=row.id, call_id=row.call_id, queue=row.queue, number=unseal(row.number, self.key),
            language=row.language, context=context if isinstance(context, dict) else {},
            requested_at=aware(row.requested_at), queued_at=aware(row.queued_at), priority=row.priority,
            place=row.place, attempts=row.attempts, state=row.state, node=row.node, queue_entry=row.queue_entry,
            call_started_at=aware(started_at) if started_at is not None else None)


def open_counts(engine: Engine) -> dict[str, int]:
    """Open (pending or dialling) callbacks per queue, over every worker; {} before migration 0006."""
    from sqlalchemy import inspect

    if not inspect(engine).has_table("callbacks"):
        return {}
    cb = CallbackRecord
    with engine.connect() as conn:
        rows = conn.execute(select(cb.queue, func.count()).where(cb.state.in_(OPEN_STATES)).group_by(cb.queue)).all()
    return {str(q): int(n) for q, n in rows}


# -- the callback conversation's recording, joined to the call's ----------------------------------------------
def append_recording(base: str | Path | None, extra: str | Path, *, compress: bool, key: bytes | None,
                     gap_s: float = 1.0) -> Path:
    """Joins a callback's finished recording `extra` after the call's own recording `base` (any at-rest form:
    .wav, .flac, .enc) into one file, sealed like the others, so the call page plays the whole call. Returns
    the path to store as the call's `recording_path`. The new file is complete on disk (fsync'd, renamed into
    place) before either old file is removed; on any error the old files stay and the error is raised.
    No `base` recording (never made, deleted): `extra` itself is returned."""
    from recordings.atrest import open_recording, resolve_recording
    from recordings.atrest import seal as seal_file

    extra_path = resolve_recording(extra)
    if extra_path is None:
        raise FileNotFoundError(f"no callback recording at {extra}")
    base_path = resolve_recording(base) if base else None
    if base_path is None:
        return extra_path
    first, second = _pcm(open_recording(base_path, key)), _pcm(open_recording(extra_path, key))
    if first[0] != second[0] or first[1] != second[1]:
        raise ValueError(f"{base_path} and {extra_path} differ in rate or channels")
    rate, channels = first[0], first[1]
    gap = bytes(int(rate * gap_s) * channels * 2)
    out = extra_path.with_name(_stem(extra_path) + "-joined.wav")
    tmp = out.with_name(out.name + ".part")
    try:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(first[2] + gap + second[2])
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
        final = seal_file(out, compress=compress, key=key)
    except Exception:
        tmp.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
        raise
    for old in (base_path, extra_path):
        if old != final:
            old.unlink(missing_ok=True)
    return final


def _pcm(wav_bytes: bytes) -> tuple[int, int, bytes]:
    with wave.open(io.BytesIO(wav_bytes)) as w:
        if w.getsampwidth() != 2:
            raise ValueError("recordings are 16-bit PCM")
        return w.getframerate(), w.getnchannels(), w.readframes(w.getnframes())


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".enc", ".flac", ".wav"):
        name = name.removesuffix(suffix)
    return name
