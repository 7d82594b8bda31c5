"""Skills from the call itself with the real distributor: the caller's language and product needs, their
relaxation (product first, then language) when nobody logged in has them or none frees up in time, and
priority from the customer's segment."""

from __future__ import annotations

import asyncio

from routing import AgentState, CallDistributor, QueueConfig
from routing.skills import Relaxation, needs_of, relax_reason

S = AgentState
ZH_CARDS = {"zh": 1, "cards": 1}
RELAX = ("cards", "zh")  # product first, then language (what dialog's Transfer.relax says)


async def waiting(acd: CallDistributor, call_id: str, **kw):
    task = asyncio.ensure_future(acd.acquire("general", call_id, **kw))
    await asyncio.sleep(0)
    return task


async def test_a_mandarin_card_caller_gets_the_agent_with_both_skills(make_acd) -> None:
    acd, _ = make_acd([QueueConfig("general")],
                      [("anna", {"en": 2, "cards": 1}), ("li", {"zh": 1}), ("mei", {"zh": 2, "cards": 1})])
    agent = await acd.acquire("general", "c1", needs=ZH_CARDS, relax=RELAX, relax_after_s=60, timeout=0.1)
    assert agent is not None and agent.id == "mei"  # anna and li were idle longer but lack a skill
    assert acd.relaxed("c1") == [] and acd.call_needs("c1") == ZH_CARDS
    agent = await acd.acquire("general", "c2", needs={"zh": 1}, relax=("zh",), timeout=0.1)
    assert agent is not None and agent.id == "li"


async def test_a_skill_nobody_logged_in_has_is_dropped_at_once_product_first(make_acd) -> None:
    acd, _ = make_acd([QueueConfig("general")], [("anna", {"en": 2, "cards": 1}), ("li", {"zh": 1})])
    acd.set_state("anna", S.ON_BREAK)  # on break still counts: she may come back, so "en" is not given up
    agent = await acd.acquire("general", "c1", needs=ZH_CARDS, relax=RELAX, relax_after_s=60, timeout=0.1)
    assert agent is not None and agent.id == "li"  # nobody logged in has zh and cards: cards dropped
    assert acd.relaxed("c1") == [Relaxation("cards", "unstaffed", 0.0)]
    assert acd.relaxed("c1")[0].describe() == "skill cards relaxed (no logged-in agent has it)"
    assert acd.call_needs("c1") == {"zh": 1}
    # an English card caller while only li is logged in: cards, then en dropped; li takes them
    acd.set_state("anna", S.LOGGED_OUT)
    acd.answered("li")
    acd.finished("li")
    agent = await acd.acquire("general", "c2", needs={"en": 1, "cards": 1}, relax=("cards", "en"), timeout=0.1)
    assert agent is not None and agent.id == "li"
    assert [r.skill for r in acd.relaxed("c2")] == ["cards", "en"]


async def test_nobody_logged_in_at_all_relaxes_nothing(make_acd) -> None:
    acd, _ = make_acd([QueueConfig("general")], [("li", {"zh": 1})])
    acd.set_state("li", S.LOGGED_OUT)
    task = await waiting(acd, "c1", needs=ZH_CARDS, relax=RELAX, relax_after_s=None)
    acd.poll()
    assert acd.relaxed("c1") == [] and acd.call_needs("c1") == ZH_CARDS  # waiting for anyone: keep the skills
    acd.leave("c1")
    assert await task is None


