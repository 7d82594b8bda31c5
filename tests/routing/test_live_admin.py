"""Admin changes to queues and agents at run time, while calls wait (CallDistributor.update_queue/put_agent)."""

from __future__ import annotations

import asyncio

import pytest

from routing import AgentProfile, AgentState, CallDistributor, ManualClock, QueueConfig
from routing.admin import agent_profile, apply_overrides, queue_changes

S = AgentState


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_loosened_needs_let_a_free_agent_take_the_waiting_call(clock: ManualClock) -> None:
    acd = CallDistributor([QueueConfig("cards", needs={"cards": 2})], clock=clock)
    acd.add_agent(AgentProfile("anna", "sip:anna@h", skills={"cards": 1}), S.AVAILABLE)
    waiter = asyncio.ensure_future(acd.acquire("cards", "c1"))
    await _settle()
    assert acd.position("c1") == 1 and not waiter.done()
    cfg = acd.update_queue("cards", needs={"cards": 1}, strategy="round_robin", priority=2)
    assert cfg.strategy == "round_robin" and acd.queue_config("cards") is cfg
    got = await asyncio.wait_for(waiter, 1)
    assert got is not None and got.id == "anna" and acd.agent("anna").state is S.RINGING


async def test_bad_changes_are_refused_whole_and_nothing_changes(clock: ManualClock) -> None:
    acd = CallDistributor([QueueConfig("general"), QueueConfig("vip")], clock=clock)
    before = acd.queue_config("general")
    bad: list[dict[str, object]] = [
        {"strategy": "fastest_first"},
        {"wrap_up_s": -1.0},
        {"max_wait_s": -5.0},
        {"overflow": "queue", "overflow_to": "nowhere", "max_wait_s": 60.0},
        {"overflow": "queue", "overflow_to": "general", "max_wait_s": 60.0},
        {"needs": {"<script>": 1}},
        {"needs": {"zh": 99}},
        {"name": "renamed"},
        {"colour": "red"},
    ]
    for change in bad:
        with pytest.raises(ValueError) as err:
            acd.update_queue("general", **change)
        assert "general" in str(err.value) or "cannot change" in str(err.value) or "strategy" in str(err.value)
    assert acd.queue_config("general") is before
    ok = acd.update_queue("general", overflow="queue", overflow_to="vip", max_wait_s=60.0)
    assert ok.overflow_to == "vip"


async def test_queue_priority_moves_waiting_calls_ahead_for_a_shared_agent(clock: ManualClock) -> None:
    acd = CallDistributor([QueueConfig("general"), QueueConfig("vip")], clock=clock)
    first = asyncio.ensure_future(acd.acquire("general", "g1"))
    await _settle()
    clock.advance(5)
    second = asyncio.ensure_future(acd.acquire("vip", "v1"))
    await _settle()
    acd.update_queue("vip", priority=5)
    acd.add_agent(AgentProfile("anna", "sip:anna@h"), S.AVAILABLE)
    got = await asyncio.wait_for(second, 1)
    assert got is not None and got.id == "anna" and not first.done()
    first.cancel()


async def test_agent_on_a_call_is_changed_after_the_call(clock: ManualClock) -> None:
    acd = CallDistributor([QueueConfig("general"), QueueConfig("loans")], clock=clock)
    acd.add_agent(AgentProfile("anna", "sip:anna@h", skills={"en": 1}), S.AVAILABLE)
    got = await asyncio.wait_for(acd.acquire("general", "c1"), 1)
    assert got is not None
    acd.answered("anna")
    changed = AgentProfile("anna", "sip:anna@other", "Anna L", {"en": 2, "loans": 3}, frozenset({"loans"}))
    assert acd.put_agent(changed) is False
    assert acd.agent("anna").profile.uri == "sip:anna@h" and acd.pending_profile("anna") == changed
    acd.finished("anna")  # wrap_up 0: available at once, the change lands
    rec = acd.agent("anna")
    assert rec.state is S.AVAILABLE and rec.profile == changed and acd.pending_profile("anna") is None
    # now she only serves "loans": a general call waits, a loans call gets her
    waiting = asyncio.ensure_future(acd.acquire("general", "c2"))
    await _settle()
    assert not waiting.done()
    loans = await asyncio.wait_for(acd.acquire("loans", "c3"), 1)
    assert loans is not None and loans.uri == "sip:anna@other"
    waiting.cancel()


