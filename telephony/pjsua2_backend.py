"""Optional SIP backend on PJSIP through the PyPI ``pjsua2-python`` wheel (an independent stack).

``Pjsua2Endpoint`` and ``Pjsua2Leg`` have the public surface of ``telephony.SipEndpoint`` and
``telephony.CallLeg`` (see docs/ARCHITECTURE.md and docs/PJSUA2.md). It is meant for small sites and as a
second, independent stack; the wheel caps concurrent calls at a handful (measured: 4; see docs/PJSUA2.md).

Threading: every pjsua2 call runs in one dedicated worker thread (``pjsua2-worker``) that owns the library
(libCreate/libInit/transport/libStart, event polling with ``libHandleEvents``, libDestroy). The asyncio side
hands it closures through a thread-safe queue; results come back as futures. Audio frames are exchanged by
the conference bridge's clock thread (``onFrameRequested``/``onFrameReceived`` of a pooled
``AudioMediaPort``), which touches only lock-protected Python state and ``loop.call_soon_threadsafe``.
The event loop never blocks on pjsua2.

``pjsua2`` is imported lazily: ``import telephony`` works without it; constructing ``Pjsua2Endpoint``
without it raises ``Pjsua2Unavailable`` naming the pip package.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any, Literal, TypeVar

import numpy as np

from .dtmf import DIGITS
from .endpoint import CallFailed, run_call_handler
from .leg import FRAME_BYTES, SILENCE, AudioFrame, DtmfDigit, _gain_table

__all__ = ["Pjsua2Endpoint", "Pjsua2Leg", "Pjsua2Unavailable", "load_pjsua2"]

log = logging.getLogger(__name__)

PIP_PACKAGE = "pjsua2-python"
Tap = Callable[[str, bytes], None]
T = TypeVar("T")
# PJSUA_MAX_CALLS of the pjsua2-python 2.15.1 wheel: pjsua answers "486 Busy Here (too many calls)" to a 5th
# concurrent call whatever uaConfig.maxCalls says (measured; see docs/PJSUA2.md).
WHEEL_MAX_CALLS = 4
_POLL_MS = 10  # libHandleEvents timeout: the worst-case latency of a command from asyncio


class Pjsua2Unavailable(ImportError):
    """The pjsua2 module (PyPI package ``pjsua2-python``) cannot be imported."""


def load_pjsua2() -> ModuleType:
    """Import pjsua2 or raise Pjsua2Unavailable with the pip command."""
    try:
        import pjsua2
    except ImportError as exc:
        raise Pjsua2Unavailable(
            f"the pjsua2 SIP backend needs the PJSIP Python bindings: pip install {PIP_PACKAGE} ({exc})"
        ) from exc
    return pjsua2


def _user_of(uri: str) -> str:
    """User part of a SIP URI or name-addr ('"Bob" <sip:bob@host>;tag=x' -> 'bob')."""
    s = uri
    if "<" in s:
        s = s[s.index("<") + 1 :]
        s = s.split(">", 1)[0]
    s = s.split(";", 1)[0]
    for scheme in ("sips:", "sip:", "tel:"):
        if s.lower().startswith(scheme):
            s = s[len(scheme) :]
            break
    return s.split("@", 1)[0] if "@" in s else ""


class Pjsua2Leg:
    """One established pjsua2 call, with the public surface of telephony.CallLeg."""

    sample_rate = 8000
    max_buffered_frames = 250  # recv() keeps at most 5 s of audio (oldest dropped); DTMF is never dropped

    def __init__(self, endpoint: Pjsua2Endpoint, *, call_id: str, caller: str, called: str, is_uas: bool) -> None:
        self._ep = endpoint
        self.call_id = call_id
        self.caller = caller
        self.called = called
        self.is_uas = is_uas
        self.codec = "PCMU"
        self.ended = asyncio.Event()
        self.end_reason = ""
        self.frames_in = 0
        self.frames_out = 0
        self._pj_index = -1  # pjsua call index (worker thread only)
        # received (asyncio thread only)
        self._in: deque[AudioFrame | DtmfDigit] = deque()
        self._in_audio = 0
        self._wake = asyncio.Event()
        # to send: shared with the media clock thread under _lock
        self._lock = threading.Lock()
        self._out: deque[bytes] = deque()
        self._out_partial = b""
        self.cleared = 0  # how many times clear_audio dropped the queue
        self._played = asyncio.Event()
        self._played.set()
        self._gain_lut: Any = None  # duck(): outgoing samples mapped through it (None: as queued); under _lock
        self._taps: list[Tap] = []
        self.dtmf_listeners: list[Callable[[str], None]] = []  # called with each received digit (bridge)

    def __repr__(self) -> str:
        return f"<Pjsua2Leg {self.call_id} {self.caller}->{self.called} {self.codec} ended={self.ended.is_set()}>"

    # ------------------------------------------------------------------ public API (asyncio thread)
    async def recv(self) -> AudioFrame | DtmfDigit | None:
        """Next received 20 ms frame or DTMF digit; None once the call has ended (after draining)."""
        while not self._in:
            if self.ended.is_set():
                return None
            self._wake.clear()
            await self._wake.wait()
        item = self._in.popleft()
        if type(item) is AudioFrame:
            self._in_audio -= 1
        return item

    def send_audio(self, pcm: bytes) -> None:
        """Queue PCM16 8 kHz mono audio for paced 20 ms playout (by the conference bridge clock)."""
        if self.ended.is_set() or not pcm:
            return
        with self._lock:
            data = self._out_partial + bytes(pcm)
            n = len(data) - len(data) % FRAME_BYTES
            for i in range(0, n, FRAME_BYTES):
                self._out.append(data[i : i + FRAME_BYTES])
            self._out_partial = data[n:]
        self._played.clear()

    def clear_audio(self) -> None:
        """Drop everything queued at once (barge-in); counted in ``cleared`` as telephony.CallLeg."""
        self.cleared += 1
        with self._lock:
            self._out.clear()
            self._out_partial = b""
            self._gain_lut = None
        self._played.set()

    def duck(self, gain_db: float = -24.0) -> None:
        """Play the queued audio quieter by ``gain_db`` (<= 0) until `unduck`, `clear_audio` or the queue runs
        dry, as telephony.CallLeg.duck."""
        if not gain_db <= 0.0:  # also rejects NaN
            raise ValueError(f"duck gain must be <= 0 dB, got {gain_db!r}")
        lut = _gain_table(round(32768 * 10 ** (max(gain_db, -120.0) / 20)))
        with self._lock:
            self._gain_lut = lut

    def unduck(self, ramp_ms: int = 0) -> None:
        """Back to full volume from the next frame on (this backend does not ramp: ``ramp_ms`` is ignored)."""
        with self._lock:
            self._gain_lut = None

    @property
    def ducked(self) -> bool:
        return self._gain_lut is not None

    @property
    def playing(self) -> bool:
        return bool(self._out) or bool(self._out_partial)

    @property
    def queued_ms(self) -> int:
        return len(self._out) * 20 + len(self._out_partial) // 16

    async def wait_played(self) -> None:
        """Return when the queued audio has been sent (or cleared, or the call ended)."""
        await self._played.wait()

    def send_dtmf(self, digit: str) -> None:
        """Send digits: RFC 2833/4733 if the peer offered telephone-event, else SIP INFO (pjsua2 decides)."""
        digits = digit.upper()
        for d in digits:
            if d not in DIGITS:
                raise ValueError(f"not a DTMF digit: {d!r}")
        if self.ended.is_set() or not digits:
            return
        self._ep._send_dtmf(self, digits)

    def add_tap(self, fn: Tap) -> None:
        """fn("in", pcm) for every received frame, fn("out", pcm) for every sent frame (20 ms each)."""
        self._taps.append(fn)

    def remove_tap(self, fn: Tap) -> None:
        if fn in self._taps:
            self._taps.remove(fn)

    async def hangup(self) -> None:
        """End the call (BYE, or CANCEL/decline if not yet confirmed)."""
        if self.ended.is_set():
            return
        self._end("local_hangup")
        await self._ep._hangup(self)

    # ------------------------------------------------------------------ asyncio thread, scheduled by pjsua2 threads
    def _push(self, item: AudioFrame | DtmfDigit) -> None:
        if self.ended.is_set():
            return
        if type(item) is AudioFrame:
            self.frames_in += 1
            if self._taps:
                self._run_taps("in", item.pcm)
            self._in_audio += 1
            if self._in_audio > self.max_buffered_frames:
                for i, old in enumerate(self._in):
                    if type(old) is AudioFrame:
                        del self._in[i]
                        self._in_audio -= 1
                        break
            self._in.append(item)
            self._wake.set()
            return
        assert isinstance(item, DtmfDigit)
        log.info("call %s: DTMF key received (%s)", self.call_id, item.method)  # never the digit: PINs, card numbers
        self._in.append(item)
        self._wake.set()
        for fn in list(self.dtmf_listeners):
            try:
                fn(item.digit)
            except Exception:
                log.exception("call %s: DTMF listener failed", self.call_id)

    def _sent(self, pcm: bytes, drained: bool) -> None:
        self.frames_out += 1
        if self._taps:
            self._run_taps("out", pcm)
        if drained and not self.playing:
            self._played.set()

    def _run_taps(self, direction: str, pcm: bytes) -> None:
        for fn in tuple(self._taps):
            try:
                fn(direction, pcm)
            except Exception:
                log.exception("call %s: tap %r failed; removed", self.call_id, fn)
                self.remove_tap(fn)

    def _end(self, reason: str) -> None:
        if self.ended.is_set():
            return
        self.end_reason = reason
        log.info("call %s: ended (%s)", self.call_id, reason)
        self.ended.set()
        self._wake.set()
        with self._lock:
            self._out.clear()
            self._out_partial = b""
        self._played.set()

    # ------------------------------------------------------------------ media clock thread
    def _next_out(self) -> tuple[bytes | None, bool]:
        """The next 20 ms to send (None: silence) and whether the queue just drained."""
        with self._lock:
            if self._out:
                pcm = self._out.popleft()
            elif self._out_partial:
                pcm = self._out_partial + bytes(FRAME_BYTES - len(self._out_partial))
                self._out_partial = b""
            else:
                return None, False
            drained = not self._out and not self._out_partial
            if self._gain_lut is not None:
                pcm = self._gain_lut.take(np.frombuffer(pcm, np.uint16)).tobytes()
                if drained:
                    self._gain_lut = None
            return pcm, drained


class Pjsua2Endpoint:
    """A SIP user agent on PJSIP (pjsua2) with the public surface of telephony.SipEndpoint.

    One per process (pjsua2 allows a single library instance); ``stop()`` destroys the library so a new
    one can be started afterwards.
    """

    def __init__(self, host: str, port: int, *, max_calls: int = 4, rtp_ports: tuple[int, int] = (17000, 18000),
                 user_agent: str = "hotline-pjsua2", log_level: int = 1) -> None:
        self._pj = load_pjsua2()
        if max_calls < 1:
            raise ValueError("max_calls must be >= 1")
        if max_calls > WHEEL_MAX_CALLS:
            log.warning("pjsua2: the %s wheel is built for at most %d concurrent calls; max_calls=%d lowered to %d",
                        PIP_PACKAGE, WHEEL_MAX_CALLS, max_calls, WHEEL_MAX_CALLS)
            max_calls = WHEEL_MAX_CALLS
        self.host = host
        self.port = port
        self.max_calls = max_calls
        self.rtp_ports = rtp_ports
        self.user_agent = user_agent
        self.log_level = log_level
        self.advertised_host = host if host not in ("0.0.0.0", "::") else "127.0.0.1"
        self.on_call: Callable[[Pjsua2Leg], Awaitable[None]] | None = None
        self.stats = {"calls_in": 0, "calls_out": 0, "busy": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._cmds: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = queue.SimpleQueue()
        self._quit = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._legs: dict[str, Pjsua2Leg] = {}
        # worker-thread state
        self._ep: Any = None
        self._accounts: dict[str, Any] = {}
        self._ports: list[Any] = []
        self._free_ports: list[Any] = []
        self._calls: dict[int, Any] = {}  # pjsua call index -> _Call (kept alive until DISCONNECTED)
        self._silence_vec: Any = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the pjsua2 worker thread and the library; raises OSError if it cannot (e.g. port in use)."""
        if self._thread is not None:
            raise RuntimeError("already started")
        with _instance_lock:
            other = _running.get("endpoint")
            if other is not None and other is not self:
                raise RuntimeError("pjsua2 allows one library instance per process: stop the other "
                                   f"Pjsua2Endpoint (port {other.port}) first")
            _running["endpoint"] = self
        self._loop = asyncio.get_running_loop()
        self._quit.clear()
        started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._worker, args=(started,), name="pjsua2-worker", daemon=True)
        self._thread.start()
        try:
            self.port = await asyncio.wrap_future(started)
        except BaseException:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 10.0)
            self._thread = None
            _forget_instance(self)
            raise
        log.info("pjsua2 SIP endpoint listening on udp %s:%d (max_calls %d)", self.host, self.port, self.max_calls)

    async def stop(self) -> None:
        """Hang up every call, stop call tasks, destroy the pjsua2 library (joins the worker thread)."""
        if self._thread is None:
            return
        legs = list(self._legs.values())
        if legs:
            await asyncio.gather(*(leg.hangup() for leg in legs), return_exceptions=True)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._quit.set()
        thread = self._thread
        await asyncio.get_running_loop().run_in_executor(None, thread.join, 15.0)
        if thread.is_alive():
            log.error("pjsua2 worker thread did not stop within 15 s")
        self._thread = None
        if not thread.is_alive():
            _forget_instance(self)
        for leg in list(self._legs.values()):
            leg._end("shutdown")
        self._legs.clear()
        log.info("pjsua2 SIP endpoint on port %d stopped", self.port)

    @property
    def calls(self) -> list[Pjsua2Leg]:
        return list(self._legs.values())

    def _spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ asyncio -> worker
    def _submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self._thread is None or self._quit.is_set():
            fut.set_exception(RuntimeError("pjsua2 endpoint not running"))
        else:
            self._cmds.put((fn, fut))
        return asyncio.wrap_future(fut)

    def _post(self, fn: Callable[..., Any], *args: Any) -> None:
        """From a pjsua2 thread: run fn(*args) on the event loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closed meanwhile
            loop.call_soon_threadsafe(fn, *args)

    # ------------------------------------------------------------------ worker thread
    def _worker(self, started: concurrent.futures.Future[int]) -> None:
        try:
            port = self._lib_start()
        except Exception as exc:
            info = exc.info() if isinstance(exc, self._pj.Error) else str(exc)
            log.error("pjsua2: library start on %s:%d failed: %s", self.host, self.port, info)
            with contextlib.suppress(Exception):
                self._lib_destroy()
            started.set_exception(OSError(f"pjsua2 could not start on udp {self.host}:{self.port}: {info}"))
            return
        started.set_result(port)
        try:
            while not self._quit.is_set():
                self._ep.libHandleEvents(_POLL_MS)
                self._run_commands()
        except Exception:
            log.exception("pjsua2: worker loop failed")
        finally:
            self._run_commands()
            self._shutdown_calls()
            self._lib_destroy()

    def _run_commands(self) -> None:
        while True:
            try:
                fn, fut = self._cmds.get_nowait()
            except queue.Empty:
                return
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

    def _lib_start(self) -> int:
        pj = self._pj
        ep = pj.Endpoint()
        self._ep = ep
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0  # we poll in this thread: all SIP callbacks run here
        cfg.uaConfig.mainThreadOnly = False
        # pjsua itself answers 486 Busy Here over maxCalls, before it opens any media socket. Rejecting in
        # onIncomingCall instead would open (and close) RTP/RTCP sockets per INVITE, and an INVITE flood then
        # exhausts pjlib's ioqueue and aborts the process (measured; see docs/PJSUA2.md).
        cfg.uaConfig.maxCalls = self.max_calls
        cfg.uaConfig.userAgent = self.user_agent
        cfg.logConfig.level = self.log_level
        cfg.logConfig.consoleLevel = self.log_level
        cfg.medConfig.sndAutoCloseTime = -1
        cfg.medConfig.clockRate = 8000
        cfg.medConfig.sndClockRate = 8000
        cfg.medConfig.audioFramePtime = 20
        cfg.medConfig.channelCount = 1
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0
        ep.libInit(cfg)
        tcfg = pj.TransportConfig()
        tcfg.port = self.port
        tcfg.boundAddress = self.host
        tcfg.publicAddress = self.advertised_host
        tid = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        ep.libStart()
        ep.audDevManager().setNullDev()
        for c in ep.codecEnum2():
            cid = str(c.codecId)
            prio = 255 if cid.startswith("PCMU/") else 254 if cid.startswith("PCMA/") else 0
            ep.codecSetPriority(cid, prio)
        local = str(ep.transportGetInfo(tid).localName)
        port = int(local.rsplit(":", 1)[1])
        self.port = port
        self._default_account(port)
        fmt = pj.MediaFormatAudio()
        fmt.type = pj.PJMEDIA_TYPE_AUDIO
        fmt.clockRate = 8000
        fmt.channelCount = 1
        fmt.bitsPerSample = 16
        fmt.frameTimeUsec = 20000
        self._silence_vec = pj.ByteVector(SILENCE)
        for i in range(self.max_calls):
            mp = _make_port_class(pj)(self)
            mp.createPort(f"hotline{i}", fmt)
            self._ports.append(mp)
        self._free_ports = list(self._ports)
        return port

    def _default_account(self, port: int) -> Any:
        return self._account("hotline", port)

    def _account(self, user: str, port: int | None = None) -> Any:
        acc = self._accounts.get(user)
        if acc is not None:
            return acc
        pj = self._pj
        if len(self._accounts) >= 6:  # pjsua has 8 account slots
            log.warning("pjsua2: too many From users; using %r", next(iter(self._accounts)))
            return next(iter(self._accounts.values()))
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{user}@{self.advertised_host}:{port or self.port}"
        acfg.mediaConfig.transportConfig.boundAddress = self.host
        acfg.mediaConfig.transportConfig.publicAddress = self.advertised_host
        lo, hi = self.rtp_ports
        acfg.mediaConfig.transportConfig.port = lo
        acfg.mediaConfig.transportConfig.portRange = max(0, hi - lo)
        acfg.natConfig.iceEnabled = False
        acc = _make_account_class(pj)(self)
        acc.create(acfg, not self._accounts)
        self._accounts[user] = acc
        return acc

    def _shutdown_calls(self) -> None:
        """Worker: hang up what is left and poll until pjsua reports every call disconnected (max 3 s)."""
        pj = self._pj
        if self._ep is None:
            return
        for call in list(self._calls.values()):
            call.local_hangup = True
            with contextlib.suppress(Exception):
                call.hangup(pj.CallOpParam())
        end = time.monotonic() + 3.0
        while self._calls and time.monotonic() < end:
            with contextlib.suppress(Exception):
                self._ep.libHandleEvents(_POLL_MS)
        if self._calls:
            log.warning("pjsua2: %d calls still not disconnected at shutdown", len(self._calls))
        self._calls.clear()  # Call objects are deleted before libDestroy

    def _lib_destroy(self) -> None:
        ep = self._ep
        if ep is None:
            return
        # Media ports are destroyed only now, while the library (and its conference bridge) still exists;
        # explicitly, because a stray Python reference would otherwise run the C++ destructor after
        # libDestroy (an assertion in pjmedia_conf_remove_port aborts the process).
        for mp in self._ports:
            mp.leg = None
            try:
                mp.__swig_destroy__(mp)
                mp.thisown = False
            except Exception:
                log.exception("pjsua2: could not destroy a media port")
        self._ports.clear()
        self._free_ports.clear()
        for acc in self._accounts.values():
            with contextlib.suppress(Exception):
                acc.shutdown()
        self._accounts.clear()
        self._silence_vec = None
        try:
            ep.libDestroy()
        except Exception:
            log.exception("pjsua2: libDestroy failed")
        self._ep = None
        del ep

    # ------------------------------------------------------------------ worker: pjsua2 callbacks
    def _on_incoming(self, acc: Any, call_index: int) -> None:
        pj = self._pj
        call = _make_call_class(pj)(acc, self, call_index)
        self._calls[call_index] = call
        ci = call.getInfo()
        call_id = str(ci.callIdString)
        active = sum(1 for c in self._calls.values() if c.leg is not None)
        op = pj.CallOpParam()
        if self.on_call is None:
            log.warning("call %s: no on_call handler; answering 480", call_id)
            op.statusCode = pj.PJSIP_SC_TEMPORARILY_UNAVAILABLE
            call.answer(op)
            return
        if active >= self.max_calls or not self._free_ports:
            log.warning("call %s: at max_calls (%d); answering 486", call_id, self.max_calls)
            self.stats["busy"] += 1
            op.statusCode = pj.PJSIP_SC_BUSY_HERE
            call.answer(op)
            return
        leg = Pjsua2Leg(self, call_id=call_id, caller=_user_of(str(ci.remoteUri)), called=_user_of(str(ci.localUri)),
                        is_uas=True)
        leg._pj_index = call_index
        call.leg = leg
        self._post(self._legs.__setitem__, call_id, leg)
        op.statusCode = 200
        call.answer(op)
        log.info("call %s: incoming from %s to %s, answering", call_id, leg.caller, leg.called)

    def _on_call_state(self, call: Any) -> None:
        pj = self._pj
        ci = call.getInfo()
        leg: Pjsua2Leg | None = call.leg
        state = ci.state
        if state == pj.PJSIP_INV_STATE_CONFIRMED:
            if call.local_hangup:  # answered after we gave up (e.g. 200 OK crossed our CANCEL): end it
                with contextlib.suppress(pj.Error):
                    call.hangup(pj.CallOpParam())
            elif leg is not None and not call.confirmed:
                call.confirmed = True
                if leg.is_uas:
                    self.stats["calls_in"] += 1
                    self._post(self._start_call_task, leg)
                else:
                    self.stats["calls_out"] += 1
                    if call.dial_future is not None:
                        self._post(_resolve, call.dial_future, leg, None)
        elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
            call.disconnected = True
            idx = call.index
            status = int(ci.lastStatusCode)
            reason = str(ci.lastReason)
            self._release_port(call)
            if leg is not None:
                if not call.confirmed and call.dial_future is not None:
                    self._post(_resolve, call.dial_future, None, CallFailed(status, reason))
                    self._post(leg._end, "dial_failed")
                else:
                    self._post(leg._end, "remote_bye" if not call.local_hangup else "local_hangup")
                self._post(self._legs.pop, leg.call_id, None)
            log.info("call %s: disconnected (%d %s)", str(ci.callIdString), status, reason)
            # Drop our reference: pjsua2 wants the Call deleted in (right after) its DISCONNECTED callback,
            # before the slot is reused; the proxy dies when this callback returns.
            if self._calls.get(idx) is call:
                del self._calls[idx]

    def _on_media_state(self, call: Any) -> None:
        pj = self._pj
        leg: Pjsua2Leg | None = call.leg
        if leg is None:
            return
        ci = call.getInfo()
        for mi in ci.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            if mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                am = call.getAudioMedia(mi.index)
                if call.port is None:
                    if not self._free_ports:
                        log.error("call %s: no free media port", leg.call_id)
                        return
                    mp = self._free_ports.pop()
                    mp.leg = leg
                    call.port = mp
                mp = call.port
                mp.startTransmit(am)
                am.startTransmit(mp)
                with contextlib.suppress(Exception):
                    leg.codec = str(call.getStreamInfo(mi.index).codecName).upper()
                log.info("call %s: media active, %s", leg.call_id, leg.codec)
            return

    def _release_port(self, call: Any) -> None:
        mp = call.port
        if mp is None:
            return
        call.port = None
        mp.leg = None
        self._free_ports.append(mp)

    def _on_dtmf(self, call: Any, digit: str, method: int) -> None:
        leg: Pjsua2Leg | None = call.leg
        if leg is None:
            return
        how: Literal["rfc4733", "info"] = "info" if method == self._pj.PJSUA_DTMF_METHOD_SIP_INFO else "rfc4733"
        for d in digit.upper():
            self._post(leg._push, DtmfDigit(d, how))

    # ------------------------------------------------------------------ media clock thread
    def _frame_requested(self, mp: Any, frame: Any) -> None:
        pj = self._pj
        leg: Pjsua2Leg | None = mp.leg
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
        frame.size = FRAME_BYTES
        if leg is None or leg.ended.is_set():
            frame.buf = self._silence_vec
            return
        pcm, drained = leg._next_out()
        frame.buf = self._silence_vec if pcm is None else pj.ByteVector(pcm)
        if leg._taps or drained or pcm is not None:
            self._post(leg._sent, SILENCE if pcm is None else pcm, drained)
        else:
            leg.frames_out += 1

    def _frame_received(self, mp: Any, frame: Any) -> None:
        leg: Pjsua2Leg | None = mp.leg
        if leg is None or frame.type != self._pj.PJMEDIA_FRAME_TYPE_AUDIO or frame.size <= 0:
            return
        pcm = bytes(frame.buf)
        if len(pcm) != FRAME_BYTES:
            pcm = (pcm + SILENCE)[:FRAME_BYTES]
        self._post(leg._push, AudioFrame(pcm))

    # ------------------------------------------------------------------ asyncio side
    def _start_call_task(self, leg: Pjsua2Leg) -> None:
        self._legs[leg.call_id] = leg
        if self.on_call is None:
            log.warning("call %s: answered but no on_call handler; hanging up", leg.call_id)
            self._spawn(leg.hangup(), f"hangup-{leg.call_id}")
            return
        self._spawn(self._run_call(leg), f"call-{leg.call_id}")

    async def _run_call(self, leg: Pjsua2Leg) -> None:
        assert self.on_call is not None
        await run_call_handler(self.on_call, leg)

    async def _hangup(self, leg: Pjsua2Leg) -> None:
        pj = self._pj
        idx = leg._pj_index

        def do() -> None:
            call = self._calls.get(idx)
            if call is None or call.leg is not leg:
                return
            call.local_hangup = True
            op = pj.CallOpParam()
            if not call.confirmed and leg.is_uas:
                op.statusCode = pj.PJSIP_SC_DECLINE
            try:
                call.hangup(op)
            except pj.Error as exc:
                log.info("call %s: hangup: %s", leg.call_id, exc.info())
            log.info("call %s: hung up locally", leg.call_id)

        try:
            await self._submit(do)
        except RuntimeError:
            pass
        self._legs.pop(leg.call_id, None)

    def _send_dtmf(self, leg: Pjsua2Leg, digits: str) -> None:
        pj = self._pj
        idx = leg._pj_index

        def do() -> None:
            call = self._calls.get(idx)
            if call is None or call.leg is not leg:
                return
            prm = pj.CallSendDtmfParam()
            prm.digits = digits
            prm.method = pj.PJSUA_DTMF_METHOD_RFC2833
            try:
                call.sendDtmf(prm)
                log.info("call %s: sending %d DTMF keys (rfc4733)", leg.call_id, len(digits))
            except pj.Error:
                prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
                call.sendDtmf(prm)
                log.info("call %s: sending %d DTMF keys (SIP INFO)", leg.call_id, len(digits))

        def done(f: asyncio.Future[None]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.warning("call %s: DTMF send failed: %s", leg.call_id, f.exception())

        self._submit(do).add_done_callback(done)

    async def dial(self, uri: str, *, from_user: str = "hotline", timeout: float = 30.0) -> Pjsua2Leg:
        """Place a call (UAC). Returns the answered leg or raises CallFailed."""
        if self._thread is None:
            raise CallFailed(503, "endpoint not started")
        if not uri.lower().startswith(("sip:", "sips:")):
            uri = "sip:" + uri
        if not _user_of(uri) and "@" not in uri and ":" not in uri[4:]:
            raise CallFailed(400, f"bad URI: {uri}")
        loop = asyncio.get_running_loop()
        result: asyncio.Future[Pjsua2Leg] = loop.create_future()
        pj = self._pj

        def do() -> Pjsua2Leg:
            active = sum(1 for c in self._calls.values() if c.leg is not None)
            if active >= self.max_calls or not self._free_ports:
                raise CallFailed(503, "endpoint at max_calls")
            acc = self._account(from_user)
            call = _make_call_class(pj)(acc, self)
            leg = Pjsua2Leg(self, call_id="", caller=from_user, called=_user_of(uri), is_uas=False)
            call.leg = leg
            call.dial_future = result
            try:
                call.makeCall(uri, pj.CallOpParam(True))
            except pj.Error as exc:
                call.leg = None
                raise CallFailed(400, f"makeCall failed: {exc.info()}") from None
            ci = call.getInfo()
            leg.call_id = str(ci.callIdString)
            leg._pj_index = int(ci.id)
            if not call.disconnected:  # (a synchronous failure inside makeCall already reported it)
                self._calls[leg._pj_index] = call
            log.info("call %s: dialling %s from %s", leg.call_id, uri, from_user)
            return leg

        result.add_done_callback(_consume)
        leg = await self._submit(do)
        try:
            await asyncio.wait_for(asyncio.shield(result), timeout)
        except TimeoutError:
            log.info("call %s: no answer within %.1f s; giving up", leg.call_id, timeout)
            await leg.hangup()  # CANCEL (pjsua sends it once a provisional response has arrived)
            leg.end_reason = "dial_failed"
            raise CallFailed(408, f"no answer within {timeout:g} s") from None
        except BaseException:
            if not leg.ended.is_set():
                await leg.hangup()
                leg.end_reason = "dial_failed"
            raise
        if leg.ended.is_set():  # BYE right after the answer
            return leg
        self._legs[leg.call_id] = leg
        log.info("call %s: answered by %s, %s", leg.call_id, uri, leg.codec)
        return leg


_instance_lock = threading.Lock()
_running: dict[str, Pjsua2Endpoint] = {}  # the one started endpoint of this process


def _forget_instance(ep: Pjsua2Endpoint) -> None:
    with _instance_lock:
        if _running.get("endpoint") is ep:
            del _running["endpoint"]


def _stop_at_exit() -> None:
    """Safety net for a forgotten stop(): destroy the library before the interpreter goes away, so pjsua's
    own threads do not call into a finalising interpreter (crash or hang at exit)."""
    ep = _running.get("endpoint")
    thread = ep._thread if ep is not None else None
    if ep is None or thread is None or not thread.is_alive():
        return
    log.warning("pjsua2: endpoint on port %d was not stopped; destroying the library at exit", ep.port)
    ep._quit.set()
    thread.join(10.0)


atexit.register(_stop_at_exit)


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved: a late failure after our own timeout is not an "unretrieved" error


def _resolve(fut: asyncio.Future[Pjsua2Leg], leg: Pjsua2Leg | None, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        assert leg is not None
        fut.set_result(leg)


# ---------------------------------------------------------------------- pjsua2 subclasses (built lazily)
_classes: dict[str, type] = {}


def _make_port_class(pj: ModuleType) -> type:
    cls = _classes.get("port")
    if cls is None:

        class _MediaPort(pj.AudioMediaPort):  # type: ignore[name-defined]
            def __init__(self, owner: Pjsua2Endpoint) -> None:
                super().__init__()
                self.owner = owner
                self.leg: Pjsua2Leg | None = None

            def onFrameRequested(self, frame: Any) -> None:  # pjsua2 API
                try:
                    self.owner._frame_requested(self, frame)
                except Exception:
                    log.exception("pjsua2: onFrameRequested failed")

            def onFrameReceived(self, frame: Any) -> None:
                try:
                    self.owner._frame_received(self, frame)
                except Exception:
                    log.exception("pjsua2: onFrameReceived failed")

        cls = _classes["port"] = _MediaPort
    return cls


def _make_call_class(pj: ModuleType) -> type:
    cls = _classes.get("call")
    if cls is None:

        class _Call(pj.Call):  # type: ignore[name-defined]
            def __init__(self, acc: Any, owner: Pjsua2Endpoint, call_index: int = pj.PJSUA_INVALID_ID) -> None:
                super().__init__(acc, call_index)
                self.owner = owner
                self.index = call_index
                self.leg: Pjsua2Leg | None = None
                self.port: Any = None
                self.confirmed = False
                self.disconnected = False
                self.local_hangup = False
                self.dial_future: asyncio.Future[Pjsua2Leg] | None = None

            def onCallState(self, prm: Any) -> None:  # pjsua2 API
                try:
                    if self.index < 0:
                        self.index = int(self.getId())
                    self.owner._on_call_state(self)
                except Exception:
                    log.exception("pjsua2: onCallState failed")

            def onCallMediaState(self, prm: Any) -> None:
                try:
                    self.owner._on_media_state(self)
                except Exception:
                    log.exception("pjsua2: onCallMediaState failed")

            def onDtmfDigit(self, prm: Any) -> None:
                try:
                    self.owner._on_dtmf(self, str(prm.digit), int(prm.method))
                except Exception:
                    log.exception("pjsua2: onDtmfDigit failed")

        cls = _classes["call"] = _Call
    return cls


def _make_account_class(pj: ModuleType) -> type:
    cls = _classes.get("account")
    if cls is None:

        class _Account(pj.Account):  # type: ignore[name-defined]
            def __init__(self, owner: Pjsua2Endpoint) -> None:
                super().__init__()
                self.owner = owner

            def onIncomingCall(self, prm: Any) -> None:  # pjsua2 API
                try:
                    self.owner._on_incoming(self, int(prm.callId))
                except Exception:
                    log.exception("pjsua2: onIncomingCall failed")

        cls = _classes["account"] = _Account
    return cls
