"""What every console handler reaches: the stores, routing, the live hub and the settings."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial, wraps
from typing import Any, TypeVar

from aiohttp import web

from console.i18n import pick_lang, translate
from console.live import LiveHub, Viewer
from console.metrics import HotlineMetrics
from console.settings import ConsoleSettings
from recordings import CallStore
from recordings.users import Role, SessionView, UserStore, UserView
from routing import CallDistributor

log = logging.getLogger(__name__)

T = TypeVar("T")
ReadyCheck = Callable[[], bool | Awaitable[bool]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SESSION_COOKIE = "hotline_session"
LOGIN_CSRF_COOKIE = "hotline_login_csrf"
LANG_COOKIE = "hotline_lang"


@dataclass
class Console:
    settings: ConsoleSettings
    calls: CallStore
    users: UserStore
    acd: CallDistributor | None
    hub: LiveHub
    metrics: HotlineMetrics
    ready_checks: dict[str, ReadyCheck]
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="console-db"))
    unsubscribe: Callable[[], None] | None = None
    knowledge: Any = None  # console.kb.KnowledgeAdmin, handed in by the composition (None: no KB editor)
    chat: Any = None  # console.chat.ChatHub around the dialog's chat callable (None: no chat channel)
    login_limit: Any = None  # console.ratelimit.LoginRateLimiter (per client address)
    listen: Any = None  # console.listen.ListenSource from the composition (None: no listen-in)
    listeners: int = 0  # listen-in WebSockets open now

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Blocking store calls run off the event loop, which carries the calls' audio."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, partial(fn, *args, **kwargs))

    async def readiness(self) -> dict[str, bool]:
        out: dict[str, bool] = {}
        for name, check in self.ready_checks.items():
            try:
                result = check()
                if inspect.isawaitable(result):
                    result = await asyncio.wait_for(result, 2.0)
                out[name] = bool(result)
            except Exception as exc:
                log.warning("readiness check %s failed: %s", name, exc)
                out[name] = False
        return out


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)
SESSION: web.RequestKey[SessionView | None] = web.RequestKey("session")  # set by the session middleware
SESSION_TOKEN: web.RequestKey[str] = web.RequestKey("session_token", str)


def ctx(request: web.Request) -> Console:
    return request.app[CONSOLE]


def session_of(request: web.Request) -> SessionView | None:
    s = request.get(SESSION)
    return s if isinstance(s, SessionView) else None


def user_of(request: web.Request) -> UserView:
    s = session_of(request)
    assert s is not None, "route not behind requires()"
    return s.user


def viewer_of(user: UserView) -> Viewer:
    return Viewer(user.name, user.at_least(Role.SUPERVISOR))


def lang_of(request: web.Request) -> str:
    s = session_of(request)
    return pick_lang(
        request.query.get("lang"),
        request.cookies.get(LANG_COOKIE),
        s.user.lang if s else None,
        request.headers.get("Accept-Language", "").split(",")[0],
    )


def wants_json(request: web.Request) -> bool:
    return request.path.startswith(("/api/", "/ws/"))


def requires(role: Role) -> Callable[[Handler], Handler]:
    """Only for logged-in users of at least `role`: anonymous → login page (401 for the API), too low → 403."""

    def wrap(handler: Handler) -> Handler:
        @wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            s = session_of(request)
            if s is None:
                if wants_json(request):
                    raise web.HTTPUnauthorized(text='{"error": "log in first"}', content_type="application/json")
                raise web.HTTPFound(f"/login?next={request.path}")
            if not s.user.at_least(role):
                log.info("console: %s (%s) refused %s %s", s.user.name, s.user.role, request.method, request.path)
                raise forbidden(request)
            return await handler(request)

        guarded.min_role = role  # type: ignore[attr-defined]
        return guarded

    return wrap


def forbidden(request: web.Request) -> web.HTTPForbidden:
    if wants_json(request):
        return web.HTTPForbidden(text='{"error": "forbidden"}', content_type="application/json")
    return web.HTTPForbidden(text=translate("forbidden", lang_of(request)))
