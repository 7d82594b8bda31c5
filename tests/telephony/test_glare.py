"""Re-INVITE glare (RFC 3261 14.1/14.2): both sides of a call send hold at the same moment; each answers the
other's re-INVITE with 491 Request Pending and retries its own after the back-off: the dialog's UAC (owner of
the Call-ID) after 2.1-4 s, the UAS after 0-2 s. Two of our own endpoints over UDP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from telephony import CallFailed, CallLeg, SipEndpoint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(30)]


@contextlib.asynccontextmanager
async def call() -> AsyncIterator[tuple[SipEndpoint, CallLeg, SipEndpoint, CallLeg]]:
    answered: asyncio.Queue[CallLeg] = asyncio.Queue()

    async def on_call(leg: CallLeg) -> None:
        answered.put_nowait(leg)
        await leg.ended.wait()

    callee = SipEndpoint("127.0.0.1", 0, rtp_ports=(30000, 40000))
    caller = SipEndpoint("127.0.0.1", 0, rtp_ports=(30000, 40000))
    callee.on_call = on_call
    await callee.start()
    await caller.start()
    try:
        uac = await caller.dial(f"sip:hotline@127.0.0.1:{callee.port}", timeout=5)
        uas = await asyncio.wait_for(answered.get(), 5)
        yield caller, uac, callee, uas
    finally:
        await caller.stop()
        await callee.stop()


async def timed(coro: asyncio.Future[None] | asyncio.Task[None], t0: float) -> float:
    await coro
    return asyncio.get_running_loop().time() - t0


async def test_glare_both_sides_retry_with_rfc3261_backoff() -> None:
    async with call() as (caller, uac, callee, uas):
        t0 = asyncio.get_running_loop().time()
        # both re-INVITEs leave before either endpoint reads the other's: a certain glare
        t_uac, t_uas = await asyncio.gather(timed(asyncio.ensure_future(uac.hold()), t0),
                                            timed(asyncio.ensure_future(uas.hold()), t0))
        assert caller.stats["glare_retries"] == 1 and callee.stats["glare_retries"] == 1
        assert t_uas < 2.0 + 1.0, t_uas  # the UAS waited 0-2 s (+ slack for a loaded machine)
        assert 2.1 <= t_uac < 4.0 + 1.0, t_uac  # the owner of the Call-ID 2.1-4 s, after the UAS's retry
        assert uac.local_hold == "sendonly" and uas.local_hold == "sendonly"
        assert uac.on_hold and uas.on_hold  # each side's hold reached the other
        await uac.resume()
        await uas.resume()
        assert not uac.on_hold and not uas.on_hold and not uac.local_hold and not uas.local_hold


async def test_glare_retry_that_would_overrun_the_timeout_raises_491() -> None:
    async with call() as (caller, uac, _callee, uas):
        results = await asyncio.gather(uac.hold(timeout=1.0), uas.hold(), return_exceptions=True)
        assert isinstance(results[0], CallFailed) and results[0].status == 491  # 2.1 s back-off > 1 s left
        assert results[1] is None and uac.on_hold  # the UAS's retry went through
        assert not uac.local_hold and caller.stats.get("glare_retries", 0) == 0
