"""Hold music: what a queued caller hears between the position and expected-wait announcements.

`queues[].hold_music` is None (silence), "tones" (a soft tune generated here with numpy at start-up:
nothing to ship or download) or the path of a bank-supplied mono 16-bit PCM WAV file (any rate; it is
resampled to 8 kHz once, when the server starts). A bad file stops start-up with `HoldMusicError`
naming the setting, the file and the problem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asr.audio import WavFormatError, read_wav, resample

RATE = 8000
MIN_S, MAX_S = 1.0, 30 * 60.0
# C major arpeggio up and down, then a rest: a calm 7.8 s loop.
_NOTES_HZ = (523.25, 659.25, 783.99, 1046.5, 783.99, 659.25, 587.33, 493.88, 523.25)
_NOTE_S, _REST_S = 0.8, 0.6


class HoldMusicError(ValueError):
    """The configured hold music cannot be used; the message names the setting, the file and why."""


def tones(rate: int = RATE, level_dbfs: float = -18.0) -> bytes:
    """A soft tune (sine notes with a fundamental and a quiet octave, smooth attack and decay) as PCM16."""
    t = np.arange(int(_NOTE_S * rate)) / rate
    envelope = np.minimum(1.0, t / 0.04) * np.exp(-1.5 * t)  # 40 ms attack, bell-like decay
    notes = [(np.sin(2 * np.pi * f * t) + 0.25 * np.sin(4 * np.pi * f * t)) * envelope for f in _NOTES_HZ]
    signal = np.concatenate([*notes, np.zeros(int(_REST_S * rate))])
    signal *= 10 ** (level_dbfs / 20) / np.max(np.abs(signal))
    return (signal * 32767).astype("<i2").tobytes()


def load_hold_music(spec: str | None, *, setting: str = "hold_music", base_dir: Path | None = None) -> bytes | None:
    """The configured hold music as 8 kHz PCM16, or None for silence. Raises HoldMusicError."""
    if spec is None or spec == "":
        return None
    if spec == "tones":
        return tones()
    path = Path(spec)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        pcm, rate = read_wav(path)
    except WavFormatError as exc:
        raise HoldMusicError(f"{setting}: {exc} (use \"tones\", nothing, or a mono 16-bit PCM WAV file)") from None
    seconds = len(pcm) / 2 / rate
    if not MIN_S <= seconds <= MAX_S:
        raise HoldMusicError(f"{setting}: {path}: {seconds:.1f} s of audio; hold music must last {MIN_S:.0f} s "
                             f"to {MAX_S / 60:.0f} min")
    return resample(pcm, rate, RATE)


class HoldMusic:
    """Loops one piece of PCM: `next(ms)` returns the following `ms` milliseconds, wrapping round."""

    def __init__(self, pcm: bytes, rate: int = RATE) -> None:
        if len(pcm) < 2:
            raise ValueError("hold music needs audio")
        self.pcm = pcm[: len(pcm) // 2 * 2]
        self.rate = rate
        self._pos = 0

    def next(self, ms: int) -> bytes:
        want = ms * self.rate // 1000 * 2
        out = bytearray()
        while len(out) < want:
            chunk = self.pcm[self._pos : self._pos + want - len(out)]
            out += chunk
            self._pos = (self._pos + len(chunk)) % len(self.pcm)
        return bytes(out)
