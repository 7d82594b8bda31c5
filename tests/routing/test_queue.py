"""The queue hands each free agent to one caller, longest-idle agent first, callers in order."""

from __future__ import annotations

import asyncio

from routing import Agent, Queue


async def test_free_agent_is_taken_at_once_longest_idle_first() -> None:
    a, b = Agent("a", "sip:a@x", idle_since=10.0), Agent("b", "sip:b@x", idle_since=5.0)
    q = Queue("general", [a, b])
    assert await q.acquire("c1", timeout=0.1) is b
    assert await q.acquire("c2", timeout=0.1) is a
    assert await q.acquire("c3", timeout=0.05) is None


async def test_callers_wait_in_order_and_get_released_agents() -> None:
    a = Agent("a", "sip:a@x")
    q = Queue("general", [a])
    assert await q.acquire("first", timeout=0.1) is a
    second = asyncio.ensure_future(q.acquire("second", timeout=2))
    third = asyncio.ensure_future(q.acquire("third", timeout=2))
    await asyncio.sleep(0.01)
    assert q.waiting == 2 and q.position("second") == 1 and q.position("third") == 2
    q.release(a)
    assert await second is a
    assert not third.done()
    q.release(a)
    assert await third is a


async def test_caller_who_leaves_the_queue_frees_their_place() -> None:
    a = Agent("a", "sip:a@x")
    q = Queue("general", [a])
    await q.acquire("first")
    leaver = asyncio.ensure_future(q.acquire("leaver", timeout=5))
    stayer = asyncio.ensure_future(q.acquire("stayer", timeout=5))
    await asyncio.sleep(0.01)
    leaver.cancel()
    await asyncio.sleep(0.01)
    assert q.position("stayer") == 1
    q.release(a)
    assert await stayer is a
