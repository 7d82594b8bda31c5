"""The barge-in detector's cheap paths (whole 20 ms frames without copies, digital silence, the echo
estimate's gathered lags and 30th percentile) decide exactly as the general path does."""

from __future__ import annotations

import numpy as np

from asr.bargein import BargeInDetector, _percentile30, frame_energy

FRAME = 320


def _line(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 6 s prompt with pauses, and the caller's side: its echo (delayed, attenuated), noise, and a
    burst of voiced sound over the prompt."""
    rng = np.random.default_rng(seed)
    t = np.arange(8000 * 6) / 8000
    prompt = 4000 * np.sin(2 * np.pi * 310 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    prompt[8000:12000] = 0  # a pause: digital silence
    delay = int(rng.integers(0, 1600))
    caller = np.zeros_like(prompt)
    caller[delay:] = prompt[: prompt.size - delay] * rng.uniform(0.05, 0.3)
    caller += rng.normal(0, 40, prompt.size)
    s = 8000 * 4
    caller[s : s + 6000] += 5000 * np.sin(2 * np.pi * 700 * t[:6000]) * (0.6 + 0.4 * np.sin(2 * np.pi * 5 * t[:6000]))
    caller[8000 * 5 :] = 0  # the caller's side goes digitally silent
    return (np.clip(prompt, -32768, 32767).astype("<i2"), np.clip(caller, -32768, 32767).astype("<i2"))


def _run(prompt: bytes, caller: bytes, general: bool) -> list[tuple[bool, bool, int | None, float]]:
    det = BargeInDetector()
    trace = []
    for i in range(0, len(prompt), FRAME):
        det.outbound(prompt[i : i + FRAME])
        frame = caller[i : i + FRAME]
        # bytearray takes the general path (checked, buffered, split); bytes of one frame the fast one
        data: bytes = bytearray(frame) if general else frame  # type: ignore[assignment]
        fired = det.feed(data, active=(i // 16000) % 2 == 0)
        assert det.echo is not None
        trace.append((fired, det.last_echo, det.echo.delay_frames, det.echo.gain))
    return trace


def test_the_fast_path_decides_as_the_general_path() -> None:
    fired = 0
    for seed in range(4):
        prompt, caller = (a.tobytes() for a in _line(seed))
        fast = _run(prompt, caller, general=False)
        assert fast == _run(prompt, caller, general=True)
        assert any(echo for _, echo, *_ in fast)  # the echo was recognised as echo
        fired += sum(f for f, *_ in fast)
    assert fired >= 1  # the voiced burst over the prompt is barge-in


def test_the_echo_estimate_finds_the_delay_and_gain_of_a_known_echo() -> None:
    rng = np.random.default_rng(11)
    t = np.arange(8000 * 4) / 8000
    prompt = (5000 * np.sin(2 * np.pi * 310 * t) * (1 + np.sign(np.sin(2 * np.pi * 2.3 * t)))).astype("<i2")
    for delay_ms, amplitude in ((0, 0.5), (120, 0.2), (260, 0.05)):
        d = delay_ms * 8
        caller = np.zeros(prompt.size)
        caller[d:] = prompt[: prompt.size - d] * amplitude
        caller = (caller + rng.normal(0, 5, caller.size)).astype("<i2")
        det = BargeInDetector()
        for i in range(0, prompt.size * 2, FRAME):
            det.outbound(prompt.tobytes()[i : i + FRAME])
            det.feed(caller.tobytes()[i : i + FRAME], active=False)
        assert det.echo is not None and det.echo.delay_ms is not None
        assert abs(det.echo.delay_ms - delay_ms) <= 20, (delay_ms, det.echo.delay_ms)
        assert 0.5 * amplitude**2 < det.echo.gain < 2 * amplitude**2, (amplitude, det.echo.gain)


def test_digital_silence_under_a_prompt_learns_no_echo_and_speech_still_barges_in() -> None:
    t = np.arange(8000 * 4) / 8000
    prompt = (5000 * np.sin(2 * np.pi * 310 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype("<i2").tobytes()
    caller = np.zeros(t.size)
    onset = 8000 * 3
    caller[onset:] = 1500 * np.sin(2 * np.pi * 700 * t[: t.size - onset]) * (1 + 0.5 * np.sin(2 * np.pi * 5 * t[:8000]))
    pcm = caller.astype("<i2").tobytes()
    det = BargeInDetector()
    fired_at = None
    for i in range(0, len(prompt), FRAME):
        det.outbound(prompt[i : i + FRAME])
        if det.feed(pcm[i : i + FRAME]) and fired_at is None:
            fired_at = i // FRAME
        if i // FRAME == onset // 160 - 1:
            assert det.echo is not None and det.echo.gain == 0.0 and det.echo.delay_frames is None
    assert fired_at is not None and 0 <= fired_at - onset // 160 <= 5, fired_at


def test_frame_energy_is_the_mean_square() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(-32768, 32768, 160).astype("<i2")
    assert np.isclose(frame_energy(x.tobytes()), float(np.mean(x.astype(np.float64) ** 2)), rtol=1e-5)
    assert frame_energy(bytes(FRAME)) == 0.0
    assert frame_energy(b"") == 0.0
    loud = np.full(160, -32768, "<i2").tobytes()
    assert frame_energy(loud) == 32768.0**2


def test_percentile30_matches_numpy() -> None:
    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 10, 75):
        v = rng.exponential(1.0, n)
        assert np.isclose(_percentile30(v), np.percentile(v, 30))
