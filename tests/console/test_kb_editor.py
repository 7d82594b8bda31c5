"""The knowledge-base editor: routes x roles, CSRF, audit, hostile input, and a publish going live
for the next conversation without a restart (a real store, the real bank flow and engine)."""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.kb_console import KbConsole, kb_console

from dialog import Say

PASSWORDS = {"anna": "blue-harbour-7", "sam": "green-valley-42", "ada": "red-mountain-333"}
ANON, AGENT, SUP, ADMIN = "anonymous", "anna", "sam", "ada"
NEW_ANSWER = "Our branches now open Monday to Saturday from 8 am to 8 pm."


@pytest.fixture
async def kc(tmp_path: Path, users_db: Path) -> AsyncIterator[KbConsole]:
    async with kb_console(tmp_path, users_db) as c:
        yield c


def form_of(entry: dict[str, Any], **changes: str) -> dict[str, str]:
    """The editor's form fields for an entry, with some changed."""
    data = {"category": entry["category"], "version": str(entry["version"]),
            "effective_from": entry["effective_from"] or "", "effective_until": entry["effective_until"] or ""}
    for lang in ("en", "zh"):
        data[f"questions_{lang}"] = "\n".join(entry["questions"][lang])
        data[f"answer_{lang}"] = entry["answer"][lang]
    return {**data, **changes}


def phone_says(c: KbConsole, digit: str = "1") -> list[str]:
    """What a new call hears after pressing `digit` on the greeting (the engine new calls get)."""
    conv = c.live.engine.new_conversation("test-call", "13800138000", lang="en")
    conv.start()
    return [a.text for a in conv.handle_dtmf(digit) if isinstance(a, Say)]


async def test_kb_routes_answer_each_role_as_they_should(kc: KbConsole) -> None:
    entry = next(e for e in (await asyncio.to_thread(kc.kb.draft)) if e.id == "card_fees")
    from hotline.knowledge_live import _entry_dict

    base = form_of(_entry_dict(entry))
    new = {**base, "id": "kb_test_entry", "questions_en": "is there a test entry", "questions_zh": "有测试条目吗",
           "version": ""}
    routes: list[tuple[str, str, Any, dict[str, int]]] = [
        ("GET", "/admin/kb", None, {ANON: 302, AGENT: 403, SUP: 200, ADMIN: 200}),
        ("GET", "/admin/kb/card_fees", None, {ANON: 302, AGENT: 403, SUP: 200, ADMIN: 200}),
        ("GET", "/admin/kb/no_such_entry", None, {ANON: 302, AGENT: 403, SUP: 404, ADMIN: 404}),
        ("GET", "/admin/kb/new", None, {ANON: 302, AGENT: 403, SUP: 403, ADMIN: 200}),
        ("GET", "/api/kb", None, {ANON: 401, AGENT: 403, SUP: 200, ADMIN: 200}),
        ("POST", "/admin/kb/card_fees", base, {ANON: 302, AGENT: 403, SUP: 403, ADMIN: 302}),
        ("POST", "/admin/kb", new, {ANON: 302, AGENT: 403, SUP: 403, ADMIN: 302}),
        ("POST", "/admin/kb/kb_test_entry/delete", {}, {ANON: 302, AGENT: 403, SUP: 403, ADMIN: 302}),
        ("POST", "/admin/kb/publish", {}, {ANON: 302, AGENT: 403, SUP: 403, ADMIN: 302}),
        ("GET", "/chat", None, {ANON: 302, AGENT: 200, SUP: 200, ADMIN: 200}),
    ]
    wrong = await kc.wrong_statuses(routes, PASSWORDS)
    assert not wrong, "\n".join(wrong)
    # Only the admin's requests changed anything: one version published, the test entry added then deleted.
    assert await asyncio.to_thread(kc.kb.versions) == [1]
    assert "kb_test_entry" not in {e.id for e in await asyncio.to_thread(kc.kb.draft)}


async def test_supervisor_reads_the_editor_without_save_buttons(kc: KbConsole) -> None:
    await kc.login(SUP, PASSWORDS[SUP])
    page = await (await kc.client.get("/admin/kb/opening_hours")).text()
    assert "<fieldset disabled>" in page and 'id="kb-save"' not in page and 'id="kb-delete"' not in page
    listing = await (await kc.client.get("/admin/kb")).text()
    assert 'id="kb-publish"' not in listing and "opening_hours" in listing
    zh = await (await kc.client.get("/admin/kb?lang=zh")).text()
    assert "已发布版本" in zh and "草稿" in zh


