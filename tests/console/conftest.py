"""A console over a real SQLite call store, a real distributor and the real event bus; users per role."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support.kb_console import FLOW, KbConsole

from console import ConsoleSettings, create_app
from console.routing_admin import RoutingHooks
from dialog import DialogEngine
from dialog.flow import load_flow
from dialog.knowledge_store import KnowledgeStore
from hotline.bus import EventBus
from hotline.knowledge_live import LiveKnowledge
from hotline.menus_live import MenusAdmin
from hotline.prompts_live import LivePrompts, PromptsAdmin, PromptStore
from recordings import CallStore
from recordings.users import UserStore
from routing import AgentProfile, AgentState, CallDistributor, QueueConfig
from routing.admin import RoutingBase
from tts import PromptCache, create_synthesizer

PASSWORDS = {"anna": "blue-harbour-7", "sam": "green-valley-42", "ada": "red-mountain-333"}
ROLES = {"anna": "agent", "sam": "supervisor", "ada": "admin"}


@dataclass
class Console:
    client: TestClient[Any, Any]
    store: CallStore
    users: UserStore
    acd: CallDistributor
    bus: EventBus
    tmp: Path
    announced: list[tuple[str, str]] = field(default_factory=list)  # RoutingHooks.changed calls

    async def login(self, name: str, password: str | None = None) -> Any:
        return await login(self.client, name, password)

    async def csrf(self) -> str:
        return await csrf(self.client)


async def login(client: TestClient[Any, Any], name: str, password: str | None = None) -> Any:
    """Logs in through the form (with its double-submit CSRF); returns the final response."""
    page = await client.get("/login")
    html = await page.text()
    nonce = re.search(r'name="csrf_token" value="([^"]+)"', html[html.index('id="login"'):])
    assert nonce, "login form has its CSRF field"
    return await client.post(
        "/login", data={"user": name, "password": password or PASSWORDS[name], "csrf_token": nonce.group(1)},
        allow_redirects=False,
    )


async def csrf(client: TestClient[Any, Any]) -> str:
    r = await client.get("/api/me")
    assert r.status == 200
    return str((await r.json())["csrf"])


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where browser tests save their screenshots: a temporary folder, so a test run leaves the git tree
    as it was; docs/console/ (the pictures in docs/CONSOLE.md) only with HOTLINE_DOCS_SCREENSHOTS=1."""
    if os.environ.get("HOTLINE_DOCS_SCREENSHOTS") == "1":
        folder = Path(__file__).resolve().parents[2] / "docs" / "console"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="session")
