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


@dataclass(frozen=True)
class TurnLatency(Event):
    """One turn: from the endpointer deciding the caller had finished to the reply's first RTP frame."""

    latency_s: float
    recognition_s: float = 0.0


@dataclass(frozen=True)
class AgentStateUpdated(Event):
    """An agent changed state (routing/states.py). `call_id` is "" (not a call's event); `call` is the
    call she rings for or talks to, if any. Published by hotline/routing_bus.py."""

    agent: str
    old: str
    new: str
    reason: str
    call: str = ""
    node: str = ""


@dataclass(frozen=True)
class QueueStats(Event):
    """One queue's live statistics on one worker (`call_id` ""), on change and every few seconds."""

    queue: str
    open: bool
    waiting: int
    callbacks_waiting: int
    longest_wait_s: float
    offered: int
    answered: int
    abandoned: int
    service_level_pct: float | None
    average_speed_of_answer_s: float | None
    agents_available: int
    agents_staffed: int
    node: str = ""


@dataclass(frozen=True)
class TransferRequested(Event):
    """An agent asked to move the call to another queue (routing/transfer.py); the worker holding the call
    acts on it (hotline/transfer.py). mode: blind | context."""

    to_queue: str
    mode: str
    note: str = ""
    by: str = ""
    node: str = ""
    to_agent: str = ""  # a named agent (routing.TransferRequest)
    kind: str = "transfer"  # transfer | consult | complete | cancel


@dataclass(frozen=True)
class TransferStatus(Event):
    """How a transfer to a named agent or a consultation went (hotline/consult.py), for the first agent's
    console. step: ringing, failed, connected, consulting, completed, cancelled, ended."""

    step: str
    by: str  # the agent who asked
    target: str  # the agent rung (or the queue)
    detail: str = ""


@dataclass(frozen=True)
class SentimentChanged(Event):
    """The caller's running sentiment changed label (angry, negative, neutral, positive) or angry flag."""

    score: float
    minimum: float
    label: str
    angry: bool
    lines: int
    line_score: float


@dataclass(frozen=True)
class SpeechFailed(Event):
    """A speech stage (recognizer, VAD, endpointer, barge-in detector, echo guard, backchannel gate,
    speculative decode) failed on this call; the call goes on with the keypad (hotline/speech_failover.py)."""

    component: str
    leg: str = "caller"  # caller | agent


@dataclass(frozen=True)
class RoutingConfigChanged(Event):
    """An admin stored (or reset) a queue's or an agent's settings in the console (`call_id` ""): every other
    worker re-reads that row and applies it (hotline/routing_sync.py). kind: queue | agent."""

    kind: str
    name: str
    node: str = ""


TOPICS: dict[type[Event], str] = {
    CallStarted: "call.started",
    TranscriptAdded: "call.transcript",
    IntentRecognized: "call.intent",
    CallQueued: "call.queued",
    AgentAssigned: "call.agent_assigned",
    CallEnded: "call.ended",
    RecordingFailed: "call.recording_failed",
    TurnLatency: "call.turn_latency",
    AgentStateUpdated: "agent.state",
    QueueStats: "queue.stats",
    TransferRequested: "call.transfer_requested",
    TransferStatus: "call.transfer_status",
    SentimentChanged: "call.sentiment",
    SpeechFailed: "call.speech_failed",
    RoutingConfigChanged: "routing.config_changed",
}
