"""Callbacks in the call: the caller hangs up keeping their place; the hotline dials them back.

The session (hotline/session.py) takes the caller's choice and number while they are queued, then
`CallbackDialer.register(PendingCallback(...))` and `queue.request_callback(call_id, number)`. When
their turn comes the distributor reserves an agent and emits `CallbackDue`; the dialer then dials the
customer (`queues[].callback.dial_uri` with the number), plays the greeting, rings the reserved agent
and bridges them, publishing the screen pop (`AgentAssigned`) with the original call's context.

Everything is recorded on the original call (its record was closed with outcome `callback_requested`):
a `callback` leg per attempt (answered or `no_answer`), the agent leg, transcript event lines, the queue
entry closed answered (with the agent) or abandoned, and the call's outcome updated to
`callback_connected` or `callback_failed`. An unanswered callback is retried `attempts` times,
`retry_after_s` apart; meanwhile the reserved agent is free for other calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hotline.events import AgentAssigned, CallEnded
from hotline.holdmusic import HoldMusic
from hotline.settings import CallbackSettings, QueueSettings, Settings
from routing import CallbackDue, CallDistributor, RoutingEvent
from telephony import CallFailed, CallLeg, bridge

if TYPE_CHECKING:
    from hotline.session import SessionDeps

log = logging.getLogger(__name__)


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


def max_wait_s(acd: CallDistributor, qs: QueueSettings) -> float:
    """How long a caller of queue `qs` may wait: a change from the console (/admin/queues: the distributor's live
    QueueConfig, routing/admin.py) wins over the YAML's ``max_wait_s``."""
    try:
        live = acd.queue_config(qs.name).max_wait_s
    except KeyError:  # routing.UnknownQueue
        live = None
    return qs.max_wait_s if live is None else live


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

    def register(self, cb: PendingCallback) -> None:
        self.pending[cb.call_id] = cb

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
        """Server stop: running callbacks are cut; pending ones (kept in memory only) are recorded failed."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for cb in list(self.pending.values()):
            log.warning("call %s: callback to %s not made: the worker stops", cb.call_id, cb.number)
            await self._line(cb, "callback not made: the worker stopped")
            await self._fail(cb, "worker_stopped")

    # -- records -------------------------------------------------------------------------------
    async def _db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.deps.db_pool, lambda: fn(*args, **kwargs))
        except Exception:
            log.exception("call %s: callback record write failed (%s)", args[0] if args else "?",
                          getattr(fn, "__name__", fn))
            return None

    async def _line(self, cb: PendingCallback, text: str) -> None:
        log.info("call %s: %s", cb.call_id, text)
        await self._db(self.deps.store.add_line, cb.call_id, "event", text, time.monotonic() - cb.t0,
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
            try:
                await self._connect(cb, qs, customer, agent_id, agents)
            finally:
                if not customer.ended.is_set():
                    await customer.hangup()
        except asyncio.CancelledError:
            self._leave(cb.call_id, "callback_interrupted")
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
        deadline = time.monotonic() + qs.max_wait_s
        while True:
            if customer.ended.is_set():
                self._leave(cb.call_id, "callback_customer_left")
                await self._end(cb, leg_id, None, "customer_hung_up")
                return
            agent = self.acd.agent(agent_id).profile
            agent_leg_id = await self._db(deps.store.add_leg, cb.call_id, "agent", peer=agent.uri)
            dial = asyncio.ensure_future(deps.dial(agent.uri, from_user=cb.number, timeout=qs.ring_timeout_s))
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
        try:
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
            await bridge(customer, agent_leg)
        finally:
            if not agent_leg.ended.is_set():
                await agent_leg.hangup()
            self.acd.finished(agent_id)
            reason = "customer_hung_up" if customer.ended.is_set() else "agent_hung_up"
            if agent_leg_id:
                await self._db(deps.store.end_leg, agent_leg_id, reason)
            await self._end(cb, leg_id, agent_name, reason)

    async def _end(self, cb: PendingCallback, leg_id: str | None, agent: str | None, reason: str) -> None:
        if leg_id:
            await self._db(self.deps.store.end_leg, leg_id, reason)
        if agent is None:
            await self._fail(cb, reason)
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
