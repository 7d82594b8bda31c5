"""Record writes from the event loop without a thread hop (CallStore.run_async), the one-write call start
and end (open_call, close_call), and the background recorder (file work on the recordings' file thread).
Real SQLite (and PostgreSQL for the outage), real files."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from support.postgres import PgServer
from support.waiting import until_true

from recordings import CallStore, StereoRecorder
from recordings.models import Leg

ROOT = Path(__file__).resolve().parents[2]


def _legs(store: CallStore, call_id: str) -> list[Leg]:
    with store._sessions() as db:
        return list(db.scalars(select(Leg).where(Leg.call_id == call_id).order_by(Leg.started_at)))


async def _call(store: CallStore, n: int) -> str:
    call_id = f"c{n}"
    leg = await store.run_async(store.open_call, call_id, sip_call_id=f"s{n}", caller=f"10{n}", called="95555",
                                worker="w1", recording_path=f"/r/{call_id}.wav", codec="PCMU")
    for i in range(3):
        await store.run_async(store.add_line, call_id, "system" if i % 2 else "caller", f"line {i} of {n}", i)
    await store.run_async(store.close_call, call_id, outcome="goodbye", end_reason="remote_bye",
                          legs={leg: "remote_bye"}, fields={"last_intent": "balance"})
    return call_id


async def test_concurrent_calls_written_from_the_loop_share_transactions_and_keep_each_calls_order(
    tmp_path: Path,
) -> None:
    store = CallStore(f"sqlite:///{tmp_path / 'h.db'}")
    try:
        loop_thread = threading.get_ident()
        ids = await asyncio.gather(*(_call(store, n) for n in range(40)))
        assert store._writer is not None and store._writer.ident != loop_thread  # committed off the loop
        for n, call_id in enumerate(ids):
            call = store.get_call(call_id)
            assert call is not None and call.outcome == "goodbye" and call.end_reason == "remote_bye"
            assert call.last_intent == "balance" and call.recording_path == f"/r/{call_id}.wav"
            assert [(ln.seq, ln.text) for ln in store.get_transcript(call_id)] == [
                (i + 1, f"line {i} of {n}") for i in range(3)]
            (leg,) = _legs(store, call_id)
            assert leg.kind == "caller" and leg.codec == "PCMU" and leg.peer == f"10{n}"
            assert leg.answered_at is not None and leg.ended_at is not None and leg.end_reason == "remote_bye"
        assert store.batched_writes == 40 * 5  # one write each for start and end, one per line
        assert store.batches < store.batched_writes / 2  # concurrent calls' writes shared commits
        assert store.grouped_writes > 0  # ... and executemany runs
    finally:
        store.close()
    assert store._writer is not None and not store._writer.is_alive()


async def test_run_async_refuses_readers_and_reports_a_refused_write(tmp_path: Path) -> None:
    store = CallStore(f"sqlite:///{tmp_path / 'h.db'}")
    try:
        with pytest.raises(ValueError, match="write methods"):
            await store.run_async(store.get_call, "c1")
        with pytest.raises(ValueError, match="unknown call fields"):
            await store.run_async(store.update_call, "c1", colour="red")
        await store.run_async(store.open_call, "c1", sip_call_id="s1", caller="1", called="2")
        with pytest.raises(Exception, match=r"(?i)foreign key"):  # a leg of a call that does not exist
            await store.run_async(store.add_leg, "nope", "agent")
        await store.run_async(store.add_line, "c1", "caller", "still written", 0.5)  # the store goes on
        assert [ln.text for ln in store.get_transcript("c1")] == ["still written"]
    finally:
        store.close()


@pytest.mark.slow
async def test_loop_writes_during_an_outage_are_journalled_not_lost(tmp_path: Path) -> None:
    with PgServer.create() as pg:
        store = CallStore(pg.create_database("calls"), journal_dir=tmp_path / "journal", retry_s=0.2)
        try:
            leg = await store.run_async(store.open_call, "c1", sip_call_id="s1", caller="1001", called="95555")
            await store.run_async(store.add_line, "c1", "system", "Welcome.", 0.0)
            await asyncio.to_thread(pg.stop)
            t0 = time.monotonic()
            await store.run_async(store.add_line, "c1", "caller", "my balance please", 1.0)
            await store.run_async(store.close_call, "c1", outcome="goodbye", end_reason="remote_bye",
                                  legs={leg: "remote_bye"})
            assert time.monotonic() - t0 < 10 and store.journal_pending == 2  # returned once journalled
            await asyncio.to_thread(pg.start)
            await until_true(lambda: store.journal_pending == 0, 20, "the journal written to the database")
            assert [ln.text for ln in store.get_transcript("c1")] == ["Welcome.", "my balance please"]
            call = store.get_call("c1")
            assert call is not None and call.outcome == "goodbye"
            (row,) = _legs(store, "c1")
            assert row.end_reason == "remote_bye"
        finally:
            store.close()


def _frame(value: int) -> bytes:
    return np.full(160, value, dtype="<i2").tobytes()


def _feed(rec: StereoRecorder, frames: int) -> None:
    for i in range(frames):
        rec.tap("in", _frame(i))
        rec.tap("out", _frame(-i))
    rec.tap("in", _frame(5)[:160])
    rec.tap("out", _frame(-5)[:160])  # an odd-sized frame after the gathered ones


async def test_a_background_recorder_writes_the_same_file_off_the_loop(tmp_path: Path) -> None:
    sync = StereoRecorder(tmp_path / "sync.wav")
    _feed(sync, 60)
    sync.close()
    path = tmp_path / "rec" / "bg.wav"
    rec = StereoRecorder(path, call_id="bg", background=True)
    assert not path.exists()  # nothing touched the disk on the loop
    _feed(rec, 60)
    final = await asyncio.wait_for(rec.close_async(), 10)
    assert final == path and not rec.failed
    assert path.read_bytes() == (tmp_path / "sync.wav").read_bytes()
    short = StereoRecorder(tmp_path / "short.wav", background=True)  # hung up before one block was gathered
    assert await asyncio.wait_for(short.close_async(), 10) == tmp_path / "short.wav"
    with wave.open(str(tmp_path / "short.wav")) as w:
        assert w.getnchannels() == 2 and w.getnframes() == 0


async def test_a_background_recorder_that_cannot_write_fails_without_raising(tmp_path: Path) -> None:
    full = StereoRecorder("/dev/full", call_id="full", background=True)  # every write: ENOSPC
    _feed(full, 200)
    await asyncio.wait_for(full.close_async(), 10)
    assert full.failed
    (tmp_path / "file").write_text("x")
    nowhere = StereoRecorder(tmp_path / "file" / "r.wav", call_id="nowhere", background=True)  # no such dir
    _feed(nowhere, 30)
    await asyncio.wait_for(nowhere.close_async(), 10)
    assert nowhere.failed
    nowhere.tap("out", _frame(1))  # a failed recorder ignores frames


def test_recordings_still_queued_when_the_process_exits_are_finished(tmp_path: Path) -> None:
    script = f"""
import asyncio
from recordings import StereoRecorder
async def main() -> None:
    rec = StereoRecorder({str(tmp_path / "exit.wav")!r}, background=True)
    for _ in range(60):
        rec.tap("out", bytes(320))
    rec.close_async()  # not awaited: the process ends at once
asyncio.run(main())
"""
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=60)
    with wave.open(str(tmp_path / "exit.wav")) as w:
        assert w.getnframes() == 60 * 160  # every frame, and the header patched by the close
