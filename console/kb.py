"""The knowledge-base editor (admin; supervisors may read): the draft's entries, edit, add, delete,
publish, versions. The console never imports dialog/: `hotline/web.py` hands `create_app` an object
that satisfies `KnowledgeAdmin` (plain dicts in and out), see docs/ARCHITECTURE.md."""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlencode

from aiohttp import web

from console.context import ctx, lang_of, requires, user_of
from console.i18n import translate
from recordings.users import Role

log = logging.getLogger(__name__)

ENTRY_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_ANSWER = 2000  # characters of one answer (a spoken answer of a minute is about 900)
MAX_QUESTION = 300
MAX_QUESTIONS = 50  # question variants per language
MAX_CATEGORY = 64
RESERVED_IDS = {"new", "publish", "unanswered", "changes", "rollback"}  # paths of the editor itself
SOURCE = re.compile(r"^(draft|published|v?[0-9]{1,6})$")  # a side of a comparison


class KbConflict(Exception):
    """The entry changed since the editor opened it (another admin saved first)."""


class KnowledgeAdmin(Protocol):
    """What the console needs of the knowledge-base store. Entries are plain dicts:
    `{"id", "category", "questions": {lang: [str]}, "answer": {lang: str}, "keywords": {lang: [str]},
    "effective_from": "YYYY-MM-DD" | None, "effective_until": ..., "version": int}`.
    Blocking (the console calls it from its thread pool). Bad content raises ValueError with a message
    naming the field; an unknown id LookupError; a stale `expected_version` KbConflict."""

    @property
    def languages(self) -> Sequence[str]: ...

    def entries(self) -> list[dict[str, Any]]: ...

    def entry(self, entry_id: str) -> dict[str, Any] | None: ...

    def create(self, data: dict[str, Any]) -> dict[str, Any]: ...

    def update(self, entry_id: str, data: dict[str, Any], expected_version: int | None = None) -> dict[str, Any]: ...

    def delete(self, entry_id: str) -> None: ...

    def publish(self) -> int: ...

    def versions(self) -> list[dict[str, Any]]:
        """Newest first: `{"version", "time", "entries", "rollback_of": int | None, "live": bool}`."""
        ...

    def rollback(self, version: int) -> int:
        """Publishes `version`'s entries again as the next version (live at once); returns its number.
        LookupError: no such version; ValueError: the newest version, or a damaged file."""
        ...

    def changes(self, old: str | int, new: str | int) -> list[dict[str, Any]]:
        """What differs from `old` to `new` (a version number, "published" or "draft"):
        `[{"id", "kind": "added" | "removed" | "changed", "fields": ["answer.en", ...], "old", "new"}]` with
        the entries as dicts (None where absent). LookupError: no such version."""
        ...

    def unanswered(self) -> dict[str, Any]:
        """The questions callers asked that nothing answered, clustered: `{"clusters": [{"lang", "label",
        "count", "examples": [{"text", "call_id", "time"}], "last_asked"}], "questions", "unreadable"}`."""
        ...


def _admin(request: web.Request) -> KnowledgeAdmin:
    kb = ctx(request).knowledge
    if kb is None:
        raise web.HTTPServiceUnavailable(text=translate("kb_off", lang_of(request)))
    return kb


def checked_entry_id(raw: str) -> str:
    if not ENTRY_ID.match(raw):
        raise web.HTTPBadRequest(text="bad entry id: lower case letters, digits and _, starting with a letter, "
                                      "at most 64")
    return raw


