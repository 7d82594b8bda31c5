"""Callbacks in the call: the caller hangs up keeping their place; the hotline dials them back.

The session (hotline/session.py) takes the caller's choice and number while they are queued, then
`CallbackDialer.register(PendingCallback(...))` and `queue.request_callback(call_id, number)`. When
their turn comes the distributor reserves an agent and emits `CallbackDue`; the dialer then dials the
customer (`queues[].callback.dial_uri` with the number), plays the greeting, rings the reserved agent
and bridges them, publishing the screen pop (`AgentAssigned`) with the original call's context.

Everything is recorded on the original call (its record was closed with outcome `callback_requested`):
a `callback` leg per attempt (answered or `no_answer`), the agent leg, transcript event lines, the queue
entry closed answered (with the agent) or abandoned, and the call's outcome updated to
`callback_connected`, `callback_failed` or `callback_expired`. An unanswered callback is retried
`attempts` times, `retry_after_s` apart; meanwhile the reserved agent is free for other calls.

Durable (recordings/callbacks.py, table `callbacks`): each promise is a row written when it is taken
(journalled if the database is away) and moved through pending → dialling → connected → done / failed /
expired. A worker that stops keeps its open callbacks; at start-up (`start()`) it takes back the ones it
owns — a restart or a SIGKILL loses none — in their original order, and with a shared agent store
(`routing.store: database`) it takes over those of workers whose heartbeat stopped. Callbacks older than
`callback.expire_after_s` are dropped (outcome `callback_expired`).

The customer↔agent conversation is recorded like an agent call (same recorder, sealed at rest) and then
joined after the call's own recording, so the call page plays it; both sides are transcribed (speaker
`caller` and `agent`) on the original call when a recognizer is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from asr import Utterance
from hotline.events import AgentAssigned, CallEnded
from hotline.holdmusic import HoldMusic
from hotline.settings import CallbackSettings, QueueSettings, Settings
from recordings import StereoRecorder
from recordings.callbacks import CallbackStore, StoredCallback, append_recording
from routing import CallbackDue, CallDistributor, RoutingEvent
from telephony import AudioFrame, CallFailed, CallLeg, DtmfDigit, bridge

if TYPE_CHECKING:
    from hotline.session import SessionDeps
    from routing.sqlstore import SqlAgentStore

log = logging.getLogger(__name__)

WATCH_EVERY_S = 15.0  # expiry and dead workers' callbacks are looked at this often


@dataclass
class PendingCallback:
    """A caller who chose to be called back, with what the agent's screen pop needs."""

    call_id: str
    number: str
    queue: str
    lang: str
    context: dict[str, Any]
    queue_entry: str | None  # the call's open queue record, closed when the callback ends
    t0: float = field(default_factory=time.monotonic)  # the original call's start, for transcript offsets
    attempts: int = 0
    requested_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    row_id: str | None = None  # its row in `callbacks` once written (recordings/callbacks.py)
    state: str = "pending"


def fill(prompts: dict[str, str], lang: str, **values: Any) -> str:
    """The prompt in `lang` (else English, else any), with `{name}` values filled in."""
    text = prompts.get(lang) or prompts.get("en") or next(iter(prompts.values()), "")
    try:
        return text.format(**values)
    except (KeyError, IndexError, ValueError):
        return text


def queue_settings(settings: Settings, name: str) -> QueueSettings:
    """The settings of queue `name` (the first queue's for an unknown name)."""
    return next((q for q in settings.queues if q.name == name), settings.queues[0])


def live_seconds(acd: CallDistributor, qs: QueueSettings, key: Literal["max_wait_s", "ring_timeout_s"]) -> float:
    """A queue time the console may change (/admin/queues: the distributor's live QueueConfig, routing/admin.py):
    the changed value wins over the YAML's (`qs`); unchanged or an unknown queue, the YAML's."""
    try:
        live: float | None = getattr(acd.queue_config(qs.name), key)
    except KeyError:  # routing.UnknownQueue
        live = None
    return float(getattr(qs, key)) if live is None else live


def max_wait_s(acd: CallDistributor, qs: QueueSettings) -> float:
    """How long a caller of queue `qs` may wait (live value, else the YAML's ``max_wait_s``)."""
    return live_seconds(acd, qs, "max_wait_s")


