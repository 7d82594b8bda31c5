"""Prompt administration (admins edit, supervisors read and listen): every prompt of the live flow in each
language, "listen" as a caller hears it (the hotline's own normaliser, synthesizer and prompt cache), edit
and "reset to the configuration file". The console never imports dialog/ or tts/: `hotline/web.py` hands
`create_app` an object that satisfies `PromptAdmin` (plain dicts in and out; hotline/prompts_live.py)."""

from __future__ import annotations

import io
import logging
import re
import wave
from collections.abc import Sequence
from typing import Any, Protocol

from aiohttp import web

from console.context import ctx, lang_of, requires, user_of
from console.i18n import translate
from console.ratelimit import LoginRateLimiter
from recordings.users import Role

log = logging.getLogger(__name__)

KEY = re.compile(r"^[a-z_]{1,40}(\.[a-z0-9_]{1,40})?$")
MAX_TEXT = 1000  # characters to listen to or save (the store checks its own bound as well)
LISTENS_PER_MIN = 30  # per user: synthesis costs CPU the calls need


class PromptAdmin(Protocol):
    """What the console needs of the prompts. A prompt is `{"key", "text": {lang: str}, "base": {lang: str},
    "changed": {lang: bool}}` ("base": the configuration file's text). `prompts`, `prompt`, `save` and `reset`
    block (the console calls them from its thread pool); bad text raises ValueError naming the problem, an
    unknown key LookupError. `render` is a coroutine: PCM16 mono at `sample_rate`, synthesised off the loop."""

    sample_rate: int

    @property
    def languages(self) -> Sequence[str]: ...

    def prompts(self) -> list[dict[str, Any]]: ...

    def prompt(self, key: str) -> dict[str, Any] | None: ...

    def save(self, key: str, lang: str, text: str, user: str = "") -> tuple[str, str]: ...

    def reset(self, key: str, lang: str, user: str = "") -> tuple[str, str] | None: ...

    async def render(self, text: str, lang: str) -> bytes: ...


PROMPTS: web.AppKey[Any] = web.AppKey("prompt_admin", object)
LISTEN_LIMIT: web.AppKey[LoginRateLimiter] = web.AppKey("prompt_listen_limit", LoginRateLimiter)


def _admin(request: web.Request) -> PromptAdmin:
    admin: PromptAdmin | None = request.app.get(PROMPTS)
    if admin is None:
        raise web.HTTPServiceUnavailable(text=translate("prompts_off", lang_of(request)))
    return admin


def _key(raw: str) -> str:
    if not KEY.match(raw):
        raise web.HTTPBadRequest(text="bad prompt key: like greeting, no_match.2 or transfer.announcement")
    return raw


def _lang(admin: PromptAdmin, raw: str) -> str:
    if raw not in admin.languages:
        raise web.HTTPBadRequest(text=f"bad language: one of {', '.join(admin.languages)}")
    return raw


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


# -- pages ---------------------------------------------------------------------------------------
async def _page(request: web.Request, error: str = "", status: int = 200, draft: dict[str, str] | None = None
                ) -> web.StreamResponse:
    from console.pages import render

    admin = _admin(request)
    items = await ctx(request).db(admin.prompts)
    if draft is not None:  # show what was typed again after a refusal: nothing typed is lost
        for p in items:
            if p["key"] == draft["key"] and draft["lang"] in p["text"]:
                p["text"] = {**p["text"], draft["lang"]: draft["text"]}
    return render(request, "prompts.html", status, prompts=items, languages=list(admin.languages), error=error,
                  can_edit=user_of(request).at_least(Role.ADMIN), max_text=MAX_TEXT,
                  saved=request.query.get("saved", "")[:90], reset=request.query.get("reset", "")[:90])


@requires(Role.SUPERVISOR)
async def prompts_list(request: web.Request) -> web.StreamResponse:
    return await _page(request)


@requires(Role.SUPERVISOR)
async def prompts_api(request: web.Request) -> web.StreamResponse:
    admin = _admin(request)
    return web.json_response({"languages": list(admin.languages), "prompts": await ctx(request).db(admin.prompts)})