async def test_skills_are_relaxed_one_at_a_time_after_relax_after_s(make_acd, clock) -> None:
    acd, _ = make_acd([QueueConfig("general")],
                      [("mei", {"zh": 2, "cards": 1}), ("li", {"zh": 1}), ("anna", {"en": 2})])
    busy = await acd.acquire("general", "busy", needs=ZH_CARDS, timeout=0.1)
    assert busy is not None and busy.id == "mei"
    acd.answered("mei")
    acd.set_state("li", S.ON_BREAK)  # a zh agent exists but is not free; mei (zh + cards) is on a call
    task = await waiting(acd, "c1", needs=ZH_CARDS, relax=RELAX, relax_after_s=60)
    clock.advance(59)
    acd.poll()
    assert not task.done() and acd.relaxed("c1") == []  # mei may free up: wait for her until 60 s
    clock.advance(1)
    acd.poll()
    assert [r.skill for r in acd.relaxed("c1")] == ["cards"] and not task.done()  # li is on a break, anna en only
    clock.advance(30)
    acd.set_state("li", S.AVAILABLE)  # a zh agent frees up: she takes it, the language is kept
    agent = await asyncio.wait_for(task, 1)
    assert agent is not None and agent.id == "li"
    assert acd.relaxed("c1") == [Relaxation("cards", "timeout", 60.0)]
    assert acd.relaxed("c1")[0].describe() == "skill cards relaxed (nobody with it free after 60 s)"


async def test_the_language_goes_last_after_a_second_relax_after_s(make_acd, clock) -> None:
    acd, _ = make_acd([QueueConfig("general")], [("mei", {"zh": 2, "cards": 1}), ("anna", {"en": 2})])
    assert await acd.acquire("general", "busy", timeout=0.1) is not None  # mei (longest idle) takes it
    acd.answered("mei")
    task = await waiting(acd, "c1", needs=ZH_CARDS, relax=RELAX, relax_after_s=60)
    clock.advance(60)
    acd.poll()
    assert [r.skill for r in acd.relaxed("c1")] == ["cards"] and not task.done()
    clock.advance(59)
    acd.poll()
    assert not task.done()
    clock.advance(1)
    acd.poll()  # nobody speaking zh freed up in another 60 s: anyone will do
    agent = await asyncio.wait_for(task, 1)
    assert agent is not None and agent.id == "anna"
    assert [(r.skill, r.reason) for r in acd.relaxed("c1")] == [("cards", "timeout"), ("zh", "timeout")]


async def test_the_queues_own_needs_are_never_relaxed(make_acd) -> None:
    acd, _ = make_acd([QueueConfig("cards", needs={"cards": 1})], [("anna", {"en": 1, "cards": 1})])
    task = asyncio.ensure_future(acd.acquire("cards", "c1", needs={"zh": 1}, relax=("zh", "cards"), timeout=0.1))
    agent = await task
    assert agent is not None and agent.id == "anna"  # zh dropped (unstaffed); cards is the queue's, kept
    assert [r.skill for r in acd.relaxed("c1")] == ["zh"] and acd.call_needs("c1") == {"cards": 1}


async def test_a_vip_caller_is_served_before_earlier_callers_with_the_same_needs(make_acd, clock) -> None:
    acd, _ = make_acd([QueueConfig("general")], [("li", {"zh": 1})])
    assert await acd.acquire("general", "busy", timeout=0.1) is not None
    acd.answered("li")
    first = await waiting(acd, "retail", needs={"zh": 1}, relax=("zh",), relax_after_s=60)
    clock.advance(20)
    vip = await waiting(acd, "vip", needs={"zh": 1}, relax=("zh",), relax_after_s=60, priority=10)
    assert [acd.position("vip"), acd.position("retail")] == [1, 2]
    acd.finished("li")
    agent = await asyncio.wait_for(vip, 1)
    assert agent is not None and agent.id == "li" and not first.done()
    acd.leave("retail")


def test_relax_reason_rules() -> None:
    zh_cards, none = needs_of(ZH_CARDS), needs_of({})
    assert relax_reason(zh_cards, none, [{"zh": 1, "cards": 1}], 0, 60) is None
    assert relax_reason(zh_cards, none, [{"zh": 1}], 0, 60) == "unstaffed"
    assert relax_reason(zh_cards, none, [], 0, 60) is None  # nobody logged in: waiting, not relaxing
    assert relax_reason(zh_cards, none, [{"zh": 1, "cards": 1}], 60, 60) == "timeout"
    assert relax_reason(zh_cards, none, [{"zh": 1, "cards": 1}], 600, None) is None
