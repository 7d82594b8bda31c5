"""Server-rendered pages: login, agent desktop, wallboard, call search, call page, users."""

from __future__ import annotations

import json
import logging
import re
import secrets
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
from aiohttp import web

from console.context import (
    LANG_COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSION_TOKEN,
    ctx,
    lang_of,
    requires,
    session_of,
    user_of,
)
from console.i18n import LANGS, translate, translate_or_keep
from console.queries import BadFilter, call_detail, parse_filter, search_calls, timeline
from recordings.sentiment import SentimentStore
from recordings.users import DISPOSITIONS, PasswordRejected, Role, UnknownUser, UserExists
from routing import AgentState, UnknownAgent

log = logging.getLogger(__name__)

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
CALL_ID = re.compile(r"^[A-Za-z0-9._@:-]{1,64}$")
AGENT_BUTTONS = (AgentState.AVAILABLE, AgentState.ON_BREAK, AgentState.LOGGED_OUT)
OUTCOMES = ("answered", "transferred", "abandoned", "caller_hangup", "goodbye", "interrupted", "failed",
            "in_progress")


JS_TEXT = ("available", "on_break", "logged_out", "not_ready", "ringing", "on_call", "wrap_up",
           "sp_system", "sp_caller", "sp_agent", "sp_event", "chat_you", "chat_transfer", "chat_ended",
           "mood_angry", "mood_negative", "mood_neutral", "mood_positive", "listen", "listen_stop", "listening",
           "whisper", "whisper_stop", "whispering", "whisper_failed")


def render(request: web.Request, name: str, status: int = 200, **values: Any) -> web.Response:
    lang = lang_of(request)
    s = session_of(request)
    values.setdefault("listen_enabled", False)  # the wallboard's listen-in buttons
    # JSON inside <script type="application/json">: "<" escaped so no text can close the element.
    i18n_json = json.dumps({k: translate(k, lang) for k in JS_TEXT}, ensure_ascii=False).replace("<", "\\u003c")
    html = TEMPLATES.get_template(name).render(
        t=lambda key: translate(key, lang), sp=lambda v: translate_or_keep("sp_", v, lang),
        disp=lambda v: translate_or_keep("d_", v, lang), lang=lang, langs=LANGS, user=s.user if s else None,
        csrf=s.csrf if s else "", path=request.path, Role=Role, i18n_json=markupsafe.Markup(i18n_json), **values,
    )
    response = web.Response(text=html, content_type="text/html", status=status)
    if request.query.get("lang") in LANGS:
        response.set_cookie(LANG_COOKIE, request.query["lang"], path="/", samesite="Strict", httponly=True)
    return response


def checked_call_id(raw: str) -> str:
    if not CALL_ID.match(raw):
        raise web.HTTPBadRequest(text="bad call id: letters, digits and . _ @ : - only, at most 64")
    return raw


def safe_next(raw: str | None) -> str:
    """Only a path on this site: never //other.host or a scheme (open redirect)."""
    if raw and raw.startswith("/") and not raw.startswith("//") and "\\" not in raw and len(raw) < 200:
        return raw
    return "/"


# -- login -------------------------------------------------------------------------------------
async def home(request: web.Request) -> web.StreamResponse:
    s = session_of(request)
    if s is None:
        raise web.HTTPFound("/login")
    raise web.HTTPFound("/wallboard" if s.user.at_least(Role.SUPERVISOR) else "/agent")


async def login_form(request: web.Request, error: str = "", status: int = 200) -> web.StreamResponse:
    nonce = secrets.token_urlsafe(24)
    response = render(request, "login.html", status, error=error, nonce=nonce,
                      next=safe_next(request.query.get("next")))
    response.set_cookie(LOGIN_CSRF_COOKIE, nonce, path="/login", httponly=True, samesite="Strict",
                        secure=ctx(request).settings.https)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    c = ctx(request)
    form = await request.post()
    name, password = str(form.get("user", ""))[:64].strip(), str(form.get("password", ""))
    nonce = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not nonce or not secrets.compare_digest(nonce, str(form.get("csrf_token", ""))):
        log.warning("console: login form without its CSRF cookie (user %r)", name)
        return await login_form(request, "bad_request", 403)
    source = request.remote or ""
    wait = c.login_limit.hit(source) if c.login_limit is not None else None
    if wait is not None:
        if c.login_limit.refusals(source) == 1:  # once per burst: a flood must not flood the audit log too
            log.warning("console: too many logins from %s (user %r): refused for %d s", source, name, wait)
            await c.db(c.users.audit, name or "-", "login_rate_limited", source, f"retry after {wait} s")
        response = await login_form(request, "rate_limited", 429)
        response.headers["Retry-After"] = str(wait)
        return response
    result = await c.db(c.users.authenticate, name, password, source=source)
    if result.user is None:
        return await login_form(request, result.reason, 401)
    token, _csrf = await c.db(c.users.create_session, result.user.name)
    from console.app import set_session_cookie

    response = web.HTTPFound(safe_next(str(form.get("next", "/"))))
    set_session_cookie(request, response, token)
    log.info("console: %s (%s) logged in from %s", result.user.name, result.user.role, source)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    c = ctx(request)
    token = request.get(SESSION_TOKEN, "")
    if token:
        await c.db(c.users.end_session, token)
        await c.db(c.users.audit, user_of(request).name, "logout")
    response = web.HTTPFound("/login")
    response.del_cookie("hotline_session", path="/")
    raise response


