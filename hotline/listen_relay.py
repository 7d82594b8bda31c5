"""Listen-in across workers: a supervisor's console on worker A hears a call that worker B is handling.

With `events.backend: mqtt` every worker runs a `ListenRelay` next to its console, on the same broker (its own
connection, so audio never queues behind events). It is the console's `ListenSource`: a call in progress on
this worker is tapped here (hotline/listen_live.py); a call another worker announced on the event bus
(`call.started`, not yet `call.ended`) is asked for over MQTT:

- `hotline-listen/request/<call_id>` (JSON `{"stream", "node"}`, QoS 1): every relay gets it; the one whose
  worker has the call taps it and streams. The requester repeats it every `keepalive_s` while it listens;
  a streaming relay that hears nothing for `idle_s` stops (a console that died leaves no tap behind).
- `hotline-listen/audio/<stream>` (QoS 0, binary): 100 ms of PCM16 8 kHz mono (1600 bytes) per message, the
  same mix as a local listen; an empty message means the call ended. 8 kHz PCM16 is 16 kB/s per listened
  call, plus about 60 bytes of MQTT header and topic per message (measured: tests/hotline/test_listen_relay.py).
- `hotline-listen/stop/<stream>`: the listener went; the tap is removed at once.

A call no worker streams within `answer_s` (its worker died before `call.ended`) ends the listen (the page
shows it ended) and is forgotten.

Whisper the other way (the supervisor's console on worker A, the call and its agent on worker B):

- `hotline-listen/whisper/<call_id>` (JSON `{"stream", "node"}`, QoS 1): A asks, and repeats it every
  `keepalive_s` while the supervisor talks. The worker that has the call opens its local whisper
  (hotline/whisper_live.py) and answers `hotline-listen/wack/<stream>`; one that must refuse (no agent on
  the call, someone already whispers) answers `hotline-listen/wend/<stream>` with the reason (UTF-8).
- `hotline-listen/wdata/<stream>` (QoS 0, binary): the supervisor's PCM16 8 kHz as the page sent it (at most
  `WHISPER_MAX_MSG` bytes a message; longer or odd-length messages are dropped at B).
- `hotline-listen/wend/<stream>` (QoS 1): B ended it (the agent's leg ended, or A went quiet for `idle_s`);
  `hotline-listen/stop/<stream>`: A ended it (the page closed). Not answered within `answer_s`: A ends it.

Audio flows only while someone listens. QoS 0 and bounded queues on both sides: a slow broker or listener
loses audio, never slows a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from hotline.mqtt_bus import run_until_one_ends

log = logging.getLogger(__name__)

PREFIX = "hotline-listen"
CHUNK_BYTES = 1600  # 100 ms of PCM16 at 8 kHz per message
MAX_OUT = 100  # messages waiting for the broker (10 s of one call's audio); beyond: dropped, counted
WHISPER_MAX_MSG = 3200  # bytes of whisper audio per message (console/listen.py takes no more from the page)


@dataclass
class _Served:
    """A call of this worker streamed to another worker's listener."""

    call_id: str
    stop: Callable[[], None]
    seen: float  # monotonic time of the last request (keepalive)
    buf: bytearray = field(default_factory=bytearray)


@dataclass
class _Heard:
    """A call on another worker this worker's console listens to."""

    call_id: str
    on_audio: Callable[[bytes], None]
    on_end: Callable[[], None]
    opened: float = field(default_factory=time.monotonic)
    got: int = 0  # chunks received


@dataclass
class _WhisperServed:
    """Another worker's supervisor whispering into a call of this worker."""

    call_id: str
    sink: Any  # hotline/whisper_live.py Whisper
    seen: float  # monotonic time of the last request or audio


