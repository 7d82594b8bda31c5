"""Endpointer and VAD on synthetic signals: tone bursts stand in for speech, zeros for silence."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from asr import Endpointer, SpeechStarted, Utterance, WebRtcVad

Frames = Callable[[bytes], Iterator[bytes]]


def run(ep: Endpointer, audio: bytes, frames: Frames) -> list[tuple[int, SpeechStarted | Utterance]]:
    """Feeds 20 ms frames; returns (frame index, event) pairs."""
    out: list[tuple[int, SpeechStarted | Utterance]] = []
    for i, frame in enumerate(frames(audio)):
        out += [(i, ev) for ev in ep.feed(frame)]
    return out


def test_vad_declares_rate_and_rejects_bad_frames() -> None:
    vad = WebRtcVad()
    assert vad.sample_rate == 8000 and vad.frame_ms == 20
    assert vad.is_speech(b"\x00" * 320) is False
    with pytest.raises(ValueError, match="10, 20 or 30 ms"):
        vad.is_speech(b"\x00" * 100)
    with pytest.raises(ValueError, match="sample rates"):
        WebRtcVad(sample_rate=11025)
    with pytest.raises(ValueError, match="aggressiveness"):
        WebRtcVad(aggressiveness=5)


def test_endpointer_rejects_vad_at_other_rate() -> None:
    with pytest.raises(ValueError, match="16000 Hz"):
        Endpointer(sample_rate=8000, vad=WebRtcVad(sample_rate=16000))


def test_onset_fires_within_100ms_and_utterance_after_silence(tone, silence, frames) -> None:
    ep = Endpointer()
    events = run(ep, silence(1.0) + tone(0.6) + silence(1.0), frames)
    kinds = [type(ev) for _, ev in events]
    assert kinds == [SpeechStarted, Utterance]
    onset_frame = events[0][0]
    assert 50 + 2 <= onset_frame <= 50 + 5, onset_frame  # speech starts at frame 50: 60-100 ms later
    end_frame, utt = events[1]
    assert isinstance(utt, Utterance)
    # ended 700 ms (35 frames) after the tone stopped at frame 80 (+ webrtcvad hangover)
    assert 80 + 34 <= end_frame <= 80 + 34 + 8, end_frame  # frame 80 is the first silent one
    assert utt.sample_rate == 8000
    assert utt.duration_s == pytest.approx(len(utt.pcm) / 2 / 8000)


def test_pre_roll_is_included(tone, silence, frames) -> None:
    ep = Endpointer(pre_roll_ms=300)
    speech = tone(0.6)
    (_, _), (_, utt) = run(ep, silence(1.0) + speech + silence(1.0), frames)
    assert isinstance(utt, Utterance)
    start = utt.pcm.find(speech[:320])
    assert start == 300 * 16  # 300 ms of pre-roll (16 bytes per ms at 8 kHz) before the first speech frame
    assert speech in utt.pcm  # the whole burst survives
    assert utt.duration_s <= 0.3 + 0.6 + 0.3 + 0.15  # pre-roll + speech + kept tail (+ hangover)


def test_single_click_does_not_fire(silence, frames) -> None:
    click = b"\x00\x70" * 40  # 5 ms at ~28000
    ep = Endpointer()
    assert run(ep, silence(0.5) + click + silence(1.5), frames) == []
    # many clicks, 200 ms apart
    assert run(ep, (click + silence(0.2)) * 10 + silence(1.0), frames) == []


def test_short_noise_burst_fires_onset_but_no_utterance(tone, silence, frames) -> None:
    ep = Endpointer(min_speech_ms=200)
    events = run(ep, silence(0.5) + tone(0.1) + silence(1.5), frames)
    assert [type(ev) for _, ev in events] == [SpeechStarted]  # 100 ms + hangover < 200 ms: dropped as noise


def test_pause_shorter_than_silence_ms_stays_one_utterance(tone, silence, frames) -> None:
    ep = Endpointer()
    events = run(ep, silence(0.5) + tone(0.4) + silence(0.4) + tone(0.4) + silence(1.0), frames)
    assert [type(ev) for _, ev in events] == [SpeechStarted, Utterance]


def test_digit_mode_waits_longer(tone, silence, frames) -> None:
    audio = silence(0.5) + tone(0.4) + silence(1.0) + tone(0.4) + silence(2.0)
    normal = run(Endpointer(), audio, frames)
    assert [type(ev) for _, ev in normal] == [SpeechStarted, Utterance, SpeechStarted, Utterance]
    ep = Endpointer()
    ep.set_digit_mode(True)
    assert ep.digit_mode
    digits = run(ep, audio, frames)
    assert [type(ev) for _, ev in digits] == [SpeechStarted, Utterance]  # a 1 s pause between digits is fine
    _, utt = digits[1]
    assert isinstance(utt, Utterance) and utt.duration_s > 1.8
    ep.set_digit_mode(False)
    assert not ep.digit_mode


def test_max_utterance_cuts(tone, silence, frames) -> None:
    ep = Endpointer(max_utterance_s=2.0)
    events = run(ep, silence(0.3) + tone(5.0) + silence(1.0), frames)
    utts = [ev for _, ev in events if isinstance(ev, Utterance)]
    assert len(utts) >= 2
    assert utts[0].truncated and utts[0].duration_s == pytest.approx(2.0, abs=0.02)
    assert sum(u.duration_s for u in utts) >= 4.9


def test_reset_forgets_partial_utterance(tone, silence, frames) -> None:
    ep = Endpointer()
    assert [type(ev) for _, ev in run(ep, tone(0.5), frames)] == [SpeechStarted]
    assert ep.in_speech
    ep.reset()
    assert not ep.in_speech
    assert run(ep, silence(1.0), frames) == []


def test_flush_ends_pending_utterance(tone, frames) -> None:
    ep = Endpointer()
    run(ep, tone(0.5), frames)
    (utt,) = ep.flush()
    assert utt.duration_s >= 0.5
    assert ep.flush() == []


def test_feed_accepts_odd_sized_chunks_and_rejects_bad_input(tone, silence) -> None:
    ep = Endpointer()
    audio = silence(0.3) + tone(0.5) + silence(1.0)
    events = []
    for i in range(0, len(audio), 250):  # 250-byte chunks: not frame aligned
        events += ep.feed(audio[i : i + 250])
    assert [type(ev) for ev in events] == [SpeechStarted, Utterance]
    with pytest.raises(ValueError, match="odd byte count"):
        ep.feed(b"\x00" * 321)
    with pytest.raises(ValueError, match="bytes"):
        ep.feed("not audio")  # type: ignore[arg-type]


def test_endpointer_is_fast(tone, silence, frames) -> None:
    import time

    ep = Endpointer()
    chunks = list(frames((silence(0.5) + tone(0.5)) * 50))  # 50 s of audio, 2500 frames
    t = time.perf_counter()
    for f in chunks:
        ep.feed(f)
    per_frame_us = (time.perf_counter() - t) / len(chunks) * 1e6
    assert per_frame_us < 200, per_frame_us  # budget: a small fraction of the 20 ms frame
