"""The pieces a worker needs to share the work with others (docs/DISTRIBUTED.md).

`events.backend: mqtt` gives every worker's events to every worker through a broker; `routing.store:
database` keeps agents and their reservations in the shared database, so two workers never give one
agent two calls. With the defaults (`inprocess`, `memory`) nothing here changes a single worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from hotline.bus import EventBus
from hotline.mqtt_bus import MqttEventBus
from hotline.settings import Settings
from routing import CallDistributor
from routing.sqlstore import SqlAgentStore

log = logging.getLogger(__name__)

QUEUE_STATS_INTERVAL_S = 2.0


def make_bus(settings: Settings) -> EventBus:
    ev = settings.events
    if ev.backend == "mqtt":
        return MqttEventBus(ev.host, ev.port, node=settings.node_name, username=ev.username,
                            password=ev.password, max_queued=ev.max_queued)
    return EventBus()


async def start_bus(bus: EventBus) -> None:
    """Starts connecting an MQTT bus (in the background: a broker that is down does not stop start-up)."""
    if isinstance(bus, MqttEventBus):
        await bus.start()


async def stop_bus(bus: EventBus) -> None:
    if isinstance(bus, MqttEventBus):
        await bus.stop()
        if bus.dropped:
            log.warning("event bus %s dropped %d events (broker unreachable or too slow)", bus.node, bus.dropped)


def open_agent_store(settings: Settings) -> SqlAgentStore | None:
    """The shared agent store for `routing.store: database` (None: in memory).

    Frees the agents a previous run of this worker held when it died, before any call is taken."""
    if settings.routing.store != "database":
        return None
    store = SqlAgentStore(settings.database_url, node=settings.node_name)
    store.recover_node()
    return store


def use_agent_store(acd: CallDistributor, store: SqlAgentStore | None) -> None:
    """Puts the shared store under a distributor that has no agents yet."""
    if store is None:
        return
    if acd.agents():
        raise RuntimeError("the agent store must be set before agents are added")
    acd.directory = store
    acd.store = store


def start_queue_stats(acd: CallDistributor, store: SqlAgentStore | None,
                      dead_worker_after_s: float = 30.0) -> asyncio.Task[None] | None:
    """Every few seconds: publishes this worker's queue statistics (`hotline queues`) with its heartbeat,
    and frees the agents held by workers whose heartbeat stopped `dead_worker_after_s` ago."""
    if store is None:
        return None

    async def loop() -> None:
        while True:
            try:
                await asyncio.to_thread(store.publish_queue_snapshots, acd.queue_snapshots())
                if await asyncio.to_thread(store.free_stale_holds, dead_worker_after_s):
                    acd.poll()  # someone waiting here may take a freed agent now
            except Exception as exc:  # the database being away must not stop the worker
                log.warning("%s: queue statistics not published: %s", store.node, exc)
            await asyncio.sleep(QUEUE_STATS_INTERVAL_S)

    return asyncio.create_task(loop(), name="queue-stats")


async def stop_queue_stats(task: asyncio.Task[None] | None, store: SqlAgentStore | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if store is not None:
        try:
            store.recover_node("(wrap-up cut short: this worker stops)")
        except Exception as exc:  # the database may be gone: the next start or the heartbeat frees them
            log.warning("%s: agents not freed at stop: %s", store.node, exc)
        store.close()
