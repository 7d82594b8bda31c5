"""Prompt administration: routes x roles, "listen" (the hotline's own normaliser, espeak-ng synthesizer and
prompt cache, as a caller hears it), edit with its checks, CSRF, audit, a change heard by the next call
(the real bank flow and engine, swapped the way a knowledge-base publish swaps it), reset, and a restart."""

from __future__ import annotations

import asyncio
import html
import io
import itertools
import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.kb_console import FLOW

from dialog import DialogEngine, Say
from dialog.flow import load_flow
from dialog.knowledge_store import KnowledgeStore
from hotline.knowledge_live import LiveKnowledge
from hotline.prompts_live import PromptsAdmin
from tts import PromptCache

from .conftest import PromptConsole

PASSWORDS = {"anna": "blue-harbour-7", "sam": "green-valley-42", "ada": "red-mountain-333"}
ANON, AGENT, SUP, ADMIN = "anonymous", "anna", "sam", "ada"
NEW_GREETING = "Welcome to Example Bank, now open on Saturdays. Press 0 for an agent."


def greeting(engine: DialogEngine, lang: str = "en") -> str:
    """The first thing a new call hears."""
    conv = engine.new_conversation("test-call", "13800138000", lang=lang)
    return next(a.text for a in conv.start() if isinstance(a, Say))


