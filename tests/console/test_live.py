"""Bus events reach the wallboard and the agent's screen pop over the WebSocket, and the metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from console import ConsoleSettings, create_app
from hotline.events import AgentAssigned, CallEnded, CallQueued, CallStarted, IntentRecognized, TranscriptAdded


async def next_json(ws: Any, topic: str, timeout: float = 2.0) -> dict[str, Any]:
    """The next message with `topic` (others are skipped)."""
    async def wait() -> dict[str, Any]:
        while True:
            msg = await ws.receive_json()
            if msg["topic"] == topic:
                return dict(msg)
    return await asyncio.wait_for(wait(), timeout)


def a_call(bus: Any, call_id: str, agent: str) -> None:
    bus.publish(CallStarted(call_id, "13800138000", "95555"))
    bus.publish(TranscriptAdded(call_id, "system", "Welcome to Example Bank.", 0.0))
    bus.publish(IntentRecognized(call_id, "card_lost", 0.93, {"card_type": "credit"}))
    bus.publish(CallQueued(call_id, "general", "asked_for_agent", 1))
    bus.publish(AgentAssigned(call_id, "general", agent, {"language": "en", "caller": "13800138000"}))
    bus.publish(TranscriptAdded(call_id, "caller", "I lost my card", 3.2, 0.9))


async def test_wallboard_sees_calls_and_transcripts_grow_live(console: Any) -> None:
    await console.login("sam")
    ws = await console.client.ws_connect("/ws/events")
    snap = await next_json(ws, "snapshot")
    assert snap["calls"] == []
    a_call(console.bus, "c1", "anna")
    started = await next_json(ws, "call.started")
    assert started["caller"] == "13800138000"
    line = await next_json(ws, "call.transcript")
    assert line["text"] == "Welcome to Example Bank."
    pop = await next_json(ws, "call.agent_assigned")
    assert pop["screen_pop"]["intent"] == "card_lost"
    assert (await next_json(ws, "call.transcript"))["text"] == "I lost my card"
    # A wallboard opened now gets the call so far.
    ws2 = await console.client.ws_connect("/ws/events")
    snap = await next_json(ws2, "snapshot")
    [call] = snap["calls"]
    assert call["state"] == "with_agent" and [ln["text"] for ln in call["lines"]][-1] == "I lost my card"
    await ws.close()
    await ws2.close()


async def test_agents_get_only_their_own_screen_pop(console: Any) -> None:
    console.acd.add_agent(__import__("routing").AgentProfile("bob", "sip:bob@127.0.0.1:5091"))
    console.users.add_user("bob", "purple-sunset-9", "agent")
    await console.login("anna")
    ws = await console.client.ws_connect("/ws/events")
    await next_json(ws, "snapshot")
    a_call(console.bus, "for-bob", "bob")
    a_call(console.bus, "for-anna", "anna")
    pop = await next_json(ws, "call.agent_assigned")
    assert pop["agent"] == "anna" and pop["call_id"] == "for-anna"
    p = pop["screen_pop"]
    assert (p["caller"], p["intent"], p["slots"], p["language"]) == ("13800138000", "card_lost",
                                                                     {"card_type": "credit"}, "en")
    assert [ln["text"] for ln in p["transcript"]] == ["Welcome to Example Bank."]
    line = await next_json(ws, "call.transcript")
    assert line["call_id"] == "for-anna"  # bob's call never reached anna
    r = await console.client.get("/api/screenpop/anna")
    assert (await r.json())["screen_pop"]["call_id"] == "for-anna"
    console.bus.publish(CallEnded("for-anna", "transferred", "agent_call_ended", 60.0))
    assert (await next_json(ws, "call.ended"))["call_id"] == "for-anna"
    await ws.close()


async def test_websocket_from_a_foreign_origin_is_refused(console: Any) -> None:
    await console.login("sam")
    r = await console.client.get("/ws/events", headers={"Origin": "http://evil.example", "Connection": "Upgrade",
                                                        "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                                        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert r.status == 403


async def test_metrics_count_calls_queue_waits_lines_and_errors(console: Any) -> None:
    a_call(console.bus, "m1", "anna")
    console.bus.publish(CallEnded("m1", "transferred", "agent_call_ended", 42.0))
    console.bus.publish(CallStarted("m2", "1", "2"))
    console.bus.publish(CallQueued("m2", "general", "asked_for_agent", 1))
    text = await (await console.client.get("/metrics")).text()
    assert "hotline_calls_started_total 2.0" in text
    assert 'hotline_calls_ended_total{outcome="transferred"} 1.0' in text
    assert "hotline_calls_in_progress 1.0" in text
    assert 'hotline_queue_waiting{queue="general"} 1.0' in text
    assert 'hotline_queue_wait_seconds_count{queue="general",result="answered"} 1.0' in text
    assert 'hotline_transcript_lines_total{speaker="caller"} 1.0' in text
    console.bus.publish(CallEnded("m2", "failed", "media_error", 3.0))
    text = await (await console.client.get("/metrics")).text()
    assert 'hotline_errors_total{kind="call_failed"} 1.0' in text
    assert 'hotline_queue_wait_seconds_count{queue="general",result="abandoned"} 1.0' in text
    assert "hotline_queue_waiting{queue=\"general\"} 0.0" in text


async def test_readiness_fails_when_a_check_fails_and_health_stays_up(console: Any) -> None:
    down = {"sip": lambda: True, "database": lambda: True, "models": lambda: False}
    app = create_app(console.store, None, None, ConsoleSettings(port=0), ready_checks=down)
    async with TestClient(TestServer(app)) as client:
        r = await client.get("/readyz")
        assert r.status == 503 and (await r.json())["checks"] == {"sip": True, "database": True, "models": False}
        assert (await client.get("/healthz")).status == 200

        async def boom() -> bool:
            raise ConnectionError("db down")

        app2 = create_app(console.store, None, None, ConsoleSettings(port=0), ready_checks={"database": boom})
        async with TestClient(TestServer(app2)) as client2:
            assert (await client2.get("/readyz")).status == 503


async def test_agent_desktop_state_buttons_and_wrap_up(console: Any, seeded: str) -> None:
    await console.login("anna")
    c = console.client
    csrf = await console.csrf()
    r = await c.post("/agent/state", data={"state": "on_break", "csrf_token": csrf}, allow_redirects=False)
    assert r.status == 302 and console.acd.agent("anna").state.value == "on_break"
    page = await (await c.get("/agent?lang=zh")).text()
    assert "小休" in page and "坐席工作台" in page  # Chinese UI, state shown
    r = await c.post("/agent/wrapup", data={"call_id": seeded, "disposition": "resolved", "notes": "换卡 done",
                                            "csrf_token": csrf}, allow_redirects=False)
    assert r.status == 302
    [note] = console.users.notes(seeded)
    assert (note.user, note.disposition, note.notes) == ("anna", "resolved", "换卡 done")
    r = await c.post("/api/calls/nosuchcall/wrapup", json={"disposition": "resolved"}, headers={"X-CSRF-Token": csrf})
    assert r.status == 404
    r = await c.post(f"/api/calls/{seeded}/wrapup", json={"disposition": "???"}, headers={"X-CSRF-Token": csrf})
    assert r.status == 400 and "disposition" in (await r.json())["error"]


async def test_dashboard_shows_the_records_figures(console: Any, seeded: str) -> None:
    console.store.start_call("c2", sip_call_id="c2", caller="1", called="2")
    console.store.end_call("c2", outcome="goodbye", end_reason="caller_hangup")
    await console.login("sam")
    html = await (await console.client.get("/dashboard?by=day&lang=en")).text()
    kpis = html[html.index('id="kpis"'):html.index("</section>", html.index('id="kpis"'))]
    assert "<b>2</b>Calls" in kpis  # the seeded transferred call and this one
    assert "<b>50 %</b>Contained by the robot" in kpis
    assert 'value="2"' in html  # the day's bar


async def test_an_open_websocket_closes_once_its_session_ends(console: Any, monkeypatch: Any) -> None:
    import aiohttp

    from console import api as console_api

    monkeypatch.setattr(console_api, "WS_RECHECK_S", 0.2)
    await console.login("sam")
    token = console.client.session.cookie_jar.filter_cookies(console.client.make_url("/"))["hotline_session"].value
    ws = await console.client.ws_connect("/ws/events")
    await next_json(ws, "snapshot")
    console.users.end_session(token)  # e.g. logout in another tab, or a password change
    msg = await asyncio.wait_for(ws.receive(), 3)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
