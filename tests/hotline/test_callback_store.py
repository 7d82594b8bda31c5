"""Promised callbacks survive the worker: rows in `callbacks` (recordings/callbacks.py, migration 0006) on real
SQLite and PostgreSQL, numbers sealed and erased when done, journalled while PostgreSQL is down; a restarted
worker (hotline/callback.py `CallbackDialer.start`) takes its callbacks back in their place, expires old ones,
closes a conversation its crash cut, and takes over those of a worker whose heartbeat stopped; the callback's
recording is joined after the call's own."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import wave
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from support.postgres import PgServer, pg_server  # noqa: F401  (fixture)

from hotline.agents_cli import queues_text
from hotline.bus import EventBus
from hotline.callback import CallbackDialer, PendingCallback
from hotline.session import SessionDeps
from hotline.settings import DEFAULT_CONFIG, load_settings
from recordings import CallStore, StereoRecorder
from recordings.atrest import open_recording
from recordings.callbacks import CallbackStore, append_recording
from routing import CallDistributor, QueueConfig
from routing.sqlstore import SqlAgentStore, nodes_table

pytestmark = pytest.mark.timeout(60)

KEY = bytes(range(32))  # the recording key (recordings.encrypt) seals numbers too
NOW = datetime.now(UTC)


def new_call(store: CallStore, call_id: str, *, worker: str = "worker-1") -> str:
    """A call that took a callback: its record closed `callback_requested`, its queue entry still open."""
    store.start_call(call_id, sip_call_id=f"{call_id}@test", caller="5550009", called="95555", worker=worker)
    entry = store.queue_entered(call_id, "general")
    store.end_call(call_id, outcome="callback_requested", end_reason="callback_requested")
    return entry


def add_row(rows: CallbackStore, call_id: str, entry: str, *, number: str = "5550009", node: str = "worker-1",
            age_s: float = 60.0, waited_s: float = 120.0, priority: int = 0) -> str:
    return rows.add(call_id, queue="general", number=number, language="en", context={"intent": "card_lost"},
                    requested_at=NOW - timedelta(seconds=age_s), queued_at=NOW - timedelta(seconds=waited_s),
                    priority=priority, place=1, node=node, queue_entry=entry)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CallStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hotline.db'}"
    else:
        url = request.getfixturevalue("pg_server").create_database()
    s = CallStore(url, journal_dir=tmp_path / "journal", retry_s=0.2)
    try:
        yield s
    finally:
        s.close()


def raw(store: CallStore, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def test_rows_are_sealed_listed_and_erased_when_the_callback_ends(store: CallStore) -> None:
    rows = CallbackStore(store, key=KEY)
    entry = new_call(store, "c1")
    row_id = add_row(rows, "c1", entry, number="13800001111")
    number, context, hint = raw(store, "SELECT number, context, number_hint FROM callbacks")[0]
    assert number.startswith("aes:") and "13800001111" not in number and "card_lost" not in context
    assert hint == "*******1111"
    [cb] = rows.open_for("worker-1")
    assert (cb.number, cb.context, cb.state, cb.queue_entry) == ("13800001111", {"intent": "card_lost"}, "pending",
                                                                  entry)
    assert cb.call_started_at is not None and rows.open_counts() == {"general": 1}
    assert CallbackStore(store, key=None).open_for("worker-1") == []  # sealed, no key: logged, left out
    assert rows.open_for("worker-2") == []
    rows.set_state(row_id, "done", attempts=1, reason="customer_hung_up")
    assert raw(store, "SELECT number, context, state, attempts FROM callbacks") == [("", "{}", "done", 1)]
    assert rows.open_for("worker-1") == [] and rows.open_counts() == {}
    with pytest.raises(ValueError, match="1 to 32 digits"):
        add_row(rows, "c1", entry, number="555-0009")
    with pytest.raises(ValueError, match="state must be one of"):
        rows.set_state(row_id, "lost")


@pytest.mark.slow
def test_callback_writes_are_journalled_while_postgresql_is_down(pg_server: PgServer, tmp_path: Path) -> None:  # noqa: F811
    store = CallStore(pg_server.create_database(), journal_dir=tmp_path / "journal", retry_s=0.2)
    try:
        rows = CallbackStore(store, key=KEY)
        entry = new_call(store, "c1")
        pg_server.stop()
        try:
            row_id = add_row(rows, "c1", entry)
            rows.set_state(row_id, "dialling", attempts=1)
            assert store.journal_pending == 2
        finally:
            pg_server.start()
        deadline = time.monotonic() + 20
        while store.journal_pending and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.journal_pending == 0
        [cb] = rows.open_for("worker-1")
        assert (cb.id, cb.number, cb.state, cb.attempts) == (row_id, "5550009", "dialling", 1)
    finally:
        store.close()


# -- a worker starting again -------------------------------------------------------------------------------
@dataclass
class Worker:
    acd: CallDistributor
    dialer: CallbackDialer
    store: CallStore


@pytest.fixture(params=["sqlite", "postgresql"])
async def worker_factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    settings = load_settings(DEFAULT_CONFIG, data_dir=str(tmp_path), queues=[{
        "name": "general", "callback": {"enabled": True, "expire_after_s": 3600}}])
    url = (f"sqlite:///{tmp_path / 'hotline.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_server").create_database())
    store = CallStore(url, journal_dir=tmp_path / "journal")
    pool = ThreadPoolExecutor(2)
    made: list[Worker] = []

    async def never_dial(uri: str, **kwargs: Any) -> Any:
        raise AssertionError(f"nobody is free: {uri} must not be dialled")

    def make(node: str = "worker-1") -> Worker:
        s = settings.model_copy(update={"node_name": node})
        deps = SessionDeps(settings=s, store=store, bus=EventBus(), engine=None, recognizer=None,  # type: ignore[arg-type]
                           prompts=None, queues={}, dial=never_dial, cpu_pool=pool, db_pool=pool,  # type: ignore[arg-type]
                           endpointer_factory=None, recording_key=KEY)  # type: ignore[arg-type]
        acd = CallDistributor([QueueConfig("general")])  # no agents: callbacks wait in their place
        dialer = CallbackDialer(acd, deps)
        acd.subscribe(dialer.on_event)
        made.append(Worker(acd, dialer, store))
        return made[-1]

    try:
        yield make
    finally:
        for w in made:
            await w.dialer.stop()
        pool.shutdown(wait=True)
        store.close()


async def take_callback(w: Worker, call_id: str, number: str) -> None:
    """What the session does when a queued caller takes a callback."""
    w.store.start_call(call_id, sip_call_id=f"{call_id}@t", caller=number, called="95555", worker=w.dialer.node)
    entry = w.store.queue_entered(call_id, "general")
    task = asyncio.ensure_future(w.acd.acquire("general", call_id))
    await asyncio.sleep(0.01)
    w.dialer.register(PendingCallback(call_id, number, "general", "en", {"intent": "card_lost"}, entry))
    w.acd.request_callback(call_id, number)
    assert await asyncio.wait_for(task, 1) is None
    w.store.end_call(call_id, outcome="callback_requested", end_reason="callback_requested")  # they hang up


async def test_a_restarted_worker_takes_back_its_callbacks_in_their_place(worker_factory: Any) -> None:
    first = worker_factory()
    for n, call_id in enumerate(("a", "b", "c")):
        await take_callback(first, call_id, f"555000{n}")
    await first.dialer.stop()  # a clean stop keeps them (a SIGKILL leaves the same rows: nothing is in memory only)
    assert raw(first.store, "SELECT call_id, state, node FROM callbacks ORDER BY call_id") == [
        ("a", "pending", "worker-1"), ("b", "pending", "worker-1"), ("c", "pending", "worker-1")]
    assert first.store.get_call("a").outcome == "callback_requested"
    assert "callbacks pending: general 3\n" in queues_text(first.store.engine, first.dialer.deps.settings)

    second = worker_factory()  # the next run of worker-1: a new distributor, nothing in memory
    late = asyncio.ensure_future(second.acd.acquire("general", "d"))  # a caller arriving after the restart
    await asyncio.sleep(0.01)
    assert await second.dialer.start() == 3
    assert [r.call_id for r in second.acd.callbacks()] == ["a", "b", "c"]
    assert [second.acd.position(c) for c in ("a", "b", "c", "d")] == [1, 2, 3, 4]  # the new caller is behind
    assert [r.number for r in second.acd.callbacks()] == ["5550000", "5550001", "5550002"]
    lines = [ln.text for ln in second.store.get_transcript("a")]
    assert lines[-2:] == ["callback kept: worker-1 stops; it is made after the restart",
                          "callback to 5550000 taken back by worker-1 (place kept)"]
    late.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await late


async def test_old_callbacks_expire_and_a_cut_conversation_is_closed(worker_factory: Any) -> None:
    w = worker_factory()
    rows = w.dialer.rows
    old = add_row(rows, "old", new_call(w.store, "old"), age_s=7200)  # the bound is 1 h
    cut = add_row(rows, "cut", new_call(w.store, "cut"))
    rows.set_state(cut, "connected", attempts=1)  # the worker died while customer and agent talked
    fresh = add_row(rows, "fresh", new_call(w.store, "fresh"))
    assert await w.dialer.start() == 1
    assert [r.call_id for r in w.acd.callbacks()] == ["fresh"]
    st = {r[0]: r[1:] for r in raw(w.store, "SELECT id, state, reason, number FROM callbacks")}
    assert st[old] == ("expired", "callback_expired", "") and st[cut] == ("done", "worker_restart", "")
    assert st[fresh][0] == "pending"
    call = w.store.get_call("old")
    assert call is not None and (call.outcome, call.end_reason) == ("callback_expired", "callback_expired")
    assert raw(w.store, "SELECT status FROM queue_entries WHERE call_id='old'") == [("abandoned",)]
    assert "expired" in w.store.get_transcript("old")[-1].text
    # expiry also while running: the bound passes for the one waiting
    w.dialer.pending["fresh"].requested_at = NOW - timedelta(hours=2)
    await w.dialer.check()
    assert w.acd.callbacks() == [] and raw(w.store, f"SELECT state FROM callbacks WHERE id='{fresh}'") == [("expired",)]


async def test_callbacks_of_a_worker_whose_heartbeat_stopped_are_taken_over(worker_factory: Any) -> None:
    w = worker_factory("worker-1")
    url = w.store.url
    mine, theirs = SqlAgentStore(url, node="worker-1"), SqlAgentStore(url, node="worker-2")
    try:
        theirs.heartbeat()
        mine.heartbeat()
        row = add_row(w.dialer.rows, "x", new_call(w.store, "x", worker="worker-2"), node="worker-2")
        await w.dialer.start()
        await w.dialer.check(mine, dead_after_s=5)
        assert w.acd.callbacks() == []  # worker-2 is alive: its callback stays its own
        with mine.engine.begin() as conn:
            conn.execute(sa.update(nodes_table).where(nodes_table.c.node == "worker-2")
                         .values(seen_at=time.time() - 60))
        await w.dialer.check(mine, dead_after_s=5)
        assert [r.call_id for r in w.acd.callbacks()] == ["x"]
        assert raw(w.store, "SELECT node FROM callbacks WHERE id=:id", id=row) == [("worker-1",)]
    finally:
        mine.close()
        theirs.close()


# -- the callback conversation's recording ----------------------------------------------------------------
def tone_recording(path: Path, seconds: float, level: int, *, compress: bool) -> Path:
    rec = StereoRecorder(path, call_id="c1", compress=compress, key=KEY)
    frame = (np.full(160, level, dtype="<i2")).tobytes()
    for _ in range(int(seconds / 0.02)):
        rec.tap("in", frame)
        rec.tap("out", frame)
    return rec.close()


def test_the_callback_recording_is_joined_after_the_calls_own(tmp_path: Path) -> None:
    base = tone_recording(tmp_path / "c1.wav", 1.0, 1000, compress=True)
    extra = tone_recording(tmp_path / "c1-callback1.wav", 0.5, 2000, compress=True)
    assert base.name == "c1.flac.enc" and extra.name == "c1-callback1.flac.enc"
    joined = append_recording(tmp_path / "c1.wav", extra, compress=True, key=KEY, gap_s=0.25)
    assert joined.name == "c1-callback1-joined.flac.enc" and not base.exists() and not extra.exists()
    with wave.open(io.BytesIO(open_recording(joined, KEY))) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert len(pcm) == 8000 + 2000 + 4000
    assert (pcm[:8000] == 1000).all() and (pcm[8000:10000] == 0).all() and (pcm[10000:] == 2000).all()
    # no recording of the call (never made, or deleted by retention): the callback's alone
    alone = tone_recording(tmp_path / "c2-callback1.wav", 0.2, 5, compress=False)
    assert append_recording(tmp_path / "c2.wav", alone, compress=False, key=KEY) == alone
    with pytest.raises(FileNotFoundError):
        append_recording(None, tmp_path / "missing.wav", compress=False, key=None)


async def test_restored_callbacks_keep_their_priority_and_place() -> None:
    acd = CallDistributor([QueueConfig("general")])
    acd.restore_callback("old", "general", "5550001", priority=0, requested_at=NOW, waited_s=300)
    acd.restore_callback("vip", "general", "5550002", priority=5, requested_at=NOW, waited_s=10)
    acd.restore_callback("new", "general", "5550003", priority=0, requested_at=NOW, waited_s=30, attempts=1)
    assert [r.call_id for r in acd.callbacks()] == ["vip", "old", "new"]
    assert 299 < (acd.waited_s("old") or 0) < 310 and acd.waited_s("gone") is None
    with pytest.raises(RuntimeError, match="already queued"):
        acd.restore_callback("old", "general", "5550001", priority=0, requested_at=NOW)
