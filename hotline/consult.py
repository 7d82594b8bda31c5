"""Transfers to a named agent and consultative (attended) transfers, on the worker that runs the call.

One `Handoff` per call session (hotline/session.py). While the caller talks to agent A, `talk()` keeps them
bridged and takes A's requests (routing/transfer.py `TransferRequest`, from the console or a REFER):

- **To a named agent** (`kind="transfer"`, `to_agent`): she is reserved at once (`acd.reserve_agent`); if
  she is unknown, not allowed for the queue or not ready, the request is refused and A keeps the caller
  (a `TransferStatus` "failed" tells A's console, an event line the record). Reserved: A's leg ends (she
  goes to wrap-up), the caller hears hold music while B's phone rings; B answers → screen pop with the
  context and note, caller and B bridged; B does not answer within the queue's ring timeout → B goes not
  ready, the caller goes back to the queue the call came from, *first in line*, and A is told (status
  "failed" on the bus, an event line in the call's transcript).
- **Consult** (`kind="consult"`, `to_agent` or a free agent of `to_queue`): the caller is put on hold
  (hold music; caller and A no longer hear each other), B's phone rings, A and B are bridged. Then
  "complete" (A leaves for wrap-up; the caller is bridged to B, whose screen pop carries the context and
  note) or "cancel" (B released, A back with the caller). B not answering or hanging up: A gets the
  caller back. A hanging up during the consultation completes it (B rings on: answered → the caller's;
  not → back to the queue at the front). The caller hanging up ends it: B released, the outcome in the
  record. Every step writes an event line in the call's transcript; B's leg is a `consult` leg.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dialog import Transfer
from hotline.callback import queue_settings, ring_timeout_s
from hotline.events import TransferStatus
from hotline.holdmusic import HoldMusic, tones
from routing import (
    AgentProfile,
    CallDistributor,
    NotRinging,
    TargetBusy,
    TransferRefused,
    TransferRequest,
    queue_for_agent,
)
from telephony import CallFailed, CallLeg, bridge

if TYPE_CHECKING:
    from hotline.session import CallSession

log = logging.getLogger(__name__)

_TONES: bytes | None = None


def _default_music() -> bytes:
    global _TONES
    if _TONES is None:
        _TONES = tones()
    return _TONES


@dataclass
class Handover:
    """The caller goes to agent `agent` once A's bridge has ended: `ring` dials her (or has: consult)."""

    req: TransferRequest
    agent: AgentProfile
    queue: str
    leg_id: str | None = None
    ring: asyncio.Future[CallLeg] | None = None
    answered: bool = False  # reported answered to the distributor already (a consultation)


@dataclass
class _Consult:
    req: TransferRequest
    agent: AgentProfile
    steps: asyncio.Queue[str] = field(default_factory=asyncio.Queue)  # complete | cancel


