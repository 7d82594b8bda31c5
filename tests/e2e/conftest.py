"""End-to-end fixtures: the caller's ears and voice."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def ear() -> Any:
    """The test caller's own recogniser: checks what the caller really heard."""
    from asr import create_recognizer

    return create_recognizer("whisper")


@pytest.fixture(scope="module")
def voice() -> Iterator[Any]:
    """Synthesised caller lines at 8 kHz."""
    from asr.audio import resample
    from tts import create_synthesizer

    synth = create_synthesizer("espeak")

    def say(text: str, lang: str = "en") -> bytes:
        return resample(synth.synthesize(text, lang), synth.sample_rate, 8000)

    yield say
