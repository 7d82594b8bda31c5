"""Turn latency in a real call: an in-process Hotline (real SIP/RTP on loopback, endpointer, whisper,
the bank flow, espeak-ng) and a TestCaller that asks a question over the greeting. The session times
the turn from the endpointer's decision to the reply's first RTP frame (hotline/turn_latency.py) and
publishes it: a log line with the call id, a TurnLatency event, the Prometheus histogram."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from asr import resample
from console.metrics import HotlineMetrics
from hotline.events import Event, TurnLatency
from hotline.server import Hotline
from hotline.settings import DEFAULT_CONFIG, load_settings
from telephony import TestCaller
from tts.espeak_backend import EspeakSynthesizer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, "<i2").astype(np.float32)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


async def test_a_spoken_question_is_timed_from_the_endpoint_to_the_first_frame_of_the_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = load_settings(
        DEFAULT_CONFIG, sip={"host": "127.0.0.1", "port": 0, "max_loop_lag_ms": 10000}, data_dir=str(tmp_path),
        queues=[{"name": "general", "agents": []}], web={"enabled": False},
    )
    synth = EspeakSynthesizer(speed=150)
    question = resample(synth.synthesize("What are your opening hours?", "en"), synth.sample_rate, 8000, gain=0.89)
    h = Hotline(settings)
    await h.start()
    try:
        assert h.deps is not None
        seen: list[Event] = []
        metrics = HotlineMetrics()
        h.deps.bus.subscribe(seen.append)
        h.deps.bus.subscribe(metrics.observe)
        async with TestCaller() as tc:
            leg = await tc.call(f"sip:hotline@127.0.0.1:{h.port}")
            loud: list[float] = []
            leg.add_tap(lambda d, pcm: loud.append(time.monotonic()) if d == "in" and _rms(pcm) > 300 else None)
            for _ in range(100):  # the greeting starts
                if loud:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            await tc.play(leg, question)  # over the greeting: it barges in, then the turn ends
            sent = time.monotonic()
            for _ in range(150):
                if any(isinstance(e, TurnLatency) for e in seen):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            await leg.hangup()
    finally:
        await h.stop()
    turns = [e for e in seen if isinstance(e, TurnLatency)]
    assert len(turns) == 1, [e.topic for e in seen]
    turn = turns[0]
    print(f"turn latency {turn.latency_s * 1000:.0f} ms, recognition {turn.recognition_s * 1000:.0f} ms")
    assert 0 < turn.latency_s < 5.0 and 0 <= turn.recognition_s <= turn.latency_s
    # The caller heard the answer: loud audio after its question, at least the endpointer's pause later.
    assert any(t > sent + 0.3 for t in loud)
    logged = [r.getMessage() for r in caplog.records if "turn latency" in r.getMessage()]
    assert len(logged) == 1 and turn.call_id in logged[0], logged
    # The turn's recognition started at the pause, before the endpoint (asr/speculative.py).
    assert any("speculative decode used" in r.getMessage() and turn.call_id in r.getMessage()
               for r in caplog.records)
    text = metrics.exposition().decode()
    assert "hotline_turn_latency_seconds_count 1.0" in text, text


@pytest.mark.timeout(10)
def test_timer_waits_for_the_replys_own_first_frame_and_forgets_turns_without_a_reply() -> None:
    from hotline.turn_latency import TurnTimer

    got: list[TurnLatency] = []
    timer = TurnTimer("call-1", got.append)
    t0 = time.monotonic()
    timer.heard(t0 - 0.2, t0 - 0.1)
    timer.reply_queued(queued_ms=40, render_started=t0 - 0.05)  # behind 2 frames still queued
    timer.reply_queued(queued_ms=400)  # a second prompt of the same reply: ignored
    timer.on_frame("in", b"")
    timer.on_frame("out", b"")
    timer.on_frame("out", b"")
    assert got == []
    timer.on_frame("out", b"")  # the reply's first frame
    assert len(got) == 1 and got[0].call_id == "call-1" and 0.2 <= got[0].latency_s < 1.0
    assert got[0].recognition_s == pytest.approx(0.1, abs=0.01)
    timer.on_frame("out", b"")
    assert len(got) == 1 and timer.turns == 1
    timer.heard(time.monotonic())  # a turn whose reply queued nothing (the dialog only listens) ...
    timer.listening()
    timer.reply_queued(0)  # ... then a re-prompt after no input: not a turn
    timer.on_frame("out", b"")
    assert len(got) == 1
