"""Shared pieces for the routing tests: a hand-moved clock and a small distributor factory."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from routing import AgentProfile, AgentState, CallDistributor, ManualClock, QueueConfig, RoutingEvent


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


class Recorder:
    def __init__(self) -> None:
        self.events: list[RoutingEvent] = []

    def __call__(self, event: RoutingEvent) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def make_acd(clock: ManualClock):
    def make(
        queues: Iterable[QueueConfig],
        agents: Iterable[tuple[str, dict[str, int]]] = (),
        *,
        idle_step: float = 1.0,
    ) -> tuple[CallDistributor, Recorder]:
        return build(clock, queues, agents, idle_step=idle_step)

    return make


def build(
    clock: ManualClock,
    queues: Iterable[QueueConfig],
    agents: Iterable[tuple[str, dict[str, int]]] = (),
    *,
    idle_step: float = 1.0,
) -> tuple[CallDistributor, Recorder]:
    """Agents log in available one after another, `idle_step` seconds apart (first = longest idle)."""
    acd = CallDistributor(queues, clock=clock)
    rec = Recorder()
    acd.subscribe(rec)
    for name, skills in agents:
        acd.add_agent(AgentProfile(name, f"sip:{name}@127.0.0.1", skills=skills), AgentState.AVAILABLE)
        clock.advance(idle_step)
    return acd, rec
