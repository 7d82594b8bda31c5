"""SIP message parsing and serialisation (RFC 3261), pure and strict.

Malformed input raises :class:`ParseError`; nothing here touches sockets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "NameAddr",
    "ParseError",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "Via",
    "parse_cseq",
    "parse_message",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
    "split_header_values",
]

MAX_MESSAGE = 65535
MAX_HEADER_LINES = 256  # more is an attack, not a proxy chain: refused before decoding (no 400 echoing them)

COMPACT = {
    "v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact", "l": "Content-Length",
    "c": "Content-Type", "k": "Supported", "s": "Subject", "e": "Content-Encoding", "o": "Event",
    "r": "Refer-To", "u": "Allow-Events", "b": "Referred-By", "x": "Session-Expires",
}
_CANON = {n.lower(): n for n in (
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Content-Length", "Content-Type", "Max-Forwards",
    "Record-Route", "Route", "User-Agent", "Server", "Allow", "Supported", "Accept", "Event", "Refer-To",
    "Subject", "Content-Encoding", "Allow-Events", "Referred-By", "Session-Expires", "Require",
    "Proxy-Require", "Unsupported", "Expires", "Reason", "Warning", "WWW-Authenticate", "Authorization",
    "Proxy-Authenticate", "Proxy-Authorization", "Retry-After", "Min-SE", "Date", "Timestamp",
)}
MULTI = frozenset({"Via", "Contact", "Record-Route", "Route", "Allow", "Supported", "Require", "Accept"})
_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_REQ_LINE = re.compile(r"^([A-Za-z0-9\-.!%*_+`'~]+) (\S+) SIP/2\.0$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+\-.]*:\S")
_RESP_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9]) ?(.*)$")


class ParseError(ValueError):
    """A SIP message (or one of its headers) is malformed.

    ``partial`` holds what could be read (start line and headers) so a 400 can still be answered.
    """

    def __init__(self, message: str, partial: SipMessage | None = None) -> None:
        super().__init__(message)
        self.partial = partial


def canonical(name: str) -> str:
    low = name.lower()
    if low in COMPACT:
        return COMPACT[low]
    if low in _CANON:
        return _CANON[low]
    return "-".join(p.capitalize() for p in name.split("-"))


@dataclass
class SipMessage:
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def get(self, name: str) -> str | None:
        name = canonical(name)
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        """All values of a header, comma-separated lists split (for Via, Route, ...)."""
        name = canonical(name)
        out: list[str] = []
        for k, v in self.headers:
            if k == name:
                out.extend(split_header_values(v) if name in MULTI else [v])
        return out

    def set(self, name: str, value: str) -> None:
        name = canonical(name)
        self.remove(name)
        self.headers.append((name, value))

    def add(self, name: str, value: str) -> None:
        self.headers.append((canonical(name), value))

    def remove(self, name: str) -> None:
        name = canonical(name)
        self.headers = [(k, v) for k, v in self.headers if k != name]

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.get("CSeq") or "")

    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        lines = [self._start_line()]
        for k, v in self.headers:
            if k != "Content-Length":
                lines.append(f"{k}: {v}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass
class SipRequest(SipMessage):
    method: str = "OPTIONS"
    uri: str = ""

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"


@dataclass
class SipResponse(SipMessage):
    status: int = 200
    reason: str = "OK"

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"


def split_header_values(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quotes and <...>."""
    out: list[str] = []
    cur: list[str] = []
    quote = False
    angle = False
    i = 0
    while i < len(value):
        ch = value[i]
        if quote:
            if ch == "\\" and i + 1 < len(value):
                cur.append(value[i : i + 2])
                i += 2
                continue
            if ch == '"':
                quote = False
        elif ch == '"':
            quote = True
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == "," and not angle:
            out.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    last = "".join(cur).strip()
    if last:
        out.append(last)
    return [v for v in out if v]


def _is_uint(text: str, max_digits: int) -> bool:
    """ASCII digits only, at most ``max_digits`` of them (str.isdigit() also accepts '²', which int() refuses,
    and int() refuses more than 4300 digits); leading zeros are allowed."""
    return 0 < len(text) <= 64 and len(text.lstrip("0")) <= max_digits and text.isascii() and text.isdigit()


def parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not _is_uint(parts[0], 10) or not _TOKEN.match(parts[1]):
        raise ParseError(f"bad CSeq: {value!r}")
    num = int(parts[0])
    if num >= 2**31:
        raise ParseError(f"CSeq number out of range: {value!r}")
    return num, parts[1].upper()


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one SIP datagram. Raises ParseError (with ``partial`` when headers could be read)."""
    if len(data) > MAX_MESSAGE:
        raise ParseError("message too large")
    sep = data.find(b"\r\n\r\n")
    if sep >= 0:
        head, body = data[:sep], data[sep + 4 :]
    else:
        sep = data.find(b"\n\n")
        if sep < 0:
            head, body = data.rstrip(b"\r\n"), b""
        else:
            head, body = data[:sep], data[sep + 2 :]
    if head.count(b"\n") > MAX_HEADER_LINES:
        raise ParseError(f"more than {MAX_HEADER_LINES} header lines")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError("headers are not UTF-8") from exc
    raw_lines = text.replace("\r\n", "\n").split("\n")
    while raw_lines and not raw_lines[0].strip():
        raw_lines.pop(0)  # RFC 3261 7.5: ignore leading CRLFs
    if not raw_lines:
        raise ParseError("empty message")
    start = raw_lines[0].strip()
    msg: SipRequest | SipResponse
    m = _REQ_LINE.match(start)
    if m:
        msg = SipRequest(method=m.group(1).upper(), uri=m.group(2))
        if ":" not in msg.uri:
            raise ParseError(f"bad request URI: {msg.uri!r}")
    else:
        m = _RESP_LINE.match(start)
        if not m:
            raise ParseError(f"bad start line: {start[:80]!r}")
        msg = SipResponse(status=int(m.group(1)), reason=m.group(2))
    # unfold continuation lines
    lines: list[str] = []
    for ln in raw_lines[1:]:
        if ln[:1] in (" ", "\t") and lines:
            lines[-1] += " " + ln.strip()
        else:
            lines.append(ln)
    problems: list[str] = []
    for ln in lines:
        if not ln.strip():
            continue
        name, colon, value = ln.partition(":")
        name = name.strip()
        if not colon or not name or not _TOKEN.match(name):
            problems.append(f"bad header line: {ln[:60]!r}")
            continue
        if any(c in value for c in "\r\x00"):
            # A lone CR or NUL would be echoed into our responses (header injection): refuse the message.
            problems.append(f"control character in header {name!r}")
            continue
        msg.headers.append((canonical(name), value.strip()))
    if sum(v.count(",") for k, v in msg.headers if k in MULTI) > MAX_HEADER_LINES:
        # a Via (Route, Contact ...) list of thousands of entries: refused whole, no 400 that would echo it
        raise ParseError(f"more than {MAX_HEADER_LINES} values in list headers")
    clen = msg.get("Content-Length")
    if clen is not None:
        if not _is_uint(clen.strip(), 10):
            problems.append(f"bad Content-Length: {clen!r}")
        else:
            n = int(clen)
            if n > len(body):
                problems.append(f"Content-Length {n} exceeds the {len(body)} bytes received")
            else:
                body = body[:n]
    msg.body = body
    for required in ("Via", "From", "To", "Call-ID", "CSeq"):
        if msg.get(required) is None:
            problems.append(f"missing {required}")
    if msg.get("CSeq") is not None:
        try:
            _num, method = parse_cseq(msg.get("CSeq") or "")
            if isinstance(msg, SipRequest) and method != msg.method:
                problems.append(f"CSeq method {method} does not match {msg.method}")
        except ParseError as exc:
            problems.append(str(exc))
    if msg.get("Via") is not None:
        try:
            parse_via(msg.get_all("Via")[0])
        except (ParseError, IndexError) as exc:
            problems.append(f"bad Via: {exc}")
    if problems:
        raise ParseError("; ".join(problems), partial=msg)
    return msg


# ---------------------------------------------------------------------------- URIs and name-addr


@dataclass
class SipUri:
    scheme: str
    user: str
    host: str
    port: int | None
    params: dict[str, str | None] = field(default_factory=dict)

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        return f"{self.scheme}:{user}{host}{port}{params}"


def _parse_params(text: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        k, eq, v = part.partition("=")
        out[k.strip().lower()] = v.strip() if eq else None
    return out


def parse_uri(uri: str) -> SipUri:
    uri = uri.strip()
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips", "tel"):
        raise ParseError(f"unsupported URI: {uri!r}")
    rest = rest.split("?", 1)[0]
    if scheme.lower() == "tel":
        num, _, params = rest.partition(";")
        return SipUri("tel", num, "", None, _parse_params(params))
    user = ""
    if "@" in rest:
        user, rest = rest.rsplit("@", 1)
        user = user.split(":", 1)[0]  # drop password
    hostport, _, params = rest.partition(";")
    port: int | None = None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ParseError(f"bad IPv6 host in {uri!r}")
        host = hostport[1:end]
        tail = hostport[end + 1 :]
        if tail.startswith(":"):
            port = _port(tail[1:], uri)
    else:
        host, c, p = hostport.partition(":")
        if c:
            port = _port(p, uri)
    if not host:
        raise ParseError(f"no host in URI {uri!r}")
    return SipUri(scheme.lower(), user, host, port, _parse_params(params))


def _port(text: str, where: str) -> int:
    if not _is_uint(text, 5) or not 0 < int(text) < 65536:
        raise ParseError(f"bad port in {where!r}")
    return int(text)


@dataclass
class NameAddr:
    display: str
    uri: str
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        disp = f'"{self.display}" ' if self.display else ""
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        return f"{disp}<{self.uri}>{params}"


def parse_name_addr(value: str) -> NameAddr:
    value = value.strip()
    if not value:
        raise ParseError("empty address")
    lt = value.find("<")
    if lt >= 0:
        gt = value.find(">", lt)
        if gt < 0:
            raise ParseError(f"unbalanced <> in {value!r}")
        display = value[:lt].strip().strip('"')
        uri = value[lt + 1 : gt].strip()
        params = _parse_params(value[gt + 1 :])
    else:
        display = ""
        uri, _, p = value.partition(";")
        params = _parse_params(p)
        uri = uri.strip()
    if not _SCHEME.match(uri):
        raise ParseError(f"bad URI in address {value!r}")
    return NameAddr(display, uri, params)


@dataclass
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str:
        return self.params.get("branch") or ""


def parse_via(value: str) -> Via:
    proto, _, rest = value.strip().partition(" ")
    parts = [p.strip() for p in proto.split("/")]
    if len(parts) != 3 or parts[0].upper() != "SIP" or not rest.strip():
        raise ParseError(f"bad Via: {value!r}")
    sent_by, _, params = rest.strip().partition(";")
    sent_by = sent_by.strip()
    port: int | None = None
    if sent_by.startswith("["):
        end = sent_by.find("]")
        host = sent_by[1:end]
        if sent_by[end + 1 : end + 2] == ":":
            port = _port(sent_by[end + 2 :], value)
    else:
        host, c, p = sent_by.partition(":")
        if c:
            port = _port(p.strip(), value)
    if not host:
        raise ParseError(f"bad Via host: {value!r}")
    return Via(parts[2].upper(), host.strip(), port, _parse_params(params))
