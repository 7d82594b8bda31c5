"""DTMF: RFC 4733 telephone-event payloads (receive with de-duplication, send schedule) and SIP INFO bodies.

Pure: no sockets, no clocks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["DIGITS", "DtmfReceiver", "DtmfSender", "TelephoneEvent", "parse_info_body"]

DIGITS = "0123456789*#ABCD"
_EV = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    event: int
    end: bool
    volume: int
    duration: int

    @property
    def digit(self) -> str | None:
        return DIGITS[self.event] if 0 <= self.event < 16 else None

    def to_bytes(self) -> bytes:
        return _EV.pack(self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration & 0xFFFF)

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise ValueError("telephone-event payload shorter than 4 bytes")
        ev, flags, dur = _EV.unpack_from(payload)
        return cls(ev, bool(flags & 0x80), flags & 0x3F, dur)


class DtmfReceiver:
    """Turns a stream of telephone-event packets into digits, once each.

    An event is identified by its RTP timestamp (RFC 4733 2.5.1): the digit is reported on the first
    packet of a new event (so a lost end packet cannot lose the digit) and every later packet or
    retransmitted end packet with the same timestamp is ignored.
    """

    def __init__(self) -> None:
        self._seen: list[int] = []

    def feed(self, timestamp: int, payload: bytes) -> str | None:
        try:
            ev = TelephoneEvent.parse(payload)
        except ValueError:
            return None
        if ev.digit is None:
            return None
        if timestamp in self._seen:
            return None
        self._seen.append(timestamp)
        if len(self._seen) > 16:
            del self._seen[0]
        return ev.digit


class DtmfSender:
    """Packets for one digit: one every 20 ms with the same timestamp and growing duration,
    marker on the first, then the end packet three times (RFC 4733 2.5.1.4)."""

    def __init__(self, digit: str, *, duration_ms: int = 100, volume: int = 10, frame_samples: int = 160) -> None:
        digit = digit.upper()
        if len(digit) != 1 or digit not in DIGITS:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        self.event = DIGITS.index(digit)
        self.volume = volume
        self.frame = frame_samples
        self.frames = max(2, duration_ms // 20)
        self._i = 0

    @property
    def total_ticks(self) -> int:
        return self.frames + 2  # the last duration tick is the first end packet; 2 more end copies

    def next_packet(self) -> tuple[bytes, bool] | None:
        """(payload, marker) for the next 20 ms tick, or None when the digit is finished."""
        i = self._i
        if i >= self.total_ticks:
            return None
        self._i += 1
        if i < self.frames - 1:
            return TelephoneEvent(self.event, False, self.volume, (i + 1) * self.frame).to_bytes(), i == 0
        dur = self.frames * self.frame
        return TelephoneEvent(self.event, True, self.volume, dur).to_bytes(), False


def parse_info_body(content_type: str, body: bytes) -> str | None:
    """Digit from a SIP INFO (application/dtmf-relay 'Signal=5' or application/dtmf '5')."""
    ctype = content_type.split(";")[0].strip().lower()
    text = body.decode("utf-8", "replace").strip()
    if ctype == "application/dtmf-relay":
        for line in text.splitlines():
            k, _, v = line.partition("=")
            if k.strip().lower() == "signal":
                d = v.strip().upper()
                if d == "10":
                    d = "*"
                elif d == "11":
                    d = "#"
                return d if len(d) == 1 and d in DIGITS else None
        return None
    if ctype == "application/dtmf":
        d = text.upper()
        if len(d) == 2 and d.isascii() and d.isdigit() and int(d) < 16:
            return DIGITS[int(d)]
        return d if len(d) == 1 and d in DIGITS else None
    return None
