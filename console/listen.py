"""Supervisor listen-in: a live call's audio, caller and hotline/agent mixed, over an authenticated WebSocket.

`GET /ws/listen/{call_id}` (supervisor and admin; agents 403; audited `listen_in` and `listen_end`) sends
binary messages of PCM16 little-endian mono at 8 kHz, 100 ms each (1600 bytes), which the wallboard plays
with WebAudio. The console never imports telephony/ or hotline/: the composition hands `create_app` a
`ListenSource` (hotline/listen_live.py) that taps the call's leg. A listener that does not keep up loses
audio (bounded queue), never slows the call.

`GET /ws/whisper/{call_id}` (same roles) is the other way: the supervisor's microphone, 8 kHz PCM16 from the
page, mixed into what the agent hears only (hotline/whisper_live.py); audited `whisper_start` / `whisper_end`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from console.context import SESSION_TOKEN, ctx, requires, user_of
from console.pages import checked_call_id
from recordings.users import Role

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
CHUNK_BYTES = 1600  # 100 ms of PCM16 at 8 kHz per WebSocket message
QUEUE_CHUNKS = 30  # 3 s of audio may wait for a slow client; beyond that it is dropped
MAX_LISTENERS = 20  # at once, over all calls
SESSION_RECHECK_S = 60.0


class ListenSource(Protocol):
    """Taps a live call's audio (implemented by the composition over the call's leg)."""

    def open(self, call_id: str, on_audio: Callable[[bytes], None],
             on_end: Callable[[], None]) -> Callable[[], None] | None:
        """Starts calling `on_audio(pcm)` (20 ms mixed frames, on the event loop) and `on_end()` once the
        call ends; returns the function that stops it, or None when the call is not in progress here."""
        ...


class _Feed:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_CHUNKS)
        self._buf = bytearray()
        self.sent = 0
        self.dropped = 0

    def audio(self, pcm: bytes) -> None:
        self._buf += pcm
        if len(self._buf) >= CHUNK_BYTES:
            chunk, self._buf = bytes(self._buf[:CHUNK_BYTES]), self._buf[CHUNK_BYTES:]
            try:
                self.queue.put_nowait(chunk)
            except asyncio.QueueFull:
                self.dropped += 1

    def end(self) -> None:
        if self.queue.full():  # the end must get through: it costs the oldest audio instead
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(None)


def _same_origin(request: web.Request, user: str) -> None:
    origin = request.headers.get("Origin")
    if origin and origin.split("://", 1)[-1] != request.host:
        log.warning("console: %s WebSocket from foreign origin %s refused (%s)", request.path, origin, user)
        raise web.HTTPForbidden(text='{"error": "foreign origin"}', content_type="application/json")


@requires(Role.SUPERVISOR)
async def listen_ws(request: web.Request) -> web.StreamResponse:
    c, user = ctx(request), user_of(request)
    call_id = checked_call_id(request.match_info["call_id"])
    _same_origin(request, user.name)
    source: ListenSource | None = c.listen
    if source is None:
        raise web.HTTPNotFound(text='{"error": "listen-in needs the calls: run hotline serve"}',
                               content_type="application/json")
    if c.listeners >= MAX_LISTENERS:
        raise web.HTTPServiceUnavailable(text='{"error": "too many listeners"}', content_type="application/json")
    feed = _Feed()
    loop = asyncio.get_running_loop()

    def ended() -> None:
        loop.call_soon_threadsafe(feed.end)

    stop = source.open(call_id, feed.audio, ended)
    if stop is None:
        raise web.HTTPNotFound(text='{"error": "that call is not in progress on this server"}',
                               content_type="application/json")
    c.listeners += 1
    started = time.monotonic()
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=1024)
    try:
        await ws.prepare(request)
        await c.db(c.users.audit, user.name, "listen_in", call_id)
        log.info("call %s: %s listens in", call_id, user.name)
        await ws.send_json({"call_id": call_id, "sample_rate": SAMPLE_RATE, "format": "s16le", "channels": 1})
        await _pump(request, ws, feed)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        stop()
        c.listeners -= 1
        secs = time.monotonic() - started
        with contextlib.suppress(Exception):
            await c.db(c.users.audit, user.name, "listen_end", call_id,
                       f"{secs:.0f} s, {feed.sent} bytes, {feed.dropped} chunks dropped")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 2.0)
        log.info("call %s: %s stopped listening after %.0f s (%d chunks dropped)", call_id, user.name, secs,
                 feed.dropped)
    return ws


async def _pump(request: web.Request, ws: web.WebSocketResponse, feed: _Feed) -> None:
    c = ctx(request)

    async def reader() -> None:
        async for msg in ws:  # the page sends nothing; a close ends the loop
            if msg.type is WSMsgType.ERROR:
                return

    read_task = asyncio.ensure_future(reader())
    token = request.get(SESSION_TOKEN, "")
    checked = time.monotonic()
    try:
        while not ws.closed:
            get = asyncio.ensure_future(feed.queue.get())
            done, _ = await asyncio.wait({get, read_task}, timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
            if read_task in done:
                get.cancel()
                return
            if time.monotonic() - checked > SESSION_RECHECK_S:  # a logout or password change ends listening
                checked = time.monotonic()
                if not await c.db(c.users.session, token, idle_s=c.settings.session_idle_s,
                                  max_age_s=c.settings.session_max_s):
                    get.cancel()
                    return
            if get not in done:
                get.cancel()
                continue
            chunk = get.result()
            if chunk is None:  # the call ended
                await ws.send_json({"ended": True})
                return
            await ws.send_bytes(chunk)
            feed.sent += len(chunk)
    finally:
        read_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await read_task  # gone before close() reads the client's close frame itself


async def _session_valid(request: web.Request) -> bool:
    c = ctx(request)
    return bool(await c.db(c.users.session, request.get(SESSION_TOKEN, ""), idle_s=c.settings.session_idle_s,
                           max_age_s=c.settings.session_max_s))


# -- whisper (coach): the supervisor talks to the agent only ---------------------------------------------------
WHISPER_MAX_MSG = 3200  # 200 ms of PCM16 at 8 kHz per message at most (the page sends 20 ms); more: close 1009
WHISPER_BURST_S = 1.0  # a client may run this far ahead of real time (jitter, a tab waking up)...
WHISPER_FLOOD_S = 3.0  # ...beyond this ahead it is flooding: close 1008 (the mix drops what exceeds its own bound)
CLOSE_UNSUPPORTED = 1003  # WebSocket close codes (RFC 6455)
CLOSE_POLICY = 1008


class WhisperSink(Protocol):
    """One supervisor's whisper into a call (hotline/whisper_live.py `Whisper`)."""

    def feed(self, pcm: bytes) -> None:
        """PCM16 8 kHz mono for the agent's ear, called on the event loop as messages arrive."""

    def close(self) -> None:
        """Stops mixing; idempotent."""

    @property
    def dropped(self) -> int:
        """Bytes dropped because the client ran ahead of real time."""
        ...


