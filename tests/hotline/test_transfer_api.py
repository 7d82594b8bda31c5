"""The console's transfer API (console/transfer_api.py) over a real console, SQLite store, distributor and
event bus: who may transfer, what is refused, and that the request goes out on the bus as
`call.transfer_requested` for the worker that runs the call (hotline/transfer.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from console import ConsoleSettings, create_app
from hotline.bus import EventBus
from hotline.events import AgentAssigned, Event, TransferRequested
from hotline.transfer import TransferRouter
from recordings import CallStore
from recordings.users import UserStore
from routing import CallDistributor, QueueConfig, TransferRefused, TransferRequest

CALL = "20261201-120000-0123abcd"
PASSWORD = "quiet-river-2718"


class Setup:
    def __init__(self, client: TestClient[Any, Any], bus: EventBus, users: UserStore, seen: list[Event]) -> None:
        self.client, self.bus, self.users, self.seen = client, bus, users, seen

    async def login(self, name: str) -> str:
        self.client.session.cookie_jar.clear()
        html = await (await self.client.get("/login")).text()
        nonce = re.search(r'name="csrf_token" value="([^"]+)"', html[html.index('id="login"'):])
        assert nonce
        r = await self.client.post("/login", data={"user": name, "password": PASSWORD, "csrf_token": nonce.group(1)},
                                   allow_redirects=False)
        assert r.status == 302
        return str((await (await self.client.get("/api/me")).json())["csrf"])

    async def transfer(self, token: str, body: Any, call: str = CALL) -> tuple[int, Any]:
        r = await self.client.post(f"/api/calls/{call}/transfer", json=body, headers={"X-CSRF-Token": token})
        return r.status, await r.json()


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    store = CallStore(f"sqlite:///{tmp_path / 'hotline.db'}")
    users = UserStore(store.engine)
    for name, role in (("anna", "agent"), ("bob", "agent"), ("sam", "supervisor")):
        users.add_user(name, PASSWORD, role)
    acd = CallDistributor([QueueConfig("general"), QueueConfig("cards")])
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    TransferRouter(acd, bus, "w1", lambda: [])  # the call runs on another worker: the request goes on the bus
    app = create_app(store, acd, bus.subscribe, ConsoleSettings(port=0, session_idle_s=600), users=users)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    bus.publish(AgentAssigned(CALL, queue="general", agent="anna", context={"intent": "card_lost"}))
    try:
        yield Setup(client, bus, users, seen)
    finally:
        await client.close()
        store.close()


async def test_the_agent_on_the_call_transfers_it_and_the_request_goes_on_the_bus(setup: Setup) -> None:
    token = await setup.login("anna")
    status, body = await setup.transfer(token, {"queue": "cards", "mode": "context", "note": "disputes a payment"})
    assert status == 202, body
    assert body == {"call_id": CALL, "queue": "cards", "mode": "context"}
    sent = [e for e in setup.seen if isinstance(e, TransferRequested)]
    assert [(e.call_id, e.to_queue, e.mode, e.note, e.by, e.node) for e in sent] == [
        (CALL, "cards", "context", "disputes a payment", "anna", "w1")]
    audit = setup.users.audit_log(action="transfer")
    assert [(a.user, a.target) for a in audit] == [("anna", CALL)]


async def test_transfers_refused_with_a_reason(setup: Setup) -> None:
    token = await setup.login("bob")
    assert (await setup.transfer(token, {"queue": "cards"}))[0] == 403  # not bob's call
    token = await setup.login("sam")  # a supervisor may transfer anyone's call
    status, body = await setup.transfer(token, {"queue": "vip"})
    assert status == 400 and "unknown queue 'vip'" in body["error"]
    status, body = await setup.transfer(token, {"queue": "cards", "mode": "warm"})
    assert status == 400 and "mode must be one of blind, context" in body["error"]
    status, body = await setup.transfer(token, {"to": "cards"})
    assert status == 400 and "queue" in body["error"]
    status, body = await setup.transfer(token, {"queue": "cards"}, call="20261201-120000-ffffffff")
    assert status == 404 and "not connected to an agent" in body["error"]
    assert not [e for e in setup.seen if isinstance(e, TransferRequested)]
    status, _ = await setup.transfer(token, {"queue": "cards", "mode": "blind"})
    assert status == 202


def test_a_request_is_checked_before_it_leaves() -> None:
    with pytest.raises(TransferRefused, match="note"):
        TransferRequest(CALL, "cards", "context", "x" * 2001)
    acd = CallDistributor([QueueConfig("general")])
    with pytest.raises(TransferRefused, match="not handled in this process"):
        acd.transfers.request(TransferRequest(CALL, "general"))
