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
from support.agent_legs import leg_from, words
from support.e2e_server import ROOT, Server, free_sip_port, start_server, stop_server, write_config
from support.mosquitto import Mosquitto, running_broker

from hotline.events import AgentAssigned, AgentStateUpdated, Event, TransferRequested
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
            assert "thank you for waiting" in heard, heard  # the caller hears the second agent
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
