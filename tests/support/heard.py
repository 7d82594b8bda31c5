"""What a call leg hears: the dominant frequency of its incoming audio over a short window (test helper)."""

from __future__ import annotations

import asyncio

from telephony import AudioFrame, CallLeg
from telephony.testcaller import dominant_hz, loud_part


async def heard_hz(leg: CallLeg, seconds: float = 0.6) -> float:
    """The dominant frequency of what ``leg`` receives over ``seconds`` (0.0 for silence). Reads ``leg.recv()``:
    do not use on a leg someone else reads."""
    pcm = bytearray()

    async def collect() -> None:
        while (item := await leg.recv()) is not None:
            if isinstance(item, AudioFrame):
                pcm.extend(item.pcm)

    task = asyncio.ensure_future(collect())
    await asyncio.sleep(seconds)
    task.cancel()
    loud = loud_part(bytes(pcm))
    return dominant_hz(loud) if loud else 0.0
