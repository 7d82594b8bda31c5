"""Which free agent takes a call: one small strategy object per rule, chosen by name per queue."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from routing.agents import AgentRecord
from routing.skills import Needs, skill_score


class Strategy(Protocol):
    name: str

    def choose(self, candidates: Sequence[AgentRecord], needs: Needs) -> AgentRecord:
        """Picks one of `candidates` (never empty; all free and skilled enough)."""
        ...


class LongestIdle:
    name = "longest_idle"

    def choose(self, candidates: Sequence[AgentRecord], needs: Needs) -> AgentRecord:
        return min(candidates, key=lambda a: (a.available_since, a.id))


class RoundRobin:
    """Takes agents in the order of their ids, going on after the one that got the last call."""

    name = "round_robin"

    def __init__(self) -> None:
        self._last: str | None = None

    def choose(self, candidates: Sequence[AgentRecord], needs: Needs) -> AgentRecord:
        ordered = sorted(candidates, key=lambda a: a.id)
        pick = next((a for a in ordered if self._last is None or a.id > self._last), ordered[0])
        self._last = pick.id
        return pick


class FewestCalls:
    name = "fewest_calls"

    def choose(self, candidates: Sequence[AgentRecord], needs: Needs) -> AgentRecord:
        return min(candidates, key=lambda a: (a.calls_taken, a.available_since, a.id))


class SkillsWeighted:
    """The most skilled agent for what the call needs; longest idle among equals."""

    name = "skills_weighted"

    def choose(self, candidates: Sequence[AgentRecord], needs: Needs) -> AgentRecord:
        return min(candidates, key=lambda a: (-skill_score(a.skills, needs), a.available_since, a.id))


_REGISTRY: dict[str, Callable[[], Strategy]] = {
    "longest_idle": LongestIdle,
    "round_robin": RoundRobin,
    "fewest_calls": FewestCalls,
    "skills_weighted": SkillsWeighted,
}


def register_strategy(name: str, factory: Callable[[], Strategy]) -> None:
    _REGISTRY[name] = factory


def strategy_names() -> list[str]:
    return sorted(_REGISTRY)


def make_strategy(name: str) -> Strategy:
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(f"unknown routing strategy {name!r} (known: {', '.join(strategy_names())})") from None