def ring_timeout_s(acd: CallDistributor, qs: QueueSettings) -> float:
    """How long an agent's phone rings for a caller of queue `qs` (live value, else the YAML's ``ring_timeout_s``)."""
    return live_seconds(acd, qs, "ring_timeout_s")


def spoken_digits(number: str) -> str:
    """"13800001111" → "1 3 8 0 0 0 0 1 1 1 1": read out digit by digit."""
    return " ".join(number)


class CallbackDialer:
    """Listens to the distributor for `CallbackDue` and runs each callback as a task."""

    def __init__(self, acd: CallDistributor, deps: SessionDeps) -> None:
        self.acd, self.deps = acd, deps
        self.pending: dict[str, PendingCallback] = {}
        self._agents: dict[str, asyncio.Queue[str]] = {}  # call id → agents reserved for its running callback
        self._tasks: set[asyncio.Task[None]] = set()
        self.node = deps.settings.node_name
        self.rows = CallbackStore(deps.store, key=deps.recording_key)  # durable promises (recordings/callbacks.py)
        self._row_lock = asyncio.Lock()  # one callback row write at a time, in the order they were asked
        self._stopping = False
        self._saving: set[asyncio.Task[None]] = set()  # rows being written (awaited, never cut, at stop)
        self._watch: asyncio.Task[None] | None = None
        self.watch_every_s = WATCH_EVERY_S
        self._read_back = False  # the stored callbacks were read once (else tried again by `check`)

    def register(self, cb: PendingCallback) -> None:
        """The session took a callback (before `request_callback`): kept here and written to the database."""
        self.pending[cb.call_id] = cb
        self._spawn(self._store_new(cb))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)

    async def _store_new(self, cb: PendingCallback) -> None:
        """Writes the new callback's row (journalled if the database is away) with the caller's place."""
        async with self._row_lock:
            req = next((r for r in self.acd.callbacks() if r.call_id == cb.call_id), None)
            waited = self.acd.waited_s(cb.call_id) or 0.0
            if req is not None:
                cb.requested_at = req.requested_at
            cb.row_id = await self._db(
                self.rows.add, cb.call_id, queue=cb.queue, number=cb.number, language=cb.lang, context=cb.context,
                requested_at=cb.requested_at, queued_at=datetime.now(UTC) - timedelta(seconds=waited),
                priority=req.priority if req is not None else 0, place=self.acd.position(cb.call_id) or 0,
                node=self.node, queue_entry=cb.queue_entry)
        if cb.row_id is None:
            log.error("call %s: ALERT callback to %s kept in memory only (not stored)", cb.call_id, cb.number)

    async def _set_row(self, cb: PendingCallback, state: str, reason: str | None = None) -> None:
        cb.state = state
        async with self._row_lock:
            if cb.row_id is not None:
                await self._db(self.rows.set_state, cb.row_id, state, attempts=cb.attempts, reason=reason)

    # -- start-up: the callbacks a previous run (or a dead worker) promised ---------------------------------
    async def start(self, agent_store: SqlAgentStore | None = None, dead_worker_after_s: float = 30.0) -> int:
        """Takes back the unfinished callbacks this worker owns (a restart or a crash of its previous run) and
        starts watching for expiry and, with a shared agent store, for the callbacks of workers whose heartbeat
        stopped `dead_worker_after_s` ago. Call it once SIP is up (a restored callback may be dialled at once).
        Returns how many callbacks were taken back."""
        restored = await self._restore()
        self._watch = asyncio.ensure_future(self._watch_loop(agent_store, dead_worker_after_s))
        return restored

    async def _restore(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            rows = await loop.run_in_executor(self.deps.db_pool, self.rows.open_for, self.node)
        except Exception:
            log.exception("%s: stored callbacks could not be read; tried again in %.0f s", self.node,
                          self.watch_every_s)
            return 0
        self._read_back = True
        n = 0
        for row in rows:
            if row.call_id in self.pending:
                continue
            if await self._take_back(row):
                n += 1
        if n:
            log.warning("%s: %d callbacks taken back from the database", self.node, n)
        return n

    async def _take_back(self, row: StoredCallback) -> bool:
        now = datetime.now(UTC)
        started = row.call_started_at or row.requested_at
        cb = PendingCallback(row.call_id, row.number, row.queue, row.language, row.context, row.queue_entry,
                             t0=time.monotonic() - max(0.0, (now - started).total_seconds()), attempts=row.attempts,
                             requested_at=row.requested_at, row_id=row.id, state=row.state)
        if row.state == "connected":  # the worker died during the conversation: it took place, cut short
            await self._line(cb, "callback conversation cut short: the worker stopped")
            await self._set_row(cb, "done", "worker_restart")
            return False
        if self._expired(cb):
            await self._expire(cb)
            return False
        queue = row.queue if row.queue in self.acd.queue_names else self.acd.queue_names[0]
        if queue != row.queue:
            log.warning("call %s: queue %s is gone; its callback joins %s", row.call_id, row.queue, queue)
            cb.queue = queue
        self.pending[cb.call_id] = cb
        if row.state != "pending":
            await self._set_row(cb, "pending", "worker_restart")
        await self._line(cb, f"callback to {row.number} taken back by {self.node} (place kept)")
        waited = (now - row.queued_at).total_seconds()
        try:
            self.acd.restore_callback(cb.call_id, queue, cb.number, priority=row.priority,
                                      requested_at=row.requested_at, waited_s=waited, attempts=row.attempts)
        except RuntimeError:  # already queued here (it was never gone)
            pass
        return True

    def _expired(self, cb: PendingCallback) -> bool:
        limit = queue_settings(self.deps.settings, cb.queue).callback.expire_after_s
        return (datetime.now(UTC) - cb.requested_at).total_seconds() > limit

    async def _expire(self, cb: PendingCallback) -> None:
        """A callback not made in time: dropped, its queue entry abandoned, the call's outcome callback_expired."""
        self.pending.pop(cb.call_id, None)
        self._leave(cb.call_id, "callback_expired")
        log.warning("call %s: callback to %s expired (requested %s)", cb.call_id, cb.number,
                    cb.requested_at.isoformat(timespec="seconds"))
        await self._line(cb, f"callback to {cb.number} expired: not made within "
                             f"{queue_settings(self.deps.settings, cb.queue).callback.expire_after_s / 3600:g} h")
        if cb.queue_entry:
            await self._db(self.deps.store.queue_left, cb.queue_entry, "abandoned")
            cb.queue_entry = None
        await self._db(self.deps.store.update_call, cb.call_id, outcome="callback_expired",
                       end_reason="callback_expired")
        await self._set_row(cb, "expired", "callback_expired")

    async def _watch_loop(self, agent_store: SqlAgentStore | None, dead_after_s: float) -> None:
        while True:
            await asyncio.sleep(self.watch_every_s)
            try:
                await self.check(agent_store, dead_after_s)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database being away must not stop the worker
                log.exception("%s: callbacks not checked", self.node)

    async def check(self, agent_store: SqlAgentStore | None = None, dead_after_s: float = 30.0) -> None:
        """Expires callbacks waiting too long; takes over the callbacks of dead workers (shared agent store)."""
        if not self._read_back:  # the database was away at start-up
            await self._restore()
        for cb in list(self.pending.values()):
            if cb.call_id not in self._agents and cb.state == "pending" and self._expired(cb):
                await self._expire(cb)
        if agent_store is None:
            return
        loop = asyncio.get_running_loop()
        dead = await loop.run_in_executor(self.deps.db_pool, _dead_nodes, agent_store, dead_after_s)
        if not dead:
            return
        claimed: int = await loop.run_in_executor(self.deps.db_pool, self.rows.claim, dead, self.node)
        if claimed:
            await self._restore()

    def on_event(self, event: RoutingEvent) -> None:
        """Distributor listener (synchronous): a due callback starts (or feeds) its task."""
        if not isinstance(event, CallbackDue):
            return
        call_id, agent_id = event.request.call_id, event.agent_id
        running = self._agents.get(call_id)
        if running is not None:  # the customer is on the line and the previous agent did not answer
            running.put_nowait(agent_id)
            return
        cb = self.pending.get(call_id)
        if cb is None:
            log.error("call %s: callback due but not known to this worker; given up", call_id)
            asyncio.get_running_loop().call_soon(self._forget, call_id)
            return
        agents: asyncio.Queue[str] = asyncio.Queue()
        agents.put_nowait(agent_id)
        self._agents[call_id] = agents
        task = asyncio.ensure_future(self._run(cb, agents))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _leave(self, call_id: str, reason: str) -> None:
        """Takes the call out of the distributor if it is still there (frees an agent still ringing for it)."""
        if any(r.call_id == call_id for r in self.acd.callbacks()) or self.acd.call_queue(call_id) is not None:
            self.acd.leave(call_id, reason)

    def _forget(self, call_id: str) -> None:
        with contextlib.suppress(KeyError):
            self.acd.callback_unanswered(call_id, retry_in_s=None)

    async def stop(self) -> None:
        """Server stop: callbacks being made are cut (one not yet connected goes back to pending); every open
        callback stays in the database, made after this worker starts again (or by another worker that takes
        it over). One that could not be stored (no database, no journal) is recorded failed."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._saving:
            await asyncio.wait(list(self._saving), timeout=10)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for cb in list(self.pending.values()):
            if cb.row_id is None:
                log.warning("call %s: callback to %s not made: the worker stops", cb.call_id, cb.number)
                await self._line(cb, "callback not made: the worker stopped")
                await self._fail(cb, "worker_stopped")
            else:
                log.warning("call %s: callback to %s kept for the next start (%s stops)", cb.call_id, cb.number,
                            self.node)
                await self._line(cb, f"callback kept: {self.node} stops; it is made after the restart")
        self.pending.clear()

    # -- records -------------------------------------------------------------------------------
    async def _db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.deps.db_pool, lambda: fn(*args, **kwargs))
        except Exception:
            log.exception("call %s: callback record write failed (%s)", args[0] if args else "?",
                          getattr(fn, "__name__", fn))
            return None

    async def _line(self, cb: PendingCallback, text: str, speaker: str = "event") -> None:
        log.info("call %s: %s", cb.call_id, text)
        await self._db(self.deps.store.add_line, cb.call_id, speaker, text, time.monotonic() - cb.t0,
                       language=cb.lang)

    # -- one callback ----------------------------------------------------------------------------
    async def _run(self, cb: PendingCallback, agents: asyncio.Queue[str]) -> None:
        qs = queue_settings(self.deps.settings, cb.queue)
        cfg = qs.callback
        agent_id = agents.get_nowait()
        try:
            customer = await self._dial_customer(cb, cfg)
            if customer is None:
                return
            recorder = await self._record(cb, customer)
            try:
                await self._connect(cb, qs, customer, agent_id, agents)
            finally:
                if not customer.ended.is_set():
                    await customer.hangup()
                await self._keep_recording(cb, recorder)
        except asyncio.CancelledError:
            self._leave(cb.call_id, "callback_interrupted")
            if self._stopping and cb.state in ("pending", "dialling") and cb.call_id in self.pending:
                await self._set_row(cb, "pending", "worker_stopped")  # dialled again after the restart
            raise
        except Exception:
            log.exception("call %s: callback failed", cb.call_id)
            self._leave(cb.call_id, "callback_error")
            await self._fail(cb, "callback_error")
        finally:
            self._agents.pop(cb.call_id, None)

    async def _dial_customer(self, cb: PendingCallback, cfg: CallbackSettings) -> CallLeg | None:
        uri = cfg.dial_uri.format(number=cb.number)
        cb.attempts += 1
        await self._set_row(cb, "dialling")
        await self._line(cb, f"calling back {cb.number} (attempt {cb.attempts} of {cfg.attempts})")
        leg_id = await self._db(self.deps.store.add_leg, cb.call_id, "callback", peer=uri)
        try:
            leg = await self.deps.dial(uri, from_user="hotline", timeout=cfg.ring_timeout_s)
        except CallFailed as exc:
            if leg_id:
                await self._db(self.deps.store.end_leg, leg_id, "no_answer")
            last = cb.attempts >= cfg.attempts
            self.acd.callback_unanswered(cb.call_id, retry_in_s=None if last else cfg.retry_after_s)
            log.warning("call %s: callback to %s not answered (%s)", cb.call_id, uri, exc)
            if last:
                await self._line(cb, f"callback to {cb.number} not answered; given up after {cb.attempts} attempts")
                await self._fail(cb, "callback_unanswered")
            else:
                await self._line(cb, f"callback to {cb.number} not answered; next try in {cfg.retry_after_s:.0f} s")
                await self._set_row(cb, "pending", "callback_unanswered")
            return None
        if leg_id:
            await self._db(self.deps.store.leg_answered, leg_id)
        await self._line(cb, f"callback answered by {cb.number}")
        cb.context["callback_leg"] = leg_id
        return leg

    async def _fail(self, cb: PendingCallback, reason: str) -> None:
        self.pending.pop(cb.call_id, None)
        if cb.queue_entry:
            await self._db(self.deps.store.queue_left, cb.queue_entry, "abandoned")
            cb.queue_entry = None
        await self._db(self.deps.store.update_call, cb.call_id, outcome="callback_failed", end_reason=reason)
        await self._set_row(cb, "failed", reason)

    async def _say(self, leg: CallLeg, text: str, lang: str, limit_s: float = 20.0) -> None:
        if not text:
            return
        pcm = await self.deps.prompts.render(text, lang)
        leg.send_audio(pcm)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_first(leg.wait_played(), leg.ended.wait()), limit_s)

    async def _connect(self, cb: PendingCallback, qs: QueueSettings, customer: CallLeg, agent_id: str,
                       agents: asyncio.Queue[str]) -> None:
        deps = self.deps
        leg_id = cb.context.get("callback_leg")
        await self._say(customer, fill(qs.callback.greeting, cb.lang), cb.lang)
        music_pcm = (deps.hold_music or {}).get(cb.queue)
        music = HoldMusic(music_pcm) if music_pcm else None
        deadline = time.monotonic() + max_wait_s(self.acd, qs)
        while True:
            if customer.ended.is_set():
                self._leave(cb.call_id, "callback_customer_left")
                await self._end(cb, leg_id, None, "customer_hung_up")
                return
            agent = self.acd.agent(agent_id).profile
            agent_leg_id = await self._db(deps.store.add_leg, cb.call_id, "agent", peer=agent.uri)
            dial = asyncio.ensure_future(deps.dial(agent.uri, from_user=cb.number,
                                                     timeout=ring_timeout_s(self.acd, qs)))
            await _first(dial, customer.ended.wait())
            if not dial.done():  # the customer hung up while the agent's phone rang
                dial.cancel()
                with contextlib.suppress(asyncio.CancelledError, CallFailed):
                    await (await dial).hangup()  # answered in the same instant
                if agent_leg_id:
                    await self._db(deps.store.end_leg, agent_leg_id, "cancelled")
                continue
            try:
                agent_leg = dial.result()
            except CallFailed as exc:
                log.warning("call %s: agent %s did not answer the callback (%s)", cb.call_id, agent.name, exc)
                if agent_leg_id:
                    await self._db(deps.store.end_leg, agent_leg_id, "no_answer")
                await self._line(cb, f"agent {agent.name} did not answer")
                self.acd.no_answer(agent_id)  # the next free agent is reserved for this callback (CallbackDue)
                next_id = await self._next_agent(customer, agents, music, deadline)
                if next_id is None:
                    gone = customer.ended.is_set()
                    self._leave(cb.call_id, "callback_customer_left" if gone else "callback_no_agent")
                    await self._end(cb, leg_id, None, "customer_hung_up" if gone else "no_agent")
                    return
                agent_id = next_id
                continue
            await self._bridge(cb, qs, customer, agent_id, agent.name, agent_leg, agent_leg_id, leg_id)
            return

    async def _next_agent(self, customer: CallLeg, agents: asyncio.Queue[str], music: HoldMusic | None,
                          deadline: float) -> str | None:
        """Hold music for the customer until another agent is reserved, they hang up, or the wait ends."""
        while time.monotonic() < deadline and not customer.ended.is_set():
            if music is not None and customer.queued_ms < 400:
                customer.send_audio(music.next(1000))
            with contextlib.suppress(TimeoutError):
                agent_id = await asyncio.wait_for(agents.get(), 0.2)
                customer.clear_audio()
                return agent_id
        return None

    async def _bridge(self, cb: PendingCallback, qs: QueueSettings, customer: CallLeg, agent_id: str,
                      agent_name: str, agent_leg: CallLeg, agent_leg_id: str | None, leg_id: str | None) -> None:
        deps = self.deps
        self.acd.answered(agent_id)
        self.pending.pop(cb.call_id, None)
        writers: list[asyncio.Task[None]] = []
        try:
            await self._set_row(cb, "connected")
            if agent_leg_id:
                await self._db(deps.store.leg_answered, agent_leg_id)
            if cb.queue_entry:
                await self._db(deps.store.queue_left, cb.queue_entry, "answered", agent=agent_name)
                cb.queue_entry = None
            await self._db(deps.store.update_call, cb.call_id, outcome="callback_connected", agent=agent_name,
                           agent_answered_at=datetime.now(UTC))
            context = {**cb.context, "call_id": cb.call_id, "callback": True, "callback_number": cb.number}
            deps.bus.publish(AgentAssigned(cb.call_id, cb.queue, agent_name, context))
            await self._line(cb, f"callback connected to agent {agent_name}")
            customer.clear_audio()
            writers = self._transcribers(cb, customer, agent_leg)
            await bridge(customer, agent_leg)
        finally:
            if not agent_leg.ended.is_set():
                await agent_leg.hangup()
            if writers:  # each reader ends with its leg and writes what was still being recognised
                await asyncio.wait(writers, timeout=self.deps.settings.asr.timeout_s + 1)
            self.acd.finished(agent_id)
            reason = "customer_hung_up" if customer.ended.is_set() else "agent_hung_up"
            if agent_leg_id:
                await self._db(deps.store.end_leg, agent_leg_id, reason)
            await self._end(cb, leg_id, agent_name, reason)

    # -- the conversation's recording and transcript ------------------------------------------------------
    async def _record(self, cb: PendingCallback, customer: CallLeg) -> StereoRecorder | None:
        """Records the customer's leg like an agent call: customer left, greeting and agent right."""
        deps = self.deps
        path = deps.settings.recordings_dir / f"{cb.call_id}-callback{cb.attempts}.wav"
        loop = asyncio.get_running_loop()
        try:
            rec = await loop.run_in_executor(None, lambda: StereoRecorder(
                path, call_id=cb.call_id, compress=deps.settings.recordings.compress, key=deps.recording_key))
        except (OSError, RuntimeError) as exc:
            log.error("call %s: callback recording unavailable (%s); the callback goes on without it", cb.call_id, exc)
            return None
        customer.add_tap(rec.tap)
        return rec

    async def _keep_recording(self, cb: PendingCallback, rec: StereoRecorder | None) -> None:
        """Seals the callback's recording and joins it after the call's own, so the call page plays both."""
        if rec is None:
            return
        if rec.failed:
            log.error("call %s: ALERT callback recording failed (%s)", cb.call_id, rec.path)
        loop = asyncio.get_running_loop()
        deps = self.deps
        try:
            final = await loop.run_in_executor(deps.cpu_pool, rec.close)
        except RuntimeError:  # the pool is shut down (server stopping)
            final = rec.close()
        call = await self._db(deps.store.get_call, cb.call_id)
        base = call.recording_path if call is not None else None
        try:
            joined = await loop.run_in_executor(None, lambda: append_recording(
                base, final, compress=deps.settings.recordings.compress, key=deps.recording_key))
        except Exception as exc:
            log.exception("call %s: callback recording %s not joined to %s", cb.call_id, final, base)
            await self._line(cb, f"callback recording kept apart: {Path(final).name} ({type(exc).__name__})")
            return
        await self._db(deps.store.update_call, cb.call_id, recording_path=str(joined))
        log.info("call %s: callback recording joined: %s", cb.call_id, joined)

    def _transcribers(self, cb: PendingCallback, customer: CallLeg, agent_leg: CallLeg) -> list[asyncio.Task[None]]:
        """While bridged, both sides are transcribed on the original call (speaker caller / agent), as in the
        session's agent bridge; nothing without a recognizer."""
        deps = self.deps
        if deps.recognizer is None or deps.endpointer_factory is None:
            return []
        if cb.lang not in getattr(deps.recognizer, "languages", (cb.lang,)):
            log.warning("call %s: no %s speech model: the callback conversation is not transcribed", cb.call_id,
                        cb.lang)
            return []
        return [asyncio.ensure_future(self._transcribe(cb, customer, "caller")),
                asyncio.ensure_future(self._transcribe(cb, agent_leg, "agent"))]

    async def _transcribe(self, cb: PendingCallback, leg: CallLeg, speaker: str) -> None:
        deps = self.deps
        endpointer = deps.endpointer_factory()
        utterances: asyncio.Queue[tuple[Utterance, float, float] | None] = asyncio.Queue()
        writer = asyncio.ensure_future(self._write_heard(cb, speaker, utterances))
        try:
            while True:
                item = await leg.recv()
                if item is None:
                    break
                if isinstance(item, DtmfDigit):
                    await self._line(cb, f"[key {item.digit}]", speaker)
                    continue
                if not isinstance(item, AudioFrame):
                    continue
                for ev in endpointer.feed(item.pcm):
                    if isinstance(ev, Utterance):
                        end = time.monotonic() - cb.t0
                        utterances.put_nowait((ev, end - ev.duration_s, end))
        except Exception:
            log.exception("call %s: callback %s transcription failed", cb.call_id, speaker)
        finally:
            utterances.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(writer), deps.settings.asr.timeout_s)

    async def _write_heard(self, cb: PendingCallback, speaker: str,
                           utterances: asyncio.Queue[tuple[Utterance, float, float] | None]) -> None:
        """Recognises one side's utterances in order (bounded CPU pool) and writes each as a transcript line."""
        deps, loop = self.deps, asyncio.get_running_loop()
        while (item := await utterances.get()) is not None:
            utt, start_s, end_s = item
            try:
                tr = await asyncio.wait_for(loop.run_in_executor(
                    deps.cpu_pool, deps.recognizer.transcribe, utt.pcm, utt.sample_rate, cb.lang),
                    deps.settings.asr.timeout_s)
            except Exception as exc:
                log.error("call %s: recognizer failed on the callback's %s side (%s)", cb.call_id, speaker, exc)
                continue
            text = tr.text.strip()
            if text:
                log.debug("call %s: %s: %s", cb.call_id, speaker, text)
                await self._db(deps.store.add_line, cb.call_id, speaker, text, start_s, end_s,
                               confidence=round(tr.confidence, 3), language=cb.lang)

    async def _end(self, cb: PendingCallback, leg_id: str | None, agent: str | None, reason: str) -> None:
        if leg_id:
            await self._db(self.deps.store.end_leg, leg_id, reason)
        if agent is None:
            await self._fail(cb, reason)
        else:
            await self._set_row(cb, "done", reason)
        await self._line(cb, f"callback ended ({reason})")
        outcome = "callback_connected" if agent else "callback_failed"  # closes the live view (console)
        self.deps.bus.publish(CallEnded(cb.call_id, outcome, reason, round(time.monotonic() - cb.t0, 2)))


