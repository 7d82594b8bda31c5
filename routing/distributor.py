"""The automatic call distributor: callers wait in queues, free skilled agents are reserved for them.

Everything here is synchronous bookkeeping on one event loop, except `acquire`, which waits. A
reservation (the agent going to `ringing`) happens in one synchronous step after `try_reserve` on the
`ReservationStore` succeeds, so two callers never get the same agent. Time comes from a `Clock`;
`poll()` does the time-driven work (wrap-up ends, max-wait overflow, ring safety net) and `run()`
calls it periodically in production.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from routing.agents import (
    AgentDirectory,
    AgentProfile,
    AgentRecord,
    InMemoryAgentDirectory,
    InMemoryReservationStore,
    ReservationStore,
    serves,
)
from routing.clock import Clock, SystemClock
from routing.events import (
    AgentReserved,
    AgentStateChanged,
    CallAbandoned,
    CallAnswered,
    CallbackDue,
    CallbackRequest,
    CallOverflowed,
    CallQueued,
    MaxWaitReached,
    RoutingEvent,
)
from routing.hours import OpeningHours
from routing.skills import Needs, Relaxation, meets, merge_needs, needs_of, relax_reason, without
from routing.states import MANUAL_STATES, AgentState, AgentStatus
from routing.stats import QueueStatistics
from routing.strategies import Strategy, make_strategy
from routing.transfer import TargetBusy, TransferDesk, TransferRefused

log = logging.getLogger(__name__)
S = AgentState
AgentRef = AgentProfile | AgentRecord | str
# States in which an agent counts as staffed for a queue (taking or about to take calls).
STAFFED = frozenset({S.AVAILABLE, S.RINGING, S.ON_CALL, S.WRAP_UP})
_RESTING = frozenset({S.AVAILABLE, S.NOT_READY, S.ON_BREAK, S.LOGGED_OUT})
OVERFLOW_ACTIONS = (None, "queue", "callback")


@dataclass(frozen=True)
class QueueConfig:
    """One queue: what its agents need, how it picks among them, and what happens when the wait is long.

    overflow: None (wait on), "queue" (move to `overflow_to` after `max_wait_s`, keeping priority and
    original arrival), or "callback" (a `MaxWaitReached` event after `max_wait_s`: offer a callback).
    ring_timeout_s: a safety net; a ring nobody reported on for this long counts as no answer.
    """

    name: str
    strategy: str = "longest_idle"
    needs: Mapping[str, int] = field(default_factory=dict)
    wrap_up_s: float = 0.0
    max_wait_s: float | None = None
    overflow: str | None = None
    overflow_to: str | None = None
    service_level_s: float = 20.0
    ring_timeout_s: float | None = None
    hours: OpeningHours = field(default_factory=OpeningHours.always)
    default_handle_s: float = 180.0
    priority: int = 0  # added to each call's own priority: a higher queue's callers go first for shared agents

    def __post_init__(self) -> None:
        if self.overflow not in OVERFLOW_ACTIONS:
            raise ValueError(f"queue {self.name}: overflow must be one of {OVERFLOW_ACTIONS}, not {self.overflow!r}")
        if self.overflow == "queue" and not self.overflow_to:
            raise ValueError(f"queue {self.name}: overflow 'queue' needs overflow_to")
        if self.overflow and self.max_wait_s is None:
            raise ValueError(f"queue {self.name}: overflow needs max_wait_s")
        if self.wrap_up_s < 0:
            raise ValueError(f"queue {self.name}: wrap_up_s must be >= 0")
        make_strategy(self.strategy)  # unknown names fail here, at configuration time


MAX_NAME = 64
MAX_SKILL_LEVEL = 10
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def check_name(kind: str, value: str) -> str:
    """Queue, agent and skill names: 1 to 64 letters, digits, '.', '_' or '-' (they end up in URLs and logs)."""
    if not 1 <= len(value) <= MAX_NAME or not set(value) <= _NAME_CHARS:
        raise ValueError(f"{kind} name must be 1 to {MAX_NAME} letters, digits, '.', '_' or '-', not {value[:80]!r}")
    return value


def check_queue(cfg: QueueConfig, queues: Mapping[str, QueueConfig]) -> None:
    """What `QueueConfig` does not check itself, for live changes: times, needs, the overflow target."""
    for label, value in (("max_wait_s", cfg.max_wait_s), ("ring_timeout_s", cfg.ring_timeout_s)):
        if value is not None and not (0 < value < 86400 * 7):
            raise ValueError(f"queue {cfg.name}: {label} must be more than 0 s and under a week, not {value}")
    if not 0 <= cfg.wrap_up_s <= 3600:
        raise ValueError(f"queue {cfg.name}: wrap_up_s must be 0 to 3600 s, not {cfg.wrap_up_s}")
    if not 0 < cfg.service_level_s <= 3600:
        raise ValueError(f"queue {cfg.name}: service_level_s must be more than 0 and at most 3600 s")
    if not -100 <= cfg.priority <= 100:
        raise ValueError(f"queue {cfg.name}: priority must be -100 to 100, not {cfg.priority}")
    _check_skills(f"queue {cfg.name}", cfg.needs)
    if cfg.overflow_to is not None:
        if cfg.overflow_to == cfg.name:
            raise ValueError(f"queue {cfg.name}: cannot overflow to itself")
        if cfg.overflow_to not in queues:
            raise ValueError(f"queue {cfg.name}: overflow target {cfg.overflow_to[:80]!r} is no queue")


def check_profile(profile: AgentProfile, queues: Mapping[str, QueueConfig]) -> None:
    """An agent definition from an admin: a sane id and name, a SIP URI, skills 1..10, known queues."""
    check_name("agent", profile.id)
    if not 1 <= len(profile.name) <= MAX_NAME or any(not ch.isprintable() for ch in profile.name):
        raise ValueError(f"agent {profile.id}: display name must be 1 to {MAX_NAME} printable characters")
    if not profile.uri.startswith(("sip:", "sips:")) or len(profile.uri) > 255 or any(
            ch.isspace() or ch in "<>\"'" or not ch.isprintable() for ch in profile.uri):
        raise ValueError(f"agent {profile.id}: uri must be a SIP URI such as sip:anna@127.0.0.1:5090")
    _check_skills(f"agent {profile.id}", profile.skills)
    unknown = sorted(q for q in profile.queues if q not in queues)
    if unknown:
        raise ValueError(f"agent {profile.id}: unknown queue {unknown[0][:80]!r}")


def _check_skills(owner: str, skills: Mapping[str, int]) -> None:
    if len(skills) > 32:
        raise ValueError(f"{owner}: at most 32 skills")
    for skill, level in skills.items():
        try:
            check_name("skill", skill)
        except ValueError as exc:
            raise ValueError(f"{owner}: {exc}") from None
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= MAX_SKILL_LEVEL:
            raise ValueError(f"{owner}: skill {skill} level must be a whole number 1 to {MAX_SKILL_LEVEL}")


class UnknownQueue(KeyError):
    def __str__(self) -> str:
        return f"unknown queue {self.args[0]!r}"


class QueueClosed(Exception):
    """The queue is outside its opening hours; `next_opening` is for the after-hours message."""

    def __init__(self, queue: str, next_opening: datetime | None) -> None:
        super().__init__(f"queue {queue} is closed (opens {next_opening.isoformat() if next_opening else 'never'})")
        self.queue, self.next_opening = queue, next_opening


class NotRinging(RuntimeError):
    pass


@dataclass(frozen=True)
class WaitInfo:
    """For position and expected-wait announcements."""

    queue: str
    position: int
    ahead: int
    expected_wait_s: float | None  # None: nobody staffed, no estimate
    expected_wait_min: int | None  # rounded up, for "about N minutes"
    offer_callback: bool  # the queue's max wait passed and its overflow action is a callback


@dataclass(frozen=True)
class QueueSnapshot:
    name: str
    open: bool
    waiting: int
    callbacks_waiting: int
    longest_wait_s: float
    offered: int
    answered: int
    abandoned: int
    service_level_pct: float | None
    average_speed_of_answer_s: float | None
    average_handle_s: float | None
    agents_available: int
    agents_staffed: int


@dataclass(frozen=True)
class AgentSnapshot:
    id: str
    name: str
    state: AgentState
    in_state_s: float
    call_id: str | None
    queue: str | None
    calls_taken: int
    occupancy_pct: float | None
    skills: Mapping[str, int]


@dataclass(eq=False)
class _Entry:
    call_id: str
    queue: str
    priority: int
    call_needs: Needs
    needs: Needs
    arrived_at: float  # first arrival (kept through overflow: ordering)
    queued_at: float  # arrival in the current queue (statistics)
    seq: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    agent_id: str | None = None
    delivered: bool = False  # acquire() returned the agent to the session
    callback: CallbackRequest | None = None
    max_wait_fired: bool = False
    closed: bool = False
    not_before: float = 0.0  # a callback whose customer did not answer waits until then for its next try
    attempts: int = 0  # callback dial attempts that found nobody
    relax: list[str] = field(default_factory=list)  # call skills that may be dropped, in this order
    relax_after_s: float | None = None
    relax_since: float = 0.0  # joined, or last relaxed
    relaxed: list[Relaxation] = field(default_factory=list)

    def key(self) -> tuple[int, float, int]:
        return (-self.priority, self.arrived_at, self.seq)


class CallDistributor:
    def __init__(
        self,
        queues: Iterable[QueueConfig] = (),
        *,
        directory: AgentDirectory | None = None,
        store: ReservationStore | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.directory: AgentDirectory = directory or InMemoryAgentDirectory()
        self.store: ReservationStore = store or InMemoryReservationStore()
        self._queues: dict[str, QueueConfig] = {}
        self._strategies: dict[str, Strategy] = {}
        self._stats: dict[str, QueueStatistics] = {}
        self._entries: dict[str, _Entry] = {}
        self._seq = itertools.count()
        self._listeners: list[Callable[[RoutingEvent], None]] = []
        self._dispatching = False
        self._again = False
        self._pending_profiles: dict[str, AgentProfile] = {}  # admin changes waiting for the call to end
        self.transfers = TransferDesk(lambda: self.queue_names, self)  # agent transfers (routing/transfer.py)
        self._front: set[str] = set()  # calls to queue at the front next time (a named transfer failed)
        for q in queues:
            self.add_queue(q)

    # -- configuration ---------------------------------------------------------------------
    def add_queue(self, cfg: QueueConfig) -> None:
        if cfg.name in self._queues:
            raise ValueError(f"queue {cfg.name!r} already exists")
        self._queues[cfg.name] = cfg
        self._strategies[cfg.name] = make_strategy(cfg.strategy)
        self._stats[cfg.name] = QueueStatistics(cfg.service_level_s)

    def update_queue(self, name: str, /, **changes: Any) -> QueueConfig:
        """Changes a queue's live parameters (any QueueConfig field but `name`), safely while calls wait.

        The new configuration is validated as a whole first (ValueError, nothing changed). Waiting calls
        keep their place: their needs follow the queue's new needs, their priority its new priority; a
        changed max wait counts from when they joined. Calls already ringing an agent are not touched.
        """
        old = self.queue_config(name)
        unknown = set(changes) - {f.name for f in fields(QueueConfig)} | ({"name"} & set(changes))
        if unknown:
            raise ValueError(f"queue {name}: cannot change {', '.join(sorted(unknown))}")
        new = replace(old, **changes)  # __post_init__ validates (strategy, overflow, wrap-up)
        check_queue(new, self._queues)
        strategy = make_strategy(new.strategy) if new.strategy != old.strategy else self._strategies[name]
        self._queues[name], self._strategies[name] = new, strategy
        self._stats[name].service_level_s = new.service_level_s
        for entry in self._entries.values():
            if entry.queue == name and entry.agent_id is None:
                entry.needs = merge_needs(needs_of(new.needs), entry.call_needs)
                entry.priority += new.priority - old.priority
        log.info("queue %s changed: %s", name, ", ".join(f"{k}={v!r}" for k, v in sorted(changes.items())))
        self._dispatch()  # looser needs may let a free agent take a waiting call now
        return new

    def put_agent(self, profile: AgentProfile, state: AgentState = S.LOGGED_OUT) -> bool:
        """Adds an agent (in `state`) or changes one's name, URI, skills and queues.

        An agent ringing, on a call or in wrap-up keeps her current profile until that call is done (the
        change is applied when she next rests); otherwise it applies at once. Returns True when applied
        now, False when it waits for the call to end.
        """
        check_profile(profile, self._queues)
        try:
            rec = self.directory.get(profile.id)
        except KeyError:
            self.add_agent(profile, state)
            log.info("agent %s added", profile.id)
            return True
        if rec.state in _RESTING:
            self._pending_profiles.pop(profile.id, None)
            rec.profile = profile
            self.directory.save(rec)
            log.info("agent %s changed", profile.id)
            self._dispatch()
            return True
        self._pending_profiles[profile.id] = profile
        log.info("agent %s changed; applied after her call %s", profile.id, rec.call_id)
        return False

    def remove_agent(self, agent_id: str, reason: str = "removed_by_admin") -> None:
        """Forgets an agent for good (an admin removed her): she is logged out, then dropped from the
        directory, the queue statistics and the wallboard. Refused with ValueError (nothing changed) while she
        is ringing, on a call or in wrap-up; UnknownAgent if there is no such agent."""
        rec = self.agent(agent_id)
        if rec.state not in _RESTING:
            raise ValueError(f"agent {agent_id} is {rec.state}: remove her when her call is done")
        if rec.state is not S.LOGGED_OUT:
            self._move(rec, S.LOGGED_OUT, reason)  # listeners (records, bus) see her leave
        self._pending_profiles.pop(agent_id, None)
        self.directory.remove(agent_id)
        log.info("agent %s removed (%s)", agent_id, reason)

    def pending_profile(self, agent_id: str) -> AgentProfile | None:
        """An admin change waiting for the agent's call to end, if any."""
        return self._pending_profiles.get(agent_id)

    def queue_config(self, name: str) -> QueueConfig:
        try:
            return self._queues[name]
        except KeyError:
            raise UnknownQueue(name) from None

    @property
    def queue_names(self) -> list[str]:
        return list(self._queues)

    def stats(self, queue: str) -> QueueStatistics:
        self.queue_config(queue)
        return self._stats[queue]

    def view(self, queue: str) -> QueueView:
        """An object with the old `routing.Queue` surface, for `hotline/session.py`."""
        self.queue_config(queue)
        return QueueView(self, queue)

    def subscribe(self, listener: Callable[[RoutingEvent], None]) -> None:
        self._listeners.append(listener)

    # -- agents ------------------------------------------------------------------------------
    def add_agent(self, profile: AgentProfile, state: AgentState = S.LOGGED_OUT) -> AgentRecord:
        now = self.clock.monotonic()
        record = AgentRecord(profile, AgentStatus(profile.id, now, self.clock.now()), available_since=now)
        self.directory.add(record)
        # A shared directory (routing/sqlstore.py) may already know her live state from another worker
        # (on a call, on break): that wins over the initial state asked for here.
        if state is not S.LOGGED_OUT and record.state is S.LOGGED_OUT:
            self.set_state(profile.id, state, "initial")
        return record

    def agent(self, ref: AgentRef) -> AgentRecord:
        if isinstance(ref, AgentRecord):
            return ref
        return self.directory.get(ref.id if isinstance(ref, AgentProfile) else ref)

    def agents(self) -> list[AgentRecord]:
        return self.directory.all()

    def set_state(self, ref: AgentRef, state: AgentState, reason: str = "manual") -> None:
        """Log in/out, breaks, not ready, ready (also ends wrap-up early). Calls drive the other states."""
        if state not in MANUAL_STATES:
            raise ValueError(f"{state} is reached through calls (reserve/answered/finished), not set by hand")
        rec = self.agent(ref)
        if rec.state is state:
            return
        self._move(rec, state, reason)
        if state is S.AVAILABLE:
            self._dispatch()

    def free_agents(self, queue: str, needs: Mapping[str, int] | None = None) -> list[AgentProfile]:
        want = merge_needs(needs_of(self.queue_config(queue).needs), needs_of(needs))
        free = [r for r in self.agents()
                if r.state is S.AVAILABLE and meets(r.skills, want) and serves(r.profile, queue)]
        return [r.profile for r in sorted(free, key=lambda r: (r.available_since, r.id))]

    # -- callers -----------------------------------------------------------------------------
    async def acquire(
        self,
        queue: str,
        call_id: str,
        *,
        priority: int = 0,
        needs: Mapping[str, int] | None = None,
        timeout: float | None = None,
        relax: Iterable[str] = (),
        relax_after_s: float | None = None,
    ) -> AgentProfile | None:
        """Queues the call (or rejoins its kept place) and waits until an agent is reserved (ringing).

        Returns the agent, or None on timeout (counted as abandoned), when the caller took a callback,
        or when `leave()` removed the call. Raises QueueClosed outside opening hours. Higher `priority`
        goes first (VIP tiers); `needs` adds per-call skills (language, product) to the queue's.
        `relax`: call skills that may be dropped, in this order, when no logged-in agent of the queue
        meets the needs, or nobody meeting them is reserved within `relax_after_s` (see `relaxed()`).
        """
        entry = self._entries.get(call_id)
        if entry is None:
            cfg = self.queue_config(queue)
            wall = self.clock.now()
            if not cfg.hours.is_open(wall):
                raise QueueClosed(queue, cfg.hours.next_opening(wall))
            now = self.clock.monotonic()
            call_needs = needs_of(needs)
            arrived = now
            if call_id in self._front:  # back from a transfer to a named agent that failed: first in line
                self._front.discard(call_id)
                arrived = min((e.arrived_at for e in self._entries.values() if e.queue == queue), default=now) - 1
            entry = _Entry(call_id, queue, priority + cfg.priority, call_needs,
                           merge_needs(needs_of(cfg.needs), call_needs), arrived, now, next(self._seq))
            entry.relax = [s for s in relax if any(r.skill == s for r in call_needs)]
            entry.relax_after_s, entry.relax_since = relax_after_s, now
            self._relax(entry, now)
            self._entries[call_id] = entry
            self._stats[queue].offered += 1
            self._emit(CallQueued(call_id, queue, priority, self._position(entry)))
            log.info("call %s queued in %s (priority %d)", call_id, queue, priority)
            self._dispatch()
        elif entry.callback is not None:
            raise RuntimeError(f"call {call_id} is waiting for a callback")
        elif entry.delivered:
            raise RuntimeError(f"call {call_id} already has agent {entry.agent_id} ringing: report answered/no_answer")
        try:
            async with asyncio.timeout(timeout):
                while entry.agent_id is None and entry.callback is None and not entry.closed:
                    entry.wake.clear()
                    await entry.wake.wait()
        except TimeoutError:
            if self._entries.get(call_id) is entry:
                self.leave(call_id, "timeout")
            return None
        except asyncio.CancelledError:
            if self._entries.get(call_id) is entry:
                self.leave(call_id, "caller_left")
            raise
        if entry.closed or entry.callback is not None or entry.agent_id is None:
            return None
        entry.delivered = True
        return self.directory.get(entry.agent_id).profile

    def leave(self, call_id: str, reason: str = "caller_left") -> None:
        """The caller hung up (or the callback could not reach them): recorded as abandoned with its wait."""
        entry = self._entries.get(call_id)
        if entry is None:
            return
        wait = self.clock.monotonic() - entry.queued_at
        self._stats[entry.queue].record_abandon(call_id, wait, reason, self.clock.now())
        self._emit(CallAbandoned(call_id, entry.queue, wait, reason))
        log.info("call %s left %s after %.1f s (%s)", call_id, entry.queue, wait, reason)
        self._remove(entry)

    def request_callback(self, call_id: str, number: str) -> CallbackRequest:
        """The caller accepts a callback: they keep their place virtually, their `acquire` returns None.

        When their turn comes an agent is reserved and a `CallbackDue` event says: dial `number` now.
        Then report on that agent as for any call (answered/no_answer/finished; `leave` if unreachable).
        """
        entry = self._entries.get(call_id)
        if entry is None:
            raise KeyError(f"call {call_id} is not queued")
        if entry.agent_id is not None:
            raise RuntimeError(f"call {call_id} already has agent {entry.agent_id} ringing")
        req = CallbackRequest(call_id, number, entry.queue, entry.priority, self.clock.now())
        entry.callback = req
        self._stats[entry.queue].callbacks_requested += 1
        entry.wake.set()
        self._dispatch()
        return req

    def callback_unanswered(self, call_id: str, *, retry_in_s: float | None) -> int:
        """The customer of a due callback did not pick up: the reserved agent is free again at once.

        `retry_in_s` None: give up (recorded abandoned, reason `callback_unanswered`). Otherwise the
        callback keeps its place and is due again no sooner than `retry_in_s` from now. Returns the
        number of unanswered attempts so far.
        """
        entry = self._entries.get(call_id)
        if entry is None or entry.callback is None:
            raise KeyError(f"call {call_id} has no pending callback")
        entry.attempts += 1
        if retry_in_s is None:
            self.leave(call_id, "callback_unanswered")
            return entry.attempts
        entry.not_before = self.clock.monotonic() + retry_in_s
        agent_id, entry.agent_id = entry.agent_id, None
        log.info("callback %s: attempt %d unanswered, next try in %.0f s", call_id, entry.attempts, retry_in_s)
        if agent_id is not None:
            rec = self.directory.get(agent_id)
            if rec.state is S.RINGING and rec.call_id == call_id:
                self._move(rec, S.AVAILABLE, "callback_unanswered")
        self._dispatch()
        return entry.attempts

    def callbacks(self, queue: str | None = None) -> list[CallbackRequest]:
        """Pending callbacks in the order they will be served."""
        entries = sorted((e for e in self._entries.values() if e.callback and (queue is None or e.queue == queue)),
                         key=_Entry.key)
        return [e.callback for e in entries if e.callback is not None]

    def waited_s(self, call_id: str) -> float | None:
        """How long the call has held its place (since its first arrival), or None if it is not queued."""
        entry = self._entries.get(call_id)
        return None if entry is None else self.clock.monotonic() - entry.arrived_at

    def restore_callback(self, call_id: str, queue: str, number: str, *, priority: int, requested_at: datetime,
                         waited_s: float = 0.0, attempts: int = 0) -> CallbackRequest:
        """Takes back a callback promised before this process started (a restart, or a dead worker's, read
        from the database): it keeps the place it had `waited_s` ago, with the stored `priority` (queue
        priority included). Opening hours do not apply: it was promised. Due as soon as an agent is free."""
        if call_id in self._entries:
            raise RuntimeError(f"call {call_id} is already queued")
        cfg = self.queue_config(queue)
        now = self.clock.monotonic()
        arrived = now - max(0.0, waited_s)
        entry = _Entry(call_id, queue, priority, (), needs_of(cfg.needs), arrived, arrived, next(self._seq))
        entry.attempts = attempts
        entry.callback = CallbackRequest(call_id, number, queue, priority, requested_at)
        self._entries[call_id] = entry
        log.info("callback %s restored in %s (priority %d, waited %.0f s)", call_id, queue, priority, waited_s)
        self._dispatch()
        return entry.callback

    # -- ring handling -----------------------------------------------------------------------
    def answered(self, ref: AgentRef) -> None:
        """The reserved agent picked up: agent on_call, the call leaves the queue (answered, with its wait)."""
        rec, entry = self._ringing(ref)
        now = self.clock.monotonic()
        self._move(rec, S.ON_CALL, "answered")
        rec.answered_at = now
        rec.calls_taken += 1
        self.directory.save(rec)
        if entry is not None:
            self._entries.pop(entry.call_id, None)
            wait = now - entry.queued_at
            self._stats[entry.queue].record_answer(wait)
            self._emit(CallAnswered(entry.call_id, entry.queue, rec.id, wait))

    def no_answer(self, ref: AgentRef) -> None:
        """The reserved agent did not pick up: agent not_ready; the caller keeps their place and gets the next one."""
        rec, entry = self._ringing(ref)
        self._move(rec, S.NOT_READY, "ring_no_answer")
        if entry is not None:
            self._stats[entry.queue].no_answers += 1
            entry.agent_id, entry.delivered = None, False
        self._dispatch()

    def finished(self, ref: AgentRef) -> None:
        """The call ended: agent in wrap_up for the queue's wrap_up_s, then available by itself."""
        rec = self.agent(ref)
        now = self.clock.monotonic()
        cfg = self._queues.get(rec.queue or "")
        wrap = cfg.wrap_up_s if cfg else 0.0
        talk = now - (rec.answered_at if rec.answered_at is not None else now)
        self._move(rec, S.WRAP_UP, "call_finished")
        if cfg is not None:
            self._stats[cfg.name].handle_times.add(talk + wrap)
        rec.wrap_up_until = now + wrap
        self.directory.save(rec)
        if wrap <= 0:
            self._move(rec, S.AVAILABLE, "wrap_up_done")
            self._dispatch()
            return
        try:
            asyncio.get_running_loop().call_later(wrap + 0.01, self.poll)
        except RuntimeError:  # no loop: poll() or run() ends the wrap-up
            pass

    def release(self, ref: AgentRef) -> None:
        """The old `Queue.release`: ends whatever the agent does for a call and frees them.

        Ringing: the reservation is dropped (the call leaves the queue, not counted as abandoned; a new
        `acquire` queues it again at the back) and the agent is available. On a call: `finished`.
        """
        rec = self.agent(ref)
        if rec.state is S.RINGING:
            entry = self._entries.get(rec.call_id or "")
            if entry is not None and entry.agent_id == rec.id:
                entry.agent_id = None
                self._remove(entry)
            self._move(rec, S.AVAILABLE, "released")
            self._dispatch()
        elif rec.state is S.ON_CALL:
            self.finished(rec)

    # -- transfers by agents (routing/transfer.py) ------------------------------------------------
    def allowed(self, agent_id: str, queue: str) -> bool:
        """Whether the agent takes calls of `queue` (her queue list and skills), whatever her state."""
        rec = self.agent(agent_id)
        cfg = self.queue_config(queue)
        return serves(rec.profile, queue) and meets(rec.skills, needs_of(cfg.needs))

    def check_target(self, agent_id: str, queue: str) -> None:
        """Raises TransferRefused if the agent is unknown or not allowed for `queue`, TargetBusy if not ready."""
        try:
            rec = self.agent(agent_id)
        except KeyError:
            raise TransferRefused(f"unknown agent {agent_id[:80]!r}") from None
        if queue not in self._queues:
            raise TransferRefused(f"unknown queue {queue[:80]!r}")
        if not self.allowed(agent_id, queue):
            raise TransferRefused(f"agent {agent_id} does not take calls of {queue}")
        if rec.state is not S.AVAILABLE:
            raise TargetBusy(f"agent {agent_id} is {rec.state.value.replace('_', ' ')}")

    def reserve_agent(self, agent_id: str, call_id: str, queue: str) -> AgentProfile:
        """Transfer or consultation to a named agent: reserves her (ringing) for `call_id` as a call of
        `queue`, outside the queue's order. Then report on her as for any call (answered/no_answer/
        release, finished). Raises TransferRefused (unknown, not allowed) or TargetBusy (not ready, taken)."""
        self.check_target(agent_id, queue)
        rec = self.agent(agent_id)
        if not self.store.try_reserve(rec.id, call_id):
            raise TargetBusy(f"agent {agent_id} was just given another call")
        rec.call_id, rec.queue, rec.ring_started = call_id, queue, self.clock.monotonic()
        self._move(rec, S.RINGING, f"call {call_id} (transfer)")
        log.info("call %s reserved agent %s by name (%s)", call_id, rec.id, queue)
        self._emit(AgentReserved(call_id, queue, rec.id))
        return rec.profile

    def claim_agent(self, agent_id: str, call_id: str, queue: str) -> AgentState:
        """An agent who takes `call_id` from a colleague's phone (attended transfer, RFC 3891 Replaces:
        hotline/attended.py): reserved for it (ringing) as a call of `queue` whatever her resting state
        (available, wrap-up, break, not ready, logged out); report on her then as for any call. Returns the
        state she was in (give it back with `set_state` after `release` if the transfer fails). Raises
        TransferRefused (unknown agent or queue) or TargetBusy (ringing or on another call)."""
        try:
            rec = self.agent(agent_id)
        except KeyError:
            raise TransferRefused(f"unknown agent {agent_id[:80]!r}") from None
        if queue not in self._queues:
            raise TransferRefused(f"unknown queue {queue[:80]!r}")
        before = rec.state
        if before not in _RESTING and before is not S.WRAP_UP:
            raise TargetBusy(f"agent {agent_id} is {before.value.replace('_', ' ')} for another call")
        if before is not S.AVAILABLE:  # (no dispatch: she is taken at once below)
            self._move(rec, S.AVAILABLE, f"took call {call_id} from a colleague")
        if not self.store.try_reserve(rec.id, call_id):
            raise TargetBusy(f"agent {agent_id} was just given another call")
        rec.call_id, rec.queue, rec.ring_started = call_id, queue, self.clock.monotonic()
        self._move(rec, S.RINGING, f"call {call_id} (attended transfer)")
        log.info("call %s: agent %s claimed (attended transfer, %s; was %s)", call_id, rec.id, queue, before)
        self._emit(AgentReserved(call_id, queue, rec.id))
        return before

    def queue_at_front(self, call_id: str) -> None:
        """The call's next `acquire` puts it first in line (ahead of callers of the same priority)."""
        self._front.add(call_id)

    # -- time ----------------------------------------------------------------------------------
    def poll(self) -> None:
        """Time-driven work: wrap-ups that ended, stale rings, max waits (overflow or callback offer)."""
        now = self.clock.monotonic()
        for rec in self.agents():
            if rec.state is S.WRAP_UP and rec.wrap_up_until is not None and rec.wrap_up_until <= now:
                self._move(rec, S.AVAILABLE, "wrap_up_done")
            elif rec.state is S.RINGING and rec.ring_started is not None:
                cfg = self._queues.get(rec.queue or "")
                if cfg and cfg.ring_timeout_s is not None and now - rec.ring_started >= cfg.ring_timeout_s:
                    log.warning("agent %s rang %.0f s without a report: no answer", rec.id, now - rec.ring_started)
                    self.no_answer(rec)
        for entry in list(self._entries.values()):
            if entry.relax and entry.agent_id is None and entry.callback is None:
                self._relax(entry, now)
            if entry.agent_id is not None or entry.callback is not None or entry.max_wait_fired:
                continue
            cfg = self._queues[entry.queue]
            waited = now - entry.queued_at
            if cfg.max_wait_s is None or waited < cfg.max_wait_s:
                continue
            if cfg.overflow == "queue" and cfg.overflow_to in self._queues:
                self._overflow(entry, self._queues[cfg.overflow_to], waited)
            elif cfg.overflow == "queue":
                log.error("queue %s overflows to unknown queue %r", cfg.name, cfg.overflow_to)
                entry.max_wait_fired = True
            elif cfg.overflow == "callback":
                entry.max_wait_fired = True
                self._emit(MaxWaitReached(entry.call_id, entry.queue, waited))
        self._dispatch()

    async def run(self, interval: float = 0.5) -> None:
        """Calls `poll()` every `interval` seconds until cancelled."""
        while True:
            self.poll()
            await asyncio.sleep(interval)

    # -- skills relaxation ------------------------------------------------------------------------
    def relaxed(self, call_id: str) -> list[Relaxation]:
        """The skills this waiting (or ringing) call no longer asks for, in the order they were dropped."""
        entry = self._entries.get(call_id)
        return list(entry.relaxed) if entry is not None else []

    def call_needs(self, call_id: str) -> dict[str, int]:
        """What an agent needs now to take this queued call (the queue's needs and the call's own)."""
        entry = self._entries.get(call_id)
        return {r.skill: r.min_level for r in entry.needs} if entry is not None else {}

    def _relax(self, entry: _Entry, now: float) -> None:
        """Drops the call's next relaxable skill while nobody logged in could ever meet the needs, or once
        `relax_after_s` passed without an agent (product skills come first in `relax`, then the language)."""
        cfg = self._queues[entry.queue]
        queue_needs = needs_of(cfg.needs)
        while entry.relax:
            staffed = [r.skills for r in self.agents() if r.state is not S.LOGGED_OUT
                       and serves(r.profile, entry.queue) and meets(r.skills, queue_needs)]
            reason = relax_reason(entry.call_needs, queue_needs, staffed, now - entry.relax_since, entry.relax_after_s)
            if reason is None:
                return
            skill = entry.relax.pop(0)
            entry.call_needs = without(entry.call_needs, skill)
            entry.needs = merge_needs(queue_needs, entry.call_needs)
            entry.relaxed.append(Relaxation(skill, reason, now - entry.queued_at))
            entry.relax_since = now
            log.info("call %s in %s: %s", entry.call_id, entry.queue, entry.relaxed[-1].describe())
            if reason == "timeout":
                return  # one skill per relax_after_s

    # -- announcements and statistics ------------------------------------------------------------
    def call_queue(self, call_id: str) -> str | None:
        entry = self._entries.get(call_id)
        return entry.queue if entry else None

    def position(self, call_id: str) -> int | None:
        """1-based place among the calls waiting in the same queue (callbacks keep theirs too)."""
        entry = self._entries.get(call_id)
        if entry is None or entry.agent_id is not None:
            return None
        return self._position(entry)

    def waiting(self, queue: str) -> int:
        return sum(1 for e in self._entries.values() if e.queue == queue and e.agent_id is None)

    def expected_wait_s(self, call_id: str) -> float | None:
        """position × average handle time (recent calls) ÷ staffed skilled agents; 0 when one is free.

        None when the call is not queued or nobody who could take it is staffed.
        """
        entry = self._entries.get(call_id)
        if entry is None:
            return None
        if entry.agent_id is not None:
            return 0.0
        cfg = self._queues[entry.queue]
        able = [r for r in self.agents() if meets(r.skills, entry.needs)]
        staffed = sum(1 for r in able if r.state in STAFFED)
        if staffed == 0:
            return None
        position = self._position(entry)
        free = sum(1 for r in able if r.state is S.AVAILABLE)
        if free >= position:
            return 0.0
        return position * self._stats[entry.queue].handle_times.mean(cfg.default_handle_s) / staffed

    def wait_info(self, call_id: str) -> WaitInfo | None:
        entry = self._entries.get(call_id)
        if entry is None:
            return None
        pos = self._position(entry) if entry.agent_id is None else 0
        ewt = self.expected_wait_s(call_id)
        minutes = None if ewt is None else math.ceil(ewt / 60)
        offer = entry.max_wait_fired and entry.callback is None
        return WaitInfo(entry.queue, pos, max(0, pos - 1), ewt, minutes, offer)

    def is_open(self, queue: str, now: datetime | None = None) -> bool:
        return self.queue_config(queue).hours.is_open(now or self.clock.now())

    def next_opening(self, queue: str, now: datetime | None = None) -> datetime | None:
        return self.queue_config(queue).hours.next_opening(now or self.clock.now())

    def queue_snapshot(self, queue: str) -> QueueSnapshot:
        cfg = self.queue_config(queue)
        st = self._stats[queue]
        now = self.clock.monotonic()
        mine = [e for e in self._entries.values() if e.queue == queue and e.agent_id is None]
        able = [r for r in self.agents() if meets(r.skills, needs_of(cfg.needs))]
        return QueueSnapshot(
            name=queue,
            open=cfg.hours.is_open(self.clock.now()),
            waiting=sum(1 for e in mine if e.callback is None),
            callbacks_waiting=sum(1 for e in mine if e.callback is not None),
            longest_wait_s=max((now - e.queued_at for e in mine), default=0.0),
            offered=st.offered,
            answered=st.answered,
            abandoned=st.abandoned,
            service_level_pct=st.service_level_pct,
            average_speed_of_answer_s=st.average_speed_of_answer_s,
            average_handle_s=st.handle_times.mean(0.0) if len(st.handle_times) else None,
            agents_available=sum(1 for r in able if r.state is S.AVAILABLE),
            agents_staffed=sum(1 for r in able if r.state in STAFFED),
        )

    def queue_snapshots(self) -> list[QueueSnapshot]:
        return [self.queue_snapshot(q) for q in self._queues]

    def agent_snapshots(self) -> list[AgentSnapshot]:
        now = self.clock.monotonic()
        out = []
        for r in sorted(self.agents(), key=lambda r: r.id):
            occ = r.status.occupancy(now)
            out.append(AgentSnapshot(r.id, r.profile.name, r.state, now - r.status.since, r.call_id, r.queue,
                                     r.calls_taken, None if occ is None else 100.0 * occ, r.skills))
        return out

    # -- internals -----------------------------------------------------------------------------
    def _position(self, entry: _Entry) -> int:
        key = entry.key()
        return 1 + sum(1 for e in self._entries.values()
                       if e.queue == entry.queue and e.agent_id is None and e is not entry and e.key() < key)

    def _ringing(self, ref: AgentRef) -> tuple[AgentRecord, _Entry | None]:
        rec = self.agent(ref)
        if rec.state is not S.RINGING:
            raise NotRinging(f"agent {rec.id} is {rec.state}, not ringing")
        entry = self._entries.get(rec.call_id or "")
        return rec, entry if entry is not None and entry.agent_id == rec.id else None

    def _remove(self, entry: _Entry) -> None:
        self._entries.pop(entry.call_id, None)
        entry.closed = True
        entry.wake.set()
        if entry.agent_id is not None:
            rec = self.directory.get(entry.agent_id)
            entry.agent_id = None
            if rec.state is S.RINGING and rec.call_id == entry.call_id:
                self._move(rec, S.AVAILABLE, "call_left")
                self._dispatch()

    def _move(self, rec: AgentRecord, to: AgentState, reason: str) -> None:
        old = rec.state
        change = rec.status.transition(to, self.clock.monotonic(), self.clock.now(), reason)
        if to in _RESTING:
            self.store.release(rec.id)
            rec.call_id = rec.queue = None
            rec.ring_started = rec.answered_at = rec.wrap_up_until = None
            pending = self._pending_profiles.pop(rec.id, None)
            if pending is not None:  # an admin change made while she was on a call (routing/admin.py)
                rec.profile = pending
                log.info("agent %s: profile change applied after the call", rec.id)
        if to is S.AVAILABLE:
            rec.available_since = change.at
        self.directory.save(rec)
        self._emit(AgentStateChanged(rec.id, old, to, reason, change.wall))

    def _overflow(self, entry: _Entry, target: QueueConfig, waited: float) -> None:
        source = entry.queue
        self._stats[source].overflowed_out += 1
        self._stats[target.name].overflowed_in += 1
        entry.queue = target.name
        entry.queued_at = self.clock.monotonic()
        entry.needs = merge_needs(needs_of(target.needs), entry.call_needs)
        log.info("call %s overflowed from %s to %s after %.0f s", entry.call_id, source, target.name, waited)
        self._emit(CallOverflowed(entry.call_id, source, target.name, waited))

    def _dispatch(self) -> None:
        if self._dispatching:  # a listener changed something mid-dispatch: go round once more
            self._again = True
            return
        self._dispatching = True
        try:
            self._again = True
            while self._again:
                self._again = False
                self._dispatch_once()
        finally:
            self._dispatching = False

    def _dispatch_once(self) -> None:
        free = [r for r in self.agents() if r.state is S.AVAILABLE]
        if not free:
            return
        now = self.clock.monotonic()
        for entry in sorted((e for e in self._entries.values() if e.agent_id is None), key=_Entry.key):
            free = [r for r in free if r.state is S.AVAILABLE]
            if not free:
                return
            if self._entries.get(entry.call_id) is not entry or entry.agent_id is not None:
                continue
            if entry.not_before > now:  # a callback waiting for its next try
                continue
            candidates = [r for r in free if meets(r.skills, entry.needs) and serves(r.profile, entry.queue)]
            strategy = self._strategies[entry.queue]
            while candidates:
                pick = strategy.choose(candidates, entry.needs)
                candidates.remove(pick)
                free.remove(pick)
                if self.store.try_reserve(pick.id, entry.call_id):
                    self._ring(entry, pick)
                    break

    def _ring(self, entry: _Entry, rec: AgentRecord) -> None:
        rec.call_id, rec.queue, rec.ring_started = entry.call_id, entry.queue, self.clock.monotonic()
        self._move(rec, S.RINGING, f"call {entry.call_id}")  # listeners see the call she rings for
        entry.agent_id = rec.id
        log.info("call %s reserved agent %s in %s", entry.call_id, rec.id, entry.queue)
        self._emit(AgentReserved(entry.call_id, entry.queue, rec.id))
        if entry.callback is not None:
            self._emit(CallbackDue(entry.callback, rec.id))
        else:
            entry.wake.set()

    def _emit(self, event: RoutingEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("routing event listener failed on %r", event)


class QueueView:
    """One queue of a distributor with the surface `hotline/session.py` already uses (`routing.Queue`)."""

    def __init__(self, acd: CallDistributor, name: str) -> None:
        self.acd, self.name = acd, name

    @property
    def waiting(self) -> int:
        return self.acd.waiting(self.name)

    @property
    def agents(self) -> list[AgentProfile]:
        needs = needs_of(self.acd.queue_config(self.name).needs)
        return [r.profile for r in self.acd.agents() if meets(r.skills, needs)]

    def position(self, call_id: str) -> int | None:
        return self.acd.position(call_id)

    def free_agents(self) -> list[AgentProfile]:
        return self.acd.free_agents(self.name)

    async def acquire(self, call_id: str, timeout: float | None = None, *, priority: int = 0,
                      needs: Mapping[str, int] | None = None, relax: Iterable[str] = (),
                      relax_after_s: float | None = None) -> AgentProfile | None:
        return await self.acd.acquire(self.name, call_id, priority=priority, needs=needs, timeout=timeout,
                                      relax=relax, relax_after_s=relax_after_s)

    def relaxed(self, call_id: str) -> list[Relaxation]:
        return self.acd.relaxed(call_id)

    def release(self, agent: AgentRef) -> None:
        self.acd.release(agent)

    def request_callback(self, call_id: str, number: str) -> CallbackRequest:
        return self.acd.request_callback(call_id, number)

    def answered(self, agent: AgentRef) -> None:
        self.acd.answered(agent)

    def no_answer(self, agent: AgentRef) -> None:
        self.acd.no_answer(agent)

    def finished(self, agent: AgentRef) -> None:
        self.acd.finished(agent)

    def leave(self, call_id: str, reason: str = "caller_left") -> None:
        self.acd.leave(call_id, reason)

    def expected_wait_s(self, call_id: str) -> float | None:
        return self.acd.expected_wait_s(call_id)

    def wait_info(self, call_id: str) -> WaitInfo | None:
        return self.acd.wait_info(call_id)

    def is_open(self, now: datetime | None = None) -> bool:
        return self.acd.is_open(self.name, now)

    def next_opening(self, now: datetime | None = None) -> datetime | None:
        return self.acd.next_opening(self.name, now)
