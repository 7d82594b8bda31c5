"""Recordings: paused during secrets, FLAC + AES-GCM at rest, readable for playback, and a full disk
stops the recording but never the call."""

from __future__ import annotations

import base64
import io
import logging
import os
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np
import pytest

from recordings import StereoRecorder
from recordings.atrest import RecordingKeyError, RecordingUnreadable, load_key, open_recording, resolve_recording

ROOT = Path(__file__).resolve().parents[2]
KEY = bytes(range(32))
CALLER = np.full(160, 1000, dtype="<i2").tobytes()


def _tone(n: int) -> bytes:
    t = np.arange(160 * n) / 8000
    return (3000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


def _record(rec: StereoRecorder, frames: int, system: bytes) -> None:
    for i in range(frames):
        rec.tap("in", CALLER)
        rec.tap("out", system[i * 320 : (i + 1) * 320])


def _samples(wav_bytes: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(wav_bytes)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)


def test_pause_writes_silence_on_both_sides_and_keeps_the_length(tmp_path: Path) -> None:
    rec = StereoRecorder(tmp_path / "c.wav", call_id="c")
    system = _tone(30)
    _record(rec, 10, system[: 10 * 320])
    rec.pause()
    _record(rec, 10, system[10 * 320 : 20 * 320])
    rec.resume()
    _record(rec, 10, system[20 * 320 :])
    data = _samples(open_recording(rec.close()))
    assert data.shape == (30 * 160, 2)
    assert (data[: 10 * 160, 0] == 1000).all() and (data[20 * 160 :, 0] == 1000).all()
    assert not data[10 * 160 : 20 * 160].any(), "keyed secrets must not be in the recording"
    assert np.array_equal(data[20 * 160 :, 1], np.frombuffer(system[20 * 320 :], dtype="<i2"))


def test_compressed_and_encrypted_recording_plays_back_exactly(tmp_path: Path) -> None:
    rec = StereoRecorder(tmp_path / "c2.wav", call_id="c2", compress=True, key=KEY)
    system = _tone(250)  # 5 s
    _record(rec, 250, system)
    final = rec.close()
    assert final.name == "c2.flac.enc" and not (tmp_path / "c2.wav").exists()
    blob = final.read_bytes()
    assert b"RIFF" not in blob[:64] and b"fLaC" not in blob[:64]
    assert len(blob) < 0.5 * (44 + 250 * 640)  # compressed: a steady tone and a constant caller
    assert resolve_recording(tmp_path / "c2.wav") == final  # the path the call record keeps still finds it
    data = _samples(open_recording(tmp_path / "c2.wav", key=KEY))
    assert data.shape == (250 * 160, 2)
    assert (data[:, 0] == 1000).all() and np.array_equal(data[:, 1], np.frombuffer(system, dtype="<i2"))
    with pytest.raises(RecordingUnreadable, match="wrong key"):
        open_recording(final, key=bytes(32))
    env_key = base64.b64encode(KEY).decode()
    os.environ["HOTLINE_RECORDING_KEY"] = env_key
    try:
        assert _samples(open_recording(final)).shape == data.shape  # key from the environment
    finally:
        del os.environ["HOTLINE_RECORDING_KEY"]


def test_compressed_only_is_plain_flac(tmp_path: Path) -> None:
    rec = StereoRecorder(tmp_path / "c3.wav", compress=True)
    _record(rec, 50, _tone(50))
    final = rec.close()
    assert final.suffix == ".flac" and final.read_bytes()[:4] == b"fLaC"
    assert _samples(open_recording(final)).shape == (50 * 160, 2)


@pytest.mark.parametrize(
    ("value", "problem"),
    [(None, "is not set"), ("not base64!", "not valid base64"), (base64.b64encode(b"short").decode(), "5 bytes")],
)
def test_bad_or_missing_key_is_a_clear_error(value: str | None, problem: str) -> None:
    env = {} if value is None else {"HOTLINE_RECORDING_KEY": value}
    with pytest.raises(RecordingKeyError, match=problem) as err:
        load_key(env)
    assert "HOTLINE_RECORDING_KEY" in str(err.value) and "base64" in str(err.value)
    assert load_key({"HOTLINE_RECORDING_KEY": base64.b64encode(KEY).decode()}) == KEY


def _fill_until_failed(rec: StereoRecorder) -> int:
    system = _tone(1)
    for i in range(2000):  # 40 s of audio, 2.5 MB: far more than the room left
        rec.tap("in", CALLER)
        rec.tap("out", system)  # never raises
        if rec.failed:
            return i
    return -1


def test_disk_full_stops_the_recording_not_the_call(caplog: pytest.LogCaptureFixture) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root (the RLIMIT_FSIZE test covers the rest)")
    mnt = Path(tempfile.mkdtemp(prefix="hotline-full-"))
    try:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                          capture_output=True).returncode != 0:
            pytest.skip("cannot mount a tmpfs here (the RLIMIT_FSIZE test covers the rest)")
        try:
            rec = StereoRecorder(mnt / "full-call.wav", call_id="full-call")
            with caplog.at_level(logging.ERROR, logger="recordings.recorder"):
                at = _fill_until_failed(rec)
                rec.tap("out", _tone(1))  # the call goes on tapping; nothing happens, nothing raises
                rec.close()
            assert at > 0 and rec.failed
            assert any("full-call" in r.getMessage() and "No space" in r.getMessage() for r in caplog.records)
            assert (mnt / "full-call.wav").stat().st_size > 32_000  # what fitted is kept
        finally:
            subprocess.run(["umount", str(mnt)], check=False)
    finally:
        mnt.rmdir()


@pytest.mark.slow
def test_file_size_limit_stops_the_recording_not_the_process(tmp_path: Path) -> None:
    script = f"""
import logging, resource, sys
sys.path.insert(0, {str(ROOT)!r})
logging.basicConfig(level=logging.ERROR, stream=sys.stdout, format="%(message)s")
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))  # SIGXFSZ is ignored by Python: EFBIG
import numpy as np
from recordings import StereoRecorder
rec = StereoRecorder({str(tmp_path / "big.wav")!r}, call_id="big-call")
frame = np.full(160, 500, dtype="<i2").tobytes()
for _ in range(1000):
    rec.tap("in", frame); rec.tap("out", frame)
rec.close()
print("FAILED" if rec.failed else "OK", rec.frames_written)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "big-call" in out.stdout and "File too large" in out.stdout
    status, frames = out.stdout.strip().splitlines()[-1].split()
    assert status == "FAILED" and 0 < int(frames) < 1000