# -- agent desktop -----------------------------------------------------------------------------
@requires(Role.AGENT)
async def agent_desktop(request: web.Request) -> web.StreamResponse:
    c, user = ctx(request), user_of(request)
    state = None
    if c.acd is not None:
        try:
            state = c.acd.agent(user.name).state
        except UnknownAgent:
            state = None
    return render(request, "agent.html", state=state, buttons=AGENT_BUTTONS, routing=c.acd is not None,
                  pop=c.hub.screen_pops.get(user.name), dispositions=DISPOSITIONS,
                  saved=request.query.get("saved") == "1")


@requires(Role.AGENT)
async def agent_state_form(request: web.Request) -> web.StreamResponse:
    from console.api import change_agent_state

    form = await request.post()
    await change_agent_state(request, user_of(request).name, str(form.get("state", "")))
    raise web.HTTPFound("/agent")


@requires(Role.AGENT)
async def wrap_up_form(request: web.Request) -> web.StreamResponse:
    from console.api import save_wrap_up

    form = await request.post()
    await save_wrap_up(request, str(form.get("call_id", "")), str(form.get("disposition", "")),
                       str(form.get("notes", "")))
    raise web.HTTPFound("/agent?saved=1")


# -- supervisor --------------------------------------------------------------------------------
@requires(Role.SUPERVISOR)
async def wallboard(request: web.Request) -> web.StreamResponse:
    return render(request, "wallboard.html", routing=ctx(request).acd is not None,
                  listen_enabled=ctx(request).listen is not None)


@requires(Role.SUPERVISOR)
async def call_search(request: web.Request) -> web.StreamResponse:
    c = ctx(request)
    params = dict(request.query)
    try:
        f = parse_filter(params)
        results = await c.db(search_calls, c.calls, f)
    except BadFilter as exc:
        return render(request, "calls.html", 400, error=str(exc), results=[], params=params, outcomes=OUTCOMES)
    return render(request, "calls.html", error="", results=results, params=params, outcomes=OUTCOMES)


@requires(Role.SUPERVISOR)
async def call_page(request: web.Request) -> web.StreamResponse:
    c = ctx(request)
    call_id = checked_call_id(request.match_info["call_id"])
    call = await c.db(call_detail, c.calls.engine, call_id)
    if call is None:
        raise web.HTTPNotFound(text=translate("not_found", lang_of(request)))
    lines = [ln.__dict__ for ln in await c.db(c.calls.get_transcript, call_id)]
    notes = await c.db(c.users.notes, call_id)
    await c.db(c.users.audit, user_of(request).name, "view_transcript", call_id, "page")
    return render(request, "call.html", call=call, lines=lines, notes=notes, timeline=timeline(call, lines))


@requires(Role.SUPERVISOR)
async def recording(request: web.Request) -> web.StreamResponse:
    """The call's stereo recording as WAV, with Range support (the audio element seeks with it)."""
    c = ctx(request)
    call_id = checked_call_id(request.match_info["call_id"])
    call = await c.db(c.calls.get_call, call_id)
    if call is None or not call.recording_path:
        raise web.HTTPNotFound(text="no recording for this call")
    path = await c.db(_servable, call.recording_path, c.settings.recordings_root)
    if path is None:
        log.error("call %s: recording %s is missing or outside the recordings folder", call_id, call.recording_path)
        raise web.HTTPNotFound(text="the recording file is not there (still recording, or deleted by retention)")
    rng = request.headers.get("Range", "")
    if not rng or rng.replace(" ", "").startswith("bytes=0-"):  # one entry per play, not per range request
        await c.db(c.users.audit, user_of(request).name, "play_recording", call_id, rng or "whole")
    headers = {"Content-Type": "audio/wav", "Cache-Control": "private, no-store"}
    if path.name.endswith(".wav"):
        return web.FileResponse(path, headers=headers)
    # Compressed or encrypted at rest: decoded in memory (a call's WAV is a few MB), ranges served from it.
    try:
        from recordings.atrest import RecordingKeyError, RecordingUnreadable, open_recording
    except ImportError:
        raise web.HTTPNotFound(text="this recording format cannot be read here") from None
    try:
        data = await c.db(open_recording, path)
    except (RecordingUnreadable, RecordingKeyError) as exc:
        log.error("call %s: recording cannot be opened: %s", call_id, exc)
        raise web.HTTPServiceUnavailable(text="the recording cannot be opened (see the server log)") from None
    return bytes_with_range(request, data, headers)


