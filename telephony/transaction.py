"""SIP transactions over UDP (RFC 3261 section 17): retransmission timers and ACK rules.

The endpoint owns the socket; transactions get a ``send(data, addr)`` callable.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable

from .sip_message import SipRequest, SipResponse, parse_via

__all__ = ["T1", "T2", "ClientTransaction", "Retransmitter", "TransactionTimeout", "new_branch"]

log = logging.getLogger(__name__)

T1 = 0.5
T2 = 4.0
Addr = tuple[str, int]
SendFn = Callable[[bytes, Addr], None]


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


class TransactionTimeout(Exception):
    pass


class Retransmitter:
    """Sends ``data`` now and again at T1, 2*T1, ... capped at T2 until stopped (timers A/E/G and
    the 2xx retransmission of RFC 3261 13.3.1.4). Calls ``on_timeout`` after 64*T1."""

    def __init__(self, send: SendFn, data: bytes, addr: Addr, *, cap: float = T2, on_timeout: Callable[[], None]
                 | None = None, t1: float = T1, first: bool = True) -> None:
        self._send = send
        self.data = data
        self.addr = addr
        self._cap = cap
        self._t1 = t1
        self._interval = t1
        self._elapsed = 0.0
        self._on_timeout = on_timeout
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        if first:
            send(data, addr)
        self._handle = self._loop.call_later(self._interval, self._fire)

    def _fire(self) -> None:
        self._elapsed += self._interval
        if self._elapsed >= 64 * self._t1:
            self._handle = None
            if self._on_timeout is not None:
                self._on_timeout()
            return
        try:
            self._send(self.data, self.addr)
        except Exception:  # a closed socket must not kill the loop
            log.debug("retransmission failed", exc_info=True)
        self._interval = min(self._interval * 2, self._cap)
        self._handle = self._loop.call_later(self._interval, self._fire)

    def slow_down(self) -> None:
        """Non-INVITE client transaction got a provisional: retransmit every T2 from now on."""
        self._interval = self._cap

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    @property
    def active(self) -> bool:
        return self._handle is not None


class ClientTransaction:
    """One client transaction. ``await final()`` gives the final response or raises TransactionTimeout.

    INVITE: timer A until any response; non-2xx finals are ACKed here (same branch), also when the
    final is retransmitted. Non-INVITE: timer E until a final, at T2 once a provisional came.
    """

    def __init__(self, send: SendFn, request: SipRequest, addr: Addr,
                 on_provisional: Callable[[SipResponse], None] | None = None) -> None:
        self.request = request
        self.addr = addr
        self.method = request.method
        self.branch = parse_via(request.get_all("Via")[0]).branch
        self._send = send
        self._on_provisional = on_provisional
        self.provisional: SipResponse | None = None
        self._final: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        self._rtx = Retransmitter(send, request.to_bytes(), addr, on_timeout=self._timeout)
        self.final_response: SipResponse | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.branch, self.method

    def _timeout(self) -> None:
        if not self._final.done():
            self._final.set_exception(TransactionTimeout(f"{self.method} timed out"))

    def stop(self) -> None:
        self._rtx.stop()
        if not self._final.done():
            self._final.cancel()

    def receive(self, resp: SipResponse) -> None:
        if resp.status < 200:
            if self.method == "INVITE":
                self._rtx.stop()
            else:
                self._rtx.slow_down()
            self.provisional = resp
            if self._on_provisional is not None and not self._final.done():
                self._on_provisional(resp)
            return
        self._rtx.stop()
        if self.method == "INVITE" and resp.status >= 300:
            self._send(self.ack_for(resp).to_bytes(), self.addr)
        if self.final_response is None:
            self.final_response = resp
        if not self._final.done():
            self._final.set_result(resp)

    def ack_for(self, resp: SipResponse) -> SipRequest:
        """ACK for a non-2xx final (RFC 3261 17.1.1.3): same branch, To from the response."""
        req = self.request
        ack = SipRequest(method="ACK", uri=req.uri)
        ack.add("Via", req.get_all("Via")[0])
        for h in ("Route",):
            for v in req.get_all(h):
                ack.add(h, v)
        ack.add("Max-Forwards", "70")
        ack.add("From", req.get("From") or "")
        ack.add("To", resp.get("To") or "")
        ack.add("Call-ID", req.call_id)
        ack.add("CSeq", f"{req.cseq[0]} ACK")
        return ack

    def final(self) -> asyncio.Future[SipResponse]:
        """The final response (a future: awaiting it through shield/wait_for creates no task whose
        TransactionTimeout nobody retrieves; the endpoint marks it retrieved when the transaction ends)."""
        return self._final

    @property
    def done(self) -> bool:
        return self._final.done()
