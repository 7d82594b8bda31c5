"""Choosing the event bus and the agent store from the settings (hotline/cluster.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from hotline.bus import EventBus
from hotline.cluster import make_bus, open_agent_store, use_agent_store
from hotline.mqtt_bus import MqttEventBus
from hotline.settings import ConfigError, Settings, load_settings
from routing import AgentProfile, AgentState, CallDistributor, QueueConfig
from routing.sqlstore import SqlAgentStore


def _load(tmp_path: Path, data: dict) -> Settings:
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_settings(path)


def test_defaults_change_nothing_for_one_worker(tmp_path: Path) -> None:
    s = _load(tmp_path, {})
    assert s.events.backend == "inprocess" and s.routing.store == "memory"
    assert type(make_bus(s)) is EventBus
    assert open_agent_store(s) is None


def test_mqtt_bus_from_settings_with_the_password_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_MQTT_PW", "s3cret")
    s = _load(tmp_path, {"node_name": "w7", "events": {"backend": "mqtt", "host": "10.0.0.5", "port": 1884,
                                                       "username": "hotline", "password_env": "TEST_MQTT_PW"}})
    bus = make_bus(s)
    assert isinstance(bus, MqttEventBus)
    assert (bus.host, bus.port, bus.node) == ("10.0.0.5", 1884, "w7")
    assert bus._password == "s3cret"


@pytest.mark.parametrize("data,key", [
    ({"events": {"backend": "kafka"}}, "events.backend"),
    ({"events": {"port": 0}}, "events.port"),
    ({"routing": {"store": "redis"}}, "routing.store"),
    ({"routing": {"dead_worker_after_s": 1}}, "routing.dead_worker_after_s"),
])
def test_bad_cluster_settings_name_the_key(tmp_path: Path, data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, data)
    assert err.value.key == key


def test_database_store_from_settings_frees_what_a_dead_run_held(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    s = _load(tmp_path, {"node_name": "w1", "database": {"url": url}, "routing": {"store": "database"}})
    first = open_agent_store(s)
    assert isinstance(first, SqlAgentStore)
    acd = CallDistributor([QueueConfig("general")])
    use_agent_store(acd, first)
    acd.add_agent(AgentProfile("anna", "sip:anna@127.0.0.1"), AgentState.AVAILABLE)
    assert first.try_reserve("anna", "call-1")
    first.close()
    again = open_agent_store(s)  # the worker restarts: anna is free again before any call
    assert again is not None and again.holder("anna") is None
    with pytest.raises(RuntimeError, match="before agents are added"):
        use_agent_store(acd, again)


async def test_a_worker_publishes_its_queues_and_frees_its_holds_when_it_stops(tmp_path: Path) -> None:
    from hotline.cluster import start_queue_stats, stop_queue_stats
    from routing.sqlstore import queue_rows

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    store = SqlAgentStore(url, node="w1")
    acd = CallDistributor([QueueConfig("general", wrap_up_s=60)], directory=store, store=store)
    acd.add_agent(AgentProfile("anna", "sip:anna@127.0.0.1"), AgentState.AVAILABLE)
    agent = await acd.acquire("general", "call-1", timeout=1)
    assert agent is not None
    acd.answered(agent)
    acd.finished(agent)  # a minute of wrap-up, held by w1
    task = start_queue_stats(acd, store)
    assert task is not None
    reader = SqlAgentStore(url, node="cli")
    for _ in range(100):
        if queue_rows(reader.engine):
            break
        await asyncio.sleep(0.02)
    assert [r.node for r in queue_rows(reader.engine)] == ["w1"]
    assert reader.holder("anna") == "call-1"
    await stop_queue_stats(task, store)
    assert reader.holder("anna") is None and reader.get("anna").state is AgentState.AVAILABLE
