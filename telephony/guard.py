"""Admission control for the SIP edge: trunk allow-list, per-source rate limits, overload.

Pure logic with an injectable clock (no I/O). What the endpoint does with each verdict is in
docs/SECURITY.md:
- a source outside ``allow`` (CIDR list; empty = everybody) gets ``403 Forbidden`` to an INVITE;
- each source IP has a token bucket per method (INVITE, REGISTER): a request over its rate gets
  ``503 Service Unavailable`` with ``Retry-After`` while the source is still within ``reply_budget``
  refusals per second; beyond that (a flood that ignores Retry-After) it is dropped without a reply, so a
  flood costs us a parse and a dictionary look-up, never a response we send (no amplification);
- REGISTER over its rate is always dropped silently (a password-guessing flood learns nothing).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = ["AllowList", "LoopBusy", "RateLimiter", "TokenBucket", "socket_rx_queue", "udp_rx_queue"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowList:
    """Source addresses allowed to place calls: CIDR blocks (``10.0.0.0/8``) or single addresses."""

    def __init__(self, cidrs: Iterable[str] = ()) -> None:
        self.networks: list[IpNetwork] = []
        for c in cidrs:
            try:
                self.networks.append(ipaddress.ip_network(c.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"sip.allow: {c!r} is not an IP address or CIDR block ({exc})") from exc
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def allows(self, host: str) -> bool:
        if not self.networks:
            return True
        hit = self._cache.get(host)
        if hit is None:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                return False
            hit = any(ip in n for n in self.networks)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[host] = hit
        return hit


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    burst: float  # bucket size
    tokens: float
    stamp: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RateLimiter:
    """Token buckets per (source IP, kind). ``check`` → "ok", "reject" (answer 503) or "drop" (no answer)."""

    MAX_SOURCES = 50_000  # buckets kept; full buckets are forgotten first, then everything (flood of sources)

    def __init__(self, rate: float, burst: float, *, reply_budget: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.reply_budget = reply_budget  # refusals per second per source we still answer
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._replies: dict[str, TokenBucket] = {}
        self.stats = {"passed": 0, "rejected": 0, "dropped": 0}

    def check(self, source: str) -> str:
        now = self._clock()
        b = self._buckets.get(source)
        if b is None:
            if len(self._buckets) >= self.MAX_SOURCES:
                self._prune(now)
            b = self._buckets[source] = TokenBucket(self.rate, self.burst, self.burst, now)
        if b.take(now):
            self.stats["passed"] += 1
            return "ok"
        r = self._replies.get(source)
        if r is None:
            r = self._replies[source] = TokenBucket(self.reply_budget, self.reply_budget, self.reply_budget, now)
        if self.reply_budget > 0 and r.take(now):
            self.stats["rejected"] += 1
            return "reject"
        self.stats["dropped"] += 1
        return "drop"

    def retry_after(self) -> int:
        """Seconds a refused source should wait: time to refill half the bucket, at least 1."""
        return max(1, int(self.burst / 2 / self.rate + 0.999))

    def _prune(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.stamp) * b.rate >= b.burst]
        for k in full:
            del self._buckets[k]
            self._replies.pop(k, None)
        if len(self._buckets) >= self.MAX_SOURCES:
            self._buckets.clear()
            self._replies.clear()


class LoopBusy:
    """How busy an asyncio event loop is: the share of wall time spent outside ``select()`` (running
    callbacks, or waiting for the GIL another thread holds). Measured by wrapping the loop's selector once
    per loop; loops without one (e.g. uvloop) get None from ``of``.

    The ticker's lateness (loop lag) misses a loop that is saturated with short iterations, which is what a
    call-rate overload looks like (the database thread takes the GIL in slices); this catches it.
    """

    _loops: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopBusy]] = weakref.WeakKeyDictionary()

    def __init__(self, selector: Any) -> None:
        self.idle = 0.0  # seconds spent blocked in select() since installation
        original = selector.select

        def select(timeout: float | None = None) -> Any:
            t = time.perf_counter()
            try:
                return original(timeout)
            finally:
                self.idle += time.perf_counter() - t

        selector.select = select

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> LoopBusy | None:
        meter = cls._loops.get(loop)
        if meter is None:
            selector = getattr(loop, "_selector", None)
            if selector is None or not hasattr(selector, "select"):
                return None
            meter = cls._loops[loop] = cls(selector)
        return meter

    def mark(self) -> tuple[float, float]:
        return time.perf_counter(), self.idle

    def busy_since(self, mark: tuple[float, float]) -> tuple[float, tuple[float, float]]:
        """(busy share since ``mark``, a new mark)."""
        now = self.mark()
        wall = now[0] - mark[0]
        if wall <= 0:
            return 0.0, now
        return max(0.0, min(1.0, 1.0 - (now[1] - mark[1]) / wall)), now


SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)  # Linux >= 4.6: the socket's memory counters, u32 each


def socket_rx_queue(sock: socket.socket | None, port: int) -> int | None:
    """udp_rx_queue for a socket we hold: SK_MEMINFO_RMEM_ALLOC from getsockopt(SO_MEMINFO), the value
    /proc/net/udp shows as rx_queue, in ~1 µs; reading /proc/net/udp walks every UDP socket of the host
    (330 µs with a handful, 3.6% of the event loop at 100 calls/s with an RTP socket per call). Falls back
    to /proc/net/udp where SO_MEMINFO is missing."""
    if sock is not None:
        try:
            return int(struct.unpack_from("I", sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 36))[0])
        except (OSError, struct.error):
            pass
    return udp_rx_queue(port)


def udp_rx_queue(port: int, path: str = "/proc/net/udp") -> int | None:
    """Bytes waiting in the kernel's receive queue of the UDP socket bound to ``port`` (Linux; None elsewhere).

    When the worker cannot read as fast as INVITEs arrive, the queue is here, not in the process: everything
    the process measures (loop lag, calls per second it sees) looks normal while callers wait and retransmit.
    """
    suffix = f":{port:04X}"
    try:
        with open(path) as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[1].endswith(suffix):
                    return int(fields[4].split(":")[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None
