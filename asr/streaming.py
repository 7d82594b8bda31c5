"""Streaming recognition: the optional ``open_stream`` surface and a chunk-continuous resampler.

A recognizer that decodes while the caller speaks (vosk, pocketsphinx, funasr paraformer-online)
keeps the per-utterance ``transcribe`` and adds::

    stream = recognizer.open_stream(sample_rate, lang, hints=None)
    partial = stream.accept(pcm_20ms)      # the text so far ("" while nothing is recognised)
    final = stream.finish()                # Transcript; the stream is closed afterwards

``accept`` and ``finish`` are blocking CPU work like ``transcribe`` (tens of µs to a few ms a frame
for pocketsphinx and vosk grammars): run them in the executor or in one worker thread per call.
A stream belongs to one call and is not thread-safe; the recognizer it came from is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import soxr

from asr.audio import check_pcm16, float32_to_pcm16
from asr.recognizer import Recognizer, Transcript

__all__ = ["ChunkResampler", "RecognizerStream", "StreamingRecognizer", "supports_streaming"]


@runtime_checkable
class RecognizerStream(Protocol):
    """One utterance (or one call's worth of audio) being decoded incrementally."""

    def accept(self, pcm: bytes) -> str: ...

    def finish(self) -> Transcript: ...


@runtime_checkable
class StreamingRecognizer(Recognizer, Protocol):
    """A Recognizer that can also decode incrementally."""

    def open_stream(self, sample_rate: int, lang: str, hints: Sequence[str] | None = None) -> RecognizerStream: ...


def supports_streaming(recognizer: object) -> bool:
    """True when ``recognizer`` has a callable ``open_stream``."""
    return callable(getattr(recognizer, "open_stream", None))


class ChunkResampler:
    """Resamples PCM16 chunk by chunk without clicks at chunk borders (soxr's streaming resampler).

    ``process(pcm)`` returns what is ready (may be a little shorter than a whole chunk at first:
    soxr holds back a few ms of filter delay); ``flush()`` returns the rest at the end.
    Equal rates pass the audio through unchanged.
    """

    def __init__(self, from_rate: int, to_rate: int, *, quality: str = "HQ") -> None:
        if from_rate <= 0 or to_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._stream = None if from_rate == to_rate else soxr.ResampleStream(from_rate, to_rate, 1, quality=quality)

    def process(self, pcm: bytes, *, last: bool = False) -> bytes:
        data = check_pcm16(pcm)
        if self._stream is None:
            return data
        x = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        return float32_to_pcm16(self._stream.resample_chunk(x, last=last))

    def flush(self) -> bytes:
        return self.process(b"", last=True)
