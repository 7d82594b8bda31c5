"""The web console inside `hotline serve`, and alone as `hotline console`; `hotline users` for its accounts."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from hotline.settings import Settings

if TYPE_CHECKING:
    from console import ConsoleServer, ConsoleSettings
    from hotline.server import Hotline
    from recordings import CallStore

log = logging.getLogger(__name__)

PASSWORD_ENV = "HOTLINE_NEW_PASSWORD"


def console_settings(s: Settings, *, port: int | None = None, host: str | None = None) -> ConsoleSettings:
    from console import ConsoleSettings

    return ConsoleSettings(
        host=host or s.web.host,
        port=s.web.port if port is None else port,
        secret_env=s.web.secret_env,
        session_idle_s=s.web.session_idle_min * 60,
        https=s.web.https,
        recordings_dir=str(s.recordings_dir),
    )


async def start_console(hotline: Hotline, store: CallStore) -> ConsoleServer | None:
    """Starts the console next to the SIP endpoint; a port in use costs the console, never the calls."""
    from hotline.sentiment_live import start_sentiment

    start_sentiment(hotline, store)  # caller sentiment, web or not: kept with the call, `call.sentiment` events
    s = hotline.settings
    if not s.web.enabled:
        return None
    try:
        from console import ConsoleServer, create_app
    except ImportError as exc:  # an install from before console/ existed: re-run scripts/install.sh
        log.error("web console not available (%s); calls are answered anyway", exc)
        return None

    def sip_listening() -> bool:
        ep = hotline.endpoint
        return ep is not None and getattr(ep, "_transport", True) is not None

    def models_loaded() -> bool:
        return hotline.deps is not None

    def database() -> bool:
        from sqlalchemy import text

        with store.engine.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar() == 1

    settings = console_settings(s)
    subscribe = getattr(hotline.bus, "subscribe", None)
    knowledge, chat = _knowledge_and_chat(hotline)
    from hotline.listen_relay import listen_source
    from hotline.menus_live import menus_admin
    from hotline.prompts_live import prompts_admin

    listen, listen_install = listen_source(hotline)  # with MQTT also other workers' calls (docs/CONSOLE.md)
    app = create_app(store, hotline.acd, subscribe, settings,
                     ready_checks={"sip": sip_listening, "database": database, "models": models_loaded},
                     knowledge=knowledge, chat=chat, listen=listen, routing=_routing_hooks(hotline),
                     prompts=prompts_admin(hotline), menus=menus_admin(hotline))
    if listen_install is not None:
        listen_install(app)
    server = ConsoleServer(app, settings)
    try:
        await server.start()
    except OSError as exc:
        log.error("web console not started on %s:%d: %s (calls are answered anyway)", settings.host, settings.port, exc)
        await server.stop()
        return None
    return server


def _routing_hooks(hotline: Hotline) -> Any:
    """The queue and agent pages' YAML base and their way to tell other workers (hotline/routing_sync.py)."""
    from console.routing_admin import RoutingHooks

    sync = hotline.routing_sync
    return RoutingHooks(sync.base, sync.changed, sync.sip_accounts) if sync is not None else None


def _knowledge_and_chat(hotline: Hotline) -> tuple[Any, Any]:
    """The console's seams to dialog/ (it never imports it): the KB editor over the live store, and the
    chat channel on the engine new calls get (hotline/knowledge_live.py)."""
    from hotline.knowledge_live import StoreAdmin, chat_callable

    live = hotline.knowledge
    if live is None:
        return None, None
    return StoreAdmin(live.store, live), chat_callable(lambda: live.engine)


def _offline_knowledge(s: Settings) -> Any:
    """`hotline console` alone: the KB editor over the store (publishing reaches `hotline serve` by its poll)."""
    try:
        from dialog.flow import load_flow
        from dialog.knowledge_store import KnowledgeStore
        from hotline.knowledge_live import StoreAdmin, knowledge_dir, seed_draft

        flow = load_flow(s.flow_path)
        store = KnowledgeStore(knowledge_dir(s), flow.languages)
        seed_draft(store, flow)
    except Exception as exc:  # a broken flow file or an unwritable store: the console still shows the records
        log.error("knowledge-base editor off: %s", exc)
        return None
    return StoreAdmin(store)


