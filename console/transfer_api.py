"""`POST /api/calls/{call_id}/transfer`: the agent on a call (or a supervisor) moves the caller to another queue.

Body: `{"queue": "cards", "mode": "context" | "blind", "note": "..."}` → 202 `{"call_id", "queue", "mode"}`.
The request goes to the distributor's transfer desk (routing/transfer.py); the hotline finds the worker
that runs the call, here or through the event bus (hotline/transfer.py). 400 bad body, unknown queue or
mode; 403 not your call; 404 no live call with an agent; 503 routing not running in this process.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from console.context import ctx, requires, user_of
from console.pages import checked_call_id
from recordings.users import Role
from routing import TransferRefused, TransferRequest

log = logging.getLogger(__name__)


def _error(cls: type[web.HTTPException], message: str) -> web.HTTPException:
    return cls(text=json.dumps({"error": message}, ensure_ascii=False), content_type="application/json")


@requires(Role.AGENT)
async def transfer(request: web.Request) -> web.StreamResponse:
    c, user = ctx(request), user_of(request)
    call_id = checked_call_id(request.match_info["call_id"])
    try:
        body: Any = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _error(web.HTTPBadRequest, "the body is not valid JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("queue"), str):
        raise _error(web.HTTPBadRequest, 'the body must be a JSON object with "queue"')
    mode, note = body.get("mode", "context"), body.get("note", "")
    if not isinstance(mode, str) or not isinstance(note, str):
        raise _error(web.HTTPBadRequest, "mode and note must be strings")
    if c.acd is None:
        raise _error(web.HTTPServiceUnavailable, "routing is not running in this process")
    live = c.hub.calls.get(call_id)
    if live is None or not live.agent or live.state != "with_agent":
        raise _error(web.HTTPNotFound, f"call {call_id} is not connected to an agent")
    if live.agent != user.name and not user.at_least(Role.SUPERVISOR):
        raise _error(web.HTTPForbidden, "agents transfer only their own calls")
    try:
        c.acd.transfers.request(TransferRequest(call_id, body["queue"], mode, note, by=user.name))
    except TransferRefused as exc:
        raise _error(web.HTTPBadRequest, str(exc)) from None
    await c.db(c.users.audit, user.name, "transfer", call_id, f"{body['queue']} ({mode})")
    log.info("call %s: %s transferred it to %s (%s)", call_id, user.name, body["queue"], mode)
    return web.json_response({"call_id": call_id, "queue": body["queue"], "mode": mode}, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/calls/{call_id}/transfer", transfer)
