"""`create_app`: the console as an aiohttp application, and `ConsoleServer` to run it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from console.chat import ChatHub, ChatTurn
from console.context import (
    CONSOLE,
    LOGIN_CSRF_COOKIE,
    SESSION,
    SESSION_COOKIE,
    SESSION_TOKEN,
    Console,
    Handler,
    ReadyCheck,
    ctx,
    lang_of,
)
from console.i18n import translate
from console.kb import KnowledgeAdmin
from console.listen import ListenSource
from console.live import LiveHub
from console.menus import MenuAdmin
from console.metrics import HotlineMetrics
from console.prompts import PromptAdmin
from console.ratelimit import LoginRateLimiter
from console.routing_admin import RoutingHooks
from console.settings import ConsoleSettings
from recordings import CallStore
from recordings.users import UserStore
from routing import CallDistributor

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# Where a session is not needed, or where the check happens in the handler (login: double-submit cookie).
CSRF_EXEMPT = {"/login"}

Subscribe = Callable[[Callable[[Any], None]], Callable[[], None]]


def create_app(
    calls: CallStore,
    acd: CallDistributor | None = None,
    subscribe: Subscribe | None = None,
    settings: ConsoleSettings | None = None,
    *,
    ready_checks: dict[str, ReadyCheck] | None = None,
    users: UserStore | None = None,
    knowledge: KnowledgeAdmin | None = None,
    chat: ChatTurn | None = None,
    listen: ListenSource | None = None,
    routing: RoutingHooks | None = None,
    prompts: PromptAdmin | None = None,
    menus: MenuAdmin | None = None,
) -> web.Application:
    """The console for one call store; `subscribe(listener) -> unsubscribe` connects it to the event bus.
    `knowledge` (console.kb.KnowledgeAdmin) enables the knowledge-base editor, `chat` (console.chat.ChatTurn)
    the chat channel; both come from the composition (hotline/web.py), never from dialog/ directly.
    `listen` (console.listen.ListenSource) taps live calls for the supervisor's listen-in; `routing`
    (console.routing_admin.RoutingHooks) gives the queue and agent pages the YAML's base and a way to tell
    other workers of a change."""
    from console import api, kb, pages, transfer_api
    from console import chat as chat_routes
    from console import listen as listen_routes

    settings = settings or ConsoleSettings()
    metrics = HotlineMetrics()
    console = Console(
        settings=settings,
        calls=calls,
        users=users or UserStore(calls.engine, session_key=settings.secret_key()),
        acd=acd,
        hub=LiveHub(on_event=metrics.observe),
        metrics=metrics,
        ready_checks=ready_checks if ready_checks is not None else {"database": _database_check(calls)},
    )
    app = web.Application(
        middlewares=[_errors_and_headers, _sessions_and_csrf], client_max_size=settings.max_body_bytes
    )
    console.knowledge = knowledge
    console.login_limit = LoginRateLimiter(settings.login_per_ip_per_min)
    console.listen = listen
    console.chat = ChatHub(chat, idle_s=settings.chat_idle_s) if chat is not None else None
    app[CONSOLE] = console
    pages.add_routes(app)
    api.add_routes(app)
    kb.add_routes(app)
    chat_routes.add_routes(app)
    listen_routes.add_routes(app)
    transfer_api.add_routes(app)  # agent transfers (routing/transfer.py)
    from console import routing_admin

    routing_admin.add_routes(app, routing)  # /admin/queues and /admin/agents
    from console import prompts as prompt_routes

    prompt_routes.add_routes(app, prompts)  # /admin/prompts (hotline/prompts_live.py)
    from console import menus as menu_routes

    menu_routes.add_routes(app, menus)  # /admin/menus (hotline/menus_live.py)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)

    sweeper: list[asyncio.Task[None]] = []

    async def on_startup(_app: web.Application) -> None:
        console.hub.bind(asyncio.get_running_loop())
        if subscribe is not None:
            console.unsubscribe = subscribe(console.hub.listener)
        sweeper.append(asyncio.ensure_future(_sweep_sessions(console)))

    async def on_cleanup(_app: web.Application) -> None:
        if console.unsubscribe is not None:
            console.unsubscribe()
        for task in sweeper:
            task.cancel()
        console.pool.shutdown(wait=True)

    async def on_shutdown(_app: web.Application) -> None:
        console.hub.close_all()  # open wallboards must not hold the shutdown up

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app


SWEEP_EVERY_S = 600.0


async def _sweep_sessions(console: Console) -> None:
    """Deletes expired sessions now and then (each request checks expiry itself; this keeps the table small)."""
    while True:
        try:
            n = await console.db(console.users.expire_sessions, idle_s=console.settings.session_idle_s,
                                 max_age_s=console.settings.session_max_s)
            if n:
                log.info("console: %d expired sessions deleted", n)
        except Exception as exc:  # the database may be down for a while; the next sweep tries again
            log.warning("console: session sweep failed: %s", exc)
        await asyncio.sleep(SWEEP_EVERY_S)


def _database_check(calls: CallStore) -> ReadyCheck:
    def check() -> bool:
        from sqlalchemy import text

        with calls.engine.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar() == 1

    return check


@web.middleware
async def _errors_and_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status == 413:
            ctx(request).metrics.errors.labels("console_413").inc()
        if exc.status >= 400 and exc.content_type == "text/plain" and request.path.startswith("/api/"):
            response = web.json_response({"error": exc.text or exc.reason}, status=exc.status)
            _secure_headers(response)
            return response
        _secure_headers(exc)
        raise exc from None
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("console: %s %s failed", request.method, request.path)
        ctx(request).metrics.errors.labels("console_500").inc()
        if request.path.startswith("/api/"):
            response = web.json_response({"error": "internal error (logged)"}, status=500)
        else:
            response = web.Response(text="internal error (logged)", status=500)
    if not isinstance(response, web.WebSocketResponse) and not response.prepared:
        _secure_headers(response)
    return response


def _secure_headers(response: web.StreamResponse) -> None:
    h = response.headers
    h.setdefault("Content-Security-Policy",
                 "default-src 'self'; img-src 'self' data:; media-src 'self'; object-src 'none'; "
                 "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "same-origin")
    if not h.get("Cache-Control"):
        h["Cache-Control"] = "no-store"


@web.middleware
async def _sessions_and_csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    c = ctx(request)
    token, bearer = request.cookies.get(SESSION_COOKIE, ""), False
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        token, bearer = auth[7:].strip(), True
    session = None
    if token:
        session = await c.db(c.users.session, token, idle_s=c.settings.session_idle_s,
                             max_age_s=c.settings.session_max_s)
        if bearer and session is not None and session.kind != "token":
            session = None  # a stolen cookie value is not an API token
    request[SESSION] = session
    request[SESSION_TOKEN] = token if session else ""
    if request.method in UNSAFE and session is not None and not bearer and request.path not in CSRF_EXEMPT:
        sent = request.headers.get("X-CSRF-Token", "")
        if not sent and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            value = form.get("csrf_token", "")
            sent = value if isinstance(value, str) else ""
        if not sent or sent != session.csrf:
            log.warning("console: CSRF token missing or wrong from %s on %s %s", session.user.name, request.method,
                        request.path)
            if request.path.startswith("/api/"):
                return web.json_response({"error": "missing or wrong CSRF token"}, status=403)
            return web.Response(text=translate("bad_request", lang_of(request)) + " (CSRF)", status=403)
    response = await handler(request)
    if token and session is None and not bearer and not isinstance(response, web.WebSocketResponse):
        response.del_cookie(SESSION_COOKIE, path="/")
    return response


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    c = ctx(request)
    response.set_cookie(SESSION_COOKIE, token, path="/", httponly=True, samesite="Strict", secure=c.settings.https,
                        max_age=int(c.settings.session_max_s))
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")


class ConsoleServer:
    """Runs the console on its own port with an AppRunner (inside `hotline serve`, or alone)."""

    def __init__(self, app: web.Application, settings: ConsoleSettings) -> None:
        self.app, self.settings = app, settings
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def console(self) -> Console:
        return self.app[CONSOLE]

    @property
    def port(self) -> int:
        assert self._runner is not None, "start() first"
        for addr in self._runner.addresses:
            if isinstance(addr, tuple):
                return int(addr[1])
        raise RuntimeError("console is not listening")

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await self._site.start()
        log.info("console listening on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
