"""Typed events: what happened on a call, as the bus carries it to listeners."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    call_id: str
    at: float = field(default_factory=time.time, kw_only=True)

    @property
    def topic(self) -> str:
        return TOPICS[type(self)]

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, **asdict(self)}


@dataclass(frozen=True)
class CallStarted(Event):
    caller: str
    called: str


@dataclass(frozen=True)
class TranscriptAdded(Event):
    speaker: str  # caller, system, agent, event
    text: str
    offset_s: float
    confidence: float | None = None


@dataclass(frozen=True)
class IntentRecognized(Event):
    intent: str
    confidence: float
    slots: dict[str, str]


@dataclass(frozen=True)
class CallQueued(Event):
    queue: str
    reason: str
    position: int


@dataclass(frozen=True)
class AgentAssigned(Event):
    queue: str
    agent: str
    context: dict[str, Any]


@dataclass(frozen=True)
class CallEnded(Event):
    outcome: str
    reason: str
    duration_s: float


@dataclass(frozen=True)
class RecordingFailed(Event):
    """The call's recording stopped (disk full, write error); the call itself goes on."""

    path: str
    reason: str = ""


TOPICS: dict[type[Event], str] = {
    CallStarted: "call.started",
    TranscriptAdded: "call.transcript",
    IntentRecognized: "call.intent",
    CallQueued: "call.queued",
    AgentAssigned: "call.agent_assigned",
    CallEnded: "call.ended",
    RecordingFailed: "call.recording_failed",
}
