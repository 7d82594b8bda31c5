"""Backchannel list (English and Mandarin) and the gate's decisions; the whole path over SIP with
espeak-ng speech is in tests/hotline/test_barge_in.py."""

from __future__ import annotations

import numpy as np
import pytest

from asr.backchannel import BackchannelGate, Decision, is_backchannel


@pytest.mark.parametrize("text", ["Yeah.", "OK", "Okay!", "uh-huh", "Uh huh.", "Mm.", "Mhm", "Right, right.",
                                  "Yeah, okay.", "I see.", "All right."])
def test_english_backchannels(text: str) -> None:
    assert is_backchannel(text, "en"), text


@pytest.mark.parametrize("text", ["嗯", "嗯。", "对", "对对对", "好的", "嗯，对。", "哦"])
def test_mandarin_backchannels(text: str) -> None:
    assert is_backchannel(text, "zh"), text


@pytest.mark.parametrize(("text", "lang"), [
    ("No, I want to block my card.", "en"), ("No.", "en"), ("Yes.", "en"), ("Agent", "en"),
    ("Yeah, I lost my card.", "en"), ("", "en"), ("...", "en"), ("okay okay okay okay okay", "en"),
    ("我要挂失", "zh"), ("不对", "zh"), ("是", "zh"), ("对，我要转人工", "zh"),
])
def test_answers_and_requests_are_not_backchannels(text: str, lang: str) -> None:
    assert not is_backchannel(text, lang), text


def test_other_languages_are_checked_against_both_lists() -> None:
    assert is_backchannel("嗯", "ko") and is_backchannel("okay", "ko") and not is_backchannel("잔액 조회", "ko")


def test_gate_keeps_a_backchannel_and_stops_long_or_other_speech() -> None:
    gate = BackchannelGate(max_speech_ms=600)
    assert gate.speech(5000) is None and gate.heard("no", "en") is None  # not deciding: nothing to say
    gate.start()
    assert gate.pending and gate.speech(400) is None
    assert gate.heard("Yeah.", "en") is Decision.BACKCHANNEL and gate.kept and not gate.pending
    gate.start()
    assert gate.heard("", "en") is Decision.BACKCHANNEL  # nothing recognised (a cough): the prompt goes on
    gate.start()
    assert gate.heard("No, block my card", "en") is Decision.BARGE_IN and not gate.kept
    gate.start()
    assert gate.speech(599) is None and gate.speech(600) is Decision.BARGE_IN
    assert gate.heard("yeah", "en") is None  # decided already
    gate.start()
    assert gate.barge_in() is Decision.BARGE_IN
    gate.reset()
    assert gate.decision is None and not gate.kept
    with pytest.raises(ValueError, match="max_speech_ms"):
        BackchannelGate(0)


def test_duck_aware_echo_guard_keeps_its_estimate_through_a_duck_and_learns_again_after() -> None:
    from asr.backchannel import DuckAwareEchoGuard

    rng = np.random.default_rng(3)
    ducked = False
    guard = DuckAwareEchoGuard(lambda: ducked)
    sent: list[float] = []

    def frames(n: int, *, echo_db: float, gain_db: float = 0.0, caller: float = 0.0) -> list[float]:
        got = []
        for _ in range(n):
            e = float(10 ** rng.uniform(5.5, 7.0)) * 10 ** (gain_db / 10)  # a prompt's frame energies
            guard.outbound(e)
            sent.append(e)
            echo = sent[-2] * 10 ** (echo_db / 10) if len(sent) > 1 else 0.0  # one frame late
            guard.expected_echo(echo + caller)
            got.append(guard.gain)
        return got

    frames(150, echo_db=-12)
    before = guard.gain
    assert abs(10 * np.log10(before) + 12) < 1 and guard.delay_frames == 1
    ducked = True  # the caller talks over the prompt; it plays 24 dB quieter while that is judged
    during = frames(15, echo_db=-12, gain_db=-24, caller=3e7) + frames(30, echo_db=-12, gain_db=-24)
    ducked = False
    after = frames(90, echo_db=-12)
    assert all(g == before for g in during + after) and guard.holding
    frames(200, echo_db=-18)  # the hold is over: a real change of the line is learnt
    assert not guard.holding and abs(10 * np.log10(guard.gain) + 18) < 1.5, 10 * np.log10(guard.gain)
