"""Agent transfers on the worker that holds the call, wherever the request was made.

`TransferRouter` listens to the distributor's `TransferDesk` (the console's API hands requests in there)
and to the event bus. A request for a call this worker runs goes straight to its session; any other is
published as `TransferRequested` (`call.transfer_requested`), which over MQTT reaches the worker that runs
the call, whose router hands it to the session. The session hangs up the first agent's leg (she goes to
wrap-up), queues the caller in the new queue (or rings the named agent) and, for "context", gives the next
screen pop the transcript so far and the first agent's note (hotline/session.py `request_transfer`); a
consultation (kind consult/complete/cancel) is run by hotline/consult.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from hotline.bus import EventBus
from hotline.events import Event, TransferRequested
from routing import CallDistributor, TransferRefused, TransferRequest

log = logging.getLogger(__name__)


class TransferRouter:
    def __init__(self, acd: CallDistributor, bus: EventBus, node: str, sessions: Callable[[], Iterable[Any]]) -> None:
        self.acd, self.bus, self.node, self._sessions = acd, bus, node, sessions
        acd.transfers.subscribe(self.on_request)
        bus.subscribe(self.on_event)

    def _local(self, call_id: str) -> Any:
        return next((s for s in self._sessions() if getattr(s, "call_id", None) == call_id), None)

    def on_request(self, req: TransferRequest) -> None:
        session = self._local(req.call_id)
        if session is not None:
            session.request_transfer(req)
            return
        log.info("call %s: not on %s; transfer request sent on the bus", req.call_id, self.node)
        self.bus.publish(TransferRequested(req.call_id, to_queue=req.to_queue, mode=req.mode, note=req.note,
                                           by=req.by, node=self.node, to_agent=req.to_agent, kind=req.kind))

    def on_event(self, event: Event) -> None:
        if not isinstance(event, TransferRequested) or event.node == self.node:
            return  # our own request: handled (or not ours to handle) in on_request
        session = self._local(event.call_id)
        if session is None:
            return
        try:
            req = TransferRequest(event.call_id, event.to_queue, event.mode, event.note, event.by,
                                  to_agent=event.to_agent, kind=event.kind)
        except TransferRefused as exc:
            log.warning("call %s: bad transfer request from worker %s: %s", event.call_id, event.node, exc)
            return
        log.info("call %s: %s to %s from worker %s", event.call_id, req.kind, req.target, event.node)
        session.request_transfer(req)
