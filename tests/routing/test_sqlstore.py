"""Agents in a shared database: atomic reservation, states seen by every worker, no double booking.

SQLite for the single-process rules, a real PostgreSQL (tests/support/postgres.py) for the races.
"""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.postgres import PgServer, pg_server  # noqa: F401  (fixture)

from routing import AgentProfile, AgentState, CallDistributor, IllegalTransition, QueueConfig
from routing.sqlstore import (
    SqlAgentStore,
    agent_snapshots_from_db,
    agents_table,
    merge_queue_rows,
    queue_rows,
)

S = AgentState


def _acd(store: SqlAgentStore, queues: tuple[str, ...] = ("general",)) -> CallDistributor:
    return CallDistributor([QueueConfig(q) for q in queues], directory=store, store=store)


def _agents(acd: CallDistributor, n: int) -> None:
    for i in range(n):
        rec = acd.add_agent(AgentProfile(f"a{i}", f"sip:a{i}@127.0.0.1:{5090 + i}", skills={"en": 1}))
        if rec.state is S.LOGGED_OUT:
            acd.set_state(rec, S.AVAILABLE)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'routing.db'}"


def test_reservation_is_atomic_and_only_for_available_agents(sqlite_url: str) -> None:
    one, two = SqlAgentStore(sqlite_url, node="w1"), SqlAgentStore(sqlite_url, node="w2")
    _agents(_acd(one), 1)
    assert one.try_reserve("a0", "call-1") is True
    assert two.try_reserve("a0", "call-2") is False  # held by w1's call
    assert one.try_reserve("a0", "call-3") is False  # not available any more, even for the holder
    assert two.holder("a0") == "call-1"
    two.release("a0")  # w2 cannot free w1's hold
    assert one.holder("a0") == "call-1"
    one.release("a0")
    assert one.holder("a0") is None


async def test_states_changed_by_one_worker_are_seen_by_the_other(sqlite_url: str) -> None:
    w1 = _acd(SqlAgentStore(sqlite_url, node="w1", refresh_s=0))
    w2 = _acd(SqlAgentStore(sqlite_url, node="w2", refresh_s=0))
    _agents(w1, 2)
    _agents(w2, 2)  # the same configured agents: rows kept, states kept
    stale_store = SqlAgentStore(sqlite_url, node="w3", refresh_s=3600)  # reads once, then trusts its copy
    stale = _acd(stale_store)
    assert len(stale.agents()) == 2
    assert {r.id: r.state for r in w2.agents()} == {"a0": S.AVAILABLE, "a1": S.AVAILABLE}

    agent = await w1.acquire("general", "call-1", timeout=1)
    assert agent is not None
    assert w2.agent(agent.id).state is S.RINGING and w2.agent(agent.id).call_id == "call-1"
    w1.answered(agent)
    assert w2.agent(agent.id).state is S.ON_CALL
    # w2's next caller gets the other agent, never the one on w1's call.
    other = await w2.acquire("general", "call-2", timeout=1)
    assert other is not None and other.id != agent.id
    with pytest.raises(IllegalTransition):  # w1 sees a1 ringing for w2's call
        w1.set_state("a1", S.ON_BREAK)
    stale.set_state("a1", S.ON_BREAK)  # w3 still thinks a1 is available: its write is refused ...
    assert w2.agent("a1").state is S.RINGING
    assert stale_store.get("a1").state is S.RINGING  # ... and w3 takes the shared state
    w2.release(other)
    w1.finished(agent)
    assert {s.id: s.state for s in agent_snapshots_from_db(w2.directory.engine)} == {  # type: ignore[attr-defined]
        "a0": S.AVAILABLE, "a1": S.AVAILABLE}


async def test_a_caller_waiting_on_one_worker_gets_an_agent_freed_on_another(sqlite_url: str) -> None:
    w1 = _acd(SqlAgentStore(sqlite_url, node="w1", refresh_s=0))
    w2 = _acd(SqlAgentStore(sqlite_url, node="w2", refresh_s=0))
    _agents(w1, 1)
    _agents(w2, 1)
    busy = await w1.acquire("general", "call-1", timeout=1)
    assert busy is not None
    w1.answered(busy)
    waiting = asyncio.ensure_future(w2.acquire("general", "call-2", timeout=5))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    w1.finished(busy)  # wrap_up_s 0: available at once, on w1
    w2.poll()  # what w2's run() does every 0.5 s
    got = await asyncio.wait_for(waiting, 1)
    assert got is not None and got.id == busy.id


