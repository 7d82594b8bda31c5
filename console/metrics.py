"""Prometheus metrics counted from bus events, in the console's own registry (no telephony import)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "HotlineMetrics"]

WAIT_BUCKETS = (1, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
DURATION_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600)
TURN_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1, 1.5, 2, 3, 5)


class HotlineMetrics:
    """Calls, queue waits, transcript lines and errors; fed one bus event at a time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls_started = Counter("hotline_calls_started", "Calls answered", registry=r)
        self.calls_ended = Counter("hotline_calls_ended", "Calls ended, by outcome", ["outcome"], registry=r)
        self.calls_in_progress = Gauge("hotline_calls_in_progress", "Calls in progress", registry=r)
        self.call_duration = Histogram(
            "hotline_call_duration_seconds", "Call duration", buckets=DURATION_BUCKETS, registry=r
        )
        self.queue_waiting = Gauge("hotline_queue_waiting", "Callers waiting in a queue", ["queue"], registry=r)
        self.queue_wait = Histogram(
            "hotline_queue_wait_seconds", "Wait in queue until an agent or hang-up", ["queue", "result"],
            buckets=WAIT_BUCKETS, registry=r,
        )
        self.transcript_lines = Counter(
            "hotline_transcript_lines", "Transcript lines written, by speaker", ["speaker"], registry=r
        )
        self.intents = Counter("hotline_intents", "Intents recognised", ["intent"], registry=r)
        self.errors = Counter("hotline_errors", "Errors, by kind", ["kind"], registry=r)
        self.turn_latency = Histogram(
            "hotline_turn_latency_seconds", "End of the caller's utterance to the first frame of the reply",
            buckets=TURN_BUCKETS, registry=r,
        )
        self.angry_calls = Counter("hotline_angry_calls", "Calls flagged angry (caller sentiment)", registry=r)
        self._queued: dict[str, tuple[str, float]] = {}  # call id -> (queue, queued at)
        self._angry: set[str] = set()  # calls in progress already counted angry

    def observe(self, event: Any) -> None:
        topic = getattr(event, "topic", "")
        call_id = getattr(event, "call_id", "")
        at = float(getattr(event, "at", 0.0))
        if topic == "call.started":
            self.calls_started.inc()
            self.calls_in_progress.inc()
        elif topic == "call.transcript":
            self.transcript_lines.labels(_label(event.speaker)).inc()
        elif topic == "call.intent":
            self.intents.labels(_label(event.intent)).inc()
        elif topic == "call.queued":
            if call_id not in self._queued:
                self.queue_waiting.labels(_label(event.queue)).inc()
            self._queued[call_id] = (_label(event.queue), at)
        elif topic == "call.agent_assigned":
            self._left_queue(call_id, at, "answered")
        elif topic == "call.turn_latency":
            self.turn_latency.observe(max(0.0, float(event.latency_s)))
        elif topic == "call.speech_failed":  # a speech stage failed; that call went on with keys
            self.errors.labels("speech_failed").inc()
        elif topic == "call.sentiment":
            if event.angry and call_id not in self._angry and len(self._angry) < 100_000:
                self._angry.add(call_id)
                self.angry_calls.inc()
        elif topic == "call.ended":
            self._angry.discard(call_id)
            self._left_queue(call_id, at, "abandoned")
            self.calls_in_progress.dec()
            outcome = _label(event.outcome)
            self.calls_ended.labels(outcome).inc()
            self.call_duration.observe(max(0.0, float(event.duration_s)))
            if outcome in ("failed", "error"):
                self.errors.labels("call_failed").inc()

    def _left_queue(self, call_id: str, at: float, result: str) -> None:
        entry = self._queued.pop(call_id, None)
        if entry is not None:
            queue, since = entry
            self.queue_waiting.labels(queue).dec()
            self.queue_wait.labels(queue, result).observe(max(0.0, at - since))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _label(value: object) -> str:
    """Label values come from configs and code, but bound them anyway: a label is not free text."""
    return str(value)[:64] or "unknown"
