"""Supervisor listen-in (console/listen.py over hotline/listen_live.py): a real SIP call between the test
caller and an auto-answering phone, its caller leg tapped and mixed, streamed over the WebSocket to a
supervisor; agents refused; audited; the stream ends with the call and the tap is removed."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import aiohttp
import numpy as np
import pytest

from console.context import CONSOLE
from console.listen import CHUNK_BYTES, QUEUE_CHUNKS, _Feed
from hotline.listen_live import MAX_BEHIND, FrameMixer, SessionAudio
from telephony import AgentPhone, TestCaller

from .conftest import Console

pytestmark = pytest.mark.timeout(60)


def tone(seconds: float, hz: float = 440.0, amplitude: int = 8000) -> bytes:
    n = int(8000 * seconds)
    return (np.sin(np.arange(n) * 2 * np.pi * hz / 8000) * amplitude).astype("<i2").tobytes()


def rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


async def handshake_status(console: Console, path: str, **kwargs: Any) -> int:
    """The HTTP status a WebSocket handshake to `path` was refused with (fails if it was accepted)."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await console.client.ws_connect(path, **kwargs)
    return refused.value.status


async def refusals_then_supervisor(console: Console, base: str, call_id: str) -> None:
    """An agent gets 403 at `base/call_id`; then, logged in as the supervisor, an unknown call 404 and a
    foreign origin 403 (the caller goes on as the supervisor)."""
    assert (await console.login("anna")).status == 302
    assert await handshake_status(console, f"{base}/{call_id}") == 403
    await console.client.post("/logout", headers={"X-CSRF-Token": await console.csrf()})
    assert (await console.login("sam")).status == 302
    assert await handshake_status(console, f"{base}/no-such-call") == 404
    assert await handshake_status(console, f"{base}/{call_id}", headers={"Origin": "http://evil.example"}) == 403


def test_mixer_is_clocked_by_outgoing_frames_and_sums_both_sides() -> None:
    out: list[bytes] = []
    mixer = FrameMixer(out.append)
    caller = np.full(160, 1000, dtype="<i2").tobytes()
    system = np.full(160, 30000, dtype="<i2").tobytes()
    mixer.tap("in", caller)
    assert out == []  # nothing until the leg sends its next frame
    mixer.tap("out", system)
    assert np.frombuffer(out[0], dtype="<i2").tolist() == [31000] * 160
    mixer.tap("in", system)
    mixer.tap("out", system)
    assert set(np.frombuffer(out[1], dtype="<i2").tolist()) == {32767}  # clipped, not wrapped
    mixer.tap("out", caller)  # no caller frame waiting: the other side alone
    assert np.frombuffer(out[2], dtype="<i2").tolist() == [1000] * 160
    for _ in range(MAX_BEHIND * 3):
        mixer.tap("in", caller)
    for _ in range(MAX_BEHIND * 3):
        mixer.tap("out", system)
    assert len(out) == 3 + MAX_BEHIND * 3  # one frame out per tick; the caller backlog was capped


def test_a_slow_listener_loses_audio_but_not_the_end_of_the_call() -> None:
    feed = _Feed()
    for _ in range(QUEUE_CHUNKS + 5):
        feed.audio(b"\x01\x00" * (CHUNK_BYTES // 4))  # half a chunk each
        feed.audio(b"\x01\x00" * (CHUNK_BYTES // 4))
    assert feed.queue.qsize() == QUEUE_CHUNKS and feed.dropped == 5
    feed.end()
    items = [feed.queue.get_nowait() for _ in range(feed.queue.qsize())]
    assert items[-1] is None and all(len(c) == CHUNK_BYTES for c in items[:-1] if c) and feed.dropped == 6


async def test_supervisor_hears_a_real_call_agents_cannot_and_it_is_audited(console: Console) -> None:
    async with AgentPhone(port=0, play_pcm=tone(1.0), repeat=True, gap_s=0.1) as phone, TestCaller() as caller:
        leg = await caller.call(f"sip:agent@127.0.0.1:{phone.port}", from_user="13800138000")
        taps_before = len(leg._taps)
        app_console = console.client.server.app[CONSOLE]
        app_console.listen = SessionAudio(SimpleNamespace(sessions=[SimpleNamespace(call_id="live-1", leg=leg)]))

        await refusals_then_supervisor(console, "/ws/listen", "live-1")
        ws = await console.client.ws_connect("/ws/listen/live-1")
        head = await ws.receive_json(timeout=5)
        assert head == {"call_id": "live-1", "sample_rate": 8000, "format": "s16le", "channels": 1}
        audio = b""
        while len(audio) < 16000 * 2:  # two seconds
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.BINARY and len(msg.data) == CHUNK_BYTES
            audio += msg.data
        assert len(leg._taps) == taps_before + 1
        assert rms(audio) > 1000, rms(audio)  # the phone's tone (G.711 round trip), not silence

        await leg.hangup()
        ended = None
        with contextlib.suppress(asyncio.TimeoutError):
            while ended is None:
                msg = await ws.receive(timeout=5)
                if msg.type is aiohttp.WSMsgType.TEXT:
                    ended = msg.json()
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
        assert ended == {"ended": True}
        await ws.close()
        for _ in range(200):
            if len(leg._taps) == taps_before and app_console.listeners == 0:
                break
            await asyncio.sleep(0.05)
        assert len(leg._taps) == taps_before and app_console.listeners == 0
        for _ in range(200):
            actions = [(a.user, a.action, a.target) for a in console.users.audit_log(50)]
            if ("sam", "listen_end", "live-1") in actions:
                break
            await asyncio.sleep(0.05)
        assert ("sam", "listen_in", "live-1") in actions and ("sam", "listen_end", "live-1") in actions
        assert not any(a[0] == "anna" and a[1].startswith("listen") for a in actions)
