"""Agents known only by a SIP URI come back into service after a missed ring."""

from __future__ import annotations

import asyncio

from hotline.server import Hotline
from hotline.settings import DEFAULT_CONFIG, load_settings
from routing import AgentProfile, AgentState, CallDistributor, QueueConfig


async def test_agent_who_missed_a_ring_is_offered_calls_again_after_the_pause() -> None:
    hotline = Hotline(load_settings(DEFAULT_CONFIG, routing={"not_ready_after_no_answer_s": 0.05}))
    acd = hotline.acd = CallDistributor([QueueConfig("general")])
    acd.add_agent(AgentProfile("anna", "sip:anna@127.0.0.1:5090"), AgentState.AVAILABLE)
    acd.subscribe(hotline._on_routing_event)
    queue = acd.view("general")

    agent = await queue.acquire("call-1", timeout=1)
    assert agent is not None
    queue.no_answer(agent)
    assert acd.agent("anna").state is AgentState.NOT_READY
    assert await queue.acquire("call-1", timeout=0.01) is None  # nobody to take the call meanwhile

    await asyncio.sleep(0.2)
    assert acd.agent("anna").state is AgentState.AVAILABLE
    assert await queue.acquire("call-2", timeout=1) is not None
