"""What the distributor tells the world (the composition layer maps these onto the event bus)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from routing.states import AgentState


@dataclass(frozen=True)
class CallbackRequest:
    """A caller who chose to be called back; they keep their place in the queue virtually."""

    call_id: str
    number: str
    queue: str
    priority: int
    requested_at: datetime


@dataclass(frozen=True)
class AgentStateChanged:
    agent_id: str
    old: AgentState
    new: AgentState
    reason: str
    at: datetime


@dataclass(frozen=True)
class CallQueued:
    call_id: str
    queue: str
    priority: int
    position: int


@dataclass(frozen=True)
class AgentReserved:
    call_id: str
    queue: str
    agent_id: str


@dataclass(frozen=True)
class CallAnswered:
    call_id: str
    queue: str
    agent_id: str
    wait_s: float


@dataclass(frozen=True)
class CallAbandoned:
    call_id: str
    queue: str
    wait_s: float
    reason: str


@dataclass(frozen=True)
class CallOverflowed:
    call_id: str
    from_queue: str
    to_queue: str
    wait_s: float


@dataclass(frozen=True)
class MaxWaitReached:
    """The queue's max wait passed and its overflow action is a callback offer: offer one now."""

    call_id: str
    queue: str
    wait_s: float


@dataclass(frozen=True)
class CallbackDue:
    """A callback's turn came: `agent_id` is reserved (ringing); dial `request.number` now."""

    request: CallbackRequest
    agent_id: str


RoutingEvent = (
    AgentStateChanged
    | CallQueued
    | AgentReserved
    | CallAnswered
    | CallAbandoned
    | CallOverflowed
    | MaxWaitReached
    | CallbackDue
)
