"""What is happening now: calls in progress with their transcripts, screen pops, and who hears of it.

Bus events arrive through a plain listener (the console never imports the bus); each connected
WebSocket has a bounded queue, and a client too slow to keep up is dropped rather than slowing calls.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

MAX_LIVE_LINES = 500  # per call kept in memory for the wallboard; the database has them all
ENDED_KEEP_S = 30.0  # an ended call stays on the wallboard this long, marked ended
CLIENT_QUEUE = 1000
MAX_LIVE_CALLS = 5000


@dataclass
class LiveCall:
    call_id: str
    caller: str = ""
    called: str = ""
    started_at: float = 0.0
    intent: str | None = None
    slots: dict[str, str] = field(default_factory=dict)
    language: str = ""
    queue: str | None = None
    agent: str | None = None
    state: str = "ivr"  # ivr, queued, with_agent, ended
    outcome: str | None = None
    ended_at: float | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    sentiment: dict[str, Any] | None = None  # the latest call.sentiment: score, label, angry

    def to_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id, "caller": self.caller, "called": self.called, "started_at": self.started_at,
            "intent": self.intent, "slots": self.slots, "language": self.language, "queue": self.queue,
            "agent": self.agent, "state": self.state, "outcome": self.outcome, "lines": list(self.lines),
            "sentiment": self.sentiment,
        }


@dataclass(frozen=True)
class Viewer:
    """Who a WebSocket belongs to: supervisors see everything, an agent only their own calls."""

    name: str
    sees_all: bool


@dataclass(eq=False)
class _Client:
    viewer: Viewer
    queue: asyncio.Queue[dict[str, Any] | None]


class LiveHub:
    def __init__(self, on_event: Callable[[Any], None] | None = None) -> None:
        self.calls: dict[str, LiveCall] = {}
        self.screen_pops: dict[str, dict[str, Any]] = {}  # agent -> the latest call handed to them
        self._clients: set[_Client] = set()
        self._on_event = on_event  # e.g. metrics
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._next_expire = 0.0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._thread = loop, threading.get_ident()

    # -- events in ---------------------------------------------------------------------------
    def listener(self, event: Any) -> None:
        """The bus listener: safe to call from another thread (an MQTT bus, say)."""
        if self._loop is not None and threading.get_ident() != self._thread:
            self._loop.call_soon_threadsafe(self.handle, event)
        else:
            self.handle(event)

    def handle(self, event: Any) -> None:
        topic = getattr(event, "topic", None)
        call_id = getattr(event, "call_id", None)
        if not topic or not call_id:
            return
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("call %s: metrics failed on %s", call_id, topic)
        self._expire()
        call = self.calls.get(call_id)
        if call is None:
            if len(self.calls) >= MAX_LIVE_CALLS:  # ends that never came (a worker died): forget the oldest
                del self.calls[next(iter(self.calls))]  # dicts keep insertion order: the oldest first
            call = self.calls[call_id] = LiveCall(call_id, started_at=float(getattr(event, "at", time.time())))
        payload = event.to_dict() if hasattr(event, "to_dict") else {"topic": topic, "call_id": call_id}
        if topic == "call.started":
            call.caller, call.called = event.caller, event.called
        elif topic == "call.transcript":
            line = {"speaker": event.speaker, "text": event.text, "offset_s": event.offset_s,
                    "confidence": event.confidence}
            call.lines.append(line)
            del call.lines[:-MAX_LIVE_LINES]
        elif topic == "call.intent":
            call.intent, call.slots = event.intent, {**call.slots, **dict(event.slots)}
        elif topic == "call.queued":
            call.queue, call.state = event.queue, "queued"
        elif topic == "call.agent_assigned":
            call.queue, call.agent, call.state = event.queue, event.agent, "with_agent"
            ctx = dict(event.context or {})
            call.language = str(ctx.get("language") or call.language)
            self.screen_pops[event.agent] = self.screen_pop(call, ctx)
            payload = {"topic": topic, "call_id": call_id, "agent": event.agent,
                       "screen_pop": self.screen_pops[event.agent]}
        elif topic == "call.sentiment":
            call.sentiment = {"score": event.score, "label": event.label, "angry": bool(event.angry),
                              "minimum": event.minimum}
        elif topic == "call.ended":
            call.state, call.outcome, call.ended_at = "ended", event.outcome, time.monotonic()
            if call.agent and call.agent in self.screen_pops:
                self.screen_pops[call.agent]["ended"] = True
        self._fan_out(call, payload)

    @staticmethod
    def screen_pop(call: LiveCall, context: dict[str, Any]) -> dict[str, Any]:
        slots = context.get("slots") if isinstance(context.get("slots"), dict) else {}
        return {
            "call_id": call.call_id,
            "caller": call.caller or context.get("caller", ""),
            "verified": context.get("verified", context.get("identity")),
            "queue": call.queue,
            "intent": call.intent or context.get("intent"),
            "slots": {**call.slots, **(slots or {})},
            "language": call.language or context.get("language", ""),
            "routing": routing_text(context.get("routing")),  # needs, priority, relaxed (hotline/call_skills.py)
            "reason": context.get("reason", ""),
            "transcript": list(call.lines),
            "sentiment": call.sentiment,
            "ended": False,
        }

    def _expire(self) -> None:
        # At most once a second: a scan per event cost ~12% of the event loop at 80 new calls/s (py-spy).
        now = time.monotonic()
        if now < self._next_expire:
            return
        self._next_expire = now + 1.0
        for cid in [c.call_id for c in self.calls.values() if c.ended_at and now - c.ended_at > ENDED_KEEP_S]:
            del self.calls[cid]

    # -- events out --------------------------------------------------------------------------
    def _fan_out(self, call: LiveCall, payload: dict[str, Any]) -> None:
        for client in list(self._clients):
            v = client.viewer
            if not (v.sees_all or call.agent == v.name):
                continue
            try:
                client.queue.put_nowait(payload)
            except asyncio.QueueFull:
                log.warning("console: dropping a WebSocket of %s that does not keep up", v.name)
                self._clients.discard(client)
                while not client.queue.empty():
                    client.queue.get_nowait()
                client.queue.put_nowait(None)  # tells its writer to close

    def connect(self, viewer: Viewer) -> asyncio.Queue[dict[str, Any] | None]:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(CLIENT_QUEUE)
        self._clients.add(_Client(viewer, q))
        return q

    def disconnect(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._clients = {c for c in self._clients if c.queue is not queue}

    def snapshot(self, viewer: Viewer) -> dict[str, Any]:
        self._expire()
        calls = [c.to_dict() for c in self.calls.values() if viewer.sees_all or c.agent == viewer.name]
        pop = self.screen_pops.get(viewer.name)
        return {"topic": "snapshot", "calls": calls, "screen_pop": pop}

    def close_all(self) -> None:
        """Tells every WebSocket writer to close (server shutdown)."""
        for client in list(self._clients):
            while not client.queue.empty():
                client.queue.get_nowait()
            client.queue.put_nowait(None)
        self._clients.clear()

    @property
    def clients(self) -> int:
        return len(self._clients)


def routing_text(routing: Any) -> str:
    """The screen pop's routing line: "needs cards:1, zh:1 · priority 10 · relaxed cards" ("" when none)."""
    if not isinstance(routing, dict):
        return ""
    parts = []
    needs = routing.get("needs")
    if isinstance(needs, dict) and needs:
        parts.append("needs " + ", ".join(f"{k}:{v}" for k, v in sorted(needs.items())))
    if routing.get("priority"):
        parts.append(f"priority {routing['priority']}")
    relaxed = routing.get("relaxed")
    if isinstance(relaxed, list) and relaxed:
        parts.append("relaxed " + ", ".join(str(r) for r in relaxed))
    return " · ".join(parts)
