"""JSON API, the live WebSocket, and the unauthenticated health, readiness and metrics endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from console.context import SESSION_TOKEN, ctx, requires, session_of, user_of, viewer_of
from console.metrics import CONTENT_TYPE_LATEST
from console.pages import checked_call_id
from console.queries import BadFilter, call_detail, parse_filter, search_calls
from recordings.users import Role, UserView
from routing import AgentState, IllegalTransition, UnknownAgent
from routing.states import MANUAL_STATES

log = logging.getLogger(__name__)

WS_HEARTBEAT_S = 20.0
WS_RECHECK_S = 60.0  # an open WebSocket re-checks its session this often


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False, default=str))


def _error(status: int, message: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 403: web.HTTPForbidden, 404: web.HTTPNotFound, 409: web.HTTPConflict,
           503: web.HTTPServiceUnavailable}[status]
    return cls(text=json.dumps({"error": message}, ensure_ascii=False), content_type="application/json")


def _own_or_supervisor(user: UserView, agent: str | None, message: str) -> None:
    """Agents act only on what is theirs (their state, their screen pop, their calls); supervisors on any."""
    if agent != user.name and not user.at_least(Role.SUPERVISOR):
        raise _error(403, message)


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _error(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _error(400, "the body must be a JSON object")
    return body


# -- health ------------------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.StreamResponse:
    return _json({"status": "ok"})


async def favicon(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204)  # browsers ask for it on plain-text pages (403, 404)


async def readyz(request: web.Request) -> web.StreamResponse:
    checks = await ctx(request).readiness()
    ready = all(checks.values())
    return _json({"ready": ready, "checks": checks}, 200 if ready else 503)


async def metrics(request: web.Request) -> web.StreamResponse:
    body = ctx(request).metrics.exposition()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


# -- calls -------------------------------------------------------------------------------------
@requires(Role.AGENT)
async def me(request: web.Request) -> web.StreamResponse:
    user = user_of(request)
    s = session_of(request)
    return _json({"name": user.name, "role": user.role.value, "lang": user.lang, "csrf": s.csrf if s else ""})


@requires(Role.SUPERVISOR)
async def calls(request: web.Request) -> web.StreamResponse:
    c = ctx(request)
    try:
        f = parse_filter(dict(request.query))
    except BadFilter as exc:
        raise _error(400, str(exc)) from None
    try:
        found = await c.db(search_calls, c.calls, f)
    except BadFilter as exc:
        raise _error(400, str(exc)) from None
    return _json({"calls": found})


@requires(Role.SUPERVISOR)
async def call(request: web.Request) -> web.StreamResponse:
    c = ctx(request)
    call_id = checked_call_id(request.match_info["call_id"])
    record = await c.db(call_detail, c.calls.engine, call_id)
    if record is None:
        raise _error(404, f"no call {call_id}")
    lines = [ln.__dict__ for ln in await c.db(c.calls.get_transcript, call_id)]
    notes = [n.__dict__ for n in await c.db(c.users.notes, call_id)]
    await c.db(c.users.audit, user_of(request).name, "view_transcript", call_id, "api")
    return _json({"call": record, "transcript": lines, "notes": notes})


async def save_wrap_up(request: web.Request, call_id: str, disposition: str, notes: str) -> None:
    """An agent closes their own call; supervisors may close any."""
    c, user = ctx(request), user_of(request)
    checked_call_id(call_id)
    record = await c.db(c.calls.get_call, call_id)
    live = c.hub.calls.get(call_id)
    if record is None and live is None:
        raise _error(404, f"no call {call_id}")
    agent = (record.agent if record else None) or (live.agent if live else None)
    _own_or_supervisor(user, agent, "you can wrap up only your own calls")
    if len(notes) > 10000:
        raise _error(400, "notes: at most 10000 characters")
    try:
        await c.db(c.users.add_note, call_id, user.name, disposition, notes)
    except ValueError as exc:
        raise _error(400, str(exc)) from None
    log.info("call %s: wrap-up %s by %s", call_id, disposition, user.name)


@requires(Role.AGENT)
async def wrap_up(request: web.Request) -> web.StreamResponse:
    body = await json_body(request)
    await save_wrap_up(request, request.match_info["call_id"], str(body.get("disposition", "")),
                       str(body.get("notes", "")))
    return _json({"saved": True})


# -- routing -----------------------------------------------------------------------------------
def _snapshot(obj: Any) -> dict[str, Any]:
    d = dict(obj.__dict__)
    for k, v in d.items():
        if isinstance(v, float):
            d[k] = round(v, 1)
        elif isinstance(v, AgentState):
            d[k] = v.value
        elif not isinstance(v, str | int | type(None) | bool):
            d[k] = dict(v) if hasattr(v, "items") else str(v)
    return d


@requires(Role.SUPERVISOR)
async def queues(request: web.Request) -> web.StreamResponse:
    acd = ctx(request).acd
    return _json({"routing": acd is not None, "queues": [_snapshot(q) for q in acd.queue_snapshots()] if acd else []})


@requires(Role.SUPERVISOR)
async def agents(request: web.Request) -> web.StreamResponse:
    acd = ctx(request).acd
    return _json({"routing": acd is not None, "agents": [_snapshot(a) for a in acd.agent_snapshots()] if acd else []})


@requires(Role.AGENT)
async def one_agent(request: web.Request) -> web.StreamResponse:
    c, user = ctx(request), user_of(request)
    agent_id = request.match_info["agent"]
    _own_or_supervisor(user, agent_id, "agents see only their own state")
    if c.acd is None:
        raise _error(503, "routing is not running in this process")
    snap = next((a for a in c.acd.agent_snapshots() if a.id == agent_id), None)
    if snap is None:
        raise _error(404, f"no agent {agent_id}")
    return _json(_snapshot(snap))


async def change_agent_state(request: web.Request, agent_id: str, state: str) -> AgentState:
    c, user = ctx(request), user_of(request)
    _own_or_supervisor(user, agent_id, "agents change only their own state")
    if c.acd is None:
        raise _error(503, "routing is not running in this process")
    try:
        wanted = AgentState(state)
    except ValueError:
        raise _error(400, f"state must be one of {', '.join(sorted(s.value for s in MANUAL_STATES))}") from None
    if wanted not in MANUAL_STATES:
        raise _error(400, f"{wanted.value} comes from calls; it cannot be set by hand")
    try:
        c.acd.set_state(agent_id, wanted, f"console:{user.name}")
    except UnknownAgent:
        raise _error(404, f"no agent {agent_id}") from None
    except IllegalTransition as exc:
        raise _error(409, str(exc)) from None
    await c.db(c.users.audit, user.name, "agent_state", agent_id, wanted.value)
    log.info("console: %s set agent %s to %s", user.name, agent_id, wanted.value)
    return wanted


@requires(Role.AGENT)
async def agent_state(request: web.Request) -> web.StreamResponse:
    body = await json_body(request)
    agent_id = request.match_info["agent"]
    state = await change_agent_state(request, agent_id, str(body.get("state", "")))
    return _json({"agent": agent_id, "state": state.value})


@requires(Role.AGENT)
async def screen_pop(request: web.Request) -> web.StreamResponse:
    c, user = ctx(request), user_of(request)
    agent = request.match_info["agent"]
    _own_or_supervisor(user, agent, "agents see only their own screen pop")
    pop = c.hub.screen_pops.get(agent)
    return _json({"agent": agent, "screen_pop": pop})


# -- live --------------------------------------------------------------------------------------
@requires(Role.AGENT)
async def events_ws(request: web.Request) -> web.StreamResponse:
    c, user = ctx(request), user_of(request)
    origin = request.headers.get("Origin")
    if origin and origin.split("://", 1)[-1] != request.host:
        log.warning("console: WebSocket from foreign origin %s refused (%s)", origin, user.name)
        raise _error(403, "foreign origin")
    ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_S, max_msg_size=4096)
    await ws.prepare(request)
    viewer = viewer_of(user)
    queue = c.hub.connect(viewer)
    await ws.send_json(c.hub.snapshot(viewer), dumps=lambda d: json.dumps(d, ensure_ascii=False, default=str))

    async def reader() -> None:
        async for msg in ws:  # clients only listen; anything they send is ignored
            if msg.type is WSMsgType.ERROR:
                return

    read_task = asyncio.ensure_future(reader())
    token = request.get(SESSION_TOKEN, "")
    try:
        while not ws.closed:
            get = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({get, read_task}, timeout=WS_RECHECK_S, return_when=asyncio.FIRST_COMPLETED)
            if read_task in done:
                get.cancel()
                break
            if get not in done:  # quiet for a while: is the login still valid (logout, password change)?
                get.cancel()
                if not await c.db(c.users.session, token, idle_s=c.settings.session_idle_s,
                                  max_age_s=c.settings.session_max_s):
                    log.info("console: closing the WebSocket of %s: session ended", user.name)
                    break
                continue
            item = get.result()
            if item is None:
                break
            await ws.send_json(item, dumps=lambda d: json.dumps(d, ensure_ascii=False, default=str))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        c.hub.disconnect(queue)
        read_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await read_task  # gone before close() reads the client's close frame itself
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 2.0)
    return ws


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/favicon.ico", favicon)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics)
    r.add_get("/api/me", me)
    r.add_get("/api/calls", calls)
    r.add_get("/api/calls/{call_id}", call)
    r.add_post("/api/calls/{call_id}/wrapup", wrap_up)
    r.add_get("/api/queues", queues)
    r.add_get("/api/agents", agents)
    r.add_get("/api/agents/{agent}", one_agent)
    r.add_post("/api/agents/{agent}/state", agent_state)
    r.add_get("/api/screenpop/{agent}", screen_pop)
    r.add_get("/ws/events", events_ws)
