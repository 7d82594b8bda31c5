"""Pure protocol pieces: SIP parser, SDP offer/answer, G.711, RTP, DTMF, retransmission timers."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import numpy as np
import pytest

from telephony import g711
from telephony.dtmf import DtmfReceiver, DtmfSender, TelephoneEvent, parse_info_body
from telephony.rtp import RtpError, RtpPacket
from telephony.sdp import NoCommonCodec, SdpError, build_sdp, negotiate, parse_sdp
from telephony.sip_message import (
    ParseError,
    SipRequest,
    SipResponse,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
    split_header_values,
)
from telephony.transaction import Retransmitter

pytestmark = pytest.mark.timeout(20)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # reference implementation for the G.711 tables

INVITE = (
    "INVITE sip:hotline@127.0.0.1:5080 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport\r\n"
    "v: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK-0\r\n"
    "Max-Forwards: 70\r\n"
    'f: "Alice Smith" <sip:alice@127.0.0.1:5061>;tag=abc\r\n'
    "t: <sip:hotline@127.0.0.1:5080>\r\n"
    "i: call-1@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "m: <sip:alice@127.0.0.1:5061;transport=udp>\r\n"
    "Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n"
    "Subject: folded\r\n"
    "  header\r\n"
    "c: application/sdp\r\n"
    "l: 4\r\n"
    "\r\n"
    "v=0\r\nignored"
)


def test_parse_request_compact_forms_folding_and_content_length() -> None:
    msg = parse_message(INVITE.encode())
    assert isinstance(msg, SipRequest)
    assert msg.method == "INVITE" and msg.uri == "sip:hotline@127.0.0.1:5080"
    assert msg.call_id == "call-1@127.0.0.1"
    assert msg.cseq == (1, "INVITE")
    assert len(msg.get_all("Via")) == 2
    assert msg.get_all("Record-Route") == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    assert msg.get("Subject") == "folded header"
    assert msg.body == b"v=0\r"  # Content-Length is honoured
    frm = parse_name_addr(msg.get("From") or "")
    assert frm.display == "Alice Smith" and frm.tag == "abc"
    assert parse_uri(frm.uri).user == "alice"


def test_serialise_round_trip() -> None:
    msg = parse_message(INVITE.encode())
    again = parse_message(msg.to_bytes())
    assert isinstance(again, SipRequest)
    assert again.call_id == msg.call_id and again.get_all("Via") == msg.get_all("Via")
    assert again.get("Subject") == "folded header"
    assert again.body == msg.body


def test_parse_response() -> None:
    raw = ("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@h>;tag=1\r\n"
           "To: <sip:b@h>;tag=2\r\nCall-ID: x\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n")
    msg = parse_message(raw.encode())
    assert isinstance(msg, SipResponse) and msg.status == 180 and msg.reason == "Ringing"
    assert msg.cseq == (7, "INVITE")


@pytest.mark.parametrize("raw", [
    b"",
    b"\x00\xff\xfe garbage",
    b"HELLO WORLD\r\n\r\n",
    b"INVITE sip:x SIP/3.0\r\n\r\n",
    INVITE.replace("CSeq: 1 INVITE", "CSeq: one INVITE").encode(),
    INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE").encode(),
    INVITE.replace("i: call-1@127.0.0.1\r\n", "").encode(),
    INVITE.replace("l: 4", "l: 400").encode(),
    INVITE.replace("l: 4", "l: x").encode(),
    INVITE.replace("Via: SIP/2.0/UDP 127.0.0.1:5061", "Via: junk").encode(),
    b"SIP/2.0 999 Nope\r\n\r\n",
    bytes(range(256)) * 4,
    b"INVITE sip:a@b SIP/2.0\r\n" + b"X-Long: " + b"a" * 70000 + b"\r\n\r\n",
    # a lone CR (header injection into our responses) or a NUL inside a header value
    INVITE.replace("i: call-1@127.0.0.1", "i: call-1@127.0.0.1\rX-Injected: yes").encode(),
    INVITE.replace("i: call-1@127.0.0.1", "i: call-1\x00@127.0.0.1").encode(),
])
def test_malformed_input_raises_parse_error(raw: bytes) -> None:
    with pytest.raises(ParseError):
        parse_message(raw)


def test_parse_error_keeps_partial_for_a_400() -> None:
    with pytest.raises(ParseError) as ei:
        parse_message(INVITE.replace("CSeq: 1 INVITE", "CSeq: x").encode())
    assert isinstance(ei.value.partial, SipRequest) and ei.value.partial.get("Via")


def test_header_helpers() -> None:
    assert split_header_values('"a, b" <sip:x>, <sip:y;p=1,2>') == ['"a, b" <sip:x>', "<sip:y;p=1,2>"]
    via = parse_via("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc;rport")
    assert via.host == "127.0.0.1" and via.port == 5060 and via.branch == "z9hG4bKabc" and "rport" in via.params
    uri = parse_uri("sip:bob:pw@[::1]:5070;transport=udp")
    assert uri.user == "bob" and uri.host == "::1" and uri.port == 5070 and uri.params["transport"] == "udp"
    for bad in ("http://x", "sip:", "sip:a@h:99999"):
        with pytest.raises(ParseError):
            parse_uri(bad)
    with pytest.raises(ParseError):
        parse_name_addr("<sip:a@b")


OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 8 0 121\r\na=rtpmap:121 telephone-event/8000\r\na=fmtp:121 0-16\r\na=sendrecv\r\n"
)


def test_sdp_answer_uses_offerers_preference_and_event_pt() -> None:
    md = parse_sdp(OFFER.encode())
    assert (md.address, md.port, md.payload_types) == ("127.0.0.1", 4000, [8, 0, 121])
    neg = negotiate(md)
    assert neg.codec == "PCMA" and neg.payload_type == 8 and neg.telephone_event_pt == 121
    ans = parse_sdp(build_sdp("127.0.0.1", 5000, session_id=1, codecs=[("PCMA", 8)], telephone_event_pt=121))
    assert ans.payload_types == [8, 121] and ans.telephone_event_pt == 121


def test_sdp_no_common_codec_and_malformed() -> None:
    with pytest.raises(NoCommonCodec):
        negotiate(parse_sdp(OFFER.replace("8 0 121", "9 18").encode()))
    for bad in ("", "x=1", OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 not-an-ip"),
                OFFER.replace("m=audio 4000", "m=audio x"), "v=0\r\nm=video 1 RTP/AVP 96\r\n"):
        with pytest.raises(SdpError):
            parse_sdp(bad)


def test_g711_matches_reference_tables() -> None:
    pcm = np.arange(-32768, 32768, dtype="<i2").tobytes()
    assert g711.ulaw_encode(pcm) == audioop.lin2ulaw(pcm, 2)
    assert g711.alaw_encode(pcm) == audioop.lin2alaw(pcm, 2)
    all_codes = bytes(range(256))
    assert g711.ulaw_decode(all_codes) == audioop.ulaw2lin(all_codes, 2)
    assert g711.alaw_decode(all_codes) == audioop.alaw2lin(all_codes, 2)
    # known values: silence and full scale
    assert g711.ulaw_encode(b"\x00\x00") == b"\xff" and g711.alaw_encode(b"\x00\x00") == b"\xd5"
    assert g711.ulaw_encode(np.array([32767], "<i2").tobytes()) == b"\x80"


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_g711_round_trip_error_is_small(codec: str) -> None:
    t = np.arange(1600) / 8000
    x = (10000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    y = np.frombuffer(g711.decode(codec, g711.encode(codec, x.tobytes())), "<i2")
    snr = 10 * np.log10(np.sum(x.astype(float) ** 2) / np.sum((x.astype(float) - y) ** 2))
    assert snr > 30


def test_rtp_round_trip_and_errors() -> None:
    p = RtpPacket(0, 65535, 2**32 - 1, 1234, b"\xff" * 160, marker=True)
    q = RtpPacket.parse(p.to_bytes())
    assert q == p
    csrc_ext = bytes([0x91, 8, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]) + b"\0\0\0\5" + b"\xbe\xde\x00\x01abcd" + b"PAY"
    r = RtpPacket.parse(csrc_ext)
    assert r.payload == b"PAY" and r.payload_type == 8
    for bad in (b"", b"\x00" * 12, bytes([0x8F]) + b"\0" * 11):
        with pytest.raises(RtpError):
            RtpPacket.parse(bad)


def test_dtmf_send_schedule() -> None:
    s = DtmfSender("5", duration_ms=100)
    pkts = []
    while (n := s.next_packet()) is not None:
        pkts.append((TelephoneEvent.parse(n[0]), n[1]))
    assert [p[1] for p in pkts] == [True] + [False] * 6
    assert [p[0].duration for p in pkts] == [160, 320, 480, 640, 800, 800, 800]
    assert [p[0].end for p in pkts] == [False] * 4 + [True] * 3
    assert all(p[0].event == 5 for p in pkts)


def test_dtmf_receiver_deduplicates_retransmitted_end_packets() -> None:
    rx = DtmfReceiver()
    got = []
    for ts in (1000, 5000):
        s = DtmfSender("#" if ts == 1000 else "7")
        while (n := s.next_packet()) is not None:
            d = rx.feed(ts, n[0])
            if d:
                got.append(d)
        # a late retransmission of the end packet
        assert rx.feed(ts, TelephoneEvent(11, True, 10, 800).to_bytes()) is None
    assert got == ["#", "7"]
    assert rx.feed(9, b"\x01") is None  # short payload ignored


def test_info_bodies() -> None:
    assert parse_info_body("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n") == "5"
    assert parse_info_body("application/dtmf-relay", b"Signal=11\r\n") == "#"
    assert parse_info_body("application/dtmf", b"*") == "*"
    assert parse_info_body("application/dtmf-relay", b"Signal=Z") is None
    assert parse_info_body("text/plain", b"5") is None


async def test_retransmitter_doubles_then_caps_then_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """The schedule is read from the delays handed to the loop, not from wall-clock gaps, which a
    busy 2-core CI machine stretches (a 10 ms timer once fired after 20 ms)."""
    sent: list[bytes] = []
    delays: list[float] = []
    loop = asyncio.get_running_loop()
    call_later = loop.call_later

    def recording_call_later(delay: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        if isinstance(getattr(callback, "__self__", None), Retransmitter):  # not wait_for's own timer
            delays.append(delay)
        return call_later(delay, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_later", recording_call_later)
    done = asyncio.Event()
    started = loop.time()
    Retransmitter(lambda d, a: sent.append(d), b"x", ("127.0.0.1", 9), t1=0.01, cap=0.04,
                  on_timeout=done.set)
    await asyncio.wait_for(done.wait(), 5)
    took = loop.time() - started
    # T1, 2*T1, 4*T1, then capped at T2 until 64*T1 (0.64 s) has been scheduled
    assert delays[:4] == [0.01, 0.02, 0.04, 0.04] and max(delays) == 0.04
    assert sum(delays) == pytest.approx(0.67) and sum(delays[:-1]) < 0.64
    assert len(sent) == len(delays)  # the first send, then one per timer that did not time out
    assert took >= 0.64
