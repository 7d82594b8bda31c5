"""G.711 μ-law and A-law (ITU-T G.711): the C codecs of audioop where present, else numpy lookup tables with the
same values. Pure."""

from __future__ import annotations

import sys
import warnings

import numpy as np

try:  # C codecs, 4-14x faster per 20 ms frame than the tables below (same values: tests/telephony/test_g711.py)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # removed in Python 3.13: the tables serve then
        import audioop as _audioop
    _C = sys.byteorder == "little"  # audioop gives native-order samples
except ImportError:  # pragma: no cover - Python >= 3.13
    _C = False

__all__ = ["alaw_decode", "alaw_encode", "decode", "encode", "silence_payload", "ulaw_decode", "ulaw_encode"]


def _ulaw_encode_sample(s: int) -> int:
    s >>= 2  # 14-bit
    if s < 0:
        s, mask = -s, 0x7F
    else:
        mask = 0xFF
    s = min(s, 8159) + 33
    seg_end = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
    seg = 0
    while seg < 8 and s > seg_end[seg]:
        seg += 1
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((s >> (seg + 1)) & 0x0F)) ^ mask


def _ulaw_decode_sample(u: int) -> int:
    u = ~u & 0xFF
    sign = u & 0x80
    exp = (u >> 4) & 0x07
    mant = u & 0x0F
    s = ((mant << 3) + 0x84) << exp
    s -= 0x84
    return -s if sign else s


def _alaw_encode_sample(s: int) -> int:
    if s >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        s = -s - 1
    s >>= 3  # 13-bit magnitude
    seg_end = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)
    seg = 0
    while seg < 8 and s > seg_end[seg]:
        seg += 1
    if seg >= 8:
        return (0x7F ^ mask) & 0xFF
    aval = seg << 4
    aval |= (s >> 1) & 0x0F if seg < 2 else (s >> seg) & 0x0F
    return (aval ^ mask) & 0xFF


def _alaw_decode_sample(a: int) -> int:
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t += 0x108
        t <<= seg - 1
    return t if a & 0x80 else -t


_ALL = np.arange(-32768, 32768, dtype=np.int32)
# encode tables are indexed by the uint16 view of the int16 sample
_UENC = np.zeros(65536, dtype=np.uint8)
_AENC = np.zeros(65536, dtype=np.uint8)
for _s in _ALL.tolist():
    _UENC[_s & 0xFFFF] = _ulaw_encode_sample(_s)
    _AENC[_s & 0xFFFF] = _alaw_encode_sample(_s)
_UDEC = np.array([_ulaw_decode_sample(i) for i in range(256)], dtype="<i2")
_ADEC = np.array([_alaw_decode_sample(i) for i in range(256)], dtype="<i2")
del _s


def _np_ulaw_encode(pcm: bytes) -> bytes:
    return _UENC[np.frombuffer(pcm, dtype="<u2")].tobytes()


def _np_alaw_encode(pcm: bytes) -> bytes:
    return _AENC[np.frombuffer(pcm, dtype="<u2")].tobytes()


def _np_ulaw_decode(data: bytes) -> bytes:
    return _UDEC[np.frombuffer(data, dtype=np.uint8)].tobytes()


def _np_alaw_decode(data: bytes) -> bytes:
    return _ADEC[np.frombuffer(data, dtype=np.uint8)].tobytes()


def ulaw_encode(pcm: bytes) -> bytes:
    if _C and not len(pcm) % 2:
        return _audioop.lin2ulaw(pcm, 2)
    return _np_ulaw_encode(pcm)


def alaw_encode(pcm: bytes) -> bytes:
    if _C and not len(pcm) % 2:
        return _audioop.lin2alaw(pcm, 2)
    return _np_alaw_encode(pcm)


def ulaw_decode(data: bytes) -> bytes:
    return _audioop.ulaw2lin(data, 2) if _C else _np_ulaw_decode(data)


def alaw_decode(data: bytes) -> bytes:
    return _audioop.alaw2lin(data, 2) if _C else _np_alaw_decode(data)


def encode(codec: str, pcm: bytes) -> bytes:
    return ulaw_encode(pcm) if codec == "PCMU" else alaw_encode(pcm)


def decode(codec: str, data: bytes) -> bytes:
    return ulaw_decode(data) if codec == "PCMU" else alaw_decode(data)


def silence_payload(codec: str, samples: int = 160) -> bytes:
    return bytes([0xFF if codec == "PCMU" else 0xD5]) * samples
