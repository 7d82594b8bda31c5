"""A failed speech stage never ends a call: the call goes on with the keypad (issue #3).

The session's media reader runs the VAD, the endpointer, the barge-in detector and its echo guard, the
backchannel gate and the speculative decode on every 20 ms frame. If any of them raises, the session
(hotline/session.py, ``CallSession._speech_failover``) logs an ERROR with the call id naming the stage,
publishes `hotline.events.SpeechFailed` (console metric ``hotline_errors{kind="speech_failed"}``),
writes a transcript event line, tells the caller once, in the call's language, to use the keypad
(the same prompt as a failed recognizer) and from then on reads only keys from that leg (`keypad_only`).
"""

from __future__ import annotations

import types
from collections.abc import Callable

from telephony import CallLeg, DtmfDigit

__all__ = ["COMPONENTS", "keypad_only", "speech_component"]

# Module of the innermost frame that raised → the stage named in logs, events and the transcript.
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("asr.backchannel", "backchannel gate"),
    ("asr.speculative", "speculative decode"),
    ("asr.bargein", "barge-in detector"),
    ("asr.endpointer", "endpointer"),
    ("asr.vad", "VAD"),
    ("asr.silero_vad", "VAD"),
    ("asr.fsmn_vad", "VAD"),
)


def speech_component(exc: BaseException) -> str:
    """Which speech stage raised `exc`, from its traceback, innermost asr/ frame first (a VAD inside the
    endpointer is the VAD; an echo guard inside the barge-in detector is the echo guard); "speech
    processing" when no asr/ frame is in it."""
    frames: list[types.FrameType] = []
    tb: types.TracebackType | None = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    names = dict(COMPONENTS)
    for frame in reversed(frames):
        owner = frame.f_locals.get("self")  # a method of a stage's object (the stage's own code or a wrapper)
        if owner is not None and any(c.__name__.endswith("EchoGuard") for c in type(owner).__mro__):
            return "echo guard"
        for module in (type(owner).__module__ if owner is not None else "", str(frame.f_globals.get("__name__"))):
            if module in names:
                return names[module]
    return "speech processing"


async def keypad_only(leg: CallLeg, on_key: Callable[[str], None]) -> None:
    """Reads `leg` until the call ends, handing on each key; audio frames are dropped (no speech stage
    runs on this call any more)."""
    while True:
        item = await leg.recv()
        if item is None:
            return
        if isinstance(item, DtmfDigit):
            on_key(item.digit)