class WhisperSource(Protocol):
    """A `ListenSource` that can also whisper: `whisper(call_id, on_end) -> WhisperSink | None` (None: the call
    is not in progress here; raises LookupError with the reason when the call cannot take a whisper now)."""

    def whisper(self, call_id: str, on_end: Callable[[], None]) -> WhisperSink | None:
        ...


@requires(Role.SUPERVISOR)
async def whisper_ws(request: web.Request) -> web.StreamResponse:
    """`GET /ws/whisper/{call_id}`: binary PCM16 little-endian mono 8 kHz messages (even length, at most
    `WHISPER_MAX_MSG` bytes) from the supervisor's microphone reach the agent's phone, never the caller."""
    c, user = ctx(request), user_of(request)
    call_id = checked_call_id(request.match_info["call_id"])
    _same_origin(request, user.name)
    opener = getattr(c.listen, "whisper", None)
    if opener is None:
        raise web.HTTPNotFound(text='{"error": "whisper needs the calls: run hotline serve"}',
                               content_type="application/json")
    if c.listeners >= MAX_LISTENERS:
        raise web.HTTPServiceUnavailable(text='{"error": "too many listeners"}', content_type="application/json")
    ended = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        sink: WhisperSink | None = opener(call_id, lambda: loop.call_soon_threadsafe(ended.set))
    except LookupError as exc:
        raise web.HTTPConflict(text=json.dumps({"error": str(exc.args[0] if exc.args else exc)}),
                               content_type="application/json") from None
    if sink is None:
        raise web.HTTPNotFound(text='{"error": "that call is not in progress on this server"}',
                               content_type="application/json")
    c.listeners += 1
    state = _WhisperState(time.monotonic())
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=WHISPER_MAX_MSG + 1)  # aiohttp: size < max
    try:
        await ws.prepare(request)
        await c.db(c.users.audit, user.name, "whisper_start", call_id)
        log.info("call %s: %s whispers to the agent", call_id, user.name)
        await ws.send_json({"call_id": call_id, "sample_rate": SAMPLE_RATE, "format": "s16le", "channels": 1,
                            "max_message_bytes": WHISPER_MAX_MSG})
        await _whisper_loop(request, ws, sink, ended, state)
    except (ConnectionResetError, asyncio.CancelledError):  # the page went (aiohttp cancels the handler)
        err = ws.exception()
        state.why = f"protocol error: {err}" if err else "closed by the page (connection gone)"
    finally:
        sink.close()  # at once: nothing more reaches the agent
        c.listeners -= 1
        secs = time.monotonic() - state.started
        detail = f"{secs:.0f} s, {state.received} bytes, {sink.dropped} bytes dropped; {state.why}"
        log.info("call %s: %s stopped whispering: %s", call_id, user.name, detail)
        # The audit must be written even when this handler is cancelled (again) meanwhile.
        done = asyncio.ensure_future(c.db(c.users.audit, user.name, "whisper_end", call_id, detail))
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(done)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(ws.close(), 2.0)
    return ws