class RemoteWhisper:
    """`console.listen.WhisperSink` for a call on another worker: the audio goes over MQTT."""

    def __init__(self, relay: ListenRelay, stream: str, call_id: str, on_end: Callable[[], None]) -> None:
        self._relay = relay
        self.stream, self.call_id = stream, call_id
        self._on_end = on_end
        self.opened = time.monotonic()
        self.accepted = False  # the worker with the call answered
        self.end_reason: str | None = None  # why the other worker ended it (the console shows it)
        self.sent = 0  # bytes handed to the relay
        self._dropped = 0  # bytes the outbound queue had no room for
        self._closed = False

    def feed(self, pcm: bytes) -> None:
        if self._closed:
            return
        for i in range(0, len(pcm), WHISPER_MAX_MSG):
            chunk = pcm[i:i + WHISPER_MAX_MSG]
            if self._relay._publish(f"{PREFIX}/wdata/{self.stream}", chunk, 0):
                self.sent += len(chunk)
            else:
                self._dropped += len(chunk)

    @property
    def dropped(self) -> int:
        return self._dropped

    def close(self) -> None:
        """The supervisor stopped: the other worker removes its mix at once."""
        if self._closed:
            return
        self._closed = True
        if self._relay._whispering.pop(self.stream, None) is not None:
            self._relay._publish(f"{PREFIX}/stop/{self.stream}", b"", 1)
        log.info("call %s: remote whisper stopped (stream %s, %d bytes sent, %d dropped)", self.call_id,
                 self.stream[:8], self.sent, self._dropped)

    def ended(self, reason: str) -> None:
        """The other worker ended it, or nobody answered: the console closes the page's socket."""
        self._relay._whispering.pop(self.stream, None)
        if self._closed:
            return
        self._closed = True
        self.end_reason = reason
        log.warning("call %s: remote whisper ended: %s", self.call_id, reason)
        self._on_end()