@requires(Role.SUPERVISOR)
async def prompts_listen(request: web.Request) -> web.StreamResponse:
    """GET ?key=&lang=: the prompt's current text; POST text=&lang= (CSRF): a draft, before saving."""
    admin, user = _admin(request), user_of(request)
    if request.method == "POST":
        form = await request.post()
        lang = _lang(admin, str(form.get("lang", "")))
        text = " ".join(str(form.get("text", "")).split())
        if not text:
            raise web.HTTPBadRequest(text="text: required")
        if len(text) > MAX_TEXT:
            raise web.HTTPRequestEntityTooLarge(MAX_TEXT, len(text),
                                                text=f"text: at most {MAX_TEXT} characters (got {len(text)})")
        what = "draft"
    else:
        key, lang = _key(request.query.get("key", "")), _lang(admin, request.query.get("lang", ""))
        prompt = await ctx(request).db(admin.prompt, key)
        if prompt is None:
            raise web.HTTPNotFound(text=f"no prompt {key}")
        text, what = prompt["text"].get(lang, ""), key
        if not text:
            raise web.HTTPNotFound(text=f"prompt {key} has no {lang} text")
    wait = request.app[LISTEN_LIMIT].hit(user.name)
    if wait is not None:
        raise web.HTTPTooManyRequests(text=f"too many listens: try again in {wait} s",
                                      headers={"Retry-After": str(wait)})
    try:
        pcm = await admin.render(text, lang)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    log.info("console: %s listened to %s (%s, %d characters)", user.name, what, lang, len(text))
    return web.Response(body=wav_bytes(pcm, admin.sample_rate), content_type="audio/wav",
                        headers={"Content-Disposition": 'inline; filename="prompt.wav"'})


async def _form_target(request: web.Request, admin: PromptAdmin) -> tuple[Any, str, str]:
    form = await request.post()
    return form, _key(str(form.get("key", ""))), _lang(admin, str(form.get("lang", "")))


@requires(Role.ADMIN)
async def prompts_save(request: web.Request) -> web.StreamResponse:
    c, admin, user = ctx(request), _admin(request), user_of(request)
    form, key, lang = await _form_target(request, admin)
    text = str(form.get("text", ""))
    try:
        old, new = await c.db(admin.save, key, lang, text, user.name)
    except LookupError:
        raise web.HTTPNotFound(text=f"no prompt {key}") from None
    except ValueError as exc:
        return await _page(request, f"{key} ({lang}): {exc}", 400, {"key": key, "lang": lang, "text": text[:4000]})
    except OSError as exc:  # the store's folder is not writable: nothing changed
        log.error("console: prompt %s (%s) not saved: %s", key, lang, exc)
        return await _page(request, f"{key} ({lang}): not saved: {exc}", 500,
                           {"key": key, "lang": lang, "text": text[:4000]})
    if old != new:
        await c.db(c.users.audit, user.name, "prompt_changed", f"{key}/{lang}", f"{len(old)} -> {len(new)} characters")
    log.info("console: %s changed prompt %s (%s)", user.name, key, lang)
    raise web.HTTPFound(f"/admin/prompts?saved={key}/{lang}#p-{key}")


@requires(Role.ADMIN)
async def prompts_reset(request: web.Request) -> web.StreamResponse:
    c, admin, user = ctx(request), _admin(request), user_of(request)
    _form, key, lang = await _form_target(request, admin)
    try:
        done = await c.db(admin.reset, key, lang, user.name)
    except LookupError:
        raise web.HTTPNotFound(text=f"no prompt {key}") from None
    except (ValueError, OSError) as exc:
        return await _page(request, f"{key} ({lang}): {exc}", 400)
    if done is not None:
        old, new = done
        await c.db(c.users.audit, user.name, "prompt_reset", f"{key}/{lang}", f"{len(old)} -> {len(new)} characters")
        log.info("console: %s reset prompt %s (%s) to the configuration file", user.name, key, lang)
    raise web.HTTPFound(f"/admin/prompts?reset={key}/{lang}#p-{key}")


def add_routes(app: web.Application, admin: PromptAdmin | None) -> None:
    app[PROMPTS] = admin
    app[LISTEN_LIMIT] = LoginRateLimiter(LISTENS_PER_MIN)
    r = app.router
    r.add_get("/admin/prompts", prompts_list)
    r.add_get("/admin/prompts/listen", prompts_listen)
    r.add_post("/admin/prompts/listen", prompts_listen)
    r.add_post("/admin/prompts/save", prompts_save)
    r.add_post("/admin/prompts/reset", prompts_reset)
    r.add_get("/api/prompts", prompts_api)


__all__ = ["PromptAdmin", "add_routes", "wav_bytes"]