def bytes_with_range(request: web.Request, data: bytes, headers: dict[str, str]) -> web.Response:
    headers = {**headers, "Accept-Ranges": "bytes"}
    try:
        rng = request.http_range
    except ValueError:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{len(data)}"}) from None
    if rng.start is None and rng.stop is None:
        return web.Response(body=data, headers=headers)
    start, stop, _ = rng.indices(len(data))
    if start >= len(data) or stop <= start:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{len(data)}"})
    headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
    return web.Response(body=data[start:stop], status=206, headers=headers)


def _servable(recording_path: str, root: Path | None) -> Path | None:
    """The file, if it exists and lies inside the recordings folder (the record's path is not trusted)."""
    path = Path(recording_path).resolve()
    if root is not None and not path.is_relative_to(root):
        return None
    try:
        from recordings.atrest import resolve_recording
    except ImportError:
        return path if path.is_file() else None
    found = resolve_recording(path)
    return found if found is not None and found.is_file() else None


@requires(Role.SUPERVISOR)
async def dashboard(request: web.Request) -> web.StreamResponse:
    """Analytics over the records (recordings/analytics.py) as tiles and CSS bar charts."""
    from recordings.analytics import report

    c = ctx(request)
    params = dict(request.query)
    by = params.get("by") or "day"
    try:
        f = parse_filter({k: v for k, v in params.items() if k in ("from", "to")})
        if by not in ("day", "hour", "queue", "agent"):
            raise BadFilter("by: day, hour, queue or agent")
        rep = await c.db(report, c.calls, since=f.date_from, until=f.date_to, by=by)
        mood = await c.db(SentimentStore(c.calls.engine).summary, since=f.date_from, until=f.date_to)
    except (BadFilter, ValueError) as exc:
        return render(request, "dashboard.html", 400, error=str(exc), rep=None, params=params, by=by)
    return render(request, "dashboard.html", error="", rep=rep, params=params, by=by, mood=mood,
                  most=max([g.calls for g in rep.groups] + [1]),
                  most_intent=max([n for _, n in rep.intent_mix] + [1]))


# -- admin -------------------------------------------------------------------------------------
@requires(Role.ADMIN)
async def users_page(request: web.Request) -> web.StreamResponse:
    return await _users_page(request)


async def _users_page(request: web.Request, error: str = "", status: int = 200) -> web.StreamResponse:
    c = ctx(request)
    users = await c.db(c.users.users)
    audit = await c.db(c.users.audit_log, 50)
    return render(request, "users.html", status, users=users, audit=audit, roles=list(Role), error=error)


@requires(Role.ADMIN)
async def add_user(request: web.Request) -> web.StreamResponse:
    c = ctx(request)
    form = await request.post()
    name, role = str(form.get("name", "")).strip(), str(form.get("role", ""))
    password = str(form.get("password", ""))
    try:
        await c.db(c.users.add_user, name, password, role, lang=lang_of(request), by=user_of(request).name)
    except (PasswordRejected, UserExists, ValueError) as exc:
        return await _users_page(request, str(exc), 400)
    raise web.HTTPFound("/admin/users")


@requires(Role.ADMIN)
async def change_role(request: web.Request) -> web.StreamResponse:
    c = ctx(request)
    form = await request.post()
    try:
        await c.db(c.users.set_role, request.match_info["name"], str(form.get("role", "")), by=user_of(request).name)
    except UnknownUser as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    except ValueError as exc:
        return await _users_page(request, str(exc), 400)
    raise web.HTTPFound("/admin/users")


@requires(Role.ADMIN)
async def unlock_user(request: web.Request) -> web.StreamResponse:
    c = ctx(request)
    try:
        await c.db(c.users.unlock, request.match_info["name"], by=user_of(request).name)
    except UnknownUser as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    raise web.HTTPFound("/admin/users")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", home)
    r.add_get("/login", login_form)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/agent", agent_desktop)
    r.add_post("/agent/state", agent_state_form)
    r.add_post("/agent/wrapup", wrap_up_form)
    r.add_get("/wallboard", wallboard)
    r.add_get("/dashboard", dashboard)
    r.add_get("/calls", call_search)
    r.add_get("/calls/{call_id}", call_page)
    r.add_get("/calls/{call_id}/recording", recording)
    r.add_get("/admin/users", users_page)
    r.add_post("/admin/users", add_user)
    r.add_post("/admin/users/{name}/role", change_role)
    r.add_post("/admin/users/{name}/unlock", unlock_user)
