"""Acoustic cues of one caller utterance, for the caller-mood flag (dialog/sentiment.py `Voice`).

`measure(pcm, sample_rate) -> Prosody`: the speech level (dBFS over the utterance's speech frames), how long
the caller actually spoke (20 ms frames within 30 dB of the utterance's loudest and above -55 dBFS, so the
endpointer's pre-roll and trailing silence do not count), and the pitch of voiced frames (normalised
autocorrelation over 40 ms windows, 70-400 Hz, at most `max_pitch_frames` frames spread over the speech):
median in Hz and spread (interquartile range in semitones). Plain numpy, a few hundred µs for a 3 s
utterance at 8 kHz (docs/CONSOLE.md); blocking CPU work all the same, so callers on an event loop run it
in an executor.

`syllables(text, lang)` counts Chinese characters and English vowel groups, for the speaking rate
(syllables per second of speech). `CallerBaseline` keeps one caller's usual level, rate and pitch in this
call (medians of their earlier utterances) and says how far a new utterance is from it (`relative`):
loudness and pitch differ between phones and people, a change within one call is what tells.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field

import numpy as np

FRAME_S = 0.02
SPEECH_FLOOR_DBFS = -55.0  # quieter frames are line noise, not speech
SPEECH_RANGE_DB = 30.0  # frames this far below the utterance's loudest are pauses
MIN_F0, MAX_F0 = 70.0, 400.0
VOICED_AT = 0.45  # normalised autocorrelation peak that makes a frame voiced
_CJK = re.compile(r"[\u3400-\u9fff]")
_EN_VOWELS = re.compile(r"[aeiouy]+")
_EN_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Prosody:
    """One utterance: seconds in all, seconds of speech, speech level in dBFS, pitch median (Hz, 0 when
    nothing was voiced) and spread (semitones, interquartile), voiced frames analysed."""

    duration_s: float
    speech_s: float
    level_db: float
    pitch_hz: float = 0.0
    pitch_spread_st: float = 0.0
    voiced: int = 0


def measure(pcm: bytes, sample_rate: int, *, max_pitch_frames: int = 40) -> Prosody:
    """The prosody of one utterance (PCM16 mono little-endian); raises ValueError on odd bytes or a bad rate."""
    if not isinstance(pcm, bytes | bytearray | memoryview):
        raise TypeError(f"pcm must be bytes, not {type(pcm).__name__}")
    if len(pcm) % 2:
        raise ValueError(f"pcm must be whole 16-bit samples, got {len(pcm)} bytes")
    if not 4000 <= sample_rate <= 48000:
        raise ValueError(f"sample_rate must be 4000..48000 Hz, not {sample_rate}")
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    hop = int(sample_rate * FRAME_S)
    n = len(x) // hop
    duration = len(x) / sample_rate
    if n == 0:
        return Prosody(round(duration, 3), 0.0, -120.0)
    frames = x[: n * hop].reshape(n, hop)
    power = np.mean(frames * frames, axis=1) + 1e-12
    db = 10.0 * np.log10(power)
    speech = (db >= SPEECH_FLOOR_DBFS) & (db >= db.max() - SPEECH_RANGE_DB)
    k = int(speech.sum())
    if k == 0:
        return Prosody(round(duration, 3), 0.0, round(float(db.max()), 2))
    level = 10.0 * math.log10(float(power[speech].mean()))
    f0, spread, voiced = _pitch(x, sample_rate, hop, np.flatnonzero(speech), max_pitch_frames)
    return Prosody(round(duration, 3), round(k * FRAME_S, 3), round(level, 2), round(f0, 1), round(spread, 2), voiced)


def _pitch(x: np.ndarray, sr: int, hop: int, speech_idx: np.ndarray, most: int) -> tuple[float, float, int]:
    win = 2 * hop  # 40 ms: 2.8 periods of the lowest pitch (70 Hz)
    idx = speech_idx[speech_idx * hop + win <= len(x)]
    if len(idx) == 0:
        return 0.0, 0.0, 0
    if len(idx) > most:
        idx = idx[np.linspace(0, len(idx) - 1, most).astype(int)]
    starts = idx * hop
    w = x[starts[:, None] + np.arange(win)[None, :]].astype(np.float64)  # pocketfft is quicker in float64
    w = w - w.mean(axis=1, keepdims=True)
    nfft = 2 * win  # no circular wrap for lags below win
    spec = np.fft.rfft(w, nfft, axis=1)
    ac = np.fft.irfft(spec * np.conj(spec), nfft, axis=1)[:, :win]
    lo, hi = int(sr / MAX_F0), min(int(sr / MIN_F0), win - 1)
    # normalise by the energy of the overlapping parts (unbiased), so long lags are not penalised
    energy = ac[:, :1]
    lags = np.arange(lo, hi + 1)
    r = ac[:, lo:hi + 1] / (energy * (win - lags) / win + 1e-9)
    best = np.argmax(r, axis=1)
    peak = r[np.arange(len(r)), best]
    ok = peak >= VOICED_AT
    if not ok.any():
        return 0.0, 0.0, 0
    f0 = sr / lags[best[ok]]
    st = 12.0 * np.log2(f0 / np.median(f0))
    st.sort()
    spread = st[(3 * len(st)) // 4] - st[len(st) // 4]
    return float(np.median(f0)), float(spread), int(ok.sum())


def syllables(text: str, lang: str) -> int:
    """Chinese characters plus English vowel groups (at least one per English word); digits count one each."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    count = len(_CJK.findall(text)) + sum(ch.isdigit() for ch in text)
    for word in _EN_WORD.findall(text.lower()):
        groups = len(_EN_VOWELS.findall(word))
        if groups > 1 and ((word.endswith("e") and not word.endswith(("le", "ee")))
                           or (word.endswith("ed") and word[-3:-2] not in ("t", "d"))
                           or (word.endswith("es") and word[-3:-2] not in ("s", "x", "z", "c", "g"))):
            groups -= 1  # a silent e: "have", "called", "times" are one syllable
        count += max(1, groups)
    return count


