"""StereoRecorder gathers frames and writes them in blocks: what reaches the file is still every frame,
in order, with late caller audio, a pause, an odd-sized frame and the partial block at close."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from recordings import StereoRecorder
from recordings.recorder import FLUSH_FRAMES


def _frame(value: int, samples: int = 160) -> bytes:
    return np.full(samples, value, dtype="<i2").tobytes()


def test_blocks_keep_every_frame_in_order(tmp_path: Path) -> None:
    rec = StereoRecorder(tmp_path / "r.wav")
    expected: list[tuple[int, int, int]] = []  # (samples, left, right) per frame sent
    n = 0
    for i in range(FLUSH_FRAMES * 3 + 7):  # three whole blocks and a partial one
        n += 1
        if i % 10 != 3:  # every tenth caller frame is late: silence on the left for that tick
            rec.tap("in", _frame(1000 + i))
        if i == 40:
            rec.pause()
        if i == 45:
            rec.resume()
        paused = 40 <= i < 45
        rec.tap("out", _frame(-i))
        dropped = 40 <= i <= 45 or i % 10 == 3  # the caller frame came in while paused (or late)
        expected.append((160, 0 if dropped else 1000 + i, 0 if paused else -i))
    rec.tap("in", _frame(7, 80))
    rec.tap("out", _frame(-7, 80))  # a half frame: written after the frames gathered before it
    expected.append((80, 7, -7))
    assert rec.duration_s == n * 0.02 + 0.02
    rec.close()
    with wave.open(str(tmp_path / "r.wav")) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    want = np.concatenate([np.tile(np.array([[left, right]], dtype="<i2"), (samples, 1))
                           for samples, left, right in expected])
    assert data.shape == want.shape
    assert (data == want).all()


def test_a_short_recording_is_written_at_close(tmp_path: Path) -> None:
    rec = StereoRecorder(tmp_path / "short.wav")
    for _ in range(3):  # less than one block
        rec.tap("in", _frame(5))
        rec.tap("out", _frame(6))
    rec.close()
    with wave.open(str(tmp_path / "short.wav")) as w:
        assert w.getnframes() == 3 * 160
