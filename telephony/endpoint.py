"""SipEndpoint: the SIP user agent (UAS and UAC) on one asyncio UDP socket, plus the media ticker."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from .dtmf import parse_info_body
from .guard import AllowList, LoopBusy, RateLimiter, socket_rx_queue
from .leg import CallLeg, TransferRequest, _RtpProtocol
from .registrar import ALGORITHMS, Registrar, digest_response, parse_digest
from .replaces import Replaces
from .sdp import (
    DEFAULT_TE_PT,
    MediaDescription,
    NoCommonCodec,
    SdpError,
    answer_direction,
    build_sdp,
    limit_direction,
    negotiate,
    parse_sdp,
)
from .sip_message import (
    ParseError,
    SipMessage,
    SipRequest,
    SipResponse,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
)
from .transaction import T1, T2, ClientTransaction, Retransmitter, TransactionTimeout, new_branch

__all__ = ["CallFailed", "SipEndpoint"]

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY"
ALLOW_WITH_REGISTER = ALLOW + ", REGISTER"
KNOWN_UNSUPPORTED = frozenset({"REGISTER", "SUBSCRIBE", "PUBLISH", "MESSAGE", "UPDATE", "PRACK"})
TRANSFER_BYE_WAIT = 4.0  # s: after a successful transfer we wait this long for the transferor's BYE, then BYE
SIP_RCVBUF = 2 * 1024 * 1024  # bytes; Linux caps it at net.core.rmem_max (4 MB here) and doubles it
# SIP datagrams read per readiness of the socket: asyncio reads one per loop iteration, which with a busy loop
# (a tick, RTP sockets, sessions) capped the SIP read rate below what 100-200 calls/s send; the kernel queue
# then grew past sip.max_rx_queue_kb and new calls got 503 with the loop itself not late (issue #7)
SIP_READ_BATCH = 16
MAX_DATAGRAM = 65536  # read whole: anything over max_message_bytes is dropped by _on_datagram
Addr = tuple[str, int]


class CallFailed(Exception):
    """dial() did not get an answered call: SIP status (408 for our own timeout) and reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass
class _ServerTx:
    addr: Addr
    last: bytes | None = None
    final_status: int = 0
    rtx: Retransmitter | None = None
    task: asyncio.Task[None] | None = None
    leg: CallLeg | None = None
    request: SipRequest | None = None
    extra: dict[str, object] = field(default_factory=dict)


