"""The callback dialer in process over real SIP on loopback: the customer's phone answers, the first
reserved agent does not, the next agent is reserved and bridged; a stopping worker records what it
could not call back. Real SipEndpoint, AgentPhones, espeak prompts, SQLite call store."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import wave
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.agent_legs import leg_from

from hotline.bus import EventBus
from hotline.callback import CallbackDialer, PendingCallback
from hotline.events import AgentAssigned, CallEnded, Event
from hotline.session import SessionDeps
from hotline.settings import DEFAULT_CONFIG, load_settings
from recordings import CallStore
from recordings.atrest import open_recording
from routing import AgentProfile, AgentState, CallDistributor, QueueConfig
from telephony import AgentPhone, SipEndpoint
from tts import PromptCache, create_synthesizer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

CALL = "20261201-130000-cb000001"


@dataclass
class Rig:
    acd: CallDistributor
    dialer: CallbackDialer
    store: CallStore
    db: Path
    seen: list[Event]
    entry: str

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(sql, (CALL,)).fetchall()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with AgentPhone(port=0) as customer_probe:
        customer_port = customer_probe.port  # a port nothing listens on once the probe stops
    settings = load_settings(DEFAULT_CONFIG, data_dir=str(tmp_path), queues=[{
        "name": "general", "ring_timeout_s": 1.5, "wrap_up_s": 0,
        "callback": {"enabled": True, "dial_uri": f"sip:{{number}}@127.0.0.1:{customer_port}", "attempts": 1,
                     "ring_timeout_s": 3},
    }])
    db = tmp_path / "hotline.db"
    store = CallStore(f"sqlite:///{db}")
    store.start_call(CALL, sip_call_id="x@test", caller="5550009", called="95555")
    entry = store.queue_entered(CALL, "general")
    store.end_call(CALL, outcome="callback_requested", end_reason="callback_requested")
    endpoint = SipEndpoint("127.0.0.1", 0)
    await endpoint.start()
    bus, seen = EventBus(), list[Event]()
    bus.subscribe(seen.append)
    db_pool, cpu_pool = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
    deps = SessionDeps(settings=settings, store=store, bus=bus, engine=None, recognizer=None,  # type: ignore[arg-type]
                       prompts=PromptCache(create_synthesizer("espeak"), target_rate=8000, executor=cpu_pool),
                       queues={}, dial=endpoint.dial, cpu_pool=cpu_pool, db_pool=db_pool,
                       endpointer_factory=None)  # type: ignore[arg-type]
    acd = CallDistributor([QueueConfig("general")])
    dialer = CallbackDialer(acd, deps)
    acd.subscribe(dialer.on_event)
    try:
        yield Rig(acd, dialer, store, db, seen, entry)
    finally:
        await dialer.stop()
        await endpoint.stop()
        db_pool.shutdown(wait=True)
        cpu_pool.shutdown(wait=False)
        store.close()


async def queue_callback(rig: Rig, number: str) -> None:
    task = asyncio.ensure_future(rig.acd.acquire("general", CALL))
    await asyncio.sleep(0)
    rig.dialer.register(PendingCallback(CALL, number, "general", "en", {"intent": "card_lost"}, rig.entry))
    rig.acd.request_callback(CALL, number)
    assert await asyncio.wait_for(task, 1) is None


async def test_agent_who_misses_the_callback_is_replaced_by_the_next(rig: Rig, tmp_path: Path) -> None:
    slow = AgentPhone(port=0, answer_delay=5.0)  # rings past the 1.5 s ring timeout
    quick = AgentPhone(port=0)
    customer = AgentPhone(port=int(rig.dialer.deps.settings.queues[0].callback.dial_uri.rsplit(":", 1)[1]))
    async with slow, quick, customer:
        rig.acd.add_agent(AgentProfile("slow", f"sip:slow@127.0.0.1:{slow.port}"), AgentState.ON_BREAK)
        await queue_callback(rig, "5550009")
        rig.acd.set_state("slow", AgentState.AVAILABLE)  # the callback is due: slow is reserved
        rig.acd.add_agent(AgentProfile("quick", f"sip:quick@127.0.0.1:{quick.port}"), AgentState.AVAILABLE)
        cust_leg = await customer.wait_for_call(10)
        agent_leg = await leg_from(quick, "5550009", 20)
        assert rig.acd.agent("slow").state is AgentState.NOT_READY
        assert rig.acd.agent("quick").state is AgentState.ON_CALL
        await cust_leg.hangup()
        await asyncio.wait_for(agent_leg.ended.wait(), 10)
        for _ in range(50):
            if any(isinstance(e, CallEnded) for e in rig.seen):
                break
            await asyncio.sleep(0.1)
    pop = [e for e in rig.seen if isinstance(e, AgentAssigned)]
    assert [(e.agent, e.context["intent"], e.context["callback"]) for e in pop] == [("quick", "card_lost", True)]
    assert [(e.outcome, e.reason) for e in rig.seen if isinstance(e, CallEnded)] == [
        ("callback_connected", "customer_hung_up")]
    legs = rig.rows("SELECT kind, answered_at IS NOT NULL, end_reason FROM legs WHERE call_id=? ORDER BY started_at")
    assert legs == [("callback", 1, "customer_hung_up"), ("agent", 0, "no_answer"), ("agent", 1, "customer_hung_up")]
    assert rig.rows("SELECT status, agent FROM queue_entries WHERE call_id=?") == [("answered", "quick")]
    assert rig.rows("SELECT outcome, agent FROM calls WHERE id=?") == [("callback_connected", "quick")]
    assert rig.acd.agent("quick").state is AgentState.AVAILABLE  # after wrap-up (0 s)
    assert rig.rows("SELECT state, attempts, reason, number FROM callbacks WHERE call_id=?") == [
        ("done", 1, "customer_hung_up", "")]  # the number is erased once the callback is made
    [(path,)] = rig.rows("SELECT recording_path FROM calls WHERE id=?")
    with wave.open(io.BytesIO(open_recording(path))) as w:  # the conversation, recorded (no call recording here)
        assert w.getnchannels() == 2 and w.getnframes() > 8000


async def test_a_stopping_worker_keeps_the_callbacks_it_could_not_make(rig: Rig) -> None:
    """They stay promised in the database for the next start (tests/hotline/test_callback_store.py takes them back)."""
    rig.acd.add_agent(AgentProfile("anna", "sip:anna@127.0.0.1:9"), AgentState.ON_BREAK)  # nobody to call for
    await queue_callback(rig, "5550009")
    await rig.dialer.stop()
    assert rig.rows("SELECT outcome FROM calls WHERE id=?") == [("callback_requested",)]
    assert rig.rows("SELECT status FROM queue_entries WHERE call_id=?") == [("queued",)]
    assert rig.rows("SELECT state, attempts, node FROM callbacks WHERE call_id=?") == [("pending", 0, "worker-1")]
    lines = [ln.text for ln in rig.store.get_transcript(CALL)]
    assert lines == ["callback kept: worker-1 stops; it is made after the restart"]


async def test_a_ring_timeout_changed_in_the_console_is_the_one_the_agent_rings_for(rig: Rig) -> None:
    """The YAML rings agents 1.5 s; an admin raised it to 8 s (/admin/queues → `update_queue`): an agent who
    answers after 3 s now gets the callback (hotline/callback.py `ring_timeout_s`, as the session's ring)."""
    rig.acd.update_queue("general", ring_timeout_s=8.0)
    slow = AgentPhone(port=0, answer_delay=3.0)
    customer = AgentPhone(port=int(rig.dialer.deps.settings.queues[0].callback.dial_uri.rsplit(":", 1)[1]))
    async with slow, customer:
        rig.acd.add_agent(AgentProfile("slow", f"sip:slow@127.0.0.1:{slow.port}"), AgentState.ON_BREAK)
        await queue_callback(rig, "5550009")
        rig.acd.set_state("slow", AgentState.AVAILABLE)
        cust_leg = await customer.wait_for_call(10)
        agent_leg = await leg_from(slow, "5550009", 20)
        # the phone has its leg once it answers; the dialer marks her on the call when it has the 200 OK
        for _ in range(100):
            if rig.acd.agent("slow").state is AgentState.ON_CALL:
                break
            await asyncio.sleep(0.05)
        assert rig.acd.agent("slow").state is AgentState.ON_CALL
        await cust_leg.hangup()
        await asyncio.wait_for(agent_leg.ended.wait(), 10)
    legs = rig.rows("SELECT kind, answered_at IS NOT NULL FROM legs WHERE call_id=? ORDER BY started_at")
    assert legs == [("callback", 1), ("agent", 1)]