def check_wav(body: bytes) -> float:
    """A mono PCM16 8 kHz WAV: its RMS (speech, not silence)."""
    with wave.open(io.BytesIO(body)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
    assert len(pcm) > 8000 * 0.5, "at least half a second of audio"
    return float(np.sqrt(np.mean(pcm**2)))


async def test_prompt_routes_answer_each_role_as_they_should(pc: PromptConsole) -> None:
    base = greeting(pc.kc.live.engine)
    routes: list[tuple[str, str, Any, dict[str, int]]] = [
        ("GET", "/admin/prompts", None, {ANON: 302, AGENT: 403, SUP: 200, ADMIN: 200}),
        ("GET", "/api/prompts", None, {ANON: 401, AGENT: 403, SUP: 200, ADMIN: 200}),
        ("GET", "/admin/prompts/listen?key=goodbye&lang=en", None, {ANON: 302, AGENT: 403, SUP: 200, ADMIN: 200}),
        ("POST", "/admin/prompts/listen", {"text": "Hello", "lang": "en"},
         {ANON: 302, AGENT: 403, SUP: 200, ADMIN: 200}),
        ("POST", "/admin/prompts/save", {"key": "greeting", "lang": "en", "text": base},
         {ANON: 302, AGENT: 403, SUP: 403, ADMIN: 302}),
        ("POST", "/admin/prompts/reset", {"key": "greeting", "lang": "en"},
         {ANON: 302, AGENT: 403, SUP: 403, ADMIN: 302}),
    ]
    wrong = await pc.kc.wrong_statuses(routes, PASSWORDS)
    assert not wrong, "\n".join(wrong)
    # the supervisor sees the texts and the players, no save button
    await pc.kc.logout()
    await pc.kc.login(SUP, PASSWORDS[SUP])
    page = await (await pc.client.get("/admin/prompts")).text()
    assert 'id="p-greeting"' in page and 'id="p-transfer.announcement"' in page and 'id="p-no_match.2"' in page
    assert '<audio controls preload="none" src="/admin/prompts/listen?key=greeting&amp;lang=zh">' in page
    assert 'class="save"' not in page and "readonly" in page


async def test_listen_is_speech_in_both_languages_and_bad_requests_are_refused(pc: PromptConsole) -> None:
    token = await pc.kc.login(SUP, PASSWORDS[SUP])
    for lang in ("en", "zh"):
        r = await pc.client.get(f"/admin/prompts/listen?key=greeting&lang={lang}")
        assert r.status == 200 and r.content_type == "audio/wav"
        assert check_wav(await r.read()) > 300, f"{lang}: speech energy"
    r = await pc.client.post("/admin/prompts/listen",
                             data={"text": "您好，欢迎致电。", "lang": "zh", "csrf_token": token})
    assert r.status == 200 and check_wav(await r.read()) > 300
    bad = [
        ("GET", "/admin/prompts/listen?key=no_such_prompt&lang=en", None, 404),
        ("GET", "/admin/prompts/listen?key=no_match.9&lang=en", None, 404),
        ("GET", "/admin/prompts/listen?key=../etc&lang=en", None, 400),
        ("GET", "/admin/prompts/listen?key=greeting&lang=fr", None, 400),
        ("POST", "/admin/prompts/listen", {"text": "x" * 1001, "lang": "en", "csrf_token": token}, 413),
        ("POST", "/admin/prompts/listen", {"text": "  ", "lang": "en", "csrf_token": token}, 400),
        ("POST", "/admin/prompts/listen", {"text": "Hello", "lang": "en"}, 403),  # no CSRF token
    ]
    for method, path, body, status in bad:
        r = await pc.client.request(method, path, data=body)
        assert r.status == status, f"{method} {path}: {r.status} {await r.text()}"
        assert len(await r.text()) > 5, "a refusal says why"


async def test_an_edit_is_heard_by_the_next_call_survives_a_restart_and_resets(pc: PromptConsole) -> None:
    live = pc.kc.live
    base = greeting(live.engine)
    in_progress = live.engine.new_conversation("call-in-progress", "13800138000", lang="en")
    token = await pc.kc.login(ADMIN, PASSWORDS[ADMIN])
    # without the CSRF token nothing changes
    r = await pc.client.post("/admin/prompts/save", data={"key": "greeting", "lang": "en", "text": NEW_GREETING})
    assert r.status == 403 and greeting(live.engine) == base
    r = await pc.client.post("/admin/prompts/save", allow_redirects=False,
                             data={"key": "greeting", "lang": "en", "text": NEW_GREETING, "csrf_token": token})
    assert r.status == 302, await r.text()
    assert greeting(live.engine) == NEW_GREETING, "the next call hears the new greeting"
    assert greeting(live.engine, "zh") != NEW_GREETING, "the other language is untouched"
    assert next(a.text for a in in_progress.start() if isinstance(a, Say)) == base, "a call in progress keeps its"
    page = await (await pc.client.get("/admin/prompts?saved=greeting/en")).text()
    assert html.escape(NEW_GREETING) in page and "prompts-saved" in page and 'class="inline prompt-reset"' in page
    # a knowledge-base publish keeps the changed prompt
    await asyncio.to_thread(pc.kc.kb.publish)
    assert await asyncio.to_thread(live.refresh) and greeting(live.engine) == NEW_GREETING
    # a restart: a new LiveKnowledge and LivePrompts over the same folders
    again, _ = await pc.restarted()
    assert greeting(again.engine) == NEW_GREETING
    # reset to the configuration file
    r = await pc.client.post("/admin/prompts/reset", allow_redirects=False,
                             data={"key": "greeting", "lang": "en", "csrf_token": token})
    assert r.status == 302 and greeting(live.engine) == base
    audit = [(a.user, a.action, a.target, a.detail) for a in await asyncio.to_thread(pc.kc.users.audit_log, 20)]
    assert (ADMIN, "prompt_changed", "greeting/en", f"{len(base)} -> {len(NEW_GREETING)} characters") in audit
    assert (ADMIN, "prompt_reset", "greeting/en", f"{len(NEW_GREETING)} -> {len(base)} characters") in audit
    history = [json.loads(line) for line in (pc.folder / "prompts" / "history.jsonl").read_text().splitlines()]
    assert [(h["version"], h["action"], h["new"]) for h in history] == [(1, "changed", NEW_GREETING),
                                                                       (2, "reset", base)]


async def test_bad_text_is_refused_naming_the_problem_and_kept_in_the_form(pc: PromptConsole) -> None:
    live = pc.kc.live
    base = greeting(live.engine)
    token = await pc.kc.login(ADMIN, PASSWORDS[ADMIN])
    cases = [
        ("Goodbye {name}, thank you for calling.", 400, "unknown placeholder {name}"),
        ("Goodbye { and thanks", 400, "unbalanced"),
        ("   ", 400, "text: required"),
        ("a" * 1001, 400, "at most 1000 characters"),
    ]
    for text, status, says in cases:
        r = await pc.client.post("/admin/prompts/save", data={"key": "greeting", "lang": "en", "text": text,
                                                               "csrf_token": token})
        body = html.unescape(await r.text())
        assert r.status == status and says in body, f"{text[:30]!r}: {r.status} {body[:200]}"
        if text.strip():
            assert text in body, "what was typed is shown again"
    r = await pc.client.post("/admin/prompts/save", data={"key": "no_such", "lang": "en", "text": "Hi",
                                                           "csrf_token": token})
    assert r.status == 404
    assert greeting(live.engine) == base and not (pc.folder / "prompts" / "prompts.json").exists()
    # a prompt that takes placeholders: each must stay, and a missing one is named
    from hotline.prompts_live import check_text

    with pytest.raises(ValueError, match=r"missing placeholder \{position\}"):
        check_text("You are next in line.", "You are number {position} in line.")
    tidy = check_text(" You  are number {position}. ", "You are number {position} in line.")
    assert tidy == "You are number {position}."


async def test_the_composition_applies_stored_changes_at_start_and_hands_the_console_its_admin(
        pc: PromptConsole, cache: PromptCache) -> None:
    """hotline/server.py and hotline/web.py call these two with the `Hotline` object."""
    from types import SimpleNamespace

    from hotline.prompts_live import prompts_admin, start_live_prompts

    await asyncio.to_thread(pc.prompts.store.save, {"goodbye": {"zh": "再见，谢谢。"}}, {"action": "changed"})
    flow = load_flow(FLOW)
    live = LiveKnowledge(flow, DialogEngine(flow), KnowledgeStore(pc.folder / "knowledge", flow.languages), poll_s=0)
    swapped: list[DialogEngine] = []
    live.on_swap.append(swapped.append)
    settings = SimpleNamespace(data_dir=pc.folder, dialog=SimpleNamespace(prompts_dir=None))
    hotline = SimpleNamespace(knowledge=live, settings=settings, deps=None)
    hotline.prompts_live = await start_live_prompts(hotline)
    assert swapped and live.engine is swapped[-1]
    assert live.engine.flow.config.prompts.goodbye["zh"] == "再见，谢谢。"
    assert prompts_admin(hotline) is None, "no admin before the sessions' prompt cache exists"
    hotline.deps = SimpleNamespace(prompts=cache)
    admin = prompts_admin(hotline)
    assert admin is not None and admin.sample_rate == 8000
    goodbye = admin.prompt("goodbye")
    assert goodbye is not None and goodbye["changed"] == {"en": False, "zh": True}
    # a damaged file is left alone: the flow file's prompts are heard, and saving refuses rather than overwrite it
    (pc.folder / "prompts" / "prompts.json").write_text("{not json", encoding="utf-8")
    hotline.knowledge = LiveKnowledge(flow, DialogEngine(flow), live.store, poll_s=0)
    again = await start_live_prompts(hotline)
    assert again is not None and again.overrides == {}
    with pytest.raises(OSError, match="not readable"):
        PromptsAdmin(again, cache.render).save("goodbye", "en", "Bye now.")
    assert (pc.folder / "prompts" / "prompts.json").read_text(encoding="utf-8") == "{not json"


async def _until(check: Any, timeout: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        if loop.time() > end:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_a_change_saved_on_one_worker_reaches_the_others_and_concurrent_saves_lose_nothing(
        pc: PromptConsole, cache: PromptCache, caplog: pytest.LogCaptureFixture) -> None:
    """Two workers sharing the prompts and knowledge folders: worker A is the console's (the `pc` fixture),
    worker B is composed as hotline/server.py composes one, with its knowledge poller running every 0.1 s."""
    import threading
    from types import SimpleNamespace

    from hotline.prompts_live import start_live_prompts

    flow = load_flow(FLOW)
    live_b = LiveKnowledge(flow, DialogEngine(flow), KnowledgeStore(pc.folder / "knowledge", flow.languages),
                           poll_s=0.1)
    swapped: list[DialogEngine] = []
    live_b.on_swap.append(swapped.append)
    await live_b.start()
    # its own data_dir; the prompts folder shared by `dialog.prompts_dir` (knowledge: `dialog.knowledge_dir`)
    shared = SimpleNamespace(prompts_dir=str(pc.folder / "prompts"))
    settings = SimpleNamespace(data_dir=pc.folder / "worker-b", dialog=shared)
    worker_b = SimpleNamespace(knowledge=live_b, settings=settings, deps=None)
    prompts_b = await start_live_prompts(worker_b)
    assert prompts_b is not None
    try:
        base = greeting(live_b.engine)
        token = await pc.kc.login(ADMIN, PASSWORDS[ADMIN])
        r = await pc.client.post("/admin/prompts/save", allow_redirects=False,
                                 data={"key": "greeting", "lang": "en", "text": NEW_GREETING, "csrf_token": token})
        assert r.status == 302, await r.text()
        assert await _until(lambda: greeting(live_b.engine) == NEW_GREETING), "worker B's next call hears it"
        assert swapped and swapped[-1] is live_b.engine and prompts_b.version == 1
        # both workers' consoles save at once, each a different prompt, 6 times: nothing is lost
        admin_a = PromptsAdmin(pc.prompts, cache.render)
        admin_b = PromptsAdmin(prompts_b, cache.render)
        start = threading.Barrier(2)

        def saves(admin: PromptsAdmin, lang: str, word: str) -> None:
            start.wait(5)
            for i in range(6):
                admin.save("goodbye", lang, f"{word}{i}.", user=lang)

        await asyncio.gather(asyncio.to_thread(saves, admin_a, "en", "Goodbye "),
                             asyncio.to_thread(saves, admin_b, "zh", "再见"))
        stored = json.loads((pc.folder / "prompts" / "prompts.json").read_text(encoding="utf-8"))
        assert stored["version"] == 13
        last = {"en": "Goodbye 5.", "zh": "再见5."}
        assert stored["overrides"] == {"greeting": {"en": NEW_GREETING}, "goodbye": last}
        history = [json.loads(line) for line in (pc.folder / "prompts" / "history.jsonl").read_text().splitlines()]
        assert [h["version"] for h in history] == list(range(1, 14))
        for user in ("en", "zh"):  # each console's changes in its own order, each one's old text the one before
            mine = [h for h in history if h.get("user") == user]
            assert [h["new"] for h in mine][-1].endswith("5.") and len(mine) == 6
            assert all(b["old"] == a["new"] for a, b in itertools.pairwise(mine))
        # worker A catches up by its own save; worker B by its poller
        assert await _until(lambda: prompts_b.version == 13)
        assert live_b.engine.flow.config.prompts.goodbye == last
        assert greeting(live_b.engine) == NEW_GREETING
        # a damaged file: worker B keeps what it has and says so once, not every poll
        caplog.clear()
        damaged = pc.folder / "prompts" / "damaged.tmp"
        damaged.write_text("{not json", encoding="utf-8")
        damaged.replace(pc.folder / "prompts" / "prompts.json")  # at once: the poller never reads it half written
        await asyncio.sleep(0.6)
        unreadable = [r for r in caplog.records if "not readable" in r.getMessage()]
        assert len(unreadable) == 1 and unreadable[0].levelname == "ERROR", unreadable
        assert greeting(live_b.engine) == NEW_GREETING and prompts_b.version == 13
        with pytest.raises(OSError, match="not readable"):
            admin_b.save("greeting", "en", "Hello.")
        assert (pc.folder / "prompts" / "prompts.json").read_text(encoding="utf-8") == "{not json"
    finally:
        await live_b.stop()
    assert greeting(DialogEngine(flow)) == base


@pytest.mark.slow
async def test_chromium_plays_a_prompt_with_the_listen_player(pc: PromptConsole, shots: Path) -> None:
    """The page's <audio> element loads the listen URL in Debian's chromium and has the prompt's length."""
    from playwright.async_api import async_playwright

    url = str(pc.client.make_url(""))
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                           args=["--no-sandbox", "--disable-gpu", "--no-first-run",
                                                 "--autoplay-policy=no-user-gesture-required"])
        try:
            page = await (await browser.new_context(viewport={"width": 1280, "height": 800})).new_page()
            await page.goto(f"{url}/login")
            await page.fill("input[name=user]", ADMIN)
            await page.fill("input[name=password]", PASSWORDS[ADMIN])
            await page.click("button[type=submit]")
            await page.wait_for_load_state()
            await page.goto(f"{url}/admin/prompts")
            player = page.locator('#p-goodbye td[data-lang="en"] audio')
            duration = await player.evaluate(
                """a => new Promise((ok, fail) => { a.onloadedmetadata = () => ok(a.duration);
                   a.onerror = () => fail(new Error('audio error ' + (a.error && a.error.code)));
                   a.preload = 'auto'; a.load(); })""")
            assert 1.0 < duration < 10.0, duration
            await page.screenshot(path=str(shots / "admin-prompts.png"))
        finally:
            await browser.close()
