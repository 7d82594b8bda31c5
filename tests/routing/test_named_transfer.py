"""Transfers to a named agent in the distributor (routing/distributor.py `check_target`, `reserve_agent`,
`queue_at_front`; routing/transfer.py `queue_for_agent` and the desk's checks), in memory and over the
shared SQL store two workers use."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from routing import (
    AgentProfile,
    AgentState,
    CallDistributor,
    QueueConfig,
    TargetBusy,
    TransferRefused,
    TransferRequest,
    queue_for_agent,
)
from routing.sqlstore import SqlAgentStore

S = AgentState


def _acd(**kw: object) -> CallDistributor:
    acd = CallDistributor([QueueConfig("general", wrap_up_s=0), QueueConfig("cards", needs={"cards": 1}, wrap_up_s=5)],
                          **kw)  # type: ignore[arg-type]
    for name, skills, queues in (("anna", {}, ()), ("bob", {"cards": 1}, ()), ("dora", {"cards": 1}, ("cards",))):
        rec = acd.add_agent(AgentProfile(name, f"sip:{name}@127.0.0.1:9", skills=skills, queues=frozenset(queues)))
        if rec.state is S.LOGGED_OUT:
            acd.set_state(name, S.AVAILABLE)
    return acd


def test_checks_name_the_reason() -> None:
    acd = _acd()
    with pytest.raises(TransferRefused, match="unknown agent 'zed'"):
        acd.check_target("zed", "general")
    with pytest.raises(TransferRefused, match="agent anna does not take calls of cards"):  # no cards skill
        acd.check_target("anna", "cards")
    with pytest.raises(TransferRefused, match="agent dora does not take calls of general"):  # her queue list
        acd.check_target("dora", "general")
    acd.set_state("bob", S.ON_BREAK)
    with pytest.raises(TargetBusy, match="agent bob is on break"):
        acd.check_target("bob", "cards")
    assert [queue_for_agent(acd, a, "general") for a in ("anna", "dora", "zed")] == ["general", "cards", "general"]
    with pytest.raises(TargetBusy, match="nobody in cards is free to consult"):
        acd.set_state("dora", S.ON_BREAK)
        acd.transfers.check(TransferRequest("c1", "cards", kind="consult"))
    acd.transfers.check(TransferRequest("c1", "general", kind="complete"))  # only the session knows a consult


async def test_a_named_reservation_rings_her_outside_the_queue_and_is_reported_like_any() -> None:
    acd = _acd()
    assert acd.reserve_agent("bob", "call-1", "cards").id == "bob"
    assert (acd.agent("bob").state, acd.agent("bob").call_id, acd.agent("bob").queue) == (S.RINGING, "call-1", "cards")
    with pytest.raises(TargetBusy, match="agent bob is ringing"):
        acd.reserve_agent("bob", "call-2", "cards")
    waiting = asyncio.ensure_future(acd.acquire("cards", "call-3"))  # bob is not given to a queued caller
    await asyncio.sleep(0)
    assert acd.agent("dora").call_id == "call-3" and acd.agent("bob").call_id == "call-1"
    assert await waiting is not None
    acd.answered("bob")
    assert acd.agent("bob").state is S.ON_CALL and acd.queue_snapshot("cards").answered == 0  # not a queue answer
    acd.finished("bob")
    assert acd.agent("bob").state is S.WRAP_UP  # the wrap-up of the queue she was rung for
    acd.reserve_agent("anna", "call-4", "general")
    acd.no_answer("anna")
    assert acd.agent("anna").state is S.NOT_READY


async def test_back_from_a_failed_named_transfer_the_caller_is_first_in_line() -> None:
    acd = _acd()
    for name in ("anna", "bob", "dora"):
        acd.set_state(name, S.ON_BREAK)
    first = asyncio.ensure_future(acd.acquire("general", "waited-long"))
    vip = asyncio.ensure_future(acd.acquire("general", "vip", priority=5))
    await asyncio.sleep(0)
    acd.queue_at_front("back")
    back = asyncio.ensure_future(acd.acquire("general", "back"))
    later = asyncio.ensure_future(acd.acquire("general", "later"))
    await asyncio.sleep(0)
    assert [acd.position(c) for c in ("vip", "back", "waited-long", "later")] == [1, 2, 3, 4]
    for task in (first, vip, back, later):
        task.cancel()


def test_two_workers_reserving_the_same_agent_by_name_one_wins(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'routing.db'}"
    w1 = _acd(directory=(s1 := SqlAgentStore(url, node="w1", refresh_s=0)), store=s1)
    w2 = _acd(directory=(s2 := SqlAgentStore(url, node="w2", refresh_s=0)), store=s2)
    w1.reserve_agent("bob", "call-1", "cards")
    with pytest.raises(TargetBusy):
        w2.reserve_agent("bob", "call-2", "cards")
    assert w2.agent("bob").state is S.RINGING and s2.holder("bob") == "call-1"


def test_claiming_an_agent_who_took_a_call_from_a_colleagues_phone() -> None:
    """claim_agent (attended transfer from a phone, hotline/attended.py): she is rung for the call whatever her
    resting state, and refused only while she rings or talks for another call."""
    acd = _acd()
    acd.set_state("bob", S.ON_BREAK)
    assert acd.claim_agent("bob", "c1", "cards") is S.ON_BREAK
    assert acd.agent("bob").state is S.RINGING and acd.agent("bob").call_id == "c1"
    acd.answered("bob")
    with pytest.raises(TargetBusy, match="bob is on call for another call"):
        acd.claim_agent("bob", "c2", "cards")
    acd.finished("bob")  # cards: 5 s of wrap-up; a colleague's transfer takes her out of it
    assert acd.agent("bob").state is S.WRAP_UP
    assert acd.claim_agent("bob", "c3", "cards") is S.WRAP_UP
    acd.release("bob")
    assert acd.agent("bob").state is S.AVAILABLE
    with pytest.raises(TransferRefused, match="unknown agent 'zed'"):
        acd.claim_agent("zed", "c4", "general")
    with pytest.raises(TransferRefused, match="unknown queue"):
        acd.claim_agent("anna", "c4", "nowhere")
