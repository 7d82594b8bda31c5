"""Our own SIP endpoints on 127.0.0.1 for telephony tests: started and stopped around a block."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from telephony import CallLeg, SipEndpoint

Handler = Callable[[CallLeg], Awaitable[None]]


@contextlib.asynccontextmanager
async def endpoint(on_call: Handler | None = None, **kw: object) -> AsyncIterator[SipEndpoint]:
    """A started `SipEndpoint` on a free loopback port (RTP 30000-40000); `kw` goes to its constructor."""
    ep = SipEndpoint("127.0.0.1", 0, rtp_ports=(30000, 40000), **kw)  # type: ignore[arg-type]
    ep.on_call = on_call
    await ep.start()
    try:
        yield ep
    finally:
        await ep.stop()


def uri(ep: SipEndpoint, user: str = "hotline") -> str:
    return f"sip:{user}@127.0.0.1:{ep.port}"
