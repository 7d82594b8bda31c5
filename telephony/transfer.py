"""Blind transfer (RFC 3515 REFER) for the composition layer: what to do when a peer asks us to transfer.

``CallLeg.on_transfer`` receives a :class:`~telephony.leg.TransferRequest` after the endpoint has answered the
REFER with 202 and sent NOTIFY "100 Trying"; what the handler returns (or the CallFailed it raises) goes
into the final NOTIFY. :func:`transfer_partner` is the usual handler: an agent (leg B, bridged with caller
leg A) REFERs us to another agent C: we dial C, bridge A with C, report 200, and B ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .bridge import bridge
from .leg import CallLeg, TransferHandler, TransferRequest

if TYPE_CHECKING:
    from .endpoint import SipEndpoint

__all__ = ["transfer_partner"]

log = logging.getLogger(__name__)

_bridges: set[asyncio.Task[None]] = set()


def transfer_partner(endpoint: SipEndpoint, partner: CallLeg, *, timeout: float = 30.0,
                     on_connected: Callable[[CallLeg], None] | None = None) -> TransferHandler:
    """A handler for ``leg.on_transfer``: dial the Refer-To target from ``endpoint`` and bridge ``partner``
    (the other party of the leg being transferred) with the new leg; the bridge ends when either hangs up,
    and the survivor is hung up then. ``on_connected(new_leg)`` lets the caller's session follow the call
    (e.g. keep recording). A failed dial is reported to the transferor with the callee's status."""

    async def handle(req: TransferRequest) -> tuple[int, str] | None:
        if partner.ended.is_set():
            return 487, "Request Terminated (the other party has hung up)"
        target = req.target.split("?", 1)[0]  # Replaces/other URI headers are not honoured (blind transfer)
        log.info("call %s: transferring call %s to %s", req.leg.call_id, partner.call_id, target)
        new = await endpoint.dial(target, from_user=partner.caller or "hotline", timeout=timeout)
        if partner.ended.is_set():
            await new.hangup()
            return 487, "Request Terminated (the other party has hung up)"
        if on_connected is not None:
            on_connected(new)
        task = asyncio.ensure_future(_bridge_then_hang_up(partner, new))
        _bridges.add(task)
        task.add_done_callback(_bridges.discard)
        return None

    return handle


async def _bridge_then_hang_up(a: CallLeg, b: CallLeg) -> None:
    try:
        await bridge(a, b)
    finally:
        for leg in (a, b):
            if not leg.ended.is_set():
                await leg.hangup()
