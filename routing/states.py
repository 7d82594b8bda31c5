"""Agent states, the legal moves between them, and each agent's timestamped history."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class AgentState(StrEnum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    ON_BREAK = "on_break"
    NOT_READY = "not_ready"


S = AgentState
TRANSITIONS: dict[AgentState, frozenset[AgentState]] = {
    S.LOGGED_OUT: frozenset({S.AVAILABLE, S.NOT_READY, S.ON_BREAK}),
    S.AVAILABLE: frozenset({S.RINGING, S.ON_BREAK, S.NOT_READY, S.LOGGED_OUT}),
    # ringing → not_ready: no answer; ringing → available: the caller left or the ring was cancelled.
    S.RINGING: frozenset({S.ON_CALL, S.NOT_READY, S.AVAILABLE}),
    S.ON_CALL: frozenset({S.WRAP_UP}),
    S.WRAP_UP: frozenset({S.AVAILABLE, S.ON_BREAK, S.NOT_READY, S.LOGGED_OUT}),
    S.ON_BREAK: frozenset({S.AVAILABLE, S.NOT_READY, S.LOGGED_OUT}),
    S.NOT_READY: frozenset({S.AVAILABLE, S.ON_BREAK, S.LOGGED_OUT}),
}
# What an agent (or a supervisor) may ask for by hand; ringing/on_call/wrap_up come from calls.
MANUAL_STATES = frozenset({S.AVAILABLE, S.ON_BREAK, S.NOT_READY, S.LOGGED_OUT})


class IllegalTransition(ValueError):
    def __init__(self, agent_id: str, current: AgentState, wanted: AgentState) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing"
        super().__init__(f"agent {agent_id}: cannot go from {current} to {wanted} (allowed: {allowed})")
        self.agent_id, self.current, self.wanted = agent_id, current, wanted


@dataclass(frozen=True)
class StateChange:
    state: AgentState
    at: float  # clock.monotonic()
    wall: datetime
    reason: str = ""


class AgentStatus:
    """One agent's current state plus its (bounded) history, for statistics."""

    def __init__(self, agent_id: str, at: float, wall: datetime, history_limit: int = 2000) -> None:
        self.agent_id = agent_id
        self.history: deque[StateChange] = deque([StateChange(S.LOGGED_OUT, at, wall, "created")], history_limit)

    @property
    def state(self) -> AgentState:
        return self.history[-1].state

    @property
    def since(self) -> float:
        return self.history[-1].at

    def can(self, to: AgentState) -> bool:
        return to in TRANSITIONS[self.state]

    def transition(self, to: AgentState, at: float, wall: datetime, reason: str = "") -> StateChange:
        if not self.can(to):
            raise IllegalTransition(self.agent_id, self.state, to)
        change = StateChange(to, at, wall, reason)
        self.history.append(change)
        return change

    def durations(self, until: float, since: float | None = None) -> dict[AgentState, float]:
        """Seconds spent in each state between `since` (default: the start of history) and `until`."""
        out = dict.fromkeys(AgentState, 0.0)
        changes = list(self.history)
        for cur, nxt in zip(changes, [*changes[1:], None], strict=True):
            start = cur.at if since is None else max(cur.at, since)
            end = until if nxt is None else min(nxt.at, until)
            if end > start:
                out[cur.state] += end - start
        return out

    def occupancy(self, until: float, since: float | None = None) -> float | None:
        """Share of staffed-and-ready time spent handling calls: (talk + wrap) / (talk + wrap + ring + idle)."""
        d = self.durations(until, since)
        busy = d[S.ON_CALL] + d[S.WRAP_UP]
        total = busy + d[S.AVAILABLE] + d[S.RINGING]
        return None if total <= 0 else busy / total
