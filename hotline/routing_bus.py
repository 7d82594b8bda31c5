"""The distributor's news on the event bus: `agent.state` on every agent state change, `queue.stats` for
each queue when its figures change (checked every `interval_s`) and at least every `heartbeat_s`.

Works with either bus (in-process or MQTT): with MQTT every worker sees every worker's agents and queues,
which is what `hotline agents --watch` / `hotline queues --watch` and the wallboard can follow live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from hotline.bus import EventBus
from hotline.events import AgentStateUpdated, QueueStats
from routing import AgentStateChanged, CallDistributor, QueueSnapshot, RoutingEvent

log = logging.getLogger(__name__)


def queue_stats_event(snap: QueueSnapshot, node: str) -> QueueStats:
    return QueueStats(
        "", queue=snap.name, open=snap.open, waiting=snap.waiting, callbacks_waiting=snap.callbacks_waiting,
        longest_wait_s=round(snap.longest_wait_s, 1), offered=snap.offered, answered=snap.answered,
        abandoned=snap.abandoned,
        service_level_pct=None if snap.service_level_pct is None else round(snap.service_level_pct, 1),
        average_speed_of_answer_s=(None if snap.average_speed_of_answer_s is None
                                   else round(snap.average_speed_of_answer_s, 1)),
        agents_available=snap.agents_available, agents_staffed=snap.agents_staffed, node=node,
    )


class RoutingPublisher:
    """`start()` subscribes to the distributor and begins the statistics loop; `await stop()` ends it."""

    def __init__(self, acd: CallDistributor, bus: EventBus, node: str, *, interval_s: float = 1.0,
                 heartbeat_s: float = 10.0) -> None:
        self.acd, self.bus, self.node = acd, bus, node
        self.interval_s, self.heartbeat_s = interval_s, heartbeat_s
        self._last: dict[str, tuple[Any, ...]] = {}
        self._sent_at: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.acd.subscribe(self.on_routing_event)
        self._task = asyncio.create_task(self._loop(), name="routing-bus")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def on_routing_event(self, event: RoutingEvent) -> None:
        if isinstance(event, AgentStateChanged):
            call = self.acd.agent(event.agent_id).call_id or ""
            self.bus.publish(AgentStateUpdated("", agent=event.agent_id, old=str(event.old.value),
                                               new=str(event.new.value), reason=event.reason, call=call,
                                               node=self.node))

    def publish_stats(self, force: bool = False) -> int:
        """Publishes the queues whose figures changed (all with `force`, or when the heartbeat is due)."""
        now, sent = time.monotonic(), 0
        for snap in self.acd.queue_snapshots():
            event = queue_stats_event(snap, self.node)
            key = (snap.open, snap.waiting, snap.callbacks_waiting, snap.offered, snap.answered, snap.abandoned,
                   snap.agents_available, snap.agents_staffed)
            due = now - self._sent_at.get(snap.name, -1e9) >= self.heartbeat_s
            if force or due or self._last.get(snap.name) != key:
                self._last[snap.name], self._sent_at[snap.name] = key, now
                self.bus.publish(event)
                sent += 1
        return sent

    async def _loop(self) -> None:
        while True:
            try:
                self.publish_stats()
            except Exception:  # statistics must never stop the worker
                log.exception("%s: queue statistics not published", self.node)
            await asyncio.sleep(self.interval_s)
