"""BargeInDetector on real espeak-ng speech mixed over a real prompt with its echo, frame by frame."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from asr import resample
from asr.bargein import BargeInDetector, EchoGuard
from telephony.g711 import ulaw_decode, ulaw_encode
from tts.espeak_backend import EspeakSynthesizer

RATE = 8000
FRAME = 320
PROMPT_TEXT = (
    "Welcome to Example Bank. How can I help you today? You can ask a question, like what are your "
    "opening hours, or press 1 for opening hours."
)


@pytest.fixture(scope="module")
def speak() -> Callable[..., np.ndarray]:
    synth = EspeakSynthesizer(speed=160)
    cache: dict[tuple[str, str, float], np.ndarray] = {}

    def say(text: str, lang: str = "en", gain: float = 0.89) -> np.ndarray:
        key = (text, lang, gain)
        if key not in cache:
            pcm = resample(synth.synthesize(text, lang), synth.sample_rate, RATE, gain=gain)
            cache[key] = np.frombuffer(pcm, "<i2").astype(np.float32)
        return cache[key]

    return say


def noise_burst(ms: int, amplitude: float, seed: int = 1) -> np.ndarray:
    n = RATE * ms // 1000
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32) * amplitude * np.hanning(n)


def run(prompt: np.ndarray, caller: np.ndarray | None, *, at_s: float = 1.5, echo_db: float | None = -12.0,
        delay_ms: int = 120) -> tuple[float | None, float | None, BargeInDetector]:
    """Plays `prompt` out, feeds the caller's line (echo + caller) in; returns (fired at s, caller onset s)."""
    n = len(prompt) + RATE
    out = np.zeros(n, np.float32)
    out[: len(prompt)] = prompt
    line = np.zeros(n, np.float32)
    if echo_db is not None:
        d = RATE * delay_ms // 1000
        line[d:] += out[: n - d] * 10 ** (echo_db / 20)
    onset = None
    if caller is not None:
        a = int(at_s * RATE)
        line[a : a + len(caller)] += caller[: n - a]
        onset = (a + int(np.nonzero(np.abs(caller) > 200)[0][0])) / RATE
    inb = np.clip(line, -32768, 32767).astype("<i2").tobytes()
    outb = out.astype("<i2").tobytes()
    det = BargeInDetector()
    fired = None
    for i in range(0, len(inb) - FRAME + 1, FRAME):
        det.outbound(outb[i : i + FRAME])
        if det.feed(inb[i : i + FRAME]) and fired is None:
            fired = det.confirmed_s
    return fired, onset, det


@pytest.mark.parametrize(
    ("text", "lang"),
    [("I want to speak to an agent", "en"), ("no", "en"), ("yes", "en"), ("What are your opening hours?", "en"),
     ("我要转人工", "zh"), ("挂失银行卡", "zh")],
)
def test_caller_speech_over_the_prompt_and_its_echo_stops_it_within_200_ms(
    speak: Callable[..., np.ndarray], text: str, lang: str
) -> None:
    fired, onset, det = run(speak(PROMPT_TEXT), speak(text, lang))
    assert fired is not None and onset is not None, text
    assert 0 <= fired - onset <= 0.200, (text, fired - onset)
    assert det.echo is not None and det.echo.delay_ms == 120  # the echo path was found


@pytest.mark.parametrize("ms", [50, 100, 150])
@pytest.mark.parametrize("amplitude", [8000.0, 20000.0])
def test_noise_bursts_and_coughs_do_not_stop_the_prompt(speak: Callable[..., np.ndarray], ms: int,
                                                        amplitude: float) -> None:
    fired, _, _ = run(speak(PROMPT_TEXT), noise_burst(ms, amplitude))
    assert fired is None


@pytest.mark.parametrize(("text", "lang"), [("[[m'hm]]", "en"), ("[[mmm]]", "en"), ("嗯", "zh"), ("嗯。嗯", "zh")])
def test_nasal_backchannels_do_not_stop_the_prompt(speak: Callable[..., np.ndarray], text: str, lang: str) -> None:
    # "[[m'hm]]" is espeak-ng phoneme input: its plain-text "mhm" is spelled out as letters.
    fired, _, _ = run(speak(PROMPT_TEXT), speak(text, lang))
    assert fired is None, text


