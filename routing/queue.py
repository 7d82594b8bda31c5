"""A queue of callers waiting for agents; the longest-idle free agent takes the next caller."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Agent:
    """A human agent reachable at a SIP URI."""

    name: str
    uri: str
    skills: frozenset[str] = frozenset()
    busy: bool = False
    not_ready: bool = False
    idle_since: float = field(default_factory=time.monotonic)
    calls_taken: int = 0


@dataclass
class _Waiter:
    ticket: int
    call_id: str
    future: asyncio.Future[Agent]
    enqueued_at: float


class Queue:
    """First come, first served; agents are offered longest-idle first.

    One process owns this state; a distributed reservation in the database replaces it when
    several workers share agents (routing issue).
    """

    def __init__(self, name: str, agents: list[Agent]) -> None:
        self.name = name
        self.agents = list(agents)
        self._waiters: deque[_Waiter] = deque()
        self._tickets = itertools.count(1)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def position(self, call_id: str) -> int | None:
        for i, w in enumerate(self._waiters, start=1):
            if w.call_id == call_id:
                return i
        return None

    def free_agents(self) -> list[Agent]:
        free = [a for a in self.agents if not a.busy and not a.not_ready]
        return sorted(free, key=lambda a: a.idle_since)

    async def acquire(self, call_id: str, timeout: float | None = None) -> Agent | None:
        """Waits for a free agent and reserves it; None on timeout."""
        if not self._waiters:
            free = self.free_agents()
            if free:
                return self._reserve(free[0], call_id)
        loop = asyncio.get_running_loop()
        waiter = _Waiter(next(self._tickets), call_id, loop.create_future(), time.monotonic())
        self._waiters.append(waiter)
        log.info("call %s queued in %s at position %d", call_id, self.name, len(self._waiters))
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except (TimeoutError, asyncio.CancelledError):
            # An agent handed over in the same instant as the timeout goes back to the pool.
            if waiter.future.done():
                self.release(waiter.future.result())
            else:
                waiter.future.cancel()
            if asyncio.current_task() is not None and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            return None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _reserve(self, agent: Agent, call_id: str) -> Agent:
        agent.busy = True
        agent.calls_taken += 1
        log.info("call %s reserved agent %s in %s", call_id, agent.name, self.name)
        return agent

    def release(self, agent: Agent) -> None:
        """Frees an agent after a call (or a failed ring) and offers it to the next caller."""
        agent.busy = False
        agent.idle_since = time.monotonic()
        self._dispatch()

    def _dispatch(self) -> None:
        while self._waiters:
            free = self.free_agents()
            if not free:
                return
            waiter = self._waiters.popleft()
            if waiter.future.done():
                continue
            waiter.future.set_result(self._reserve(free[0], waiter.call_id))

