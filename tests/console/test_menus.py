"""Keypad menu administration (console/menus.py, hotline/menus_live.py): routes x roles, CSRF, a change heard
by the next call (the real bank flow and engine, swapped the way a knowledge-base publish swaps it) while a
call in progress keeps its menu, warnings for keys the words do not mention, hostile and bad forms refused
with what was typed kept, reset, a restart, prompt changes and menu changes kept side by side, and a chromium
admin choosing a key's target from the page."""

from __future__ import annotations

import asyncio
import html
import json
from pathlib import Path
from typing import Any

import pytest
from support.kb_console import FLOW

from dialog import DialogEngine, Say
from dialog.flow import MenuIntent, load_flow
from dialog.menus import apply_menus
from hotline.menus_live import MenusAdmin

from .conftest import PromptConsole
from .test_kb_browser import CHROMIUM_ARGS, _call_id, _system_lines

PASSWORDS = {"anna": "blue-harbour-7", "sam": "green-valley-42", "ada": "red-mountain-333"}
ANON, AGENT, SUP, ADMIN = "anonymous", "anna", "sam", "ada"
CARDS_WORDS = ("Cards: press 1 to block a card, 2 to activate a new card, 3 to reset your PIN, 4 for card fees, "
               "5 to report a lost card, 6 for our opening hours, or star to go back.")


def heard(engine: DialogEngine, *keys: str) -> list[str]:
    """What a new call hears after pressing `keys` from the greeting on (the last key's answer)."""
    conv = engine.new_conversation("test-call", "13800138000", lang="en")
    conv.start()
    said: list[str] = []
    for key in keys:
        said = [a.text for a in conv.handle_dtmf(key) if isinstance(a, Say)]
    return said


def form(menu: dict[str, Any], **keys: str) -> dict[str, str]:
    """The page's form for a menu with some keys changed (`key_6="faq:opening_hours"`, `key_5=""`)."""
    data = {f"key_{k}": v for k, v in menu["options"].items()}
    if menu["say"] is not None:
        data.update({f"say_{lang}": text for lang, text in menu["say"].items()})
    data.update(keys)
    return {"name": menu["name"], **data}


async def menu_of(pc: PromptConsole, name: str) -> dict[str, Any]:
    menus = (await (await pc.client.get("/api/menus")).json())["menus"]
    return next(m for m in menus if m["name"] == name)


async def test_menu_routes_answer_each_role_as_they_should(pc: PromptConsole) -> None:
    routes: list[tuple[str, str, Any, dict[str, int]]] = [
        ("GET", "/admin/menus", None, {ANON: 302, AGENT: 403, SUP: 200, ADMIN: 200}),
        ("GET", "/api/menus", None, {ANON: 401, AGENT: 403, SUP: 200, ADMIN: 200}),
        ("POST", "/admin/menus/save", {"name": "complaints_menu", "key_1": "complaint", "key_2": "complaint_status"},
         {ANON: 302, AGENT: 403, SUP: 403, ADMIN: 302}),
        ("POST", "/admin/menus/reset", {"name": "complaints_menu"}, {ANON: 302, AGENT: 403, SUP: 403, ADMIN: 302}),
    ]
    wrong = await pc.kc.wrong_statuses(routes, PASSWORDS)
    assert not wrong, "\n".join(wrong)
    await pc.kc.logout()
    await pc.kc.login(SUP, PASSWORDS[SUP])
    page = await (await pc.client.get("/admin/menus")).text()
    assert 'id="m-dtmf"' in page and 'id="m-cards_menu"' in page and "<fieldset disabled>" in page
    assert 'class="save"' not in page


