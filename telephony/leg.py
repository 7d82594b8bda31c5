"""CallLeg: one established call (dialog + RTP stream) as the rest of the product sees it."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from . import g711
from .dtmf import DIGITS, DtmfReceiver, DtmfSender
from .rtp import HEADER, RtpError, RtpPacket
from .sip_message import SipRequest
from .transaction import Retransmitter

if TYPE_CHECKING:
    from .endpoint import SipEndpoint

__all__ = ["FRAME_BYTES", "AudioFrame", "CallLeg", "DtmfDigit", "TransferHandler", "TransferRequest"]

log = logging.getLogger(__name__)

FRAME_BYTES = 320  # 20 ms of PCM16 at 8 kHz
FRAME_SAMPLES = 160
SILENCE = bytes(FRAME_BYTES)
_ENCODE_AHEAD = 50 * FRAME_BYTES  # playout encodes 1 s at a time (not a whole long prompt a short call never hears)
Tap = Callable[[str, bytes], None]


@dataclass(frozen=True, slots=True)
class AudioFrame:
    pcm: bytes  # 20 ms, 320 bytes PCM16 LE mono 8 kHz


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    digit: str
    method: Literal["rfc4733", "info"] = "rfc4733"


@dataclass(slots=True)
class TransferRequest:
    """A blind transfer the peer asked for with REFER (RFC 3515), already answered 202 Accepted.

    ``target`` is the Refer-To URI (may carry ``?headers``), ``referred_by`` the Referred-By header as sent
    (empty if none). ``status`` is the final result once the handler has returned."""

    target: str
    referred_by: str
    leg: CallLeg
    status: int = 0


# Returns the final status of the attempt for the NOTIFY ((200, "OK") when None); raising CallFailed gives its
# status; a successful transfer ends the leg (the transferor's BYE, or ours after a few seconds).
TransferHandler = Callable[[TransferRequest], Awaitable[tuple[int, str] | None]]
# RFC 3891: called with the new leg when an INVITE with Replaces naming this leg's dialog is answered and ACKed;
# the new leg takes this one's place (re-bridge it), then this leg gets BYE (end_reason "replaced").
ReplacedHandler = Callable[["CallLeg"], None]


_GAIN_TABLES: dict[int, np.ndarray] = {}


def _gain_table(q15: int) -> np.ndarray:
    """int16 sample (indexed as uint16) -> sample * q15 / 32768: one lookup per sample when ducked."""
    table = _GAIN_TABLES.get(q15)
    if table is None:
        x = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
        table = _GAIN_TABLES[q15] = ((x * q15) >> 15).astype("<i2")
    return table


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, leg: CallLeg) -> None:
        self.leg = leg
        self.datagram_received = leg._on_rtp  # type: ignore[method-assign]  # one call less per packet

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
        self.on_hold = False  # the peer put us on hold (its re-INVITE: sendonly/inactive)
        self.local_hold = ""  # we put the peer on hold: "sendonly" or "inactive" ("" = not held)
        self._muted = False  # our re-INVITE's outcome forbids us to send (inactive / peer answered sendonly)
        self._reinviting = False
        self.on_transfer: TransferHandler | None = None  # REFER from the peer: 603 Decline while None
        self.on_replaced: ReplacedHandler | None = None  # INVITE with Replaces for this leg: 603 Decline while None
        self._refers_in = 0
        self._refer_waiter: asyncio.Future[tuple[int, str]] | None = None
        self._ssrc = secrets.randbelow(2**32)
        self._seq = secrets.randbelow(2**16)
        self._ts = secrets.randbelow(2**32)
        self._marker = True
        self._silence_payload = g711.silence_payload("PCMU")
        self._out: deque[bytes] = deque()  # queued PCM buffers as given (sliced lazily, 320 bytes per tick)
        self._out_off = 0  # read offset into self._out[0]
        self._out_bytes = 0  # bytes still queued
        self.cleared = 0  # how many times clear_audio dropped the queue
        self._out_enc: bytes | None = None  # the next part of self._out[0] encoded with self.codec
        self._out_enc_base = 0  # the byte offset into self._out[0] that self._out_enc starts at
        self._gain_lut: np.ndarray | None = None  # duck(): every outgoing sample mapped through it (None: as queued)
        self._gain_db = 0.0
        self._ramp: deque[np.ndarray | None] = deque()  # unduck(ramp_ms): the next frames' tables, back to None
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
        self._waiter: asyncio.Future[None] | None = None  # recv() waiting for the next item (one future per wait)
        self._taps: list[Tap] = []
        self._tap_fns: tuple[Tap, ...] = ()  # self._taps as run (rebuilt on add/remove, not per frame)
        self.dtmf_listeners: list[Callable[[str], None]] = []  # called with each received digit (bridge)
        # mix_in() is asked for one 20 ms PCM frame (or None) per audio frame sent, summed into it (a supervisor's
        # whisper to the agent, hotline/whisper_live.py); None (the usual case) costs one check per tick.
        self.mix_in: Callable[[], bytes | None] | None = None
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
            fut = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await fut
            finally:
                self._waiter = None
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
        """Drop everything queued at once (barge-in). ``cleared`` counts these, so a prompt still being
        rendered part by part can tell it was stopped."""
        self.cleared += 1
        self._out.clear()
        self._out_off = 0
        self._out_bytes = 0
        self._out_enc = None
        self._gain_lut = None
        self._ramp.clear()
        self._played.set()

    def duck(self, gain_db: float = -24.0) -> None:
        """Play the queued audio quieter by ``gain_db`` (<= 0) from the next 20 ms frame on, until `unduck`,
        `clear_audio` or the queue runs dry (then the next prompt plays at full volume). Raises ValueError
        for a positive or non-finite gain."""
        if not gain_db <= 0.0:  # also rejects NaN
            raise ValueError(f"duck gain must be <= 0 dB, got {gain_db!r}")
        self._gain_db = max(gain_db, -120.0)
        self._gain_lut = _gain_table(round(32768 * 10 ** (self._gain_db / 20)))
        self._ramp.clear()

    def unduck(self, ramp_ms: int = 0) -> None:
        """Back to full volume from the next frame on, or rising evenly in dB over ``ramp_ms`` (20 ms steps;
        `ducked` stays True until full volume)."""
        steps = ramp_ms // 20
        if self._gain_lut is None or steps <= 1:
            self._gain_lut = None
            self._ramp.clear()
            return
        db = self._gain_db
        self._ramp = deque([_gain_table(round(32768 * 10 ** (db * (1 - i / steps) / 20))) for i in range(1, steps)])
        self._ramp.append(None)
        self._gain_lut = self._ramp.popleft()

    @property
    def ducked(self) -> bool:
        return self._gain_lut is not None

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
        self._tap_fns = tuple(self._taps)

    def remove_tap(self, fn: Tap) -> None:
        if fn in self._taps:
            self._taps.remove(fn)
            self._tap_fns = tuple(self._taps)

    async def hold(self, direction: Literal["sendonly", "inactive"] = "sendonly", timeout: float = 10.0) -> None:
        """Put the peer on hold: re-INVITE with ``a=sendonly`` (we may keep sending, e.g. music; the peer stops)
        or ``a=inactive`` (both stop). Raises CallFailed if the peer refuses; the call is unchanged then."""
        await self._ep._reinvite(self, direction, timeout)

    async def resume(self, timeout: float = 10.0) -> None:
        """Take the peer off hold: re-INVITE with ``a=sendrecv``."""
        await self._ep._reinvite(self, "sendrecv", timeout)

    async def refer(self, target: str, timeout: float = 30.0) -> int:
        """Blind transfer: REFER the peer to ``target`` (a SIP URI) and wait for the final status the peer
        reports by NOTIFY (sipfrag). Returns it (2xx: the transfer succeeded; hang up this leg then);
        raises CallFailed if the REFER is refused or no final NOTIFY comes within ``timeout``."""
        status, _reason = await self._ep._refer(self, target, timeout)
        return status

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
        self._out_enc = None

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
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _push_dtmf(self, digit: str, method: Literal["rfc4733", "info"]) -> None:
        log.info("call %s: DTMF key received (%s)", self.call_id, method)  # never the digit: PINs, card numbers
        self._push(DtmfDigit(digit, method))
        for fn in list(self.dtmf_listeners):
            try:
                fn(digit)
            except Exception:
                log.exception("call %s: DTMF listener failed", self.call_id)

    def _run_taps(self, direction: str, pcm: bytes) -> None:
        for fn in self._tap_fns:
            try:
                fn(direction, pcm)
            except Exception:
                log.exception("call %s: tap %r failed; removed", self.call_id, fn)
                self.remove_tap(fn)

    def _on_rtp(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._transport is None:  # ended (the socket is closed at the end) or not open yet
            return
        if len(data) > 12 and data[0] == 0x80:  # the usual packet: version 2, no padding/extension/CSRC
            pt = data[1] & 0x7F
            payload = data[12:]
        else:
            try:
                pkt = RtpPacket.parse(data)
            except RtpError:
                return
            pt, payload = pkt.payload_type, pkt.payload
        self.last_rx = self._ep._now
        if pt == self.payload_type:
            if not payload:
                return
            pcm = g711.decode(self.codec, payload)
            if len(pcm) == FRAME_BYTES and not self._in_partial:
                self._deliver(pcm)
            else:
                buf = self._in_partial + pcm
                n = len(buf) - len(buf) % FRAME_BYTES
                for i in range(0, n, FRAME_BYTES):
                    self._deliver(buf[i : i + FRAME_BYTES])
                self._in_partial = buf[n:]
        elif pt == self.te_pt or (pt == self.te_pt_rx and pt is not None):
            digit = self._dtmf_rx.feed(int.from_bytes(data[4:8], "big"), payload)
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
            log.debug("call %s: sending a DTMF key (rfc4733, pt %d)", self.call_id, self.te_pt)  # not the digit
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
        pcm: bytes | None = None
        if self._out_bytes <= 0:
            payload = self._silence_payload
            if not self._played.is_set():
                self._played.set()
        else:
            pcm, payload = self._next_frame_encoded()
            if self._gain_lut is not None:  # ducked: while the caller may be barging in (hotline/session.py)
                pcm = self._gain_lut.take(np.frombuffer(pcm, np.uint16)).tobytes()  # ~1.3 µs a frame
                if self._ramp:
                    self._gain_lut = self._ramp.popleft()
                payload = g711.encode(self.codec, pcm)
            if self._out_bytes <= 0:
                self._played.set()
                self._gain_lut = None
                self._ramp.clear()
        if self.mix_in is not None:
            try:
                extra = self.mix_in()
            except Exception:
                log.exception("call %s: mix-in failed; removed", self.call_id)
                self.mix_in = extra = None
            if extra is not None and len(extra) == FRAME_BYTES:
                mixed = np.frombuffer(pcm or SILENCE, "<i2").astype(np.int32) + np.frombuffer(extra, "<i2")
                pcm = np.clip(mixed, -32768, 32767).astype("<i2").tobytes()
                payload = g711.encode(self.codec, pcm)
        if not self.on_hold and not self._muted:
            seq = self._seq = (self._seq + 1) & 0xFFFF
            try:  # the header packed here (one call less per packet than _send_rtp)
                tr.sendto(HEADER.pack(0x80, (0x80 if self._marker else 0) | self.payload_type, seq, ts, self._ssrc)
                          + payload, self.remote_rtp)
            except Exception:  # closed socket during teardown
                log.debug("call %s: RTP send failed", self.call_id, exc_info=True)
            self._marker = False
        self.frames_out += 1
        if self._tap_fns:
            self._run_taps("out", pcm if pcm is not None else SILENCE)

    def _next_frame(self) -> bytes:
        """Take 20 ms of PCM from the playout queue (see `_next_frame_encoded`)."""
        return self._next_frame_encoded()[0]

    def _next_frame_encoded(self) -> tuple[bytes, bytes]:
        """Take 20 ms from the playout queue (the tail of the last buffer is padded with silence): the PCM
        and its G.711 payload (whole buffers are encoded once, when they start playing)."""
        head = self._out[0]
        off = self._out_off
        if len(head) - off >= FRAME_BYTES:
            frame = head[off : off + FRAME_BYTES]
            enc = self._out_enc
            e = (off - self._out_enc_base) >> 1
            if enc is None or e + FRAME_SAMPLES > len(enc):  # encode the next second of this buffer in one go
                end = min(len(head), off + _ENCODE_AHEAD)
                end -= (end - off) % 2  # whole samples
                enc = self._out_enc = g711.encode(self.codec, head[off:end])
                self._out_enc_base = off
                e = 0
            payload = enc[e : e + FRAME_SAMPLES]
            off += FRAME_BYTES
            if off == len(head):
                self._out.popleft()
                self._out_enc = None
                off = 0
            self._out_off = off
            self._out_bytes = max(0, self._out_bytes - FRAME_BYTES)
            return frame, payload
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
                    self._out_enc = None
                    self._out_off = 0
            frame = b"".join(parts)
            if len(frame) < FRAME_BYTES:
                frame += bytes(FRAME_BYTES - len(frame))
        self._out_bytes = max(0, self._out_bytes - FRAME_BYTES)
        self._out_enc = None  # the new head starts at an offset: encoded afresh from there
        return frame, g711.encode(self.codec, frame)

    def _send_rtp(self, pt: int, ts: int, payload: bytes, marker: bool) -> None:
        assert self._transport is not None and self.remote_rtp is not None
        self._seq = (self._seq + 1) & 0xFFFF
        try:
            self._transport.sendto(HEADER.pack(0x80, (0x80 if marker else 0) | pt, self._seq, ts & 0xFFFFFFFF,
                                               self._ssrc) + payload, self.remote_rtp)
        except Exception:  # closed socket during teardown
            log.debug("call %s: RTP send failed", self.call_id, exc_info=True)

    def _end(self, reason: str) -> None:
        if self.ended.is_set():
            return
        self.end_reason = reason
        log.debug("call %s: ended (%s)", self.call_id, reason)  # the session logs the call's end at INFO
        self.ended.set()
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        self._out.clear()
        self._out_off = 0
        self._out_bytes = 0
        self._out_enc = None
        self._played.set()
        if self._refer_waiter is not None and not self._refer_waiter.done():
            self._refer_waiter.cancel()
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
