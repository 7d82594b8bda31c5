"""The event bus over MQTT: the same surface as `hotline.bus.EventBus`, shared by several processes.

Events travel as JSON on `hotline/<node>/<topic>` (e.g. `hotline/worker-1/call.ended`). `publish` never
blocks the call path: listeners in this process are called at once (as with `EventBus`), and the event
is put on a bounded outbound queue that one task drains to the broker; when the queue is full the
event is dropped and counted (`dropped`). The bus connects in the background and reconnects with
backoff when the broker goes away; events published meanwhile wait in the queue (up to its bound).
Events from other nodes arrive typed again (`event_from_dict`) and go to the same listeners.
Notifications only: the database holds the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import uuid
from collections.abc import Coroutine
from typing import Any

import aiomqtt

from hotline.bus import EventBus
from hotline.events import TOPICS, Event

log = logging.getLogger(__name__)

PREFIX = "hotline"
_BY_TOPIC: dict[str, type[Event]] = {topic: cls for cls, topic in TOPICS.items()}
_NODE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class BadEvent(ValueError):
    """A message that is not one of our events (unknown topic, bad JSON, wrong fields)."""


def event_from_dict(data: dict[str, Any]) -> Event:
    """The typed event back from `Event.to_dict()`; raises BadEvent naming what is wrong."""
    if not isinstance(data, dict):
        raise BadEvent(f"an event is a JSON object, not {type(data).__name__}")
    topic = data.get("topic")
    cls = _BY_TOPIC.get(str(topic))
    if cls is None:
        raise BadEvent(f"unknown event topic {topic!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    fields = {k: v for k, v in data.items() if k != "topic"}
    extra = sorted(set(fields) - names)
    if extra:
        raise BadEvent(f"{topic}: unknown fields {', '.join(extra)}")
    try:
        return cls(**fields)
    except TypeError as exc:
        raise BadEvent(f"{topic}: {exc}") from None


async def run_until_one_ends(*coros: Coroutine[Any, Any, Any]) -> None:
    """Runs one connection's loops (send, receive, ...) together until one of them ends: cancels the others
    and re-raises the first one's error. Used per MQTT connection here and by hotline/listen_relay.py."""
    tasks = {asyncio.ensure_future(c) for c in coros}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class MqttEventBus(EventBus):
    """`subscribe(listener)` / `publish(event)` like `EventBus`, with every node's events shared via MQTT.

    `await start()` begins connecting (it does not wait for the broker: a worker starts even while the
    broker is down); `await connected(timeout)` waits for the first connection; `await stop()` sends
    what is queued (for up to `drain_s`) and disconnects.
    """

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        node: str,
        username: str | None = None,
        password: str | None = None,
        max_queued: int = 10000,
        qos: int = 1,
        backoff_min_s: float = 0.1,
        backoff_max_s: float = 5.0,
    ) -> None:
        if not _NODE_RE.match(node):
            raise ValueError(
                f"node name {node!r} must be 1-64 letters, digits, '.', '_' or '-' (it is an MQTT topic level)")
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        self.host, self.port, self.node = host, port, node
        self._username, self._password = username, password
        self._qos = qos
        self._backoff = (backoff_min_s, backoff_max_s)
        super().__init__()
        self._out: asyncio.Queue[Event] | None = None
        self._pending: Event | None = None  # taken from the queue, not yet acknowledged by the broker
        self._max_queued = max_queued
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._stopping = False
        self.dropped = 0  # events not sent because the outbound queue was full
        self.sent = 0
        self.received = 0
        self.rejected = 0  # messages from the broker that were not valid events
        self.connects = 0

    # -- the EventBus surface (subscribe is EventBus's) ----------------------------------------------
    def publish(self, event: Event) -> None:
        """Delivers to local listeners now and queues the event for the broker; never blocks."""
        super().publish(event)
        if self._out is None or self._stopping:
            self.dropped += 1
            return
        try:
            self._out.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("call %s: MQTT outbound queue full (%d): %d events dropped so far",
                            event.call_id, self._max_queued, self.dropped)

    # -- life cycle ----------------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    @property
    def queued(self) -> int:
        return 0 if self._out is None else self._out.qsize()

    async def start(self) -> None:
        if self._task is not None:
            return
        self._out = asyncio.Queue(self._max_queued)
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"mqtt-bus-{self.node}")

    async def connected(self, timeout: float = 10.0) -> None:
        """Waits until the bus is connected and subscribed; raises TimeoutError."""
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    async def stop(self, drain_s: float = 2.0) -> None:
        if self._task is None:
            return
        if self._out is not None and self.is_connected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_s):
                    await self._out.join()
        self._stopping = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        self._connected.clear()

    # -- internals -----------------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = self._backoff[0]
        failures = 0
        identifier = f"hotline-{self.node}-{uuid.uuid4().hex[:8]}"
        while True:
            try:
                async with aiomqtt.Client(
                    self.host, self.port, username=self._username, password=self._password,
                    identifier=identifier, keepalive=10, timeout=5,
                ) as client:
                    await client.subscribe(f"{PREFIX}/+/+", qos=self._qos)
                    self.connects += 1
                    delay = self._backoff[0]
                    self._connected.set()
                    log.info("event bus %s connected to mqtt://%s:%d", self.node, self.host, self.port)
                    failures = 0
                    # Either side failing (a publish or the message stream) ends this connection.
                    await run_until_one_ends(self._send(client), self._receive(client))
            except aiomqtt.MqttError as exc:
                was = self._connected.is_set()
                self._connected.clear()
                failures += 1
                if was:
                    log.warning("event bus %s lost mqtt://%s:%d (%s); reconnecting",
                                self.node, self.host, self.port, exc)
                elif failures == 1 or failures % 20 == 0:
                    log.warning("event bus %s cannot reach mqtt://%s:%d (%s; %d tries); events wait in the queue",
                                self.node, self.host, self.port, exc, failures)
            except Exception:  # a bug must not end the bus for good: log it and connect again
                log.exception("event bus %s failed; reconnecting", self.node)
            self._connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff[1])

    async def _send(self, client: aiomqtt.Client) -> None:
        """Sends one event at a time, in order, each acknowledged (QoS 1) before the next; an event whose
        send fails is sent again on the next connection (at least once)."""
        assert self._out is not None
        while True:
            if self._pending is None:
                self._pending = await self._out.get()
            event = self._pending
            payload = json.dumps(event.to_dict(), ensure_ascii=False, default=str)
            await client.publish(f"{PREFIX}/{self.node}/{event.topic}", payload, qos=self._qos)
            self.sent += 1
            self._pending = None
            self._out.task_done()

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            parts = message.topic.value.split("/")
            if len(parts) != 3 or parts[1] == self.node:
                continue  # our own events were delivered locally when published
            try:
                raw = message.payload
                text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else str(raw)
                event = event_from_dict(json.loads(text))
            except (ValueError, UnicodeDecodeError) as exc:
                self.rejected += 1
                log.warning("event bus %s: ignored a message on %s: %s", self.node, message.topic.value, exc)
                continue
            self.received += 1
            super().publish(event)  # to this process's listeners only
