"""/admin/queues and /admin/agents: checked, stored, audited, live in the distributor (or at the next start)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from support.postgres import PgServer, pg_server  # noqa: F401  (fixture)

from console import ConsoleSettings, create_app
from recordings import CallStore
from recordings.migrate import current, head
from recordings.routing_admin import RoutingOverrides
from recordings.users import UserStore
from routing import AgentProfile, AgentState, CallDistributor, QueueConfig
from routing.admin import apply_overrides

from .conftest import csrf, login

QUEUE_FORM = {"strategy": "round_robin", "needs": "en:1", "priority": "2", "max_wait_s": "300", "overflow": "",
              "overflow_to": "", "wrap_up_s": "12", "ring_timeout_s": "25", "weekly": "mon-sun=00:00-24:00",
              "tz": "Asia/Shanghai", "holidays": ""}


async def _post(console: Any, path: str, form: dict[str, str]) -> Any:
    token = await console.csrf()
    return await console.client.post(path, data={**form, "csrf_token": token}, allow_redirects=False)


async def test_admin_changes_a_queue_live_stored_and_audited(console: Any) -> None:
    assert (await console.login("ada")).status == 302
    r = await _post(console, "/admin/queues/general", QUEUE_FORM)
    assert r.status == 302 and r.headers["Location"] == "/admin/queues?done=live"
    cfg = console.acd.queue_config("general")
    assert (cfg.strategy, dict(cfg.needs), cfg.priority, cfg.wrap_up_s, cfg.ring_timeout_s) == (
        "round_robin", {"en": 1}, 2, 12.0, 25.0)
    assert not cfg.hours.always_open and cfg.hours.tz == "Asia/Shanghai"
    queues, _agents = RoutingOverrides(console.store.engine).as_maps()
    assert queues["general"]["wrap_up_s"] == 12.0
    [entry] = console.users.audit_log(5, action="queue_change")
    assert entry.user == "ada" and entry.target == "general" and '"round_robin"' in entry.detail
    page = await (await console.client.get("/admin/queues?done=live")).text()
    assert "live now" in page and 'value="12"' in page and "mon-sun=00:00-24:00" in page


async def test_bad_queue_forms_get_clear_errors_and_change_nothing(console: Any) -> None:
    assert (await console.login("ada")).status == 302
    before = console.acd.queue_config("general")
    cases = [
        ({"strategy": "fastest_first"}, "strategy must be one of"),
        ({"wrap_up_s": "-5"}, "must not be negative"),
        ({"max_wait_s": "soon"}, "is not a number"),
        ({"needs": "<script>alert(1)</script>:2"}, "skill name must be"),
        ({"needs": "x" * 5000}, "at most 1000 characters"),
        ({"overflow": "queue", "overflow_to": "nowhere"}, "overflow target"),
        ({"weekly": "funday=08:00-09:00"}, "bad opening hours"),
        ({"tz": "Mars/Olympus", "weekly": "mon=08:00-09:00"}, "bad opening hours"),
    ]
    for change, words in cases:
        r = await _post(console, "/admin/queues/general", {**QUEUE_FORM, **change})
        body = await r.text()
        assert r.status == 400 and words in body, (change, body[:300])
        assert "<script>alert" not in body  # escaped
    assert console.acd.queue_config("general") is before
    assert RoutingOverrides(console.store.engine).all() == []
    assert console.users.audit_log(5, action="queue_change") == []


async def test_agent_change_waits_for_the_call_and_a_new_agent_is_live(console: Any) -> None:
    acd: CallDistributor = console.acd
    got = await asyncio.wait_for(acd.acquire("general", "c1"), 1)
    assert got is not None and got.id == "anna"
    acd.answered("anna")
    assert (await console.login("ada")).status == 302
    r = await _post(console, "/admin/agents", {"id": "anna", "name": "Anna", "uri": "sip:anna@127.0.0.1:5099",
                                               "skills": "en:3, cards:2", "queues": "general"})
    assert r.headers["Location"] == "/admin/agents?done=after_call"
    assert acd.agent("anna").profile.uri == "sip:anna@127.0.0.1:5090"
    page = await (await console.client.get("/admin/agents")).text()
    assert "cards:2, en:3" in page and "applies when the agent" in page
    acd.finished("anna")
    assert acd.agent("anna").profile.uri == "sip:anna@127.0.0.1:5099"
    r = await _post(console, "/admin/agents", {"id": "bob", "uri": "sip:bob@127.0.0.1:5091", "skills": "zh"})
    assert r.headers["Location"] == "/admin/agents?done=live" and acd.agent("bob").state is AgentState.AVAILABLE
    for form, words in (({"id": "eve", "uri": "http://evil.example"}, "SIP URI"),
                        ({"id": "eve", "uri": "sip:eve@h", "skills": "zh:11"}, "level must be"),
                        ({"id": "eve", "uri": "sip:eve@h", "queues": "nosuch"}, "unknown queue"),
                        ({"id": "e v e", "uri": "sip:eve@h"}, "agent name must be")):
        r = await _post(console, "/admin/agents", form)
        assert r.status == 400 and words in await r.text(), form
    assert [e.target for e in console.users.audit_log(5, action="agent_change")] == ["bob", "anna"]


async def test_console_alone_stores_changes_for_the_next_start(tmp_path: Path, users_db: Path) -> None:
    shutil.copy(users_db, tmp_path / "hotline.db")
    url = f"sqlite:///{tmp_path / 'hotline.db'}"
    store = CallStore(url)
    assert current(store.engine) == head() >= "0005"  # 0005 made routing_overrides (later ones may follow)
    assert "routing_overrides" in sa.inspect(store.engine).get_table_names()
    settings = ConsoleSettings(port=0, recordings_dir=str(tmp_path / "rec"), session_idle_s=600)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(store, None, None, settings,
                                                                    users=UserStore(store.engine))))
    await client.start_server()
    try:
        assert (await login(client, "ada")).status == 302
        token = await csrf(client)
        page = await (await client.get("/admin/queues")).text()
        assert 'id="offline-note"' in page and 'id="queue-new"' in page  # no distributor: a form by name
        r = await client.post("/admin/queues", data={**QUEUE_FORM, "name": "general", "csrf_token": token},
                              allow_redirects=False)
        assert r.headers["Location"] == "/admin/queues?done=next_start"
        r = await client.post("/admin/queues", data={**QUEUE_FORM, "name": "../etc", "csrf_token": token})
        assert r.status == 400 and "queue name must be" in await r.text()
        r = await client.post("/admin/agents", data={"id": "anna", "uri": "sip:anna@127.0.0.1:5090",
                                                     "skills": "zh:3", "csrf_token": token}, allow_redirects=False)
        assert r.headers["Location"] == "/admin/agents?done=next_start"
        page = await (await client.get("/admin/agents?done=next_start")).text()
        assert "next start" in page and "zh:3" in page
    finally:
        await client.close()
        store.close()
    # the next start: YAML-built distributor, stored overrides laid over it
    store = CallStore(url)
    acd = CallDistributor([QueueConfig("general", wrap_up_s=5.0)])
    acd.add_agent(AgentProfile("anna", "sip:anna@127.0.0.1:5090", skills={"en": 1}), AgentState.AVAILABLE)
    done = apply_overrides(acd, *RoutingOverrides(store.engine).as_maps())
    store.close()
    assert done.skipped == [] and acd.queue_config("general").wrap_up_s == 12.0
    assert dict(acd.agent("anna").skills) == {"zh": 3}


@pytest.mark.slow
def test_overrides_on_a_real_postgresql_replace_and_round_trip(pg_server: PgServer) -> None:  # noqa: F811
    store = CallStore(pg_server.create_database())
    try:
        assert current(store.engine) == head()
        rows = RoutingOverrides(store.engine)
        rows.put("agent", "anna", {"uri": "sip:anna@h", "skills": {"zh": 2}}, by="ada")
        rows.put("agent", "anna", {"uri": "sip:anna@h", "skills": {"zh": 3}, "name": "安娜"}, by="bob")
        rows.put("queue", "general", {"wrap_up_s": 9}, by="ada")
        [agent] = rows.all("agent")
        assert agent.data == {"uri": "sip:anna@h", "skills": {"zh": 3}, "name": "安娜"} and agent.updated_by == "bob"
        assert rows.as_maps()[0] == {"general": {"wrap_up_s": 9}}
        with pytest.raises(ValueError, match="too large"):
            rows.put("queue", "general", {"needs": {f"s{i}": 1 for i in range(3000)}}, by="ada")
        assert rows.delete("queue", "general") and rows.as_maps()[0] == {}
    finally:
        store.close()


async def test_a_ring_timeout_changed_here_is_the_one_sessions_and_callbacks_ring_for(console: Any) -> None:
    """The session (`_ring_agent`) and the callback dialer ring an agent for hotline/callback.py `ring_timeout_s`:
    the YAML's until an admin changes it here, then the live value; max wait the same way (one helper)."""
    from hotline.callback import max_wait_s, ring_timeout_s
    from hotline.settings import DEFAULT_CONFIG, load_settings

    qs = load_settings(DEFAULT_CONFIG, queues=[{"name": "general", "ring_timeout_s": 20, "max_wait_s": 600}]).queues[0]
    assert (ring_timeout_s(console.acd, qs), max_wait_s(console.acd, qs)) == (20.0, 600.0)
    assert (await console.login("ada")).status == 302
    r = await _post(console, "/admin/queues/general", {**QUEUE_FORM, "ring_timeout_s": "7.5", "max_wait_s": "90"})
    assert r.status == 302
    assert (ring_timeout_s(console.acd, qs), max_wait_s(console.acd, qs)) == (7.5, 90.0)
    r = await _post(console, "/admin/queues/general", {**QUEUE_FORM, "ring_timeout_s": "", "max_wait_s": ""})
    assert r.status == 302  # emptied: the YAML's values again
    assert (ring_timeout_s(console.acd, qs), max_wait_s(console.acd, qs)) == (20.0, 600.0)
    assert ring_timeout_s(CallDistributor([QueueConfig("other")]), qs) == 20.0  # a queue the distributor lacks


