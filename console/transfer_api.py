"""Agent transfers from the console: to a queue or a named agent, blind or with context, and consultations.

- `POST /api/calls/{call_id}/transfer` `{"queue": "cards"}` or `{"agent": "bob"}` (or both: bob rung as a
  call of cards; without "queue" the call's current queue), `"mode": "context" | "blind"`, `"note"` → 202
  `{"call_id", "queue", "agent", "mode"}`.
- `POST /api/calls/{call_id}/consult` `{"queue": ...}` or `{"agent": ...}`, `"note"` → 202: the caller is put
  on hold and the colleague's phone rings (a free agent of the queue when no agent is named);
  `POST /api/calls/{call_id}/consult/complete` → 202 (the caller goes to her) and `.../consult/cancel` → 202.
- `GET /api/transfer-targets` → `{"queues": [...], "agents": [{"id", "name", "state", "queues"}]}`: what the
  desktop's transfer form offers (agents logged in; only the ready ones can be chosen).

The request goes to the distributor's transfer desk (routing/transfer.py), which checks the queue and a named
agent (known, allowed for the queue, ready); the hotline finds the worker that runs the call, here or through
the event bus (hotline/transfer.py), and the session there acts (hotline/consult.py; how it went comes back as
`call.transfer_status`). 400 bad body, unknown queue or mode; 409 the agent is not ready or nobody is free to
consult; 403 not your call; 404 no live call with an agent; 503 routing not running in this process. Audited.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from console.context import ctx, requires, user_of
from console.pages import checked_call_id
from recordings.users import Role
from routing import AgentState, TargetBusy, TransferRefused, TransferRequest, queue_for_agent

log = logging.getLogger(__name__)


def _error(cls: type[web.HTTPException], message: str) -> web.HTTPException:
    return cls(text=json.dumps({"error": message}, ensure_ascii=False), content_type="application/json")


def _refused(exc: TransferRefused) -> web.HTTPException:
    return _error(web.HTTPConflict if isinstance(exc, TargetBusy) else web.HTTPBadRequest, str(exc))


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body: Any = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _error(web.HTTPBadRequest, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _error(web.HTTPBadRequest, "the body must be a JSON object")
    return body


def _live_call(request: web.Request) -> tuple[str, str]:
    """The call id and its current queue, when the user may act on it (its agent, or a supervisor)."""
    c, user = ctx(request), user_of(request)
    call_id = checked_call_id(request.match_info["call_id"])
    if c.acd is None:
        raise _error(web.HTTPServiceUnavailable, "routing is not running in this process")
    live = c.hub.calls.get(call_id)
    if live is None or not live.agent or live.state != "with_agent":
        raise _error(web.HTTPNotFound, f"call {call_id} is not connected to an agent")
    if live.agent != user.name and not user.at_least(Role.SUPERVISOR):
        raise _error(web.HTTPForbidden, "agents transfer only their own calls")
    return call_id, live.queue or (c.acd.queue_names or [""])[0]


def _target(body: dict[str, Any], current_queue: str, acd: Any) -> tuple[str, str, str, str]:
    queue, agent = body.get("queue"), body.get("agent", "")
    mode, note = body.get("mode", "context"), body.get("note", "")
    if (queue is not None and not isinstance(queue, str)) or not isinstance(agent, str):
        raise _error(web.HTTPBadRequest, "queue and agent must be strings")
    if not queue and not agent:
        raise _error(web.HTTPBadRequest, 'the body must name a "queue" or an "agent"')
    if not isinstance(mode, str) or not isinstance(note, str):
        raise _error(web.HTTPBadRequest, "mode and note must be strings")
    if not queue and agent:  # the call's queue if she takes its calls, else one she is allowed in
        return queue_for_agent(acd, agent, current_queue), agent, mode, note
    return queue or current_queue, agent, mode, note


async def _hand_in(request: web.Request, req_args: dict[str, Any], audit: str, detail: str) -> None:
    c, user = ctx(request), user_of(request)
    assert c.acd is not None
    try:
        c.acd.transfers.request(TransferRequest(by=user.name, **req_args))
    except TransferRefused as exc:
        raise _refused(exc) from None
    await c.db(c.users.audit, user.name, audit, req_args["call_id"], detail)
    log.info("call %s: %s by %s: %s", req_args["call_id"], audit, user.name, detail)


@requires(Role.AGENT)
async def transfer(request: web.Request) -> web.StreamResponse:
    call_id, current = _live_call(request)
    queue, agent, mode, note = _target(await _body(request), current, ctx(request).acd)
    detail = f"agent {agent} ({queue}, {mode})" if agent else f"{queue} ({mode})"
    await _hand_in(request, dict(call_id=call_id, to_queue=queue, mode=mode, note=note, to_agent=agent),
                   "transfer", detail)
    return web.json_response({"call_id": call_id, "queue": queue, "mode": mode, **({"agent": agent} if agent else {})},
                             status=202)


@requires(Role.AGENT)
async def consult(request: web.Request) -> web.StreamResponse:
    call_id, current = _live_call(request)
    queue, agent, _mode, note = _target(await _body(request), current, ctx(request).acd)
    await _hand_in(request, dict(call_id=call_id, to_queue=queue, note=note, to_agent=agent, kind="consult"),
                   "consult", f"agent {agent} ({queue})" if agent else queue)
    return web.json_response({"call_id": call_id, "queue": queue, "agent": agent or None, "step": "consult"},
                             status=202)


@requires(Role.AGENT)
async def consult_step(request: web.Request) -> web.StreamResponse:
    call_id, current = _live_call(request)
    step = request.match_info["step"]
    await _hand_in(request, dict(call_id=call_id, to_queue=current, kind=step), f"consult_{step}", current)
    return web.json_response({"call_id": call_id, "step": step}, status=202)


@requires(Role.AGENT)
async def targets(request: web.Request) -> web.StreamResponse:
    c = ctx(request)
    if c.acd is None:
        raise _error(web.HTTPServiceUnavailable, "routing is not running in this process")
    agents = [{"id": a.id, "name": a.name, "state": a.state.value, "ready": a.state is AgentState.AVAILABLE,
               "queues": [q for q in c.acd.queue_names if c.acd.allowed(a.id, q)]}
              for a in c.acd.agent_snapshots() if a.state is not AgentState.LOGGED_OUT]
    return web.json_response({"queues": c.acd.queue_names, "agents": agents})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/calls/{call_id}/transfer", transfer)
    app.router.add_post("/api/calls/{call_id}/consult", consult)
    app.router.add_post(r"/api/calls/{call_id}/consult/{step:complete|cancel}", consult_step)
    app.router.add_get("/api/transfer-targets", targets)
