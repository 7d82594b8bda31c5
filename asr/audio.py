"""Audio helpers shared by the whole project: PCM16 checks, resampling (soxr) and WAV files.

This is the one place that resamples or reads/writes WAV. ``tts/`` imports it too (the only
``tts -> asr`` import allowed; see docs/SPEECH.md).

Conventions: PCM16 signed little-endian mono ``bytes``; sample rates in Hz.
"""

from __future__ import annotations

import logging
import os
import wave
from pathlib import Path

import numpy as np
import soxr

log = logging.getLogger(__name__)

__all__ = [
    "MAX_WAV_BYTES",
    "WavFormatError",
    "check_pcm16",
    "float32_to_pcm16",
    "pcm16_to_float32",
    "read_wav",
    "resample",
    "write_wav",
]

#: read_wav refuses files larger than this (1 hour of 16 kHz PCM16 is ~115 MB).
MAX_WAV_BYTES = 200 * 1024 * 1024


class WavFormatError(ValueError):
    """A WAV file that is missing, empty, too large or not PCM16."""


def check_pcm16(pcm: object, *, what: str = "pcm") -> bytes:
    """Returns ``pcm`` as ``bytes`` or raises ValueError saying what is wrong with it."""
    if isinstance(pcm, bytes):
        data = pcm
    elif isinstance(pcm, bytearray | memoryview):
        data = bytes(pcm)
    else:
        raise ValueError(f"{what} must be PCM16 bytes, got {type(pcm).__name__}")
    if len(data) % 2:
        raise ValueError(f"{what} has an odd byte count ({len(data)}): PCM16 needs 2 bytes per sample")
    return data


def _check_rate(rate: object, what: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise ValueError(f"{what} must be a positive integer sample rate in Hz, got {rate!r}")
    return rate


def pcm16_to_float32(pcm: bytes) -> np.ndarray:
    """PCM16 bytes -> float32 samples in [-1, 1)."""
    return np.frombuffer(check_pcm16(pcm), dtype="<i2").astype(np.float32) / 32768.0


def float32_to_pcm16(samples: np.ndarray, gain: float = 1.0) -> bytes:
    """float32 samples in [-1, 1] -> PCM16 bytes, with optional gain and hard clipping."""
    x = np.asarray(samples, dtype=np.float32) * (32768.0 * gain)
    return np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()


def resample(pcm: bytes, from_rate: int, to_rate: int, *, gain: float = 1.0, quality: str = "HQ") -> bytes:
    """Resamples PCM16 mono with soxr (high quality by default); ``gain`` scales the result (clipped).

    Returns the input unchanged when the rates match and gain is 1.
    """
    data = check_pcm16(pcm)
    _check_rate(from_rate, "from_rate")
    _check_rate(to_rate, "to_rate")
    if not data:
        return b""
    if from_rate == to_rate and gain == 1.0:
        return data
    x = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    if from_rate != to_rate:
        x = soxr.resample(x, from_rate, to_rate, quality=quality)
    return float32_to_pcm16(x, gain)


def read_wav(path: str | os.PathLike[str], *, max_bytes: int = MAX_WAV_BYTES) -> tuple[bytes, int]:
    """Reads a mono PCM16 WAV file -> ``(pcm, sample_rate)``.

    Raises WavFormatError (a ValueError) for a missing, empty, oversized, non-WAV, non-PCM16 or
    multi-channel file, naming the file and the problem.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise WavFormatError(f"{p}: no such file") from None
    if size == 0:
        raise WavFormatError(f"{p}: empty file")
    if size > max_bytes:
        raise WavFormatError(f"{p}: {size} bytes is larger than the {max_bytes}-byte limit for a WAV file")
    try:
        with wave.open(str(p), "rb") as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            if width != 2:
                raise WavFormatError(f"{p}: {8 * width}-bit samples; only 16-bit PCM is supported")
            if channels != 1:
                raise WavFormatError(f"{p}: {channels} channels; only mono is supported")
            pcm = w.readframes(frames)
    except WavFormatError:
        raise
    except (wave.Error, EOFError) as exc:
        raise WavFormatError(f"{p}: not a PCM WAV file ({exc})") from None
    if not pcm:
        raise WavFormatError(f"{p}: WAV file has no audio frames")
    return pcm, rate


def write_wav(path: str | os.PathLike[str], pcm: bytes, rate: int, channels: int = 1) -> None:
    """Writes PCM16 (interleaved when ``channels`` > 1) to a WAV file."""
    data = check_pcm16(pcm)
    _check_rate(rate, "rate")
    if channels < 1 or len(data) % (2 * channels):
        raise ValueError(f"{len(data)} bytes is not a whole number of {channels}-channel PCM16 frames")
    folder = Path(path).parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{path}: folder {folder} does not exist")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data)
