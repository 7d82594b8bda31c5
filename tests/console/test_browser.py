"""The console in Debian's chromium (Playwright) against a running hotline with a real SIP call:
each role logs in, the call appears on the wallboard and its transcript grows, the agent's screen pops,
search finds the call and its recording plays. Saves the screenshots (docs/console/ with HOTLINE_DOCS_SCREENSHOTS=1)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hotline.server import Hotline
from hotline.settings import DEFAULT_CONFIG, load_settings
from telephony import AgentPhone, TestCaller

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]
USERS = {"anna": ("agent", "blue-harbour-7"), "sam": ("supervisor", "green-valley-42"),
         "ada": ("admin", "red-mountain-333")}
CALLER = "13800138000"


async def until(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def agent_voice() -> bytes:
    from asr.audio import resample
    from tts import create_synthesizer

    synth = create_synthesizer("espeak")
    return resample(synth.synthesize("Hello, this is Anna at the card services desk.", "en"), synth.sample_rate, 8000)


async def test_console_in_a_browser_during_a_real_call(tmp_path: Path, shots: Path) -> None:
    from playwright.async_api import async_playwright

    async with AgentPhone(port=0, play_pcm=await asyncio.to_thread(agent_voice)) as phone:
        settings = load_settings(
            DEFAULT_CONFIG, sip={"host": "127.0.0.1", "port": 0}, data_dir=str(tmp_path / "var"),
            web={"port": 0},
            queues=[{"name": "general", "wrap_up_s": 1,
                     "agents": [{"name": "anna", "uri": f"sip:anna@127.0.0.1:{phone.port}"}]}],
        )
        hotline = Hotline(settings)
        await hotline.start()
        try:
            assert hotline.web is not None, "the console starts with hotline serve"
            users = hotline.web.console.users
            for name, (role, password) in USERS.items():
                await asyncio.to_thread(users.add_user, name, password, role)
            await _drive(hotline, hotline.web.url, async_playwright, shots)
        finally:
            await hotline.stop()


async def _drive(hotline: Hotline, base: str, async_playwright: Any, shots: Path) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        try:
            pages = {}
            errors: list[str] = []  # script errors and Content-Security-Policy refusals in any page
            for name, (_role, password) in USERS.items():
                ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
                page = await ctx.new_page()
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on("console", lambda msg: errors.append(f"{msg.text} {msg.location.get('url', '')}")
                        if msg.type == "error" else None)
                await page.goto(f"{base}/login")
                if name == "anna":
                    await page.screenshot(path=str(shots / "login.png"))
                await page.fill("input[name=user]", name)
                await page.fill("input[name=password]", password)
                await page.click("button[type=submit]")
                await page.wait_for_load_state()
                pages[name] = page
            # Each role lands on its own page; the agent cannot open supervisor pages.
            assert pages["anna"].url.endswith("/agent")
            assert pages["sam"].url.endswith("/wallboard") and pages["ada"].url.endswith("/wallboard")
            refused = await pages["anna"].goto(f"{base}/wallboard")
            assert refused is not None and refused.status == 403
            await pages["anna"].goto(f"{base}/agent")
            admin = pages["ada"]
            await admin.goto(f"{base}/admin/users")
            assert await admin.locator("#users tbody tr").count() == 3
            await admin.screenshot(path=str(shots / "users.png"), full_page=True)

            wall, desk = pages["sam"], pages["anna"]
            for p in (wall, desk):
                await p.wait_for_selector("body[data-live=connected]", timeout=10_000)
            assert await wall.locator("#agents tbody tr").count() == 1

            async with TestCaller() as caller:
                leg = await caller.call(f"sip:95555@127.0.0.1:{hotline.port}", from_user=CALLER)
                call = wall.locator(".live-call").first
                await call.wait_for(timeout=15_000)
                assert CALLER in await call.locator("h3").inner_text()
                lines = call.locator("li")
                await until(lambda: _count_at_least(lines, 1), 30, "the greeting on the wallboard")
                first = await lines.count()
                caller.send_dtmf(leg, "0")  # an agent, please (keys cut the greeting short)
                await desk.locator("#pop-caller", has_text=CALLER).wait_for(timeout=40_000)
                assert await desk.locator("#pop-transcript li").count() >= 1  # the transcript so far
                assert "relaxed en" in await desk.locator("#pop-routing").inner_text()  # anna has no "en" skill
                await desk.locator("#agent-state[data-state=on_call]").wait_for(timeout=10_000)
                # The agent's words are transcribed and reach the wallboard while the call goes on.
                await until(lambda: _count_at_least(call.locator("li.agent"), 1), 60,
                            "the agent's speech on the wallboard")
                grown = await lines.count()
                assert grown > first, (first, grown)
                await wall.screenshot(path=str(shots / "wallboard.png"), full_page=True)
                await desk.screenshot(path=str(shots / "agent-desktop.png"), full_page=True)
                await leg.hangup()

            # The agent saves the wrap-up.
            await desk.select_option("select[name=disposition]", "resolved")
            await desk.fill("textarea[name=notes]", "Card blocked, new card ordered.")
            await desk.click("#wrapup-save")
            await desk.locator("p.ok").wait_for(timeout=10_000)

            # Search finds the call; its page shows the transcript and the recording plays.
            store = hotline.deps.store if hotline.deps else None
            assert store is not None
            record = await until(lambda: _ended_call(store), 30, "the call record to close")
            await wall.goto(f"{base}/calls")
            await wall.fill("input[name=q]", "hold")  # full text: "Please hold while I connect you ..."
            await wall.fill("input[name=caller]", CALLER)
            await wall.click("#search button")
            await wall.wait_for_load_state()
            assert await wall.locator("#result-count").inner_text() == "1"
            assert "[hold]" in await wall.locator("#results .snip").first.inner_text()  # the matching line
            await wall.screenshot(path=str(shots / "search.png"), full_page=True)
            await wall.click("#results a")
            await wall.wait_for_selector("#transcript li")
            assert record.id in wall.url
            duration = await wall.evaluate("""() => new Promise((resolve) => {
                const a = document.getElementById('recording');
                const done = () => resolve(a.duration);
                if (a.readyState >= 1) done(); else { a.addEventListener('loadedmetadata', done);
                  a.addEventListener('error', () => resolve(-1)); }
            })""")
            assert duration > 1.0, duration
            played = await wall.evaluate("""async () => {
                const a = document.getElementById('recording'); a.muted = true; await a.play();
                await new Promise((r) => setTimeout(r, 700)); a.pause(); return a.currentTime; }""")
            assert played > 0.1, played
            await wall.screenshot(path=str(shots / "call.png"), full_page=True)
            await wall.goto(f"{base}/dashboard?by=hour")
            assert await wall.locator("#kpis .tile b").first.inner_text() == "1"
            await wall.screenshot(path=str(shots / "dashboard.png"), full_page=True)
            await desk.goto(f"{base}/agent?lang=zh")
            await desk.screenshot(path=str(shots / "agent-desktop-zh.png"), full_page=True)
            log = await asyncio.to_thread(hotline.web.console.users.audit_log, 100)
            assert ("sam", "play_recording", record.id) in [(a.user, a.action, a.target) for a in log]
            assert ("anna", "wrap_up", record.id) in [(a.user, a.action, a.target) for a in log]
            # The only console errors allowed: the 403 the agent got for the wallboard.
            assert [e for e in errors if "403" not in e] == [], errors
        finally:
            await browser.close()


async def _count_at_least(locator: Any, n: int) -> bool:
    return bool(await locator.count() >= n)


async def _ended_call(store: Any) -> Any:
    calls = await asyncio.to_thread(store.recent_calls, 5)
    return next((c for c in calls if c.caller == CALLER and c.ended_at is not None), None)
