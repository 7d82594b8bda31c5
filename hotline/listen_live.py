"""Listen-in for the console (console/listen.py): a live call's audio as the caller and the other side hear
it together, from a tap on the caller's leg.

The caller leg's tap sees each frame received from the caller ("in") and each frame sent to the caller
("out": prompts, hold music or, while bridged, the agent's voice; silence when nothing plays). The leg
sends exactly one "out" frame every 20 ms, so the mix is clocked by those: each one is summed with the
oldest caller frame waiting (none waiting: the caller's side is silent). Caller frames pile up at most
`MAX_BEHIND` deep (jitter); older ones are dropped. Everything runs on the event loop, in the tap.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from hotline.whisper_live import Whisper, open_whisper

log = logging.getLogger(__name__)

MAX_BEHIND = 10  # caller frames (200 ms) waiting for an outgoing tick


class FrameMixer:
    """Mixes the two directions of a leg into one 8 kHz PCM16 stream, one frame per outgoing tick."""

    def __init__(self, emit: Callable[[bytes], None]) -> None:
        self._emit = emit
        self._in: deque[bytes] = deque(maxlen=MAX_BEHIND)

    def tap(self, direction: str, pcm: bytes) -> None:
        if direction == "in":
            self._in.append(pcm)
            return
        out = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
        if self._in:
            caller = np.frombuffer(self._in.popleft(), dtype="<i2").astype(np.int32)
            n = min(len(out), len(caller))
            out = out[:n] + caller[:n]
        self._emit(np.clip(out, -32768, 32767).astype("<i2").tobytes())


class SessionAudio:
    """The `console.listen.ListenSource` of `hotline serve`: calls in progress in this process."""

    def __init__(self, hotline: Any) -> None:
        self.hotline = hotline
        self._whispering: set[str] = set()  # call ids with a whisper going on (one per call)

    def _session(self, call_id: str) -> Any:
        for session in list(self.hotline.sessions):
            if getattr(session, "call_id", None) == call_id:
                return session
        return None

    def _leg(self, call_id: str) -> Any:
        session = self._session(call_id)
        return None if session is None else session.leg

    def whisper(self, call_id: str, on_end: Callable[[], None]) -> Whisper | None:
        """`console.listen.WhisperSource`: mixes a supervisor's voice into the frames sent to the call's agent
        (hotline/whisper_live.py); None when the call is not in progress here; raises `WhisperRefused`
        (a LookupError) when it has no agent now or someone already whispers on it."""
        session = self._session(call_id)
        if session is None or session.leg.ended.is_set():
            return None
        return open_whisper(call_id, session, self._whispering, on_end)

    def open(self, call_id: str, on_audio: Callable[[bytes], None],
             on_end: Callable[[], None]) -> Callable[[], None] | None:
        leg = self._leg(call_id)
        if leg is None or leg.ended.is_set():
            return None
        mixer = FrameMixer(on_audio)
        leg.add_tap(mixer.tap)

        async def watch() -> None:
            await leg.ended.wait()
            on_end()

        watcher = asyncio.ensure_future(watch())
        log.info("call %s: listen-in tap added", call_id)

        def stop() -> None:
            leg.remove_tap(mixer.tap)
            watcher.cancel()
            log.info("call %s: listen-in tap removed", call_id)

        return stop