def test_restarted_worker_frees_the_agents_its_dead_run_held(sqlite_url: str) -> None:
    dead = SqlAgentStore(sqlite_url, node="w1")
    _agents(_acd(dead), 2)
    assert dead.try_reserve("a0", "call-1")
    again = SqlAgentStore(sqlite_url, node="w1")
    other = SqlAgentStore(sqlite_url, node="w2")
    assert other.try_reserve("a1", "call-2")
    assert again.recover_node() == ["a0"]
    with again.engine.connect() as conn:
        states = dict(conn.execute(sa.select(agents_table.c.id, agents_table.c.state)).all())
    assert states == {"a0": "available", "a1": "ringing"}  # w2's hold untouched


def test_queue_statistics_of_every_worker_add_up(sqlite_url: str) -> None:
    w1, w2 = SqlAgentStore(sqlite_url, node="w1"), SqlAgentStore(sqlite_url, node="w2")
    a1, a2 = _acd(w1, ("general", "cards")), _acd(w2, ("general", "cards"))
    _agents(a1, 1)
    a1.stats("general").offered, a1.stats("general").answered = 3, 2
    a1.stats("general").record_answer(10.0)
    a2.stats("general").offered = 5
    w1.publish_queue_snapshots(a1.queue_snapshots())
    w2.publish_queue_snapshots(a2.queue_snapshots())
    w1.publish_queue_snapshots(a1.queue_snapshots())  # replaces, does not add
    rows = queue_rows(w1.engine)
    assert sorted((r.node, r.snapshot.name) for r in rows) == [
        ("w1", "cards"), ("w1", "general"), ("w2", "cards"), ("w2", "general")]
    merged = {s.name: s for s in merge_queue_rows(rows)}
    assert merged["general"].offered == 8 and merged["general"].answered == 3
    assert merged["general"].agents_available == 1


def test_unknown_agent_and_bad_node_are_refused(sqlite_url: str) -> None:
    store = SqlAgentStore(sqlite_url, node="w1")
    with pytest.raises(KeyError, match="unknown agent 'nobody'"):
        store.get("nobody")
    with pytest.raises(ValueError, match="node name"):
        SqlAgentStore(sqlite_url, node="")


