"""Shared helpers for telephony tests: tones, frequency checks, a hotline-like endpoint, raw SIP sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from telephony import AudioFrame, CallLeg, DtmfDigit, SipEndpoint


@dataclass
class Server:
    """A SipEndpoint whose on_call records what it hears and plays what it is told."""

    ep: SipEndpoint
    play: bytes = b""
    heard: dict[str, bytearray] = field(default_factory=dict)
    digits: dict[str, list[DtmfDigit]] = field(default_factory=dict)
    legs: list[CallLeg] = field(default_factory=list)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    behaviour: Callable[[CallLeg], Awaitable[None]] | None = None

    async def on_call(self, leg: CallLeg) -> None:
        self.legs.append(leg)
        self.heard[leg.call_id] = bytearray()
        self.digits[leg.call_id] = []
        self.answered.set()
        if self.behaviour is not None:
            await self.behaviour(leg)
            return
        if self.play:
            leg.send_audio(self.play)
        while (item := await leg.recv()) is not None:
            if isinstance(item, AudioFrame):
                self.heard[leg.call_id] += item.pcm
            else:
                self.digits[leg.call_id].append(item)

    @property
    def uri(self) -> str:
        return f"sip:hotline@127.0.0.1:{self.ep.port}"


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    ep = SipEndpoint("127.0.0.1", 0, rtp_ports=(20000, 30000))
    srv = Server(ep)
    ep.on_call = srv.on_call
    await ep.start()
    try:
        yield srv
    finally:
        await ep.stop()


class RawSip(asyncio.DatagramProtocol):
    """A bare UDP socket for hand-written SIP."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)

    def send(self, data: bytes | str, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data.encode() if isinstance(data, str) else data, ("127.0.0.1", port))

    async def expect(self, timeout: float = 2.0) -> bytes:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def expect_status(self, timeout: float = 2.0, skip_provisional: bool = True) -> int:
        while True:
            data = await self.expect(timeout)
            status = int(data.split(b" ", 2)[1])
            if status >= 200 or not skip_provisional:
                return status

    def request(self, method: str, port: int, *, call_id: str = "raw-1", cseq: str | None = None,
                body: str = "", extra: str = "", to_tag: str = "", branch: str = "z9hG4bKraw1") -> str:
        raw_port = self.port
        cseq = cseq or f"1 {method}"
        to = f"<sip:hotline@127.0.0.1:{port}>" + (f";tag={to_tag}" if to_tag else "")
        ctype = "Content-Type: application/sdp\r\n" if body and "Content-Type" not in extra else ""
        return (
            f"{method} sip:hotline@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{raw_port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:raw@127.0.0.1:{raw_port}>;tag=rawtag\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {cseq}\r\n"
            f"Contact: <sip:raw@127.0.0.1:{raw_port}>\r\n"
            f"{extra}{ctype}"
            f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
        )

    @staticmethod
    def sdp(port: int, pts: str = "0 8 101") -> str:
        return (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP {pts}\r\na=rtpmap:101 telephone-event/8000\r\n"
        )


async def _open_raw() -> RawSip:
    loop = asyncio.get_running_loop()
    proto = RawSip()
    transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=("127.0.0.1", 0))
    proto.transport = transport
    proto.port = transport.get_extra_info("sockname")[1]
    return proto


@pytest.fixture
async def raw() -> AsyncIterator[RawSip]:
    proto = await _open_raw()
    try:
        yield proto
    finally:
        with contextlib.suppress(Exception):
            assert proto.transport is not None
            proto.transport.close()


@pytest.fixture
async def proxy() -> AsyncIterator[RawSip]:
    """A second bare socket (plays a Record-Routing proxy)."""
    proto = await _open_raw()
    try:
        yield proto
    finally:
        with contextlib.suppress(Exception):
            assert proto.transport is not None
            proto.transport.close()