@pytest.mark.parametrize(("echo_db", "delay_ms"), [(-30.0, 20), (-12.0, 120), (-6.0, 300), (-6.0, 40), (-6.0, 0)])
def test_the_prompts_own_echo_does_not_stop_it(  # -6 dB: the loudest echo ITU-T G.168 assumes
speak: Callable[..., np.ndarray], echo_db: float,
                                               delay_ms: int) -> None:
    fired, _, det = run(speak(PROMPT_TEXT), None, echo_db=echo_db, delay_ms=delay_ms)
    assert fired is None
    assert det.echo_frames > 0 or echo_db <= -30


def _ulaw(x: np.ndarray) -> np.ndarray:
    """A G.711 mu-law round trip, as on the telephone line."""
    pcm = np.clip(x, -32768, 32767).astype("<i2").tobytes()
    return np.frombuffer(ulaw_decode(ulaw_encode(pcm)), "<i2").astype(np.float32)


def _jittered(prompt: np.ndarray, caller: np.ndarray | None, seed: int, echo_db: float, delay_frames: int,
              at_s: float = 1.0) -> float | None:
    """Like run(), but through G.711 both ways and with the send side 0-40 ms ahead of the receive side
    at random (as the session's tap and reader are over real RTP)."""
    rng = np.random.default_rng(seed)
    n = len(prompt) + RATE
    out = np.zeros(n, np.float32)
    out[: len(prompt)] = prompt
    d = delay_frames * 160
    line = np.zeros(n, np.float32)
    line[d:] += _ulaw(out)[: n - d] * 10 ** (echo_db / 20)
    if caller is not None:
        a = int(at_s * RATE)
        line[a : a + len(caller)] += caller[: n - a]
    inb = np.clip(_ulaw(line), -32768, 32767).astype("<i2").tobytes()
    outb = out.astype("<i2").tobytes()
    det = BargeInDetector()
    sent = 0
    frames = len(inb) // FRAME
    for k in range(frames):
        while sent < min(k + 1 + int(rng.integers(0, 3)), frames):
            det.outbound(outb[sent * FRAME : (sent + 1) * FRAME])
            sent += 1
        if det.feed(inb[k * FRAME : (k + 1) * FRAME]):
            return det.confirmed_s
    return None


@pytest.mark.parametrize("seed", range(6))
def test_echo_through_g711_with_send_receive_jitter_does_not_stop_the_prompt(
    speak: Callable[..., np.ndarray], seed: int
) -> None:
    for echo_db, delay_frames in ((-12.0, 1), (-12.0, 2), (-6.0, 1), (-20.0, 3)):
        assert _jittered(speak(PROMPT_TEXT), None, seed, echo_db, delay_frames) is None, (echo_db, delay_frames)


def test_speech_through_g711_with_jitter_still_stops_the_prompt_in_time(speak: Callable[..., np.ndarray]) -> None:
    speech = speak("I want to speak to an agent")
    onset = 2.5 + int(np.nonzero(np.abs(speech) > 200)[0][0]) / RATE
    for seed in range(3):
        fired = _jittered(speak(PROMPT_TEXT), speech, seed, -12.0, 2, at_s=2.5)
        assert fired is not None and 0 <= fired - onset <= 0.200, (seed, fired)


def test_without_echo_the_guard_learns_the_line_is_quiet_and_speech_still_stops_the_prompt_fast(
    speak: Callable[..., np.ndarray],
) -> None:
    fired, onset, det = run(speak(PROMPT_TEXT), speak("I want to speak to an agent"), echo_db=None)
    assert fired is not None and onset is not None
    assert fired - onset <= 0.200
    assert det.echo is not None and det.echo.gain < 1e-3


def test_echo_guard_estimates_delay_and_gain_from_energy_envelopes(speak: Callable[..., np.ndarray]) -> None:
    prompt = speak(PROMPT_TEXT)
    guard = EchoGuard()
    energies = [float(np.mean(prompt[i : i + 160] ** 2)) for i in range(0, len(prompt) - 159, 160)]
    delay = 8  # frames
    for k, e in enumerate(energies):
        guard.outbound(e)
        guard.expected_echo(energies[k - delay] * 0.05 if k >= delay else 0.0)
    assert guard.delay_frames == delay
    assert guard.gain == pytest.approx(0.05, rel=0.05)


def test_detector_rejects_bad_settings_and_keeps_only_whole_frames() -> None:
    with pytest.raises(ValueError):
        BargeInDetector(confirm_frames=0)
    det = BargeInDetector(use_echo_guard=False)
    assert det.feed(b"\x00\x00" * 100) is False  # a partial frame is kept for the next call
    with pytest.raises(ValueError):
        det.feed(b"\x00")  # odd byte count: not PCM16
