"""Long backchannels ("okay, sure", "alright then", "yes yes", "好的好的", "嗯嗯对") run past
barge_in.backchannel_ms: the gate's decision table (asr/backchannel.py) in English and Mandarin, and
the peek decode of speech still going on (asr/speculative.py) with the real whisper model."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from asr import Recognizer
from asr.backchannel import BackchannelGate, Decision, could_be_backchannel, is_backchannel
from asr.speculative import SpeculativeDecoder

FRAME = b"\x01\x00" * 160  # 20 ms at 8 kHz


@pytest.mark.parametrize(("text", "lang"), [
    ("Okay, sure.", "en"), ("Alright then.", "en"), ("Yes, yes.", "en"), ("yes yes yes", "en"),
    ("OK then", "en"), ("Right, okay, got it.", "en"), ("好的好的", "zh"), ("嗯嗯对", "zh"), ("好的好的。", "zh"),
    ("对对，好的", "zh"), ("是的是的", "zh"), ("嗯，知道了", "zh"), ("好的吧", "zh"),
])
def test_runs_of_acknowledgements_are_backchannels(text: str, lang: str) -> None:
    assert is_backchannel(text, lang), text


@pytest.mark.parametrize(("text", "lang"), [
    ("Yes.", "en"), ("then", "en"), ("Okay, then I want an agent.", "en"), ("Sure, block my card.", "en"),
    ("okay okay okay okay okay", "en"), ("Yes, I lost my card.", "en"), ("是", "zh"), ("吧", "zh"),
    ("好的我要挂失", "zh"), ("嗯嗯对对好的好的", "zh"), ("对，不是这个", "zh"),
])
def test_answers_requests_and_endless_runs_are_not(text: str, lang: str) -> None:
    assert not is_backchannel(text, lang), text


@pytest.mark.parametrize(("so_far", "lang", "could"), [
    ("", "en", True), ("Okay,", "en", True), ("Okay, su", "en", True), ("Alright", "en", True),
    ("No, I want", "en", False), ("Okay, block", "en", False), ("I want", "en", False),
    ("好的", "zh", True), ("嗯嗯", "zh", True), ("我要", "zh", False), ("好的我要", "zh", False),
])
def test_the_text_so_far(so_far: str, lang: str, could: bool) -> None:
    assert could_be_backchannel(so_far, lang) is could


def _gate_over(ms: int, gate: BackchannelGate, since: int = 0) -> Decision | None:
    """Feeds speech over the prompt from `since` to `ms`; returns the first decision."""
    for t in range(since + 20, ms + 20, 20):
        d = gate.speech(t, FRAME)
        if d is not None:
            return d
    return None


P = 360  # the gate asks for the text so far 250 ms before backchannel_ms (600)
# (language, [(speech so far, its text) for each peek], speech in all, text at the pause or None, decision)
TABLE: list[tuple[str, list[tuple[int, str]], int, str | None, Decision]] = [
    # short: decided at the pause, as before
    ("en", [], 400, "Yeah.", Decision.BACKCHANNEL),
    ("zh", [], 400, "嗯", Decision.BACKCHANNEL),
    ("en", [], 400, "No.", Decision.BARGE_IN),
    # long acknowledgements: kept past 600 ms of speech; the pause restores the prompt
    ("en", [(P, "Okay,"), (700, "Okay, sure")], 1000, "Okay, sure.", Decision.BACKCHANNEL),
    ("en", [(P, "Alright")], 900, "Alright then.", Decision.BACKCHANNEL),
    ("en", [(P, "Yes,")], 800, "Yes, yes.", Decision.BACKCHANNEL),
    ("zh", [(P, "好的"), (700, "好的好")], 1000, "好的好的", Decision.BACKCHANNEL),
    ("zh", [(P, "嗯嗯")], 900, "嗯嗯对", Decision.BACKCHANNEL),
    ("en", [(P, ""), (480, "Okay, su")], 1000, "Okay, sure.", Decision.BACKCHANNEL),  # first word cut off
    # real speech: stopped as soon as the text so far is known (before 600 ms of it: the fast stop)
    ("en", [(P, "No, I")], P, None, Decision.BARGE_IN),
    ("zh", [(P, "我要")], P, None, Decision.BARGE_IN),
    ("en", [(P, ""), (480, "I want to")], 480, None, Decision.BARGE_IN),
    # nothing recognisable twice (a long hum): barge-in at backchannel_ms
    ("en", [(P, ""), (480, "")], 600, None, Decision.BARGE_IN),
    # acknowledgements first, then a request: caught by the next peek, or at the pause
    ("en", [(P, "Okay,"), (700, "Okay, I lost")], 700, None, Decision.BARGE_IN),
    ("zh", [(P, "好的"), (700, "好的，我要")], 700, None, Decision.BARGE_IN),
    ("en", [(P, "Okay,")], 1200, "Okay, I lost my card.", Decision.BARGE_IN),
    # acknowledgements that go on past the maximum (1.5 s of speech): barge-in
    ("en", [(P, "Yeah yeah"), (700, "Yeah yeah yeah"), (1000, "Yeah yeah yeah")], 1500, None, Decision.BARGE_IN),
    ("zh", [(P, "对对对")], 1500, None, Decision.BARGE_IN),
]


@pytest.mark.parametrize(("lang", "peeks", "total", "at_pause", "expected"), TABLE)
def test_decision_table(lang: str, peeks: list[tuple[int, str]], total: int, at_pause: str | None,
                        expected: Decision) -> None:
    gate = BackchannelGate(600, 1500)
    for _ in range(10):
        gate.speech(0, FRAME)  # frames before the onset: the gate keeps a little of them
    gate.start()
    decided, at = None, 0
    for ms, text in peeks:
        decided = _gate_over(ms, gate, at)
        at = ms
        assert decided is None and gate.wants_text, (ms, text)
        audio = gate.take_audio()
        assert len(audio) >= (10 + ms // 20) * len(FRAME) and not gate.wants_text  # the onset is in it
        decided = gate.partial(text, lang)
        if decided is not None:
            break
    if decided is None:
        decided = _gate_over(total, gate, at)
    if decided is None and at_pause is not None:
        decided = gate.heard(at_pause, lang)
    assert decided is expected
    assert gate.kept is (expected is Decision.BACKCHANNEL) and not gate.pending


def test_a_decode_of_the_text_so_far_too_slow_for_backchannel_ms_leaves_the_stop_as_fast_as_before() -> None:
    gate = BackchannelGate(600, 1500)
    gate.speech(0, FRAME)
    gate.start()
    assert _gate_over(P, gate) is None and gate.wants_text
    gate.take_audio()  # the decode is running (a busy CPU pool)
    assert _gate_over(580, gate, P) is None and gate.pending
    assert gate.speech(600, FRAME) is Decision.BARGE_IN
    assert gate.partial("Okay", "en") is None  # too late: decided
    patient = BackchannelGate(600, 1500, wait_ms=150)  # or wait a little for it
    patient.start()
    patient.speech(20, FRAME)
    assert _gate_over(P, patient, 20) is None and patient.wants_text
    patient.take_audio()
    assert _gate_over(740, patient, P) is None and patient.speech(760, FRAME) is Decision.BARGE_IN


def test_without_frames_or_with_the_maximum_off_600_ms_of_speech_stops_the_prompt_as_before() -> None:
    gate = BackchannelGate(600, 1500)
    gate.start()
    assert gate.speech(580) is None and gate.speech(600) is Decision.BARGE_IN  # no audio: no text possible
    short = BackchannelGate(600, 0)
    short.start()
    assert _gate_over(600, short) is Decision.BARGE_IN and not short.wants_text
    with pytest.raises(ValueError, match="max_backchannel_ms"):
        BackchannelGate(600, -1)


async def test_a_peek_decodes_the_speech_so_far_with_the_real_model(
    whisper: Recognizer, espeak_8k: Callable[[str], bytes]
) -> None:
    speech = espeak_8k("okay, sure")
    gate = BackchannelGate(600, 1500)
    gate.start()
    for i in range(0, len(speech), 320):
        gate.speech(min(P, i // 16), speech[i : i + 320].ljust(320, b"\x00"))  # the text is asked at P
    assert gate.wants_text
    with ThreadPoolExecutor(1) as pool:
        decoder = SpeculativeDecoder(whisper, pool, "call-x")
        fut = decoder.peek(gate.take_audio(), 8000, "en")
        assert fut is not None and decoder.peek(b"", 8000, "en") is None and decoder.peek(speech, 8000, "ko") is None
        text = (await fut).text
    assert could_be_backchannel(text, "en"), text
    assert gate.partial(text, "en") is None and gate.pending
    assert gate.heard(text, "en") is Decision.BACKCHANNEL, text