class ListenRelay:
    """The console's `ListenSource` over this worker's calls and, through MQTT, the other workers' calls.

    `await start()` connects in the background (reconnecting with backoff); `await connected(timeout)`;
    `await stop()`. Hand `on_event` to the event bus's `subscribe` so it learns the calls other workers have.
    """

    def __init__(self, local: Any, host: str, port: int = 1883, *, node: str, username: str | None = None,
                 password: str | None = None, keepalive_s: float = 5.0, idle_s: float = 15.0,
                 answer_s: float = 5.0) -> None:
        self.local = local
        self.host, self.port, self.node = host, port, node
        self._auth = (username, password)
        self.keepalive_s, self.idle_s, self.answer_s = keepalive_s, idle_s, answer_s
        self.remote_calls: set[str] = set()  # in progress on some worker (bus events); checked locally first
        self._served: dict[str, _Served] = {}  # by stream id
        self._heard: dict[str, _Heard] = {}  # by stream id
        self._whispering: dict[str, RemoteWhisper] = {}  # this console's whispers into other workers' calls
        self._whisper_served: dict[str, _WhisperServed] = {}  # other consoles' whispers into this worker's calls
        self._out: asyncio.Queue[tuple[str, bytes, int]] = asyncio.Queue(MAX_OUT)
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.dropped = 0  # messages not sent: the outbound queue was full
        self.sent_messages = 0
        self.sent_bytes = 0  # payload and topic, as handed to the broker

    # -- the console's ListenSource -------------------------------------------------------------------
    def open(self, call_id: str, on_audio: Callable[[bytes], None],
             on_end: Callable[[], None]) -> Callable[[], None] | None:
        stop: Callable[[], None] | None = self.local.open(call_id, on_audio, on_end)
        if stop is not None or call_id not in self.remote_calls:
            return stop
        stream = uuid.uuid4().hex
        self._heard[stream] = _Heard(call_id, on_audio, on_end)
        self._request(stream, call_id)
        log.info("call %s: listening in through another worker (stream %s)", call_id, stream[:8])

        def stop_remote() -> None:
            if self._heard.pop(stream, None) is not None:
                self._publish(f"{PREFIX}/stop/{stream}", b"", 1)
                log.info("call %s: remote listen-in stopped (stream %s)", call_id, stream[:8])

        return stop_remote

    def whisper(self, call_id: str, on_end: Callable[[], None]) -> Any:
        """`console.listen.WhisperSource`: this worker's call through the local whisper (its LookupError,
        e.g. no agent on the call, reaches the console as 409); a call another worker announced through a
        `RemoteWhisper` (a refusal there arrives later, as the end of the whisper with its reason)."""
        local = getattr(self.local, "whisper", None)
        sink = None if local is None else local(call_id, on_end)
        if sink is not None or call_id not in self.remote_calls:
            return sink
        stream = uuid.uuid4().hex
        remote = RemoteWhisper(self, stream, call_id, on_end)
        self._whispering[stream] = remote
        self._ask_whisper(stream, call_id)
        log.info("call %s: whispering through another worker (stream %s)", call_id, stream[:8])
        return remote

    def on_event(self, event: Any) -> None:
        """Bus listener: learns which calls are in progress on some worker."""
        topic = getattr(event, "topic", "")
        if topic == "call.started":
            self.remote_calls.add(event.call_id)
        elif topic == "call.ended":
            self.remote_calls.discard(event.call_id)

    # -- life cycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"listen-relay-{self.node}")

    async def connected(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    async def stop(self) -> None:
        for served in list(self._served.values()):
            served.stop()
        self._served.clear()
        for heard in list(self._heard.values()):
            heard.on_end()
        self._heard.clear()
        for stream in list(self._whisper_served):
            self._end_whisper_served(stream, "")
        for remote in list(self._whispering.values()):
            remote.ended("this worker's relay stopped")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._connected.clear()

    # -- internals ----------------------------------------------------------------------------------------
    def _publish(self, topic: str, payload: bytes, qos: int) -> bool:
        """Queues a message for the broker; False (counted) when the queue is full."""
        try:
            self._out.put_nowait((topic, payload, qos))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("listen relay %s: outbound queue full: %d messages dropped", self.node, self.dropped)
            return False
        return True

    def _request(self, stream: str, call_id: str) -> None:
        self._publish(f"{PREFIX}/request/{call_id}", json.dumps({"stream": stream, "node": self.node}).encode(), 1)

    def _ask_whisper(self, stream: str, call_id: str) -> None:
        self._publish(f"{PREFIX}/whisper/{call_id}", json.dumps({"stream": stream, "node": self.node}).encode(), 1)

    async def _run(self) -> None:
        delay = 0.1
        ident = f"listen-{self.node}-{uuid.uuid4().hex[:8]}"
        while True:
            try:
                async with aiomqtt.Client(self.host, self.port, username=self._auth[0], password=self._auth[1],
                                          identifier=ident, keepalive=10, timeout=5) as client:
                    await client.subscribe(f"{PREFIX}/request/+", qos=1)
                    await client.subscribe(f"{PREFIX}/audio/+", qos=0)
                    await client.subscribe(f"{PREFIX}/stop/+", qos=1)
                    for kind in ("whisper", "wack", "wend"):
                        await client.subscribe(f"{PREFIX}/{kind}/+", qos=1)
                    await client.subscribe(f"{PREFIX}/wdata/+", qos=0)
                    self._connected.set()
                    delay = 0.1
                    for stream, heard in self._heard.items():  # after a reconnect: ask again at once
                        self._request(stream, heard.call_id)
                    for stream, remote in self._whispering.items():
                        self._ask_whisper(stream, remote.call_id)
                    await run_until_one_ends(self._send(client), self._receive(client), self._keepalive())
            except aiomqtt.MqttError as exc:
                if self._connected.is_set():
                    log.warning("listen relay %s lost mqtt://%s:%d (%s); reconnecting", self.node, self.host,
                                self.port, exc)
            except Exception:
                log.exception("listen relay %s failed; reconnecting", self.node)
            self._connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _send(self, client: aiomqtt.Client) -> None:
        while True:
            topic, payload, qos = await self._out.get()
            await client.publish(topic, payload, qos=qos)
            self.sent_messages += 1
            self.sent_bytes += len(payload) + len(topic)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s)
            now = time.monotonic()
            for stream, heard in list(self._heard.items()):
                if not heard.got and now - heard.opened > self.answer_s:  # the worker that had it is gone
                    log.warning("call %s: no worker streams it after %.0f s: listen-in ended", heard.call_id,
                                self.answer_s)
                    self._heard.pop(stream, None)
                    self.remote_calls.discard(heard.call_id)
                    heard.on_end()
                    continue
                self._request(stream, heard.call_id)
            for stream, served in list(self._served.items()):
                if now - served.seen > self.idle_s:
                    log.warning("call %s: remote listener (stream %s) silent for %.0f s: stream stopped",
                                served.call_id, stream[:8], self.idle_s)
                    self._end_served(stream)
            for stream, remote in list(self._whispering.items()):
                if not remote.accepted and now - remote.opened > self.answer_s:
                    remote.ended(f"no worker took the whisper within {self.answer_s:.0f} s")
                    self.remote_calls.discard(remote.call_id)
                else:
                    self._ask_whisper(stream, remote.call_id)
            for stream, whispered in list(self._whisper_served.items()):
                if now - whispered.seen > self.idle_s:
                    log.warning("call %s: remote whisperer (stream %s) silent for %.0f s: whisper stopped",
                                whispered.call_id, stream[:8], self.idle_s)
                    self._end_whisper_served(stream, f"the supervisor's worker went quiet for {self.idle_s:.0f} s")

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            parts = message.topic.value.split("/")
            if len(parts) != 3:
                continue
            kind, key = parts[1], parts[2]
            raw = message.payload
            payload = bytes(raw) if isinstance(raw, bytes | bytearray) else str(raw or "").encode()
            try:
                if kind == "request":
                    self._on_request(key, payload)
                elif kind == "audio":
                    self._on_audio(key, payload)
                elif kind == "stop":
                    self._end_served(key)
                    self._end_whisper_served(key, "")
                elif kind == "whisper":
                    self._on_whisper_request(key, payload)
                elif kind == "wdata":
                    self._on_whisper_audio(key, payload)
                elif kind == "wack":
                    if (remote := self._whispering.get(key)) is not None:
                        remote.accepted = True
                elif kind == "wend":
                    if (remote := self._whispering.get(key)) is not None:
                        remote.ended(payload.decode("utf-8", "replace")[:200] or "ended by the call's worker")
            except Exception:  # one bad message must not end the relay
                log.exception("listen relay %s: message on %s failed", self.node, message.topic.value)

    def _request_from_others(self, call_id: str, payload: bytes, what: str) -> tuple[str, str] | None:
        """(stream, node) of another worker's listen or whisper request; None for this worker's own or a
        malformed one (logged)."""
        try:
            req = json.loads(payload)
            stream, node = str(req["stream"]), str(req["node"])
        except (ValueError, KeyError, TypeError):
            log.warning("listen relay %s: malformed %s for call %s ignored", self.node, what, call_id)
            return None
        if node == self.node or not stream.isalnum() or len(stream) > 64:
            return None
        return stream, node

    def _on_request(self, call_id: str, payload: bytes) -> None:
        parsed = self._request_from_others(call_id, payload, "request")
        if parsed is None:
            return
        stream, node = parsed
        served = self._served.get(stream)
        if served is not None:
            served.seen = time.monotonic()
            return
        topic = f"{PREFIX}/audio/{stream}"
        box: list[_Served] = []

        def audio(pcm: bytes) -> None:
            if not box:
                return
            buf = box[0].buf
            buf += pcm
            if len(buf) >= CHUNK_BYTES:
                self._publish(topic, bytes(buf[:CHUNK_BYTES]), 0)
                del buf[:CHUNK_BYTES]

        def ended() -> None:
            if stream in self._served:
                self._publish(topic, b"", 1)  # the end must arrive: QoS 1
                self._end_served(stream)

        stop = self.local.open(call_id, audio, ended)
        if stop is None:
            return  # not this worker's call
        box.append(_Served(call_id, stop, time.monotonic()))
        self._served[stream] = box[0]
        log.info("call %s: streaming to a listener on worker %s (stream %s)", call_id, node, stream[:8])

    def _end_served(self, stream: str) -> None:
        served = self._served.pop(stream, None)
        if served is not None:
            served.stop()
            log.info("call %s: remote listen stream %s ended", served.call_id, stream[:8])

    def _on_whisper_request(self, call_id: str, payload: bytes) -> None:
        parsed = self._request_from_others(call_id, payload, "whisper request")
        if parsed is None:
            return
        stream, node = parsed
        whispered = self._whisper_served.get(stream)
        if whispered is not None:
            whispered.seen = time.monotonic()
            self._publish(f"{PREFIX}/wack/{stream}", b"", 1)  # again: the first may have crossed a reconnect
            return
        local = getattr(self.local, "whisper", None)
        if local is None:
            return

        def ended() -> None:  # the agent's leg ended (the Whisper's watcher, on the loop)
            self._end_whisper_served(stream, "the call or the agent's leg ended")

        try:
            sink = local(call_id, ended)
        except LookupError as exc:  # no agent on the call, or someone already whispers
            reason = str(exc.args[0] if exc.args else exc)
            log.info("call %s: whisper from worker %s refused: %s", call_id, node, reason)
            self._publish(f"{PREFIX}/wend/{stream}", reason.encode()[:200], 1)
            return
        if sink is None:
            return  # not this worker's call
        self._whisper_served[stream] = _WhisperServed(call_id, sink, time.monotonic())
        self._publish(f"{PREFIX}/wack/{stream}", b"", 1)
        log.info("call %s: a supervisor on worker %s whispers to the agent (stream %s)", call_id, node, stream[:8])

    def _on_whisper_audio(self, stream: str, payload: bytes) -> None:
        whispered = self._whisper_served.get(stream)
        if whispered is None:
            return
        if len(payload) > WHISPER_MAX_MSG or len(payload) % 2:
            log.warning("call %s: whisper message of %d bytes dropped (PCM16, at most %d)", whispered.call_id,
                        len(payload), WHISPER_MAX_MSG)
            return
        whispered.seen = time.monotonic()
        whispered.sink.feed(payload)

    def _end_whisper_served(self, stream: str, reason: str) -> None:
        """Closes a whisper into this worker's call; with a reason the whisperer's worker is told."""
        whispered = self._whisper_served.pop(stream, None)
        if whispered is None:
            return
        whispered.sink.close()
        if reason:
            self._publish(f"{PREFIX}/wend/{stream}", reason.encode()[:200], 1)
        log.info("call %s: remote whisper (stream %s) ended%s", whispered.call_id, stream[:8],
                 f": {reason}" if reason else "")

    def _on_audio(self, stream: str, payload: bytes) -> None:
        heard = self._heard.get(stream)
        if heard is None:
            return
        if not payload:
            self._heard.pop(stream, None)
            heard.on_end()
            return
        heard.got += 1
        heard.on_audio(payload)


def listen_source(hotline: Any) -> tuple[Any, Callable[[Any], None] | None]:
    """The console's `ListenSource` for `hotline serve` (hotline/web.py): this worker's calls
    (`SessionAudio`); with `events.backend: mqtt` a `ListenRelay` over them that also reaches the other
    workers' calls. The second value hooks the relay's life to the console app's (`install(app)`: started
    with it, stopped with it), None without a relay."""
    from hotline.listen_live import SessionAudio

    local = SessionAudio(hotline)
    s = hotline.settings
    if s.events.backend != "mqtt":
        return local, None
    relay = ListenRelay(local, s.events.host, s.events.port, node=s.node_name, username=s.events.username,
                        password=s.events.password)

    def install(app: Any) -> None:
        unsubscribe: list[Callable[[], None]] = []

        async def start(_app: Any) -> None:
            subscribe = getattr(hotline.bus, "subscribe", None)
            if subscribe is not None:
                unsubscribe.append(subscribe(relay.on_event))
            await relay.start()

        async def stop(_app: Any) -> None:
            for undo in unsubscribe:
                undo()
            await relay.stop()

        app.on_startup.append(start)
        app.on_cleanup.append(stop)

    return relay, install
