"""Supervisor listen-in: a live call's audio, caller and hotline/agent mixed, over an authenticated WebSocket.

`GET /ws/listen/{call_id}` (supervisor and admin; agents 403; audited `listen_in` and `listen_end`) sends
binary messages of PCM16 little-endian mono at 8 kHz, 100 ms each (1600 bytes), which the wallboard plays
with WebAudio. The console never imports telephony/ or hotline/: the composition hands `create_app` a
`ListenSource` (hotline/listen_live.py) that taps the call's leg. A listener that does not keep up loses
audio (bounded queue), never slows the call. Listen only: nothing the supervisor says reaches the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

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


@requires(Role.SUPERVISOR)
async def listen_ws(request: web.Request) -> web.StreamResponse:
    c, user = ctx(request), user_of(request)
    call_id = checked_call_id(request.match_info["call_id"])
    origin = request.headers.get("Origin")
    if origin and origin.split("://", 1)[-1] != request.host:
        log.warning("console: listen-in WebSocket from foreign origin %s refused (%s)", origin, user.name)
        raise web.HTTPForbidden(text='{"error": "foreign origin"}', content_type="application/json")
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


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ws/listen/{call_id}", listen_ws)
