"""Keypad menus (admins edit, supervisors read): for the main menu and each sub-menu, what every key leads to,
and a sub-menu's words in each language; "reset to the configuration file". The console never imports
dialog/: `hotline/web.py` hands `create_app(..., menus=)` an object that satisfies `MenuAdmin` (plain dicts;
hotline/menus_live.py)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import quote

from aiohttp import web

from console.context import ctx, lang_of, requires, user_of
from console.i18n import translate
from recordings.users import Role

log = logging.getLogger(__name__)

NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
TARGET = re.compile(r"^(faq:)?[a-z][a-z0-9_]{0,63}$")
KEYS = "123456789*0#"  # the keys a phone has, in keypad order
MAX_WORDS = 1000  # characters of a menu's words per language (the hotline checks again)


class MenuAdmin(Protocol):
    """What the console needs of the menus. A menu is `{"name", "options": {key: target}, "base_options",
    "say": {lang: text} | None (the main menu: None, its words are prompts), "base_say", "changed": bool,
    "warnings": [str]}`; a target `{"value", "label", "kind"}`. Blocking (the console's thread pool); bad
    input raises ValueError naming the problem, an unknown menu LookupError."""

    @property
    def languages(self) -> Sequence[str]: ...

    def menus(self) -> list[dict[str, Any]]: ...

    def targets(self) -> list[dict[str, str]]: ...

    def save(self, name: str, options: dict[str, str], say: dict[str, str] | None, user: str = "") -> list[str]:
        """Returns the warnings (keys the words do not mention)."""
        ...

    def reset(self, name: str, user: str = "") -> bool: ...


MENUS: web.AppKey[Any] = web.AppKey("menu_admin", object)


def _admin(request: web.Request) -> MenuAdmin:
    admin: MenuAdmin | None = request.app.get(MENUS)
    if admin is None:
        raise web.HTTPServiceUnavailable(text=translate("menus_off", lang_of(request)))
    return admin


def _name(raw: str) -> str:
    if not NAME.match(raw):
        raise web.HTTPBadRequest(text="bad menu name")
    return raw


async def _page(request: web.Request, error: str = "", status: int = 200,
                typed: dict[str, Any] | None = None) -> web.StreamResponse:
    from console.pages import render

    c, admin = ctx(request), _admin(request)
    menus = await c.db(admin.menus)
    if typed is not None:  # a refused form is shown as it was typed: nothing typed is lost
        for m in menus:
            if m["name"] == typed["name"]:
                m["options"] = typed["options"]
                if m["say"] is not None and typed["say"] is not None:
                    m["say"] = {**m["say"], **typed["say"]}
    return render(request, "menus.html", status, menus=menus, targets=await c.db(admin.targets), keys=KEYS,
                  languages=list(admin.languages), error=error, can_edit=user_of(request).at_least(Role.ADMIN),
                  saved=request.query.get("saved", "")[:64], reset=request.query.get("reset", "")[:64],
                  max_words=MAX_WORDS)


@requires(Role.SUPERVISOR)
async def menus_list(request: web.Request) -> web.StreamResponse:
    return await _page(request)


@requires(Role.SUPERVISOR)
async def menus_api(request: web.Request) -> web.StreamResponse:
    c, admin = ctx(request), _admin(request)
    return web.json_response({"languages": list(admin.languages), "menus": await c.db(admin.menus),
                              "targets": await c.db(admin.targets)})


def _form_menu(form: Any, languages: Sequence[str]) -> tuple[dict[str, str], dict[str, str] | None]:
    """The keys (`key_1` ... `key_#`: a target or empty for nothing) and words (`say_<lang>`) of the form."""
    options = {}
    for key in KEYS:
        target = str(form.get(f"key_{key}", "")).strip()
        if target:
            if not TARGET.match(target):
                raise ValueError(f"key {key}: not a target of this flow")
            options[key] = target
    say = None
    if any(f"say_{lang}" in form for lang in languages):
        say = {lang: " ".join(str(form.get(f"say_{lang}", "")).split()) for lang in languages}
        for lang, text in say.items():
            if len(text) > MAX_WORDS:
                raise ValueError(f"the words in {lang}: at most {MAX_WORDS} characters (got {len(text)})")
    return options, say


@requires(Role.ADMIN)
async def menus_save(request: web.Request) -> web.StreamResponse:
    c, admin, user = ctx(request), _admin(request), user_of(request)
    form = await request.post()
    name = _name(str(form.get("name", "")))
    typed: dict[str, Any] = {"name": name, "options": {}, "say": None}
    try:
        options, say = _form_menu(form, admin.languages)
        typed.update(options=options, say=say)
        before = next((m for m in await c.db(admin.menus) if m["name"] == name), None)
        warnings = await c.db(admin.save, name, options, say, user.name)
    except LookupError:
        raise web.HTTPNotFound(text=f"no menu {name}") from None
    except ValueError as exc:
        return await _page(request, f"{name}: {exc}", 400, typed)
    except OSError as exc:  # the store's folder is not writable: nothing changed
        log.error("console: menu %s not saved: %s", name, exc)
        return await _page(request, f"{name}: not saved: {exc}", 500, typed)
    old = before["options"] if before else {}
    moved = [f"{k}: {old.get(k, '-')} -> {options.get(k, '-')}" for k in KEYS if old.get(k) != options.get(k)]
    words = before is not None and say is not None and before["say"] != {**(before["say"] or {}), **say}
    detail = "; ".join(moved + (["words"] if words else [])) or "unchanged"
    await c.db(c.users.audit, user.name, "menu_changed", name, detail[:500])
    log.info("console: %s changed menu %s (%s)%s", user.name, name, detail,
             f"; warnings: {', '.join(warnings)}" if warnings else "")
    raise web.HTTPFound(f"/admin/menus?saved={quote(name)}#m-{name}")


@requires(Role.ADMIN)
async def menus_reset(request: web.Request) -> web.StreamResponse:
    c, admin, user = ctx(request), _admin(request), user_of(request)
    form = await request.post()
    name = _name(str(form.get("name", "")))
    try:
        done = await c.db(admin.reset, name, user.name)
    except LookupError:
        raise web.HTTPNotFound(text=f"no menu {name}") from None
    except (ValueError, OSError) as exc:
        return await _page(request, f"{name}: {exc}", 400)
    if done:
        await c.db(c.users.audit, user.name, "menu_reset", name, "to the configuration file")
        log.info("console: %s reset menu %s to the configuration file", user.name, name)
    raise web.HTTPFound(f"/admin/menus?reset={quote(name)}#m-{name}")


def add_routes(app: web.Application, admin: MenuAdmin | None) -> None:
    app[MENUS] = admin
    r = app.router
    r.add_get("/admin/menus", menus_list)
    r.add_post("/admin/menus/save", menus_save)
    r.add_post("/admin/menus/reset", menus_reset)
    r.add_get("/api/menus", menus_api)
