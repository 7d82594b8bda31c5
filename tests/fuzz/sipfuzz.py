"""Seeded input generators for the SIP/SDP/RTP fuzz tests: grammar-aware mutations of valid messages
and pure random bytes. Everything is driven by one ``random.Random`` so a seed reproduces a run.

Safety: generated INVITEs can become real calls on the endpoint under test, which then sends RTP to
the SDP address and BYE to the Contact/Record-Route target. :func:`stays_on_loopback` rejects every
datagram that would make the endpoint send (or resolve a name) anywhere but 127.0.0.0/8.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from telephony.sdp import SdpError, parse_sdp
from telephony.sip_message import ParseError, SipRequest, parse_message, parse_name_addr, parse_uri

MAX_UDP = 65507  # largest UDP payload over IPv4

# ---------------------------------------------------------------------------------------------- pieces

WEIRD_NUMBERS = [
    "", "-1", "0", "+5", "1.5", "0x10", "99999999999999999999", "2147483648", "4294967296", "1e3",
    "²", "١٢", "１２", "12 34", " 7 ", "\t", "9" * 5000, "0" * 300 + "1", "NaN", "∞",
]
WEIRD_TOKENS = [
    "", " ", ";", ",", "<", ">", "<>", '"', '"unterminated', "\\", "@", ":", "sip:", "sip:@", "sip::5060",
    "sip:a@[::1", "sip:a@[::1]:", "sip:a@host:0", "sip:a@host:65536", "sip:a@127.0.0.1:²", "tel:",
    "\x00", "\x00\x00\x00", "\x7f", "é", "中文", "\u2028", "\ufeff", "\ud7ff", "%00", "%%", "\r", "\x0b\x0c",
    "SIP/2.0/UDP", "SIP/2.0/UDP ", "SIP/2.0/UDP :5060", "SIP/2.0/UDP [::1", "SIP/UDP 127.0.0.1",
    "a" * 1000, "<" * 200, "," * 500, ";" * 500, "=" * 100, "tag=" * 50,
]
METHODS = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "REGISTER", "UPDATE", "PRACK", "FOO",
           "invite", "INV ITE", "", "INVITE\x00", "ÎNVITE", "SIP/2.0"]
HEADER_NAMES = ["Via", "v", "From", "f", "To", "t", "Call-ID", "i", "CSeq", "Contact", "m", "Content-Length",
                "l", "Content-Type", "c", "Max-Forwards", "Record-Route", "Route", "Require", "Supported",
                "X-Fuzz", "", " ", "Via ", "V\x00ia", "Ｖia", "Call_ID", "CSeq:", "a" * 300]


def rand_bytes(rng: random.Random, n: int) -> bytes:
    return rng.getrandbits(8 * n).to_bytes(n, "little") if n > 0 else b""


def rand_text(rng: random.Random, n: int) -> str:
    """Random characters from several planes (ASCII, Latin-1, CJK, controls), no surrogates."""
    pools = ["abcdefghijklmnopqrstuvwxyz0123456789", " \t;:,<>\"@=/.-_+*#%", "\x00\x01\x1f\x7f\x85",
             "éüßñÀÿ", "中文银行卡号", "\u2028\u2029\ufeff\u200b"]
    return "".join(rng.choice(rng.choice(pools)) for _ in range(n))


# ---------------------------------------------------------------------------------------------- valid SIP


@dataclass
class Msg:
    """A SIP message as a start line, an ordered header list and a body, for grammar-aware mutation."""

    start: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    eol: str = "\r\n"
    content_length: str | None = None  # None: the right value
    raw_lines: list[str] = field(default_factory=list)  # extra header lines written as they are

    def to_bytes(self, encoding: str = "utf-8") -> bytes:
        lines = [self.start] + [f"{k}: {v}" for k, v in self.headers] + self.raw_lines
        cl = str(len(self.body)) if self.content_length is None else self.content_length
        if self.content_length != "omit":
            lines.append(f"Content-Length: {cl}")
        head = self.eol.join(lines) + self.eol + self.eol
        return head.encode(encoding, "surrogateescape" if encoding == "utf-8" else "replace") + self.body


def valid_sdp(port: int, *, addr: str = "127.0.0.1", pts: str = "0 8 101") -> str:
    return (
        "v=0\r\n"
        f"o=fuzz 1 1 IN IP4 {addr}\r\n"
        "s=fuzz\r\n"
        f"c=IN IP4 {addr}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP {pts}\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
    )


def hold_sdp(port: int, rng: random.Random) -> str:
    """A re-INVITE's hold offer: sendonly, inactive, or the old-style c=0.0.0.0 (RFC 3264 8.4, RFC 2543)."""
    sdp = valid_sdp(port, pts="0 101")
    style = rng.choice(["sendonly", "inactive", "zero"])
    if style == "zero":
        return sdp.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0")
    return sdp.replace("a=sendrecv", f"a={style}")


