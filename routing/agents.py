"""Who the agents are and where their live state is kept.

Two small interfaces carry the state another node must see: `AgentDirectory` (agent records and
their states) and `ReservationStore` (which call holds which agent). The in-memory versions here serve
one process; a SQL version replaces them for several workers, where `try_reserve` becomes one
conditional UPDATE (`... SET call_id = :call WHERE agent_id = :id AND call_id IS NULL`, success when
one row changed), so two nodes never hand the same agent two calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from routing.states import AgentState, AgentStatus


@dataclass(frozen=True)
class AgentProfile:
    """A human agent reachable at a SIP URI, with skills and levels (1 = basic, higher = better)."""

    id: str
    uri: str
    name: str = ""
    skills: Mapping[str, int] = field(default_factory=dict)
    # The queues whose calls she takes; empty: any queue whose needs her skills meet (the default).
    queues: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "skills", MappingProxyType(dict(self.skills)))
        object.__setattr__(self, "queues", frozenset(self.queues))
        if not self.name:
            object.__setattr__(self, "name", self.id)


@dataclass
class AgentRecord:
    """An agent's live state in the distributor."""

    profile: AgentProfile
    status: AgentStatus
    available_since: float = 0.0  # when the agent last became available (longest-idle ordering)
    calls_taken: int = 0
    call_id: str | None = None  # the call ringing or connected
    queue: str | None = None  # the queue that call came from
    ring_started: float | None = None
    answered_at: float | None = None
    wrap_up_until: float | None = None

    @property
    def id(self) -> str:
        return self.profile.id

    @property
    def state(self) -> AgentState:
        return self.status.state

    @property
    def skills(self) -> Mapping[str, int]:
        return self.profile.skills


def serves(profile: AgentProfile, queue: str) -> bool:
    """Whether the agent takes calls of `queue` (no queue list: every queue her skills fit)."""
    return not profile.queues or queue in profile.queues


class UnknownAgent(KeyError):
    def __str__(self) -> str:
        return f"unknown agent {self.args[0]!r}"


class AgentDirectory(Protocol):
    def add(self, record: AgentRecord) -> None: ...
    def get(self, agent_id: str) -> AgentRecord: ...  # raises UnknownAgent
    def all(self) -> list[AgentRecord]: ...
    def save(self, record: AgentRecord) -> None: ...  # persist a changed record (no-op in memory)
    def remove(self, agent_id: str) -> None: ...  # forget an agent (UnknownAgent if not there)


class ReservationStore(Protocol):
    def try_reserve(self, agent_id: str, call_id: str) -> bool: ...  # atomic: True only for one caller
    def release(self, agent_id: str) -> None: ...
    def holder(self, agent_id: str) -> str | None: ...


class InMemoryAgentDirectory:
    def __init__(self) -> None:
        self._records: dict[str, AgentRecord] = {}

    def add(self, record: AgentRecord) -> None:
        if record.id in self._records:
            raise ValueError(f"agent {record.id!r} already exists")
        self._records[record.id] = record

    def get(self, agent_id: str) -> AgentRecord:
        try:
            return self._records[agent_id]
        except KeyError:
            raise UnknownAgent(agent_id) from None

    def all(self) -> list[AgentRecord]:
        return list(self._records.values())

    def save(self, record: AgentRecord) -> None:
        pass

    def remove(self, agent_id: str) -> None:
        if self._records.pop(agent_id, None) is None:
            raise UnknownAgent(agent_id)


class InMemoryReservationStore:
    def __init__(self) -> None:
        self._held: dict[str, str] = {}

    def try_reserve(self, agent_id: str, call_id: str) -> bool:
        if agent_id in self._held:
            return False
        self._held[agent_id] = call_id
        return True

    def release(self, agent_id: str) -> None:
        self._held.pop(agent_id, None)

    def holder(self, agent_id: str) -> str | None:
        return self._held.get(agent_id)
