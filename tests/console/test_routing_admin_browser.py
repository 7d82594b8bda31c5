"""In Debian's chromium (Playwright) against a running `hotline serve`: a stored queue override is applied at
start-up over the YAML, then an admin edits an agent's skills on /admin/agents and the running distributor
has them at once (no restart); reset puts the YAML back. Saves admin-agents.png (docs/console/ with
HOTLINE_DOCS_SCREENSHOTS=1)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hotline.server import Hotline
from hotline.settings import DEFAULT_CONFIG, load_settings
from recordings import CallStore
from recordings.routing_admin import RoutingOverrides

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ADMIN, PASSWORD = "ada", "red-mountain-333"


async def test_admin_edits_an_agents_skills_in_the_browser_and_routing_has_them(tmp_path: Path, shots: Path) -> None:
    from playwright.async_api import async_playwright

    settings = load_settings(
        DEFAULT_CONFIG, sip={"host": "127.0.0.1", "port": 0}, data_dir=str(tmp_path / "var"), web={"port": 0},
        queues=[{"name": "general", "wrap_up_s": 5,
                 "agents": [{"name": "anna", "uri": "sip:anna@127.0.0.1:5090", "skills": {"en": 1}}]}],
    )
    store = CallStore(settings.database_url)  # an override stored by an earlier console session
    RoutingOverrides(store.engine).put("queue", "general", {"wrap_up_s": 42, "strategy": "round_robin"}, by="ada")
    store.close()
    hotline = Hotline(settings)
    await hotline.start()
    try:
        assert hotline.web is not None and hotline.acd is not None
        cfg = hotline.acd.queue_config("general")
        assert (cfg.wrap_up_s, cfg.strategy) == (42, "round_robin"), "stored override wins over the YAML"
        await asyncio.to_thread(hotline.web.console.users.add_user, ADMIN, PASSWORD, "admin")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
            try:
                page = await (await browser.new_context(viewport={"width": 1280, "height": 800})).new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(f"{hotline.web.url}/login")
                await page.fill("input[name=user]", ADMIN)
                await page.fill("input[name=password]", PASSWORD)
                await page.click("button[type=submit]")
                await page.wait_for_load_state()
                await page.goto(f"{hotline.web.url}/admin/agents")
                assert await page.locator("#agent-anna .skills").inner_text() == "en:1"
                await page.locator("#agent-anna a.edit").click()  # the form starts with her settings
                await page.wait_for_load_state()
                form = page.locator("#agent-form")
                assert await form.locator("input[name=uri]").input_value() == "sip:anna@127.0.0.1:5090"
                assert await form.locator("input[name=skills]").input_value() == "en:1"
                await form.locator("input[name=skills]").fill("zh:3, cards:2")
                await form.locator("button").click()
                await page.wait_for_load_state()
                await page.locator("#admin-done").wait_for(timeout=10_000)
                assert "live now" in await page.locator("#admin-done").inner_text()
                assert await page.locator("#agent-anna .skills").inner_text() == "cards:2, zh:3"
                await form.locator("input[name=id]").fill("anna")
                await form.locator("input[name=uri]").fill("sip:anna@127.0.0.1:5090")
                await form.locator("input[name=skills]").fill("zh:12")
                await form.locator("button").click()
                await page.locator("#admin-error").wait_for(timeout=10_000)
                assert "level must be" in await page.locator("#admin-error").inner_text()
                assert await form.locator("input[name=skills]").input_value() == "zh:12"  # kept for correcting
                await page.screenshot(path=str(shots / "admin-agents.png"), full_page=True)
                assert dict(hotline.acd.agent("anna").skills) == {"zh": 3, "cards": 2}
                # Reset to configuration file: the stored rows go, the YAML's values are live again.
                await page.locator("#reset-agent-anna button").click()
                await page.locator("#admin-done").wait_for(timeout=10_000)
                assert "configuration file" in await page.locator("#admin-done").inner_text()
                assert await page.locator("#agent-anna .skills").inner_text() == "en:1"
                await page.goto(f"{hotline.web.url}/admin/queues")
                await page.locator("#reset-queue-general button").click()
                await page.locator("#admin-done").wait_for(timeout=10_000)
                assert await page.locator("#reset-queue-general").count() == 0  # nothing stored any more
                assert not errors, errors
            finally:
                await browser.close()
        assert dict(hotline.acd.agent("anna").skills) == {"en": 1}
        cfg = hotline.acd.queue_config("general")
        assert (cfg.wrap_up_s, cfg.strategy) == (5, "longest_idle")
        assert RoutingOverrides(hotline.deps.store.engine).all() == []
    finally:
        await hotline.stop()
