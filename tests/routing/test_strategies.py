"""Each strategy picks the agent it promises to; strategies are chosen by name."""

from __future__ import annotations

import pytest

from routing import (
    AgentProfile,
    AgentRecord,
    AgentState,
    AgentStatus,
    ManualClock,
    QueueConfig,
    make_strategy,
    register_strategy,
    strategy_names,
)
from routing.skills import SkillRequirement, merge_needs, needs_of
from routing.strategies import _REGISTRY, LongestIdle


def rec(name: str, idle_since: float, calls: int = 0, skills: dict[str, int] | None = None) -> AgentRecord:
    c = ManualClock()
    return AgentRecord(AgentProfile(name, f"sip:{name}@x", skills=skills or {}), AgentStatus(name, 0, c.now()),
                       available_since=idle_since, calls_taken=calls)


def test_longest_idle_takes_the_agent_free_the_longest() -> None:
    agents = [rec("a", 30.0), rec("b", 10.0), rec("c", 20.0)]
    assert make_strategy("longest_idle").choose(agents, ()).id == "b"


def test_round_robin_goes_round_in_id_order() -> None:
    rr = make_strategy("round_robin")
    agents = [rec("c", 0.0), rec("a", 0.0), rec("b", 0.0)]
    assert [rr.choose(agents, ()).id for _ in range(4)] == ["a", "b", "c", "a"]
    assert rr.choose([rec("a", 0.0), rec("c", 0.0)], ()).id == "c"  # b is busy: the next after a


def test_fewest_calls_then_longest_idle() -> None:
    agents = [rec("a", 1.0, calls=5), rec("b", 9.0, calls=2), rec("c", 3.0, calls=2)]
    assert make_strategy("fewest_calls").choose(agents, ()).id == "c"


def test_skills_weighted_takes_the_best_match() -> None:
    needs = needs_of({"zh": 1, "cards": 1})
    agents = [rec("a", 1.0, skills={"zh": 1, "cards": 1}), rec("b", 5.0, skills={"zh": 3, "cards": 2}),
              rec("c", 2.0, skills={"zh": 3, "cards": 2})]
    assert make_strategy("skills_weighted").choose(agents, needs).id == "c"


def test_unknown_strategy_names_the_known_ones_and_new_ones_plug_in() -> None:
    with pytest.raises(ValueError, match=r"unknown routing strategy 'fastest'.*longest_idle"):
        make_strategy("fastest")

    class Youngest(LongestIdle):
        name = "youngest"

        def choose(self, candidates, needs):
            return max(candidates, key=lambda a: a.available_since)

    register_strategy("youngest", Youngest)
    try:
        assert "youngest" in strategy_names()
        assert make_strategy("youngest").choose([rec("a", 1.0), rec("b", 2.0)], ()).id == "b"
    finally:
        _REGISTRY.pop("youngest")


def test_needs_merge_keeps_the_stricter_level() -> None:
    assert merge_needs(needs_of({"zh": 1, "vip": 2}), needs_of(["zh", SkillRequirement("zh", 3)])) == (
        SkillRequirement("vip", 2), SkillRequirement("zh", 3))


@pytest.mark.parametrize("strategy", ["longest_idle", "round_robin", "fewest_calls", "skills_weighted"])
async def test_strategies_through_the_distributor(make_acd, strategy: str) -> None:
    acd, _ = make_acd([QueueConfig("q", strategy=strategy)], [("a", {}), ("b", {}), ("c", {})])
    got = []
    for i in range(3):
        agent = await acd.acquire("q", f"c{i}", timeout=0.1)
        assert agent is not None
        got.append(agent.id)
    assert got == ["a", "b", "c"]  # all equal but for idle time and id: every rule agrees here


async def test_fewest_calls_differs_from_longest_idle(make_acd) -> None:
    picks = {}
    for strategy in ("fewest_calls", "longest_idle"):
        acd, _ = make_acd([QueueConfig("q", strategy=strategy)], [("a", {}), ("b", {})])
        agent = await acd.acquire("q", "first", timeout=0.1)
        assert agent is not None and agent.id == "a"
        acd.answered(agent)
        acd.finished(agent)  # a: one call, available again
        acd.set_state("b", AgentState.NOT_READY)
        acd.set_state("b", AgentState.AVAILABLE)  # b: no calls, but idle for less time than a
        agent = await acd.acquire("q", "second", timeout=0.1)
        assert agent is not None
        picks[strategy] = agent.id
    assert picks == {"fewest_calls": "b", "longest_idle": "a"}
