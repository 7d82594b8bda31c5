"""Transfer (RFC 3515 REFER, RFC 3891 Replaces) for the composition layer: what to do when a peer asks us to
transfer.

``CallLeg.on_transfer`` receives a :class:`~telephony.leg.TransferRequest` after the endpoint has answered the
REFER with 202 and sent NOTIFY "100 Trying"; what the handler returns (or the CallFailed it raises) goes
into the final NOTIFY. :func:`transfer_partner` is the usual handler: an agent (leg B, bridged with caller
leg A) REFERs us to another agent C: we dial C, bridge A with C, report 200, and B ends. When the Refer-To
carries ``?Replaces=...`` (attended transfer: B has already talked to C and asks us to take over its call with
C), the INVITE to C carries that Replaces header, so C swaps its dialog with B for ours (RFC 3891).
:func:`replace_in_bridge` is the usual ``leg.on_replaced`` handler for the other direction (an INVITE with
Replaces that names a leg we bridge).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .bridge import bridge
from .leg import CallLeg, ReplacedHandler, TransferHandler, TransferRequest
from .replaces import split_uri_headers
from .sip_message import ParseError

if TYPE_CHECKING:
    from .endpoint import SipEndpoint

__all__ = ["replace_in_bridge", "transfer_partner"]

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
        try:
            target, uri_headers = split_uri_headers(req.target)
        except ParseError as exc:
            log.warning("call %s: unusable Refer-To %r: %s", req.leg.call_id, req.target[:100], exc)
            return 400, "Bad Refer-To"
        # of the URI headers only Replaces is honoured (attended transfer); others could inject anything
        headers = [(n, v) for n, v in uri_headers if n == "Replaces"][:1]
        log.info("call %s: transferring call %s to %s%s", req.leg.call_id, partner.call_id, target,
                 " (attended: Replaces)" if headers else "")
        new = await endpoint.dial(target, from_user=partner.caller or "hotline", timeout=timeout, headers=headers)
        if partner.ended.is_set():
            await new.hangup()
            return 487, "Request Terminated (the other party has hung up)"
        _follow(partner, new, on_connected)
        return None

    return handle


def _follow(partner: CallLeg, new: CallLeg, on_connected: Callable[[CallLeg], None] | None) -> None:
    if on_connected is not None:
        on_connected(new)
    task = asyncio.ensure_future(_bridge_then_hang_up(partner, new))
    _bridges.add(task)
    task.add_done_callback(_bridges.discard)


async def _bridge_then_hang_up(a: CallLeg, b: CallLeg) -> None:
    try:
        await bridge(a, b)
    finally:
        if "replaced" not in (a.end_reason, b.end_reason):  # replaced: the survivor is bridged anew
            for leg in (a, b):
                if not leg.ended.is_set():
                    await leg.hangup()


def replace_in_bridge(partner: CallLeg, *, on_connected: Callable[[CallLeg], None] | None = None) -> ReplacedHandler:
    """A handler for ``leg.on_replaced`` on a leg bridged with ``partner``: when an INVITE with Replaces takes
    the leg's place (RFC 3891), bridge ``partner`` with the new leg (the old bridge ends with the old leg's BYE;
    the survivor is hung up when either ends). ``on_connected(new_leg)`` lets the session follow."""

    def handle(new: CallLeg) -> None:
        if partner.ended.is_set():
            raise RuntimeError(f"the other party of call {new.call_id} has hung up")
        _follow(partner, new, on_connected)

    return handle
