"""The wallboard in Debian's chromium during a real call to a running hotline: the supervisor listens in
(WebAudio receives the call's audio over /ws/listen) and, when the caller (espeak through the test caller,
transcribed by the hotline's recognizer) gets angry, the call is flagged live; the flag is kept with the
call (call page, dashboard). Saves (with HOTLINE_DOCS_SCREENSHOTS=1) docs/console/wallboard-angry.png."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from hotline.server import Hotline
from hotline.settings import DEFAULT_CONFIG, load_settings
from recordings.sentiment import SentimentStore
from telephony import AgentPhone, TestCaller

from .test_browser import CHROMIUM_ARGS, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CALLER = "13900139000"
ANGRY = "This is ridiculous! I am furious. I want to speak to a manager right now!"


def caller_voice() -> bytes:
    from asr.audio import resample
    from tts import create_synthesizer

    synth = create_synthesizer("espeak")
    return resample(synth.synthesize(ANGRY, "en"), synth.sample_rate, 8000)


async def test_supervisor_listens_in_and_sees_the_angry_caller_flagged(tmp_path: Path, shots: Path) -> None:
    from playwright.async_api import async_playwright

    voice = await asyncio.to_thread(caller_voice)
    phone = AgentPhone(port=0)
    await phone.start()
    settings = load_settings(DEFAULT_CONFIG, sip={"host": "127.0.0.1", "port": 0}, data_dir=str(tmp_path / "var"),
                             web={"port": 0}, queues=[{"name": "general", "wrap_up_s": 1, "agents": [
                                 {"name": "anna", "uri": f"sip:anna@127.0.0.1:{phone.port}"}]}])
    hotline = Hotline(settings)
    await hotline.start()
    try:
        assert hotline.web is not None
        users = hotline.web.console.users
        await asyncio.to_thread(users.add_user, "sam", "green-valley-42", "supervisor")
        await asyncio.to_thread(users.add_user, "anna", "blue-harbour-7", "agent")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS,
                                               headless=True)
            try:
                await _drive(hotline, hotline.web.url, browser, voice, shots)
            finally:
                await browser.close()
    finally:
        await hotline.stop()
        await phone.stop()


async def _login(browser: Any, base: str, name: str, password: str, errors: list[str]) -> Any:
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await ctx.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    await page.goto(f"{base}/login")
    await page.fill("input[name=user]", name)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    return page


async def _drive(hotline: Hotline, base: str, browser: Any, voice: bytes, shots: Path) -> None:
    errors: list[str] = []
    wall = await _login(browser, base, "sam", "green-valley-42", errors)
    assert wall.url.endswith("/wallboard")
    await wall.wait_for_selector("body[data-live=connected]", timeout=10_000)
    agent = await _login(browser, base, "anna", "blue-harbour-7", errors)
    async with TestCaller() as caller:
        leg = await caller.call(f"sip:95555@127.0.0.1:{hotline.port}", from_user=CALLER)
        call = wall.locator(".live-call").first
        await call.wait_for(timeout=15_000)
        call_id = await call.get_attribute("data-call")
        # An agent's browser cannot open the stream.
        refused = await agent.evaluate("""(id) => new Promise((resolve) => {
            const ws = new WebSocket(`ws://${location.host}/ws/listen/${id}`);
            ws.onopen = () => resolve('open'); ws.onerror = () => resolve('refused'); })""", call_id)
        assert refused == "refused"
        # The supervisor listens in while the greeting plays.
        await call.locator("button.listen").click()
        status = wall.locator("#listen-status[data-state=on]")
        await status.wait_for(timeout=10_000)
        heard = await until(lambda: _listened(wall, 16000), 20, "a second of the call's audio in the browser")
        assert heard["call"] == call_id and heard["energy"] > 0, heard
        await until(lambda: _count(call.locator("li.system"), 1), 30, "the greeting on the wallboard")
        await caller.play(leg, voice)
        await wall.locator(f".live-call[data-call='{call_id}'][data-angry='1']").wait_for(timeout=60_000)
        flagged = wall.locator(f".live-call[data-call='{call_id}'] .mood.flagged")
        assert await flagged.count() == 1
        assert await wall.locator(".live-call").first.get_attribute("data-call") == call_id  # angry first
        more = await _listened(wall, 0)
        assert more["bytes"] > heard["bytes"], (heard, more)
        await wall.screenshot(path=str(shots / "wallboard-angry.png"), full_page=True)
        caller.send_dtmf(leg, "0")  # an agent, please: her screen pop shows the caller's mood
        await agent.locator("#pop-mood .mood.flagged").wait_for(timeout=40_000)
        await leg.hangup()
    await wall.locator("#listen-status[data-state=off]").wait_for(timeout=15_000)
    assert hotline.deps is not None
    store = SentimentStore(hotline.deps.store.engine)
    row = await until(lambda: asyncio.to_thread(store.get, call_id), 15, "the call's sentiment row")
    assert row["angry"] is True, row
    await wall.goto(f"{base}/calls/{call_id}")
    assert await wall.locator("#call-mood .mood.flagged").count() == 1
    log = await asyncio.to_thread(hotline.web.console.users.audit_log, 50)
    actions = [(a.user, a.action, a.target) for a in log]
    assert ("sam", "listen_in", call_id) in actions and ("sam", "listen_end", call_id) in actions
    assert not [e for e in errors if "403" not in e and "WebSocket" not in e], errors


async def _count(locator: Any, n: int) -> bool:
    return bool(await locator.count() >= n)


async def _listened(page: Any, at_least: int) -> Any:
    info = await page.evaluate("""() => { const m = document.getElementById('listen-status');
        return { call: m.dataset.call, bytes: Number(m.dataset.bytes || 0),
                 energy: Number(m.dataset.energy || 0) }; }""")
    return info if info["bytes"] >= max(1, at_least) else None
