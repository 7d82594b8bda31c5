"""Listen-in across workers (hotline/listen_relay.py) on a real mosquitto: worker B taps a real SIP call (the
test caller and an agent phone saying a tone), worker A's relay, told of the call by B's event bus, gets its
audio over MQTT; stopping removes B's tap, the end of the call reaches A, a listener that vanishes without a
word is dropped after the idle time. Also measures the bandwidth per listened call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from support.mosquitto import Mosquitto

from hotline.events import CallEnded, CallStarted
from hotline.listen_live import SessionAudio
from hotline.listen_relay import CHUNK_BYTES, ListenRelay
from hotline.mqtt_bus import MqttEventBus
from telephony import AgentPhone, TestCaller
from telephony.testcaller import tone

pytestmark = pytest.mark.timeout(60)


def rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


async def _until(check: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_console_on_worker_a_hears_a_call_on_worker_b(mosquitto: Mosquitto) -> None:
    bus_a = MqttEventBus("127.0.0.1", mosquitto.port, node="worker-a")
    bus_b = MqttEventBus("127.0.0.1", mosquitto.port, node="worker-b")
    async with AgentPhone(port=0, play_pcm=tone(440, 1.0), repeat=True, gap_s=0.0) as phone, \
            TestCaller() as caller:
        leg = await caller.call(f"sip:agent@127.0.0.1:{phone.port}", from_user="13800138000")
        taps = len(leg._taps)
        worker_b = SessionAudio(SimpleNamespace(sessions=[SimpleNamespace(call_id="call-b", leg=leg)]))
        relay_a = ListenRelay(SessionAudio(SimpleNamespace(sessions=[])), "127.0.0.1", mosquitto.port,
                              node="worker-a", keepalive_s=0.3, idle_s=1.5)
        relay_b = ListenRelay(worker_b, "127.0.0.1", mosquitto.port, node="worker-b", keepalive_s=0.3, idle_s=1.5)
        for part in (bus_a, bus_b, relay_a, relay_b):
            await part.start()
        try:
            for part in (bus_a, bus_b, relay_a, relay_b):
                await part.connected(10)
            unsubscribe = bus_a.subscribe(relay_a.on_event)
            assert relay_a.open("call-b", lambda pcm: None, lambda: None) is None  # not known yet: the console 404s
            bus_b.publish(CallStarted("call-b", "13800138000", "95555"))
            await _until(lambda: "call-b" in relay_a.remote_calls, "worker A to learn of the call")

            # Listen for two seconds: the tone arrives in 100 ms chunks at real-time rate.
            chunks: list[bytes] = []
            ended: list[bool] = []
            sent0, msgs0 = relay_b.sent_bytes, relay_b.sent_messages
            stop = relay_a.open("call-b", chunks.append, lambda: ended.append(True))
            assert stop is not None
            await _until(lambda: chunks, "the first chunk at worker A")
            t0, n0 = time.monotonic(), len(chunks)
            await _until(lambda: len(chunks) - n0 >= 30, "3 s of audio at worker A", 10)
            elapsed = time.monotonic() - t0
            audio = b"".join(chunks)
            assert all(len(c) == CHUNK_BYTES for c in chunks)
            assert rms(audio) > 1000, rms(audio)  # the phone's tone, not silence
            assert 0.7 < (len(chunks) - n0) * 0.1 / elapsed < 1.4  # real time, not bursts or a backlog
            per_s = (relay_b.sent_bytes - sent0) / (relay_b.sent_messages - msgs0) * 10
            print(f"worker B sends {per_s:.0f} bytes/s (payload + topic) per listened call")
            assert 16000 <= per_s < 17000
            assert len(leg._taps) == taps + 1
            stop()
            await _until(lambda: len(leg._taps) == taps and not relay_b._served, "worker B's tap removed", 5)

            # The call ends while worker A listens: A hears the end; B's tap goes.
            ended.clear()
            assert relay_a.open("call-b", chunks.append, lambda: ended.append(True)) is not None
            await _until(lambda: len(leg._taps) == taps + 1, "listening again")
            await leg.hangup()
            bus_b.publish(CallEnded("call-b", "caller_hangup", "bye", 3.0))
            await _until(lambda: ended == [True], "the end of the call at worker A")
            await _until(lambda: len(leg._taps) == taps and not relay_b._served, "worker B's tap removed after the end")
            await _until(lambda: "call-b" not in relay_a.remote_calls, "the call forgotten at worker A")
            unsubscribe()
        finally:
            for part in (relay_a, relay_b, bus_a, bus_b):
                await part.stop()


async def test_a_listener_that_vanishes_is_dropped_after_the_idle_time(mosquitto: Mosquitto) -> None:
    async with AgentPhone(port=0, play_pcm=tone(440, 1.0), repeat=True, gap_s=0.0) as phone, \
            TestCaller() as caller:
        leg = await caller.call(f"sip:agent@127.0.0.1:{phone.port}", from_user="13800138000")
        taps = len(leg._taps)
        worker_b = SessionAudio(SimpleNamespace(sessions=[SimpleNamespace(call_id="call-b", leg=leg)]))
        relay_a = ListenRelay(SessionAudio(SimpleNamespace(sessions=[])), "127.0.0.1", mosquitto.port,
                              node="worker-a", keepalive_s=0.3, idle_s=1.0, answer_s=1.0)
        relay_b = ListenRelay(worker_b, "127.0.0.1", mosquitto.port, node="worker-b", keepalive_s=0.3, idle_s=1.0)
        await relay_a.start()
        await relay_b.start()
        try:
            await relay_a.connected(10)
            await relay_b.connected(10)
            relay_a.on_event(CallStarted("call-b", "13800138000", "95555"))
            relay_a.on_event(CallStarted("ghost", "13800138000", "95555"))  # its worker died before call.ended
            ghost_ended: list[float] = []
            t_ghost = time.monotonic()
            assert relay_a.open("ghost", lambda pcm: None, lambda: ghost_ended.append(time.monotonic())) is not None
            chunks: list[bytes] = []
            assert relay_a.open("call-b", chunks.append, lambda: None) is not None
            await _until(lambda: len(chunks) >= 3, "audio at worker A")
            await _until(lambda: ghost_ended, "the listen to a call nobody streams to end", 5)
            assert 0.9 < ghost_ended[0] - t_ghost < 3.0 and "ghost" not in relay_a.remote_calls
            assert relay_a._task is not None
            relay_a._task.cancel()  # worker A dies: no stop, no keepalive
            await _until(lambda: len(leg._taps) == taps + 1, "still tapped at first", 1)
            t0 = time.monotonic()
            await _until(lambda: len(leg._taps) == taps and not relay_b._served, "worker B to give up", 5)
            assert 0.7 < time.monotonic() - t0 < 3.0
        finally:
            await relay_a.stop()
            await relay_b.stop()


async def test_hotline_serve_runs_the_relay_with_its_console_when_events_go_over_mqtt(mosquitto: Mosquitto,
                                                                                     tmp_path: Path) -> None:
    from aiohttp import web

    from hotline.bus import EventBus
    from hotline.listen_relay import listen_source
    from hotline.settings import DEFAULT_CONFIG, load_settings

    alone = SimpleNamespace(settings=load_settings(DEFAULT_CONFIG, data_dir=str(tmp_path)), sessions=[])
    source, install = listen_source(alone)
    assert isinstance(source, SessionAudio) and install is None  # one worker: no relay, no broker needed

    settings = load_settings(DEFAULT_CONFIG, data_dir=str(tmp_path), node_name="worker-a",
                             events={"backend": "mqtt", "host": "127.0.0.1", "port": mosquitto.port})
    bus = EventBus()
    source, install = listen_source(SimpleNamespace(settings=settings, sessions=[], bus=bus))
    assert isinstance(source, ListenRelay) and install is not None
    app = web.Application()
    install(app)
    runner = web.AppRunner(app)
    await runner.setup()  # the console's start-up starts the relay and subscribes it to the bus
    try:
        await source.connected(10)
        bus.publish(CallStarted("call-x", "13800138000", "95555"))
        assert "call-x" in source.remote_calls
    finally:
        await runner.cleanup()
    assert source._task is None and not bus._listeners


async def test_a_supervisor_on_worker_a_whispers_to_the_agent_of_a_call_on_worker_b(mosquitto: Mosquitto) -> None:
    """Whisper over MQTT: the agent's phone (here the far end of worker B's leg) hears the supervisor's
    1 kHz tone fed at worker A; refusals arrive as the end of the whisper with B's reason; bad messages
    are dropped; stopping removes B's mix at once; a worker A that dies is dropped after the idle time; the
    end of the agent's leg reaches A."""
    from support.agent_legs import send_paced, tone_share

    from hotline.listen_relay import PREFIX, RemoteWhisper

    async with AgentPhone(port=0, play_pcm=tone(440, 1.0), repeat=True, gap_s=0.0) as phone, \
            TestCaller() as caller:
        leg = await caller.call(f"sip:agent@127.0.0.1:{phone.port}", from_user="13800138000")
        session = SimpleNamespace(call_id="call-b", leg=leg, agent_leg=None)
        relay_b = ListenRelay(SessionAudio(SimpleNamespace(sessions=[session])), "127.0.0.1", mosquitto.port,
                              node="worker-b", keepalive_s=0.3, idle_s=1.0)
        relays = [ListenRelay(SessionAudio(SimpleNamespace(sessions=[])), "127.0.0.1", mosquitto.port,
                              node=f"worker-{n}", keepalive_s=0.3, idle_s=1.0, answer_s=1.5) for n in "ac"]
        relay_a, relay_c = relays
        for relay in (relay_b, *relays):
            await relay.start()
        try:
            for relay in (relay_b, *relays):
                await relay.connected(10)
                relay.on_event(CallStarted("call-b", "13800138000", "95555"))
            assert relay_a.whisper("elsewhere", lambda: None) is None  # unknown call: the console 404s

            # No agent on the call yet: B refuses, and A's whisper ends with B's reason.
            ended: list[str] = []
            refused = relay_a.whisper("call-b", lambda: ended.append("no agent"))
            assert isinstance(refused, RemoteWhisper)
            await _until(lambda: ended, "B's refusal at A", 5)
            assert refused.end_reason is not None and "no agent" in refused.end_reason

            # With the agent's leg: the tone fed at A reaches the agent's phone.
            session.agent_leg = leg
            agent_side = phone.legs[-1]
            whisper = relay_a.whisper("call-b", lambda: ended.append("first"))
            assert isinstance(whisper, RemoteWhisper)
            await _until(lambda: whisper.accepted and relay_b._whisper_served, "B to take the whisper", 5)
            second = relay_c.whisper("call-b", lambda: ended.append("second"))  # one whisper per call
            await _until(lambda: "second" in ended, "the second whisper refused", 5)
            assert second.end_reason is not None and "already whispering" in second.end_reason
            # hostile messages on the bus: a malformed request, an oversized and an odd-length chunk
            relay_c._publish(f"{PREFIX}/whisper/call-b", b"{not json", 1)
            relay_c._publish(f"{PREFIX}/wdata/{whisper.stream}", b"\x01" * 5000, 0)
            relay_c._publish(f"{PREFIX}/wdata/{whisper.stream}", b"\x01" * 321, 0)
            start = len(phone.heard_pcm(agent_side))
            sent0 = relay_a.sent_bytes
            await send_paced(whisper.feed, tone(1000, 1.5))
            per_s = (relay_a.sent_bytes - sent0) / 1.5  # whisper audio and the keepalive requests
            print(f"worker A sends {per_s:.0f} bytes/s (payload + topic) per whisper in 20 ms messages")
            assert 16000 <= per_s < 20000
            await asyncio.sleep(0.3)
            heard = phone.heard_pcm(agent_side)[start:]
            share = tone_share(heard, 1000)
            print(f"whisper over MQTT: 1 kHz share of what the agent heard {share:.2f}")
            assert share > 0.3, share
            whisper.close()
            await _until(lambda: not relay_b._whisper_served and leg.mix_in is None, "B's mix removed", 5)
            assert "first" not in ended  # closed by A, not ended by B

            # Worker A dies mid-whisper: B drops the whisper after its idle time.
            again = relay_a.whisper("call-b", lambda: None)
            await _until(lambda: again.accepted and leg.mix_in is not None, "whispering again", 5)
            assert relay_a._task is not None
            relay_a._task.cancel()
            t_dead = time.monotonic()
            await _until(lambda: not relay_b._whisper_served and leg.mix_in is None, "B to give up", 5)
            assert 0.7 < time.monotonic() - t_dead < 3.0

            # The agent's leg ends while worker C whispers: C hears why.
            last = relay_c.whisper("call-b", lambda: ended.append("last"))
            await _until(lambda: last.accepted, "C whispering", 5)
            await leg.hangup()
            await _until(lambda: "last" in ended, "the end of the agent's leg at C", 5)
            assert last.end_reason == "the call or the agent's leg ended"
        finally:
            for relay in (*relays, relay_b):
                await relay.stop()
