"""Distributed mode for real: two `hotline serve` workers behind Kamailio's dispatcher, sharing one
PostgreSQL (call records and agents) and one mosquitto (events), all started here on loopback.

One test, in order: calls through Kamailio land on both workers; a worker is SIGKILLed mid-call; new calls
go to the other one; the killed worker is restarted and closes the calls it left open (`interrupted`).
A second test: one agent, a caller on each worker asking for a person at once: the agent gets one call
at a time, and the caller waiting on the other worker gets her when she is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from support.e2e_server import Server, free_sip_port, start_server, stop_server, write_config
from support.kamailio import Kamailio
from support.mosquitto import Mosquitto, running_broker
from support.postgres import PgServer, pg_server  # noqa: F401  (fixture)

from hotline.agents_cli import agents_text, queues_text
from hotline.events import Event
from hotline.mqtt_bus import MqttEventBus
from hotline.settings import load_settings
from telephony import AgentPhone, TestCaller

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]
WRAP_UP_S = 2.0


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    yield from running_broker()


def _config(tmp: Path, node: str, port: int, rtp: tuple[int, int], db_url: str, mqtt_port: int,
            agent_port: int) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    path = write_config(
        tmp, agent_ports=[agent_port], node_name=node,
        sip={"host": "127.0.0.1", "port": port, "max_calls": 50, "rtp_port_min": rtp[0], "rtp_port_max": rtp[1]},
        database={"url": db_url}, routing={"store": "database", "not_ready_after_no_answer_s": 1.0},
        events={"backend": "mqtt", "host": "127.0.0.1", "port": mqtt_port},
    )
    cfg = yaml.safe_load(path.read_text())
    cfg["queues"][0]["wrap_up_s"] = WRAP_UP_S
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


class Cluster:
    def __init__(self, tmp: Path, db_url: str, mqtt_port: int, agent_port: int) -> None:
        self.db_url = db_url
        self.agent_port = agent_port
        self.ports = [free_sip_port(), free_sip_port()]
        self.configs = [
            _config(tmp / f"w{i + 1}", f"w{i + 1}", p, (20000 + 5000 * i, 24998 + 5000 * i), db_url, mqtt_port,
                    agent_port)
            for i, p in enumerate(self.ports)
        ]
        self.servers: list[Server | None] = [None, None]
        self.kam = Kamailio(self.ports)

    async def start_worker(self, i: int) -> Server:
        cfg = self.configs[i]
        srv = await asyncio.to_thread(start_server, cfg, cfg.parent / "var")
        self.servers[i] = srv
        return srv

    async def start(self) -> None:
        await asyncio.gather(self.start_worker(0), self.start_worker(1))
        await asyncio.to_thread(self.kam.start)

    def close(self) -> None:
        self.kam.close()
        live = [srv for srv in self.servers if srv is not None and srv.proc.poll() is None]
        threads = [threading.Thread(target=stop_server, args=(srv,)) for srv in live]  # both at once
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)

    def calls(self) -> dict[str, tuple[str, str | None, str]]:
        """sip_call_id -> (worker, outcome, call id) from the shared database."""
        engine = sa.create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT sip_call_id, worker, outcome, id FROM calls")).all()
        finally:
            engine.dispose()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def logs(self) -> str:
        return "\n".join(f"--- w{i + 1}\n{s.log()[-2500:]}" for i, s in enumerate(self.servers) if s) + \
            f"\n--- kamailio\n{self.kam.log()[-2500:]}"


async def _wait(cond: Any, timeout: float, what: str, logs: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(cond)
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s: {what}\n{logs() if logs else ''}")


async def _greeted(tc: TestCaller, uri: str) -> Any:
    """A call through the proxy that is answered and starts playing the greeting (media flows)."""
    leg = await tc.call(uri, timeout=15)
    pcm = await tc.listen(leg, silence_s=0.2, timeout_s=20)
    assert len(pcm) > 3200, f"call {leg.call_id}: no greeting heard"
    return leg


def _phase(t0: float, what: str) -> None:
    print(f"[{time.monotonic() - t0:6.1f} s] {what}", flush=True)  # shown with -s or on failure


async def test_calls_spread_fail_over_and_interrupted_calls_are_closed(
    pg_server: PgServer, broker: Mosquitto, tmp_path: Path,  # noqa: F811
) -> None:
    cluster = Cluster(tmp_path, pg_server.create_database(), broker.port, free_sip_port())
    observer = MqttEventBus("127.0.0.1", broker.port, node="observer")
    seen: list[Event] = []
    observer.subscribe(seen.append)
    await observer.start()
    t0 = time.monotonic()
    try:
        await cluster.start()
        _phase(t0, "two workers and kamailio up")
        w1_port, w2_port = cluster.ports
        async with TestCaller(rtp_ports=(30000, 34000)) as tc:
            # 1. Calls through Kamailio: round robin puts them on both workers.
            first = [await _greeted(tc, cluster.kam.uri) for _ in range(4)]
            _phase(t0, "4 calls answered")
            routed = cluster.kam.routed()
            assert {routed[leg.call_id] for leg in first} == {w1_port, w2_port}, cluster.logs()
            on_w1 = [leg for leg in first if routed[leg.call_id] == w1_port]
            rows = await _wait(lambda: (c := cluster.calls()) and all(leg.call_id in c for leg in first) and c,
                               10, "call records of the first calls", cluster.logs)
            assert {rows[leg.call_id][0] for leg in first} == {"w1", "w2"}
            # Both workers' events reach any process on the bus.
            ids = {rows[leg.call_id][2] for leg in first}
            await _wait(lambda: {e.call_id for e in seen if e.topic == "call.started"} >= ids, 10,
                        "call.started of every call over MQTT", cluster.logs)

            # 2. Kill w1 mid-call (SIGKILL: no goodbye, its records stay open).
            w1 = cluster.servers[0]
            assert w1 is not None
            mark = len(cluster.kam.log())
            w1.proc.kill()
            w1.proc.wait(10)
            await asyncio.to_thread(cluster.kam.wait_for, "DOWN", w1_port, 15, mark)
            _phase(t0, "w1 killed and marked down")
            assert all(cluster.calls()[leg.call_id][1] is None for leg in on_w1)

            # 3. New calls all go to w2 and are answered.
            later = [await _greeted(tc, cluster.kam.uri) for _ in range(3)]
            routed = cluster.kam.routed()
            assert [routed[leg.call_id] for leg in later] == [w2_port] * 3, cluster.logs()
            _phase(t0, "3 calls answered by w2")

            # 4. Restart w1: it closes the calls its dead run left open, and takes calls again.
            mark = len(cluster.kam.log())
            await cluster.start_worker(0)
            _phase(t0, "w1 restarted")
            rows = cluster.calls()
            assert {rows[leg.call_id][:2] for leg in on_w1} == {("w1", "interrupted")}
            await asyncio.to_thread(cluster.kam.wait_for, "UP", w1_port, 15, mark)
            again = [await _greeted(tc, cluster.kam.uri) for _ in range(2)]
            routed = cluster.kam.routed()
            assert {routed[leg.call_id] for leg in again} == {w1_port, w2_port}, cluster.logs()
            _phase(t0, "calls on both workers again")

            for leg in [*first, *later, *again]:
                if leg not in on_w1:
                    await leg.hangup()
            for leg in on_w1:  # its worker is gone: the proxy answers the BYE with a timeout
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(leg.hangup(), 6)
        live = [leg.call_id for leg in [*first, *later, *again] if leg not in on_w1]
        rows = await _wait(lambda: (c := cluster.calls()) and all(c[i][1] for i in live) and c, 15,
                           "records of the hung-up calls closed", cluster.logs)
        assert all(rows[i][1] != "interrupted" for i in live)
        _phase(t0, "calls hung up, records closed")

        # 5. One agent, a caller on each worker pressing 0 at once: she gets one call at a time, and the
        #    caller waiting on the other worker gets her after the first call and its wrap-up.
        await _one_agent_two_workers(cluster)
        _phase(t0, "one agent served both workers one call at a time")

        # 6. `hotline agents` / `hotline queues` show the running cluster from its database.
        settings = load_settings(cluster.configs[0])
        engine = sa.create_engine(settings.database_url)
        try:
            # The second agent call has just ended: its worker publishes her new state a moment later.
            def agent_free() -> str:
                text = agents_text(engine, settings)
                return text if re.search(r"^agent0\s+agent0\s+(available|wrap_up)\s", text, re.M) else ""

            assert await _wait(agent_free, 10, "agent0 free again in `hotline agents`",
                               lambda: agents_text(engine, settings))

            def answered() -> int:  # the two agent calls, added up over both workers' published statistics
                q = queues_text(engine, settings)
                general = next((line for line in q.splitlines() if line.startswith("general")), "")
                return int(general.split()[6]) if "w1" in q and "w2" in q and general else 0

            assert await _wait(lambda: answered() >= 2, 10, "both workers' queue statistics")
        finally:
            engine.dispose()
    finally:
        await observer.stop()
        await asyncio.to_thread(cluster.close)


async def _one_agent_two_workers(cluster: Cluster) -> None:
    most_at_once = 0

    async def watch(agent: AgentPhone) -> None:
        nonlocal most_at_once
        while True:
            most_at_once = max(most_at_once, sum(1 for leg in agent.legs if not leg.ended.is_set()))
            await asyncio.sleep(0.02)

    async with AgentPhone(port=cluster.agent_port, play_pcm=b"\x10\x27" * 8000) as agent, \
            TestCaller(rtp_ports=(34000, 36000)) as tc:
        watcher = asyncio.create_task(watch(agent))
        a = await tc.call(cluster.kam.uri, from_user="100001")  # through the proxy
        other = next(p for p in cluster.ports if p != cluster.kam.routed()[a.call_id])
        b = await tc.call(f"sip:95555@127.0.0.1:{other}", from_user="100002")  # on the other worker
        await asyncio.gather(tc.listen(a, silence_s=0.2, timeout_s=20), tc.listen(b, silence_s=0.2, timeout_s=20))
        tc.send_dtmf(a, "0")
        first = await agent.wait_for_call(timeout=40)
        assert first.caller == "100001"
        tc.send_dtmf(b, "0")
        await asyncio.sleep(3.0)  # b is queued on the other worker meanwhile
        assert len(agent.legs) == 1, "the one agent was given a second call"
        ended = time.monotonic()
        await first.hangup()  # the agent ends the call: the hotline hangs up on a (a BYE through Kamailio)
        await asyncio.wait_for(a.ended.wait(), 10)
        await _wait(lambda: len(agent.legs) == 2, 30, "b's call to reach the agent", cluster.logs)
        gap = time.monotonic() - ended
        assert agent.legs[1].caller == "100002"
        assert gap >= WRAP_UP_S - 0.2, f"wrap-up not respected: next call after {gap:.1f} s"
        await b.hangup()
        watcher.cancel()
    assert most_at_once == 1
