"""CallLeg: one established call (dialog + RTP stream) as the rest of the product sees it."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from . import g711
from .dtmf import DIGITS, DtmfReceiver, DtmfSender
from .rtp import RtpError, RtpPacket, build_header
from .sip_message import SipRequest
from .transaction import Retransmitter

if TYPE_CHECKING:
    from .endpoint import SipEndpoint

__all__ = ["FRAME_BYTES", "AudioFrame", "CallLeg", "DtmfDigit"]

log = logging.getLogger(__name__)

FRAME_BYTES = 320  # 20 ms of PCM16 at 8 kHz
FRAME_SAMPLES = 160
SILENCE = bytes(FRAME_BYTES)
Tap = Callable[[str, bytes], None]


@dataclass(frozen=True, slots=True)
class AudioFrame:
    pcm: bytes  # 20 ms, 320 bytes PCM16 LE mono 8 kHz


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    digit: str
    method: Literal["rfc4733", "info"] = "rfc4733"


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, leg: CallLeg) -> None:
        self.leg = leg

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.leg._on_rtp(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable etc.
        log.debug("call %s: RTP socket error: %s", self.leg.call_id, exc)


class CallLeg:
    """An answered or dialled call. Created by SipEndpoint; see the package docs for the contract."""

    sample_rate = 8000
    max_buffered_frames = 250  # recv() keeps at most 5 s of audio (oldest dropped); DTMF is never dropped

    def __init__(self, endpoint: SipEndpoint, *, call_id: str, caller: str, called: str, is_uas: bool) -> None:
        self._ep = endpoint
        self.call_id = call_id
        self.caller = caller
        self.called = called
        self.is_uas = is_uas
        self.codec = "PCMU"
        self.ended = asyncio.Event()
        self.end_reason = ""
        # dialog state
        self.local_tag = secrets.token_hex(6)
        self.remote_tag = ""
        self.local_header = ""  # our From/To value incl. tag
        self.remote_header = ""
        self.remote_target = ""
        self.route_set: list[str] = []
        self.peer_addr: tuple[str, int] = ("127.0.0.1", 5060)
        self.local_cseq = 1
        self.remote_cseq = -1
        self.early_bye = False  # UAC: BYE arrived while dial() was still processing the 2xx
        self.ack_bytes: bytes | None = None  # UAC: our ACK for the 2xx, resent on 2xx retransmissions
        self.ok_rtx: Retransmitter | None = None  # UAS: 2xx retransmission until ACK
        self.acked = asyncio.Event()  # UAS: the ACK for our 2xx came (set at once for UAC legs)
        self.sdp_session_id = secrets.randbelow(2**31)
        self.sdp_version = 1
        # media state
        self._transport: asyncio.DatagramTransport | None = None
        self.rtp_port = 0
        self.remote_rtp: tuple[str, int] | None = None
        self.payload_type = 0
        self.te_pt: int | None = None  # telephone-event PT we send with (the peer's)
        self.te_pt_rx: int | None = None  # also accepted on receive: the PT of our own offer (UAC)
        self.on_hold = False
        self._ssrc = secrets.randbelow(2**32)
        self._seq = secrets.randbelow(2**16)
        self._ts = secrets.randbelow(2**32)
        self._marker = True
        self._silence_payload = g711.silence_payload("PCMU")
        self._out: deque[bytes] = deque()  # queued PCM buffers as given (sliced lazily, 320 bytes per tick)
        self._out_off = 0  # read offset into self._out[0]
        self._out_bytes = 0  # bytes still queued
        self._played = asyncio.Event()
        self._played.set()
        self._dtmf_queue: deque[str] = deque()
        self._dtmf_cur: DtmfSender | None = None
        self._dtmf_ts = 0
        self._dtmf_gap = 0
        self._dtmf_rx = DtmfReceiver()
        self._in: deque[AudioFrame | DtmfDigit] = deque()
        self._in_audio = 0
        self._in_partial = b""
        self._wake = asyncio.Event()
        self._taps: list[Tap] = []
        self.dtmf_listeners: list[Callable[[str], None]] = []  # called with each received digit (bridge)
        self.last_rx = asyncio.get_running_loop().time()
        self.frames_in = 0
        self.frames_out = 0

    def __repr__(self) -> str:
        return f"<CallLeg {self.call_id} {self.caller}->{self.called} {self.codec} ended={self.ended.is_set()}>"

    # ------------------------------------------------------------------ public API
    async def recv(self) -> AudioFrame | DtmfDigit | None:
        """Next received 20 ms frame or DTMF digit; None once the call has ended (after draining)."""
        while not self._in:
            if self.ended.is_set():
                return None
            self._wake.clear()
            await self._wake.wait()
        item = self._in.popleft()
        if type(item) is AudioFrame:
            self._in_audio -= 1
        return item

    def send_audio(self, pcm: bytes) -> None:
        """Queue PCM16 8 kHz mono audio for paced 20 ms playout."""
        if self.ended.is_set() or not pcm:
            return
        data = bytes(pcm)
        self._out.append(data)
        self._out_bytes += len(data)
        self._played.clear()

    def clear_audio(self) -> None:
        """Drop everything queued at once (barge-in)."""
        self._out.clear()
        self._out_off = 0
        self._out_bytes = 0
        self._played.set()

    @property
    def playing(self) -> bool:
        return self._out_bytes > 0

    @property
    def queued_ms(self) -> int:
        return self._out_bytes // 16

    async def wait_played(self) -> None:
        """Return when the queued audio has been sent (or cleared, or the call ended)."""
        await self._played.wait()

    def send_dtmf(self, digit: str) -> None:
        """Send digits: RFC 4733 with the negotiated payload type, SIP INFO if none was negotiated."""
        for d in digit.upper():
            if d not in DIGITS:
                raise ValueError(f"not a DTMF digit: {d!r}")
        if self.ended.is_set():
            return
        if self.te_pt is None:
            for d in digit.upper():
                self._ep._send_info_dtmf(self, d)
            return
        self._dtmf_queue.extend(digit.upper())

    def add_tap(self, fn: Tap) -> None:
        """fn("in", pcm) for every received frame, fn("out", pcm) for every sent frame (20 ms each)."""
        self._taps.append(fn)

    def remove_tap(self, fn: Tap) -> None:
        if fn in self._taps:
            self._taps.remove(fn)

    async def hangup(self) -> None:
        """End the call (BYE; CANCEL is the endpoint's business for unanswered dials)."""
        if self.ended.is_set():
            return
        self._end("local_hangup")
        await self._ep._send_bye(self)

    # ------------------------------------------------------------------ endpoint side
    def _set_media(self, codec: str, payload_type: int, te_pt: int | None, remote: tuple[str, int]) -> None:
        self.codec = codec
        self.payload_type = payload_type
        self.te_pt = te_pt
        self.remote_rtp = remote
        self._silence_payload = g711.silence_payload(codec)

    def _push(self, item: AudioFrame | DtmfDigit) -> None:
        if type(item) is AudioFrame:
            self._in_audio += 1
            if self._in_audio > self.max_buffered_frames:
                for i, old in enumerate(self._in):
                    if type(old) is AudioFrame:
                        del self._in[i]
                        self._in_audio -= 1
                        break
        self._in.append(item)
        self._wake.set()

    def _push_dtmf(self, digit: str, method: Literal["rfc4733", "info"]) -> None:
        log.info("call %s: DTMF key received (%s)", self.call_id, method)  # never the digit: PINs, card numbers
        self._push(DtmfDigit(digit, method))
        for fn in list(self.dtmf_listeners):
            try:
                fn(digit)
            except Exception:
                log.exception("call %s: DTMF listener failed", self.call_id)

    def _run_taps(self, direction: str, pcm: bytes) -> None:
        for fn in tuple(self._taps):
            try:
                fn(direction, pcm)
            except Exception:
                log.exception("call %s: tap %r failed; removed", self.call_id, fn)
                self.remove_tap(fn)

    def _on_rtp(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.ended.is_set():
            return
        try:
            pkt = RtpPacket.parse(data)
        except RtpError:
            return
        self.last_rx = self._ep._now
        pt = pkt.payload_type
        if pt == self.payload_type:
            if not pkt.payload:
                return
            pcm = g711.decode(self.codec, pkt.payload)
            if len(pcm) == FRAME_BYTES and not self._in_partial:
                self._deliver(pcm)
            else:
                buf = self._in_partial + pcm
                n = len(buf) - len(buf) % FRAME_BYTES
                for i in range(0, n, FRAME_BYTES):
                    self._deliver(buf[i : i + FRAME_BYTES])
                self._in_partial = buf[n:]
        elif pt == self.te_pt or (pt == self.te_pt_rx and pt is not None):
            digit = self._dtmf_rx.feed(pkt.timestamp, pkt.payload)
            if digit is not None:
                self._push_dtmf(digit, "rfc4733")

    def _deliver(self, pcm: bytes) -> None:
        self.frames_in += 1
        if self._taps:
            self._run_taps("in", pcm)
        self._push(AudioFrame(pcm))

    def _tick(self) -> None:
        """Called by the endpoint's ticker every 20 ms: send exactly one packet."""
        tr = self._transport
        if tr is None or self.remote_rtp is None:
            return
        ts = self._ts
        self._ts = (ts + FRAME_SAMPLES) & 0xFFFFFFFF
        # DTMF (RFC 4733): audio is held back while an event is sent
        if self._dtmf_cur is None and self._dtmf_queue and self._dtmf_gap <= 0 and self.te_pt is not None:
            self._dtmf_cur = DtmfSender(self._dtmf_queue.popleft())
            self._dtmf_ts = ts
            log.info("call %s: sending a DTMF key (rfc4733, pt %d)", self.call_id, self.te_pt)  # not the digit
        if self._dtmf_cur is not None and self.te_pt is not None:
            nxt = self._dtmf_cur.next_packet()
            if nxt is not None:
                payload, marker = nxt
                self._send_rtp(self.te_pt, self._dtmf_ts, payload, marker)
                if self._taps:
                    self._run_taps("out", SILENCE)
                return
            self._dtmf_cur = None
            self._dtmf_gap = 3  # 60 ms between digits
            self._marker = True
        if self._dtmf_gap > 0:
            self._dtmf_gap -= 1
        pcm = self._next_frame() if self._out_bytes > 0 else None
        if pcm is None:
            payload = self._silence_payload
            if not self._played.is_set():
                self._played.set()
        else:
            payload = g711.encode(self.codec, pcm)
            if self._out_bytes <= 0:
                self._played.set()
        if not self.on_hold:
            self._send_rtp(self.payload_type, ts, payload, self._marker)
            self._marker = False
        self.frames_out += 1
        if self._taps:
            self._run_taps("out", pcm if pcm is not None else SILENCE)

    def _next_frame(self) -> bytes:
        """Take 20 ms from the playout queue (the tail of the last buffer is padded with silence)."""
        head = self._out[0]
        off = self._out_off
        if len(head) - off >= FRAME_BYTES:
            frame = head[off : off + FRAME_BYTES]
            off += FRAME_BYTES
            if off == len(head):
                self._out.popleft()
                off = 0
            self._out_off = off
        else:
            parts: list[bytes] = []
            need = FRAME_BYTES
            while need and self._out:
                head = self._out[0]
                take = min(need, len(head) - self._out_off)
                parts.append(head[self._out_off : self._out_off + take])
                need -= take
                self._out_off += take
                if self._out_off >= len(head):
                    self._out.popleft()
                    self._out_off = 0
            frame = b"".join(parts)
            if len(frame) < FRAME_BYTES:
                frame += bytes(FRAME_BYTES - len(frame))
        self._out_bytes = max(0, self._out_bytes - FRAME_BYTES)
        return frame

    def _send_rtp(self, pt: int, ts: int, payload: bytes, marker: bool) -> None:
        assert self._transport is not None and self.remote_rtp is not None
        self._seq = (self._seq + 1) & 0xFFFF
        try:
            self._transport.sendto(build_header(pt, self._seq, ts, self._ssrc, marker) + payload, self.remote_rtp)
        except Exception:  # closed socket during teardown
            log.debug("call %s: RTP send failed", self.call_id, exc_info=True)

    def _end(self, reason: str) -> None:
        if self.ended.is_set():
            return
        self.end_reason = reason
        log.info("call %s: ended (%s)", self.call_id, reason)
        self.ended.set()
        self._wake.set()
        self._out.clear()
        self._out_off = 0
        self._out_bytes = 0
        self._played.set()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._ep._forget(self)

    # dialog helpers -----------------------------------------------------------------
    def _make_request(self, method: str) -> SipRequest:
        from .transaction import new_branch

        req = SipRequest(method=method, uri=self.remote_target)
        ep = self._ep
        req.add("Via", f"SIP/2.0/UDP {ep.advertised_host}:{ep.port};branch={new_branch()};rport")
        for r in self.route_set:
            req.add("Route", r)
        req.add("Max-Forwards", "70")
        req.add("From", self.local_header)
        req.add("To", self.remote_header)
        req.add("Call-ID", self.call_id)
        if method == "ACK":
            req.add("CSeq", "1 ACK")
        else:
            self.local_cseq += 1
            req.add("CSeq", f"{self.local_cseq} {method}")
        req.add("User-Agent", ep.user_agent)
        return req
