"""Supervisor whisper (console/listen.py `/ws/whisper`, hotline/whisper_live.py, `CallLeg.mix_in`): a real SIP
call from the test caller to an in-process "hotline" endpoint that dials an agent phone and bridges the two
legs (telephony.bridge, as the session does). The supervisor's audio reaches the agent's phone and never the
caller; bad clients get clear close codes; audited; chromium with a fake microphone clicks Whisper."""

from __future__ import annotations

import asyncio
import contextlib
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import numpy as np
import pytest
from support.agent_legs import send_paced
from support.mosquitto import Mosquitto, running_broker

from console.context import CONSOLE
from console.listen import CLOSE_POLICY, CLOSE_UNSUPPORTED, WHISPER_MAX_MSG
from hotline.events import AgentAssigned, CallStarted
from hotline.listen_live import SessionAudio
from hotline.whisper_live import FRAME_BYTES, WhisperMix
from telephony import AgentPhone, CallLeg, SipEndpoint, TestCaller, bridge
from telephony.testcaller import tone

from .conftest import Console
from .test_listen import handshake_status, refusals_then_supervisor

pytestmark = pytest.mark.timeout(90)

WHISPER_HZ = 1000.0  # the supervisor's tone
AGENT_HZ = 440.0  # the agent phone's voice, which the caller does hear


def band_rms(pcm: bytes, hz: float, width: float = 60.0) -> float:
    """RMS of the audio within `width` Hz of `hz` (FFT), 0.0 for no audio."""
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    if x.size < 160:
        return 0.0
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.size, 1 / 8000)
    keep = np.abs(freqs - hz) <= width
    return float(np.sqrt(2 * np.sum(np.abs(spec[keep]) ** 2)) / x.size)


def test_mix_waits_for_its_prefill_bounds_its_backlog_and_refills_after_running_dry() -> None:
    mix = WhisperMix(prefill_ms=60, max_buffer_ms=200)
    mix.feed(b"\x01\x00" * 160)  # 20 ms
    assert mix.pull() is None  # less than the prefill: nothing yet
    mix.feed(b"\x01\x00" * 320)  # 60 ms now
    frames = [mix.pull() for _ in range(4)]
    assert [len(f) if f else 0 for f in frames] == [FRAME_BYTES] * 3 + [0]  # ran dry after 3 frames
    mix.feed(b"\x02\x00" * 160)
    assert mix.pull() is None  # waiting for the prefill again, not crumbs
    mix.feed(b"\x03\x00" * 8000)  # a second at once: only the newest 200 ms are kept
    assert mix.dropped == 16000 + 320 - 3200 and mix.received == 320 * 4 + 16000
    assert mix.pull() == b"\x03\x00" * 160


@dataclass
class Bridged:
    caller: TestCaller
    phone: AgentPhone
    caller_leg: CallLeg  # the test caller's own leg
    hotline_leg: CallLeg  # the hotline's leg to the caller
    agent_leg: CallLeg  # the hotline's leg to the agent's phone
    session: SimpleNamespace  # what SessionAudio reads: call_id, leg, agent_leg


@contextlib.asynccontextmanager
async def bridged_call(call_id: str) -> AsyncIterator[Bridged]:
    """caller → hotline endpoint → dials the agent phone (which keeps saying a 440 Hz tone) → bridge."""
    legs: asyncio.Queue[tuple[CallLeg, CallLeg]] = asyncio.Queue()
    async with AgentPhone(port=0, play_pcm=tone(AGENT_HZ, 0.5), repeat=True, gap_s=0.0) as phone, \
            TestCaller() as caller:
        hotline = SipEndpoint("127.0.0.1", 0, rtp_ports=(30000, 31000))

        async def on_call(leg: CallLeg) -> None:
            agent = await hotline.dial(f"sip:anna@127.0.0.1:{phone.port}", timeout=10)
            await legs.put((leg, agent))
            try:
                await bridge(leg, agent)
            finally:
                await agent.hangup()

        hotline.on_call = on_call
        await hotline.start()
        try:
            caller_leg = await caller.call(f"sip:95555@127.0.0.1:{hotline.port}", from_user="13800138000")
            hotline_leg, agent_leg = await asyncio.wait_for(legs.get(), 10)
            session = SimpleNamespace(call_id=call_id, leg=hotline_leg, agent_leg=agent_leg)
            yield Bridged(caller, phone, caller_leg, hotline_leg, agent_leg, session)
        finally:
            await hotline.stop()


