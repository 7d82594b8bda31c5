"""Database outage: calls keep writing, the records go to a local journal, and reach PostgreSQL once,
in order, when it returns (also after the writing process died during the outage)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.postgres import PgServer

from recordings import CallStore

ROOT = Path(__file__).resolve().parents[2]


def _wait(pred: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_outage_is_journalled_and_written_once_when_the_database_returns(tmp_path: Path) -> None:
    with PgServer.create() as pg:
        url = pg.create_database("calls")
        journal = tmp_path / "journal"
        store = CallStore(url, journal_dir=journal, retry_s=0.2)
        store.start_call("c1", sip_call_id="s1", caller="1001", called="95555")
        for i in range(5):
            store.add_line("c1", "caller", f"line {i}", float(i))

        pg.stop()  # mid-call
        t0 = time.monotonic()
        store.update_call("c1", queue="general")
        store.start_call("c2", sip_call_id="s2", caller="1002", called="95555")  # a call starting in the outage
        i = 5
        while time.monotonic() - t0 < 2.0:  # a bounded outage, writes going on all the time
            store.add_line("c1", "caller", f"line {i}", float(i))
            store.add_line("c2", "caller", f"其他 {i}", float(i))
            i += 1
            time.sleep(0.05)
        store.end_call("c2", outcome="goodbye", end_reason="hangup")
        slowest = time.monotonic() - t0
        assert store.journal_pending > 2 * (i - 5)
        assert slowest < 10  # writes during the outage did not hang on the database

        pg.start()
        assert _wait(lambda: store.journal_pending == 0, 20), "journal not written after the database returned"
        lines = store.get_transcript("c1")
        assert [ln.text for ln in lines] == [f"line {n}" for n in range(i)]
        assert [ln.seq for ln in lines] == list(range(1, i + 1))
        assert [ln.text for ln in store.get_transcript("c2")] == [f"其他 {n}" for n in range(5, i)]
        c1, c2 = store.get_call("c1"), store.get_call("c2")
        assert c1 is not None and c1.queue == "general" and c1.ended_at is None
        assert c2 is not None and c2.outcome == "goodbye"
        store.add_line("c1", "system", "after", 99.0)  # straight to the database again
        assert store.journal_pending == 0 and store.get_transcript("c1")[-1].seq == i + 1
        store.close()
        assert not list(journal.glob("*.jsonl")), "an empty journal is removed at close"

        # A process dies during an outage: its journal is written by the next one to start, and
        # replaying the same journal twice adds nothing twice.
        writer = (
            "import os, sys\n"
            "from recordings import CallStore\n"
            f"s = CallStore({url!r}, journal_dir={str(journal)!r}, retry_s=60)\n"
            "s.start_call('c3', sip_call_id='s3', caller='1003', called='95555')\n"
            "print('ready', flush=True); sys.stdin.readline()\n"  # the database goes away here
            "for n in range(20): s.add_line('c3', 'caller', f'dying {n}', float(n))\n"
            "assert s.journal_pending == 20, s.journal_pending\n"
            "os._exit(0)\n"  # no close(): the process is gone with its journal on disk
        )
        proc = subprocess.Popen([sys.executable, "-c", writer], cwd=ROOT, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        pg.stop()
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
        [left] = list(journal.glob("*.jsonl"))
        copy = tmp_path / "copy.jsonl"
        shutil.copy(left, copy)
        pg.start()
        store = CallStore(url, journal_dir=journal)
        assert [ln.text for ln in store.get_transcript("c3")] == [f"dying {n}" for n in range(20)]
        assert not left.exists()
        shutil.copy(copy, journal / "records-999999999.jsonl")  # as if that replay had not been recorded
        store.close()
        store = CallStore(url, journal_dir=journal)
        assert [ln.seq for ln in store.get_transcript("c3")] == list(range(1, 21))
        store.close()


def test_a_journal_entry_the_database_refuses_is_set_aside_and_the_rest_written(tmp_path: Path) -> None:
    import json

    url = f"sqlite:///{tmp_path / 'h.db'}"
    journal = tmp_path / "journal"
    journal.mkdir()
    entries = [
        {"op": "start_call", "args": {"id": "ok", "sip_call_id": "s", "caller": "1", "called": "2",
                                      "started_at": {"$dt": "2026-12-01T10:00:00+00:00"}, "worker": "",
                                      "recording_path": None}},
        {"op": "add_line", "args": {"call_id": "no-such-call", "speaker": "caller", "text": "orphan", "start_s": 0.0,
                                    "end_s": None, "intent": None, "confidence": None, "language": "", "seq": 1}},
        {"op": "add_line", "args": {"call_id": "ok", "speaker": "caller", "text": "kept", "start_s": 0.0,
                                    "end_s": None, "intent": None, "confidence": None, "language": "", "seq": None}},
    ]
    dead = journal / "records-999999998.jsonl"
    dead.write_text("".join(json.dumps(e) + "\n" for e in entries) + '{"op": "torn')  # a crash mid-line
    store = CallStore(url, journal_dir=journal)
    assert [ln.text for ln in store.get_transcript("ok")] == ["kept"]
    call = store.get_call("ok")
    assert call is not None and call.started_at.replace(tzinfo=None).isoformat() == "2026-12-01T10:00:00"
    rejected = [json.loads(x) for x in (journal / "records-999999998.rejected.jsonl").read_text().splitlines()]
    assert [r["args"]["call_id"] for r in rejected] == ["no-such-call"] and "FOREIGN KEY" in rejected[0]["error"]
    assert not dead.exists()
    store.close()