@pytest.mark.slow
def test_eight_workers_racing_for_one_agent_on_postgresql(pg_server: PgServer) -> None:  # noqa: F811
    url = pg_server.create_database()
    stores = [SqlAgentStore(url, node=f"w{i}") for i in range(8)]
    _agents(_acd(stores[0]), 1)
    for s in stores:  # open each pool's connection before the race
        s.holder("a0")

    def race(store: SqlAgentStore, call: str, barrier: threading.Barrier, wins: list[str]) -> None:
        barrier.wait()
        if store.try_reserve("a0", call):
            wins.append(call)

    for round_ in range(25):
        barrier = threading.Barrier(len(stores))
        wins: list[str] = []
        threads = [threading.Thread(target=race, args=(s, f"r{round_}-{i}", barrier, wins))
                   for i, s in enumerate(stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(wins) == 1, f"round {round_}: {wins}"
        holder = next(s for s in stores if s.node == f"w{wins[0].split('-')[1]}")
        assert holder.holder("a0") == wins[0]
        holder.release("a0")
        with holder.engine.begin() as conn:
            conn.execute(sa.update(agents_table).values(state="available"))
    for s in stores:
        s.close()


@pytest.mark.slow
def test_two_distributors_never_double_book_under_concurrent_calls(pg_server: PgServer) -> None:  # noqa: F811
    """Two workers (threads, each its own loop, store and connections) race 60 calls each for 5 agents."""
    url = pg_server.create_database()
    calls_per_worker, n_agents = 60, 5
    busy: dict[str, str] = {}
    lock = threading.Lock()
    problems: list[str] = []
    served: list[tuple[str, str]] = []

    async def worker(node: str) -> None:
        store = SqlAgentStore(url, node=node, refresh_s=0.01)
        acd = _acd(store)
        _agents(acd, n_agents)
        runner = asyncio.ensure_future(acd.run(interval=0.02))
        rnd = random.Random(node)

        async def call(i: int) -> None:
            call_id = f"{node}-c{i}"
            await asyncio.sleep(rnd.uniform(0, 0.3))
            agent = await acd.acquire("general", call_id, timeout=30)
            if agent is None:
                problems.append(f"{call_id}: no agent")
                return
            with lock:
                if agent.id in busy:
                    problems.append(f"{agent.id} given to {call_id} while on {busy[agent.id]}")
                busy[agent.id] = call_id
            acd.answered(agent)
            await asyncio.sleep(rnd.uniform(0.005, 0.03))
            with lock:
                busy.pop(agent.id, None)
                served.append((agent.id, call_id))
            acd.finished(agent)

        try:
            await asyncio.gather(*(call(i) for i in range(calls_per_worker)))
        finally:
            runner.cancel()
            store.close()

    threads = [threading.Thread(target=asyncio.run, args=(worker(f"w{i}"),)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "workers did not finish in 120 s"
    assert problems == []
    assert len(served) == 2 * calls_per_worker
    by_worker = {node: {a for a, c in served if c.startswith(node)} for node in ("w1", "w2")}
    assert by_worker["w1"] & by_worker["w2"], "both workers should have used shared agents"


def test_agents_held_by_a_worker_that_stays_dead_are_freed_by_the_others(sqlite_url: str) -> None:
    from datetime import UTC, datetime

    from routing import ManualClock

    dead = SqlAgentStore(sqlite_url, node="w1")
    _agents(_acd(dead), 2)
    assert dead.try_reserve("a0", "call-1")
    dead.heartbeat()
    later = ManualClock(start=datetime.now(UTC))
    alive = SqlAgentStore(sqlite_url, node="w2", clock=later, refresh_s=0)
    alive.heartbeat()
    assert alive.try_reserve("a1", "call-2")
    assert alive.free_stale_holds(30) == {}  # w1 was seen just now
    later.advance(31)
    alive.heartbeat()
    assert alive.free_stale_holds(30) == {"w1": ["a0"]}
    assert alive.get("a0").state is S.AVAILABLE and alive.get("a1").state is S.RINGING  # own hold kept
    assert alive.try_reserve("a0", "call-3")


@pytest.mark.slow
def test_a_database_restart_costs_reservations_not_the_worker() -> None:
    with PgServer.create() as pg:
        url = pg.create_database("agents")
        store = SqlAgentStore(url, node="w1", refresh_s=0)
        acd = _acd(store)
        _agents(acd, 2)
        assert store.try_reserve("a0", "call-1")
        pg.stop()
        assert store.try_reserve("a1", "call-2") is False  # refused, not raised: the caller keeps waiting
        assert {r.id for r in acd.agents()} == {"a0", "a1"}  # the last known state
        store.release("a0")  # logged, not raised
        pg.start()
        for _ in range(3):  # a connection broken by the restart fails once, then is replaced
            if store.try_reserve("a1", "call-2"):
                break
        assert store.holder("a1") == "call-2"
        store.close()


async def test_an_agent_removed_on_each_worker_leaves_the_shared_table(sqlite_url: str) -> None:
    """The console removes an agent on one worker (routing/admin.py reset_agent), routing_sync on the other:
    the row is deleted, neither distributor, snapshot nor queue count has her; one on a call is refused."""
    w1 = _acd(SqlAgentStore(sqlite_url, node="w1", refresh_s=0))
    w2 = _acd(SqlAgentStore(sqlite_url, node="w2", refresh_s=0))
    _agents(w1, 2)
    _agents(w2, 2)
    agent = await w1.acquire("general", "call-1", timeout=1)
    assert agent is not None
    with pytest.raises(ValueError, match="when her call is done"):
        w1.remove_agent(agent.id)
    with pytest.raises(ValueError, match="when her call is done"):  # ringing for w1's call, seen by w2
        w2.remove_agent(agent.id)
    w1.release(agent)
    w1.remove_agent(agent.id)
    engine = w2.directory.engine  # type: ignore[attr-defined]
    assert {s.id for s in agent_snapshots_from_db(engine)} == {"a0", "a1"} - {agent.id}
    with pytest.raises(KeyError):  # the other worker sees her row gone: removed there too (routing_sync: "removed")
        w2.remove_agent(agent.id)
    for acd in (w1, w2):
        assert agent.id not in {r.id for r in acd.agents()} and agent.id not in {s.id for s in acd.agent_snapshots()}
        assert acd.queue_snapshot("general").agents_staffed == 1
    got = await w2.acquire("general", "call-2", timeout=1)
    assert got is not None and got.id != agent.id
