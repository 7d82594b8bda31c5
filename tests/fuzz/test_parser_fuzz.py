"""Pure parser fuzz: 50 000+ seeded inputs to the SIP, SDP, RTP and DTMF parsers.

Each parser may only raise its own error type (ParseError, SdpError, RtpError); anything else
(IndexError, KeyError, UnicodeError, a bare ValueError from int(), ...) is a bug. Reproduce a failure
with the printed seed and input index: ``FUZZ_SEED=<seed> pytest tests/fuzz/test_parser_fuzz.py``.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from fuzz.sipfuzz import (
    mutate_bytes,
    mutate_rtp,
    mutate_sdp,
    mutate_sip,
    rand_text,
    random_datagram,
    template,
    valid_sdp,
)

from telephony.dtmf import TelephoneEvent, parse_info_body
from telephony.rtp import RtpError, RtpPacket
from telephony.sdp import SdpError, negotiate, parse_sdp
from telephony.sip_message import (
    ParseError,
    SipRequest,
    parse_cseq,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
    split_header_values,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

SEED = int(os.environ.get("FUZZ_SEED", "20261122"))
SIP_KINDS = ["INVITE", "INVITE", "BYE", "OPTIONS", "INFO", "ACK", "CANCEL", "REGISTER", "REFER", "NOTIFY",
             "INVITE-hold", "response"]


def _sip_input(rng: random.Random, i: int) -> bytes:
    if i % 10 == 0:
        return random_datagram(rng)
    m = template(rng, rng.choice(SIP_KINDS), target_port=5080, my_port=5999, call_id=f"pf-{i}", rtp_port=4000)
    if i % 10 == 1:
        return m.to_bytes()  # valid ones must keep parsing
    return mutate_sip(rng, m)


class Failures:
    """Collects unexpected exceptions (first few per type) instead of stopping at the first."""

    def __init__(self) -> None:
        self.by_kind: Counter[str] = Counter()
        self.examples: list[str] = []

    def add(self, where: str, exc: BaseException, data: object) -> None:
        key = f"{where}: {type(exc).__name__}"
        self.by_kind[key] += 1
        if self.by_kind[key] <= 2:
            self.examples.append(f"{key}: {exc!s:.120} <- {data!r:.300}")

    def check(self) -> None:
        assert not self.by_kind, "unexpected exceptions:\n" + "\n".join(self.examples)


def _expect_only(fails: Failures, where: str, allowed: type[BaseException] | tuple[type[BaseException], ...],
                 fn: Callable[..., object], *args: Any) -> bool:
    """Call fn(*args); True if it returned, False if it raised an allowed error; other errors are recorded."""
    try:
        fn(*args)
        return True
    except allowed:
        return False
    except Exception as exc:
        fails.add(where, exc, args)
        return False


def test_parsers_raise_only_their_own_errors() -> None:
    rng = random.Random(SEED)
    fails = Failures()
    counts: Counter[str] = Counter()
    t0 = time.monotonic()

    # SIP: 25 000 whole messages, plus every header value of those through the header parsers
    for i in range(25_000):
        data = _sip_input(rng, i)
        counts["sip"] += 1
        try:
            msg = parse_message(data)
        except ParseError as exc:
            msg = exc.partial  # type: ignore[assignment]
            counts["sip rejected"] += 1
        except Exception as exc:
            fails.add("parse_message", exc, data)
            continue
        else:
            counts["sip accepted"] += 1
            _expect_only(fails, "to_bytes", (), msg.to_bytes)
            _expect_only(fails, "cseq", ParseError, parse_cseq, msg.get("CSeq") or "")
        if msg is None:
            continue
        for name, value in msg.headers:
            counts["sip header values"] += 1
            if name in ("From", "To", "Contact", "Record-Route", "Route"):
                for v in split_header_values(value) or [value]:
                    ok = _expect_only(fails, "parse_name_addr", ParseError, parse_name_addr, v)
                    if ok:
                        _expect_only(fails, "parse_uri", ParseError, parse_uri, parse_name_addr(v).uri)
            elif name == "Via":
                for v in split_header_values(value) or [value]:
                    _expect_only(fails, "parse_via", ParseError, parse_via, v)
            elif name == "CSeq":
                _expect_only(fails, "parse_cseq", ParseError, parse_cseq, value)
        if isinstance(msg, SipRequest):
            _expect_only(fails, "parse_uri(request-uri)", ParseError, parse_uri, msg.uri)

    # SDP: 15 000 bodies (mutated, random text, random bytes), negotiate() on what parses
    for i in range(15_000):
        r = i % 10
        if r == 0:
            body: bytes = random_datagram(rng)
        elif r == 1:
            body = rand_text(rng, rng.randrange(0, 400)).encode("utf-8")
        elif r == 2:
            body = valid_sdp(rng.randrange(1, 65536)).encode()
        elif r == 3:
            body = mutate_bytes(rng, valid_sdp(4000).encode())
        else:
            body = mutate_sdp(rng, valid_sdp(4000)).encode("utf-8", "surrogateescape")
        counts["sdp"] += 1
        try:
            md = parse_sdp(body)
        except SdpError:
            counts["sdp rejected"] += 1
            continue
        except Exception as exc:
            fails.add("parse_sdp", exc, body)
            continue
        counts["sdp accepted"] += 1
        _expect_only(fails, "negotiate", SdpError, negotiate, md)
        _expect_only(fails, "codec_pt", (), md.codec_pt, "PCMU")

    # RTP: 10 000 packets, and their payloads as telephone-events
    for i in range(10_000):
        pkt = random_datagram(rng) if i % 10 == 0 else mutate_rtp(rng, 0)
        counts["rtp"] += 1
        try:
            p = RtpPacket.parse(pkt)
        except RtpError:
            counts["rtp rejected"] += 1
            continue
        except Exception as exc:
            fails.add("RtpPacket.parse", exc, pkt[:64])
            continue
        counts["rtp accepted"] += 1
        _expect_only(fails, "TelephoneEvent.parse", ValueError, TelephoneEvent.parse, p.payload)

    # DTMF INFO bodies: 2 000, never an exception
    for _ in range(2_000):
        ctype = rng.choice(["application/dtmf-relay", "application/dtmf", "APPLICATION/DTMF; x=y", "text/plain"])
        body = rng.choice([
            rand_text(rng, rng.randrange(0, 30)).encode("utf-8"),
            f"Signal={rng.choice(['5', '10', '11', '²', '²³', 'x', '', '99', '١'])}\r\n".encode(),
            rng.choice(["²³", "١٢", "１２", "15", "16", "99", "#", "*"]).encode(),
            mutate_bytes(rng, b"Signal=5\r\nDuration=160\r\n"),
        ])
        counts["dtmf info"] += 1
        _expect_only(fails, "parse_info_body", (), parse_info_body, ctype, body)

    elapsed = time.monotonic() - t0
    total = counts["sip"] + counts["sdp"] + counts["rtp"] + counts["dtmf info"]
    print(f"\nparser fuzz seed={SEED}: {total} inputs in {elapsed:.1f} s; {dict(counts)}")
    fails.check()
    assert total >= 50_000
    assert counts["sip accepted"] > 1000 and counts["sdp accepted"] > 1000 and counts["rtp accepted"] > 1000