class _SipProtocol(asyncio.DatagramProtocol):
    def __init__(self, ep: SipEndpoint) -> None:
        self.ep = ep

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        ep = self.ep
        ep._on_datagram(data, (addr[0], addr[1]))
        rx = ep._rx_sock
        for _ in range(SIP_READ_BATCH - 1):  # more of what is queued, in this same loop iteration
            if rx is None or ep._transport is None:
                return
            try:
                data, peer = rx.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error reported on the socket: as asyncio would
                self.error_received(exc)
                return
            ep._on_datagram(data, (peer[0], peer[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP socket error: %s", exc)


def _primary_ip() -> str:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, it only picks the outgoing interface
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def _user_of(value: str) -> str:
    try:
        return parse_uri(parse_name_addr(value).uri).user
    except ParseError:
        return ""



class _AnsweredLeg(Protocol):
    call_id: str
    ended: asyncio.Event

    async def hangup(self) -> None: ...


async def run_call_handler(handler: Callable[[Any], Awaitable[None]], leg: _AnsweredLeg) -> None:
    """Runs the application's handler for an answered call (every backend); hangs up when it returns."""
    try:
        await handler(leg)
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("call %s: on_call raised", leg.call_id)
    finally:
        if not leg.ended.is_set():
            await leg.hangup()


class SipEndpoint:
    """A SIP user agent on UDP. See docs/TELEPHONY.md for behaviour and limits."""

    def __init__(self, host: str, port: int, *, max_calls: int = 200, rtp_ports: tuple[int, int] = (20000, 40000),
                 user_agent: str = "hotline", answer_delay: float = 0.0, rtp_timeout: float = 30.0,
                 public_host: str | None = None, max_message_bytes: int = 16384, allow: Iterable[str] = (),
                 invite_rate: float = 250.0, invite_burst: float = 500.0, register_rate: float = 20.0,
                 register_burst: float = 40.0, max_loop_lag: float | None = None,
                 max_loop_busy: float | None = None, max_cps: float | None = None, cps_burst: float = 250.0,
                 max_rx_queue: int | None = None,
                 retry_after: int = 5, registrar: Registrar | None = None,
                 invite_auth: Registrar | None = None) -> None:
        self.host = host
        self.port = port
        self.max_calls = max_calls
        self.rtp_ports = rtp_ports
        self.user_agent = user_agent
        self.answer_delay = answer_delay  # seconds of 180 Ringing before 200 OK (0: answer at once)
        self.rtp_timeout = rtp_timeout
        self.on_call: Callable[[CallLeg], Awaitable[None]] | None = None
        # the address put in Via/Contact/SDP: public_host, else the bound host, else (bound to 0.0.0.0)
        # the address of the interface that routes outwards
        self.advertised_host = public_host or (host if host not in ("0.0.0.0", "::", "") else _primary_ip())
        self._transport: asyncio.DatagramTransport | None = None
        self._rx_sock: socket.socket | None = None  # the SIP socket's fd, dup'd: _SipProtocol reads batches
        self._legs: dict[str, CallLeg] = {}
        self._dialing: dict[str, CallLeg] = {}  # UAC legs whose INVITE is still in progress
        self._unacked: dict[str, CallLeg] = {}  # UAS legs whose 2xx has not been ACKed yet (may have ended)
        self._media: dict[str, CallLeg] = {}
        self._pending = 0
        self._server_tx: dict[tuple[str, str], _ServerTx] = {}
        self._client_tx: dict[tuple[str, str], ClientTransaction] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._next_rtp = secrets.randbelow(max(1, (rtp_ports[1] - rtp_ports[0]) // 2))
        self._now = 0.0
        self._closing = False
        # admission control (docs/SECURITY.md)
        self.max_message_bytes = max_message_bytes  # bigger UDP datagrams are dropped before parsing
        self.allow = AllowList(allow)  # trunks that may place calls (empty: everybody); others get 403
        self.invite_limiter = RateLimiter(invite_rate, invite_burst)
        self.register_limiter = RateLimiter(register_rate, register_burst, reply_budget=0.0)
        self.max_loop_lag = max_loop_lag  # new INVITEs get 503 while the loop lags more (s, smoothed; None: off)
        self.retry_after = retry_after  # seconds, in the Retry-After of our 503s
        self.loop_lag = 0.0  # smoothed lateness of the 20 ms media ticker: how late the event loop runs
        self.loop_lag_max = 0.0  # the worst single lateness seen (reset by whoever reads it)
        self.max_loop_busy = max_loop_busy  # new INVITEs get 503 while the loop is busier (0-1, smoothed; None: off)
        self.loop_busy = 0.0  # share of time the loop is not idle in select(), smoothed over ~1 s
        self._busy_meter: LoopBusy | None = None
        self._busy_mark = (0.0, 0.0)
        # new calls per second over all sources (the worker's measured capacity; None: off): 503 beyond
        self.cps_limiter = RateLimiter(max_cps, cps_burst, reply_budget=1e9) if max_cps else None
        # bytes of SIP waiting in the kernel's socket queue (read twice a second from /proc/net/udp): over
        # max_rx_queue new INVITEs get 503 until it is below half of it (None: off)
        self.max_rx_queue = max_rx_queue
        self.rx_queue = 0
        self._backlogged = False
        self.registrar = registrar
        # trunk accounts: INVITEs from sources not on a non-empty allow-list must answer a 407 digest challenge
        self.invite_auth = invite_auth
        self._draining = False
        self._leg_gone = asyncio.Event()  # set whenever a call leg is forgotten (drain() waits on it)
        self._refused: dict[str, int] = {}  # new calls refused with 503 since the last summary, by reason
        self._replacing: dict[str, CallLeg] = {}  # RFC 3891: Call-ID of a new leg -> the leg it will replace
        self._dial_txs: dict[str, ClientTransaction] = {}  # dial()'s INVITE in progress, by Call-ID
        self._picked_up: dict[str, CallLeg] = {}  # dial()'s Call-ID -> the leg that picked its ringing call up
        self.stats = {"rx_datagrams": 0, "malformed": 0, "calls_in": 0, "calls_out": 0, "busy": 0,
                      "oversized": 0, "overload": 0, "draining": 0, "forbidden": 0, "rate_limited": 0,
                      "flood_dropped": 0, "challenged": 0}

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _SipProtocol(self),
                                                           local_addr=(self.host, self.port))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        sock = transport.get_extra_info("socket")
        if sock is not None:  # room for a burst of INVITEs (200 callers at once is ~460 KB of kernel buffers)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SIP_RCVBUF)
            with contextlib.suppress(OSError):  # the same socket (a dup'd fd, non-blocking) to read in batches
                self._rx_sock = socket.fromfd(sock.fileno(), sock.family, sock.type)
        self._now = loop.time()
        if self.max_loop_busy is not None:
            self._busy_meter = LoopBusy.of(loop)
            if self._busy_meter is None:
                log.warning("this event loop cannot be measured for busyness; sip max_loop_busy is not applied")
            else:
                self._busy_mark = self._busy_meter.mark()
        self._ticker = asyncio.create_task(self._tick_loop(), name=f"sip-ticker-{self.port}")
        log.info("SIP endpoint listening on udp %s:%d", self.host, self.port)

    @property
    def draining(self) -> bool:
        return self._draining

    async def drain(self, timeout: float, abort: asyncio.Event | None = None) -> int:
        """Graceful shutdown, first half: new INVITEs get 503 from now on; waits until every call in
        progress has ended, ``timeout`` seconds pass or ``abort`` is set. Returns the calls still up
        (``stop()`` then ends them with BYE)."""
        self._draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        log.info("SIP endpoint on port %d draining: %d calls in progress, up to %.0f s", self.port,
                 len(self._legs) + self._pending, timeout)
        while (self._legs or self._pending) and loop.time() < deadline and not (abort and abort.is_set()):
            self._leg_gone.clear()
            waits = [asyncio.ensure_future(self._leg_gone.wait())]
            if abort is not None:
                waits.append(asyncio.ensure_future(abort.wait()))
            _done, pending = await asyncio.wait(waits, timeout=min(0.5, max(0.0, deadline - loop.time())),
                                                return_when=asyncio.FIRST_COMPLETED)
            for f in pending:
                f.cancel()
        left = len(self._legs) + self._pending
        log.info("SIP endpoint on port %d drained: %d calls left", self.port, left)
        return left

    async def stop(self) -> None:
        """BYE every call, stop call tasks, close sockets."""
        self._closing = True
        for stx in list(self._server_tx.values()):  # calls still being answered: refuse them properly
            if stx.task is not None and not stx.task.done() and not stx.final_status and stx.request is not None:
                stx.task.cancel()
                self._reply(stx, stx.request, 503, "Service Unavailable",
                            to_tag=stx.leg.local_tag if stx.leg else secrets.token_hex(6))
        legs = list(self._legs.values())
        if legs:
            await asyncio.gather(*(leg.hangup() for leg in legs), return_exceptions=True)
        calls = [t for t in self._tasks if t.get_name().startswith("call-") and not t.done()]
        if calls:  # the calls' handlers see their legs end: let them finish (close records) before cancelling
            await asyncio.wait(calls, timeout=3.0)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for tx in list(self._client_tx.values()):
            tx.stop()
        for stx in self._server_tx.values():
            if stx.rtx:
                stx.rtx.stop()
        for leg in list(self._unacked.values()):
            if leg.ok_rtx is not None:
                leg.ok_rtx.stop()
        self._unacked.clear()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._rx_sock is not None:
            self._rx_sock.close()
            self._rx_sock = None
        log.info("SIP endpoint on port %d stopped", self.port)

    @property
    def calls(self) -> list[CallLeg]:
        return list(self._legs.values())

    def _spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ media ticker
    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        nxt = loop.time()
        n = 0
        while True:
            nxt += 0.02
            delay = nxt - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                # loop lag: how much later than asked the loop let us run (only after a real wait; the
                # catch-up ticks that follow a stall are not new samples)
                late = max(0.0, loop.time() - nxt)
                self.loop_lag += (late - self.loop_lag) * 0.25
                if late > self.loop_lag_max:
                    self.loop_lag_max = late
            elif delay < -0.2:
                log.warning("media ticker on port %d fell %.0f ms behind; resynchronising", self.port, -delay * 1000)
                nxt = loop.time()
                self.loop_lag += (-delay - self.loop_lag) * 0.25
                self.loop_lag_max = max(self.loop_lag_max, -delay)
            self._now = loop.time()
            for leg in tuple(self._media.values()):
                if not leg.acked.is_set():
                    continue  # no media before the ACK of our 2xx: a caller who gave up costs no RTP
                try:
                    leg._tick()
                except Exception:
                    log.exception("call %s: media tick failed", leg.call_id)
            n += 1
            if n % 25 == 0 and self.max_rx_queue is not None:
                self._check_backlog()
            if n % 25 == 0 and self._busy_meter is not None:  # every 0.5 s, smoothed over ~1 s
                busy, self._busy_mark = self._busy_meter.busy_since(self._busy_mark)
                self.loop_busy += (busy - self.loop_busy) * 0.5
            if n % 50 == 0 and self._refused:
                log.warning("refused %d new calls in the last second with 503 (%s)", sum(self._refused.values()),
                            ", ".join(f"{k} {v}" for k, v in sorted(self._refused.items())))
                self._refused = {}
            if n % 50 == 0 and self.rtp_timeout > 0:
                for leg in tuple(self._media.values()):
                    if not leg.on_hold and not leg.local_hold and self._now - leg.last_rx > self.rtp_timeout:
                        log.warning("call %s: no RTP for %.0f s", leg.call_id, self.rtp_timeout)
                        leg._end("rtp_timeout")
                        self._spawn(self._send_bye(leg), f"bye-{leg.call_id}")

    async def _open_rtp(self, leg: CallLeg) -> None:
        loop = asyncio.get_running_loop()
        lo, hi = self.rtp_ports
        span = max(1, (hi - lo) // 2)
        last: OSError | None = None
        for _ in range(min(span, 500)):
            port = lo + 2 * (self._next_rtp % span)
            self._next_rtp += 1
            try:
                transport, _ = await loop.create_datagram_endpoint(lambda: _RtpProtocol(leg),
                                                                   local_addr=(self.host, port))
            except OSError as exc:
                last = exc
                continue
            leg._transport = transport
            leg.rtp_port = port
            leg.last_rx = loop.time()
            return
        raise OSError(f"no free RTP port in {self.rtp_ports}: {last}")

    def _forget(self, leg: CallLeg) -> None:
        self._media.pop(leg.call_id, None)
        if self._legs.get(leg.call_id) is leg:
            del self._legs[leg.call_id]
        self._leg_gone.set()

    # ------------------------------------------------------------------ datagrams
    def _send(self, data: bytes, addr: Addr) -> None:
        if self._transport is not None:
            self._transport.sendto(data, addr)

    def _on_datagram(self, data: bytes, addr: Addr) -> None:
        self.stats["rx_datagrams"] += 1
        if len(data) > self.max_message_bytes:
            # before parsing: a 64 KB datagram of short headers costs the loop ~10-20 ms to parse
            self.stats["oversized"] += 1
            log.debug("dropped a %d-byte datagram from %s:%d (max_message_bytes=%d)", len(data), addr[0], addr[1],
                      self.max_message_bytes)
            return
        if not data.strip(b"\r\n\x00 "):
            return  # keep-alive
        try:
            msg = parse_message(data)
        except ParseError as exc:
            self.stats["malformed"] += 1
            part = exc.partial
            cid = part.call_id if part is not None else "-"
            log.warning("call %s: malformed SIP from %s:%d: %s", cid or "-", addr[0], addr[1], exc)
            if isinstance(part, SipRequest) and part.method != "ACK" and part.get("Via"):
                try:
                    self._send(self._response(part, 400, f"Bad Request ({str(exc)[:80]})").to_bytes(), addr)
                except Exception:
                    log.debug("call %s: could not form a 400", cid, exc_info=True)
            return
        except Exception:
            self.stats["malformed"] += 1
            log.exception("unexpected error parsing a datagram from %s:%d", *addr)
            return
        try:
            if isinstance(msg, SipRequest):
                self._on_request(msg, addr)
            else:
                self._on_response(msg, addr)
        except ParseError as exc:
            log.warning("call %s: bad %s from %s:%d: %s", msg.call_id, _kind(msg), addr[0], addr[1], exc)
            if isinstance(msg, SipRequest) and msg.method != "ACK":
                self._send(self._response(msg, 400, "Bad Request").to_bytes(), addr)
        except Exception:
            log.exception("call %s: error handling %s from %s:%d", msg.call_id, _kind(msg), addr[0], addr[1])
            if isinstance(msg, SipRequest) and msg.method != "ACK":
                with contextlib.suppress(Exception):
                    self._send(self._response(msg, 500, "Server Internal Error").to_bytes(), addr)

    # ------------------------------------------------------------------ responses we send
    def _response(self, req: SipMessage, status: int, reason: str, *, to_tag: str | None = None,
                  body: bytes = b"", content_type: str | None = None, contact: bool = False,
                  extra: tuple[tuple[str, str], ...] = ()) -> SipResponse:
        resp = SipResponse(status=status, reason=reason)
        for v in req.get_all("Via"):
            resp.add("Via", v)
        resp.add("From", req.get("From") or "")
        to = req.get("To") or ""
        if to_tag and ";tag=" not in to.lower().replace(" ", ""):
            to = f"{to};tag={to_tag}"
        resp.add("To", to)
        resp.add("Call-ID", req.call_id)
        resp.add("CSeq", req.get("CSeq") or "")
        if isinstance(req, SipRequest) and req.method == "INVITE" and 100 < status < 300:
            for rr in req.get_all("Record-Route"):
                resp.add("Record-Route", rr)
        if contact:
            resp.add("Contact", f"<sip:{self.advertised_host}:{self.port}>")
        resp.add("Server", self.user_agent)
        for k, v in extra:
            resp.add(k, v)
        if content_type:
            resp.add("Content-Type", content_type)
        resp.body = body
        return resp

    def _reply(self, tx: _ServerTx, req: SipRequest, status: int, reason: str, **kw: object) -> SipResponse:
        resp = self._response(req, status, reason, **kw)  # type: ignore[arg-type]
        data = resp.to_bytes()
        tx.last = data
        if status >= 200:
            tx.final_status = status
        if req.method == "INVITE" and status >= 300:
            # timer G: retransmit the non-2xx final until the ACK comes
            tx.rtx = Retransmitter(self._send, data, tx.addr, on_timeout=lambda: None)
        else:
            self._send(data, tx.addr)
        return resp

    # ------------------------------------------------------------------ requests
    def _tx_key(self, req: SipRequest) -> tuple[str, str]:
        via = parse_via(req.get_all("Via")[0])
        method = "INVITE" if req.method == "ACK" else req.method
        branch = via.branch
        if not branch.startswith("z9hG4bK"):
            branch = f"{req.call_id}|{req.cseq[0]}|{via.host}:{via.port}|{branch}"
        return branch, method

    def _on_request(self, req: SipRequest, addr: Addr) -> None:
        key = self._tx_key(req)
        if req.method == "ACK":
            stx = self._server_tx.get(key)
            if stx is not None and stx.final_status >= 300:
                if stx.rtx is not None:
                    stx.rtx.stop()
                return
            leg = self._legs.get(req.call_id) or self._unacked.get(req.call_id)
            if leg is not None:
                self._on_ack(leg, req)
            return
        old = self._server_tx.get(key)
        if old is not None:  # retransmission: repeat the last response
            if old.last is not None:
                self._send(old.last, addr)
            return
        if req.method in ("INVITE", "REGISTER") and not self._admit(req, addr):
            return
        tx = _ServerTx(addr, request=req)
        self._server_tx[key] = tx
        asyncio.get_running_loop().call_later(64 * T1 + 5, self._server_tx.pop, key, None)
        # the headers every request needs must be well formed
        parse_name_addr(req.get("From") or "")
        parse_name_addr(req.get("To") or "")
        if req.method not in ("INVITE", "CANCEL", "BYE") and req.get("Require"):
            self._reply(tx, req, 420, "Bad Extension", extra=(("Unsupported", req.get("Require") or ""),))
            return
        handler = {
            "INVITE": self._on_invite, "BYE": self._on_bye, "CANCEL": self._on_cancel,
            "OPTIONS": self._on_options, "INFO": self._on_info, "REFER": self._on_refer,
            "NOTIFY": self._on_notify,
        }.get(req.method)
        if req.method == "REGISTER" and self.registrar is not None:
            handler = self._on_register
        allow = ALLOW_WITH_REGISTER if self.registrar is not None else ALLOW
        if handler is not None:
            handler(tx, req, key)
        elif req.method in KNOWN_UNSUPPORTED:
            self._reply(tx, req, 405, "Method Not Allowed", extra=(("Allow", allow),))
        else:
            self._reply(tx, req, 501, "Not Implemented", extra=(("Allow", allow),))

    def _admit(self, req: SipRequest, addr: Addr) -> bool:
        """Allow-list and per-source rate limits for a new INVITE or REGISTER transaction (docs/SECURITY.md).
        False: already answered (403/503) or dropped."""
        if req.method == "INVITE":
            if parse_name_addr(req.get("To") or "").tag:
                return True  # re-INVITE inside a dialog we hold: not a new call
            if self.invite_auth is not None:
                pass  # sources off the allow-list must authenticate instead (below, after the rate limit)
            elif not self.allow.allows(addr[0]):
                self.stats["forbidden"] += 1
                log.warning("call %s: INVITE from %s:%d, not in sip.allow; 403", req.call_id, addr[0], addr[1])
                self._send(self._response(req, 403, "Forbidden").to_bytes(), addr)
                return False
            limiter = self.invite_limiter
        else:
            limiter = self.register_limiter
        verdict = limiter.check(addr[0])
        if verdict == "ok":
            if req.method == "INVITE" and (reason := self._refusal()):
                self._refuse(req, addr, reason)
                return False
            if req.method == "INVITE" and self.invite_auth is not None and not (self.allow and
                                                                               self.allow.allows(addr[0])):
                return self._invite_digest(self.invite_auth, req, addr)
            return True
        if verdict == "reject":
            self.stats["rate_limited"] += 1
            log.warning("call %s: %s from %s:%d over its rate limit; 503", req.call_id, req.method, addr[0], addr[1])
            self._send(self._response(req, 503, "Service Unavailable", to_tag=secrets.token_hex(6),
                                      extra=(("Retry-After", str(limiter.retry_after())),)).to_bytes(), addr)
        else:
            self.stats["flood_dropped"] += 1
            if self.stats["flood_dropped"] % 1000 == 1:
                log.warning("%s flood from %s:%d: dropping requests over the rate limit (%d so far)", req.method,
                            addr[0], addr[1], self.stats["flood_dropped"])
        return False

    def _invite_digest(self, auth: Registrar, req: SipRequest, addr: Addr) -> bool:
        """A new INVITE from a source off the allow-list: digest credentials of a trunk account, or a 407."""
        result = auth.authenticate(req, addr)
        if result.status == 200:
            log.info("call %s: INVITE from %s:%d authenticated as trunk account %s", req.call_id, addr[0], addr[1],
                     result.user)
            return True
        self.stats["challenged"] += 1
        log.info("call %s: INVITE from %s:%d answered %d (digest)", req.call_id, addr[0], addr[1], result.status)
        self._send(self._response(req, result.status, result.reason, to_tag=secrets.token_hex(6),
                                  extra=tuple(result.headers)).to_bytes(), addr)
        return False

    def _check_backlog(self) -> None:
        """Twice a second: SIP waiting in the kernel queue (we read slower than INVITEs arrive)."""
        assert self.max_rx_queue is not None
        sock = self._transport.get_extra_info("socket") if self._transport is not None else None
        queued, self.rx_queue = self.rx_queue, socket_rx_queue(sock, self.port) or 0
        # Over the limit at two readings in a row (0.5 s apart) and not draining: a burst (200 callers at once)
        # is served as it drains; only a backlog that persists or grows is overload.
        if self.rx_queue > self.max_rx_queue and self.rx_queue >= queued > self.max_rx_queue:
            if not self._backlogged:
                log.warning("SIP socket on port %d has %d bytes waiting: new calls get 503 until it drains",
                            self.port, self.rx_queue)
            self._backlogged = True
        elif self.rx_queue < self.max_rx_queue // 2:
            self._backlogged = False

    def _refusal(self) -> str:
        """Why a new call cannot be taken now ("" if it can): draining/stopping, max_calls, loop lag."""
        if self._closing or self._draining:
            return "draining"
        if len(self._legs) + self._pending >= self.max_calls:
            return "busy"
        if self.max_loop_lag is not None and self.loop_lag > self.max_loop_lag:
            return "overload"
        if self.max_loop_busy is not None and self.loop_busy > self.max_loop_busy:
            return "overload"
        if self._backlogged:
            return "overload"
        if self.cps_limiter is not None and self.cps_limiter.check("*") != "ok":
            return "overload"
        return ""

    def _refuse(self, req: SipRequest, addr: Addr, reason: str) -> None:
        """A stateless 503 + Retry-After (no transaction, no retransmission timer: a refusal under overload
        must cost little; a lost 503 is answered again when the INVITE is retransmitted). 503 and not 486:
        docs/SECURITY.md. Logged once, then summed up once a second by the ticker."""
        self.stats[reason] = self.stats.get(reason, 0) + 1
        if not self._refused:
            detail = {"busy": f"over max_calls={self.max_calls}", "draining": "draining",
                      "overload": f"overload: event loop {self.loop_lag * 1000:.0f} ms late, {self.loop_busy:.0%} "
                                  f"busy, {self.rx_queue} bytes queued in the socket, or over max_cps="
                                  f"{self.cps_limiter.rate if self.cps_limiter else '-'}"
                      }[reason]
            log.warning("call %s: %s; 503 (further refusals are summed up once a second)", req.call_id, detail)
        self._refused[reason] = self._refused.get(reason, 0) + 1
        self._send(self._response(req, 503, "Service Unavailable", to_tag=secrets.token_hex(6),
                                  extra=(("Retry-After", str(self.retry_after)),)).to_bytes(), addr)

    def _on_register(self, tx: _ServerTx, req: SipRequest, key: tuple[str, str]) -> None:
        assert self.registrar is not None
        result = self.registrar.handle(req, tx.addr)
        self._reply(tx, req, result.status, result.reason, to_tag=secrets.token_hex(6),
                    extra=tuple(result.headers))

    def _on_options(self, tx: _ServerTx, req: SipRequest, key: tuple[str, str]) -> None:
        self._reply(tx, req, 200, "OK", to_tag=secrets.token_hex(6), contact=True,
                    extra=(("Allow", ALLOW), ("Accept", "application/sdp")))

    def _on_bye(self, tx: _ServerTx, req: SipRequest, key: tuple[str, str]) -> None:
        leg = self._legs.get(req.call_id)
        early = self._dialing.get(req.call_id)
        if leg is None and early is not None and parse_name_addr(req.get("To") or "").tag == early.local_tag:
            # the callee hung up right after its 200 OK, before dial() finished processing it
            log.info("call %s: BYE right after the 200 OK", req.call_id)
            self._reply(tx, req, 200, "OK")
            early.early_bye = True
            return
        if leg is None or not self._in_dialog(leg, req):
            self._reply(tx, req, 481, "Call/Transaction Does Not Exist")
            return
        log.debug("call %s: BYE from %s:%d", leg.call_id, *tx.addr)
        self._reply(tx, req, 200, "OK")
        leg._end("remote_bye")

    def _in_dialog(self, leg: CallLeg, req: SipRequest) -> bool:
        to_tag = parse_name_addr(req.get("To") or "").tag
        from_tag = parse_name_addr(req.get("From") or "").tag
        if to_tag != leg.local_tag:
            return False
        return not (leg.remote_tag and from_tag and from_tag != leg.remote_tag)

    def _on_info(self, tx: _ServerTx, req: SipRequest, key: tuple[str, str]) -> None:
        leg = self._legs.get(req.call_id)
        if leg is None or not self._in_dialog(leg, req):
            self._reply(tx, req, 481, "Call/Transaction Does Not Exist")
            return
        ctype = req.get("Content-Type") or ""
        digit = parse_info_body(ctype, req.body) if req.body else None
        if digit is None and ctype.split(";")[0].strip().lower() in ("application/dtmf-relay", "application/dtmf"):
            log.warning("call %s: INFO with an unreadable DTMF body %r", leg.call_id, req.body[:60])
            self._reply(tx, req, 400, "Bad DTMF Body")
            return
        self._reply(tx, req, 200, "OK")
        if digit is not None:
            leg._push_dtmf(digit, "info")

    # ------------------------------------------------------------------ transfer (REFER, RFC 3515) and hold
    def _on_refer(self, tx: _ServerTx, req: SipRequest, key: tuple[str, str]) -> None:
        """In-dialog REFER: 202, NOTIFY "100 Trying", the leg's ``on_transfer`` runs, NOTIFY with its result."""
        leg = self._legs.get(req.call_id)
        if leg is None or not self._in_dialog(leg, req):
            self._reply(tx, req, 481, "Call/Transaction Does Not Exist")
            return
        refer_to = req.get_all("Refer-To")
        if len(refer_to) != 1:
            self._reply(tx, req, 400, "Bad Request (one Refer-To needed)", to_tag=leg.local_tag)
            return
        try:
            target = parse_name_addr(refer_to[0]).uri
            parse_uri(target.split("?", 1)[0])
        except ParseError as exc:
            log.warning("call %s: REFER with a bad Refer-To: %s", leg.call_id, exc)
            self._reply(tx, req, 400, "Bad Refer-To", to_tag=leg.local_tag)
            return
        if leg.on_transfer is None or leg.ended.is_set():
            log.info("call %s: REFER declined (no transfer handler on this leg)", leg.call_id)
            self._reply(tx, req, 603, "Decline", to_tag=leg.local_tag)
            return
        self._reply(tx, req, 202, "Accepted", to_tag=leg.local_tag, contact=True)
        leg._refers_in += 1
        event = "refer" if leg._refers_in == 1 else f"refer;id={req.cseq[0]}"
        request = TransferRequest(target=target, referred_by=req.get("Referred-By") or "", leg=leg)
        log.info("call %s: REFER accepted: transfer to %s", leg.call_id, target.split("?", 1)[0])
        self._spawn(self._run_transfer(leg, request, event), f"refer-{leg.call_id}")

    async def _run_transfer(self, leg: CallLeg, request: TransferRequest, event: str) -> None:
        self._send_notify(leg, event, 100, "Trying", final=False)
        assert leg.on_transfer is not None
        try:
            status, reason = 200, "OK"
            result = await leg.on_transfer(request)
            if result is not None:
                status, reason = result
        except CallFailed as exc:
            status, reason = exc.status, exc.reason
        except Exception:
            log.exception("call %s: transfer handler failed", leg.call_id)
            status, reason = 500, "Server Internal Error"
        request.status = status
        log.info("call %s: transfer to %s ended %d %s", leg.call_id, request.target.split("?", 1)[0], status, reason)
        if leg.ended.is_set():
            return
        tx = self._send_notify(leg, event, status, reason, final=True)
        with contextlib.suppress(TimeoutError, TransactionTimeout, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(tx.final()), 4.0)
        if 200 <= status < 300 and not leg.ended.is_set():
            # the transferor normally hangs up now; if it does not, we do
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(leg.ended.wait(), TRANSFER_BYE_WAIT)
            if not leg.ended.is_set():
                await leg.hangup()

    def _send_notify(self, leg: CallLeg, event: str, status: int, reason: str, *, final: bool
                     ) -> ClientTransaction:
        req = leg._make_request("NOTIFY")
        req.add("Contact", f"<sip:{self.advertised_host}:{self.port}>")
        req.add("Event", event)
        req.add("Subscription-State", "terminated;reason=noresource" if final else "active;expires=60")
        req.add("Content-Type", "message/sipfrag;version=2.0")
        req.body = f"SIP/2.0 {status} {reason}\r\n".encode()
        return self._start_client_tx(req, leg.peer_addr)

    def _on_notify(self, tx: _ServerTx, req: SipRequest, key: tuple[str, str]) -> None:
        """NOTIFY of a REFER we sent: the sipfrag's status line is the transfer's progress."""
        leg = self._legs.get(req.call_id)
        if leg is None or not self._in_dialog(leg, req):
            self._reply(tx, req, 481, "Call/Transaction Does Not Exist")
            return
        event = (req.get("Event") or "").split(";")[0].strip().lower()
        if event != "refer":
            self._reply(tx, req, 489, "Bad Event", to_tag=leg.local_tag, extra=(("Allow-Events", "refer"),))
            return
        self._reply(tx, req, 200, "OK", to_tag=leg.local_tag)
        first = req.body.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        parts = first.split(" ", 2)
        if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit() or len(parts[1]) != 3:
            log.warning("call %s: NOTIFY with an unreadable sipfrag %r", leg.call_id, first[:60])
            return
        status, reason = int(parts[1]), parts[2] if len(parts) > 2 else ""
        log.info("call %s: transfer progress %d %s", leg.call_id, status, reason)
        waiter = leg._refer_waiter
        if status >= 200 and waiter is not None and not waiter.done():
            waiter.set_result((status, reason))

    async def _refer(self, leg: CallLeg, target: str, timeout: float) -> tuple[int, str]:
        if leg.ended.is_set():
            raise CallFailed(481, "call has ended")
        if leg._refer_waiter is not None and not leg._refer_waiter.done():
            raise CallFailed(491, "a transfer is already in progress on this leg")
        parse_uri(target)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[int, str]] = loop.create_future()
        leg._refer_waiter = waiter  # NOTIFY may overtake the 202
        req = leg._make_request("REFER")
        req.add("Contact", f"<sip:{self.advertised_host}:{self.port}>")
        req.add("Refer-To", f"<{target}>")
        req.add("Referred-By", f"<{parse_name_addr(leg.local_header).uri}>")
        log.info("call %s: sending REFER to %s", leg.call_id, target)
        tx = self._start_client_tx(req, leg.peer_addr)
        ended: asyncio.Future[Any] = asyncio.ensure_future(leg.ended.wait())
        try:
            try:
                resp = await asyncio.wait_for(asyncio.shield(tx.final()), timeout)
            except (TimeoutError, TransactionTimeout) as exc:
                raise CallFailed(408, "no answer to REFER") from exc
            if resp.status >= 300:
                log.info("call %s: REFER refused %d %s", leg.call_id, resp.status, resp.reason)
                raise CallFailed(resp.status, resp.reason)
            await asyncio.wait([cast("asyncio.Future[Any]", waiter), ended], timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
            if waiter.done() and not waiter.cancelled():
                return waiter.result()
            if leg.ended.is_set():
                raise CallFailed(487, "call ended before the transfer result came")
            raise CallFailed(408, "no final NOTIFY for the transfer")
        finally:
            ended.cancel()
            if not waiter.done():
                waiter.cancel()

    #: RFC 3261 14.1: after 491 the owner of the Call-ID (the dialog's UAC) waits 2.1-4 s, the other 0-2 s
    glare_backoff_owner: tuple[float, float] = (2.1, 4.0)
    glare_backoff_other: tuple[float, float] = (0.0, 2.0)
    glare_retries: int = 2

    async def _reinvite(self, leg: CallLeg, direction: str, timeout: float) -> None:
        """Re-INVITE with our SDP in ``direction``; a 491 Request Pending (glare) is retried after the
        RFC 3261 14.1 back-off, at most ``glare_retries`` times, within ``timeout`` overall."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for attempt in range(self.glare_retries + 1):
            try:
                await self._reinvite_once(leg, direction, max(0.5, deadline - loop.time()))
                return
            except CallFailed as exc:
                if exc.status != 491 or attempt == self.glare_retries or leg.ended.is_set():
                    raise
                lo, hi = self.glare_backoff_other if leg.is_uas else self.glare_backoff_owner
                delay = lo + (hi - lo) * secrets.randbelow(1001) / 1000
                if loop.time() + delay >= deadline:
                    raise
                log.info("call %s: re-INVITE got 491 (glare), retrying in %.2f s", leg.call_id, delay)
                self.stats["glare_retries"] = self.stats.get("glare_retries", 0) + 1
                await asyncio.sleep(delay)

    async def _reinvite_once(self, leg: CallLeg, direction: str, timeout: float) -> None:
        """Re-INVITE with our SDP in ``direction`` (sendonly/inactive: hold; sendrecv: resume)."""
        if leg.ended.is_set() or leg.remote_rtp is None:
            raise CallFailed(481, "call has ended or has no media")
        if leg._reinviting:
            raise CallFailed(491, "a re-INVITE is already in progress")
        leg._reinviting = True
        try:
            leg.sdp_version += 1
            req = leg._make_request("INVITE")
            req.add("Contact", f"<sip:{self.advertised_host}:{self.port}>")
            req.add("Allow", ALLOW)
            req.add("Content-Type", "application/sdp")
            req.body = build_sdp(self.advertised_host, leg.rtp_port, session_id=leg.sdp_session_id,
                                 version=leg.sdp_version, codecs=[(leg.codec, leg.payload_type)],
                                 telephone_event_pt=leg.te_pt, direction=direction, user=self.user_agent)
            log.info("call %s: sending re-INVITE (%s)", leg.call_id, direction)
            tx = self._start_client_tx(req, leg.peer_addr)
            try:
                resp = await asyncio.wait_for(asyncio.shield(tx.final()), timeout)
            except (TimeoutError, TransactionTimeout) as exc:
                tx.stop()
                raise CallFailed(408, "no answer to re-INVITE") from exc
            if resp.status >= 300:  # the dialog and its media stay as they were (the transaction ACKed it)
                raise CallFailed(resp.status, resp.reason)
            ack = leg._make_request("ACK")
            ack.set("CSeq", f"{req.cseq[0]} ACK")
            leg.ack_bytes = ack.to_bytes()  # re-sent on a retransmitted 2xx
            self._send(leg.ack_bytes, leg.peer_addr)
            answered = "sendrecv"
            if resp.body:
                try:
                    md = parse_sdp(resp.body)
                    answered = md.direction
                    if md.address not in ("0.0.0.0", "::") and md.port:
                        leg.remote_rtp = (md.address, md.port)
                except SdpError as exc:
                    log.warning("call %s: bad SDP in the answer to our re-INVITE: %s", leg.call_id, exc)
            leg.local_hold = "" if direction == "sendrecv" else direction
            leg._muted = direction in ("inactive", "recvonly") or answered in ("inactive", "sendonly")
            if not leg.local_hold:
                leg.last_rx = self._now
        finally:
            leg._reinviting = False

    def _on_cancel(self, tx: _ServerTx, req: SipRequest, key: tuple[str, str]) -> None:
        inv = self._server_tx.get((key[0], "INVITE"))
        if inv is None or inv.request is None:
            self._reply(tx, req, 481, "Call/Transaction Does Not Exist")
            return
        self._reply(tx, req, 200, "OK")
        if inv.final_status:
            return  # already answered: CANCEL has no effect
        log.info("call %s: CANCEL before answer", req.call_id)
        if inv.task is not None:
            inv.task.cancel()
        leg = inv.leg
        self._reply(inv, inv.request, 487, "Request Terminated", to_tag=leg.local_tag if leg else secrets.token_hex(6))
        if leg is not None:
            leg._end("cancelled")

    def _on_ack(self, leg: CallLeg, req: SipRequest) -> None:
        if leg.ok_rtx is not None:
            leg.ok_rtx.stop()
            leg.ok_rtx = None
        leg.acked.set()
        self._unacked.pop(leg.call_id, None)
        if leg.ended.is_set():
            return
        if leg.remote_rtp is None and not req.body:
            log.warning("call %s: late offer but no SDP answer in the ACK; hanging up", leg.call_id)
            leg._end("bad_sdp")
            self._spawn(self._send_bye(leg), f"bye-{leg.call_id}")
            return
        if req.body and leg.remote_rtp is None:  # late offer: the answer comes in the ACK
            try:
                md = parse_sdp(req.body)
                neg = negotiate(md)
            except SdpError as exc:
                log.warning("call %s: bad SDP answer in ACK: %s; hanging up", leg.call_id, exc)
                leg._end("bad_sdp")
                self._spawn(self._send_bye(leg), f"bye-{leg.call_id}")
                return
            leg._set_media(neg.codec, neg.payload_type, neg.telephone_event_pt, (md.address, md.port))
            self._media[leg.call_id] = leg

    def _on_invite(self, tx: _ServerTx, req: SipRequest, key: tuple[str, str]) -> None:
        to_tag = parse_name_addr(req.get("To") or "").tag
        if to_tag:
            self._on_reinvite(tx, req)
            return
        if req.get("Require") and not _only_replaces(req):
            self._reply(tx, req, 420, "Bad Extension", extra=(("Unsupported", req.get("Require") or ""),))
            return
        if self._closing:  # (capacity, overload and draining are refused earlier, statelessly: _admit)
            self._reply(tx, req, 503, "Service Unavailable", extra=(("Retry-After", str(self.retry_after)),))
            return
        if self.on_call is None and not req.get_all("Replaces"):  # (a replacement does not need on_call)
            self._reply(tx, req, 480, "Temporarily Unavailable")
            return
        if req.call_id in self._legs:
            self._reply(tx, req, 482, "Loop Detected")
            return
        contacts = req.get_all("Contact")
        if not contacts:
            self._reply(tx, req, 400, "Missing Contact")
            return
        offer = None
        if req.body:
            try:
                offer = parse_sdp(req.body)
                negotiate(offer)
            except NoCommonCodec as exc:
                log.warning("call %s: %s", req.call_id, exc)
                self._reply(tx, req, 488, "Not Acceptable Here", extra=(("Warning", '304 hotline "no common codec"'),))
                return
            except SdpError as exc:
                log.warning("call %s: bad SDP: %s", req.call_id, exc)
                self._reply(tx, req, 400, "Bad SDP")
                return
        replaced = self._match_replaces(tx, req) if req.get_all("Replaces") else None
        if replaced is False:
            return  # refused (400/481/486/603)
        self._reply(tx, req, 100, "Trying")
        leg = CallLeg(self, call_id=req.call_id, caller=_user_of(req.get("From") or ""),
                      called=parse_uri(req.uri).user, is_uas=True)
        if isinstance(replaced, CallLeg):
            self._replacing[leg.call_id] = replaced
        frm = parse_name_addr(req.get("From") or "")
        leg.remote_tag = frm.tag or ""
        to = req.get("To") or ""
        leg.local_header = f"{to};tag={leg.local_tag}"
        leg.remote_header = req.get("From") or ""
        leg.remote_target = parse_name_addr(contacts[0]).uri
        leg.route_set = req.get_all("Record-Route")
        leg.remote_cseq = req.cseq[0]
        tx.leg = leg
        self._pending += 1
        tx.task = self._spawn(self._answer(tx, req, leg, offer), f"answer-{req.call_id}")

    async def _answer(self, tx: _ServerTx, req: SipRequest, leg: CallLeg, offer: MediaDescription | None) -> None:
        registered = False
        try:
            leg.peer_addr = await self._dialog_dest(leg, fallback=tx.addr)
            await self._open_rtp(leg)
            self._legs[leg.call_id] = leg
            registered = True
            self._pending -= 1
            if self.answer_delay > 0:
                self._reply(tx, req, 180, "Ringing", to_tag=leg.local_tag, contact=True)
                await asyncio.sleep(self.answer_delay)
            if offer is not None:
                md = parse_sdp(req.body)
                neg = negotiate(md)
                leg._set_media(neg.codec, neg.payload_type, neg.telephone_event_pt, (md.address, md.port))
                body = build_sdp(self.advertised_host, leg.rtp_port, session_id=leg.sdp_session_id,
                                 codecs=[(neg.codec, neg.payload_type)], telephone_event_pt=neg.telephone_event_pt,
                                 direction=answer_direction(md.direction), user=self.user_agent)
            else:
                body = build_sdp(self.advertised_host, leg.rtp_port, session_id=leg.sdp_session_id,
                                 user=self.user_agent)
            ok = self._response(req, 200, "OK", to_tag=leg.local_tag, contact=True, body=body,
                                content_type="application/sdp", extra=(("Allow", ALLOW),))
            data = ok.to_bytes()
            tx.last = data
            tx.final_status = 200
            leg.ok_rtx = Retransmitter(self._send, data, tx.addr, on_timeout=lambda: self._no_ack(leg))
            self._unacked[leg.call_id] = leg
            if offer is not None:
                self._media[leg.call_id] = leg
            self.stats["calls_in"] += 1
            log.debug("call %s: answered %s -> %s, %s, RTP %d -> %s", leg.call_id, leg.caller, leg.called, leg.codec,
                      leg.rtp_port, leg.remote_rtp)  # the application logs the call's start at INFO
        except asyncio.CancelledError:
            if not registered:
                self._pending -= 1
            leg._end("cancelled")
            raise
        except Exception:
            if not registered:
                self._pending -= 1
            log.exception("call %s: could not answer", leg.call_id)
            if not tx.final_status:
                self._reply(tx, req, 500, "Server Internal Error", to_tag=leg.local_tag)
            leg._end("error")
            return
        tx.task = None
        self._spawn(self._run_call(leg), f"call-{leg.call_id}")

    def _no_ack(self, leg: CallLeg) -> None:
        leg.ok_rtx = None
        leg.acked.set()  # timer H: stop waiting for it
        self._unacked.pop(leg.call_id, None)
        if leg.ended.is_set():
            return
        log.warning("call %s: no ACK for our 200 OK; hanging up", leg.call_id)
        leg._end("no_ack")
        self._spawn(self._send_bye(leg), f"bye-{leg.call_id}")

    async def _run_call(self, leg: CallLeg) -> None:
        old = self._replacing.get(leg.call_id)
        if old is not None:
            await self._run_replacement(leg, old)
            return
        assert self.on_call is not None
        await run_call_handler(self.on_call, leg)

    # ------------------------------------------------------------------ Replaces (RFC 3891)
    def _match_replaces(self, tx: _ServerTx, req: SipRequest) -> CallLeg | bool:
        """The leg an INVITE's Replaces header names, or False after refusing the INVITE (RFC 3891 section 3)."""
        values = req.get_all("Replaces")
        if len(values) != 1:
            self._reply(tx, req, 400, "Bad Request (one Replaces header allowed)")
            return False
        try:
            rep = Replaces.parse(values[0])
        except ParseError as exc:
            log.warning("call %s: bad Replaces header: %s", req.call_id, exc)
            self._reply(tx, req, 400, "Bad Replaces Header")
            return False
        old = self._legs.get(rep.call_id)
        ringing = self._dialing.get(rep.call_id)
        dial_tx = self._dial_txs.get(rep.call_id)
        if (old is None and ringing is not None and dial_tx is not None and dial_tx.provisional is not None
                and not dial_tx.done and ringing.local_tag == rep.to_tag
                and parse_name_addr(dial_tx.provisional.get("To") or "").tag == rep.from_tag):
            # an early dialog we initiated (our dial() is ringing): pick-up, accept and CANCEL it (RFC 3891 3)
            if ringing in self._replacing.values():
                self._reply(tx, req, 603, "Decline")
                return False
            log.info("call %s: picks up our ringing call %s (Replaces)", req.call_id, ringing.call_id)
            return ringing
        if old is None or old.local_tag != rep.to_tag or old.remote_tag != rep.from_tag or old.ended.is_set():
            # (an ended leg is forgotten at once, so "terminated" cannot be told from "unknown": 481, not 603)
            log.info("call %s: Replaces names no dialog we hold (%s)", req.call_id, rep.call_id)
            self._reply(tx, req, 481, "Call/Transaction Does Not Exist")
            return False
        confirmed = old.acked.is_set() or old.call_id in self._unacked  # our 2xx sent (UAS) or ACKed (UAC)
        if not confirmed:  # an early dialog we did not initiate: leave it alone
            log.info("call %s: Replaces names early call %s; refused", req.call_id, old.call_id)
            self._reply(tx, req, 481, "Call/Transaction Does Not Exist")
            return False
        if rep.early_only:
            self._reply(tx, req, 486, "Busy Here")
            return False
        if old.on_replaced is None or old in self._replacing.values():
            log.info("call %s: Replaces for call %s declined (%s)", req.call_id, old.call_id,
                     "no on_replaced handler" if old.on_replaced is None else "already being replaced")
            self._reply(tx, req, 603, "Decline")
            return False
        return old

    async def _run_replacement(self, new: CallLeg, old: CallLeg) -> None:
        """After the new leg's ACK: hand it to ``old.on_replaced``, then BYE the old leg (end_reason "replaced")."""
        try:
            await new.acked.wait()  # set by the ACK, or by the no-ACK timeout (which also ends the new leg)
        finally:
            self._replacing.pop(new.call_id, None)
        if new.ended.is_set():
            log.info("call %s: replacement of call %s did not complete", new.call_id, old.call_id)
            return
        dial_tx = self._dial_txs.get(old.call_id)
        if old.call_id in self._dialing and dial_tx is not None and not dial_tx.done:  # pick-up of our dial
            self._picked_up[old.call_id] = new  # dial() returns the new leg once its INVITE has ended
            await self._cancel(dial_tx, dial_tx.request, dial_tx.addr, old.call_id)
            return
        if old.ended.is_set() or old.on_replaced is None:
            log.info("call %s: call %s ended before it could be replaced; hanging up", new.call_id, old.call_id)
            await new.hangup()
            return
        try:
            old.on_replaced(new)
        except Exception:
            log.exception("call %s: on_replaced handler of call %s failed; hanging up the new leg",
                          new.call_id, old.call_id)
            await new.hangup()
            return
        log.info("call %s: replaces call %s (RFC 3891)", new.call_id, old.call_id)
        old._end("replaced")
        await self._send_bye(old)

    def _on_reinvite(self, tx: _ServerTx, req: SipRequest) -> None:
        leg = self._legs.get(req.call_id)
        if leg is None or not self._in_dialog(leg, req):
            self._reply(tx, req, 481, "Call/Transaction Does Not Exist")
            return
        if leg._reinviting:  # glare: our own re-INVITE is in progress (RFC 3261 14.2)
            self._reply(tx, req, 491, "Request Pending", to_tag=leg.local_tag)
            return
        body = b""
        if req.body:
            try:
                md = parse_sdp(req.body)
            except SdpError as exc:
                log.warning("call %s: bad SDP in re-INVITE: %s", leg.call_id, exc)
                self._reply(tx, req, 400, "Bad SDP")
                return
            pt = md.codec_pt(leg.codec)
            if pt is None:
                self._reply(tx, req, 488, "Not Acceptable Here")
                return
            hold = md.direction in ("sendonly", "inactive") or md.address in ("0.0.0.0", "::")
            leg.on_hold = hold
            log.info("call %s: re-INVITE (%s)", leg.call_id, "hold" if hold else "resume/refresh")
            if not hold:
                leg._set_media(leg.codec, pt, md.telephone_event_pt or leg.te_pt, (md.address, md.port))
            leg.sdp_version += 1
            direction = limit_direction(answer_direction(md.direction), leg.local_hold)
            leg._muted = direction not in ("sendrecv", "sendonly")  # this answer now rules what we may send
            body = build_sdp(self.advertised_host, leg.rtp_port, session_id=leg.sdp_session_id,
                             version=leg.sdp_version, codecs=[(leg.codec, leg.payload_type)],
                             telephone_event_pt=leg.te_pt, direction=direction, user=self.user_agent)
        contacts = req.get_all("Contact")
        if contacts:
            leg.remote_target = parse_name_addr(contacts[0]).uri
        ok = self._response(req, 200, "OK", to_tag=leg.local_tag, contact=True, body=body,
                            content_type="application/sdp" if body else None)
        data = ok.to_bytes()
        tx.last = data
        tx.final_status = 200
        if leg.ok_rtx is not None:
            leg.ok_rtx.stop()
        leg.ok_rtx = Retransmitter(self._send, data, tx.addr, on_timeout=lambda: setattr(leg, "ok_rtx", None))

    # ------------------------------------------------------------------ responses we receive
    def _on_response(self, resp: SipResponse, addr: Addr) -> None:
        via = parse_via(resp.get_all("Via")[0])
        _num, method = resp.cseq
        tx = self._client_tx.get((via.branch, method))
        if method == "INVITE" and 200 <= resp.status < 300 and (tx is None or tx.done):
            leg = self._legs.get(resp.call_id)
            if leg is not None and leg.ack_bytes is not None:
                self._send(leg.ack_bytes, leg.peer_addr)  # retransmitted 2xx: ACK again
            return
        if tx is None:
            log.debug("call %s: stray %d response for %s", resp.call_id, resp.status, method)
            return
        tx.receive(resp)

    # ------------------------------------------------------------------ client requests
    def _start_client_tx(self, req: SipRequest, addr: Addr, on_provisional: Callable[[SipResponse], None] | None = None
                         ) -> ClientTransaction:
        tx = ClientTransaction(self._send, req, addr, on_provisional)
        key = tx.key
        self._client_tx[key] = tx
        linger = 64 * T1 if req.method == "INVITE" else T2 + 1

        def done(fut: asyncio.Future[SipResponse]) -> None:
            if not fut.cancelled():
                fut.exception()
            asyncio.get_running_loop().call_later(linger, self._client_tx.pop, key, None)

        tx._final.add_done_callback(done)
        return tx

    async def _send_bye(self, leg: CallLeg) -> None:
        if self._transport is None:
            return
        if not leg.acked.is_set():
            # RFC 3261 15: no BYE before the ACK for our 2xx (it normally follows within milliseconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(leg.acked.wait(), 2.0 if self._closing else 32.0)
            if self._transport is None:
                return
        req = leg._make_request("BYE")
        log.debug("call %s: sending BYE to %s:%d", leg.call_id, *leg.peer_addr)
        tx = self._start_client_tx(req, leg.peer_addr)
        try:
            resp = await asyncio.wait_for(asyncio.shield(tx.final()), 2.0 if self._closing else 4.0)
            log.debug("call %s: BYE answered %d", leg.call_id, resp.status)
        except (TimeoutError, TransactionTimeout, asyncio.CancelledError):
            log.info("call %s: BYE not answered (yet)", leg.call_id)

    def _send_info_dtmf(self, leg: CallLeg, digit: str) -> None:
        req = leg._make_request("INFO")
        req.add("Content-Type", "application/dtmf-relay")
        req.body = f"Signal={digit}\r\nDuration=160\r\n".encode()
        log.info("call %s: sending a DTMF key (SIP INFO)", leg.call_id)  # never the digit: PINs, card numbers
        self._start_client_tx(req, leg.peer_addr)

    async def _resolve(self, host: str, port: int) -> Addr:
        try:
            ipaddress.ip_address(host)
            return host, port
        except ValueError:
            pass
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, family=socket.AF_INET,
                                                             type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"cannot resolve {host}")
        return str(infos[0][4][0]), port

    async def _dialog_dest(self, leg: CallLeg, fallback: Addr | None = None) -> Addr:
        try:
            uri = parse_uri(parse_name_addr(leg.route_set[0]).uri if leg.route_set else leg.remote_target)
            if uri.host:
                return await self._resolve(uri.host, uri.port or 5060)
        except (ParseError, OSError) as exc:
            log.warning("call %s: cannot use the remote target (%s)", leg.call_id, exc)
        if fallback is None:
            raise OSError("no destination for in-dialog requests")
        return fallback

    async def dial(self, uri: str, *, from_user: str = "hotline", timeout: float = 30.0,
                   auth: tuple[str, str] | None = None, headers: Iterable[tuple[str, str]] = ()) -> CallLeg:
        """Place a call (UAC). Returns the answered CallLeg or raises CallFailed. ``auth`` (user, password)
        answers a 401/407 digest challenge of the callee or a trunk (SHA-256 preferred, MD5). ``headers``
        are added to the INVITE (e.g. ``("Replaces", ...)`` for an attended transfer, telephony.replaces)."""
        headers = list(headers)
        if any(set(n + v) & {"\r", "\n", "\0"} or ":" in n or not n.strip() for n, v in headers):
            raise CallFailed(400, "bad extra header (line break, NUL or ':' in the name)")
        if self._transport is None:
            raise CallFailed(503, "endpoint not started")
        try:
            target = parse_uri(uri)
        except ParseError as exc:
            raise CallFailed(400, f"bad URI: {exc}") from exc
        if len(self._legs) + self._pending >= self.max_calls:
            raise CallFailed(503, "endpoint at max_calls")
        dest = await self._resolve(target.host, target.port or 5060)
        call_id = f"{secrets.token_hex(12)}@{self.advertised_host}"
        leg = CallLeg(self, call_id=call_id, caller=from_user, called=target.user, is_uas=False)
        me = f"sip:{from_user}@{self.advertised_host}:{self.port}"
        leg.local_header = f"<{me}>;tag={leg.local_tag}"
        self._pending += 1
        self._dialing[call_id] = leg
        try:
            await self._open_rtp(leg)
            sdp = build_sdp(self.advertised_host, leg.rtp_port, session_id=leg.sdp_session_id, user=self.user_agent)
            credentials: tuple[str, str] | None = None
            waited: BaseException | None = None
            for attempt in (1, 2):
                req = SipRequest(method="INVITE", uri=uri if uri.startswith("sip") else str(target))
                req.add("Via", f"SIP/2.0/UDP {self.advertised_host}:{self.port};branch={new_branch()};rport")
                req.add("Max-Forwards", "70")
                req.add("From", leg.local_header)
                req.add("To", f"<{req.uri}>")
                req.add("Call-ID", call_id)
                req.add("CSeq", f"{attempt} INVITE")
                req.add("Contact", f"<{me}>")
                for name, value in headers:
                    req.add(name, value)
                if credentials is not None:
                    req.add(*credentials)
                req.add("Allow", ALLOW)
                req.add("User-Agent", self.user_agent)
                req.add("Content-Type", "application/sdp")
                req.body = sdp
                log.info("call %s: dialling %s from %s%s", call_id, uri, from_user,
                         " (with digest credentials)" if credentials else "")
                tx = self._start_client_tx(req, dest)
                self._dial_txs[call_id] = tx
                try:
                    resp = await asyncio.wait_for(asyncio.shield(tx.final()), timeout)
                except TransactionTimeout as exc:
                    raise CallFailed(408, "Request Timeout (no response)") from exc
                except (TimeoutError, asyncio.CancelledError) as exc:
                    waited = exc  # no final answer in time (or dial() was cancelled): CANCEL below
                    break
                if resp.status in (401, 407) and auth is not None and attempt == 1:
                    name = "Proxy-Authenticate" if resp.status == 407 else "WWW-Authenticate"
                    answer = _digest_answer(resp.get_all(name), auth[0], auth[1], req.uri, "INVITE")
                    if answer:
                        credentials = ("Proxy-Authorization" if resp.status == 407 else "Authorization", answer)
                        continue
                break
            if waited is not None:
                resp2 = await self._cancel(tx, req, dest, call_id)
                if resp2 is not None and 200 <= resp2.status < 300:
                    await self._accept_2xx(leg, req, resp2, dest)
                    await leg.hangup()
                picked = self._picked_up.pop(call_id, None)
                if picked is not None:  # picked up (Replaces) as our timeout came, or the callee ignored our CANCEL
                    leg._end("replaced")
                    task = asyncio.current_task()
                    if isinstance(waited, asyncio.CancelledError) and task is not None and task.cancelling():
                        self._spawn(picked.hangup(), f"bye-{picked.call_id}")  # dial() itself was cancelled
                    else:
                        return picked
                if isinstance(waited, asyncio.CancelledError):
                    raise waited
                raise CallFailed(408, f"no answer within {timeout:.0f} s") from waited
            picked = self._picked_up.pop(call_id, None)
            if picked is not None:  # picked up with Replaces while ringing (RFC 3891): the new leg is the call
                if resp.status < 300:  # answered while our CANCEL was on its way: the callee is hung up
                    await self._accept_2xx(leg, req, resp, dest)
                    await leg.hangup()
                leg._end("replaced")
                return picked  # (counted in calls_in: it came in as an INVITE)
            if resp.status >= 300:
                log.info("call %s: dial failed %d %s", call_id, resp.status, resp.reason)
                raise CallFailed(resp.status, resp.reason)
            await self._accept_2xx(leg, req, resp, dest)
            if leg.early_bye:
                leg._end("remote_bye")
            elif leg.ended.is_set():
                raise CallFailed(488, f"unusable SDP answer ({leg.end_reason})")
            self.stats["calls_out"] += 1
            return leg
        except BaseException:
            if not leg.ended.is_set():
                leg._end("dial_failed")
            raise
        finally:
            self._pending -= 1
            self._dialing.pop(call_id, None)
            self._dial_txs.pop(call_id, None)
            self._picked_up.pop(call_id, None)

    async def register(self, registrar: str, user: str, password: str, *, expires: int = 3600,
                       timeout: float = 5.0) -> int:
        """Register ``sip:user@<registrar host>`` with our contact at ``registrar`` (UAC side, digest auth:
        SHA-256 preferred, MD5). Returns the granted expiry in seconds (0 for an unregister); raises
        CallFailed with the final status otherwise. No automatic refresh: call it again before expiry."""
        if self._transport is None:
            raise CallFailed(503, "endpoint not started")
        target = parse_uri(registrar)
        dest = await self._resolve(target.host, target.port or 5060)
        aor = f"sip:{user}@{target.host}" + (f":{target.port}" if target.port else "")
        call_id = f"{secrets.token_hex(12)}@{self.advertised_host}"
        tag = secrets.token_hex(6)
        auth = ""
        for cseq in range(1, 4):
            req = SipRequest(method="REGISTER", uri=registrar)
            req.add("Via", f"SIP/2.0/UDP {self.advertised_host}:{self.port};branch={new_branch()};rport")
            req.add("Max-Forwards", "70")
            req.add("From", f"<{aor}>;tag={tag}")
            req.add("To", f"<{aor}>")
            req.add("Call-ID", call_id)
            req.add("CSeq", f"{cseq} REGISTER")
            req.add("Contact", f"<sip:{user}@{self.advertised_host}:{self.port}>")
            req.add("Expires", str(expires))
            if auth:
                req.add("Authorization", auth)
            req.add("User-Agent", self.user_agent)
            tx = self._start_client_tx(req, dest)
            try:
                resp = await asyncio.wait_for(asyncio.shield(tx.final()), timeout)
            except (TimeoutError, TransactionTimeout) as exc:
                tx.stop()
                raise CallFailed(408, "no answer to REGISTER") from exc
            if resp.status == 401 and cseq < 3:
                auth = _digest_answer(resp.get_all("WWW-Authenticate"), user, password, registrar)
                if auth:
                    continue
            if resp.status >= 300:
                raise CallFailed(resp.status, resp.reason)
            granted = 0
            for c in resp.get_all("Contact"):
                na = parse_name_addr(c)
                if parse_uri(na.uri).port == self.port:
                    granted = int(na.params.get("expires") or expires)
            log.info("registered %s at %s for %d s", aor, registrar, granted)
            return granted
        raise CallFailed(401, "Unauthorized")

    async def _accept_2xx(self, leg: CallLeg, req: SipRequest, resp: SipResponse, dest: Addr) -> None:
        to = resp.get("To") or ""
        leg.remote_header = to
        leg.remote_tag = parse_name_addr(to).tag or ""
        contacts = resp.get_all("Contact")
        leg.remote_target = parse_name_addr(contacts[0]).uri if contacts else req.uri
        leg.route_set = list(reversed(resp.get_all("Record-Route")))
        leg.peer_addr = await self._dialog_dest(leg, fallback=dest)
        ack = leg._make_request("ACK")
        ack.set("CSeq", f"{req.cseq[0]} ACK")
        leg.ack_bytes = ack.to_bytes()
        leg.acked.set()
        self._legs[leg.call_id] = leg
        self._send(leg.ack_bytes, leg.peer_addr)
        try:
            md = parse_sdp(resp.body)
            pt = None
            codec = ""
            for c in ("PCMU", "PCMA"):
                p = md.codec_pt(c)
                if p is not None and (pt is None or md.payload_types.index(p) < md.payload_types.index(pt)):
                    pt, codec = p, c
            if pt is None:
                raise NoCommonCodec(f"answer has no G.711: {md.payload_types}")
        except SdpError as exc:
            log.warning("call %s: unusable SDP answer: %s; hanging up", leg.call_id, exc)
            leg._end("bad_sdp")
            await self._send_bye(leg)
            return
        leg._set_media(codec, pt, md.telephone_event_pt, (md.address, md.port))
        leg.te_pt_rx = DEFAULT_TE_PT if md.telephone_event_pt is not None else None
        leg.on_hold = md.direction in ("sendonly", "inactive")
        self._media[leg.call_id] = leg
        log.info("call %s: answered by %s, %s, RTP %d -> %s", leg.call_id, leg.remote_target, codec, leg.rtp_port,
                 leg.remote_rtp)

    async def _cancel(self, tx: ClientTransaction, req: SipRequest, dest: Addr, call_id: str) -> SipResponse | None:
        if tx.done:
            return tx.final_response
        if tx.provisional is None:
            log.info("call %s: no response at all; giving up without CANCEL", call_id)
            tx.stop()
            return None
        cancel = SipRequest(method="CANCEL", uri=req.uri)
        cancel.add("Via", req.get_all("Via")[0])
        for r in req.get_all("Route"):
            cancel.add("Route", r)
        cancel.add("Max-Forwards", "70")
        cancel.add("From", req.get("From") or "")
        cancel.add("To", req.get("To") or "")
        cancel.add("Call-ID", call_id)
        cancel.add("CSeq", f"{req.cseq[0]} CANCEL")
        cancel.add("User-Agent", self.user_agent)
        log.info("call %s: sending CANCEL", call_id)
        self._start_client_tx(cancel, dest)
        try:
            return await asyncio.wait_for(asyncio.shield(tx.final()), 5.0)
        except (TimeoutError, TransactionTimeout):
            tx.stop()
            return None


def _only_replaces(req: SipRequest) -> bool:
    """Require lists only option tags we support: "replaces" (RFC 3891), with a Replaces header present."""
    tags = {t.strip().lower() for v in req.get_all("Require") for t in v.split(",") if t.strip()}
    return tags == {"replaces"} and bool(req.get_all("Replaces"))


def _digest_answer(challenges: list[str], user: str, password: str, uri: str, method: str = "REGISTER") -> str:
    """An Authorization value for the best challenge we can answer (SHA-256 before MD5), or ""."""
    parsed = []
    for c in challenges:
        try:
            p = parse_digest(c)
        except ParseError:
            continue
        alg = p.get("algorithm", "MD5").upper()
        if alg in ALGORITHMS and "auth" in [q.strip() for q in p.get("qop", "auth").split(",")]:
            parsed.append((0 if alg == "SHA-256" else 1, alg, p))
    if not parsed:
        return ""
    _rank, alg, p = min(parsed, key=lambda t: t[0])
    cnonce = secrets.token_hex(8)
    resp = digest_response(alg, user, p.get("realm", ""), password, method, uri, p.get("nonce", ""),
                           "00000001", cnonce, "auth")
    opaque = f', opaque="{p["opaque"]}"' if "opaque" in p else ""
    return (f'Digest username="{user}", realm="{p.get("realm", "")}", nonce="{p.get("nonce", "")}", uri="{uri}", '
            f'response="{resp}", algorithm={alg}, cnonce="{cnonce}", qop=auth, nc=00000001{opaque}')


def _kind(msg: SipMessage) -> str:
    return msg.method if isinstance(msg, SipRequest) else f"{msg.status} response"  # type: ignore[attr-defined]