@dataclass(frozen=True)
class Relative:
    """A line against the caller's usual in this call: level above it (dB), rate and pitch as ratios; None
    where there is no baseline yet or nothing to compare."""

    loud_db: float | None = None
    rate_ratio: float | None = None
    pitch_ratio: float | None = None


@dataclass
class CallerBaseline:
    """One caller's usual level, speaking rate and pitch in this call: medians of their earlier utterances
    (the latest `keep`); utterances with less than `min_speech_s` of speech are not counted."""

    keep: int = 8
    min_speech_s: float = 0.4
    levels: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    pitches: list[float] = field(default_factory=list)

    def relative(self, p: Prosody, rate: float | None) -> Relative:
        """How this utterance compares with the earlier ones (not counting itself); then it is added."""
        if p.speech_s < self.min_speech_s:
            return Relative()
        rel = Relative(
            round(p.level_db - statistics.median(self.levels), 2) if self.levels else None,
            round(rate / statistics.median(self.rates), 3) if rate and self.rates else None,
            round(p.pitch_hz / statistics.median(self.pitches), 3) if p.pitch_hz and self.pitches else None,
        )
        self.levels = [*self.levels, p.level_db][-self.keep:]
        if rate:
            self.rates = [*self.rates, rate][-self.keep:]
        if p.pitch_hz:
            self.pitches = [*self.pitches, p.pitch_hz][-self.keep:]
        return rel


def speaking_rate(p: Prosody, text: str, lang: str) -> float | None:
    """Syllables per second of speech, None for too little speech or text to tell."""
    n = syllables(text, lang)
    return round(n / p.speech_s, 3) if p.speech_s >= 0.4 and n >= 3 else None
