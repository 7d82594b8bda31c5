"""The call distributor: skills, priorities, ring handling, wrap-up, waits, overflow, callbacks, hours, stats."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest

from routing import (
    AgentProfile,
    AgentState,
    CallAbandoned,
    CallAnswered,
    CallbackDue,
    CallDistributor,
    CallOverflowed,
    IllegalTransition,
    ManualClock,
    MaxWaitReached,
    NotRinging,
    OpeningHours,
    QueueClosed,
    QueueConfig,
)

S = AgentState


async def waiting(acd: CallDistributor, queue: str, call_id: str, **kw):
    """Starts an acquire and lets it queue."""
    task = asyncio.ensure_future(acd.acquire(queue, call_id, **kw))
    await asyncio.sleep(0)
    return task


async def take_call(acd: CallDistributor, queue: str, call_id: str) -> str:
    agent = await acd.acquire(queue, call_id, timeout=0.1)
    assert agent is not None
    acd.answered(agent)
    return agent.id


# -- skills and priorities ----------------------------------------------------------------------
async def test_queue_and_call_skills_filter_agents(make_acd) -> None:
    acd, _ = make_acd(
        [QueueConfig("zh", needs={"zh": 1})],
        [("en_only", {"en": 3}), ("zh_basic", {"zh": 1, "cards": 1}), ("zh_cards", {"zh": 2, "cards": 3})],
    )
    agent = await acd.acquire("zh", "c1", needs={"cards": 2}, timeout=0.1)
    assert agent is not None and agent.id == "zh_cards"  # zh_basic is longer idle but lacks the level
    agent = await acd.acquire("zh", "c2", timeout=0.1)
    assert agent is not None and agent.id == "zh_basic"
    assert await acd.acquire("zh", "c3", timeout=0.05) is None  # en_only is free but cannot take zh calls
    assert [a.id for a in acd.free_agents("zh")] == []
    assert acd.agent("en_only").state is S.AVAILABLE


async def test_vip_callers_go_ahead_of_earlier_callers(make_acd, clock) -> None:
    acd, _ = make_acd([QueueConfig("q")], [("a", {})])
    await take_call(acd, "q", "busy")
    t1 = await waiting(acd, "q", "n1")
    clock.advance(5)
    t2 = await waiting(acd, "q", "n2")
    clock.advance(5)
    gold = await waiting(acd, "q", "gold", priority=2)
    silver = await waiting(acd, "q", "silver", priority=1)
    assert [acd.position(c) for c in ("gold", "silver", "n1", "n2")] == [1, 2, 3, 4]
    order = []
    for task in (gold, silver, t1, t2):
        acd.finished("a")
        agent = await asyncio.wait_for(task, 1)
        assert agent is not None
        order.append(acd.agent(agent).call_id)
        acd.answered(agent)
    assert order == ["gold", "silver", "n1", "n2"]


async def test_vip_tier_as_skill_routes_to_vip_agents(make_acd) -> None:
    acd, _ = make_acd([QueueConfig("q")], [("plain", {}), ("vip", {"vip": 2})])
    agent = await acd.acquire("q", "platinum", priority=2, needs={"vip": 2}, timeout=0.1)
    assert agent is not None and agent.id == "vip"


# -- ring handling ------------------------------------------------------------------------------
async def test_ring_no_answer_marks_not_ready_and_the_caller_keeps_their_place(make_acd) -> None:
    acd, rec = make_acd([QueueConfig("q")], [("a", {}), ("b", {})])
    await take_call(acd, "q", "on_b_first")  # a (longest idle) is now on a call
    first = await acd.acquire("q", "first", timeout=0.1)
    assert first is not None and first.id == "b" and acd.agent("b").state is S.RINGING
    behind = await waiting(acd, "q", "behind")
    assert acd.position("behind") == 1 and acd.position("first") is None  # ringing: not waiting
    acd.no_answer(first)
    assert acd.agent("b").state is S.NOT_READY
    assert acd.position("first") == 1 and acd.position("behind") == 2  # back in front
    again = asyncio.ensure_future(acd.acquire("q", "first", timeout=1))
    await asyncio.sleep(0)
    acd.finished("a")  # a frees up: it goes to "first", not to "behind"
    agent = await again
    assert agent is not None and agent.id == "a"
    assert not behind.done()
    acd.answered(agent)
    assert acd.stats("q").no_answers == 1 and acd.stats("q").answered == 2
    assert [e.agent_id for e in rec.of(CallAnswered)] == ["a", "a"]
    behind.cancel()


async def test_no_answer_hands_the_next_free_agent_at_once(make_acd) -> None:
    acd, _ = make_acd([QueueConfig("q")], [("a", {}), ("b", {})])
    agent = await acd.acquire("q", "c", timeout=0.1)
    assert agent is not None and agent.id == "a"
    acd.no_answer(agent)
    agent = await acd.acquire("q", "c", timeout=0.1)
    assert agent is not None and agent.id == "b"
    acd.answered(agent)
    acd.set_state("a", S.AVAILABLE)  # the agent comes back by hand
    assert acd.agent("a").state is S.AVAILABLE


async def test_ring_reports_on_the_wrong_state_are_clear_errors(make_acd) -> None:
    acd, _ = make_acd([QueueConfig("q")], [("a", {})])
    with pytest.raises(NotRinging, match="agent a is available, not ringing"):
        acd.answered("a")
    with pytest.raises(IllegalTransition, match="cannot go from available to wrap_up"):
        acd.finished("a")
    with pytest.raises(ValueError, match="reached through calls"):
        acd.set_state("a", S.ON_CALL)
    agent = await acd.acquire("q", "c", timeout=0.1)
    assert agent is not None
    with pytest.raises(IllegalTransition):
        acd.set_state(agent, S.ON_BREAK)  # no break while the phone rings
    with pytest.raises(RuntimeError, match="already has agent a ringing"):
        await acd.acquire("q", "c")


async def test_stale_ring_counts_as_no_answer_after_ring_timeout(make_acd, clock) -> None:
    acd, _ = make_acd([QueueConfig("q", ring_timeout_s=20)], [("a", {})])
    assert await acd.acquire("q", "c", timeout=0.1) is not None
    clock.advance(19)
    acd.poll()
    assert acd.agent("a").state is S.RINGING
    clock.advance(1)
    acd.poll()
    assert acd.agent("a").state is S.NOT_READY and acd.position("c") == 1


# -- wrap-up ------------------------------------------------------------------------------------
async def test_agent_is_not_offered_until_wrap_up_ends(make_acd, clock) -> None:
    acd, _ = make_acd([QueueConfig("q", wrap_up_s=30)], [("a", {})])
    await take_call(acd, "q", "c1")
    clock.advance(100)
    acd.finished("a")
    assert acd.agent("a").state is S.WRAP_UP
    nxt = await waiting(acd, "q", "c2")
    clock.advance(29)
    acd.poll()
    await asyncio.sleep(0)
    assert not nxt.done() and acd.agent("a").state is S.WRAP_UP
    clock.advance(1)
    acd.poll()
    agent = await asyncio.wait_for(nxt, 1)
    assert agent is not None and agent.id == "a"
    assert acd.stats("q").handle_times.mean(0) == 130  # talk 100 + wrap 30


async def test_wrap_up_ends_by_itself_in_real_time() -> None:
    acd = CallDistributor([QueueConfig("q", wrap_up_s=0.05)])
    acd.add_agent(AgentProfile("a", "sip:a@x"), S.AVAILABLE)
    agent = await acd.acquire("q", "c1", timeout=1)
    assert agent is not None
    acd.answered(agent)
    acd.finished(agent)
    agent = await acd.acquire("q", "c2", timeout=2)  # nobody calls poll(): the distributor's own timer does
    assert agent is not None and agent.id == "a"


async def test_ready_button_ends_wrap_up_early(make_acd) -> None:
    acd, _ = make_acd([QueueConfig("q", wrap_up_s=300)], [("a", {})])
    await take_call(acd, "q", "c1")
    acd.finished("a")
    nxt = await waiting(acd, "q", "c2")
    acd.set_state("a", S.AVAILABLE)
    assert (await asyncio.wait_for(nxt, 1)) is not None


# -- expected wait and announcements ------------------------------------------------------------
async def test_expected_wait_from_recent_handle_times_and_staffed_agents(make_acd, clock) -> None:
    acd, _ = make_acd([QueueConfig("q", wrap_up_s=20, default_handle_s=300)], [("a", {}), ("b", {})])
    for cid in ("x", "y"):
        await take_call(acd, "q", cid)
    calls = [await waiting(acd, "q", f"w{i}") for i in range(3)]
    assert acd.expected_wait_s("w0") == pytest.approx(1 * 300 / 2)  # no history yet: the configured default
    clock.advance(100)
    acd.finished("a")  # 100 s talk + 20 s wrap = 120 s handle time
    assert acd.agent("a").state is S.WRAP_UP  # wrap-up: nobody offered yet
    assert acd.expected_wait_s("w0") == pytest.approx(1 * 120 / 2)
    assert acd.expected_wait_s("w2") == pytest.approx(3 * 120 / 2)
    info = acd.wait_info("w2")
    assert info is not None and (info.position, info.ahead, info.expected_wait_min) == (3, 2, 3)
    acd.set_state("a", S.ON_BREAK)
    assert acd.expected_wait_s("w0") == pytest.approx(1 * 120 / 1)  # only b is staffed now
    assert acd.expected_wait_s("nobody") is None
    for t in calls:
        t.cancel()


async def test_expected_wait_is_unknown_without_staff_and_zero_with_a_free_agent(make_acd) -> None:
    acd, _ = make_acd([QueueConfig("q", needs={"zh": 1})], [("a", {"zh": 1})])
    acd.set_state("a", S.ON_BREAK)
    t = await waiting(acd, "q", "c")
    assert acd.expected_wait_s("c") is None
    acd.set_state("a", S.AVAILABLE)
    assert acd.expected_wait_s("c") == 0.0  # reserved: the agent is ringing for this call
    assert (await t) is not None


# -- overflow and callbacks ---------------------------------------------------------------------
async def test_max_wait_overflows_to_another_queue_keeping_priority(make_acd, clock) -> None:
    acd, rec = make_acd(
        [QueueConfig("cards", needs={"cards": 1}, max_wait_s=60, overflow="queue", overflow_to="general"),
         QueueConfig("general", needs={"general": 1})],
        [("card_agent", {"cards": 1}), ("gen_agent", {"general": 1})],
    )
    await take_call(acd, "cards", "busy1")
    await take_call(acd, "general", "busy2")
    earlier = await waiting(acd, "general", "g1")
    clock.advance(10)
    vip = await waiting(acd, "cards", "vip", priority=1)
    clock.advance(59)
    acd.poll()
    assert acd.call_queue("vip") == "cards"
    clock.advance(1)
    acd.poll()
    assert acd.call_queue("vip") == "general"
    assert acd.position("vip") == 1 and acd.position("g1") == 2  # priority kept
    assert [(e.call_id, e.from_queue, e.to_queue) for e in rec.of(CallOverflowed)] == [("vip", "cards", "general")]
    acd.finished("gen_agent")
    agent = await asyncio.wait_for(vip, 1)
    assert agent is not None and agent.id == "gen_agent"
    assert acd.stats("cards").overflowed_out == 1 and acd.stats("general").overflowed_in == 1
    earlier.cancel()


async def test_callbacks_keep_their_place_and_are_due_in_order(make_acd, clock) -> None:
    acd, rec = make_acd([QueueConfig("q", max_wait_s=30, overflow="callback")], [("a", {})])
    await take_call(acd, "q", "busy")
    tasks = {}
    for cid in ("c1", "c2", "c3"):
        tasks[cid] = await waiting(acd, "q", cid)
        clock.advance(1)
    clock.advance(30)
    acd.poll()
    assert [e.call_id for e in rec.of(MaxWaitReached)] == ["c1", "c2", "c3"]
    info = acd.wait_info("c1")
    assert info is not None and info.offer_callback
    acd.request_callback("c3", "13800000003")
    acd.request_callback("c1", "13800000001")
    assert await asyncio.wait_for(tasks["c1"], 1) is None and await asyncio.wait_for(tasks["c3"], 1) is None
    assert [r.number for r in acd.callbacks("q")] == ["13800000001", "13800000003"]  # place order, not request
    assert acd.position("c1") == 1 and acd.position("c2") == 2 and acd.position("c3") == 3
    snap = acd.queue_snapshot("q")
    assert (snap.waiting, snap.callbacks_waiting) == (1, 2)

    acd.finished("a")  # c1's turn: an agent is reserved and the dialer is told to call back
    due = rec.of(CallbackDue)
    assert [(d.request.call_id, d.request.number, d.agent_id) for d in due] == [("c1", "13800000001", "a")]
    assert acd.agent("a").state is S.RINGING
    acd.answered("a")  # the callback connected
    acd.finished("a")
    agent = await asyncio.wait_for(tasks["c2"], 1)  # then c2 who stayed on the line
    assert agent is not None
    acd.answered(agent)
    acd.finished(agent)
    assert [d.request.call_id for d in rec.of(CallbackDue)] == ["c1", "c3"]
    acd.leave("c3", "callback_unanswered")  # nobody picked up: the agent is free again
    assert acd.agent("a").state is S.AVAILABLE and acd.callbacks() == []
    assert acd.stats("q").callbacks_requested == 2


async def test_unanswered_callback_frees_the_agent_and_is_retried_later_then_given_up(make_acd, clock) -> None:
    acd, rec = make_acd([QueueConfig("q")], [("a", {})])
    await take_call(acd, "q", "busy")
    task = await waiting(acd, "q", "c1")
    acd.request_callback("c1", "5551234")
    assert await asyncio.wait_for(task, 1) is None
    acd.finished("a")  # the callback is due: agent a reserved
    assert [d.request.call_id for d in rec.of(CallbackDue)] == ["c1"]
    assert acd.callback_unanswered("c1", retry_in_s=60) == 1
    assert acd.agent("a").state is S.AVAILABLE  # free for others at once
    assert acd.position("c1") == 1 and len(rec.of(CallbackDue)) == 1  # kept, but not before 60 s
    other = await asyncio.wait_for(acd.acquire("q", "c2", timeout=1), 1)  # a caller on the line meanwhile
    assert other is not None and other.id == "a"
    acd.answered("a")
    acd.finished("a")
    clock.advance(59)
    acd.poll()
    assert len(rec.of(CallbackDue)) == 1 and acd.agent("a").state is S.AVAILABLE
    clock.advance(2)
    acd.poll()
    assert len(rec.of(CallbackDue)) == 2 and acd.agent("a").state is S.RINGING
    assert acd.callback_unanswered("c1", retry_in_s=None) == 2  # last attempt: given up
    assert acd.callbacks() == [] and acd.agent("a").state is S.AVAILABLE
    assert [a.reason for a in acd.stats("q").abandoned_calls if a.call_id == "c1"] == ["callback_unanswered"]
    with pytest.raises(KeyError):
        acd.callback_unanswered("c1", retry_in_s=1)


# -- opening hours ------------------------------------------------------------------------------
async def test_closed_queue_refuses_with_next_opening(make_acd, clock) -> None:
    hours = OpeningHours.from_spec("Asia/Shanghai", {"mon-fri": "08:00-20:00"})
    clock.set_wall(datetime(2026, 1, 10, 4, 0, tzinfo=UTC))  # Saturday noon in Shanghai
    acd, _ = make_acd([QueueConfig("q", hours=hours)], [("a", {})])
    assert not acd.is_open("q")
    with pytest.raises(QueueClosed) as err:
        await acd.acquire("q", "c")
    assert err.value.next_opening == datetime(2026, 1, 12, 0, 0, tzinfo=UTC)  # Monday 08:00 +08:00
    assert acd.next_opening("q") == err.value.next_opening
    clock.set_wall(datetime(2026, 1, 12, 0, 0, tzinfo=UTC))
    assert acd.is_open("q") and (await acd.acquire("q", "c", timeout=0.1)) is not None


# -- abandonment and statistics -----------------------------------------------------------------
async def test_caller_who_hangs_up_is_recorded_abandoned_with_the_wait(make_acd, clock) -> None:
    acd, rec = make_acd([QueueConfig("q")], [("a", {})])
    await take_call(acd, "q", "busy")
    t = await waiting(acd, "q", "leaver")
    clock.advance(42)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    st = acd.stats("q")
    assert st.abandoned == 1
    (ab,) = st.abandoned_calls
    assert (ab.call_id, ab.wait_s, ab.reason) == ("leaver", 42, "caller_left")
    assert [(e.call_id, e.wait_s) for e in rec.of(CallAbandoned)] == [("leaver", 42)]
    assert acd.position("leaver") is None and acd.waiting("q") == 0
    assert await acd.acquire("q", "patient", timeout=0.02) is None
    assert st.abandoned_calls[-1].reason == "timeout"


async def test_caller_leaving_while_the_agent_rings_frees_the_agent(make_acd) -> None:
    acd, _ = make_acd([QueueConfig("q")], [("a", {})])
    assert await acd.acquire("q", "c", timeout=0.1) is not None
    acd.leave("c")
    assert acd.agent("a").state is S.AVAILABLE and acd.stats("q").abandoned == 1


async def test_agent_reserved_for_a_caller_who_just_left_goes_back(make_acd) -> None:
    acd, _ = make_acd([QueueConfig("q")], [("a", {})])
    acd.set_state("a", S.NOT_READY)
    t = await waiting(acd, "q", "c")
    acd.set_state("a", S.AVAILABLE)  # reserved for c, but c's task has not run yet
    assert acd.agent("a").state is S.RINGING
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert acd.agent("a").state is S.AVAILABLE


async def test_live_statistics_service_level_asa_and_occupancy(make_acd, clock) -> None:
    acd, _ = make_acd([QueueConfig("q", service_level_s=20)], [("a", {})], idle_step=0)
    clock.advance(100)  # idle for 100 s
    await take_call(acd, "q", "fast")  # answered after 0 s
    t = await waiting(acd, "q", "slow")
    clock.advance(60)
    acd.finished("a")  # 60 s talk
    agent = await asyncio.wait_for(t, 1)
    assert agent is not None
    acd.answered(agent)  # "slow" waited 60 s
    leaver = await waiting(acd, "q", "leaver")
    clock.advance(40)
    snap = acd.queue_snapshot("q")
    assert (snap.waiting, snap.longest_wait_s, snap.offered) == (1, 40, 3)
    leaver.cancel()
    await asyncio.sleep(0)
    snap = acd.queue_snapshot("q")
    assert (snap.answered, snap.abandoned) == (2, 1)
    assert snap.service_level_pct == pytest.approx(100 / 3)  # 1 of 3 answered within 20 s
    assert snap.average_speed_of_answer_s == pytest.approx(30)
    (a,) = acd.agent_snapshots()
    assert a.state is S.ON_CALL and a.calls_taken == 2 and a.call_id == "slow"
    assert a.occupancy_pct == pytest.approx(100 * 100 / 200)  # 100 s talking of 200 s staffed


# -- concurrency --------------------------------------------------------------------------------
async def test_200_concurrent_callers_never_double_book_an_agent() -> None:
    queues = [QueueConfig("general"), QueueConfig("zh", needs={"zh": 1}, strategy="skills_weighted"),
              QueueConfig("vip", needs={"vip": 1}, strategy="fewest_calls")]
    acd = CallDistributor(queues, clock=ManualClock())
    for i in range(20):
        skills = {"zh": 1 + i % 3} if i % 2 else {"en": 1}
        if i % 5 == 0:
            skills["vip"] = 1
        acd.add_agent(AgentProfile(f"a{i:02d}", f"sip:a{i}@x", skills=skills), S.AVAILABLE)
    in_use: dict[str, str] = {}
    served: list[str] = []
    rng = random.Random(7)

    async def caller(n: int) -> None:
        queue = ("general", "zh", "vip")[n % 3]
        agent = await acd.acquire(queue, f"call{n}", priority=n % 4, timeout=30)
        assert agent is not None
        assert agent.id not in in_use, f"{agent.id} booked for {in_use.get(agent.id)} and call{n}"
        in_use[agent.id] = f"call{n}"
        if rng.random() < 0.1:  # some rings go unanswered: the caller gets another agent
            del in_use[agent.id]
            acd.no_answer(agent)
            acd.set_state(agent, S.AVAILABLE)
            agent = await acd.acquire(queue, f"call{n}", timeout=30)
            assert agent is not None and agent.id not in in_use
            in_use[agent.id] = f"call{n}"
        acd.answered(agent)
        await asyncio.sleep(rng.random() * 0.003)
        del in_use[agent.id]
        acd.finished(agent)
        served.append(f"call{n}")

    await asyncio.wait_for(asyncio.gather(*(caller(n) for n in range(200))), 20)
    assert len(served) == 200
    assert sum(a.calls_taken for a in acd.agents()) == 200
    assert all(a.state is S.AVAILABLE for a in acd.agents())
    assert sum(acd.stats(q.name).answered for q in queues) == 200


async def test_an_agent_reserved_by_another_node_is_skipped(clock) -> None:
    from routing import InMemoryReservationStore

    class SharedStore(InMemoryReservationStore):
        """As a database would answer: another worker already holds agent a."""

        def __init__(self) -> None:
            super().__init__()
            self._held["a"] = "other-node-call"

        def release(self, agent_id: str) -> None:
            if agent_id != "a":
                super().release(agent_id)

    acd = CallDistributor([QueueConfig("q")], store=SharedStore(), clock=clock)
    for n in ("a", "b"):
        acd.add_agent(AgentProfile(n, f"sip:{n}@x"), S.AVAILABLE)
    agent = await acd.acquire("q", "c", timeout=0.1)
    assert agent is not None and agent.id == "b"
    assert await acd.acquire("q", "d", timeout=0.02) is None
    assert acd.store.holder("b") == "c"
    acd.answered(agent)
    acd.finished(agent)
    assert acd.store.holder("b") is None