@dataclass
class _WhisperState:
    started: float
    received: int = 0  # bytes
    why: str = "closed by the page"


async def _whisper_loop(request: web.Request, ws: web.WebSocketResponse, sink: WhisperSink, ended: asyncio.Event,
                        state: _WhisperState) -> None:
    checked = time.monotonic()
    end_wait = asyncio.ensure_future(ended.wait())
    nxt: asyncio.Future[Any] | None = None
    try:
        while not ws.closed:
            nxt = asyncio.ensure_future(ws.receive())
            done, _ = await asyncio.wait({nxt, end_wait}, timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
            if end_wait in done:
                reason = getattr(sink, "end_reason", None)  # a whisper through another worker says why
                with contextlib.suppress(Exception):
                    await ws.send_json({"ended": True, **({"reason": reason} if reason else {})})
                state.why = reason or "the call or the agent's leg ended"
                return
            now = time.monotonic()
            if now - checked > SESSION_RECHECK_S:  # a logout or password change ends the whisper
                checked = now
                if not await _session_valid(request):
                    await ws.close(code=CLOSE_POLICY, message=b"session ended")
                    state.why = "session ended"
                    return
            if nxt not in done:
                nxt.cancel()
                continue
            msg = nxt.result()
            if msg.type is WSMsgType.BINARY:
                data: bytes = msg.data
                if len(data) % 2:
                    await ws.close(code=CLOSE_UNSUPPORTED, message=b"PCM16 needs an even number of bytes")
                    state.why = "malformed audio (odd length)"
                    return
                state.received += len(data)
                ahead = state.received / (2 * SAMPLE_RATE) - (now - state.started)
                if ahead > WHISPER_FLOOD_S:
                    await ws.close(code=CLOSE_POLICY, message=b"audio faster than real time")
                    state.why = f"flooding ({ahead:.1f} s ahead of real time)"
                    return
                sink.feed(data)
            elif msg.type is WSMsgType.TEXT:
                await ws.close(code=CLOSE_UNSUPPORTED, message=b"binary PCM16 8 kHz mono only")
                state.why = "text message refused"
                return
            elif msg.type is WSMsgType.ERROR:  # e.g. a message over max_msg_size: aiohttp closed it with 1009
                state.why = f"protocol error: {ws.exception()}"
                return
            else:  # CLOSE, CLOSING, CLOSED
                return
    finally:
        end_wait.cancel()
        if nxt is not None:
            nxt.cancel()


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ws/listen/{call_id}", listen_ws)
    app.router.add_get("/ws/whisper/{call_id}", whisper_ws)
