"""Supervisor whisper (coach): what a supervisor says reaches the agent only, never the caller.

The console's `/ws/whisper/{call_id}` (console/listen.py) feeds the supervisor's microphone (8 kHz PCM16) into
a `WhisperMix`; the agent's leg asks it for one 20 ms frame per frame it sends (`CallLeg.mix_in`) and sums it
into the caller's voice the bridge sends the agent. The caller's leg, its taps (the stereo recording, the
listen-in mix, the transcript) never see the whisper: it is not in the recording, and it is audited instead
(`whisper_start` / `whisper_end` with seconds and bytes, docs/CONSOLE.md).

Timing: the browser sends chunks in bursts (its audio callback), the leg takes 20 ms every 20 ms. The mix
waits for `PREFILL_MS` before it starts (and again after running dry) and keeps at most `MAX_BUFFER_MS`: a
client that sends faster than real time loses the oldest audio (`dropped`, bytes) instead of adding delay.
One whisper per call at a time. Own SIP stack only (`mix_in` is a CallLeg attribute; pjsua2 legs lack it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

FRAME_BYTES = 320  # 20 ms of PCM16 at 8 kHz
PREFILL_MS = 100
MAX_BUFFER_MS = 500


class WhisperMix:
    """Whisper audio waiting for the agent leg's 20 ms ticks (everything on the event loop)."""

    def __init__(self, prefill_ms: int = PREFILL_MS, max_buffer_ms: int = MAX_BUFFER_MS) -> None:
        self._buf = bytearray()
        self._prefill = prefill_ms * 16 // FRAME_BYTES * FRAME_BYTES
        self._max = max(max_buffer_ms * 16, self._prefill + FRAME_BYTES)
        self._playing = False
        self.received = 0  # bytes fed
        self.played = 0  # bytes mixed into the agent's frames
        self.dropped = 0  # bytes dropped because the client ran ahead of real time

    def feed(self, pcm: bytes) -> None:
        """Adds PCM16 8 kHz mono (even length); beyond the bound the oldest audio goes."""
        self._buf += pcm
        self.received += len(pcm)
        over = len(self._buf) - self._max
        if over > 0:
            over += over % 2
            del self._buf[:over]
            self.dropped += over

    def pull(self) -> bytes | None:
        """The next 20 ms frame to mix in, or None (nothing to add: not yet prefilled, or ran dry)."""
        if not self._playing:
            if len(self._buf) < max(self._prefill, FRAME_BYTES):
                return None
            self._playing = True
        if len(self._buf) < FRAME_BYTES:
            self._playing = False  # ran dry: wait for the prefill again rather than play crumbs
            return None
        frame = bytes(self._buf[:FRAME_BYTES])
        del self._buf[:FRAME_BYTES]
        self.played += FRAME_BYTES
        return frame


class Whisper:
    """One supervisor's whisper into one agent leg: `feed(pcm)`, `close()`; `mix` has the counters."""

    def __init__(self, call_id: str, leg: Any, on_end: Callable[[], None], release: Callable[[], None]) -> None:
        self.call_id = call_id
        self.mix = WhisperMix()
        self._leg = leg
        self._release = release
        self._closed = False
        leg.mix_in = self.mix.pull

        async def watch() -> None:
            await leg.ended.wait()
            on_end()

        self._watcher = asyncio.ensure_future(watch())
        log.info("call %s: whisper to the agent's leg %s started", call_id, getattr(leg, "call_id", "?"))

    def feed(self, pcm: bytes) -> None:
        if not self._closed:
            self.mix.feed(pcm)

    @property
    def dropped(self) -> int:
        return self.mix.dropped

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if getattr(self._leg, "mix_in", None) == self.mix.pull:
            self._leg.mix_in = None
        self._watcher.cancel()
        self._release()
        log.info("call %s: whisper ended (%d bytes received, %d played, %d dropped)", self.call_id,
                 self.mix.received, self.mix.played, self.mix.dropped)


class WhisperRefused(LookupError):
    """The call is here but cannot take a whisper now (no agent on it, or someone already whispers)."""


def open_whisper(call_id: str, session: Any, busy: set[str], on_end: Callable[[], None]) -> Whisper:
    """A whisper into `session`'s agent leg; raises WhisperRefused when there is none or one is going on."""
    leg = getattr(session, "agent_leg", None)
    if leg is None or leg.ended.is_set():
        raise WhisperRefused("no agent is on that call now: whisper needs an agent")
    if not hasattr(leg, "mix_in"):
        raise WhisperRefused("whisper needs the hotline's own SIP stack (sip.backend: own)")
    if call_id in busy or getattr(leg, "mix_in", None) is not None:
        raise WhisperRefused("someone is already whispering on that call")
    busy.add(call_id)
    return Whisper(call_id, leg, on_end, lambda: busy.discard(call_id))
