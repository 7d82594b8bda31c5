"""Turn latency (issue #7 item 4): from the endpointer deciding the caller has finished to the first
frame of the hotline's reply leaving on RTP.

One `TurnTimer` per call session. The session calls `heard(endpoint_s, recognised_s)` when a
recognised utterance reaches the dialog (the endpoint time is the moment the endpointer emitted the
utterance) and `reply_queued(queued_ms, render_started)` just before it hands the reply's rendered
audio to the leg. The leg tap `on_frame` sees every frame the leg sends (called by
the leg's 20 ms ticker right after the RTP packet left); the first frame of the reply closes the turn.
The figure goes to the log (with the call id and a breakdown) and to `publish` (a `TurnLatency`
event: the console's Prometheus histogram `hotline_turn_latency_seconds`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from hotline.events import TurnLatency

log = logging.getLogger(__name__)


class TurnTimer:
    """Times one call's turns; all times are `time.monotonic()` seconds."""

    def __init__(self, call_id: str, publish: Callable[[TurnLatency], None]) -> None:
        self.call_id = call_id
        self._publish = publish
        self._endpoint: float | None = None  # the turn being timed: the endpointer's decision
        self._recognised = 0.0
        self._render = 0.0
        self._queued = 0.0
        self._skip = -1  # frames still to send before the reply's first one; -1: no reply queued
        self.turns = 0

    def heard(self, endpoint: float, recognised: float | None = None) -> None:
        """A recognised utterance reached the dialog: its reply, if any, is timed from `endpoint`."""
        self._endpoint = endpoint
        self._recognised = recognised if recognised is not None else time.monotonic()
        self._skip = -1

    def cancel(self) -> None:
        """No reply for this turn (a key, a hang-up, a transfer): stop timing it."""
        self._endpoint = None
        self._skip = -1

    def listening(self) -> None:
        """The dialog waits for the caller again: a turn whose reply queued no audio is not timed."""
        if self._skip < 0:
            self._endpoint = None

    def reply_queued(self, queued_ms: int, render_started: float | None = None) -> None:
        """The reply's first audio (its synthesis began at `render_started`) is about to be queued
        behind `queued_ms` of audio already queued."""
        if self._endpoint is None or self._skip >= 0:
            return  # not timing, or a later prompt of the same reply
        self._queued = time.monotonic()
        self._render = max(render_started or self._queued, self._recognised)
        self._skip = max(0, queued_ms) // 20

    def on_frame(self, direction: str, pcm: bytes) -> None:
        """Leg tap: called after each 20 ms frame is sent ("out") or received ("in")."""
        if direction != "out" or self._skip < 0:
            return
        if self._skip > 0:
            self._skip -= 1
            return
        sent = time.monotonic()
        endpoint = self._endpoint
        self._endpoint, self._skip = None, -1
        if endpoint is None:
            return
        self.turns += 1
        total = (sent - endpoint) * 1000
        recog = (self._recognised - endpoint) * 1000
        dialog = (self._render - self._recognised) * 1000
        synth = (self._queued - self._render) * 1000
        first = (sent - self._queued) * 1000
        log.info("call %s: turn latency %.0f ms (recognition %.0f, dialog %.0f, synthesis %.0f, first frame %.0f)",
                 self.call_id, total, recog, dialog, synth, first)
        event = TurnLatency(self.call_id, round(total / 1000, 4), round(recog / 1000, 4))
        try:  # the tap runs in the leg's ticker: publish outside it
            asyncio.get_running_loop().call_soon(self._publish, event)
        except RuntimeError:
            self._publish(event)
