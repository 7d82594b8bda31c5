"""SDP offer/answer (RFC 3264) for one G.711 audio stream with RFC 4733 telephone-events. Pure."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = ["CODECS", "MediaDescription", "NoCommonCodec", "SdpError", "build_sdp", "negotiate", "parse_sdp"]

CODECS = {"PCMU": 0, "PCMA": 8}
_STATIC = {0: ("PCMU", 8000), 8: ("PCMA", 8000)}
DEFAULT_TE_PT = 101


def _is_uint(text: str, max_digits: int = 10) -> bool:
    """ASCII digits, at most ``max_digits`` of them after leading zeros (str.isdigit() accepts '²', which
    int() refuses, and int() refuses more than 4300 digits)."""
    return 0 < len(text) <= 64 and len(text.lstrip("0")) <= max_digits and text.isascii() and text.isdigit()


class SdpError(ValueError):
    """Malformed or unusable SDP (answer 400)."""


class NoCommonCodec(SdpError):
    """No codec in common (answer 488)."""


@dataclass
class MediaDescription:
    """The remote (or local) audio stream as far as we need it."""

    address: str
    port: int
    payload_types: list[int]
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)
    direction: str = "sendrecv"
    ptime: int | None = None

    def codec_pt(self, name: str) -> int | None:
        for pt in self.payload_types:
            enc = self.rtpmap.get(pt) or _STATIC.get(pt)
            if enc and enc[0].upper() == name and enc[1] == 8000:
                return pt
        return None

    @property
    def telephone_event_pt(self) -> int | None:
        for pt in self.payload_types:
            enc = self.rtpmap.get(pt)
            if enc and enc[0].lower() == "telephone-event" and enc[1] == 8000:
                return pt
        return None


def parse_sdp(body: bytes | str) -> MediaDescription:
    """The first active audio stream of an SDP body. Raises SdpError."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError as exc:
        raise SdpError("SDP is not UTF-8") from exc
    lines = [ln.strip() for ln in text.replace("\r\n", "\n").split("\n") if ln.strip()]
    if not lines or not lines[0].startswith("v="):
        raise SdpError("SDP does not start with v=")
    session_addr: str | None = None
    session_dir = "sendrecv"
    media: list[dict[str, object]] = []
    cur: dict[str, object] | None = None
    for ln in lines:
        if len(ln) < 2 or ln[1] != "=":
            raise SdpError(f"bad SDP line {ln[:40]!r}")
        kind, val = ln[0], ln[2:]
        if kind == "m":
            parts = val.split()
            if len(parts) < 4 or not _is_uint(parts[1].split("/")[0]):
                raise SdpError(f"bad m= line {val!r}")
            if not all(_is_uint(p, 3) for p in parts[3:]):
                raise SdpError(f"bad payload types in {val!r}")
            pts = [int(p) for p in parts[3:]]
            if any(not 0 <= p < 128 for p in pts):
                raise SdpError(f"payload type out of range in {val!r}")
            cur = {"media": parts[0], "port": int(parts[1].split("/")[0]), "proto": parts[2], "pts": pts,
                   "rtpmap": {}, "addr": None, "dir": None, "ptime": None}
            media.append(cur)
        elif kind == "c":
            parts = val.split()
            if len(parts) < 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
                raise SdpError(f"bad c= line {val!r}")
            addr = parts[2].split("/")[0]
            if cur is None:
                session_addr = addr
            else:
                cur["addr"] = addr
        elif kind == "a":
            name, _, rest = val.partition(":")
            if name in ("sendrecv", "sendonly", "recvonly", "inactive"):
                if cur is None:
                    session_dir = name
                else:
                    cur["dir"] = name
            elif name == "rtpmap" and cur is not None:
                pt_s, _, enc = rest.partition(" ")
                bits = enc.strip().split("/")
                if not _is_uint(pt_s, 3) or len(bits) < 2 or not _is_uint(bits[1]):
                    raise SdpError(f"bad rtpmap {val!r}")
                rtpmap = cur["rtpmap"]
                assert isinstance(rtpmap, dict)
                rtpmap[int(pt_s)] = (bits[0], int(bits[1]))
            elif name == "ptime" and cur is not None and _is_uint(rest.strip(), 5):
                cur["ptime"] = int(rest.strip())
    for m in media:
        if m["media"] != "audio" or m["port"] == 0 or "RTP/AVP" not in str(m["proto"]):
            continue
        addr = str(m["addr"] or session_addr or "")
        if not addr:
            raise SdpError("no connection address for the audio stream")
        try:
            ipaddress.ip_address(addr)
        except ValueError as exc:
            raise SdpError(f"connection address is not an IP: {addr!r}") from exc
        port = m["port"]
        assert isinstance(port, int)
        if not 0 < port < 65536:
            raise SdpError(f"bad audio port {port}")
        pts_o = m["pts"]
        rtpmap = m["rtpmap"]
        pts = [int(p) for p in pts_o] if isinstance(pts_o, list) else []
        assert isinstance(rtpmap, dict)
        ptime = m["ptime"]
        return MediaDescription(addr, port, pts, rtpmap, str(m["dir"] or session_dir),
                                ptime if isinstance(ptime, int) else None)
    raise SdpError("no active audio stream in SDP")


