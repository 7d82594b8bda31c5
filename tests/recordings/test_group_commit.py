"""Group commit in CallStore: writes from several threads share transactions, and each write still
returns only once it is committed (or journalled); order per call, close(), and a bad write in a
batch (it fails alone, the others are written)."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import exc, text
from support.postgres import PgServer, pg_server  # noqa: F401  (fixture)

from recordings import CallStore
from recordings.search import search_calls


def _hold_database(path: Path) -> sqlite3.Connection:
    """Another connection takes SQLite's write lock: the store's commits wait for it (busy_timeout)."""
    blocker = sqlite3.connect(path, isolation_level=None, timeout=5)
    blocker.execute("BEGIN IMMEDIATE")
    return blocker


def _wait_queued(store: CallStore, n: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with store._queue_cv:
            if len(store._queued) >= n:
                return
        time.sleep(0.005)
    raise AssertionError(f"fewer than {n} writes queued")


def test_concurrent_calls_share_commits_and_keep_their_order(tmp_path: Path) -> None:
    _concurrent_calls(f"sqlite:///{tmp_path / 'calls.db'}")


def test_concurrent_calls_share_commits_on_postgresql(pg_server: PgServer) -> None:  # noqa: F811
    _concurrent_calls(pg_server.create_database("group_commit"))


def _concurrent_calls(url: str) -> None:
    store = CallStore(url)

    def call(i: int) -> None:  # what a call session does: one write at a time, each waited for
        cid = f"c{i}"
        store.start_call(cid, sip_call_id=cid, caller="1001", called="95555")
        leg = store.add_leg(cid, "caller", sip_call_id=cid)
        for n in range(10):
            assert store.add_line(cid, "caller", f"{cid} line {n}", float(n)) == n + 1
        store.add_dtmf(cid, "1")
        store.end_leg(leg, "bye")
        store.end_call(cid, outcome="goodbye", end_reason="hangup")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(call, range(48)))
    writes = 48 * 15
    assert store.batched_writes == writes
    assert store.grouped_writes > 0, "no run of the same statement went as one executemany"
    assert store.batches < writes * 0.8, f"{store.batches} transactions for {writes} writes: no batching"
    other = CallStore(url)  # another connection sees everything at once: every write returned committed
    for i in range(48):
        lines = other.get_transcript(f"c{i}")
        assert [(ln.seq, ln.text) for ln in lines] == [(n + 1, f"c{i} line {n}") for n in range(10)]
        view = other.get_call(f"c{i}")
        assert view is not None and view.outcome == "goodbye"
    index = "transcript_fts" if url.startswith("sqlite") else "transcript_search"
    with other.engine.connect() as conn:  # every line reached the search index, in its transaction
        assert conn.execute(text(f"SELECT count(*) FROM {index}")).scalar() == 48 * 10
    assert [h.call_id for h in search_calls(other, "c17 line")] == ["c17"]
    other.close()
    store.close()


def test_a_write_the_database_refuses_fails_alone_and_the_rest_of_its_batch_is_written(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    store = CallStore(f"sqlite:///{path}")
    for i in range(5):
        store.start_call(f"c{i}", sip_call_id=f"s{i}", caller="1001", called="95555")
    blocker = _hold_database(path)
    results: dict[str, object] = {}

    def write(name: str, fn: object) -> None:
        try:
            results[name] = fn()  # type: ignore[operator]
        except Exception as e:
            results[name] = e

    threads = [threading.Thread(target=write, args=("first", lambda: store.add_line("c0", "caller", "first", 0.0)))]
    threads[0].start()
    time.sleep(0.2)  # "first" commits alone and waits for the lock; the next ones queue behind it
    for i in range(1, 5):
        threads.append(threading.Thread(target=write, args=(f"c{i}", lambda i=i: store.add_line(
            f"c{i}", "caller", f"good {i}", 0.0))))
    threads.append(threading.Thread(target=write, args=("bad", lambda: store.add_line(
        "no-such-call", "caller", "orphan", 0.0))))  # the foreign key refuses it
    for t in threads[1:]:
        t.start()
    _wait_queued(store, 5)
    blocker.execute("ROLLBACK")
    blocker.close()
    for t in threads:
        t.join(timeout=10)
    assert isinstance(results["bad"], exc.IntegrityError), results
    assert [results[f"c{i}"] for i in range(1, 5)] == [1, 1, 1, 1]
    assert store.batches >= 2 and store.batched_writes - store.batches >= 4  # one batch of five writes
    for i in range(1, 5):
        assert [ln.text for ln in store.get_transcript(f"c{i}")] == [f"good {i}"]
    assert [ln.text for ln in store.get_transcript("c0")] == ["first"]
    store.close()


def test_close_waits_for_writes_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    store = CallStore(f"sqlite:///{path}")
    store.start_call("c1", sip_call_id="s1", caller="1001", called="95555")
    blocker = _hold_database(path)
    writers = [threading.Thread(target=store.add_line, args=("c1", "caller", f"line {n}", float(n)))
               for n in range(6)]
    for t in writers:
        t.start()
    _wait_queued(store, 5)  # one commits (and waits for the lock), five wait in the queue
    closer = threading.Thread(target=store.close)
    closer.start()
    time.sleep(0.2)
    assert closer.is_alive(), "close() returned while writes were still waiting to commit"
    blocker.execute("ROLLBACK")
    blocker.close()
    closer.join(timeout=10)
    for t in writers:
        t.join(timeout=10)
    other = CallStore(f"sqlite:///{path}")
    assert sorted(ln.text for ln in other.get_transcript("c1")) == [f"line {n}" for n in range(6)]
    other.close()


@pytest.mark.parametrize("writers", [1, 8])
def test_a_journalled_outage_keeps_every_write_of_a_batch(tmp_path: Path, writers: int) -> None:
    """The database file vanishes under the store (unreachable): the queued writes go to the journal,
    in order, and reach the database once it is back."""
    path = tmp_path / "calls.db"
    journal = tmp_path / "journal"
    store = CallStore(f"sqlite:///{path}", journal_dir=journal, retry_s=0.1)
    for i in range(writers):
        store.start_call(f"c{i}", sip_call_id=f"s{i}", caller="1001", called="95555")
    hidden = tmp_path / "away"
    hidden.mkdir()
    store.engine.dispose()
    for f in tmp_path.glob("calls.db*"):
        f.rename(hidden / f.name)
    path.mkdir()  # sqlite cannot open a directory: OperationalError, the "unreachable" kind

    def call(i: int) -> None:
        for n in range(5):
            store.add_line(f"c{i}", "caller", f"c{i} line {n}", float(n))

    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(call, range(writers)))
    assert store.journal_pending == 5 * writers
    path.rmdir()
    for f in hidden.iterdir():
        f.rename(tmp_path / f.name)
    deadline = time.monotonic() + 10
    while store.journal_pending and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.journal_pending == 0
    for i in range(writers):
        assert [ln.text for ln in store.get_transcript(f"c{i}")] == [f"c{i} line {n}" for n in range(5)]
    store.close()
