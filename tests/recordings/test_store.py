"""Call records and transcript lines are durable the moment they are written."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from recordings import CallStore, StereoRecorder


def test_lines_are_committed_as_they_happen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    store = CallStore(url)
    store.start_call("c1", sip_call_id="abc@host", caller="1001", called="95555")
    store.add_line("c1", "system", "Welcome to Example Bank.", 0.0, 2.5)
    store.add_line("c1", "caller", "what are your opening hours", 3.1, 4.9, confidence=0.93)
    # A second connection (another process, or the same one after a crash) sees both lines already.
    other = CallStore(url)
    lines = other.get_transcript("c1")
    assert [(ln.seq, ln.speaker) for ln in lines] == [(1, "system"), (2, "caller")]
    assert lines[1].confidence == 0.93
    assert other.get_call("c1").ended_at is None  # type: ignore[union-attr]


def test_end_call_closes_once_and_keeps_first_outcome(tmp_path: Path) -> None:
    store = CallStore(f"sqlite:///{tmp_path / 'calls.db'}")
    store.start_call("c1", sip_call_id="x", caller="", called="")
    store.end_call("c1", outcome="transferred", end_reason="agent_call_ended")
    store.end_call("c1", outcome="failed", end_reason="late")
    call = store.get_call("c1")
    assert call is not None and call.outcome == "transferred" and call.ended_at is not None


def test_calls_left_open_by_a_dead_worker_are_closed_on_restart(tmp_path: Path) -> None:
    store = CallStore(f"sqlite:///{tmp_path / 'calls.db'}")
    store.start_call("open", sip_call_id="x", caller="", called="", worker="w1")
    store.start_call("other", sip_call_id="y", caller="", called="", worker="w2")
    assert store.close_interrupted("w1") == 1
    assert store.get_call("open").outcome == "interrupted"  # type: ignore[union-attr]
    assert store.get_call("other").outcome is None  # type: ignore[union-attr]


def test_stereo_recording_has_caller_left_and_system_right(tmp_path: Path) -> None:
    rec = StereoRecorder(tmp_path / "r.wav")
    caller = (np.full(160, 1000, dtype="<i2")).tobytes()
    system = (np.full(160, -2000, dtype="<i2")).tobytes()
    for _ in range(50):
        rec.tap("in", caller)
        rec.tap("out", system)
    rec.tap("out", system)  # no caller frame for this tick: silence on the left
    rec.close()
    with wave.open(str(tmp_path / "r.wav")) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 8000
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert data.shape[0] == 51 * 160
    assert (data[:-160, 0] == 1000).all() and (data[:, 1] == -2000).all()
    assert (data[-160:, 0] == 0).all()
