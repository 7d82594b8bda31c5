"""Scripted SIP peers for demos and tests, each on its own SipEndpoint (own sockets, own stack).

- TestCaller: places calls, plays PCM, sends DTMF, records everything heard.
- AgentPhone: an auto-answering phone that plays a given PCM and records what it hears.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np

from .endpoint import SipEndpoint
from .leg import FRAME_BYTES, AudioFrame, CallLeg, DtmfDigit

__all__ = ["AgentPhone", "TestCaller", "dominant_hz", "frame_rms", "loud_part", "tone"]

log = logging.getLogger(__name__)

SPEECH_RMS = 300.0  # frames louder than this count as "sound" for listen()/wait_silence()


def tone(freq: float, seconds: float, amp: int = 8000) -> bytes:
    """A sine tone as PCM16 8 kHz."""
    t = np.arange(int(8000 * seconds)) / 8000
    return (amp * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def dominant_hz(pcm: bytes) -> float:
    """The strongest frequency in PCM16 8 kHz audio (0.0 for less than 20 ms)."""
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    if x.size < 160:
        return 0.0
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spec) * 8000 / x.size)


def loud_part(pcm: bytes, threshold: float = 500.0) -> bytes:
    """Only the 20 ms frames louder than ``threshold`` RMS (drops the silence around a tone)."""
    out = bytearray()
    for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
        if frame_rms(pcm[i : i + FRAME_BYTES]) > threshold:
            out += pcm[i : i + FRAME_BYTES]
    return bytes(out)


def frame_rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


@dataclass
class _Recording:
    pcm: bytearray = field(default_factory=bytearray)
    rms: list[float] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)
    cursor: int = 0  # in frames: where the next listen() starts
    changed: asyncio.Event = field(default_factory=asyncio.Event)


async def _collect(leg: CallLeg, rec: _Recording) -> None:
    while True:
        item = await leg.recv()
        if item is None:
            rec.changed.set()
            return
        if type(item) is AudioFrame:
            rec.pcm += item.pcm
            rec.rms.append(frame_rms(item.pcm))
        elif isinstance(item, DtmfDigit):
            rec.digits.append(item.digit)
        rec.changed.set()


async def _wait_change(rec: _Recording, timeout: float) -> None:
    rec.changed.clear()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(rec.changed.wait(), timeout)


class _Recorder:
    def __init__(self) -> None:
        self._recs: dict[str, _Recording] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.legs: list[CallLeg] = []

    def _track(self, leg: CallLeg) -> _Recording:
        rec = _Recording()
        self._recs[leg.call_id] = rec
        self.legs.append(leg)
        self._tasks.append(asyncio.create_task(_collect(leg, rec), name=f"collect-{leg.call_id}"))
        return rec

    def _rec(self, leg: CallLeg | None) -> _Recording:
        if leg is None:
            if not self.legs:
                raise LookupError("no call yet")
            leg = self.legs[-1]
        return self._recs[leg.call_id]

    def heard_pcm(self, leg: CallLeg | None = None) -> bytes:
        """All PCM16 8 kHz audio received on the leg (default: the latest call)."""
        return bytes(self._rec(leg).pcm)

    def digits(self, leg: CallLeg | None = None) -> list[str]:
        return list(self._rec(leg).digits)

    async def listen(self, leg: CallLeg | None = None, *, silence_s: float = 1.0, timeout_s: float = 30.0,
                     threshold: float = SPEECH_RMS) -> bytes:
        """Audio heard since the previous listen(): waits for sound, then for ``silence_s`` of quiet
        (or the timeout, or the call's end) and returns it."""
        rec = self._rec(leg)
        the_leg = leg or self.legs[-1]
        start = rec.cursor
        need = max(1, int(silence_s * 50))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        end = len(rec.rms)
        while True:
            rms = rec.rms
            end = len(rms)
            heard_sound = any(r > threshold for r in rms[start:end])
            if heard_sound and end - start >= need and all(r <= threshold for r in rms[end - need : end]):
                break
            if the_leg.ended.is_set() or loop.time() >= deadline:
                break
            await _wait_change(rec, min(0.2, max(0.0, deadline - loop.time())))
        rec.cursor = end
        return bytes(rec.pcm[start * FRAME_BYTES : end * FRAME_BYTES])

    async def wait_silence(self, leg: CallLeg | None = None, *, silence_s: float = 1.0, timeout_s: float = 30.0,
                           threshold: float = SPEECH_RMS) -> bool:
        """True once the far end has been quiet for ``silence_s`` (False on timeout or hang-up)."""
        rec = self._rec(leg)
        the_leg = leg or self.legs[-1]
        need = max(1, int(silence_s * 50))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline and not the_leg.ended.is_set():
            rms = rec.rms
            if len(rms) >= need and all(r <= threshold for r in rms[-need:]):
                return True
            await _wait_change(rec, 0.2)
        return False

    async def _stop_collectors(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


class TestCaller(_Recorder):
    """A scripted caller: ``async with TestCaller() as tc: leg = await tc.call(uri)``.

    Everything the far end sends is collected in the background (do not call ``leg.recv()`` yourself);
    use ``heard_pcm()``, ``digits()``, ``listen()`` and ``wait_silence()``.
    """

    __test__ = False  # not a pytest class

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, rtp_ports: tuple[int, int] = (40000, 50000),
                 max_calls: int = 500, user: str = "tester") -> None:
        super().__init__()
        self.endpoint = SipEndpoint(host, port, max_calls=max_calls, rtp_ports=rtp_ports,
                                    user_agent="hotline-testcaller")
        self.user = user

    async def start(self) -> None:
        await self.endpoint.start()

    async def stop(self) -> None:
        await self.endpoint.stop()
        await self._stop_collectors()

    async def __aenter__(self) -> TestCaller:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def call(self, uri: str, *, from_user: str | None = None, timeout: float = 15.0) -> CallLeg:
        leg = await self.endpoint.dial(uri, from_user=from_user or self.user, timeout=timeout)
        self._track(leg)
        return leg

    async def play(self, leg: CallLeg, pcm: bytes, *, wait: bool = True) -> None:
        """Send PCM16 8 kHz into the call (and wait until it has been played out)."""
        leg.send_audio(pcm)
        if wait:
            await leg.wait_played()

    def send_dtmf(self, leg: CallLeg, digits: str) -> None:
        leg.send_dtmf(digits)


class AgentPhone(_Recorder):
    """An auto-answering phone for agent-bridge tests and the demo.

    Plays ``play_pcm`` once when it answers (every ``gap_s`` again if ``repeat``) and records what it hears.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, play_pcm: bytes = b"", repeat: bool = False,
                 gap_s: float = 2.0, answer_delay: float = 0.0, rtp_ports: tuple[int, int] = (50000, 60000),
                 max_calls: int = 20) -> None:
        super().__init__()
        self.endpoint = SipEndpoint(host, port, max_calls=max_calls, rtp_ports=rtp_ports, user_agent="hotline-agent",
                                    answer_delay=answer_delay)
        self.endpoint.on_call = self._on_call
        self.play_pcm = play_pcm
        self.repeat = repeat
        self.gap_s = gap_s
        self.answered = asyncio.Event()

    @property
    def port(self) -> int:
        return self.endpoint.port

    async def start(self) -> None:
        await self.endpoint.start()

    async def stop(self) -> None:
        await self.endpoint.stop()
        await self._stop_collectors()

    async def __aenter__(self) -> AgentPhone:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def wait_for_call(self, timeout: float = 30.0) -> CallLeg:
        await asyncio.wait_for(self.answered.wait(), timeout)
        return self.legs[-1]

    async def _on_call(self, leg: CallLeg) -> None:
        self._track(leg)
        self.answered.set()
        log.info("call %s: agent phone answered (from %s)", leg.call_id, leg.caller)
        while not leg.ended.is_set():
            if self.play_pcm:
                leg.send_audio(self.play_pcm)
                await leg.wait_played()
            if not self.repeat:
                await leg.ended.wait()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(leg.ended.wait(), self.gap_s)
