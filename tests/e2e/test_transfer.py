"""An agent transfers a connected caller to another queue, asked from another process over MQTT (as the
console on another worker would): `hotline serve` in its own process with `events.backend: mqtt`, a real
mosquitto, a test caller and two agents' phones (docs/ROUTING.md, "Transfers")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from support.agent_legs import leg_from, send_paced, tone, tone_share, words
from support.e2e_server import ROOT, Server, free_sip_port, start_server, stop_server, write_config
from support.mosquitto import Mosquitto, running_broker

from hotline.events import AgentAssigned, AgentStateUpdated, Event, TransferRequested, TransferStatus
from hotline.mqtt_bus import MqttEventBus
from telephony import AgentPhone, TestCaller

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

GENERAL_PORT = free_sip_port()
CARDS_PORT = free_sip_port()


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    yield from running_broker()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, broker: Mosquitto) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("transfer")
    general = yaml.safe_load((ROOT / "configs" / "server.yaml").read_text())["queues"][0]
    general.update(agents=[{"name": "agent0", "uri": f"sip:agent0@127.0.0.1:{GENERAL_PORT}", "skills": {"en": 1}}],
                   wrap_up_s=3)
    cards = {"name": "cards", "needs": {"cards": 1}, "wrap_up_s": 0,
             "agents": [{"name": "agent1", "uri": f"sip:agent1@127.0.0.1:{CARDS_PORT}", "skills": {"cards": 1}}]}
    cfg = write_config(tmp, agent_ports=[GENERAL_PORT], queues=[general, cards], endpointing__no_input_s=3.0,
                       events={"backend": "mqtt", "host": "127.0.0.1", "port": broker.port})
    srv = start_server(cfg, tmp / "var")
    yield srv
    stop_server(srv)


async def until(cond: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def test_agent_transfers_the_caller_to_another_queue_with_context_over_mqtt(
    server: Server, broker: Mosquitto, ear: Any, voice: Any
) -> None:
    other = MqttEventBus("127.0.0.1", broker.port, node="console-worker")  # where the agent's console runs
    seen: list[Event] = []
    other.subscribe(seen.append)
    await other.start()
    try:
        await other.connected()
        async with (
            AgentPhone(port=GENERAL_PORT, play_pcm=voice("General desk, how can I help?")) as first_agent,
            AgentPhone(port=CARDS_PORT, play_pcm=voice("Thank you for waiting."), repeat=True,
                       gap_s=1.0) as cards_agent,
            TestCaller() as tc,
        ):
            leg = await tc.call(server.uri, from_user="13700003333")
            await tc.listen(leg, silence_s=1.5, timeout_s=40)
            tc.send_dtmf(leg, "0")
            first_leg = await leg_from(first_agent, "13700003333", 40)
            assigned = await until(lambda: [e for e in seen if isinstance(e, AgentAssigned)], 20, "screen pop 1")
            call_id = assigned[0].call_id
            await asyncio.sleep(1.0)
            other.publish(TransferRequested(call_id, to_queue="cards", mode="context",
                                            note="Customer disputes a card payment.", by="agent0",
                                            node="console-worker"))
            await asyncio.wait_for(first_leg.ended.wait(), 10)  # the first agent's leg is hung up
            cards_leg = await leg_from(cards_agent, "13700003333", 30)  # the caller is put through to cards
            pop = await until(lambda: [e for e in seen if isinstance(e, AgentAssigned) and e.agent == "agent1"], 20,
                              "screen pop 2")
            ctx = pop[0].context
            assert ctx["note"] == "Customer disputes a card payment."
            assert ctx["transferred_from"] == "agent0" and ctx["transfer_mode"] == "context"
            assert any("connected to agent agent0" in line for line in ctx["transcript"]), ctx["transcript"]
            first_states = [e.new for e in seen if isinstance(e, AgentStateUpdated) and e.agent == "agent0"]
            assert "wrap_up" in first_states, first_states  # the first agent wraps up
            heard = ""
            deadline = time.monotonic() + 20
            while "waiting" not in heard and time.monotonic() < deadline:
                pcm = await tc.listen(leg, silence_s=1.0, timeout_s=8)
                heard += " " + words((await asyncio.to_thread(ear.transcribe, pcm, 8000, "en")).text)
            # the caller hears the second agent ("for waiting" is in no hotline prompt; whisper once heard "and you")
            assert "you for waiting" in heard, heard
            assert not cards_leg.ended.is_set()
            await leg.hangup()
            await asyncio.wait_for(cards_leg.ended.wait(), 10)
    finally:
        await other.stop()

    call = await until(lambda: (c := server.store.get_call(call_id)) and c.ended_at and c, 20, "the call record")
    assert call.outcome == "transferred" and call.agent == "agent1" and call.queue == "cards"
    events = [ln.text for ln in server.store.get_transcript(call_id) if ln.speaker == "event"]
    assert any("transferred by agent0 to cards (context)" in e for e in events), events
    assert any("connected to agent agent1" in e for e in events), events


async def test_a_refer_from_the_agents_phone_is_a_blind_transfer_to_the_named_queue(
    server: Server, broker: Mosquitto, voice: Any
) -> None:
    watcher = MqttEventBus("127.0.0.1", broker.port, node="watcher")
    seen: list[Event] = []
    watcher.subscribe(seen.append)
    await watcher.start()
    try:
        await watcher.connected()
        async with (
            AgentPhone(port=GENERAL_PORT, play_pcm=voice("General desk.")) as first_agent,
            AgentPhone(port=CARDS_PORT, play_pcm=voice("Thank you for waiting.")) as cards_agent,
            TestCaller() as tc,
        ):
            leg = await tc.call(server.uri, from_user="13700004444")
            await tc.listen(leg, silence_s=1.5, timeout_s=40)
            tc.send_dtmf(leg, "0")
            first_leg = await leg_from(first_agent, "13700004444", 40)
            # Her screen pop: from then on the session takes her REFERs (a REFER in the instant the phone
            # answers, before the hotline has bridged it, is declined: 603).
            await until(lambda: [e for e in seen if isinstance(e, AgentAssigned)], 20, "the first screen pop")
            assert await first_leg.refer(f"sip:nosuchqueue@127.0.0.1:{server.port}", timeout=10) == 404
            await asyncio.sleep(0.5)
            assert not first_leg.ended.is_set()  # refused: the agent keeps the caller
            assert await first_leg.refer(f"sip:cards@127.0.0.1:{server.port}", timeout=10) == 200
            await asyncio.wait_for(first_leg.ended.wait(), 10)
            await leg_from(cards_agent, "13700004444", 30)
            pop = await until(lambda: [e for e in seen if isinstance(e, AgentAssigned) and e.agent == "agent1"], 20,
                              "the cards agent's screen pop")
            ctx = pop[0].context
            assert ctx["transfer_mode"] == "blind" and "transcript" not in ctx and "note" not in ctx
            await leg.hangup()
    finally:
        await watcher.stop()
    call_id = pop[0].call_id
    call = await until(lambda: (c := server.store.get_call(call_id)) and c.ended_at and c, 20, "the call record")
    assert call.agent == "agent1"
    events = [ln.text for ln in server.store.get_transcript(call_id) if ln.speaker == "event"]
    assert any("transferred by agent0 (phone) to cards (blind)" in e for e in events), events


async def test_a_consultation_asked_over_mqtt_then_completed_hands_the_caller_to_the_consulted_agent(
    server: Server, broker: Mosquitto
) -> None:
    """Attended transfer (hotline/consult.py) across processes: the first agent's console, on another worker,
    asks to consult the other agent by name; the caller is held, the agents talk, the first completes, the
    caller hears the second, whose screen pop has the note; every step is on the bus and in the record.
    (Either agent may take the call first: both serve general and the earlier tests decide who idled longer.)"""
    other = MqttEventBus("127.0.0.1", broker.port, node="console-worker")
    seen: list[Event] = []
    other.subscribe(seen.append)
    await other.start()
    try:
        await other.connected()
        async with (
            AgentPhone(port=GENERAL_PORT, play_pcm=tone(300), repeat=True, gap_s=0.0) as phone0,  # a tone each:
            AgentPhone(port=CARDS_PORT, play_pcm=tone(2800), repeat=True, gap_s=0.0) as phone1,  # who hears whom
            TestCaller() as tc,
        ):
            leg = await tc.call(server.uri, from_user="13700005555")
            await tc.listen(leg, silence_s=0.3, timeout_s=20)  # the greeting starts: a key cuts it short
            tc.send_dtmf(leg, "0")
            assigned = await until(lambda: [e for e in seen if isinstance(e, AgentAssigned)], 40, "screen pop 1")
            call_id, first = assigned[0].call_id, assigned[0].agent
            second, queue, hz = ("agent1", "cards", 2800) if first == "agent0" else ("agent0", "general", 300)
            phones = {"agent0": phone0, "agent1": phone1}
            first_leg = await leg_from(phones[first], "13700005555", 10)

            def steps() -> list[str]:
                return [e.step for e in seen if isinstance(e, TransferStatus) and e.call_id == call_id]

            other.publish(TransferRequested(call_id, to_queue=queue, mode="context", note="Raise the card limit.",
                                            by=first, node="console-worker", to_agent=second, kind="consult"))
            second_leg = await leg_from(phones[second], "13700005555", 20)  # her phone rings: the consultation
            await until(lambda: "consulting" in steps(), 20, "the consultation")
            start = len(tc.heard_pcm(leg))
            await asyncio.sleep(1.0)
            held = tc.heard_pcm(leg)[start:]
            assert tone_share(held, 300) < 0.05 and tone_share(held, 2800) < 0.05  # on hold: hears neither agent
            assert not first_leg.ended.is_set() and not [e for e in seen if isinstance(e, AgentAssigned)
                                                         and e.agent == second]  # no screen pop yet
            other.publish(TransferRequested(call_id, to_queue=queue, mode="context", by=first,
                                            node="console-worker", kind="complete"))
            await asyncio.wait_for(first_leg.ended.wait(), 10)  # the first agent leaves (wrap-up)
            pop = await until(lambda: [e for e in seen if isinstance(e, AgentAssigned) and e.agent == second], 20,
                              "screen pop 2")
            assert pop[0].context["note"] == "Raise the card limit." and pop[0].context["transfer_mode"] == "consult"
            await asyncio.sleep(0.5)
            start = len(tc.heard_pcm(leg))
            await asyncio.sleep(1.0)
            assert tone_share(tc.heard_pcm(leg)[start:], hz) > 0.5  # the caller hears the second agent
            assert steps() == ["ringing", "consulting", "completed", "connected"], steps()
            await leg.hangup()
            await asyncio.wait_for(second_leg.ended.wait(), 10)
    finally:
        await other.stop()
    call = await until(lambda: (c := server.store.get_call(call_id)) and c.ended_at and c, 20, "the call record")
    assert call.agent == second
    events = [ln.text for ln in server.store.get_transcript(call_id) if ln.speaker == "event"]
    assert f"consultation with agent {second} ({queue}) asked by {first}; caller on hold" in events, events
    assert f"consultation completed by {first}: caller to agent {second}" in events, events


async def test_a_supervisor_on_another_worker_listens_over_mqtt_and_whispers_to_the_agent_only(
    server: Server, broker: Mosquitto
) -> None:
    """Listen-in across workers (hotline/listen_relay.py): a relay on another node, told of the call by the bus,
    hears it from `hotline serve`'s relay; whisper (hotline/whisper_live.py) through the serving worker's console
    reaches the agent's phone, never the caller nor the listen-in mix; audited."""
    import re
    from types import SimpleNamespace

    import aiohttp

    from hotline.listen_live import SessionAudio
    from hotline.listen_relay import ListenRelay
    from recordings.users import UserStore

    users = UserStore(server.store.engine)
    await asyncio.to_thread(users.add_user, "coach", "quiet-river-81", "supervisor")
    console_url = re.findall(r"console listening on (http://\S+)", server.log())[-1]
    other = MqttEventBus("127.0.0.1", broker.port, node="console-worker-2")
    relay = ListenRelay(SessionAudio(SimpleNamespace(sessions=[])), "127.0.0.1", broker.port, node="console-worker-2")
    seen: list[Event] = []
    other.subscribe(seen.append)
    other.subscribe(relay.on_event)
    await other.start()
    await relay.start()
    try:
        await other.connected()
        await relay.connected()
        async with (
            AgentPhone(port=GENERAL_PORT, play_pcm=tone(300), repeat=True, gap_s=0.0) as phone0,
            AgentPhone(port=CARDS_PORT, play_pcm=tone(2800), repeat=True, gap_s=0.0) as phone1,
            TestCaller() as tc,
            aiohttp.ClientSession(base_url=console_url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as web,
        ):
            leg = await tc.call(server.uri, from_user="13700006666")
            await until(lambda: any(tc.heard_pcm(leg)), 20, "the greeting")  # "0" over it: a person, please
            tc.send_dtmf(leg, "0")
            assigned = await until(lambda: [e for e in seen if isinstance(e, AgentAssigned)
                                            and e.context.get("caller") in (None, "13700006666")], 40, "screen pop")
            call_id, agent = assigned[-1].call_id, assigned[-1].agent
            hz = 300 if agent == "agent0" else 2800
            agent_leg = await leg_from(phone0 if agent == "agent0" else phone1, "13700006666", 10)

            heard: list[bytes] = []
            ended: list[bool] = []
            stop = relay.open(call_id, heard.append, lambda: ended.append(True))
            assert stop is not None, "the other worker knows the call from the bus"
            await until(lambda: len(heard) >= 10, 10, "a second of the call over MQTT")
            assert tone_share(b"".join(heard), hz) > 0.3  # the caller's side of the call: the agent's tone

            page = await (await web.get("/login")).text()
            nonce = re.search(r'name="csrf_token" value="([^"]+)"', page[page.index('id="login"'):])
            assert nonce
            r = await web.post("/login", data={"user": "coach", "password": "quiet-river-81",
                                               "csrf_token": nonce.group(1)}, allow_redirects=False)
            assert r.status == 302
            ws = await web.ws_connect(f"/ws/whisper/{call_id}")
            assert (await ws.receive_json(timeout=5))["sample_rate"] == 8000
            start_agent, start_caller, start_heard = len(agent_leg_heard(agent_leg, phone0, phone1)), \
                len(tc.heard_pcm(leg)), len(heard)
            await send_paced(ws.send_bytes, tone(1000, 2.0))
            await asyncio.sleep(0.4)
            await ws.close()
            to_agent = agent_leg_heard(agent_leg, phone0, phone1)[start_agent:]
            to_caller = tc.heard_pcm(leg)[start_caller:]
            listened = b"".join(heard[start_heard:])
            assert tone_share(to_agent, 1000) > 0.3, tone_share(to_agent, 1000)
            assert tone_share(to_caller, 1000) < 0.01 and tone_share(listened, 1000) < 0.01
            assert tone_share(to_caller, hz) > 0.3  # the caller kept hearing the agent
            stop()
            await leg.hangup()
            await asyncio.wait_for(agent_leg.ended.wait(), 10)
    finally:
        await relay.stop()
        await other.stop()
    def whisper_audit() -> list[tuple[str, str]] | None:  # whisper_end is written once the socket has closed
        rows = [(a.user, a.action) for a in users.audit_log(20, target=call_id) if a.action.startswith("whisper_")]
        return rows if len(rows) >= 2 else None

    log = await until(whisper_audit, 10, "the whisper audit: start and end")
    assert sorted(log) == [("coach", "whisper_end"), ("coach", "whisper_start")]
    assert relay.sent_messages > 0 and "streaming to a listener on worker console-worker-2" in server.log()


def agent_leg_heard(leg: Any, *phones: AgentPhone) -> bytes:
    """What the agent's phone has received on `leg`."""
    for phone in phones:
        if leg in phone.legs:
            return phone.heard_pcm(leg)
    raise AssertionError("not a leg of these phones")


async def test_prompt_admin_in_hotline_serve_listens_and_saves_a_change_live(server: Server) -> None:
    """The console's prompt pages as `hotline serve` wires them (hotline/prompts_live.py): "listen" renders
    through the server's own prompt cache, a change is stored in data_dir/prompts and swapped in; reset."""
    import io
    import json
    import re
    import wave

    import aiohttp

    from recordings.users import UserStore

    users = UserStore(server.store.engine)
    await asyncio.to_thread(users.add_user, "pam", "tall-cedar-57", "admin")
    console_url = re.findall(r"console listening on (http://\S+)", server.log())[-1]
    async with aiohttp.ClientSession(base_url=console_url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as web:
        page = await (await web.get("/login")).text()
        nonce = re.search(r'name="csrf_token" value="([^"]+)"', page[page.index('id="login"'):])
        assert nonce
        r = await web.post("/login", data={"user": "pam", "password": "tall-cedar-57", "csrf_token": nonce.group(1)},
                           allow_redirects=False)
        assert r.status == 302
        csrf = (await (await web.get("/api/me")).json())["csrf"]
        r = await web.get("/admin/prompts/listen?key=goodbye&lang=zh")
        assert r.status == 200 and r.content_type == "audio/wav", await r.text()
        with wave.open(io.BytesIO(await r.read())) as w:
            assert (w.getnchannels(), w.getframerate()) == (1, 8000) and w.getnframes() > 8000
        r = await web.post("/admin/prompts/save", data={"key": "goodbye", "lang": "zh", "text": "再见，祝您愉快。",
                                                         "csrf_token": csrf}, allow_redirects=False)
        assert r.status == 302, await r.text()
        stored = json.loads((server.data_dir / "prompts" / "prompts.json").read_text(encoding="utf-8"))
        assert stored["overrides"] == {"goodbye": {"zh": "再见，祝您愉快。"}}
        prompts = (await (await web.get("/api/prompts")).json())["prompts"]
        assert next(p for p in prompts if p["key"] == "goodbye")["changed"] == {"en": False, "zh": True}
        r = await web.post("/admin/prompts/reset", data={"key": "goodbye", "lang": "zh", "csrf_token": csrf},
                           allow_redirects=False)
        assert r.status == 302
    assert "prompts version 2 is live" in server.log()
