"""Agent-initiated transfers: an agent (or supervisor) moves the connected caller to another queue or to a
named agent, blind or with context, or consults a colleague first (attended transfer).

`TransferDesk` is where a request is handed in (the console's API: `acd.transfers.request(...)`) and where
the composition layer listens (hotline/transfer.py): it finds the worker holding the call, locally or
through the event bus, and the session there acts on it (hotline/consult.py). Plain data and callbacks: no
network here.

Kinds of request (`TransferRequest.kind`):
- "transfer": to `to_queue` (queued like any caller), or to the agent `to_agent` (rung for `to_queue`);
- "consult": the caller is put on hold and `to_agent` (or a free agent of `to_queue`) is rung for the first
  agent to talk to; then "complete" (the caller goes to her) or "cancel" (the first agent takes the caller back).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

TRANSFER_MODES = ("blind", "context")
TRANSFER_KINDS = ("transfer", "consult", "complete", "cancel")


class TransferRefused(ValueError):
    """A transfer that cannot be done (unknown queue or agent, agent busy, bad mode, too long a note); the
    message says why."""


class TargetBusy(TransferRefused):
    """The named agent is not ready (or was just given another call), or nobody is free to consult."""


@dataclass(frozen=True)
class TransferRequest:
    """Move `call_id` to `to_queue` (or to the agent `to_agent`, rung for `to_queue`). "context": the next
    agent's screen pop carries the transcript so far and `note`; "blind": only who the caller is and that
    the call was transferred. `kind` "consult" / "complete" / "cancel": attended transfer steps."""

    call_id: str
    to_queue: str
    mode: str = "context"
    note: str = ""
    by: str = ""  # who asked (console user), for the records
    to_agent: str = ""  # a named agent (her id), or "" for anyone in to_queue
    kind: str = "transfer"

    def __post_init__(self) -> None:
        if self.mode not in TRANSFER_MODES:
            raise TransferRefused(f"mode must be one of {', '.join(TRANSFER_MODES)}, not {self.mode!r}")
        if self.kind not in TRANSFER_KINDS:
            raise TransferRefused(f"kind must be one of {', '.join(TRANSFER_KINDS)}, not {self.kind!r}")
        if not self.call_id:
            raise TransferRefused("call_id is missing")
        if len(self.note) > 2000:
            raise TransferRefused("note: at most 2000 characters")

    @property
    def target(self) -> str:
        """How the records name where the caller goes: the queue, or "agent bob (cards)"."""
        return f"agent {self.to_agent} ({self.to_queue})" if self.to_agent else self.to_queue


class Agents(Protocol):
    """What the desk needs of the distributor to check a named agent (routing.CallDistributor)."""

    def check_target(self, agent_id: str, queue: str) -> None: ...
    def allowed(self, agent_id: str, queue: str) -> bool: ...
    def free_agents(self, queue: str, needs: Any = None) -> list[Any]: ...


def queue_for_agent(acd: Any, agent_id: str, preferred: str) -> str:
    """The queue a named agent is rung for: the call's own (`preferred`) if she takes its calls, else the
    first queue she is allowed in (her queue list and skills), else `preferred` (the check then refuses)."""
    try:
        if acd.allowed(agent_id, preferred):
            return preferred
        return next((q for q in acd.queue_names if acd.allowed(agent_id, q)), preferred)
    except KeyError:  # unknown agent or queue: refused by the check, naming it
        return preferred


class TransferDesk:
    """Hands transfer requests to the listeners (the hotline's router); checks the target queue exists and a
    named agent is known, allowed for the queue and ready (the worker's session checks again when it acts)."""

    def __init__(self, queue_names: Callable[[], list[str]], agents: Agents | None = None) -> None:
        self._queue_names = queue_names
        self._agents = agents
        self._listeners: list[Callable[[TransferRequest], None]] = []

    def subscribe(self, listener: Callable[[TransferRequest], None]) -> None:
        self._listeners.append(listener)

    def check(self, req: TransferRequest) -> None:
        """Raises TransferRefused when the request cannot be done as asked."""
        if req.kind in ("complete", "cancel"):
            return  # about the consultation in progress: only the session knows it
        if req.to_queue not in self._queue_names():
            raise TransferRefused(f"unknown queue {req.to_queue!r} (queues: {', '.join(self._queue_names())})")
        if self._agents is None:
            return
        if req.to_agent:
            self._agents.check_target(req.to_agent, req.to_queue)
        elif req.kind == "consult" and not self._agents.free_agents(req.to_queue):
            raise TargetBusy(f"nobody in {req.to_queue} is free to consult")

    def request(self, req: TransferRequest) -> None:
        self.check(req)
        if not self._listeners:
            raise TransferRefused("transfers are not handled in this process (no call session here)")
        log.info("call %s: %s to %s (%s) asked by %s", req.call_id, req.kind, req.target, req.mode, req.by or "?")
        for listener in list(self._listeners):
            listener(req)
