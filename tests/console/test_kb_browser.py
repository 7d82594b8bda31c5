"""In Debian's chromium (Playwright) against a running hotline: an admin edits one FAQ answer in the
knowledge-base editor and publishes; the chat page then gets the new answer, and so does a real SIP
call placed right after (keypad 1 = opening hours; checked in the call's stored transcript, the text
the session said). No restart in between. Saves kb.png, kb-entry.png and chat.png (docs/console/ with
HOTLINE_DOCS_SCREENSHOTS=1)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from support.kb_console import until

from hotline.server import Hotline
from hotline.settings import DEFAULT_CONFIG, load_settings
from telephony import TestCaller

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ADMIN, PASSWORD = "ada", "red-mountain-333"
CALLER = "13900139000"
NEW_ANSWER = "From next week our branches open every day from 8 am to 8 pm."


async def test_admin_publishes_an_answer_and_chat_and_the_next_call_use_it(tmp_path: Path, shots: Path) -> None:
    from playwright.async_api import async_playwright

    settings = load_settings(DEFAULT_CONFIG, sip={"host": "127.0.0.1", "port": 0}, data_dir=str(tmp_path / "var"),
                             web={"port": 0}, queues=[{"name": "general", "agents": []}])
    hotline = Hotline(settings)
    await hotline.start()
    try:
        assert hotline.web is not None and hotline.knowledge is not None
        await asyncio.to_thread(hotline.web.console.users.add_user, ADMIN, PASSWORD, "admin")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
            try:
                await _edit_publish_and_chat(hotline.web.url, browser, shots)
            finally:
                await browser.close()
        assert hotline.knowledge.version == 1
        said = await _call_and_press_1(hotline)
        assert NEW_ANSWER in said, said
    finally:
        await hotline.stop()


async def _edit_publish_and_chat(base: str, browser: Any, shots: Path) -> None:
    page = await (await browser.new_context(viewport={"width": 1280, "height": 800})).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    await page.goto(f"{base}/login")
    await page.fill("input[name=user]", ADMIN)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    await page.click("nav a[href='/admin/kb']")
    await page.wait_for_selector("#kb-entries tbody tr")
    assert await page.locator("#kb-entries tbody tr").count() >= 6  # the flow's FAQ, seeded as the draft
    await page.click("#kb-entries a[href='/admin/kb/opening_hours']")
    await page.fill("textarea[name=answer_en]", NEW_ANSWER)
    await page.screenshot(path=str(shots / "kb-entry.png"), full_page=True)
    await page.click("#kb-save")
    await page.wait_for_selector("#kb-saved")
    await page.click("#kb-publish button")
    await page.wait_for_selector("#kb-published")
    assert "v1" in await page.locator("#kb-versions tbody tr").first.inner_text()
    await page.screenshot(path=str(shots / "kb.png"), full_page=True)

    await page.goto(f"{base}/chat")
    log = page.locator("#chat-log li")
    await log.first.wait_for(timeout=10_000)  # the greeting
    await page.fill("#chat-text", "when are you open")
    await page.click("#chat-send")
    await page.locator("#chat-log li", has_text=NEW_ANSWER).wait_for(timeout=10_000)
    await page.screenshot(path=str(shots / "chat.png"), full_page=True)
    # Verification secrets: the input becomes a password field and the history shows dots, not digits.
    await page.fill("#chat-text", "what is my balance")
    await page.click("#chat-send")
    await page.wait_for_selector("#chat-text[type=password]", timeout=10_000)
    await page.fill("#chat-text", "6222021001234567")
    await page.click("#chat-send")
    await page.locator("#chat-log li", has_text="•" * 16).wait_for(timeout=10_000)
    assert "6222021001234567" not in await page.locator("#chat-log").inner_text()
    assert errors == [], errors


async def _call_and_press_1(hotline: Hotline) -> list[str]:
    """A real SIP call: waits for the greeting, presses 1, returns what the session said (stored lines)."""
    assert hotline.deps is not None
    store = hotline.deps.store
    async with TestCaller() as caller:
        leg = await caller.call(f"sip:95555@127.0.0.1:{hotline.port}", from_user=CALLER)
        call_id = await until(lambda: _call_id(store), 20, "the call record")
        await until(lambda: _system_lines(store, call_id, 1), 30, "the greeting")
        caller.send_dtmf(leg, "1")
        lines = await until(lambda: _system_lines(store, call_id, 2, NEW_ANSWER), 30, "the answer to key 1")
        await leg.hangup()
    return [str(x) for x in lines]


async def _call_id(store: Any) -> str | None:
    calls = await asyncio.to_thread(store.recent_calls, 5)
    return next((c.id for c in calls if c.caller == CALLER), None)


async def _system_lines(store: Any, call_id: str, n: int, wanted: str = "") -> list[str] | None:
    lines = [ln.text for ln in await asyncio.to_thread(store.get_transcript, call_id) if ln.speaker == "system"]
    if len(lines) < n or (wanted and not any(wanted in t for t in lines)):
        return None
    return lines