async def _first(*aws: Any) -> None:
    """Waits until the first of the awaitables finishes; cancels the others (not a passed-in task)."""
    futs = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(futs, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for f, a in zip(futs, aws, strict=True):
            if f is not a and not f.done():
                f.cancel()


def _dead_nodes(store: SqlAgentStore, max_age_s: float) -> list[str]:
    """Workers whose heartbeat (routing/sqlstore.py `routing_nodes`) stopped `max_age_s` ago: the same rule that
    frees the agents they held (`free_stale_holds`)."""
    import sqlalchemy as sa

    from routing.sqlstore import nodes_table

    n = nodes_table.c
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(n.node).where(n.seen_at < time.time() - max_age_s, n.node != store.node))
        return [str(r.node) for r in rows]


def install_callbacks(acd: CallDistributor, deps: SessionDeps) -> CallbackDialer:
    """Server start-up: loads each queue's hold music (a bad file stops start-up here, naming the queue)
    and starts the callback dialer on the distributor's events."""
    from pathlib import Path

    from hotline.holdmusic import load_hold_music

    s = deps.settings
    music = {}
    for q in s.queues:
        pcm = load_hold_music(q.hold_music, setting=f"queues[{q.name}].hold_music", base_dir=Path(s.config_dir))
        if pcm is not None:
            music[q.name] = pcm
    deps.hold_music = music
    dialer = CallbackDialer(acd, deps)
    acd.subscribe(dialer.on_event)
    deps.callbacks = dialer
    return dialer