def template(rng: random.Random, kind: str, *, target_port: int, my_port: int, call_id: str, rtp_port: int) -> Msg:
    """A well-formed SIP message of the given kind (a request method, 'INVITE-hold' for a re-INVITE putting the
    call on hold, or 'response')."""
    branch = f"z9hG4bK{rng.getrandbits(48):012x}"
    tag = f"{rng.getrandbits(32):08x}"
    uri = f"sip:hotline@127.0.0.1:{target_port}"
    via = f"SIP/2.0/UDP 127.0.0.1:{my_port};branch={branch};rport"
    frm = f'"Fuzz Caller" <sip:fuzz@127.0.0.1:{my_port}>;tag={tag}'
    if kind == "response":
        status = rng.choice([100, 180, 183, 200, 401, 486, 487, 500, 603])
        return Msg(f"SIP/2.0 {status} Whatever", [
            ("Via", via), ("From", frm), ("To", f"<{uri}>;tag=x{tag}"), ("Call-ID", call_id),
            ("CSeq", f"1 {rng.choice(['INVITE', 'BYE', 'OPTIONS', 'INFO'])}"),
            ("Contact", f"<sip:fuzz@127.0.0.1:{my_port}>")])
    method = "INVITE" if kind == "INVITE-hold" else kind
    in_dialog = kind in ("BYE", "INFO", "REFER", "NOTIFY", "INVITE-hold")
    to = f"<{uri}>" + (f";tag=t{tag}" if in_dialog or rng.random() < 0.1 else "")
    headers = [("Via", via), ("Max-Forwards", "70"), ("From", frm), ("To", to), ("Call-ID", call_id),
               ("CSeq", f"{rng.randint(1, 1000)} {method}"), ("Contact", f"<sip:fuzz@127.0.0.1:{my_port}>"),
               ("User-Agent", "hotline-fuzz")]
    body = b""
    if kind == "INVITE-hold":
        headers.append(("Content-Type", "application/sdp"))
        body = hold_sdp(rtp_port, rng).encode()
    elif method == "INVITE":
        headers.append(("Content-Type", "application/sdp"))
        body = valid_sdp(rtp_port).encode()
    elif method == "REFER":  # blind transfer (RFC 3515), sometimes with Replaces in the target (RFC 3891)
        target = rng.choice([f"<sip:agent@127.0.0.1:{my_port}>", f"sip:95555@127.0.0.1:{my_port}",
                             f"<sip:agent@127.0.0.1:{my_port}?Replaces={call_id}%3Bto-tag%3Dx%3Bfrom-tag%3Dy>"])
        headers += [("Refer-To", target), ("Referred-By", f"<sip:fuzz@127.0.0.1:{my_port}>")]
    elif method == "NOTIFY":  # the progress of a REFER (RFC 3515 2.4.5): a sipfrag body
        state = rng.choice(["active;expires=60", "terminated;reason=noresource", "pending"])
        headers += [("Event", rng.choice(["refer", "refer;id=1", "dialog"])), ("Subscription-State", state),
                    ("Content-Type", "message/sipfrag;version=2.0")]
        body = rng.choice([b"SIP/2.0 100 Trying\r\n", b"SIP/2.0 200 OK\r\n", b"SIP/2.0 486 Busy Here\r\n",
                           b"SIP/2.0 180 Ringing"])
    elif method == "INFO":
        headers.append(("Content-Type", rng.choice(["application/dtmf-relay", "application/dtmf"])))
        body = rng.choice([b"Signal=5\r\nDuration=160\r\n", b"5", b"11"])
    return Msg(f"{method} {uri} SIP/2.0", headers, body)


# ---------------------------------------------------------------------------------------------- mutations