@dataclass
class Negotiated:
    codec: str
    payload_type: int
    telephone_event_pt: int | None
    remote: MediaDescription


def negotiate(offer: MediaDescription, supported: tuple[str, ...] = ("PCMU", "PCMA")) -> Negotiated:
    """Answerer side: pick the offerer's most preferred G.711 codec; keep its telephone-event PT."""
    for pt in offer.payload_types:
        enc = offer.rtpmap.get(pt) or _STATIC.get(pt)
        if enc and enc[0].upper() in supported and enc[1] == 8000:
            return Negotiated(enc[0].upper(), pt, offer.telephone_event_pt, offer)
    raise NoCommonCodec(f"no common codec in offer {offer.payload_types}")


def answer_direction(offered: str) -> str:
    return {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}.get(offered, "sendrecv")


def limit_direction(direction: str, hold: str) -> str:
    """``direction`` as far as our own hold allows it (``hold``: "", "sendonly" or "inactive"): a peer's
    re-INVITE with sendrecv while we hold it is answered sendonly (or inactive)."""
    if not hold:
        return direction
    send = direction in ("sendrecv", "sendonly") and hold in ("sendonly", "sendrecv")
    recv = direction in ("sendrecv", "recvonly") and hold in ("recvonly", "sendrecv")
    return {(True, True): "sendrecv", (True, False): "sendonly", (False, True): "recvonly"}.get((send, recv),
                                                                                              "inactive")


def build_sdp(address: str, port: int, *, session_id: int, version: int = 1,
              codecs: list[tuple[str, int]] | None = None, telephone_event_pt: int | None = DEFAULT_TE_PT,
              direction: str = "sendrecv", user: str = "hotline") -> bytes:
    """An SDP body. ``codecs`` is a list of (name, payload type); default offers PCMU then PCMA."""
    codecs = codecs if codecs is not None else [("PCMU", 0), ("PCMA", 8)]
    ip = "IP6" if ":" in address else "IP4"
    pts = [str(pt) for _, pt in codecs]
    if telephone_event_pt is not None:
        pts.append(str(telephone_event_pt))
    lines = [
        "v=0",
        f"o={user} {session_id} {version} IN {ip} {address}",
        f"s={user}",
        f"c=IN {ip} {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(pts)}",
    ]
    lines += [f"a=rtpmap:{pt} {name}/8000" for name, pt in codecs]
    if telephone_event_pt is not None:
        lines += [f"a=rtpmap:{telephone_event_pt} telephone-event/8000", f"a=fmtp:{telephone_event_pt} 0-16"]
    lines += ["a=ptime:20", f"a={direction}"]
    return ("\r\n".join(lines) + "\r\n").encode()
