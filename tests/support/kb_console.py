"""A console with the knowledge-base editor and the chat channel wired as `hotline serve` wires them:
a real `KnowledgeStore` in a temporary folder, `LiveKnowledge` over the real bank flow, `StoreAdmin`
and the chat callable from hotline/knowledge_live.py (no telephony)."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from console import ConsoleSettings, create_app
from dialog import DialogEngine
from dialog.flow import load_flow
from dialog.knowledge_store import KnowledgeStore
from hotline.knowledge_live import LiveKnowledge, StoreAdmin, chat_callable
from recordings import CallStore
from recordings.users import UserStore

ROOT = Path(__file__).resolve().parents[2]
FLOW = ROOT / "configs" / "flows" / "bank.yaml"


@dataclass
class KbConsole:
    client: TestClient[Any, Any]
    store: CallStore
    users: UserStore
    kb: KnowledgeStore
    live: LiveKnowledge

    async def login(self, name: str, password: str) -> str:
        """Logs in through the form; returns the session's CSRF token."""
        page = await (await self.client.get("/login")).text()
        nonce = re.search(r'name="csrf_token" value="([^"]+)"', page[page.index('id="login"'):])
        assert nonce, "the login form has its CSRF field"
        r = await self.client.post("/login", data={"user": name, "password": password, "csrf_token": nonce.group(1)},
                                   allow_redirects=False)
        assert r.status == 302, await r.text()
        me = await self.client.get("/api/me")
        return str((await me.json())["csrf"])

    async def logout(self) -> None:
        self.client.session.cookie_jar.clear()

    async def wrong_statuses(self, routes: list[tuple[str, str, Any, dict[str, int]]],
                             passwords: dict[str, str]) -> list[str]:
        """Each role of the routes' expectations logs in ("anonymous": nobody) and sends every route (POSTs
        with the session's CSRF header); a line for each status that is not the one expected."""
        wrong = []
        for role in routes[0][3]:
            await self.logout()
            token = await self.login(role, passwords[role]) if role in passwords else ""
            for method, path, body, expected in routes:
                headers = {"X-CSRF-Token": token} if token and method == "POST" else {}
                r = await self.client.request(method, path, data=body, headers=headers, allow_redirects=False)
                if r.status != expected[role]:
                    text = (await r.text())[:150]
                    wrong.append(f"{role}: {method} {path}: {r.status} (expected {expected[role]}) {text}")
        return wrong


@asynccontextmanager
async def kb_console(tmp: Path, users_db: Path, **settings: Any) -> AsyncIterator[KbConsole]:
    shutil.copy(users_db, tmp / "hotline.db")
    store = CallStore(f"sqlite:///{tmp / 'hotline.db'}")
    users = UserStore(store.engine)
    flow = load_flow(FLOW)
    kb = KnowledgeStore(tmp / "knowledge", flow.languages)
    live = LiveKnowledge(flow, DialogEngine(flow), kb, poll_s=0)
    await live.start()  # seeds the draft from the flow's entries
    app = create_app(store, None, None, ConsoleSettings(port=0, session_idle_s=600, **settings), users=users,
                     knowledge=StoreAdmin(kb, live), chat=chat_callable(lambda: live.engine))
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield KbConsole(client, store, users, kb, live)
    finally:
        await client.close()
        await live.stop()
        store.close()


async def until(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """Polls `check` every 0.2 s until it returns something true; fails naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