def _mut_start_line(rng: random.Random, m: Msg) -> None:
    parts = m.start.split(" ")
    choice = rng.randrange(9)
    if choice == 0:
        version = rng.choice(["SIP/1.0", "SIP/2.1", "sip/2.0", "SIP/2.0 ", "SIP/", "HTTP/1.1"])
        m.start = m.start.replace("SIP/2.0", version)
    elif choice == 1 and len(parts) >= 2:
        parts[0] = rng.choice(METHODS)
        m.start = " ".join(parts)
    elif choice == 2 and len(parts) >= 2:
        parts[1] = rng.choice([*WEIRD_TOKENS, "hotline", "sip:", "http://x", "sip:hotline@127.0.0.1:5060"])
        m.start = " ".join(parts)
    elif choice == 3:
        m.start = m.start.replace(" ", rng.choice(["", "  ", "\t", " \x00 "]), 1)
    elif choice == 4:
        m.start = m.start[: rng.randrange(len(m.start) + 1)]
    elif choice == 5:
        m.start = rand_text(rng, rng.randrange(1, 80))
    elif choice == 6:
        m.start = f"SIP/2.0 {rng.choice([*WEIRD_NUMBERS, '099', '700', '20', '2000'])} {rand_text(rng, 5)}"
    elif choice == 7:
        m.start = "\r\n" * rng.randrange(1, 4) + m.start  # leading CRLFs are legal
    else:
        m.start = m.start + rng.choice([" extra", "\x00", " SIP/2.0", "é"])


def _mut_header_value(rng: random.Random, m: Msg) -> None:
    if not m.headers:
        return
    i = rng.randrange(len(m.headers))
    name, value = m.headers[i]
    low = name.lower()
    if low == "cseq":
        num, _, meth = value.partition(" ")
        value = rng.choice([
            f"{rng.choice(WEIRD_NUMBERS)} {meth}", f"{num} {rng.choice(METHODS)}", num, meth, f"{num}  {meth}",
            f"{num} {meth} extra", f"-{num} {meth}", f"{2**31} {meth}", f"{num}{meth}",
        ])
    elif low == "via":
        value = rng.choice([
            value.replace("branch=", "branch"), value.split(";")[0], value.replace("SIP/2.0/UDP", "SIP/2.0"),
            value.replace("127.0.0.1:", "127.0.0.1:" + rng.choice(WEIRD_NUMBERS)), "SIP/2.0/UDP [::1",
            value.replace("127.0.0.1", ""), value + ";" + "x" * rng.randrange(1, 3000), ",", ", ,",
            value + ", " + rng.choice(WEIRD_TOKENS), value.replace("z9hG4bK", ""), "SIP/2.0/TCP " + value[12:],
        ])
    elif low in ("from", "to", "contact", "record-route", "route"):
        value = rng.choice([
            value.replace("<", ""), value.replace(">", ""), value.replace("sip:", ""), value + ";tag",
            value + ";tag=", value.replace(";tag=", ";tag=;tag="), '"' + value, rng.choice(WEIRD_TOKENS),
            value.replace("127.0.0.1:", "127.0.0.1:" + rng.choice(WEIRD_NUMBERS)), "*", value + "," + value,
            value.replace("127.0.0.1", "[::1"), value.replace("fuzz@", "fuzz:pw@@"),
        ])
    elif low == "content-type":
        value = rng.choice(["application/sdp; charset=\x00", "", "text/plain", "application/SDP", "a" * 2000,
                            "application/dtmf-relay", "application/dtmf", "multipart/mixed;boundary=x"])
    else:
        value = rng.choice([rng.choice(WEIRD_TOKENS), rand_text(rng, rng.randrange(0, 200)),
                            rng.choice(WEIRD_NUMBERS)])
    m.headers[i] = (name, value)


def _mut_headers(rng: random.Random, m: Msg) -> None:
    choice = rng.randrange(9)
    if choice == 0 and m.headers:  # drop one
        del m.headers[rng.randrange(len(m.headers))]
    elif choice == 1 and m.headers:  # duplicate one
        m.headers.insert(rng.randrange(len(m.headers) + 1), rng.choice(m.headers))
    elif choice == 2:  # strange header name
        m.headers.insert(rng.randrange(len(m.headers) + 1), (rng.choice(HEADER_NAMES), rng.choice(WEIRD_TOKENS)))
    elif choice == 3 and m.headers:  # compact / case games
        i = rng.randrange(len(m.headers))
        name, value = m.headers[i]
        m.headers[i] = (rng.choice([name.upper(), name.lower(), name[:1], name + " ", " " + name]), value)
    elif choice == 4:  # folding / continuation lines
        if m.headers:
            i = rng.randrange(len(m.headers))
            name, value = m.headers[i]
            m.headers[i] = (name, value.replace(" ", m.eol + rng.choice([" ", "\t", ""]), 1))
    elif choice == 5:  # many headers
        n = rng.choice([50, 500, 3000])
        m.headers += [(rng.choice(["Via", "X-Many", "Route"]), f"SIP/2.0/UDP 127.0.0.1:{5000 + k}") for k in range(n)]
    elif choice == 6:  # one oversized header
        m.headers.append(("X-Big", "x" * rng.choice([1000, 16000, 64000])))
    elif choice == 7:  # a line with no colon, or an empty line in the middle of the headers
        m.raw_lines.append(rng.choice([rand_text(rng, 20).replace(":", ""), "", " ", "NoColonHere", ":"]))
    else:
        rng.shuffle(m.headers)