def _day(name: str, raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return datetime.date.fromisoformat(raw).isoformat()
    except ValueError:
        raise ValueError(f"{name}: expected a date like 2026-12-24, got {raw[:40]!r}") from None


def entry_from_form(form: Any, languages: Sequence[str]) -> dict[str, Any]:
    """The editor's fields as an entry dict; ValueError names the first bad field."""
    category = str(form.get("category", "")).strip()
    if not category:
        raise ValueError("category: required")
    if len(category) > MAX_CATEGORY:
        raise ValueError(f"category: at most {MAX_CATEGORY} characters")
    questions: dict[str, list[str]] = {}
    answer: dict[str, str] = {}
    for lang in languages:
        lines = [q.strip() for q in str(form.get(f"questions_{lang}", "")).splitlines() if q.strip()]
        if not lines:
            raise ValueError(f"questions_{lang}: at least one question, one per line")
        if len(lines) > MAX_QUESTIONS:
            raise ValueError(f"questions_{lang}: at most {MAX_QUESTIONS} questions")
        long = next((q for q in lines if len(q) > MAX_QUESTION), None)
        if long is not None:
            raise ValueError(f"questions_{lang}: a question is longer than {MAX_QUESTION} characters")
        text = " ".join(str(form.get(f"answer_{lang}", "")).split())
        if not text:
            raise ValueError(f"answer_{lang}: required")
        if len(text) > MAX_ANSWER:
            raise ValueError(f"answer_{lang}: at most {MAX_ANSWER} characters (got {len(text)})")
        questions[lang], answer[lang] = lines, text
    start = _day("effective_from", str(form.get("effective_from", "")))
    until = _day("effective_until", str(form.get("effective_until", "")))
    if start and until and until < start:
        raise ValueError(f"effective_until: {until} is before effective_from {start}")
    return {"category": category, "questions": questions, "answer": answer,
            "effective_from": start, "effective_until": until}


def _form_values(form: Any, languages: Sequence[str]) -> dict[str, Any]:
    """What the editor sent, to show it again after a refusal (nothing typed is lost)."""
    return {
        "id": str(form.get("id", ""))[:64], "category": str(form.get("category", ""))[:MAX_CATEGORY * 2],
        "questions": {lang: str(form.get(f"questions_{lang}", "")).splitlines() for lang in languages},
        "answer": {lang: str(form.get(f"answer_{lang}", "")) for lang in languages},
        "effective_from": str(form.get("effective_from", ""))[:40] or None,
        "effective_until": str(form.get("effective_until", ""))[:40] or None,
        "version": str(form.get("version", "")),
    }


def _can_edit(request: web.Request) -> bool:
    return user_of(request).at_least(Role.ADMIN)


# -- pages ---------------------------------------------------------------------------------------
@requires(Role.SUPERVISOR)
async def kb_list(request: web.Request) -> web.StreamResponse:
    return await _list_page(request)


async def _list_page(request: web.Request, error: str = "", status: int = 200) -> web.StreamResponse:
    from console.pages import render

    c, kb = ctx(request), _admin(request)
    entries = await c.db(kb.entries)
    versions = await c.db(kb.versions)
    return render(request, "kb.html", status, entries=entries, versions=versions, languages=list(kb.languages),
                  error=error, can_edit=_can_edit(request), saved=request.query.get("saved", "")[:64],
                  published=request.query.get("published", "")[:10], deleted=request.query.get("deleted", "")[:64],
                  rollback_of=request.query.get("rollback_of", "")[:10])


async def _entry_page(request: web.Request, entry: dict[str, Any], *, new: bool, error: str = "",
                      status: int = 200) -> web.StreamResponse:
    from console.pages import render

    return render(request, "kb_entry.html", status, entry=entry, new=new, error=error,
                  languages=list(_admin(request).languages), can_edit=_can_edit(request),
                  max_answer=MAX_ANSWER)


@requires(Role.SUPERVISOR)
async def kb_entry(request: web.Request) -> web.StreamResponse:
    c, kb = ctx(request), _admin(request)
    entry_id = checked_entry_id(request.match_info["entry"])
    entry = await c.db(kb.entry, entry_id)
    if entry is None:
        raise web.HTTPNotFound(text=f"no entry {entry_id} in the draft")
    return await _entry_page(request, entry, new=False)


@requires(Role.ADMIN)
async def kb_new(request: web.Request) -> web.StreamResponse:
    langs = _admin(request).languages
    blank: dict[str, Any] = {"id": "", "category": "", "questions": {lang: [] for lang in langs},
             "answer": {lang: "" for lang in langs}, "effective_from": None, "effective_until": None, "version": ""}
    # started from a cluster of unanswered questions: its questions, one per line, in their language
    lang = request.query.get("lang", "")
    if lang in langs:
        asked = [q.strip()[:MAX_QUESTION] for q in request.query.getall("q", []) if q.strip()][:MAX_QUESTIONS]
        blank["questions"][lang] = asked
    return await _entry_page(request, blank, new=True)


@requires(Role.SUPERVISOR)
async def kb_unanswered(request: web.Request) -> web.StreamResponse:
    """What callers asked that the knowledge base could not answer, grouped (read by supervisors, admins
    start an entry from a group)."""
    from console.pages import render

    c, kb = ctx(request), _admin(request)
    data = await c.db(kb.unanswered)
    lang = request.query.get("lang_filter", "")
    clusters = [{**cl, "new_url": "/admin/kb/new?" + urlencode(
        [("lang", cl["lang"]), *(("q", e["text"]) for e in cl["examples"])])}
        for cl in data["clusters"] if not lang or cl["lang"] == lang]
    return render(request, "kb_unanswered.html", clusters=clusters, total=data["questions"],
                  unreadable=data["unreadable"], can_edit=_can_edit(request))


@requires(Role.ADMIN)
async def kb_create(request: web.Request) -> web.StreamResponse:
    c, kb, user = ctx(request), _admin(request), user_of(request)
    form = await request.post()
    raw_id = str(form.get("id", "")).strip()
    try:
        if not ENTRY_ID.match(raw_id):
            raise ValueError("id: lower case letters, digits and _, starting with a letter, at most 64")
        if raw_id in RESERVED_IDS:
            raise ValueError(f"id: {raw_id!r} is a page of the editor; choose another")
        data = {"id": raw_id, **entry_from_form(form, kb.languages)}
        saved = await c.db(kb.create, data)
    except ValueError as exc:
        return await _entry_page(request, _form_values(form, kb.languages), new=True, error=str(exc), status=400)
    await c.db(c.users.audit, user.name, "kb_add", saved["id"], f"version {saved['version']} (draft)")
    log.info("console: %s added knowledge entry %s to the draft", user.name, saved["id"])
    raise web.HTTPFound(f"/admin/kb?saved={saved['id']}")


@requires(Role.ADMIN)
async def kb_update(request: web.Request) -> web.StreamResponse:
    c, kb, user = ctx(request), _admin(request), user_of(request)
    entry_id = checked_entry_id(request.match_info["entry"])
    form = await request.post()
    raw_version = str(form.get("version", "")).strip()
    try:
        expected = int(raw_version) if raw_version else None
        data = entry_from_form(form, kb.languages)
        before = await c.db(kb.entry, entry_id)
        saved = await c.db(kb.update, entry_id, data, expected)
    except LookupError:
        raise web.HTTPNotFound(text=f"no entry {entry_id} in the draft (deleted meanwhile?)") from None
    except KbConflict as exc:
        values = {**_form_values(form, kb.languages), "id": entry_id}
        return await _entry_page(request, values, new=False, error=str(exc), status=409)
    except ValueError as exc:
        values = {**_form_values(form, kb.languages), "id": entry_id}
        return await _entry_page(request, values, new=False, error=str(exc), status=400)
    if before is None or saved["version"] != before["version"]:
        changed = sorted(k for k in ("category", "questions", "answer", "effective_from", "effective_until")
                         if before is None or before.get(k) != saved.get(k))
        await c.db(c.users.audit, user.name, "kb_edit", entry_id,
                   f"version {saved['version']} (draft): {', '.join(changed)}")
        log.info("console: %s edited knowledge entry %s (%s)", user.name, entry_id, ", ".join(changed))
    raise web.HTTPFound(f"/admin/kb?saved={entry_id}")


@requires(Role.ADMIN)
async def kb_delete(request: web.Request) -> web.StreamResponse:
    c, kb, user = ctx(request), _admin(request), user_of(request)
    entry_id = checked_entry_id(request.match_info["entry"])
    try:
        await c.db(kb.delete, entry_id)
    except LookupError:
        raise web.HTTPNotFound(text=f"no entry {entry_id} in the draft") from None
    except ValueError as exc:
        return await _list_page(request, str(exc), 400)
    await c.db(c.users.audit, user.name, "kb_delete", entry_id, "draft")
    log.info("console: %s deleted knowledge entry %s from the draft", user.name, entry_id)
    raise web.HTTPFound(f"/admin/kb?deleted={entry_id}")


@requires(Role.ADMIN)
async def kb_publish(request: web.Request) -> web.StreamResponse:
    c, kb, user = ctx(request), _admin(request), user_of(request)
    try:
        version = await c.db(kb.publish)
    except ValueError as exc:
        return await _list_page(request, str(exc), 400)
    entries = len(await c.db(kb.entries))
    await c.db(c.users.audit, user.name, "kb_publish", f"v{version}", f"{entries} entries")
    log.info("console: %s published knowledge base version %d", user.name, version)
    raise web.HTTPFound(f"/admin/kb?published={version}")


@requires(Role.ADMIN)
async def kb_rollback(request: web.Request) -> web.StreamResponse:
    """`POST /admin/kb/rollback` (form `version`): that version's entries published again, live at once."""
    c, kb, user = ctx(request), _admin(request), user_of(request)
    form = await request.post()
    raw = str(form.get("version", "")).strip().lstrip("v")
    if not raw.isdigit() or len(raw) > 6:
        return await _list_page(request, "version: a published version number", 400)
    old = int(raw)
    try:
        version = await c.db(kb.rollback, old)
    except LookupError:
        raise web.HTTPNotFound(text=f"no published version {old}") from None
    except ValueError as exc:
        return await _list_page(request, str(exc), 400)
    await c.db(c.users.audit, user.name, "kb_rollback", f"v{version}", f"entries of v{old}")
    log.info("console: %s rolled the knowledge base back to version %d (now version %d)", user.name, old, version)
    raise web.HTTPFound(f"/admin/kb?published={version}&rollback_of={old}")


def _side(raw: str) -> str | int:
    if not SOURCE.match(raw):
        raise web.HTTPBadRequest(text="old, new: a version number, 'published' or 'draft'")
    return raw if raw in ("draft", "published") else int(raw.lstrip("v"))


def _field_text(entry: dict[str, Any] | None, field: str) -> str:
    """One field of an entry as text: `answer.en`, `questions.zh` (one per line), `category`, ..."""
    if entry is None:
        return ""
    key, _, lang = field.partition(".")
    value = entry.get(key)
    if lang:
        value = (value or {}).get(lang)
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return "" if value is None else str(value)


@requires(Role.SUPERVISOR)
async def kb_changes(request: web.Request) -> web.StreamResponse:
    """`GET /admin/kb/changes?old=&new=`: entries added, removed and changed, field by field, between two
    published versions or the draft (default: the newest published version to the draft)."""
    from console.pages import render

    c, kb = ctx(request), _admin(request)
    old, new = _side(request.query.get("old", "published")), _side(request.query.get("new", "draft"))
    try:
        changes = await c.db(kb.changes, old, new)
    except LookupError as exc:
        raise web.HTTPNotFound(text=str(exc.args[0] if exc.args else exc)) from None
    rows = [{**ch, "pairs": [(f, _field_text(ch["old"], f), _field_text(ch["new"], f)) for f in ch["fields"]]}
            for ch in changes]
    lang = lang_of(request)
    label = {"draft": translate("kb_draft", lang).lower(), "published": translate("kb_live", lang)}
    return render(request, "kb_changes.html", changes=rows, old=label.get(str(old), f"v{old}"),
                  new=label.get(str(new), f"v{new}"))


# -- JSON ----------------------------------------------------------------------------------------
@requires(Role.SUPERVISOR)
async def kb_api(request: web.Request) -> web.StreamResponse:
    c, kb = ctx(request), _admin(request)
    return web.json_response({"languages": list(kb.languages), "entries": await c.db(kb.entries),
                              "versions": await c.db(kb.versions)})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/admin/kb", kb_list)
    r.add_post("/admin/kb", kb_create)
    r.add_get("/admin/kb/new", kb_new)
    r.add_get("/admin/kb/unanswered", kb_unanswered)
    r.add_post("/admin/kb/publish", kb_publish)
    r.add_post("/admin/kb/rollback", kb_rollback)
    r.add_get("/admin/kb/changes", kb_changes)
    r.add_get("/admin/kb/{entry}", kb_entry)
    r.add_post("/admin/kb/{entry}", kb_update)
    r.add_post("/admin/kb/{entry}/delete", kb_delete)
    r.add_get("/api/kb", kb_api)


__all__ = ["KbConflict", "KnowledgeAdmin", "add_routes"]