async def test_admin_resets_a_queue_and_an_agent_to_the_yaml_and_removes_an_added_agent(console: Any) -> None:
    """Reset deletes the stored row and puts the configuration file's values back live; an agent the YAML does
    not have is removed from the running distributor (no call routed to her, gone from the wallboard); each is
    audited and announced to other workers."""
    acd: CallDistributor = console.acd
    yaml_queue, yaml_anna = acd.queue_config("general"), acd.agent("anna").profile
    overrides = RoutingOverrides(console.store.engine)
    assert (await console.login("ada")).status == 302
    assert (await _post(console, "/admin/queues/general", QUEUE_FORM)).status == 302
    assert (await _post(console, "/admin/agents", {"id": "anna", "uri": "sip:anna@127.0.0.1:5099",
                                                   "skills": "zh:3"})).status == 302
    assert (await _post(console, "/admin/agents", {"id": "bob", "uri": "sip:bob@127.0.0.1:5091"})).status == 302
    assert acd.queue_config("general") != yaml_queue and acd.agent("anna").profile != yaml_anna
    queues_page = await (await console.client.get("/admin/queues")).text()
    agents_page = await (await console.client.get("/admin/agents")).text()
    assert 'id="reset-queue-general"' in queues_page
    assert 'id="reset-agent-anna"' in agents_page and "Reset to configuration file" in agents_page
    assert 'id="reset-agent-bob"' in agents_page and ">Remove</button>" in agents_page  # not in the YAML

    r = await _post(console, "/admin/queues/general/reset", {})
    assert r.status == 302 and r.headers["Location"] == "/admin/queues?done=reset_live"
    assert acd.queue_config("general") == yaml_queue and overrides.get("queue", "general") is None
    r = await _post(console, "/admin/agents/anna/reset", {})
    assert r.headers["Location"] == "/admin/agents?done=reset_live"
    assert acd.agent("anna").profile == yaml_anna and overrides.get("agent", "anna") is None
    acd.set_state("anna", AgentState.ON_BREAK)
    got = await asyncio.wait_for(acd.acquire("general", "c1"), 1)
    assert got is not None and got.id == "bob"  # bob is ringing: not removable now
    r = await _post(console, "/admin/agents/bob/reset", {})
    assert r.status == 409 and "when her call is done" in await r.text()
    assert overrides.get("agent", "bob") is not None and acd.agent("bob").state is AgentState.RINGING
    acd.release("bob")
    r = await _post(console, "/admin/agents/bob/reset", {})
    assert r.headers["Location"] == "/admin/agents?done=removed"
    assert "bob" not in {r.id for r in acd.agents()} and overrides.get("agent", "bob") is None
    assert "bob" not in {a.id for a in acd.agent_snapshots()}  # gone from the wallboard
    assert acd.queue_snapshot("general").agents_staffed == 0  # and from the queue's statistics
    wallboard = await (await console.client.get("/api/agents")).json()
    assert "bob" not in {a["id"] for a in wallboard["agents"]}
    assert await acd.acquire("general", "c2", timeout=0.3) is None  # nobody left to route to
    r = await _post(console, "/admin/agents/bob/reset", {})
    assert r.status == 404 and "no stored change" in await r.text()
    r = await _post(console, "/admin/queues/nosuch/reset", {})
    assert r.status == 404
    assert console.announced == [("queue", "general"), ("agent", "anna"), ("agent", "bob"), ("queue", "general"),
                                 ("agent", "anna"), ("agent", "bob")]
    details = [(e.target, e.detail) for e in console.users.audit_log(3, action="agent_change")]
    assert details == [("bob", "removed (not in the configuration file)"), ("anna", "reset to the configuration file"),
                       ("bob", details[2][1])]
    [entry] = console.users.audit_log(1, action="queue_change")
    assert entry.detail == "reset to the configuration file"


async def test_only_admins_reset_and_bad_names_are_refused(console: Any) -> None:
    for user, status in (("anna", 403), ("sam", 403)):
        assert (await console.login(user)).status == 302
        assert (await _post(console, "/admin/queues/general/reset", {})).status == status
        assert (await _post(console, "/admin/agents/anna/reset", {})).status == status
        await console.client.post("/logout", data={"csrf_token": await console.csrf()})
    assert (await console.login("ada")).status == 302
    assert (await _post(console, "/admin/agents/a%20b/reset", {})).status == 400
    assert (await _post(console, "/admin/queues/general/reset", {})).status == 404  # nothing stored
    RoutingOverrides(console.store.engine).put("queue", "gone", {"wrap_up_s": 3}, by="ada")  # the YAML lost it
    r = await _post(console, "/admin/queues/gone/reset", {})
    assert r.headers["Location"] == "/admin/queues?done=reset_next_start"  # a stale row can be deleted
    assert RoutingOverrides(console.store.engine).get("queue", "gone") is None