INJECTIONS = ["\rX-Injected: 1", "\x00X-Injected: 1", "\r\rX-Injected: 1", "\u2028X-Injected: 1",
              "\x85X-Injected: 1", "%0d%0aX-Injected: 1", "\x0bX-Injected: 1", "\x0cX-Injected: 1",
              "\r\n\r\nX-Injected: 1", "\nX-Injected: 1"]


def _mut_injection(rng: random.Random, m: Msg) -> None:
    """Header injection: line breaks and look-alikes inside the values we copy into our responses."""
    echoed = [i for i, (k, _v) in enumerate(m.headers) if k.lower() in ("via", "from", "to", "call-id", "cseq",
                                                                         "v", "f", "t", "i")]
    if not echoed:
        return
    i = rng.choice(echoed)
    name, value = m.headers[i]
    cut = rng.randrange(len(value) + 1)
    m.headers[i] = (name, value[:cut] + rng.choice(INJECTIONS) + value[cut:])


def _mut_content_length(rng: random.Random, m: Msg) -> None:
    n = len(m.body)
    m.content_length = rng.choice([str(n + rng.randrange(1, 100000)), str(max(0, n - rng.randrange(1, 50))), "-1",
                                   "omit", "abc", " ", "²", "１０", "9" * 5000, str(2**64), f"{n}, {n}",
                                   f"{n} ", "0x10", "00000000000000000000" + str(n)])


def _mut_body(rng: random.Random, m: Msg) -> None:
    choice = rng.randrange(6)
    if choice == 0:
        sdp = mutate_sdp(rng, m.body.decode("utf-8", "replace") or valid_sdp(4000))
        m.body = sdp.encode("utf-8", "surrogateescape")
    elif choice == 1:
        m.body = rand_bytes(rng, rng.randrange(0, 2000))
    elif choice == 2:
        m.body = b"x" * rng.choice([20000, 60000, MAX_UDP - 600])  # oversized: near the 64 KB datagram limit
    elif choice == 3:
        m.body = m.body.decode("utf-8", "replace").encode("utf-16")
    elif choice == 4:
        m.body = m.body[: rng.randrange(len(m.body) + 1)]
    else:
        m.body = m.body + b"\x00" * rng.randrange(1, 100)