def users_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with the three users, made once (scrypt is slow on purpose) and copied per test."""
    path = tmp_path_factory.mktemp("template") / "hotline.db"
    store = CallStore(f"sqlite:///{path}")
    users = UserStore(store.engine)
    for name, role in ROLES.items():
        users.add_user(name, PASSWORDS[name], role)
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return path


@pytest.fixture
async def console(tmp_path: Path, users_db: Path) -> AsyncIterator[Console]:
    shutil.copy(users_db, tmp_path / "hotline.db")
    store = CallStore(f"sqlite:///{tmp_path / 'hotline.db'}")
    users = UserStore(store.engine)
    acd = CallDistributor([QueueConfig("general")])
    acd.add_agent(AgentProfile("anna", "sip:anna@127.0.0.1:5090"), AgentState.AVAILABLE)
    bus = EventBus()
    settings = ConsoleSettings(port=0, recordings_dir=str(tmp_path / "recordings"), session_idle_s=600)
    announced: list[tuple[str, str]] = []
    hooks = RoutingHooks(RoutingBase.of(acd), lambda kind, name: announced.append((kind, name)))  # as hotline/web.py
    app = create_app(store, acd, bus.subscribe, settings, users=users, routing=hooks)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Console(client, store, users, acd, bus, tmp_path, announced)
    finally:
        await client.close()
        store.close()


CALL_ID = "20261201-100000-abcd1234"


def write_wav(path: Path, seconds: float = 1.0) -> Path:
    """A real stereo 8 kHz WAV, as StereoRecorder writes."""
    import numpy as np

    from recordings import StereoRecorder

    path.parent.mkdir(parents=True, exist_ok=True)
    rec = StereoRecorder(path)
    n = int(8000 * seconds)
    tone = (np.sin(np.arange(n) * 2 * np.pi * 440 / 8000) * 8000).astype("<i2").tobytes()
    for i in range(0, len(tone), 320):
        rec.tap("in", tone[i:i + 320])
        rec.tap("out", tone[i:i + 320])
    rec.close()
    return path


def seed_call(c: Console, call_id: str = CALL_ID, *, agent: str = "anna") -> None:
    """One finished call handled by `agent`, with transcript lines and a recording."""
    wav = write_wav(c.tmp / "recordings" / f"{call_id}.wav")
    c.store.start_call(call_id, sip_call_id=f"{call_id}@test", caller="13800138000", called="95555",
                       recording_path=str(wav))
    c.store.add_line(call_id, "system", "Welcome to Example Bank.", 0.0, 2.0)
    c.store.add_line(call_id, "caller", "I lost my credit card", 3.0, 4.5, confidence=0.9)
    c.store.add_line(call_id, "caller", "我的信用卡丢了", 5.0, 6.0, confidence=0.8)
    c.store.update_call(call_id, agent=agent, queue="general", last_intent="card_lost", language="en")
    c.store.end_call(call_id, outcome="transferred", end_reason="agent_call_ended")


@pytest.fixture
def seeded(console: Console) -> str:
    """The console with one finished call (see seed_call); returns its id."""
    seed_call(console)
    return CALL_ID


@dataclass
class PromptConsole:
    """A console with the prompt and menu pages wired as `hotline serve` wires them, over the real bank flow."""

    kc: KbConsole  # client, call store, users, knowledge store, live knowledge
    prompts: LivePrompts
    folder: Path

    @property
    def client(self) -> TestClient[Any, Any]:
        return self.kc.client

    async def restarted(self) -> tuple[LiveKnowledge, LivePrompts]:
        """Another worker, or this one after a restart: a new LiveKnowledge (no poller) and LivePrompts over
        the same folders, started (stop the LiveKnowledge after)."""
        flow = load_flow(FLOW)
        live = LiveKnowledge(flow, DialogEngine(flow), KnowledgeStore(self.folder / "knowledge", flow.languages),
                             poll_s=0)
        await live.start()
        prompts = LivePrompts(live, PromptStore(self.folder / "prompts"))
        await asyncio.to_thread(prompts.start)
        return live, prompts


@pytest.fixture(scope="module")
def cache() -> PromptCache:
    return PromptCache(create_synthesizer("espeak"), target_rate=8000)


@pytest.fixture
async def pc(tmp_path: Path, users_db: Path, cache: PromptCache) -> AsyncIterator[PromptConsole]:
    shutil.copy(users_db, tmp_path / "hotline.db")
    store = CallStore(f"sqlite:///{tmp_path / 'hotline.db'}")
    users = UserStore(store.engine)
    flow = load_flow(FLOW)
    kb = KnowledgeStore(tmp_path / "knowledge", flow.languages)
    live = LiveKnowledge(flow, DialogEngine(flow), kb, poll_s=0)
    await live.start()
    prompts = LivePrompts(live, PromptStore(tmp_path / "prompts"))
    await asyncio.to_thread(prompts.start)
    app = create_app(store, None, None, ConsoleSettings(port=0, session_idle_s=600), users=users,
                     prompts=PromptsAdmin(prompts, cache.render, cache.target_rate), menus=MenusAdmin(prompts))
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield PromptConsole(KbConsole(client, store, users, kb, live), prompts, tmp_path)
    finally:
        await client.close()
        await live.stop()
        store.close()