# -- command line ------------------------------------------------------------------------------
def add_commands(sub: Any) -> None:
    """`hotline console` and `hotline users ...`."""
    con = sub.add_parser("console", help="serve the web console alone over the records (no telephony)")
    con.add_argument("--host", help="address to listen on (overrides web.host)")
    con.add_argument("--port", type=int, help="TCP port (overrides web.port; 0: any free port)")
    con.set_defaults(run=_console)

    users = sub.add_parser("users", help="console accounts: add, list, set a role or password, unlock, API token")
    verbs = users.add_subparsers(dest="verb", metavar="VERB", required=True)
    add = verbs.add_parser("add", help=f"add a user; the password comes from stdin or ${PASSWORD_ENV}, never argv")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["agent", "supervisor", "admin"])
    add.add_argument("--lang", default="en", choices=["en", "zh"])
    add.set_defaults(run=_users_add)
    lst = verbs.add_parser("list", help="list users, their roles and locks")
    lst.set_defaults(run=_users_list)
    role = verbs.add_parser("role", help="change a user's role")
    role.add_argument("name")
    role.add_argument("role", choices=["agent", "supervisor", "admin"])
    role.set_defaults(run=_users_role)
    pw = verbs.add_parser("password", help=f"set a new password (stdin or ${PASSWORD_ENV})")
    pw.add_argument("name")
    pw.set_defaults(run=_users_password)
    unlock = verbs.add_parser("unlock", help="clear a lockout after failed logins")
    unlock.add_argument("name")
    unlock.set_defaults(run=_users_unlock)
    token = verbs.add_parser("token", help="print a new API token for a user (Authorization: Bearer TOKEN)")
    token.add_argument("name")
    token.set_defaults(run=_users_token)


def _load(args: argparse.Namespace) -> Settings:
    from hotline.settings import load_settings

    return load_settings(args.config)


def _user_store(args: argparse.Namespace) -> Any:
    from recordings import CallStore
    from recordings.users import UserStore

    s = _load(args)
    key = os.environ.get(s.web.secret_env)
    return UserStore(CallStore(s.database_url).engine, session_key=key.encode() if key else None)


def _read_password() -> str:
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env
    if sys.stdin.isatty():
        first = getpass.getpass("new password: ")
        if getpass.getpass("again: ") != first:
            raise SystemExit("hotline: the two passwords differ; nothing changed")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _users_add(args: argparse.Namespace) -> int:
    from recordings.users import PasswordRejected, UserExists

    store = _user_store(args)
    try:
        store.add_user(args.name, _read_password(), args.role, lang=args.lang, by="cli")
    except (PasswordRejected, UserExists, ValueError) as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1
    print(f"user {args.name} added ({args.role})")
    return 0


def _users_list(args: argparse.Namespace) -> int:
    for u in _user_store(args).users():
        lock = f"\tlocked until {u.locked_until:%Y-%m-%d %H:%M:%S}" if u.locked() else ""
        print(f"{u.name}\t{u.role.value}\t{u.lang}{lock}")
    return 0


def _users_role(args: argparse.Namespace) -> int:
    from recordings.users import UnknownUser

    try:
        _user_store(args).set_role(args.name, args.role, by="cli")
    except UnknownUser as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1
    print(f"user {args.name} is now {args.role}")
    return 0


def _users_password(args: argparse.Namespace) -> int:
    from recordings.users import PasswordRejected, UnknownUser

    try:
        _user_store(args).set_password(args.name, _read_password(), by="cli")
    except (PasswordRejected, UnknownUser) as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1
    print(f"password of {args.name} changed; their sessions were ended")
    return 0


def _users_unlock(args: argparse.Namespace) -> int:
    from recordings.users import UnknownUser

    try:
        _user_store(args).unlock(args.name, by="cli")
    except UnknownUser as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1
    print(f"user {args.name} unlocked")
    return 0


def _users_token(args: argparse.Namespace) -> int:
    from recordings.users import UnknownUser

    env = _load(args).web.secret_env
    if not os.environ.get(env):
        print(f"hotline: set {env} (the same value as the server's) first: tokens are keyed with it",
              file=sys.stderr)
        return 2
    store = _user_store(args)
    try:
        token, _ = store.create_session(args.name, kind="token")
    except UnknownUser as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1
    store.audit("cli", "token_issued", args.name)
    print(token)
    return 0


def _console(args: argparse.Namespace) -> int:
    from console import ConsoleServer, create_app
    from recordings import CallStore

    s = _load(args)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    settings = console_settings(s, port=args.port, host=args.host)

    async def run() -> None:
        store = CallStore(s.database_url)
        server = ConsoleServer(create_app(store, None, None, settings, knowledge=_offline_knowledge(s)), settings)
        await server.start()
        print(f"hotline: console on {server.url} (records only, no telephony); Ctrl-C to stop", file=sys.stderr)
        if not server.console.users.count_users():
            print("hotline: no users yet: add one with `hotline users add NAME --role admin`", file=sys.stderr)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()
        store.close()

    asyncio.run(run())
    return 0
