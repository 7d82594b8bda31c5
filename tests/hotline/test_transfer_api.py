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
from routing import AgentProfile, AgentState, CallDistributor, QueueConfig, TransferRefused, TransferRequest

CALL = "20261201-120000-0123abcd"
PASSWORD = "quiet-river-2718"


class Setup:
    def __init__(self, client: TestClient[Any, Any], bus: EventBus, users: UserStore, seen: list[Event]) -> None:
        self.client, self.bus, self.users, self.seen = client, bus, users, seen
        self.acd = CallDistributor()

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
    acd.add_agent(AgentProfile("anna", "sip:anna@127.0.0.1:9"), AgentState.AVAILABLE)
    acd.add_agent(AgentProfile("bob", "sip:bob@127.0.0.1:9"), AgentState.AVAILABLE)
    acd.add_agent(AgentProfile("carl", "sip:carl@127.0.0.1:9"), AgentState.ON_BREAK)
    acd.add_agent(AgentProfile("dora", "sip:dora@127.0.0.1:9", queues=frozenset({"cards"})), AgentState.AVAILABLE)
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    TransferRouter(acd, bus, "w1", lambda: [])  # the call runs on another worker: the request goes on the bus
    app = create_app(store, acd, bus.subscribe, ConsoleSettings(port=0, session_idle_s=600), users=users)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    bus.publish(AgentAssigned(CALL, queue="general", agent="anna", context={"intent": "card_lost"}))
    try:
        setup = Setup(client, bus, users, seen)
        setup.acd = acd
        yield setup
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


async def test_transfer_to_a_named_agent_and_consult_steps_go_on_the_bus(setup: Setup) -> None:
    """To a named agent: rung for the call's queue, or one she is allowed in; busy or unknown agents refused;
    consult, complete and cancel travel as `call.transfer_requested` with their kind (hotline/consult.py)."""
    token = await setup.login("anna")
    status, body = await setup.transfer(token, {"agent": "bob", "mode": "blind"})
    assert (status, body) == (202, {"call_id": CALL, "queue": "general", "mode": "blind", "agent": "bob"})
    status, body = await setup.transfer(token, {"agent": "dora"})  # she takes only cards calls
    assert status == 202 and body["queue"] == "cards"
    status, body = await setup.transfer(token, {"agent": "dora", "queue": "general"})
    assert status == 400 and body["error"] == "agent dora does not take calls of general"
    status, body = await setup.transfer(token, {"agent": "carl"})
    assert status == 409 and body["error"] == "agent carl is on break"
    status, body = await setup.transfer(token, {"agent": "zed"})
    assert status == 400 and body["error"] == "unknown agent 'zed'"
    steps = []
    for path, payload in (("consult", {"agent": "bob", "note": "limit?"}), ("consult/complete", None),
                          ("consult/cancel", None)):
        r = await setup.client.post(f"/api/calls/{CALL}/{path}", json=payload, headers={"X-CSRF-Token": token})
        steps.append((r.status, (await r.json()).get("step")))
    assert steps == [(202, "consult"), (202, "complete"), (202, "cancel")]
    for name in ("anna", "bob"):  # (anna stands for the agent on the call: not free)
        setup.acd.set_state(name, AgentState.ON_BREAK)
    r = await setup.client.post(f"/api/calls/{CALL}/consult", json={"queue": "general"},
                                headers={"X-CSRF-Token": token})
    assert r.status == 409 and (await r.json())["error"] == "nobody in general is free to consult"
    sent = [(e.kind, e.to_agent, e.to_queue, e.mode, e.note) for e in setup.seen if isinstance(e, TransferRequested)]
    assert sent == [("transfer", "bob", "general", "blind", ""), ("transfer", "dora", "cards", "context", ""),
                    ("consult", "bob", "general", "context", "limit?"), ("complete", "", "general", "context", ""),
                    ("cancel", "", "general", "context", "")]
    audit = [(a.action, a.detail) for a in setup.users.audit_log(action=None) if a.action.startswith(("trans", "cons"))]
    assert ("transfer", "agent bob (general, blind)") in audit and ("consult_complete", "general") in audit, audit


async def test_the_desktop_lists_transfer_targets(setup: Setup) -> None:
    token = await setup.login("anna")
    assert token
    data = await (await setup.client.get("/api/transfer-targets")).json()
    assert data["queues"] == ["general", "cards"]
    agents = {a["id"]: (a["state"], a["ready"], a["queues"]) for a in data["agents"]}
    both = ["general", "cards"]
    assert agents == {"anna": ("available", True, both), "bob": ("available", True, both),
                      "carl": ("on_break", False, both), "dora": ("available", True, ["cards"])}
    html = await (await setup.client.get("/agent")).text()
    assert 'id="transfer-form"' in html and "/static/transfer.js" in html


@pytest.mark.slow
async def test_the_desktops_transfer_form_in_a_browser_consults_and_completes(setup: Setup) -> None:
    """Debian's chromium (Playwright) on the agent desktop: the form lists queues and agents (one on break
    cannot be chosen), Consult then Complete transfer post to the API, and the steps go out on the bus."""
    from playwright.async_api import async_playwright

    base = str(setup.client.make_url("")).rstrip("/")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                           args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            await page.goto(f"{base}/login")
            await page.fill("input[name=user]", "anna")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{base}/agent")
            await page.locator("#transfer-target option[value='agent:bob']").wait_for(state="attached", timeout=10_000)
            values = await page.eval_on_selector_all("#transfer-target option",
                                                     "os => os.map(o => [o.value, o.disabled])")
            assert values == [["queue:general", False], ["queue:cards", False], ["agent:bob", False],
                              ["agent:carl", True], ["agent:dora", False]]  # not herself; carl is on break
            await page.select_option("#transfer-target", "agent:bob")
            await page.fill("#transfer-note", "asks for a higher limit")
            await page.click("#consult-go")
            await page.locator("#transfer-result[data-status='202']").wait_for(timeout=10_000)
            await page.click("#consult-complete")
            await page.locator("#consult-complete").wait_for(state="hidden", timeout=10_000)
            assert errors == [], errors
        finally:
            await browser.close()
    sent = [(e.kind, e.to_agent, e.note) for e in setup.seen if isinstance(e, TransferRequested)]
    assert sent == [("consult", "bob", "asks for a higher limit"), ("complete", "", "")]
