"""Speculative recognition: the endpointer's SpeechPaused holds the coming utterance byte for byte, and
SpeculativeDecoder hands back a decode of it (real whisper on espeak-ng speech) or nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from asr import Endpointer, Recognizer, SpeechPaused, SpeechStarted, Utterance
from asr.speculative import SpeculativeDecoder

Frames = Callable[[bytes], Iterator[bytes]]


def events_of(ep: Endpointer, audio: bytes, frames: Frames) -> list[tuple[int, object]]:
    return [(i, ev) for i, f in enumerate(frames(audio)) for ev in ep.feed(f)]


def test_pause_event_holds_the_utterance_that_follows_and_comes_400_ms_before_it(tone, silence, frames) -> None:
    ep = Endpointer()
    ep.speculate = True
    events = events_of(ep, silence(0.5) + tone(0.6) + silence(1.2), frames)
    assert [type(ev) for _, ev in events] == [SpeechStarted, SpeechPaused, Utterance]
    (_, _), (i_pause, pause), (i_utt, utt) = events
    assert isinstance(pause, SpeechPaused) and isinstance(utt, Utterance)
    assert pause.pcm == utt.pcm and pause.sample_rate == utt.sample_rate == 8000
    assert i_utt - i_pause == (700 - 300) // 20  # silence_ms - tail_ms earlier


def test_no_pause_events_unless_asked_and_none_in_digit_mode(tone, silence, frames) -> None:
    audio = silence(0.5) + tone(0.6) + silence(1.2)
    assert [type(ev) for _, ev in events_of(Endpointer(), audio, frames)] == [SpeechStarted, Utterance]
    ep = Endpointer()
    ep.speculate = True
    ep.set_digit_mode(True)
    assert [type(ev) for _, ev in events_of(ep, audio + silence(1.0), frames)] == [SpeechStarted, Utterance]


def test_speech_resuming_after_a_pause_gives_a_different_utterance(tone, silence, frames) -> None:
    ep = Endpointer()
    ep.speculate = True
    events = events_of(ep, silence(0.5) + tone(0.6) + silence(0.45) + tone(0.5) + silence(1.2), frames)
    pauses = [ev for _, ev in events if isinstance(ev, SpeechPaused)]
    utts = [ev for _, ev in events if isinstance(ev, Utterance)]
    assert len(pauses) == 2 and len(utts) == 1  # one turn; a pause inside it, then the real end
    assert pauses[0].pcm != utts[0].pcm and pauses[1].pcm == utts[0].pcm


async def test_speculative_decode_is_used_for_the_same_audio_and_dropped_otherwise(
    whisper: Recognizer, espeak_8k: Callable[[str], bytes], silence, frames
) -> None:
    ep = Endpointer()
    ep.speculate = True
    audio = silence(0.4) + espeak_8k("I would like to block my card.") + silence(1.0)
    evs = [ev for _, ev in events_of(ep, audio, frames)]
    pause = next(ev for ev in evs if isinstance(ev, SpeechPaused))
    utt = next(ev for ev in evs if isinstance(ev, Utterance))
    with ThreadPoolExecutor(max_workers=2) as pool:
        spec = SpeculativeDecoder(whisper, pool, "test-call")
        spec.paused(pause, "en")
        fut = spec.take(utt, "en")
        assert fut is not None and spec.used == 1
        tr = await asyncio.wait_for(fut, 30)
        assert "card" in tr.text.lower(), tr.text
        # Other audio (the caller spoke again) or another language: nothing to hand back.
        spec.paused(pause, "en")
        assert spec.take(Utterance(utt.pcm + silence(0.1), 8000, utt.duration_s + 0.1), "en") is None
        assert spec.wasted == 1
        spec.paused(pause, "ko")  # no model for it: no decode started
        assert spec.started == 2 and spec.take(utt, "ko") is None
