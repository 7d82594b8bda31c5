"""The caller-mood flag hears how a line was said (hotline/sentiment_live.py + asr/prosody.py +
dialog.sentiment.with_voice): real espeak-ng speech handed to `SentimentLive.heard` as the session's media
reader does, then the transcript line on a real EventBus. Calm lines make the caller's baseline; an unhappy
line said much louder and faster than that is flagged angry, the same words at the caller's usual level are
only negative; loud thanks stay positive; audio that is missing, unmatched or broken leaves the words alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from asr.audio import resample
from hotline.bus import EventBus
from hotline.events import CallEnded, SentimentChanged, TranscriptAdded
from hotline.sentiment_live import MAX_PENDING, SentimentLive
from tts.espeak_backend import EspeakSynthesizer

CALM = {"amplitude": 50, "speed": 160}
SHOUTED = {"amplitude": 150, "speed": 210, "pitch": 75}  # x3 amplitude: +9.5 dB; 30 % faster; higher


@pytest.fixture(scope="module")
def speak() -> Callable[..., bytes]:
    synths: dict[tuple[tuple[str, int], ...], EspeakSynthesizer] = {}

    def say(text: str, how: dict[str, int], lang: str = "en") -> bytes:
        key = tuple(sorted(how.items()))
        synth = synths.setdefault(key, EspeakSynthesizer(**how))  # type: ignore[arg-type]
        return resample(synth.synthesize(text, lang), synth.sample_rate, 8000, gain=0.89)

    return say


class _Call:
    def __init__(self, live: SentimentLive, bus: EventBus, call_id: str) -> None:
        self.live, self.bus, self.call_id, self.at = live, bus, call_id, 1.0

    def line(self, text: str, pcm: bytes | None) -> None:
        """The caller says `text`: its audio first (the media reader), then its transcript line."""
        if pcm is not None:
            self.live.heard(self.call_id, self.at, pcm, 8000)
            assert self.live.flush(10.0)
        self.bus.publish(TranscriptAdded(self.call_id, "caller", text, round(self.at, 2), 0.9))
        self.at += len(pcm or b"") / 16000 + 2.0


def _moods(seen: list[Any], call_id: str) -> list[SentimentChanged]:
    return [e for e in seen if isinstance(e, SentimentChanged) and e.call_id == call_id]


def test_unhappy_words_said_louder_and_faster_than_usual_are_angry(
    speak: Callable[..., bytes], caplog: pytest.LogCaptureFixture,
) -> None:
    bus, seen = EventBus(), list[Any]()
    bus.subscribe(seen.append)
    live = SentimentLive(bus, None)
    caplog.set_level(logging.INFO, logger="hotline.sentiment_live")
    try:
        unhappy = "I am a bit disappointed with this"
        for call_id, how in (("loud", SHOUTED), ("usual", CALM)):
            call = _Call(live, bus, call_id)
            call.line("I would like to check my balance please", speak("I would like to check my balance please", CALM))
            call.line("it is for my current account", speak("it is for my current account", CALM))
            call.line(unhappy, speak(unhappy, how))
        loud, usual = _moods(seen, "loud")[-1], _moods(seen, "usual")[-1]
        assert loud.angry and loud.label == "angry" and loud.line_score <= -0.8, loud
        assert not usual.angry and usual.label == "negative" and -0.8 < usual.line_score < -0.25, usual
        assert "call loud: caller sentiment angry" in caplog.text and "voice:raised" in caplog.text

        # Mandarin: the same rule (a loud 我很失望 after calm requests)
        call = _Call(live, bus, "zh")
        for text in ("我想查一下余额", "是储蓄账户"):
            call.line(text, speak(text, CALM, "zh"))
        call.line("我很失望", speak("我很失望", SHOUTED, "zh"))
        assert _moods(seen, "zh")[-1].angry

        # loud thanks stay positive; a loud neutral request stays neutral
        call = _Call(live, bus, "happy")
        for text in ("I would like to check my balance please", "it is for my current account"):
            call.line(text, speak(text, CALM))
        call.line("thank you so much, that is great", speak("thank you so much, that is great", SHOUTED))
        assert _moods(seen, "happy")[-1].label == "positive"
        call.line("and my savings account too", speak("and my savings account too", SHOUTED))
        assert not any(m.angry for m in _moods(seen, "happy"))

        bus.publish(CallEnded("loud", "goodbye", "caller_hangup", 30.0))
        assert "loud" not in live._baselines and "loud" not in live._pending
    finally:
        live.stop()


def test_missing_unmatched_or_broken_audio_leaves_the_words_alone(
    speak: Callable[..., bytes],
) -> None:
    bus, seen = EventBus(), list[Any]()
    bus.subscribe(seen.append)
    live = SentimentLive(bus, None)
    try:
        unhappy = "I am a bit disappointed with this"
        call = _Call(live, bus, "c")
        for text in ("I would like to check my balance please", "it is for my current account"):
            call.line(text, speak(text, CALM))
        live.heard("c", 99.0, speak(unhappy, SHOUTED), 8000)  # audio of another start time: not this line
        call.line(unhappy, None)
        assert _moods(seen, "c")[-1].label == "negative"
        live.heard("c", call.at, b"\x01\x02\x03", 8000)  # odd bytes: the measurement fails in its thread
        assert live.flush(5.0)
        call.line(unhappy, None)
        assert _moods(seen, "c")[-1].label == "negative" and not _moods(seen, "c")[-1].angry
        for k in range(MAX_PENDING + 5):  # sounds that never became lines: bounded
            live.heard("c", 500.0 + k, b"\x00\x00" * 1600, 8000)
        assert len(live._pending["c"]) == MAX_PENDING
        live.stop()
        live.heard("c", 900.0, b"\x00\x00" * 1600, 8000)  # after stop: ignored, never raises
    finally:
        live.stop()


async def test_a_line_that_comes_before_its_audio_is_measured_waits_for_it_in_order(
    speak: Callable[..., bytes],
) -> None:
    """On a call the words can be ready at the endpoint (speculative decode) before the audio is measured: the
    line is scored when the measurement is done, on the loop, and later lines of the call keep their order."""
    import asyncio

    bus, seen = EventBus(), list[Any]()
    bus.subscribe(seen.append)
    live = SentimentLive(bus, None)
    try:
        calm = ["I would like to check my balance please", "it is for my current account"]
        call = _Call(live, bus, "c")
        for text in calm:
            call.line(text, speak(text, CALM))
        shouted, after = "I am a bit disappointed with this", "and the fee as well"
        pcm = speak(shouted, SHOUTED)
        live.heard("c", call.at, pcm, 8000)  # no flush: the line follows at once
        bus.publish(TranscriptAdded("c", "caller", shouted, round(call.at, 2), 0.9))
        bus.publish(TranscriptAdded("c", "caller", after, round(call.at + 5, 2), 0.9))  # no audio for this one
        for _ in range(200):
            if not live._queued:
                break
            await asyncio.sleep(0.01)
        moods = _moods(seen, "c")
        assert not live._queued and live.moods["c"].lines == 4  # both scored, the shouted one third
        angry = [m for m in moods if m.lines == 3]
        assert angry and angry[0].angry and angry[0].line_score <= -0.8, moods
    finally:
        live.stop()
