"""Attended transfer from the agent's own phone (RFC 3891 Replaces), on the worker that runs the call.

Agent A (bridged to the caller through the hotline) calls colleague B on her phone, talks to her, then her
phone completes the transfer in one of the two ways real phones use:

a) **REFER to the hotline** on the caller's dialog with ``Refer-To: <B?Replaces=(A-B dialog)>``
   (:meth:`AttendedTransfer.refer`, from ``CallSession._on_agent_refer``): the hotline dials B with that
   Replaces header, so B's phone swaps its call with A for ours; the caller goes to B, A's leg ends (her
   phone's BYE after our NOTIFY 200) and she goes to wrap-up. If the dial fails while A is still there, the
   REFER's NOTIFY carries B's status and A keeps the caller; if A has gone meanwhile, the caller goes back
   to the queue, first in line (hotline/consult.py ``Handoff.after``, as for a named-agent transfer).
b) **INVITE with Replaces** naming the hotline's dialog with A, from B's phone (A REFERred B to us) or any
   phone (:meth:`AttendedTransfer.watch` sets ``agent_leg.on_replaced``): the new leg takes A's place; A's
   leg ends ``replaced`` and that means "go on", not "the agent hung up".

Both become a consult.py ``Handover`` (the session's ``_pending_transfer``), so what follows A's leg is the
consultation's path: B's leg record, screen pop (``AgentAssigned`` with the context and transcript,
``transfer_mode: consult``), her state in the distributor, ``call.transfer_status`` events and event lines
in the transcript. B is whoever the URI names: a known agent (her URI, or the user part is her id) is
claimed in the distributor for this call (``CallDistributor.claim_agent``: on call, whatever her resting
state); anyone else is recorded by SIP URI and not tracked as an agent. Refusals: a transfer or consultation
already in progress (REFER: 491; INVITE: the new leg is hung up after its ACK, A keeps the caller), a
Refer-To that does not parse (400), B ringing or on another call (REFER: 486), a transfer to herself (403).
A Replaces naming the caller's own leg is declined by the endpoint (603: no ``on_replaced`` there). The
Replaces tags are the authorisation (only the dialog's parties know them); B's identity comes from the URI.

While A's phone holds the caller to consult B and sends nothing audible, :meth:`AttendedTransfer.cover_hold`
mixes hold music into the caller's stream, and a second and a half of it covers the hand-over itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from hotline.callback import queue_settings, ring_timeout_s
from hotline.consult import Handover, _default_music
from hotline.holdmusic import HoldMusic
from routing import AgentProfile, AgentState, CallDistributor, TransferRefused, queue_for_agent
from routing import TransferRequest as Move
from routing.states import MANUAL_STATES
from telephony import CallFailed, CallLeg, ParseError
from telephony import TransferRequest as Refer
from telephony.replaces import Replaces, split_uri_headers
from telephony.sip_message import SipUri, parse_name_addr, parse_uri

if TYPE_CHECKING:
    from hotline.session import CallSession

__all__ = ["AttendedTransfer", "has_replaces"]

log = logging.getLogger(__name__)

GAP_MUSIC_MS = 1500  # hold music queued for the caller while the records of a handover are written
QUIET_RMS = 150.0  # a held agent's phone sending less than this (PCM16 RMS) sends silence: the caller gets music


def has_replaces(target: str) -> bool:
    """Whether a Refer-To URI asks for an attended transfer (``?Replaces=`` header); a malformed header list
    counts too, so that :meth:`AttendedTransfer.refer` answers it 400."""
    try:
        _, headers = split_uri_headers(target)
    except ParseError:
        return "replaces" in target.lower()
    return any(name == "Replaces" for name, _ in headers)


def _same_address(a: SipUri, b: SipUri) -> bool:
    return (a.user, a.host.lower(), a.port or 5060) == (b.user, b.host.lower(), b.port or 5060)


class AttendedTransfer:
    """The attended transfers of one call session (see the module's doc)."""

    def __init__(self, session: CallSession) -> None:
        self.s = session

    @property
    def acd(self) -> CallDistributor:
        return self.s._handoff.acd

    # -- who is B ---------------------------------------------------------------------------------------
    def party(self, uri: str) -> AgentProfile | None:
        """The agent a SIP URI names: her configured URI (user, host, port), else her id as the user part,
        else the one agent whose URI has that user part; None for anyone else (or a URI that does not parse)."""
        try:
            want = parse_uri(uri)
        except ParseError:
            return None
        profiles = [rec.profile for rec in self.acd.agents()]
        for p in profiles:
            with contextlib.suppress(ParseError):
                if _same_address(parse_uri(p.uri), want):
                    return p
        for p in profiles:
            if want.user and p.id == want.user:
                return p
        by_user = [p for p in profiles if want.user and _user(p.uri) == want.user]
        return by_user[0] if len(by_user) == 1 else None

    def _busy(self) -> str:
        h = self.s._handoff
        if self.s._pending_transfer is not None or h._consult is not None or not h._asks.empty():
            return "a transfer or consultation is already in progress"
        return ""

    def _here(self, agent_name: str) -> str:
        if self.s._handoff.queue:
            return self.s._handoff.queue
        with contextlib.suppress(KeyError):
            return self.acd.agent(agent_name).queue or self.acd.queue_names[0]
        return self.acd.queue_names[0]

    def _claim(self, known: AgentProfile | None, uri: str, here: str) -> tuple[AgentProfile, AgentState | None, str]:
        """(B's profile, her state before or None if not tracked, the queue she takes the call for). A known
        agent is claimed for the call (ringing); raises TargetBusy if she rings or talks for another call."""
        if known is None:
            who = uri.split(";", 1)[0][:120]  # has a ':' so it never names an agent (ids: letters, digits, ._-)
            return AgentProfile(who, uri), None, here
        queue = queue_for_agent(self.acd, known.id, here)
        return known, self.acd.claim_agent(known.id, self.s.call_id, queue), queue

    def _give_back(self, agent: AgentProfile, before: AgentState | None) -> None:
        """B was claimed but does not take the call after all: free again, in the state she was in."""
        if before is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.acd.release(agent)
            if before in MANUAL_STATES and before is not AgentState.AVAILABLE:
                self.acd.set_state(agent.id, before, "attended transfer failed")

    def _owned(self, task: asyncio.Task[CallLeg]) -> None:
        """The session cancels it if it ends first (the worker stops): B's phone is not left ringing."""
        self.s._tasks.add(task)
        task.add_done_callback(self.s._tasks.discard)

    def _event(self, text: str) -> None:
        self.s._spawn(self.s._line("event", text, self.s._now()))

    def _cover_gap(self) -> None:
        """Hold music for the caller while A's leg is wound up and B's bridge is set up (a few record writes);
        the bridge to B clears it."""
        leg, queue = self.s.leg, self.s._handoff.queue
        if not leg.ended.is_set():
            leg.send_audio(HoldMusic((self.s.deps.hold_music or {}).get(queue) or _default_music()).next(GAP_MUSIC_MS))

    # -- while A's phone holds the caller (she consults B) ------------------------------------------------------
    async def cover_hold(self, leg: CallLeg, agent_leg: CallLeg) -> None:
        """While the agent's phone holds the call (its re-INVITE: sendonly/inactive, e.g. to consult a colleague)
        and sends nothing audible, hold music is mixed into what the caller hears (``CallLeg.mix_in``, own stack),
        so the caller never sits in silence; it stops when she resumes, talks, or her leg ends. Runs beside the
        bridge (CallSession._bridge_agent); costs one check per 100 ms while nobody holds."""
        if not hasattr(leg, "mix_in") or not hasattr(agent_leg, "on_hold"):
            return
        heard = [0.0]  # when her phone last sent something audible while holding

        def tap(direction: str, pcm: bytes) -> None:
            if direction == "in" and agent_leg.on_hold and _rms(pcm) > QUIET_RMS:
                heard[0] = time.monotonic()

        music: HoldMusic | None = None

        def pull() -> bytes | None:
            return music.next(20) if music is not None else None

        agent_leg.add_tap(tap)
        try:
            while not agent_leg.ended.is_set() and not leg.ended.is_set():
                want = (agent_leg.on_hold and time.monotonic() - heard[0] > 0.5 and self.s._handoff._consult is None
                        and leg.mix_in in (None, pull))
                if want and music is None:
                    music = HoldMusic((self.s.deps.hold_music or {}).get(self.s._handoff.queue) or _default_music())
                    leg.mix_in = pull
                    log.info("call %s: the agent's phone holds the caller: hold music", self.s.call_id)
                    self._event("the agent's phone put the caller on hold; hold music")
                elif not want and music is not None:
                    music = None
                    if leg.mix_in is pull:
                        leg.mix_in = None
                await asyncio.sleep(0.1)
        finally:
            agent_leg.remove_tap(tap)
            if leg.mix_in is pull:
                leg.mix_in = None

    # -- a) REFER with Refer-To: <B?Replaces=...> from A's phone ----------------------------------------------
    async def refer(self, refer: Refer, agent_name: str) -> tuple[int, str] | None:
        """A's phone asks us to dial B with Replaces (attended transfer); the result goes into the REFER's final
        NOTIFY: None (200) once B's phone has taken the call, else B's status (A keeps the caller)."""
        s = self.s
        agent_leg = refer.leg
        try:
            target, headers = split_uri_headers(refer.target)
            values = [v for n, v in headers if n == "Replaces"]
            if len(values) != 1:
                raise ParseError("exactly one Replaces header needed")
            rep = Replaces.parse(values[0])
            parse_uri(target)
        except ParseError as exc:
            log.warning("call %s: attended transfer from %s refused: bad Refer-To %r: %s", s.call_id, agent_name,
                        refer.target[:120], exc)
            return 400, "Bad Refer-To"
        known = self.party(target)
        why = self._busy() or ("a transfer to herself" if known is not None and known.id == agent_name else "")
        if not why and (s.leg.ended.is_set() or s._bridged is not agent_leg):
            why = "the caller is not with her"
        here = self._here(agent_name)
        try:
            party, before, queue = ("", None, here) if why else self._claim(known, target, here)
        except TransferRefused as exc:
            why = str(exc)
        if why:
            log.warning("call %s: attended transfer by %s to %s refused: %s", s.call_id, agent_name, target, why)
            self._event(f"attended transfer by {agent_name} (phone) to {target} refused: {why}")
            code = 403 if "herself" in why else 491 if "in progress" in why else 486
            return code, {403: "Forbidden", 491: "Request Pending", 486: "Busy Here"}[code] + f" ({why})"
        assert isinstance(party, AgentProfile)
        req = Move(s.call_id, queue, "context", by=f"{agent_name} (phone)", to_agent=party.id, kind="consult")
        handover = Handover(req, party, queue)
        ring = asyncio.create_task(self._ring(handover, target, rep, agent_name))
        handover.ring = ring
        self._owned(ring)
        s._pending_transfer = handover  # set before any wait: if A leaves now, Handoff.after takes the caller on
        hung_up = await s._unless_hung_up(ring)
        if s._bridged is not agent_leg or agent_leg.ended.is_set():
            return None  # A has gone: Handoff.after owns the handover (B answered, or back to the queue at the front)
        h = s._handoff
        if hung_up:
            s._pending_transfer = None
            await h._drop_ring(ring, party, handover.leg_id, "caller_hung_up")
            self._give_back(party, before)
            await s._line("event", f"caller hung up during the attended transfer to {party.id}", s._now())
            h._status("ended", req, party.id, "caller hung up")
            return 487, "Request Terminated (the caller has hung up)"
        try:
            b_leg = ring.result()
        except Exception as exc:  # CallFailed: B's status; anything else (a backend without headers=): 500
            status, reason = (exc.status, exc.reason) if isinstance(exc, CallFailed) else (500, "Server Internal Error")
            if not isinstance(exc, CallFailed):
                log.error("call %s: attended transfer dial failed", s.call_id, exc_info=exc)
            s._pending_transfer = None
            self._give_back(party, before)
            if handover.leg_id:
                await s._db(s.deps.store.end_leg, handover.leg_id, "no_answer" if status == 408 else "failed")
            await s._line("event", f"attended transfer to {party.id} failed ({status} {reason}); "
                                   f"{agent_name} keeps the caller", s._now())
            h._status("failed", req, party.id, f"{status} {reason}")
            return status, reason
        if before is not None:
            h._reported(self.acd.answered, party)
        handover.answered = True  # (reported here, not again by Handoff.after)
        if handover.leg_id:
            await s._db(s.deps.store.leg_answered, handover.leg_id)
        await s._line("event", f"{party.id} took the call from {agent_name}'s phone (attended transfer)", s._now())
        h._status("completed", req, party.id)
        s._spawn(self._after_bye(agent_leg, b_leg))
        return None

    async def _ring(self, handover: Handover, target: str, rep: Replaces, agent_name: str) -> CallLeg:
        """B's leg record, then the INVITE with Replaces to her phone (answered at once by a phone that
        holds the consultation call it names)."""
        s = self.s
        await s._line("event", f"attended transfer to {handover.agent.id} asked by {agent_name} from her phone "
                               "(INVITE with Replaces)", s._now())
        s._handoff._status("ringing", handover.req, handover.agent.id)
        handover.leg_id = await s._db(s.deps.store.add_leg, s.call_id, "agent", peer=target)
        timeout = ring_timeout_s(self.acd, queue_settings(s.deps.settings, handover.queue))
        return await s.deps.dial(target, from_user=s.leg.caller or "hotline", timeout=timeout,
                                 headers=[("Replaces", rep.header())])

    async def _after_bye(self, agent_leg: CallLeg, b_leg: CallLeg) -> None:
        """A's phone BYEs after our NOTIFY 200: hold music covers the hand-over to B."""
        await agent_leg.ended.wait()
        if not b_leg.ended.is_set():
            self._cover_gap()

    # -- b) INVITE with Replaces naming the hotline's leg to A ------------------------------------------------
    def watch(self, agent_leg: CallLeg, agent_name: str) -> None:
        """Lets an INVITE with Replaces take over A's leg (``on_replaced``; legs of backends without it: no-op)."""
        if hasattr(agent_leg, "on_replaced"):
            agent_leg.on_replaced = lambda new: self.replaced(agent_leg, agent_name, new)

    def replaced(self, old: CallLeg, agent_name: str, new: CallLeg) -> None:
        """The endpoint's ``on_replaced``: ``new`` takes A's place (then A's leg ends "replaced"). Raising makes
        the endpoint hang up ``new`` and keep A's leg."""
        s = self.s
        try:
            uri = parse_name_addr(new.remote_header).uri
        except ParseError:
            uri = f"sip:{new.caller}@unknown"
        known = self.party(uri)
        why = self._busy() or ("the caller has hung up" if s.leg.ended.is_set() else "")
        why = why or ("the replacing phone is her own (not supported)" if known and known.id == agent_name else "")
        why = why or ("" if s._bridged is old else "the leg is not bridged to the caller")
        if why:
            log.warning("call %s: INVITE with Replaces for agent %s's leg from %s refused: %s", s.call_id,
                        agent_name, uri, why)
            self._event(f"INVITE with Replaces from {uri} for agent {agent_name}'s leg refused: {why}")
            raise RuntimeError(why)
        here = self._here(agent_name)
        try:
            party, before, queue = self._claim(known, uri, here)
        except TransferRefused as exc:  # she rings or talks for another call: she took this one anyway
            log.warning("call %s: %s; %s not tracked on this call", s.call_id, exc, uri)
            party, before, queue = self._claim(None, uri, here)
        if before is not None:
            self.s._handoff._reported(self.acd.answered, party)
        req = Move(s.call_id, queue, "context", by=f"{agent_name} (phone)", to_agent=party.id, kind="consult")
        handover = Handover(req, party, queue, answered=True)
        took = asyncio.create_task(self._took_over(handover, new, old, agent_name, uri))
        handover.ring = took
        self._owned(took)
        s._pending_transfer = handover
        log.info("call %s: %s replaces agent %s's leg (RFC 3891)", s.call_id, party.id, agent_name)
        self._cover_gap()

    async def _took_over(self, handover: Handover, new: CallLeg, old: CallLeg, agent_name: str, uri: str) -> CallLeg:
        """The records of a replacement, written before Handoff.after bridges the caller with ``new``."""
        s, req = self.s, handover.req
        try:
            handover.leg_id = await s._db(s.deps.store.add_leg, s.call_id, "agent", peer=uri)
            if handover.leg_id:
                await s._db(s.deps.store.leg_answered, handover.leg_id)
            await s._line("event", f"{handover.agent.id} took the call from agent {agent_name} "
                                   "(INVITE with Replaces)", s._now())
            s._handoff._status("completed", req, handover.agent.id, "replaced")
        except BaseException:
            await new.hangup()
            raise
        return new


def _rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, "<i2").astype(np.float32)
    return float(np.sqrt((x * x).mean())) if len(x) else 0.0


def _user(uri: str) -> str:
    try:
        return parse_uri(uri).user
    except ParseError:
        return ""
