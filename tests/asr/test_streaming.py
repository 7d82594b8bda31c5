"""asr.streaming: the chunk-continuous resampler and the streaming capability check."""

from __future__ import annotations

import numpy as np
import pytest

from asr import resample
from asr.streaming import ChunkResampler, supports_streaming


def test_chunked_resampling_matches_one_shot_resampling() -> None:
    t = np.arange(8000) / 8000
    pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()
    r = ChunkResampler(8000, 16000)
    out = b"".join(r.process(pcm[i : i + 320]) for i in range(0, len(pcm), 320)) + r.flush()
    whole = resample(pcm, 8000, 16000)
    assert abs(len(out) - len(whole)) <= 4
    a = np.frombuffer(out, "<i2").astype(float)[200:-200]
    b = np.frombuffer(whole, "<i2").astype(float)[200 : 200 + len(a)]
    assert np.max(np.abs(a - b)) < 200  # no clicks at the 20 ms chunk borders


def test_equal_rates_pass_through_and_bad_rates_fail() -> None:
    r = ChunkResampler(16000, 16000)
    assert r.process(b"\x01\x00\x02\x00") == b"\x01\x00\x02\x00" and r.flush() == b""
    with pytest.raises(ValueError):
        ChunkResampler(0, 16000)
    with pytest.raises(ValueError):
        r.process(b"\x00")


def test_supports_streaming() -> None:
    class A:
        def open_stream(self) -> None: ...

    assert supports_streaming(A()) and not supports_streaming(object())