async def test_a_changed_sub_menu_is_heard_by_the_next_call_survives_a_restart_and_resets(pc: PromptConsole) -> None:
    live = pc.kc.live
    before = heard(live.engine, "4", "6")  # key 6 is not in the cards menu: the main menu's 6 (complaints)
    in_progress = live.engine.new_conversation("call-in-progress", "13800138000", lang="en")
    in_progress.start()
    in_progress.handle_dtmf("4")
    token = await pc.kc.login(ADMIN, PASSWORDS[ADMIN])
    cards = await menu_of(pc, "cards_menu")
    assert cards["warnings"] == [] and not cards["changed"]
    body = {**form(cards, key_6="faq:opening_hours", say_en=CARDS_WORDS), "csrf_token": token}
    r = await pc.client.post("/admin/menus/save", data=body, allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/admin/menus?saved=cards_menu#m-cards_menu"
    now = heard(live.engine, "4", "6")
    assert now != before and "open" in now[0].lower(), now  # the opening hours answer
    assert heard(live.engine, "4") == [CARDS_WORDS]
    kept = [a.text for a in in_progress.handle_dtmf("6") if isinstance(a, Say)]
    assert kept == before, "a call in progress keeps its menu"
    cards = await menu_of(pc, "cards_menu")
    assert cards["changed"] and cards["options"]["6"] == "faq:opening_hours"
    assert cards["warnings"] == ["zh: key 6 is not mentioned"]  # the Chinese words were not changed
    page = html.unescape(await (await pc.client.get("/admin/menus?saved=cards_menu")).text())
    assert "zh: key 6 is not mentioned" in page and 'id="menus-saved"' in page
    audit = [(a.user, a.action, a.target, a.detail) for a in await asyncio.to_thread(pc.kc.users.audit_log, 10)]
    assert ("ada", "menu_changed", "cards_menu", "6: - -> faq:opening_hours; words") in audit
    # a restart: a new LiveKnowledge and LivePrompts over the same folders
    again, _ = await pc.restarted()
    assert heard(again.engine, "4", "6") == now
    # a prompt change afterwards keeps the menu change, and the menu's reset keeps the prompt change
    r = await pc.client.post("/admin/prompts/save", allow_redirects=False, data={
        "key": "goodbye", "lang": "en", "text": "Goodbye from Example Bank.", "csrf_token": token})
    assert r.status == 302 and heard(live.engine, "4", "6") == now
    r = await pc.client.post("/admin/menus/reset", data={"name": "cards_menu", "csrf_token": token},
                             allow_redirects=False)
    assert r.status == 302 and heard(live.engine, "4", "6") == before
    assert live.engine.flow.config.prompts.goodbye["en"] == "Goodbye from Example Bank."
    stored = json.loads((pc.folder / "prompts" / "prompts.json").read_text(encoding="utf-8"))
    assert stored["version"] == 3 and "menus" not in stored and stored["overrides"]["goodbye"]
    history = [json.loads(line) for line in (pc.folder / "prompts" / "history.jsonl").read_text().splitlines()]
    assert [h["action"] for h in history] == ["menu_changed", "changed", "menu_reset"]


async def test_the_main_menu_keys_change_and_a_menu_saved_as_in_the_file_is_no_change(pc: PromptConsole) -> None:
    live = pc.kc.live
    fees = heard(live.engine, "4", "4")  # cards menu, card fees
    token = await pc.kc.login(ADMIN, PASSWORDS[ADMIN])
    main = await menu_of(pc, "dtmf")
    assert main["say"] is None and main["options"]["1"] == "faq:opening_hours"
    r = await pc.client.post("/admin/menus/save", allow_redirects=False,
                             data={**form(main, key_1="faq:card_fees", key_7=""), "csrf_token": token})
    assert r.status == 302
    assert heard(live.engine, "1") == fees
    assert "7" not in live.engine.flow.config.dtmf
    main = await menu_of(pc, "dtmf")
    assert "en: key 7 is not mentioned" not in main["warnings"]  # 7 does nothing now; its words are the prompts'
    # saved back as the file has it: not a change any more
    base = {**main, "options": main["base_options"]}
    r = await pc.client.post("/admin/menus/save", allow_redirects=False, data={**form(base), "csrf_token": token})
    assert r.status == 302 and not (await menu_of(pc, "dtmf"))["changed"]
    assert live.engine.flow.config.dtmf == load_flow(FLOW).config.dtmf


async def test_bad_forms_are_refused_naming_the_problem_and_keep_what_was_typed(pc: PromptConsole) -> None:
    live = pc.kc.live
    base = heard(live.engine, "4", "1")
    token = await pc.kc.login(ADMIN, PASSWORDS[ADMIN])
    cards = await menu_of(pc, "cards_menu")
    cases = [
        (form(cards, key_1="no_such_intent"), 400, "key 1: unknown target 'no_such_intent'"),
        (form(cards, key_1="<script>alert(1)</script>"), 400, "key 1: not a target of this flow"),
        (form(cards, key_1="faq:no_such_entry"), 400, "unknown target 'faq:no_such_entry'"),
        ({**{f"key_{k}": "" for k in "123456789*0#"}, "name": "cards_menu", "say_en": "x", "say_zh": "x"}, 400,
         "at least one key"),
        (form(cards, say_zh="   "), 400, "the words in zh are required"),
        (form(cards, say_en="a" * 1001), 400, "at most 1000 characters"),
        ({**form(cards), "name": "no_such_menu"}, 404, ""),
        ({**form(cards), "name": "../etc"}, 400, "bad menu name"),
    ]
    for data, status, says in cases:
        r = await pc.client.post("/admin/menus/save", data={**data, "csrf_token": token})
        body = html.unescape(await r.text())
        assert r.status == status and says in body, (data.get("key_1"), r.status, body[:300])
    # what was typed is shown again after a refusal
    r = await pc.client.post("/admin/menus/save", data={**form(cards, key_3="help", say_zh=""), "csrf_token": token})
    body = await r.text()
    assert r.status == 400 and '<option value="help" selected>' in body[body.index('id="m-cards_menu"'):]
    # without the CSRF token nothing changes; a main menu with words is refused by the hotline
    r = await pc.client.post("/admin/menus/save", data=form(cards, key_1="help"), allow_redirects=False)
    assert r.status == 403
    with pytest.raises(ValueError, match="main menu's words"):
        apply_menus(load_flow(FLOW), {"dtmf": {"options": {"1": "help"}, "say": {"en": "Hi."}}})
    assert heard(live.engine, "4", "1") == base and not (pc.folder / "prompts" / "prompts.json").exists()


async def test_another_worker_takes_a_menu_change_at_its_next_poll(pc: PromptConsole) -> None:
    other, other_prompts = await pc.restarted()
    token = await pc.kc.login(ADMIN, PASSWORDS[ADMIN])
    complaints = await menu_of(pc, "complaints_menu")
    r = await pc.client.post("/admin/menus/save", allow_redirects=False,
                             data={**form(complaints, key_3="agent"), "csrf_token": token})
    assert r.status == 302
    assert await asyncio.to_thread(other_prompts.refresh)  # what the knowledge poller runs
    assert other.engine.flow.config.intents["complaints_menu"].options["3"] == "agent"


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_an_admin_in_chromium_sets_a_key_and_a_real_call_gets_it(tmp_path: Path, shots: Path) -> None:
    """`hotline serve`'s own composition (hotline/web.py hands the console `menus_admin`): in Debian's
    chromium an admin sets key 6 of the cards menu to the opening hours and saves; a real SIP call placed
    right after presses 4 then 6 and hears the opening hours (the session's stored lines). Saves menus.png."""
    from playwright.async_api import async_playwright
    from support.kb_console import until

    from hotline.server import Hotline
    from hotline.settings import DEFAULT_CONFIG, load_settings
    from telephony import TestCaller

    settings = load_settings(DEFAULT_CONFIG, sip={"host": "127.0.0.1", "port": 0}, data_dir=str(tmp_path / "var"),
                             web={"port": 0}, queues=[{"name": "general", "agents": []}])
    hotline = Hotline(settings)
    await hotline.start()
    try:
        assert hotline.web is not None and hotline.deps is not None
        await asyncio.to_thread(hotline.web.console.users.add_user, ADMIN, PASSWORDS[ADMIN], "admin")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
            try:
                page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(f"{hotline.web.url}/login")
                await page.fill("input[name=user]", ADMIN)
                await page.fill("input[name=password]", PASSWORDS[ADMIN])
                await page.click("button[type=submit]")
                await page.wait_for_load_state()
                await page.click("nav a[href='/admin/menus']")
                menu = page.locator("#m-cards_menu")
                await menu.locator("select[name='key_6']").select_option("faq:opening_hours")
                await menu.locator("textarea[name=say_en]").fill(CARDS_WORDS)
                await menu.locator("button.save").click()
                await page.wait_for_selector("#menus-saved")
                assert await page.locator("#m-cards_menu select[name='key_6']").input_value() == "faq:opening_hours"
                assert "zh: key 6 is not mentioned" in await page.locator("#m-cards_menu .warnings").inner_text()
                await page.screenshot(path=str(shots / "menus.png"), full_page=False)
                assert errors == [], errors
            finally:
                await browser.close()
        store = hotline.deps.store
        async with TestCaller() as caller:
            leg = await caller.call(f"sip:95555@127.0.0.1:{hotline.port}", from_user="13900139000")
            call_id = await until(lambda: _call_id(store), 20, "the call record")
            await until(lambda: _system_lines(store, call_id, 1), 30, "the greeting")
            caller.send_dtmf(leg, "4")
            await until(lambda: _system_lines(store, call_id, 2, CARDS_WORDS), 30, "the changed cards menu")
            caller.send_dtmf(leg, "6")
            lines = await until(lambda: _system_lines(store, call_id, 3, "open"), 30, "the opening hours on key 6")
            await leg.hangup()
        assert any("opening" in t.lower() or "open" in t.lower() for t in lines[2:]), lines
    finally:
        await hotline.stop()


async def test_a_key_whose_answer_was_unpublished_is_left_out_and_nothing_else_is_lost(
        pc: PromptConsole, caplog: pytest.LogCaptureFixture) -> None:
    """Key 6 leads to a knowledge answer that a later publish no longer has: at the next start the stored
    changes still apply (the prompt change, the menu's other keys and words) and only that key is left out,
    with a warning; saving another menu still works (only the menu being saved is checked strictly)."""
    from dialog.knowledge import KnowledgeEntry

    live, kb = pc.kc.live, pc.kc.kb
    weekend = KnowledgeEntry.model_validate({
        "id": "weekend_hours", "category": "branches",
        "questions": {"en": ["is the weekend branch open late"], "zh": ["周末网点营业到几点"]},
        "answer": {"en": "Our main branches open on Saturdays from 9 to 5.", "zh": "主要网点周六九点至五点营业。"}})
    await asyncio.to_thread(kb.save_draft, [*kb.draft(), weekend])
    await asyncio.to_thread(kb.publish)
    assert await asyncio.to_thread(live.refresh)
    token = await pc.kc.login(ADMIN, PASSWORDS[ADMIN])
    cards = await menu_of(pc, "cards_menu")
    r = await pc.client.post("/admin/menus/save", allow_redirects=False, data={
        **form(cards, key_6="faq:weekend_hours", key_2="help", say_en=CARDS_WORDS), "csrf_token": token})
    assert r.status == 302, await r.text()
    r = await pc.client.post("/admin/prompts/save", allow_redirects=False, data={
        "key": "goodbye", "lang": "en", "text": "Goodbye from Example Bank.", "csrf_token": token})
    assert r.status == 302 and "saturdays" in heard(live.engine, "4", "6")[0].lower()
    # the entry is deleted and the knowledge base published again; then the hotline restarts
    await asyncio.to_thread(kb.save_draft, [e for e in kb.draft() if e.id != "weekend_hours"])
    await asyncio.to_thread(kb.publish)
    again, restarted = await pc.restarted()
    menu = again.engine.flow.config.intents["cards_menu"]
    assert isinstance(menu, MenuIntent)
    assert menu.options == {"1": "block_card", "2": "help", "3": "pin_reset", "4": "faq:card_fees",
                            "5": "report_lost_card"}
    assert menu.say["en"] == CARDS_WORDS
    assert again.engine.flow.config.prompts.goodbye["en"] == "Goodbye from Example Bank."
    assert any("faq:weekend_hours" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    # another menu saved on the restarted worker: the stale key does not block it
    await asyncio.to_thread(MenusAdmin(restarted).save, "complaints_menu", {"1": "complaint", "2": "complaint_status",
                                                                            "3": "agent"}, None, "ada")
    assert again.engine.flow.config.intents["complaints_menu"].options["3"] == "agent"
    with pytest.raises(ValueError, match="unknown target 'faq:weekend_hours'"):  # but the stale menu itself is
        await asyncio.to_thread(MenusAdmin(restarted).save, "cards_menu", {"6": "faq:weekend_hours"}, None, "ada")
    await again.stop()
