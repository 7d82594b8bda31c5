"""Bridge two call legs: audio and DTMF both ways until either leg ends.

The bridge listens through taps (audio) and DTMF listeners, not through ``recv()``: whoever else reads a
leg (e.g. the session's speech recogniser during an agent call) keeps getting every frame, and the
bridge still gets every frame too. Nothing is decoded twice: frames are PCM already.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from .leg import CallLeg

__all__ = ["bridge"]

log = logging.getLogger(__name__)

MAX_LAG_MS = 200  # live audio queued beyond this on the far leg is dropped (clock drift, bursts)


def _audio_to(dst: CallLeg) -> Callable[[str, bytes], None]:
    def tap(direction: str, pcm: bytes) -> None:
        if direction != "in" or dst.ended.is_set():
            return
        if dst.queued_ms > MAX_LAG_MS:
            dst.clear_audio()
        dst.send_audio(pcm)

    return tap


def _dtmf_to(dst: CallLeg) -> Callable[[str], None]:
    def listener(digit: str) -> None:
        if not dst.ended.is_set():
            dst.send_dtmf(digit)

    return listener


async def bridge(a: CallLeg, b: CallLeg) -> None:
    """Pipe audio (and DTMF) a<->b until either leg ends. Taps on both legs keep working and ``recv()``
    on either leg keeps delivering frames to other readers. Neither leg is hung up here."""
    log.info("call %s: bridged with call %s", a.call_id, b.call_id)
    a_tap, b_tap = _audio_to(b), _audio_to(a)
    a_dtmf, b_dtmf = _dtmf_to(b), _dtmf_to(a)
    a.add_tap(a_tap)
    b.add_tap(b_tap)
    a.dtmf_listeners.append(a_dtmf)
    b.dtmf_listeners.append(b_dtmf)
    waits = [asyncio.ensure_future(a.ended.wait()), asyncio.ensure_future(b.ended.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in waits:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        a.remove_tap(a_tap)
        b.remove_tap(b_tap)
        with contextlib.suppress(ValueError):
            a.dtmf_listeners.remove(a_dtmf)
        with contextlib.suppress(ValueError):
            b.dtmf_listeners.remove(b_dtmf)
    log.info("call %s: bridge with call %s ended (%s / %s)", a.call_id, b.call_id, a.end_reason or "up",
             b.end_reason or "up")
