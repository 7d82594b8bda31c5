"""asr/prosody.py on real espeak-ng speech (the project's tts at different amplitudes, rates and pitches,
resampled to 8 kHz like a call): the level follows the amplitude in dB, the speaking rate the speed, the pitch
the voice's pitch; pauses and silence do not count as speech; the caller's own baseline; bad input; the cost."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pytest

from asr.audio import resample
from asr.prosody import CallerBaseline, Prosody, measure, speaking_rate, syllables
from tts.espeak_backend import EspeakSynthesizer

TEXT = "I have called three times about this payment and it is still not fixed"


@pytest.fixture(scope="module")
def speak() -> Callable[..., bytes]:
    def say(text: str = TEXT, lang: str = "en", **how: int) -> bytes:
        synth = EspeakSynthesizer(**{"speed": 160, **how})  # type: ignore[arg-type]
        return resample(synth.synthesize(text, lang), synth.sample_rate, 8000, gain=0.89)

    return say


def test_level_rate_and_pitch_follow_how_espeak_was_told_to_speak(speak: Callable[..., bytes]) -> None:
    usual = measure(speak(), 8000)
    quiet, loud = measure(speak(amplitude=40), 8000), measure(speak(amplitude=200), 8000)
    fast, high = measure(speak(speed=230), 8000), measure(speak(pitch=80), 8000)
    print("usual", usual, "quiet", quiet, "loud", loud, "fast", fast, "high", high)
    # espeak's amplitude is linear: x2 is +6 dB, x0.4 is -8 dB (within 1.5 dB: its limiter, the resampler)
    assert abs((loud.level_db - usual.level_db) - 6.0) < 1.5 and abs((quiet.level_db - usual.level_db) + 8.0) < 1.5
    assert 3.0 < usual.speech_s <= usual.duration_s and 70 < usual.pitch_hz < 200 and usual.voiced >= 10
    rate, rate_fast = speaking_rate(usual, TEXT, "en"), speaking_rate(fast, TEXT, "en")
    assert rate is not None and rate_fast is not None and 1.25 < rate_fast / rate < 1.6  # 230/160 = 1.44
    assert 1.2 < high.pitch_hz / usual.pitch_hz < 1.6 and abs(fast.pitch_hz / usual.pitch_hz - 1) < 0.1

    zh = measure(speak("我已经打了三次电话了还是没有人管", "zh"), 8000)
    assert zh.speech_s > 2.0 and zh.pitch_hz > 0 and speaking_rate(zh, "我已经打了三次电话了还是没有人管", "zh")


def test_silence_and_pauses_are_not_speech(speak: Callable[..., bytes]) -> None:
    pcm = speak()
    padded = b"\x00\x00" * 8000 + pcm + b"\x00\x00" * 12000  # the endpointer's pre-roll and tail, longer
    a, b = measure(pcm, 8000), measure(padded, 8000)
    assert abs(a.speech_s - b.speech_s) <= 0.06 and abs(a.level_db - b.level_db) < 0.5
    assert b.duration_s - a.duration_s == pytest.approx(2.5, abs=0.01)
    assert measure(b"\x00\x00" * 8000, 8000) == Prosody(1.0, 0.0, pytest.approx(-120.0))  # type: ignore[arg-type]
    assert measure(b"", 8000).speech_s == 0.0


def test_the_baseline_is_the_callers_own_earlier_lines(speak: Callable[..., bytes]) -> None:
    base = CallerBaseline()
    first = measure(speak(amplitude=50), 8000)
    assert base.relative(first, speaking_rate(first, TEXT, "en")).loud_db is None  # nothing to compare yet
    again = measure(speak(amplitude=50), 8000)
    same = base.relative(again, speaking_rate(again, TEXT, "en"))
    assert same.loud_db is not None and abs(same.loud_db) < 0.5 and same.rate_ratio == pytest.approx(1.0, abs=0.05)
    shout = measure(speak(amplitude=150, speed=210, pitch=75), 8000)
    rel = base.relative(shout, speaking_rate(shout, TEXT, "en"))
    assert rel.loud_db is not None and rel.loud_db > 8.0 and rel.rate_ratio and rel.rate_ratio > 1.2
    assert rel.pitch_ratio and rel.pitch_ratio > 1.2
    assert base.relative(measure(b"\x00\x00" * 800, 8000), None).loud_db is None  # too short: not counted
    assert len(base.levels) == 3


def test_syllables_and_bad_input() -> None:
    assert syllables("I have called three times", "en") == 5
    assert syllables("我已经打了三次", "zh") == 7 and syllables("卡号 1234", "zh") == 6
    assert syllables("", "en") == 0
    with pytest.raises(ValueError, match="whole 16-bit samples"):
        measure(b"\x00\x01\x02", 8000)
    with pytest.raises(ValueError, match="sample_rate"):
        measure(b"\x00\x00", 100)
    with pytest.raises(TypeError, match="pcm must be bytes"):
        measure("audio", 8000)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="text must be str"):
        syllables(None, "en")  # type: ignore[arg-type]


def test_cost_per_utterance(speak: Callable[..., bytes]) -> None:
    pcm = speak()
    times = []
    for _ in range(60):
        t = time.perf_counter()
        measure(pcm, 8000)
        times.append(time.perf_counter() - t)
    p50 = statistics.median(times) * 1e6
    print(f"prosody of a {len(pcm) / 16000:.1f} s utterance: p50 {p50:.0f} µs (on the scorer's own thread)")
    assert p50 < 20000