class Handoff:
    """Named-agent transfers and consultations of one call session (see the module's doc)."""

    def __init__(self, session: CallSession) -> None:
        self.s = session
        self.queue = ""  # the queue the call came from (the connected agent's)
        self.agent = ""  # the connected agent
        self._asks: asyncio.Queue[TransferRequest] = asyncio.Queue()
        self._consult: _Consult | None = None

    @property
    def call_id(self) -> str:
        return self.s.call_id

    @property
    def acd(self) -> CallDistributor:
        return next(iter(self.s.deps.queues.values())).acd

    def _status(self, step: str, req: TransferRequest, target: str, detail: str = "") -> None:
        self.s.deps.bus.publish(TransferStatus(self.call_id, step, req.by or self.agent, target, detail))

    def _event(self, text: str) -> None:
        self.s._spawn(self.s._line("event", text, self.s._now()))

    # -- requests (synchronous, from hotline/transfer.py through CallSession.request_transfer) --------------
    def handles(self, req: TransferRequest) -> bool:
        """Requests this class acts on: named agents, consultation steps, anything while a consultation runs."""
        return bool(req.to_agent) or req.kind != "transfer" or self._consult is not None

    def request(self, req: TransferRequest) -> str | None:
        """Acts on a named-agent transfer or a consultation step; returns why it was refused, or None."""
        why = self._request(req)
        if why:
            log.warning("call %s: %s to %s asked by %s refused: %s", self.call_id, req.kind, req.target,
                        req.by or "?", why)
            self._status("failed", req, req.to_agent or req.to_queue, why)
            self._event(f"{req.kind} to {req.target} asked by {req.by or self.agent} refused: {why}")
        return why

    def _request(self, req: TransferRequest) -> str | None:
        agent_leg = self.s._bridged
        if req.kind in ("complete", "cancel"):
            if self._consult is None:
                return "no consultation in progress"
            self._consult.steps.put_nowait(req.kind)
            return None
        if agent_leg is None or agent_leg.ended.is_set():
            return "the caller is not with an agent"
        if self._consult is not None or not self._asks.empty() or self.s._pending_transfer is not None:
            return "a transfer or consultation is already in progress"
        if req.kind == "consult":
            self._asks.put_nowait(req)
            return None
        try:  # a transfer to a named agent: reserved now, so a busy agent leaves the caller with A
            agent = self.acd.reserve_agent(req.to_agent, self.call_id, req.to_queue)
        except TransferRefused as exc:
            return str(exc)
        log.info("call %s: transfer to agent %s (%s) asked by %s", self.call_id, agent.id, req.to_queue, req.by)
        self.s._pending_transfer = Handover(req, agent, req.to_queue)
        self.s._spawn(agent_leg.hangup())
        return None

    def refer_to_agent(self, name: str, by_agent: str) -> tuple[int, str] | None:
        """A REFER from A's phone to sip:<agent id>@...: a blind transfer to that agent; (status, reason) if not."""
        try:
            self.acd.agent(name)
        except KeyError:
            return 404, "Not Found (no such queue or agent)"
        here = self.queue or self.acd.agent(by_agent).queue or ""  # before talk(): the queue she was rung for
        queue = queue_for_agent(self.acd, name, here)
        try:
            self.acd.check_target(name, queue)
        except TargetBusy:
            code: tuple[int, str] = (486, "Busy Here (agent not ready)")
        except TransferRefused:
            code = (403, "Forbidden (agent not allowed for the queue)")
        else:
            code = (486, "Busy Here (transfer refused)")
        why = self.request(TransferRequest(self.call_id, queue, "blind", by=f"{by_agent} (phone)", to_agent=name))
        return None if why is None else code

    # -- while caller and agent A talk ------------------------------------------------------------------------
    async def talk(self, leg: CallLeg, agent_leg: CallLeg, agent_name: str, queue: str) -> None:
        """Caller and A bridged until either leg ends; consultations asked meanwhile run in between."""
        self.agent, self.queue = agent_name, queue
        while not leg.ended.is_set() and not agent_leg.ended.is_set():
            linked = asyncio.ensure_future(bridge(leg, agent_leg))
            asked = asyncio.ensure_future(self._asks.get())
            await asyncio.wait({linked, asked}, return_when=asyncio.FIRST_COMPLETED)
            if not asked.done():
                asked.cancel()
                await linked
                return
            linked.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await linked
            await self._run_consult(asked.result(), leg, agent_leg)
            if self.s._pending_transfer is not None:
                return  # completed: A's leg is being hung up; the caller goes to B (after())

    async def _hold_music(self, leg: CallLeg, queue: str) -> None:
        music = HoldMusic((self.s.deps.hold_music or {}).get(queue) or _default_music())
        try:
            while not leg.ended.is_set():
                if leg.queued_ms < 400:
                    leg.send_audio(music.next(1000))
                await asyncio.sleep(0.2)
        finally:
            leg.clear_audio()

    def _pick(self, req: TransferRequest) -> AgentProfile:
        if req.to_agent:
            return self.acd.reserve_agent(req.to_agent, self.call_id, req.to_queue)
        for free in self.acd.free_agents(req.to_queue):
            with contextlib.suppress(TransferRefused):
                return self.acd.reserve_agent(free.id, self.call_id, req.to_queue)
        raise TargetBusy(f"nobody in {req.to_queue} is free to consult")

    def _dial(self, agent: AgentProfile, queue: str) -> asyncio.Future[CallLeg]:
        ring_s = ring_timeout_s(self.acd, queue_settings(self.s.deps.settings, queue))
        return asyncio.ensure_future(self.s.deps.dial(agent.uri, from_user=self.s.leg.caller or "hotline",
                                                      timeout=ring_s))

    async def _run_consult(self, req: TransferRequest, leg: CallLeg, agent_leg: CallLeg) -> None:
        s, db, store = self.s, self.s._db, self.s.deps.store
        try:
            agent = self._pick(req)
        except TransferRefused as exc:
            self.request_refused(req, str(exc))
            return
        target = f"agent {agent.id}"
        c = self._consult = _Consult(req, agent)
        music = asyncio.ensure_future(self._hold_music(leg, self.queue))
        ring: asyncio.Future[CallLeg] = asyncio.get_running_loop().create_future()
        ring.cancel()  # until B is dialled
        leg_id: str | None = None
        b_leg: CallLeg | None = None
        handed_over = False
        try:
            await s._line("event", f"consultation with {target} ({req.to_queue}) asked by {req.by or self.agent}; "
                                   "caller on hold", s._now())
            self._status("ringing", req, agent.id)
            leg_id = await db(store.add_leg, self.call_id, "consult", peer=agent.uri)
            ring = self._dial(agent, req.to_queue)
            # 1. B's phone rings: the caller may hang up, A may cancel, complete (or hang up), B answers or not.
            step = await self._wait(ring, c, leg, agent_leg)
            if step == "caller_gone":
                await self._drop_ring(ring, agent, leg_id, "caller_hung_up")
                await s._line("event", f"caller hung up during the consultation; {target} released", s._now())
                self._status("ended", req, agent.id, "caller hung up")
                return
            if step in ("complete", "agent_gone"):  # A leaves now; the caller goes to B if she answers
                s._pending_transfer = Handover(req, agent, req.to_queue, leg_id, ring)
                handed_over = True
                await s._line("event", f"consultation completed by {req.by or self.agent} while {target} rang",
                              s._now())
                s._spawn(agent_leg.hangup())
                return
            if step == "cancel":
                await self._drop_ring(ring, agent, leg_id, "consult_cancelled")
                await s._line("event", f"consultation with {target} cancelled; back with the caller", s._now())
                self._status("cancelled", req, agent.id)
                return
            try:
                b_leg = ring.result()
            except CallFailed as exc:
                self._reported(self.acd.no_answer, agent)
                await db(store.end_leg, leg_id, "no_answer")
                await s._line("event", f"{target} did not answer the consultation; back with the caller", s._now())
                self._status("failed", req, agent.id, f"no answer ({exc})")
                return
            # 2. B answered: A and B talk; the caller hears the hold music.
            self._reported(self.acd.answered, agent)
            await db(store.leg_answered, leg_id)
            await s._line("event", f"{target} answered the consultation", s._now())
            self._status("consulting", req, agent.id)
            linked = asyncio.ensure_future(bridge(agent_leg, b_leg))
            try:
                step = await self._wait(linked, c, leg, agent_leg, b_leg)
            finally:
                linked.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await linked
            if step == "done":  # the A-B bridge ended first: which leg went?
                step = "caller_gone" if leg.ended.is_set() else "agent_gone" if agent_leg.ended.is_set() else "b_gone"
            if step in ("complete", "agent_gone") and not b_leg.ended.is_set():
                done: asyncio.Future[CallLeg] = asyncio.get_running_loop().create_future()
                done.set_result(b_leg)
                s._pending_transfer = Handover(req, agent, req.to_queue, leg_id, done, answered=True)
                handed_over = True
                await s._line("event", f"consultation completed by {req.by or self.agent}: caller to {target}",
                              s._now())
                self._status("completed", req, agent.id)
                s._spawn(agent_leg.hangup())
                return
            why = {"caller_gone": "caller_hung_up", "cancel": "consult_cancelled"}.get(step, "consult_ended")
            await b_leg.hangup()
            self._reported(self.acd.release, agent)
            await db(store.end_leg, leg_id, why)
            if step == "caller_gone":
                await s._line("event", f"caller hung up during the consultation; {target} released", s._now())
                self._status("ended", req, agent.id, "caller hung up")
            else:
                await s._line("event", f"consultation with {target} ended ({why}); back with the caller", s._now())
                self._status("cancelled", req, agent.id, why)
        except BaseException:
            if not handed_over:
                await self._drop_ring(ring, agent, leg_id, "failed", b_leg)
            raise
        finally:
            self._consult = None
            music.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await music

    def request_refused(self, req: TransferRequest, why: str) -> None:
        log.warning("call %s: consultation with %s refused: %s", self.call_id, req.target, why)
        self._status("failed", req, req.to_agent or req.to_queue, why)
        self._event(f"consultation with {req.target} refused: {why}")

    async def _wait(self, task: asyncio.Future[Any], c: _Consult, leg: CallLeg, agent_leg: CallLeg,
                    b_leg: CallLeg | None = None) -> str:
        """What happens first: "caller_gone", "agent_gone" (A hung up), "complete", "cancel", "b_gone" or
        "done" (`task` finished: B's ring result)."""
        waits: dict[asyncio.Future[Any], str] = {
            asyncio.ensure_future(leg.ended.wait()): "caller_gone",
            asyncio.ensure_future(agent_leg.ended.wait()): "agent_gone",
            asyncio.ensure_future(c.steps.get()): "step",
        }
        if b_leg is not None:
            waits[asyncio.ensure_future(b_leg.ended.wait())] = "b_gone"
        try:
            done, _ = await asyncio.wait({task, *waits}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        for fut, what in waits.items():  # in priority order: the caller, then A, then A's step
            if fut in done:
                return str(fut.result()) if what == "step" else what
        return "done"

    def _reported(self, fn: Any, agent: AgentProfile) -> None:
        """Reports on B to the distributor; its ring safety net may have reported first (NotRinging)."""
        with contextlib.suppress(NotRinging, KeyError):
            fn(agent)

    async def _drop_ring(self, ring: asyncio.Future[CallLeg], agent: AgentProfile, leg_id: str | None,
                         why: str, b_leg: CallLeg | None = None) -> None:
        """B is not wanted (any more): the ring is cancelled (or her leg hung up) and she is free again."""
        if not ring.done():
            ring.cancel()
        with contextlib.suppress(asyncio.CancelledError, CallFailed):
            b_leg = b_leg or await ring
        if b_leg is not None and not b_leg.ended.is_set():
            await b_leg.hangup()
        self._reported(self.acd.release, agent)
        if leg_id:
            await self.s._db(self.s.deps.store.end_leg, leg_id, why)

    # -- after A's bridge ended with a handover pending ----------------------------------------------------------
    async def after(self, moved: Any, agent_name: str, queue: str, action: Transfer) -> None:
        """A is gone (wrap-up): the caller goes where A sent them: a queue, a named agent, the consulted one."""
        s = self.s
        if not isinstance(moved, Handover):  # to a queue: queued again like any transfer
            if not s.leg.ended.is_set():
                await s._transfer(await s._transfer_action(moved, agent_name, action))
            return
        req, agent = moved.req, moved.agent
        target = f"agent {agent.id}"
        if s.leg.ended.is_set() and moved.ring is None:  # hung up before B was rung: she is free again
            self._reported(self.acd.release, agent)
            await s._line("event", f"caller hung up before {target} was rung; {target} released", s._now())
            return
        context = await self._context(req, agent_name, action)
        if moved.ring is None:
            moved.leg_id = await s._db(s.deps.store.add_leg, self.call_id, "agent", peer=agent.uri)
            await s._line("event", f"transferred by {req.by or agent_name} to {req.target} ({req.mode})", s._now())
            self._status("ringing", req, agent.id)
            moved.ring = self._dial(agent, req.to_queue)
        music = asyncio.ensure_future(self._hold_music(s.leg, queue))
        try:
            await s._unless_hung_up(moved.ring)
        except BaseException:  # the worker stops: she is not left ringing
            await self._drop_ring(moved.ring, agent, moved.leg_id, "failed")
            raise
        finally:
            music.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await music
        if s.leg.ended.is_set():
            await self._drop_ring(moved.ring, agent, moved.leg_id, "caller_hung_up")
            await s._line("event", f"caller hung up while {target} rang; {target} released", s._now())
            self._status("ended", req, agent.id, "caller hung up")
            return
        try:
            b_leg = moved.ring.result()
        except CallFailed as exc:
            self._reported(self.acd.no_answer, agent)
            if moved.leg_id:
                await s._db(s.deps.store.end_leg, moved.leg_id, "no_answer")
            await s._line("event", f"{target} did not answer; the caller goes back to {queue}, first in line",
                          s._now())
            self._status("failed", req, agent.id, f"no answer ({exc}); caller back in {queue} at the front")
            self.acd.queue_at_front(self.call_id)
            await s._transfer(Transfer(queue, f"back from a transfer to {agent.id}",
                                       {**context, "transfer_failed": agent.id}))
            return
        if not moved.answered:
            self._reported(self.acd.answered, agent)
            if moved.leg_id:
                await s._db(s.deps.store.leg_answered, moved.leg_id)
        self._status("connected", req, agent.id)
        s._agent_leg_id = moved.leg_id
        try:
            await s._bridge_agent(self.acd.view(req.to_queue), agent.id, b_leg,
                                  Transfer(req.to_queue, f"transfer from {agent_name}", context))
        finally:
            self._reported(self.acd.finished, agent)  # wrap-up, then available again
        again, s._pending_transfer = s._pending_transfer, None
        if again is not None:  # B passed the caller on in turn
            await self.after(again, agent.id, req.to_queue, Transfer(req.to_queue, action.reason, action.context))

    async def _context(self, req: TransferRequest, agent_name: str, action: Transfer) -> dict[str, Any]:
        """The next screen pop: "context" (and every consultation) carries the transcript so far and the note."""
        s = self.s
        if req.mode == "context" or req.kind != "transfer":
            lines = await s._db(s.deps.store.get_transcript, self.call_id) or []
            context = {**action.context, "note": req.note,
                       "transcript": [f"{ln.speaker}: {ln.text}" for ln in lines][-200:]}
        else:
            context = {"language": s._lang}
        context.update(transferred_from=agent_name, transfer_mode="consult" if req.kind != "transfer" else req.mode,
                       transferred_by=req.by or agent_name)
        return context
