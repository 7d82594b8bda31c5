"""A queue or agent change stored from one worker's console reaches another worker's distributor live, over a
real mosquitto (hotline/routing_sync.py); a reset there puts the YAML's settings back."""

from __future__ import annotations

import json
from pathlib import Path

from support.mosquitto import Mosquitto
from support.waiting import until_true as _until

from hotline.bus import EventBus
from hotline.events import RoutingConfigChanged
from hotline.mqtt_bus import MqttEventBus, event_from_dict
from hotline.routing_sync import RoutingSync
from recordings import CallStore
from recordings.routing_admin import RoutingOverrides
from routing import AgentProfile, AgentState, CallDistributor, QueueConfig
from routing.admin import RoutingBase, agent_profile, queue_changes, reset_agent, reset_queue


def _yaml_acd() -> CallDistributor:
    acd = CallDistributor([QueueConfig("general", wrap_up_s=5.0, ring_timeout_s=20.0)])
    acd.add_agent(AgentProfile("anna", "sip:anna@127.0.0.1:5090", skills={"en": 1}), AgentState.AVAILABLE)
    return acd


async def test_a_change_on_one_worker_is_applied_by_the_other_over_mqtt(mosquitto: Mosquitto, tmp_path: Path) -> None:
    store = CallStore(f"sqlite:///{tmp_path / 'hotline.db'}")  # the database both workers share
    overrides = RoutingOverrides(store.engine)
    bus_a = MqttEventBus("127.0.0.1", mosquitto.port, node="worker-a")
    bus_b = MqttEventBus("127.0.0.1", mosquitto.port, node="worker-b")
    acd_a, acd_b = _yaml_acd(), _yaml_acd()
    sync_a = RoutingSync(acd_a, RoutingBase.of(acd_a), overrides, bus_a, "worker-a")
    sync_b = RoutingSync(acd_b, RoutingBase.of(acd_b), overrides, bus_b, "worker-b")
    yaml_queue = acd_b.queue_config("general")
    await bus_a.start()
    await bus_b.start()
    try:
        await bus_a.connected()
        await bus_b.connected()
        # worker a's console: store, apply here, announce (console/routing_admin.py does these three)
        queue = {"ring_timeout_s": 7.5, "wrap_up_s": 12, "needs": {"zh": 2}}
        overrides.put("queue", "general", queue, by="ada")
        acd_a.update_queue("general", **queue_changes(queue))
        sync_a.changed("queue", "general")
        agent = {"name": "Anna", "uri": "sip:anna@127.0.0.1:5099", "skills": {"zh": 3}, "queues": []}
        overrides.put("agent", "anna", agent, by="ada")
        acd_a.put_agent(agent_profile("anna", agent), AgentState.AVAILABLE)
        sync_a.changed("agent", "anna")
        await _until(lambda: len(sync_b.applied) == 2, 10, "worker b to apply both changes")
        cfg = acd_b.queue_config("general")
        assert (cfg.ring_timeout_s, cfg.wrap_up_s, dict(cfg.needs)) == (7.5, 12.0, {"zh": 2})
        assert acd_b.agent("anna").profile.uri == "sip:anna@127.0.0.1:5099"
        assert sync_a.applied == []  # its own announcement is not applied twice
        # an agent added in the console, then removed there: worker b drops her from its distributor too
        bob = {"name": "Bob", "uri": "sip:bob@127.0.0.1:5091", "skills": {}, "queues": []}
        overrides.put("agent", "bob", bob, by="ada")
        acd_a.put_agent(agent_profile("bob", bob), AgentState.AVAILABLE)
        sync_a.changed("agent", "bob")
        await _until(lambda: "bob" in {r.id for r in acd_b.agents()}, 10, "worker b to add bob")
        overrides.delete("agent", "bob")
        assert reset_agent(acd_a, sync_a.base, "bob") == "removed"
        sync_a.changed("agent", "bob")
        await _until(lambda: sync_b.applied[-1] == ("agent", "bob", "removed"), 10, "worker b to remove bob")
        assert "bob" not in {a.id for a in acd_b.agent_snapshots()}
        assert acd_b.queue_snapshot("general").agents_staffed == 1  # anna only
        del sync_b.applied[-2:]
        # a reset on worker a: the row is gone, worker b goes back to its YAML
        overrides.delete("queue", "general")
        reset_queue(acd_a, sync_a.base, "general")
        sync_a.changed("queue", "general")
        await _until(lambda: len(sync_b.applied) == 3, 10, "worker b to apply the reset")
        assert acd_b.queue_config("general") == yaml_queue
        # a row that no longer fits is logged and skipped there; the current value stays
        overrides.put("queue", "general", {"strategy": "fastest_first"}, by="ada")
        sync_a.changed("queue", "general")
        sync_a.changed("queue", "nosuch")
        assert await sync_b.apply("queue", "general", "worker-a") is None
        assert acd_b.queue_config("general") == yaml_queue and len(sync_b.applied) == 3
    finally:
        await sync_a.stop()
        await sync_b.stop()
        await bus_a.stop()
        await bus_b.stop()
        store.close()


def test_the_event_survives_json_and_the_in_process_bus_applies_nothing_twice() -> None:
    ev = RoutingConfigChanged("", kind="agent", name="anna", node="w1")
    assert ev.topic == "routing.config_changed"
    assert event_from_dict(json.loads(json.dumps(ev.to_dict()))) == ev
    bus, acd = EventBus(), _yaml_acd()
    seen: list[object] = []
    bus.subscribe(seen.append)
    sync = RoutingSync(acd, RoutingBase.of(acd), None, bus, "w1")  # type: ignore[arg-type]  # never read here
    sync.changed("queue", "general")  # one worker: its own event, nothing to re-apply
    assert seen == [RoutingConfigChanged("", kind="queue", name="general", node="w1", at=seen[0].at)]  # type: ignore[attr-defined]
    assert sync.applied == []