async def _wait(check: Any, what: str, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _audit(console: Console) -> list[tuple[str, str, str, str]]:
    return [(a.user, a.action, a.target, a.detail or "") for a in console.users.audit_log(50)]


async def _closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            return ws.close_code


async def test_whisper_reaches_the_agent_only_bad_clients_are_closed_and_it_is_audited(console: Console) -> None:
    async with bridged_call("live-1") as call:
        hotline = SimpleNamespace(sessions=[call.session])
        app_console = console.client.server.app[CONSOLE]
        app_console.listen = SessionAudio(hotline)

        await refusals_then_supervisor(console, "/ws/whisper", "live-1")
        call.session.agent_leg = None  # still in the IVR or the queue: nobody to whisper to
        assert await handshake_status(console, "/ws/whisper/live-1") == 409
        call.session.agent_leg = call.agent_leg

        # Bad clients: a text message, an odd length, an oversized message, a flood.
        for send, code in [("text", CLOSE_UNSUPPORTED), (b"\x00" * 3, CLOSE_UNSUPPORTED),
                           (b"\x00" * (WHISPER_MAX_MSG + 2), 1009)]:
            ws = await console.client.ws_connect("/ws/whisper/live-1")
            head = await ws.receive_json(timeout=5)
            assert head["sample_rate"] == 8000 and head["max_message_bytes"] == WHISPER_MAX_MSG
            await (ws.send_str(send) if isinstance(send, str) else ws.send_bytes(send))
            assert await _closed_with(ws) == code, send[:8]
            await _wait(lambda: call.agent_leg.mix_in is None, "the mix-in removed")
        ws = await console.client.ws_connect("/ws/whisper/live-1")
        await ws.receive_json(timeout=5)
        for _ in range(40):  # 8 s of audio at once
            await ws.send_bytes(b"\x00" * WHISPER_MAX_MSG)
        assert await _closed_with(ws) == CLOSE_POLICY
        await _wait(lambda: call.agent_leg.mix_in is None and app_console.listeners == 0, "the flood closed")

        # A well-behaved whisper: 2 s of a 1 kHz tone in 20 ms messages, paced.
        heard_agent, heard_caller = len(call.phone.heard_pcm()), len(call.caller.heard_pcm(call.caller_leg))
        ws = await console.client.ws_connect("/ws/whisper/live-1")
        await ws.receive_json(timeout=5)
        assert await handshake_status(console, "/ws/whisper/live-1") == 409  # one whisper per call
        await send_paced(ws.send_bytes, tone(WHISPER_HZ, 2.0))
        await asyncio.sleep(0.5)  # the last frames travel
        await ws.close()
        await _wait(lambda: call.agent_leg.mix_in is None and app_console.listeners == 0, "the whisper closed")
        agent_heard = call.phone.heard_pcm()[heard_agent:]
        caller_heard = call.caller.heard_pcm(call.caller_leg)[heard_caller:]
        assert len(agent_heard) > 16000 * 2 and len(caller_heard) > 16000 * 2
        assert band_rms(agent_heard, WHISPER_HZ) > 2000, band_rms(agent_heard, WHISPER_HZ)  # ~8000/√2 sent
        assert band_rms(caller_heard, WHISPER_HZ) < 50, band_rms(caller_heard, WHISPER_HZ)
        assert band_rms(caller_heard, AGENT_HZ) > 1000  # while the caller does hear the agent
        await call.caller_leg.hangup()

    for _ in range(100):
        audit = _audit(console)
        if sum(1 for a in audit if a[1] == "whisper_end") == 5:
            break
        await asyncio.sleep(0.05)
    starts = [a for a in audit if a[1] == "whisper_start"]
    ends = [a for a in audit if a[1] == "whisper_end"]
    assert len(starts) == 5 and len(ends) == 5 and all(a[0] == "sam" and a[2] == "live-1" for a in starts + ends)
    details = " | ".join(a[3] for a in ends)
    for why in ("text message refused", "odd length", "protocol error", "flooding", "closed by the page"):
        assert why in details, details
    assert "32000 bytes" in details  # the good whisper's 2 s were counted
    assert not any(a[0] == "anna" and a[1].startswith("whisper") for a in audit)


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    yield from running_broker()


async def test_a_supervisor_whispers_through_her_worker_into_a_call_on_another_worker(
        console: Console, mosquitto: Mosquitto) -> None:
    """The console's listen source is worker A's `ListenRelay`; the call and its agent are on worker B (a real
    bridged SIP call and B's own relay), over a real mosquitto: the agent hears the 1 kHz whisper and the
    caller does not; B's refusal reaches the page as the end of the whisper with B's reason, and the audit."""
    from hotline.listen_relay import ListenRelay

    async with bridged_call("live-4") as call:
        relay_b = ListenRelay(SessionAudio(SimpleNamespace(sessions=[call.session])), "127.0.0.1", mosquitto.port,
                              node="worker-b")
        relay_a = ListenRelay(SessionAudio(SimpleNamespace(sessions=[])), "127.0.0.1", mosquitto.port,
                              node="worker-a")
        try:
            for relay in (relay_a, relay_b):
                await relay.start()
                await relay.connected(10)
            relay_a.on_event(CallStarted("live-4", "13800138000", "95555"))  # as worker B's bus says
            app_console = console.client.server.app[CONSOLE]
            app_console.listen = relay_a
            assert (await console.login("sam")).status == 302

            call.session.agent_leg = None  # B refuses: the page hears why once B has answered
            ws = await console.client.ws_connect("/ws/whisper/live-4")
            assert (await ws.receive_json(timeout=5))["sample_rate"] == 8000
            end = await ws.receive_json(timeout=10)
            assert end["ended"] is True and "no agent" in end["reason"], end
            await ws.close()
            await _wait(lambda: app_console.listeners == 0, "the refused whisper closed")
            call.session.agent_leg = call.agent_leg

            heard_agent, heard_caller = len(call.phone.heard_pcm()), len(call.caller.heard_pcm(call.caller_leg))
            ws = await console.client.ws_connect("/ws/whisper/live-4")
            await ws.receive_json(timeout=5)
            await _wait(lambda: call.agent_leg.mix_in is not None, "worker B mixing the whisper in", 5)
            await send_paced(ws.send_bytes, tone(WHISPER_HZ, 2.0))
            await asyncio.sleep(0.5)
            await ws.close()
            await _wait(lambda: call.agent_leg.mix_in is None and not relay_b._whisper_served, "B's mix removed")
            agent_heard = call.phone.heard_pcm()[heard_agent:]
            caller_heard = call.caller.heard_pcm(call.caller_leg)[heard_caller:]
            print(f"whisper across workers: {band_rms(agent_heard, WHISPER_HZ):.0f} rms at the agent")
            assert band_rms(agent_heard, WHISPER_HZ) > 2000, band_rms(agent_heard, WHISPER_HZ)
            assert band_rms(caller_heard, WHISPER_HZ) < 50, band_rms(caller_heard, WHISPER_HZ)
            await call.caller_leg.hangup()
        finally:
            await relay_a.stop()
            await relay_b.stop()
    for _ in range(100):
        ends = [a for a in _audit(console) if a[1] == "whisper_end" and a[2] == "live-4"]
        if len(ends) == 2:
            break
        await asyncio.sleep(0.05)
    details = " | ".join(a[3] for a in ends)
    assert len(ends) == 2 and "no agent is on that call" in details and "32000 bytes" in details, details


async def test_a_failing_mix_in_is_removed_and_the_call_goes_on() -> None:
    async with bridged_call("live-3") as call:
        def broken() -> bytes | None:
            raise RuntimeError("boom")

        call.agent_leg.mix_in = broken
        await _wait(lambda: call.agent_leg.mix_in is None, "the broken mix-in removed", 2)
        sent = call.agent_leg.frames_out
        await _wait(lambda: call.agent_leg.frames_out > sent + 10, "frames still sent", 2)
        assert not call.agent_leg.ended.is_set() and not call.caller_leg.ended.is_set()


def fake_microphone(path: Path, hz: float = WHISPER_HZ, seconds: float = 2.0) -> Path:
    """A 48 kHz tone WAV for chromium's --use-file-for-fake-audio-capture (it loops it)."""
    t = np.arange(int(48000 * seconds)) / 48000
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes((8000 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes())
    return path


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_supervisor_whispers_from_chromium_and_only_the_agent_hears_it(console: Console, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    from .test_browser import CHROMIUM_ARGS

    mic = fake_microphone(tmp_path / "mic.wav")
    args = [*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic}"]
    async with bridged_call("live-2") as call, async_playwright() as pw:
        app_console = console.client.server.app[CONSOLE]
        app_console.listen = SessionAudio(SimpleNamespace(sessions=[call.session]))
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=args, headless=True)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            base = str(console.client.make_url("/")).rstrip("/")
            await page.goto(f"{base}/login")
            await page.fill("input[name=user]", "sam")
            await page.fill("input[name=password]", "green-valley-42")
            await page.click("button[type=submit]")
            await page.wait_for_selector("body[data-live=connected]", timeout=10_000)
            console.bus.publish(CallStarted("live-2", "13800138000", "95555"))
            console.bus.publish(AgentAssigned("live-2", "general", "anna", {}))
            card = page.locator(".live-call[data-call='live-2']")
            await card.locator("button.listen").click()
            await page.locator("#listen-status[data-state=on]").wait_for(timeout=10_000)
            heard_agent = len(call.phone.heard_pcm())
            heard_caller = len(call.caller.heard_pcm(call.caller_leg))
            await card.locator("button.whisper").click()
            await page.locator("#whisper-status[data-state=on]").wait_for(timeout=10_000)
            await _wait(lambda: len(call.phone.heard_pcm()) - heard_agent > 16000 * 3, "3 s at the agent", 15)
            assert await card.locator("button.whisper.on").count() == 1
            await page.close()  # the page goes: the whisper ends with it
            await _wait(lambda: call.agent_leg.mix_in is None and app_console.listeners == 0, "the whisper ended")
            agent_heard = call.phone.heard_pcm()[heard_agent:]
            caller_heard = call.caller.heard_pcm(call.caller_leg)[heard_caller:]
            assert band_rms(agent_heard, WHISPER_HZ) > 1000, band_rms(agent_heard, WHISPER_HZ)
            assert band_rms(caller_heard, WHISPER_HZ) < 50, band_rms(caller_heard, WHISPER_HZ)
            assert band_rms(caller_heard, AGENT_HZ) > 1000
            assert not errors, errors
        finally:
            await browser.close()
    for _ in range(100):
        audit = _audit(console)
        if any(a[1] == "whisper_end" for a in audit):
            break
        await asyncio.sleep(0.05)
    assert [a[:3] for a in audit if a[1].startswith("whisper")] == [("sam", "whisper_end", "live-2"),
                                                                    ("sam", "whisper_start", "live-2")]