async def test_new_agent_and_resting_agent_change_apply_at_once(clock: ManualClock) -> None:
    acd = CallDistributor([QueueConfig("general")], clock=clock)
    assert acd.put_agent(AgentProfile("bob", "sip:bob@h"), S.AVAILABLE) is True
    assert acd.agent("bob").state is S.AVAILABLE
    assert acd.put_agent(AgentProfile("bob", "sip:bob@h", skills={"zh": 3})) is True
    assert dict(acd.agent("bob").skills) == {"zh": 3}
    for bad in (AgentProfile("bob", "http://evil"), AgentProfile("bob", "sip:bob@h", skills={"zh": 0}),
                AgentProfile("bob", "sip:bob@h", queues=frozenset({"nope"})), AgentProfile("b ob", "sip:x@h"),
                AgentProfile("bob", "sip:bob@h\r\nVia: x"), AgentProfile("bob", "sip:bob@h", "x" * 65)):
        with pytest.raises(ValueError):
            acd.put_agent(bad)
    assert dict(acd.agent("bob").skills) == {"zh": 3}


def test_override_dicts_are_parsed_with_clear_errors() -> None:
    changes = queue_changes({"strategy": "fewest_calls", "wrap_up_s": 10, "max_wait_s": None,
                             "hours": {"tz": "Asia/Shanghai", "weekly": {"mon-fri": "08:00-20:00"}}})
    assert changes["strategy"] == "fewest_calls" and not changes["hours"].always_open
    for data, words in (({"strategy": "best"}, "strategy must be one of"), ({"wrap_up_s": -3}, "negative"),
                        ({"wrap_up_s": "soon"}, "number"), ({"hours": {"tz": "Mars/Base", "weekly": {}}}, "hours"),
                        ({"hours": {"weekly": {"funday": "08:00-09:00"}}}, "hours"), ({"x": 1}, "unknown")):
        with pytest.raises(ValueError, match=words):
            queue_changes(data)
    p = agent_profile("anna", {"uri": "sip:anna@h", "skills": {"zh": 2}, "queues": ["general"]})
    assert p.queues == frozenset({"general"}) and p.name == "anna"
    with pytest.raises(ValueError, match="uri is required"):
        agent_profile("anna", {"skills": {}})


def test_stored_overrides_win_over_yaml_and_bad_ones_are_skipped(clock: ManualClock) -> None:
    acd = CallDistributor([QueueConfig("general", wrap_up_s=5.0)], clock=clock)
    acd.add_agent(AgentProfile("anna", "sip:anna@h", skills={"en": 1}), S.AVAILABLE)
    done = apply_overrides(
        acd,
        {"general": {"wrap_up_s": 30, "strategy": "round_robin"}, "gone": {"wrap_up_s": 1}},
        {"anna": {"uri": "sip:anna@h", "skills": {"en": 3}}, "carl": {"uri": "sip:carl@h"},
         "dave": {"uri": "ftp:dave"}},
    )
    assert done.queues == ["general"] and done.agents == ["anna", "carl"]
    assert [w for w, _ in done.skipped] == ["queue gone", "agent dave"]
    assert acd.queue_config("general").wrap_up_s == 30 and dict(acd.agent("anna").skills) == {"en": 3}
    assert acd.agent("carl").state is S.AVAILABLE


def test_remove_agent_drops_a_resting_agent_and_refuses_one_on_a_call() -> None:
    from routing.agents import UnknownAgent
    from routing.events import AgentStateChanged

    acd = CallDistributor([QueueConfig("general")])
    events: list[object] = []
    acd.subscribe(events.append)
    acd.add_agent(AgentProfile("ann", "sip:ann@127.0.0.1:5090"), AgentState.AVAILABLE)
    acd.add_agent(AgentProfile("bo", "sip:bo@127.0.0.1:5091"), AgentState.ON_BREAK)
    acd.remove_agent("ann")
    assert [r.id for r in acd.agents()] == ["bo"] and acd.queue_snapshot("general").agents_staffed == 0
    left = [e for e in events if isinstance(e, AgentStateChanged) and e.agent_id == "ann"][-1]
    assert (left.new, left.reason) == (AgentState.LOGGED_OUT, "removed_by_admin")  # records and bus see her leave
    with pytest.raises(UnknownAgent):
        acd.remove_agent("ann")
