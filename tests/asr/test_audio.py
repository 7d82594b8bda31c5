"""asr.audio: PCM checks, soxr resampling, WAV read/write with clear errors."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from asr import WavFormatError, read_wav, resample, write_wav
from asr.audio import check_pcm16, float32_to_pcm16, pcm16_to_float32


def sine(rate: int, seconds: float, freq: float = 440.0, amp: float = 0.5) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return float32_to_pcm16(amp * np.sin(2 * np.pi * freq * t))


def test_check_pcm16() -> None:
    assert check_pcm16(bytearray(b"\x01\x02")) == b"\x01\x02"
    assert check_pcm16(memoryview(b"\x01\x02")) == b"\x01\x02"
    with pytest.raises(ValueError, match="odd byte count"):
        check_pcm16(b"\x00" * 3)
    with pytest.raises(ValueError, match="must be PCM16 bytes, got str"):
        check_pcm16("abc")


def test_resample_lengths_and_content() -> None:
    src = sine(22050, 1.0)
    out = resample(src, 22050, 8000)
    assert abs(len(out) // 2 - 8000) <= 2
    x = pcm16_to_float32(out)
    spectrum = np.abs(np.fft.rfft(x[: 8000 - 8000 % 2]))
    assert abs(int(np.argmax(spectrum)) * 8000 / len(x) - 440) < 3  # still a 440 Hz tone
    assert resample(src, 8000, 8000) == src
    assert resample(b"", 8000, 16000) == b""
    up = resample(sine(8000, 0.5), 8000, 16000)
    assert abs(len(up) // 2 - 8000) <= 2


def test_resample_gain_and_clipping() -> None:
    loud = float32_to_pcm16(np.ones(1000, dtype=np.float32))  # full scale
    assert max(np.frombuffer(resample(loud, 8000, 8000, gain=2.0), "<i2")) == 32767
    quiet = np.frombuffer(resample(sine(8000, 0.2), 8000, 8000, gain=0.5), "<i2")
    assert 0.24 * 32768 < np.abs(quiet).max() < 0.26 * 32768


def test_resample_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="from_rate"):
        resample(b"\x00\x00", 0, 8000)
    with pytest.raises(ValueError, match="to_rate"):
        resample(b"\x00\x00", 8000, -1)


def test_wav_round_trip(tmp_path: Path) -> None:
    pcm = sine(8000, 0.3)
    write_wav(tmp_path / "a.wav", pcm, 8000)
    assert read_wav(tmp_path / "a.wav") == (pcm, 8000)
    stereo = pcm + pcm
    write_wav(tmp_path / "s.wav", stereo, 8000, channels=2)
    with wave.open(str(tmp_path / "s.wav")) as w:
        assert w.getnchannels() == 2
    with pytest.raises(ValueError):
        write_wav(tmp_path / "b.wav", b"\x00" * 6, 8000, channels=2)


def test_read_wav_errors(tmp_path: Path) -> None:
    with pytest.raises(WavFormatError, match="no such file"):
        read_wav(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(WavFormatError, match="empty file"):
        read_wav(tmp_path / "empty.wav")
    (tmp_path / "text.wav").write_bytes(b"this is not audio at all")
    with pytest.raises(WavFormatError, match="not a PCM WAV"):
        read_wav(tmp_path / "text.wav")
    write_wav(tmp_path / "stereo.wav", b"\x00" * 400, 8000, channels=2)
    with pytest.raises(WavFormatError, match="2 channels"):
        read_wav(tmp_path / "stereo.wav")
    with wave.open(str(tmp_path / "u8.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(b"\x80" * 100)
    with pytest.raises(WavFormatError, match="8-bit"):
        read_wav(tmp_path / "u8.wav")
    write_wav(tmp_path / "noframes.wav", b"", 8000)
    with pytest.raises(WavFormatError, match="no audio frames"):
        read_wav(tmp_path / "noframes.wav")
    write_wav(tmp_path / "big.wav", b"\x00" * 4000, 8000)
    with pytest.raises(WavFormatError, match="larger than"):
        read_wav(tmp_path / "big.wav", max_bytes=1000)
    assert issubclass(WavFormatError, ValueError)


def test_writing_into_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    from asr import write_wav

    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_wav(tmp_path / "nope" / "x.wav", b"\x00\x00" * 160, 8000)