def _mut_encoding(rng: random.Random, m: Msg) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:  # Latin-1 display name (invalid UTF-8)
        m.headers = [(k, v.replace("Fuzz Caller", "Zoë Müller")) for k, v in m.headers]
        return m.to_bytes("latin-1")
    if choice == 1:  # UTF-16
        return m.to_bytes().decode("utf-8", "replace").encode("utf-16")
    data = bytearray(m.to_bytes())
    if choice == 2:  # invalid UTF-8 sequences inside the headers
        for _ in range(rng.randrange(1, 5)):
            pos = rng.randrange(max(1, data.find(b"\r\n\r\n")))
            data[pos:pos] = rng.choice([b"\xff", b"\xc3", b"\xe4\xb8", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80"])
        return bytes(data)
    if choice == 3:  # NULs
        for _ in range(rng.randrange(1, 10)):
            data.insert(rng.randrange(len(data) + 1), 0)
        return bytes(data)
    return bytes(data).replace(b"\r\n", rng.choice([b"\n", b"\r", b"\n\r", b"\r\r\n"]))


def mutate_sip(rng: random.Random, m: Msg) -> bytes:
    """Apply 1-3 grammar-aware mutations (and sometimes a byte-level one) to a valid message."""
    if rng.random() < 0.1:
        m.eol = rng.choice(["\n", "\r", "\n\r"])
    for _ in range(rng.randint(1, 3)):
        rng.choice([_mut_start_line, _mut_header_value, _mut_header_value, _mut_headers, _mut_content_length,
                    _mut_body, _mut_injection])(rng, m)
    data = _mut_encoding(rng, m) if rng.random() < 0.2 else m.to_bytes()
    if rng.random() < 0.3:
        data = mutate_bytes(rng, data)
    return data[:MAX_UDP]


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """Byte-level mutations: truncation, bit flips, insertion, deletion, duplication."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            buf += rand_bytes(rng, rng.randrange(1, 40))
            continue
        choice = rng.randrange(6)
        pos = rng.randrange(len(buf))
        if choice == 0:
            del buf[pos:]
        elif choice == 1:
            buf[pos] ^= 1 << rng.randrange(8)
        elif choice == 2:
            buf[pos:pos] = rand_bytes(rng, rng.randrange(1, 20))
        elif choice == 3:
            del buf[pos : pos + rng.randrange(1, 50)]
        elif choice == 4:
            end = min(len(buf), pos + rng.randrange(1, 200))
            buf[pos:pos] = buf[pos:end] * rng.randrange(1, 5)
        else:
            buf[pos] = rng.choice(b"\x00\r\n:;,<>\" \t\xff")
    return bytes(buf[:MAX_UDP])


# ---------------------------------------------------------------------------------------------- SDP


def mutate_sdp(rng: random.Random, sdp: str) -> str:
    lines = sdp.replace("\r\n", "\n").strip("\n").split("\n")
    for _ in range(rng.randint(1, 3)):
        choice = rng.randrange(12)
        i = rng.randrange(len(lines)) if lines else 0
        if choice == 0 and lines:
            del lines[i]
        elif choice == 1:
            lines.insert(i, rng.choice(["v=0", "x", "=", "m=", "c=", "a=", "a=rtpmap:", "m=audio", "c=IN",
                                        "m=video 5000 RTP/AVP 96", "a=sendonly", "a=inactive", "b=AS:64", "\x00=\x00"]))
        elif choice == 2:
            lines = [ln.replace("m=audio", rng.choice(["m=audio", "m=video", "m=AUDIO"])) if ln.startswith("m=") else ln
                     for ln in lines]
            lines = [f"m=audio {rng.choice([*WEIRD_NUMBERS, '0', '65536', '70000', '5000/2'])} RTP/AVP 0 8 101"
                     if ln.startswith("m=") and rng.random() < 0.7 else ln for ln in lines]
        elif choice == 3:
            lines = [f"m=audio 4000 RTP/AVP {rng.choice(['', '0 8 128', '-1', '0 x', '96 97', '²', '9' * 5000, '8'])}"
                     if ln.startswith("m=") else ln for ln in lines]
        elif choice == 4:
            conn = rng.choice(["IN IP4", "IN IP4 ", "IN IP6 ::1", "IN IP4 127.0.0.1/127", "IN IP4 999.1.1.1",
                               "IN IP4 x", "IN IP7 127.0.0.1", "IN IP4 0.0.0.0", "IN IP4 127.0.0.1 extra"])
            lines = [f"c={conn}" if ln.startswith("c=") else ln for ln in lines]
        elif choice == 5:
            lines.append(rng.choice(["a=rtpmap:0", "a=rtpmap:x PCMU/8000", "a=rtpmap:0 PCMU", "a=rtpmap:0 PCMU/x",
                                     "a=rtpmap:101 telephone-event/²", "a=rtpmap:0 PCMU/" + "9" * 5000, "a=ptime:²",
                                     "a=ptime:" + "9" * 5000, "a=ptime:-20", "a=rtpmap:1" + "0" * 5000 + " PCMU/8000",
                                     "a=rtpmap:0 PCMU/8000/1/2/3", "a=rtpmap: PCMU/8000"]))
        elif choice == 6:
            lines = [ln.replace("=", rng.choice(["", " =", "= ", "=="]), 1) if rng.random() < 0.2 else ln
                     for ln in lines]
        elif choice == 7 and lines:
            lines[i] = rand_text(rng, rng.randrange(0, 60))
        elif choice == 8:
            lines = lines + lines * rng.randrange(1, 30)  # several m= lines, long SDP
        elif choice == 9 and lines:
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
        elif choice == 10:
            lines.insert(0, rng.choice(["", "\ufeff", "v=1", "o=x"]))
        else:
            rng.shuffle(lines)
    return rng.choice(["\r\n", "\n", "\r"]).join(lines) + rng.choice(["\r\n", "", "\n\n"])


# ---------------------------------------------------------------------------------------------- RTP


def valid_rtp(rng: random.Random, pt: int = 0) -> bytes:
    if pt == 101:
        payload = struct.pack("!BBH", rng.randrange(16), rng.choice([0x0A, 0x8A]), rng.randrange(0, 2000))
    else:
        payload = rand_bytes(rng, 160)
    return struct.pack("!BBHII", 0x80, pt | (0x80 if rng.random() < 0.05 else 0), rng.getrandbits(16),
                       rng.getrandbits(32), rng.getrandbits(32)) + payload


def mutate_rtp(rng: random.Random, pt: int) -> bytes:
    """Broken RTP: bad versions, CSRC counts, extension lengths, padding, sizes, payload types."""
    pkt = bytearray(valid_rtp(rng, rng.choice([pt, pt, 101, rng.randrange(128)])))
    choice = rng.randrange(11)
    if choice == 0:  # version 0, 1, 3
        pkt[0] = (pkt[0] & 0x3F) | (rng.choice([0, 1, 3]) << 6)
    elif choice == 1:  # CSRC count larger than the packet
        pkt[0] = (pkt[0] & 0xF0) | rng.randrange(1, 16)
        del pkt[12 + rng.randrange(0, 64) :]
    elif choice == 2:  # extension with a bogus length
        pkt[0] |= 0x10
        pkt[12:12] = struct.pack("!HH", 0xBEDE, rng.choice([0, 1, 40, 0xFFFF]))
        del pkt[rng.randrange(12, len(pkt) + 1) :]
    elif choice == 3:  # padding bit with a pad count too large, zero, or exact
        pkt[0] |= 0x20
        pkt[-1] = rng.choice([0, 1, 255, len(pkt) - 12, len(pkt)])
    elif choice == 4:  # shorter than the fixed header
        del pkt[rng.randrange(0, 12) :]
    elif choice == 5:  # no payload / odd payload sizes (partial frames)
        del pkt[12 + rng.choice([0, 1, 3, 80, 159, 161]) :]
    elif choice == 6:  # huge payload (near 64 KB)
        pkt += rand_bytes(rng, rng.choice([1000, 8000, MAX_UDP - len(pkt)]))
    elif choice == 7:  # everything at once
        pkt[0] = rng.getrandbits(8)
    elif choice == 8:  # telephone-event with short or odd payloads
        pkt[1] = 101
        del pkt[12 + rng.randrange(0, 5) :]
    elif choice == 9:
        return mutate_bytes(rng, bytes(pkt))
    else:
        return rand_bytes(rng, rng.randrange(0, 300))
    return bytes(pkt[:MAX_UDP])


# ---------------------------------------------------------------------------------------------- random


def random_datagram(rng: random.Random) -> bytes:
    n = rng.choice([0, 1, 2, 4, 12, 50, 200, 1400, rng.randrange(1, 3000), MAX_UDP])
    if rng.random() < 0.3:
        return rand_text(rng, n // 2).encode("utf-8")[:MAX_UDP]
    return rand_bytes(rng, n)


# ---------------------------------------------------------------------------------------------- safety


def _loopback_host(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def stays_on_loopback(data: bytes, sip_ports: frozenset[int], rtp_ports: frozenset[int]) -> bool:
    """False for a datagram the endpoint could turn into traffic (or a DNS lookup) anywhere but our own
    sockets on 127.0.0.1: ``sip_ports`` (where in-dialog requests such as BYE may go) and ``rtp_ports``
    (where RTP may go).

    Uses the endpoint's own parsers: if they accept the INVITE, every target it could use (Contact,
    Record-Route, Route, the SDP connection address and port) must be one of our loopback sockets.
    """
    try:
        msg = parse_message(data)
    except Exception:  # ParseError (or a parser bug): the endpoint drops it or answers 400 to the source
        return True
    if not isinstance(msg, SipRequest) or msg.method != "INVITE":
        return True  # responses go to the source address; other requests open no dialog
    for value in msg.get_all("Contact") + msg.get_all("Record-Route") + msg.get_all("Route"):
        try:
            uri = parse_uri(parse_name_addr(value).uri)
        except ParseError:
            continue
        except Exception:  # a parser bug: be conservative, do not send it
            return False
        if uri.host and not (_loopback_host(uri.host) and (uri.port or 5060) in sip_ports):
            return False
    if msg.body:
        try:
            md = parse_sdp(msg.body)
        except SdpError:
            return True
        except Exception:
            return False
        if not (_loopback_host(md.address) and md.port in rtp_ports):
            return False
    return True


Generator = Callable[[random.Random], bytes]
