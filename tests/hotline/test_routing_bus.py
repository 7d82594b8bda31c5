"""agent.state and queue.stats on the event bus: in-process, and between two workers over a real mosquitto."""

from __future__ import annotations

import asyncio
import json

from support.mosquitto import Mosquitto
from support.waiting import until_true as _until

from hotline.bus import EventBus
from hotline.events import AgentStateUpdated, Event, QueueStats
from hotline.mqtt_bus import MqttEventBus, event_from_dict
from hotline.routing_bus import RoutingPublisher
from routing import AgentProfile, AgentState, CallDistributor, QueueConfig


def _acd() -> CallDistributor:
    acd = CallDistributor([QueueConfig("general"), QueueConfig("cards", needs={"cards": 1})])
    acd.add_agent(AgentProfile("anna", "sip:anna@127.0.0.1:5090", skills={"cards": 1}), AgentState.AVAILABLE)
    return acd


async def test_agent_changes_and_queue_figures_are_published_in_process() -> None:
    acd, bus = _acd(), EventBus()
    got: list[Event] = []
    bus.subscribe(got.append)
    pub = RoutingPublisher(acd, bus, "w1", interval_s=0.05, heartbeat_s=60)
    pub.start()
    try:
        await _until(lambda: len([e for e in got if isinstance(e, QueueStats)]) == 2, 2, "first stats")
        agent = await acd.acquire("cards", "call-1", timeout=1)
        assert agent is not None
        states = [e for e in got if isinstance(e, AgentStateUpdated)]
        assert [(e.agent, e.old, e.new, e.call, e.node) for e in states] == [
            ("anna", "available", "ringing", "call-1", "w1")]
        acd.answered(agent)
        await _until(lambda: any(isinstance(e, QueueStats) and e.queue == "cards" and e.answered == 1 for e in got),
                     2, "the answered call in the cards statistics")
        cards = [e for e in got if isinstance(e, QueueStats) and e.queue == "cards"]
        assert cards[-1].offered == 1 and cards[-1].agents_available == 0 and cards[-1].call_id == ""
        await asyncio.sleep(0.3)  # nothing changed: nothing more is sent until the heartbeat
        assert [e for e in got if isinstance(e, QueueStats) and e.queue == "cards"] == cards
        acd.finished(agent)
        assert [e.new for e in got if isinstance(e, AgentStateUpdated)][-2:] == ["wrap_up", "available"]
        for ev in got:  # each one survives the JSON the MQTT bus sends
            assert event_from_dict(json.loads(json.dumps(ev.to_dict()))) == ev
    finally:
        await pub.stop()


async def test_another_worker_sees_agent_state_and_queue_stats_over_mqtt(mosquitto: Mosquitto) -> None:
    a = MqttEventBus("127.0.0.1", mosquitto.port, node="worker-a")
    b = MqttEventBus("127.0.0.1", mosquitto.port, node="worker-b")
    seen: list[Event] = []
    b.subscribe(seen.append)
    await a.start()
    await b.start()
    acd = _acd()
    pub = RoutingPublisher(acd, a, "worker-a", interval_s=0.05)
    try:
        await a.connected()
        await b.connected()
        pub.start()
        acd.set_state("anna", AgentState.ON_BREAK, "lunch")
        await _until(lambda: any(isinstance(e, AgentStateUpdated) and e.new == "on_break" for e in seen),
                     what="worker b to see anna's break")
        await _until(lambda: any(isinstance(e, QueueStats) and e.queue == "cards" and e.agents_staffed == 0
                                 for e in seen), what="worker b to see the cards queue unstaffed")
        brk = next(e for e in seen if isinstance(e, AgentStateUpdated))
        assert (brk.agent, brk.reason, brk.node) == ("anna", "lunch", "worker-a")
    finally:
        await pub.stop()
        await a.stop()
        await b.stop()
