"""Small helpers for end-to-end tests with agents' phones (tests/e2e/test_callback.py, test_transfer.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import numpy as np

from telephony import AgentPhone, CallLeg


async def leg_from(phone: AgentPhone, caller: str, timeout: float) -> CallLeg:
    """The latest leg `phone` answered from `caller`; fails naming both after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        legs = [leg for leg in phone.legs if leg.caller == caller]
        if legs:
            return legs[-1]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no call from {caller} on port {phone.port} within {timeout} s")


def tone(hz: float, seconds: float = 2.0) -> bytes:
    """A sine tone as 8 kHz PCM16: an agent's phone that is easy to tell apart (tests/hotline/test_consult.py)."""
    t = np.arange(int(8000 * seconds)) / 8000
    return (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


async def send_paced(send: Callable[[bytes], Awaitable[None] | None], pcm: bytes, chunk: int = 320) -> None:
    """Hands `pcm` (8 kHz PCM16) to `send` in `chunk`-byte pieces at real-time pace, as a microphone would
    (a WebSocket's `send_bytes`, or a whisper's `feed`)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(0, len(pcm), chunk):
        sent = send(pcm[i:i + chunk])
        if sent is not None:
            await sent
        await asyncio.sleep(max(0.0, t0 + (i + chunk) / 16000 - loop.time()))


def tone_share(pcm: bytes, hz: float) -> float:
    """Fraction of the signal's energy within ±40 Hz of `hz` (0 for silence or under 0.1 s of audio)."""
    x = np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(np.float64)
    if len(x) < 800 or not np.any(x):
        return 0.0
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / 8000)
    return float(spec[np.abs(freqs - hz) <= 40].sum() / spec.sum())


def words(text: str) -> str:
    """Lower-case words only, for checking what a recogniser heard."""
    return " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split())