async def test_admin_edits_publishes_and_the_next_call_hears_it(kc: KbConsole) -> None:
    token = await kc.login(ADMIN, PASSWORDS[ADMIN])
    before = phone_says(kc)
    assert NEW_ANSWER not in before and before, before
    entry = (await (await kc.client.get("/api/kb")).json())["entries"]
    opening = next(e for e in entry if e["id"] == "opening_hours")
    r = await kc.client.post("/admin/kb/opening_hours", data={**form_of(opening, answer_en=NEW_ANSWER),
                                                             "csrf_token": token}, allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/admin/kb?saved=opening_hours"
    assert phone_says(kc)[0] == before[0], "a draft edit is not live"
    r = await kc.client.post("/admin/kb/publish", headers={"X-CSRF-Token": token}, allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/admin/kb?published=1"
    assert phone_says(kc)[0] == NEW_ANSWER  # no restart: the next conversation has it
    assert kc.live.version == 1
    listing = await (await kc.client.get("/admin/kb?published=1")).text()
    assert 'id="kb-published"' in listing and "v1" in listing
    versions = (await (await kc.client.get("/api/kb")).json())["versions"]
    assert versions[0]["version"] == 1 and versions[0]["live"] and versions[0]["entries"] == len(entry)
    audit = await asyncio.to_thread(kc.users.audit_log, 20)
    actions = [(a.user, a.action, a.target) for a in audit]
    assert ("ada", "kb_edit", "opening_hours") in actions and ("ada", "kb_publish", "v1") in actions
    edit = next(a for a in audit if a.action == "kb_edit")
    assert edit.detail == "version 2 (draft): answer"


async def test_a_publish_by_the_cli_is_picked_up_by_the_poll(kc: KbConsole) -> None:
    kc.live.poll_s = 0.1
    await kc.live.start()
    await asyncio.to_thread(kc.kb.edit, "opening_hours", answer={"en": NEW_ANSWER})
    await asyncio.to_thread(kc.kb.publish)  # what `hotline kb publish` does
    for _ in range(50):
        if kc.live.version == 1:
            break
        await asyncio.sleep(0.1)
    assert phone_says(kc)[0] == NEW_ANSWER


async def test_calls_in_progress_keep_their_engine(kc: KbConsole) -> None:
    conv = kc.live.engine.new_conversation("in-progress", "1", lang="en")
    conv.start()
    await asyncio.to_thread(kc.kb.edit, "opening_hours", answer={"en": NEW_ANSWER})
    await asyncio.to_thread(kc.kb.publish)
    assert await asyncio.to_thread(kc.live.refresh)
    old = [a.text for a in conv.handle_dtmf("1") if isinstance(a, Say)]
    assert old[0] != NEW_ANSWER and phone_says(kc)[0] == NEW_ANSWER


async def test_add_and_delete_entries_and_new_entries_are_found(kc: KbConsole) -> None:
    token = await kc.login(ADMIN, PASSWORDS[ADMIN])
    fields = {"id": "parking", "category": "branches", "csrf_token": token,
              "questions_en": "where can I park\nis there parking at the branch",
              "questions_zh": "在哪里停车\n网点有停车场吗",
              "answer_en": "Every branch has free parking for customers.", "answer_zh": "每个网点都有免费客户停车位。"}
    r = await kc.client.post("/admin/kb", data=fields, allow_redirects=False)
    assert r.status == 302, await r.text()
    again = await kc.client.post("/admin/kb", data=fields, allow_redirects=False)
    assert again.status == 400 and "already in the draft" in await again.text()
    clash = await kc.client.post("/admin/kb", data={**fields, "id": "parking2"}, allow_redirects=False)
    assert clash.status == 400 and "already under" in await clash.text()
    reserved = await kc.client.post("/admin/kb", data={**fields, "id": "publish"}, allow_redirects=False)
    assert reserved.status == 400
    await kc.client.post("/admin/kb/publish", headers={"X-CSRF-Token": token}, allow_redirects=False)
    conv = kc.live.engine.new_conversation("c", "1", lang="en")
    conv.start()
    said = [a.text for a in conv.handle_text("is there parking at the branch", 1.0) if isinstance(a, Say)]
    assert said[0] == "Every branch has free parking for customers."
    r = await kc.client.post("/admin/kb/parking/delete", headers={"X-CSRF-Token": token}, allow_redirects=False)
    assert r.status == 302 and "parking" not in {e.id for e in await asyncio.to_thread(kc.kb.draft)}
    gone = await kc.client.post("/admin/kb/parking/delete", headers={"X-CSRF-Token": token}, allow_redirects=False)
    assert gone.status == 404
    actions = [a.action for a in await asyncio.to_thread(kc.users.audit_log, 20)]
    assert {"kb_add", "kb_delete", "kb_publish"} <= set(actions)


async def test_csrf_is_required_and_nothing_changes_without_it(kc: KbConsole) -> None:
    await kc.login(ADMIN, PASSWORDS[ADMIN])
    before = await asyncio.to_thread(kc.kb.draft)
    opening = next(e for e in (await (await kc.client.get("/api/kb")).json())["entries"] if e["id"] == "opening_hours")
    for path, body in (("/admin/kb/opening_hours", form_of(opening, answer_en="hijacked")),
                       ("/admin/kb/publish", {}), ("/admin/kb/opening_hours/delete", {}),
                       ("/admin/kb/opening_hours", {**form_of(opening, answer_en="hijacked"), "csrf_token": "wrong"})):
        r = await kc.client.post(path, data=body, allow_redirects=False)
        assert r.status == 403, (path, r.status)
    assert await asyncio.to_thread(kc.kb.draft) == before
    assert await asyncio.to_thread(kc.kb.versions) == []


async def test_bad_input_is_refused_naming_the_field_and_keeps_what_was_typed(kc: KbConsole) -> None:
    token = await kc.login(ADMIN, PASSWORDS[ADMIN])
    opening = next(e for e in (await (await kc.client.get("/api/kb")).json())["entries"] if e["id"] == "opening_hours")
    before = await asyncio.to_thread(kc.kb.draft)
    cases = [
        ({"answer_en": "x" * 3000}, 400, "answer_en: at most 2000 characters"),
        ({"effective_from": "2026-13-45"}, 400, "effective_from: expected a date like 2026-12-24"),
        ({"effective_from": "2027-01-10", "effective_until": "2027-01-01"}, 400, "is before effective_from"),
        ({"questions_zh": "  \n "}, 400, "questions_zh: at least one question"),
        ({"category": ""}, 400, "category: required"),
        ({"questions_en": "when do you open\nI lost my card"}, 400, "already under"),
        ({"version": "1", "answer_en": "stale edit"}, 200, ""),  # the current version: accepted
        ({"version": "1", "answer_en": "second stale edit"}, 409, "changed by someone else"),
    ]
    for changes, status, message in cases:
        r = await kc.client.post("/admin/kb/opening_hours", data={**form_of(opening, **changes), "csrf_token": token})
        body = await r.text()
        assert r.status == status, (changes, r.status, body[:300])
        assert html.escape(message, quote=True) in body, (changes, body[:300])
        if status >= 400:
            typed = next(v for k, v in changes.items() if k != "version")
            assert html.escape(typed[:50]) in body, "what the admin typed is shown again"
    huge = await kc.client.post("/admin/kb/opening_hours",
                                data={**form_of(opening, answer_en="y" * 70_000), "csrf_token": token})
    assert huge.status == 413
    bad_id = await kc.client.post("/admin/kb/Opening-Hours", data={"csrf_token": token})
    assert bad_id.status == 400
    after = {e.id: e for e in await asyncio.to_thread(kc.kb.draft)}
    assert after["opening_hours"].answer["en"] == "stale edit"  # only the one good edit
    assert {e.id for e in before} == set(after)


async def test_script_tags_are_stored_as_text_and_shown_escaped(kc: KbConsole) -> None:
    token = await kc.login(ADMIN, PASSWORDS[ADMIN])
    opening = next(e for e in (await (await kc.client.get("/api/kb")).json())["entries"] if e["id"] == "opening_hours")
    evil = 'Open 9 to 5 <script>alert("x")</script> <img src=x onerror=alert(1)>'
    r = await kc.client.post("/admin/kb/opening_hours",
                             data={**form_of(opening, answer_en=evil, category="<b>branches</b>"), "csrf_token": token})
    assert r.status == 200, await r.text()  # after the redirect: the list
    page = await (await kc.client.get("/admin/kb/opening_hours")).text()
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page and "<img src=x" not in page
    listing = await (await kc.client.get("/admin/kb")).text()
    assert "<b>branches</b>" not in listing and "&lt;b&gt;branches&lt;/b&gt;" in listing


async def test_the_console_alone_edits_the_same_store(tmp_path: Path) -> None:
    from hotline.settings import DEFAULT_CONFIG, load_settings
    from hotline.web import _offline_knowledge

    settings = load_settings(DEFAULT_CONFIG, data_dir=str(tmp_path / "var"))
    admin = await asyncio.to_thread(_offline_knowledge, settings)
    assert admin is not None and set(admin.languages) == {"en", "zh"}
    assert "opening_hours" in {e["id"] for e in await asyncio.to_thread(admin.entries)}  # seeded from the flow
    assert await asyncio.to_thread(admin.publish) == 1  # no live engine here: `hotline serve` polls for it
    assert (tmp_path / "var" / "knowledge" / "published" / "v0001.yaml").is_file()
    assert (await asyncio.to_thread(admin.versions))[0]["live"] is False


async def test_a_damaged_published_file_is_not_taken_live(kc: KbConsole) -> None:
    await asyncio.to_thread(kc.kb.publish)
    assert await asyncio.to_thread(kc.live.refresh) and kc.live.version == 1
    good = kc.live.engine
    (kc.kb.published_dir / "v0002.yaml").write_text("version: 1\nentries: [{id: Bad Id}]\n", encoding="utf-8")
    assert not await asyncio.to_thread(kc.live.refresh)
    assert kc.live.engine is good and kc.live.version == 1  # callers keep hearing version 1


async def test_admin_sees_what_a_version_changed_and_rolls_back_a_bad_publish(kc: KbConsole) -> None:
    """v1 as seeded, v2 with a wrong answer; the supervisor sees what v2 changed field by field; the admin
    rolls back to v1 (published again as v3, live for the next call at once, audited); the draft keeps the
    wrong answer for fixing, and the draft's unpublished changes are shown against v3."""
    token = await kc.login(ADMIN, PASSWORDS[ADMIN])
    good = phone_says(kc)[0]
    r = await kc.client.post("/admin/kb/publish", headers={"X-CSRF-Token": token}, allow_redirects=False)
    assert r.status == 302
    wrong = "Our branches are closed for ever."  # the bad publish
    await asyncio.to_thread(kc.kb.edit, "opening_hours", answer={"en": wrong})
    await asyncio.to_thread(kc.kb.edit, "card_fees", category="fees and charges")
    r = await kc.client.post("/admin/kb/publish", headers={"X-CSRF-Token": token}, allow_redirects=False)
    assert r.status == 302 and phone_says(kc)[0] == wrong

    listing = await (await kc.client.get("/admin/kb")).text()
    assert 'href="/admin/kb/changes?old=1&amp;new=2"' in listing and listing.count('class="inline kb-rollback"') == 1
    page = html.unescape(await (await kc.client.get("/admin/kb/changes?old=1&new=2")).text())
    assert 'data-id="opening_hours" data-kind="changed" data-field="answer.en"' in page
    assert 'data-id="card_fees" data-kind="changed" data-field="category"' in page
    assert wrong in page and good in page and page.count('class="kb-change"') == 2

    r = await kc.client.post("/admin/kb/rollback", data={"version": "1", "csrf_token": token}, allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/admin/kb?published=3&rollback_of=1"
    assert phone_says(kc)[0] == good and kc.live.version == 3  # the next call, no restart
    versions = (await (await kc.client.get("/api/kb")).json())["versions"]
    assert [(v["version"], v["rollback_of"], v["live"]) for v in versions] == [(3, 1, True), (2, None, False),
                                                                               (1, None, False)]
    listing = await (await kc.client.get("/admin/kb?published=3&rollback_of=1")).text()
    assert 'id="kb-published"' in listing and "v1" in listing
    page = html.unescape(await (await kc.client.get("/admin/kb/changes?old=2&new=3")).text())
    assert page.count('class="kb-change"') == 2  # v3 undoes both of v2's changes
    none = await (await kc.client.get("/admin/kb/changes?old=1&new=3")).text()
    assert 'id="kb-no-changes"' in none
    # the draft still has the wrong answer, shown as not yet published (default: live -> draft)
    draft = html.unescape(await (await kc.client.get("/admin/kb/changes")).text())
    assert wrong in draft and 'data-field="answer.en"' in draft

    # bad requests: not a number, an unknown version, the newest version, no CSRF, a supervisor
    for body, status in [({"version": "x"}, 400), ({"version": "99"}, 404), ({"version": "3"}, 400),
                         ({"version": "1" * 40}, 400)]:
        r = await kc.client.post("/admin/kb/rollback", data={**body, "csrf_token": token}, allow_redirects=False)
        assert r.status == status, (body, r.status, (await r.text())[:200])
    r = await kc.client.post("/admin/kb/rollback", data={"version": "2"}, allow_redirects=False)
    assert r.status == 403
    for query, status in [("old=<script>&new=draft", 400), ("old=7&new=draft", 404), ("old=1&new=v2", 200)]:
        r = await kc.client.get(f"/admin/kb/changes?{query}")
        assert r.status == status, (query, r.status)
    await kc.logout()
    sup_token = await kc.login(SUP, PASSWORDS[SUP])
    r = await kc.client.post("/admin/kb/rollback", data={"version": "2", "csrf_token": sup_token},
                             allow_redirects=False)
    assert r.status == 403
    assert (await kc.client.get("/admin/kb/changes?old=1&new=2")).status == 200  # supervisors read
    assert 'class="inline kb-rollback"' not in await (await kc.client.get("/admin/kb")).text()
    assert await asyncio.to_thread(kc.kb.versions) == [1, 2, 3]
    audit = [(a.user, a.action, a.target, a.detail) for a in await asyncio.to_thread(kc.users.audit_log, 20)]
    assert ("ada", "kb_rollback", "v3", "entries of v1") in audit
