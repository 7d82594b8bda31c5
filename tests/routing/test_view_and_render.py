"""The distributor's queue view keeps the old `routing.Queue` surface the session uses; tables render."""

from __future__ import annotations

import asyncio

from routing import AgentProfile, AgentState, CallDistributor, ManualClock, QueueConfig, render_agents, render_queues

S = AgentState


def acd_with(*names: str, wrap_up_s: float = 0.0) -> CallDistributor:
    clock = ManualClock()
    acd = CallDistributor([QueueConfig("general", wrap_up_s=wrap_up_s)], clock=clock)
    for n in names:
        acd.add_agent(AgentProfile(n, f"sip:{n}@x"), S.AVAILABLE)
        clock.advance(1)
    return acd


async def test_view_free_agent_is_taken_at_once_longest_idle_first() -> None:
    q = acd_with("b", "a").view("general")
    first = await q.acquire("c1", timeout=0.1)
    second = await q.acquire("c2", timeout=0.1)
    assert first is not None and second is not None and (first.name, second.name) == ("b", "a")
    assert first.uri == "sip:b@x"
    assert await q.acquire("c3", timeout=0.05) is None


async def test_view_callers_wait_in_order_and_get_released_agents() -> None:
    q = acd_with("a").view("general")
    a = await q.acquire("first", timeout=0.1)
    assert a is not None
    second = asyncio.ensure_future(q.acquire("second", timeout=2))
    third = asyncio.ensure_future(q.acquire("third", timeout=2))
    await asyncio.sleep(0.01)
    assert q.waiting == 2 and q.position("second") == 1 and q.position("third") == 2
    assert not q.free_agents()
    q.release(a)  # the session's release after a call whose answer it never reported
    assert (await second) == a
    assert not third.done()
    q.release(a)
    assert (await third) == a


async def test_view_caller_who_leaves_frees_their_place() -> None:
    q = acd_with("a").view("general")
    await q.acquire("first")
    leaver = asyncio.ensure_future(q.acquire("leaver", timeout=5))
    stayer = asyncio.ensure_future(q.acquire("stayer", timeout=5))
    await asyncio.sleep(0.01)
    leaver.cancel()
    await asyncio.sleep(0.01)
    assert q.position("stayer") == 1
    q.release(q.acd.agent("a"))
    assert (await stayer) is not None


async def test_view_session_flow_with_the_new_ring_reports() -> None:
    acd = acd_with("a", "b", wrap_up_s=10)
    q = acd.view("general")
    agent = await q.acquire("c", timeout=0.1)
    assert agent is not None and agent.name == "a"
    q.no_answer(agent)  # dial failed: a → not_ready, c keeps its place
    agent = await q.acquire("c", timeout=0.1)
    assert agent is not None and agent.name == "b"
    q.answered(agent)
    q.finished(agent)
    assert acd.agent("b").state is S.WRAP_UP and acd.agent("a").state is S.NOT_READY
    q.release(agent)  # release in wrap-up changes nothing
    assert acd.agent("b").state is S.WRAP_UP


async def test_tables_for_the_cli() -> None:
    acd = CallDistributor([QueueConfig("general"), QueueConfig("zh", needs={"zh": 1})], clock=ManualClock())
    acd.add_agent(AgentProfile("anna", "sip:anna@x", name="Anna Li", skills={"zh": 2, "cards": 1}), S.AVAILABLE)
    acd.add_agent(AgentProfile("bob", "sip:bob@x"))
    agent = await acd.acquire("zh", "call-1", timeout=0.1)
    assert agent is not None
    acd.answered(agent)
    queues = render_queues(acd.queue_snapshots())
    lines = queues.splitlines()
    assert lines[0].split()[:4] == ["queue", "open", "waiting", "callbacks"]
    assert lines[2].split()[:2] == ["general", "yes"] and lines[3].split()[0] == "zh"
    assert "0/1" in lines[2] and lines[3].split()[6] == "1"  # answered
    agents = render_agents(acd.agent_snapshots())
    assert "anna" in agents and "on_call" in agents and "call-1" in agents and "cards:1,zh:2" in agents
    assert "logged_out" in agents
    assert render_queues([]).splitlines()[1].startswith("-----")


def test_wait_announcements_in_both_languages() -> None:
    from routing import WaitInfo, announce_wait

    info = WaitInfo("general", position=3, ahead=2, expected_wait_s=200, expected_wait_min=4, offer_callback=True)
    assert announce_wait(info, "en") == (
        "There are 2 callers ahead of you. The expected wait is about 4 minutes. To be called back instead, press 1.")
    assert announce_wait(info, "zh-CN") == "您前面还有2位客户。预计等待约4分钟。如需我们稍后回电，请按1。"
    first = WaitInfo("general", position=1, ahead=0, expected_wait_s=30, expected_wait_min=1, offer_callback=False)
    assert announce_wait(first) == "You are next in line."
    one = WaitInfo("general", position=2, ahead=1, expected_wait_s=None, expected_wait_min=None, offer_callback=False)
    assert announce_wait(one) == "There is 1 caller ahead of you."
