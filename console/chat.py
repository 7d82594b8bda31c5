"""The chat channel over HTTP: `POST /api/chat` and the `/chat` page, for logged-in console users.

The dialog runs behind a callable handed in by `hotline/web.py` (the console never imports dialog/):
`ChatTurn(sessions, session_id, text_or_None, lang) -> {"texts", "lang", "ended", "transfer", "secret"}`,
where `sessions` is a dict the callable keeps its conversations in (dialog.chat.chat_turn's). The
console keys sessions by user, so nobody can continue another user's chat, expires idle ones, caps
how many there are and rate-limits messages per user. Message text is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from console.context import ctx, requires, user_of
from recordings.users import Role

log = logging.getLogger(__name__)

ChatTurn = Callable[[dict[str, Any], str, str | None, str | None], Mapping[str, Any]]

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TEXT = 500  # characters of one message
LANGS = ("en", "zh")


@dataclass
class ChatHub:
    """Chat conversations of this console: idle expiry, caps and a per-user message rate."""

    turn: ChatTurn
    idle_s: float = 15 * 60
    max_sessions: int = 500
    max_per_user: int = 20
    rate_per_s: float = 2.0  # messages per second per user, bursts of `burst`
    burst: float = 10.0
    sessions: dict[str, Any] = field(default_factory=dict)  # key "user/session" -> the dialog's chat session
    last_seen: dict[str, float] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # user -> (tokens, at)

    def expire(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        old = [k for k, t in self.last_seen.items() if now - t > self.idle_s]
        for k in old:
            self.forget(k)
        for k in [k for k in self.sessions if k not in self.last_seen]:  # ended chats the callable dropped
            self.sessions.pop(k, None)
        return len(old)

    def forget(self, key: str) -> None:
        self.sessions.pop(key, None)
        self.last_seen.pop(key, None)
        lock = self.locks.get(key)
        if lock is not None and not lock.locked():
            self.locks.pop(key, None)

    def allow(self, user: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, at = self.buckets.get(user, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate_per_s)
        if tokens < 1.0:
            self.buckets[user] = (tokens, now)
            return False
        self.buckets[user] = (tokens - 1.0, now)
        return True

    def room_for(self, user: str, key: str) -> bool:
        if key in self.last_seen:
            return True
        mine = sum(1 for k in self.last_seen if k.startswith(user + "/"))
        return mine < self.max_per_user and len(self.last_seen) < self.max_sessions


def _bad(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


@requires(Role.AGENT)
async def chat_api(request: web.Request) -> web.StreamResponse:
    from console.api import json_body

    c, user = ctx(request), user_of(request)
    hub = c.chat
    if hub is None:
        return _bad("the chat channel is not running in this process (hotline serve runs it)", 503)
    body = await json_body(request)
    session = body.get("session")
    if not isinstance(session, str) or not SESSION_ID.match(session):
        return _bad("session: 1 to 64 letters, digits, _ or -")
    text = body.get("text")
    if text is not None and not isinstance(text, str):
        return _bad("text: a string, or null to start the chat")
    if isinstance(text, str) and len(text) > MAX_TEXT:
        return _bad(f"text: at most {MAX_TEXT} characters")
    lang = body.get("lang")
    if lang is not None and lang not in LANGS:
        return _bad("lang: en, zh or null")
    if not hub.allow(user.name):
        return _bad("too many messages: wait a moment", 429)
    hub.expire()
    key = f"{user.name}/{session}"
    if not hub.room_for(user.name, key):
        return _bad("too many open chats: close one or wait until they expire", 429)
    expired = text is not None and key not in hub.last_seen
    lock = hub.locks.setdefault(key, asyncio.Lock())
    async with lock:  # one message at a time per chat: the conversation is not shared between threads
        hub.last_seen[key] = time.monotonic()
        started = time.monotonic()
        reply = dict(await c.db(hub.turn, hub.sessions, key, None if expired else text, lang))
        if reply.get("ended") or key not in hub.sessions:
            hub.forget(key)
    log.info("console chat %s (%s): %d line(s) in %.0f ms%s", key, user.name, len(reply.get("texts", [])),
             (time.monotonic() - started) * 1000, ", ended" if reply.get("ended") else "")
    return web.json_response({"session": session, "texts": list(reply.get("texts", [])),
                              "lang": reply.get("lang"), "ended": bool(reply.get("ended")),
                              "transfer": reply.get("transfer"), "secret": bool(reply.get("secret")),
                              "restarted": expired})


@requires(Role.AGENT)
async def chat_page(request: web.Request) -> web.StreamResponse:
    from console.pages import render

    return render(request, "chat.html", enabled=ctx(request).chat is not None)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/chat", chat_page)
    app.router.add_post("/api/chat", chat_api)
