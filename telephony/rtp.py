"""RTP packets (RFC 3550), pure parse/serialise of the fixed header."""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["HEADER", "RtpError", "RtpPacket"]

_HDR = HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence, timestamp, SSRC


class RtpError(ValueError):
    pass


@dataclass(slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def to_bytes(self) -> bytes:
        return _HDR.pack(0x80, (0x80 if self.marker else 0) | (self.payload_type & 0x7F),
                         self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc & 0xFFFFFFFF) + self.payload

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < 12:
            raise RtpError("RTP packet shorter than 12 bytes")
        b0, b1, seq, ts, ssrc = _HDR.unpack_from(data)
        if b0 >> 6 != 2:
            raise RtpError("not RTP version 2")
        off = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10:  # header extension
            if len(data) < off + 4:
                raise RtpError("truncated RTP extension")
            off += 4 + 4 * struct.unpack_from("!H", data, off + 2)[0]
        end = len(data)
        if b0 & 0x20:  # padding
            pad = data[-1]
            end -= pad
        if off > end:
            raise RtpError("truncated RTP packet")
        return cls(b1 & 0x7F, seq, ts, ssrc, bytes(data[off:end]), bool(b1 & 0x80))


def build_header(payload_type: int, sequence: int, timestamp: int, ssrc: int, marker: bool = False) -> bytes:
    return _HDR.pack(0x80, (0x80 if marker else 0) | payload_type, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
