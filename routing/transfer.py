"""Agent-initiated transfers: an agent (or supervisor) moves the connected caller to another queue.

`TransferDesk` is where a request is handed in (the console's API: `acd.transfers.request(...)`) and where
the composition layer listens (hotline/transfer.py): it finds the worker holding the call, locally or
through the event bus, and the session there ends the first agent's leg (she goes to wrap-up) and queues
the caller again. Plain data and callbacks: no network here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

TRANSFER_MODES = ("blind", "context")


class TransferRefused(ValueError):
    """A transfer that cannot be done (unknown queue, bad mode, too long a note); the message says why."""


@dataclass(frozen=True)
class TransferRequest:
    """Move `call_id` to `to_queue`. "context": the next agent's screen pop carries the transcript so far
    and `note`; "blind": only who the caller is and that the call was transferred."""

    call_id: str
    to_queue: str
    mode: str = "context"
    note: str = ""
    by: str = ""  # who asked (console user), for the records

    def __post_init__(self) -> None:
        if self.mode not in TRANSFER_MODES:
            raise TransferRefused(f"mode must be one of {', '.join(TRANSFER_MODES)}, not {self.mode!r}")
        if not self.call_id:
            raise TransferRefused("call_id is missing")
        if len(self.note) > 2000:
            raise TransferRefused("note: at most 2000 characters")


class TransferDesk:
    """Hands transfer requests to the listeners (the hotline's router); checks the target queue exists."""

    def __init__(self, queue_names: Callable[[], list[str]]) -> None:
        self._queue_names = queue_names
        self._listeners: list[Callable[[TransferRequest], None]] = []

    def subscribe(self, listener: Callable[[TransferRequest], None]) -> None:
        self._listeners.append(listener)

    def request(self, req: TransferRequest) -> None:
        if req.to_queue not in self._queue_names():
            raise TransferRefused(f"unknown queue {req.to_queue!r} (queues: {', '.join(self._queue_names())})")
        if not self._listeners:
            raise TransferRefused("transfers are not handled in this process (no call session here)")
        log.info("call %s: transfer to %s (%s) asked by %s", req.call_id, req.to_queue, req.mode, req.by or "?")
        for listener in list(self._listeners):
            listener(req)
