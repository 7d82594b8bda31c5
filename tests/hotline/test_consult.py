"""Transfers to a named agent and consultations (hotline/consult.py) in process over real SIP on loopback:
a test caller dials a real SipEndpoint whose leg a real CallSession queues and bridges to agents' phones
(AgentPhone, each playing its own tone, so who hears whom is measured); real distributor, SQLite records,
espeak prompts. The session is driven from `_transfer` (no dialog: the caller asked for a person)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.agent_legs import leg_from, tone, tone_share
from support.session_rig import hotline_for_sessions
from support.waiting import until_true

from asr import create_recognizer
from dialog import Transfer
from hotline.bus import EventBus
from hotline.events import AgentAssigned, Event, TransferStatus
from hotline.session import CallSession
from routing import AgentProfile, AgentState, CallDistributor, QueueConfig, TransferRequest
from telephony import AgentPhone, CallFailed, CallLeg, TestCaller
from telephony.replaces import Replaces, replaces_for, uri_with_replaces

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

CALLER = "5550123"


A_HZ, B_HZ = 300.0, 2800.0  # far from the hold tune's notes (494-1047 Hz and their octaves)


@dataclass
class Rig:
    acd: CallDistributor
    session: CallSession
    caller: TestCaller
    caller_leg: CallLeg
    a: AgentPhone
    b: AgentPhone
    seen: list[Event]
    db: Path
    run: asyncio.Task[None]

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(sql, (self.session.call_id,)).fetchall()

    def events(self) -> list[str]:
        return [e for (e,) in self.rows("SELECT text FROM transcript_lines WHERE call_id=? AND speaker='event' "
                                        "ORDER BY start_s, id")]

    async def caller_hears(self, seconds: float = 0.6) -> bytes:
        start = len(self.caller.heard_pcm(self.caller_leg))
        await asyncio.sleep(seconds)
        return self.caller.heard_pcm(self.caller_leg)[start:]

    async def phone_hears(self, phone: AgentPhone, leg: CallLeg, seconds: float = 0.6) -> bytes:
        start = len(phone.heard_pcm(leg))
        await asyncio.sleep(seconds)
        return phone.heard_pcm(leg)[start:]

    def status(self) -> list[tuple[str, str]]:
        return [(e.step, e.target) for e in self.seen if isinstance(e, TransferStatus)]


@pytest.fixture(scope="module")
def recognizer() -> Any:
    return create_recognizer("pocketsphinx")  # what the agents' tones sound like to it does not matter


@pytest.fixture
async def rig(tmp_path: Path, request: pytest.FixtureRequest, recognizer: Any) -> AsyncIterator[Rig]:
    b_delay = getattr(request, "param", 0.0)
    queues = [{"name": "general", "ring_timeout_s": 2, "wrap_up_s": 0, "connect_prompt": {}, "hold_prompt": {},
               "hold_music": "tones"},
              {"name": "cards", "ring_timeout_s": 2, "wrap_up_s": 0, "connect_prompt": {}, "hold_prompt": {}}]
    bus, seen = EventBus(), []
    bus.subscribe(seen.append)
    acd = CallDistributor([QueueConfig("general", ring_timeout_s=2), QueueConfig("cards", ring_timeout_s=2)])
    async with (hotline_for_sessions(tmp_path, queues, acd, bus, recognizer) as h,
                AgentPhone(port=0, play_pcm=tone(A_HZ), repeat=True, gap_s=0.0) as a,
                AgentPhone(port=0, play_pcm=tone(B_HZ), repeat=True, gap_s=0.0, answer_delay=b_delay) as b,
                TestCaller() as caller):
        acd.add_agent(AgentProfile("anna", f"sip:anna@127.0.0.1:{a.port}", queues=frozenset({"general"})),
                      AgentState.AVAILABLE)
        acd.add_agent(AgentProfile("bob", f"sip:bob@127.0.0.1:{b.port}", queues=frozenset({"cards"})),
                      AgentState.AVAILABLE)
        caller_leg = await caller.call(h.uri, from_user=CALLER)
        session = CallSession(await asyncio.wait_for(h.legs.get(), 10), h.deps)
        h.store.start_call(session.call_id, sip_call_id="x", caller=CALLER, called="hotline")
        session._state.transferring = True
        reader = asyncio.ensure_future(session._read_media(session.leg, session._inputs.put_nowait))
        run = asyncio.ensure_future(session._transfer(Transfer("general", "asked for a person",
                                                               {"intent": "card_lost", "language": "en"})))
        try:
            yield Rig(acd, session, caller, caller_leg, a, b, seen, h.db, run)
        finally:
            if not caller_leg.ended.is_set():
                await caller_leg.hangup()
            with contextlib.suppress(Exception):  # the session ends by the caller's hang-up (its _CallGone)
                await asyncio.wait_for(run, 10)
            reader.cancel()


async def connected_to_anna(rig: Rig) -> CallLeg:
    leg = await leg_from(rig.a, CALLER, 20)
    await until_true(lambda: rig.session._bridged is not None, 10, "the caller bridged to anna")
    return leg


async def test_consult_then_complete_hands_the_caller_to_the_consulted_agent(rig: Rig) -> None:
    a_leg = await connected_to_anna(rig)
    assert tone_share(await rig.caller_hears(), A_HZ) > 0.5  # caller and anna talk
    rig.session.request_transfer(TransferRequest(rig.session.call_id, "cards", note="wants a card limit raised",
                                                 by="anna", to_agent="bob", kind="consult"))
    b_leg = await leg_from(rig.b, CALLER, 10)
    await until_true(lambda: ("consulting", "bob") in rig.status(), 10, "the consultation")
    held = await rig.caller_hears(1.0)
    assert tone_share(held, A_HZ) < 0.05 and tone_share(held, B_HZ) < 0.05, "the caller hears neither agent"
    assert np.abs(np.frombuffer(held, "<i2")).mean() > 100, "the caller hears the hold music"
    assert tone_share(await rig.phone_hears(rig.a, a_leg), B_HZ) > 0.5  # anna hears bob
    assert tone_share(await rig.phone_hears(rig.b, b_leg), A_HZ) > 0.5  # bob hears anna
    assert rig.acd.agent("bob").state is AgentState.ON_CALL

    rig.session.request_transfer(TransferRequest(rig.session.call_id, "general", by="anna", kind="complete"))
    await asyncio.wait_for(a_leg.ended.wait(), 10)  # anna leaves for wrap-up
    await until_true(lambda: any(isinstance(e, AgentAssigned) and e.agent == "bob" for e in rig.seen), 10, "pop")
    await asyncio.sleep(0.3)
    assert tone_share(await rig.caller_hears(), B_HZ) > 0.5  # the caller now talks to bob
    assert not b_leg.ended.is_set()
    assert rig.acd.agent("anna").state is AgentState.AVAILABLE  # wrap-up 0 s, done
    pop = next(e for e in rig.seen if isinstance(e, AgentAssigned) and e.agent == "bob")
    assert pop.context["note"] == "wants a card limit raised" and pop.context["transfer_mode"] == "consult"
    assert pop.context["transferred_from"] == "anna" and pop.context["intent"] == "card_lost"
    await rig.caller_leg.hangup()
    await asyncio.wait_for(b_leg.ended.wait(), 10)
    await asyncio.wait_for(rig.run, 10)
    events = rig.events()
    assert "consultation with agent bob (cards) asked by anna; caller on hold" in events, events
    assert "agent bob answered the consultation" in events
    assert "consultation completed by anna: caller to agent bob" in events
    assert "connected to agent bob" in events
    legs = rig.rows("SELECT kind, peer LIKE 'sip:bob%', answered_at IS NOT NULL, end_reason FROM legs "
                    "WHERE call_id=? ORDER BY started_at")
    assert legs == [("agent", 0, 1, "agent_transferred"), ("consult", 1, 1, "caller_hung_up_with_agent")], legs
    assert rig.rows("SELECT agent FROM calls WHERE id=?") == [("bob",)]
    assert rig.acd.agent("bob").state is AgentState.AVAILABLE
    assert [s for s, _ in rig.status()] == ["ringing", "consulting", "completed", "connected"]


@pytest.mark.parametrize("rig", [5.0], indirect=True)  # bob's phone rings past the 2 s ring timeout
async def test_an_unanswered_consult_gives_anna_the_caller_back_and_a_named_transfer_requeues_at_the_front(
    rig: Rig,
) -> None:
    a_leg = await connected_to_anna(rig)
    rig.session.request_transfer(TransferRequest(rig.session.call_id, "cards", by="anna", to_agent="bob",
                                                 kind="consult"))
    await until_true(lambda: ("failed", "bob") in rig.status(), 10, "bob's ring timing out")
    assert rig.acd.agent("bob").state is AgentState.NOT_READY
    await asyncio.sleep(0.3)
    assert tone_share(await rig.caller_hears(), A_HZ) > 0.5  # back with anna
    assert not a_leg.ended.is_set()

    # A named transfer to someone not ready is refused at once: anna keeps the caller.
    rig.session.request_transfer(TransferRequest(rig.session.call_id, "cards", by="anna", to_agent="bob"))
    assert [s for s in rig.status() if s[0] == "failed"] == [("failed", "bob")] * 2
    assert not a_leg.ended.is_set()

    # Bob ready again (his phone still slow): the transfer rings him, nobody answers, and the caller goes
    # back to general ahead of a caller who waited there before; anna takes it when she is back.
    rig.acd.set_state("bob", AgentState.AVAILABLE)
    rig.session.request_transfer(TransferRequest(rig.session.call_id, "cards", by="anna", to_agent="bob",
                                                 mode="blind"))
    await asyncio.wait_for(a_leg.ended.wait(), 10)
    await until_true(lambda: rig.acd.agent("anna").state is AgentState.AVAILABLE, 10, "anna's wrap-up")
    rig.acd.set_state("anna", AgentState.ON_BREAK)
    waiting = asyncio.ensure_future(rig.acd.acquire("general", "another-call"))
    await until_true(lambda: rig.acd.position(rig.session.call_id) is not None, 10, "the caller queued again")
    assert rig.acd.agent("bob").state is AgentState.NOT_READY
    assert (rig.acd.position(rig.session.call_id), rig.acd.position("another-call")) == (1, 2)
    rig.acd.set_state("anna", AgentState.AVAILABLE)
    await until_true(lambda: len([leg for leg in rig.a.legs if leg.caller == CALLER]) == 2, 15, "anna again")
    assert not waiting.done()
    waiting.cancel()
    events = rig.events()
    assert "agent bob did not answer the consultation; back with the caller" in events, events
    assert any(e.startswith("transfer to agent bob (cards) asked by anna refused: agent bob is not ready")
               for e in events), events
    assert "transferred by anna to agent bob (cards) (blind)" in events, events
    assert "agent bob did not answer; the caller goes back to general, first in line" in events, events
    legs = rig.rows("SELECT kind, answered_at IS NOT NULL, end_reason FROM legs WHERE call_id=? ORDER BY started_at")
    assert [leg for leg in legs if leg[0] != "agent" or leg[2] == "no_answer"] == [
        ("consult", 0, "no_answer"), ("agent", 0, "no_answer")], legs


async def test_cancel_gives_the_caller_back_and_a_hang_up_during_a_consultation_releases_the_colleague(
    rig: Rig,
) -> None:
    a_leg = await connected_to_anna(rig)
    ask = TransferRequest(rig.session.call_id, "cards", by="anna", kind="consult")  # anyone free in cards: bob
    rig.session.request_transfer(ask)
    b_leg = await leg_from(rig.b, CALLER, 10)
    await until_true(lambda: ("consulting", "bob") in rig.status(), 10, "the consultation")
    rig.session.request_transfer(TransferRequest(rig.session.call_id, "general", by="anna", kind="cancel"))
    await asyncio.wait_for(b_leg.ended.wait(), 10)  # bob is released
    await asyncio.sleep(0.3)
    assert tone_share(await rig.caller_hears(), A_HZ) > 0.5  # anna has the caller again
    assert rig.acd.agent("bob").state is AgentState.AVAILABLE and not a_leg.ended.is_set()

    rig.session.request_transfer(ask)  # again; this time the caller hangs up while anna and bob talk
    b_leg = await until_ready(lambda: [leg for leg in rig.b.legs if leg.caller == CALLER and not leg.ended.is_set()])
    await until_true(lambda: rig.status().count(("consulting", "bob")) == 2, 10, "the second consultation")
    await rig.caller_leg.hangup()
    await asyncio.wait_for(b_leg.ended.wait(), 10)
    await asyncio.wait_for(a_leg.ended.wait(), 10)
    await asyncio.wait_for(rig.run, 10)
    assert rig.acd.agent("bob").state is AgentState.AVAILABLE and rig.acd.agent("anna").state is AgentState.AVAILABLE
    events = rig.events()
    assert "consultation with agent bob ended (consult_cancelled); back with the caller" in events, events
    assert "caller hung up during the consultation; agent bob released" in events, events
    legs = rig.rows("SELECT kind, answered_at IS NOT NULL, end_reason FROM legs WHERE call_id=? ORDER BY started_at")
    assert legs == [("agent", 1, "caller_hung_up_with_agent"), ("consult", 1, "consult_cancelled"),
                    ("consult", 1, "caller_hung_up")], legs
    assert rig.status()[-1] == ("ended", "bob")


async def test_a_refer_from_the_agents_phone_to_an_agent_name_transfers_to_her(rig: Rig) -> None:
    a_leg = await connected_to_anna(rig)
    assert await a_leg.refer("sip:nobody@127.0.0.1", timeout=10) == 404  # neither a queue nor an agent
    rig.acd.set_state("bob", AgentState.ON_BREAK)
    assert await a_leg.refer("sip:bob@127.0.0.1", timeout=10) == 486  # not ready: busy here
    assert not a_leg.ended.is_set()
    rig.acd.set_state("bob", AgentState.AVAILABLE)
    assert await a_leg.refer("sip:bob@127.0.0.1", timeout=10) == 200  # Refer-To's user part: bob, an agent
    await asyncio.wait_for(a_leg.ended.wait(), 10)
    b_leg = await leg_from(rig.b, CALLER, 10)
    await until_true(lambda: any(isinstance(e, AgentAssigned) and e.agent == "bob" for e in rig.seen), 10, "pop")
    pop = next(e for e in rig.seen if isinstance(e, AgentAssigned) and e.agent == "bob")
    assert pop.context["transfer_mode"] == "blind" and "note" not in pop.context
    assert pop.queue == "cards"  # bob takes only cards calls: rung for cards
    assert "transferred by anna (phone) to agent bob (cards) (blind)" in rig.events()
    await rig.caller_leg.hangup()
    await asyncio.wait_for(b_leg.ended.wait(), 10)


async def until_ready(get: Any, timeout: float = 10.0) -> Any:
    await until_true(lambda: bool(get()), timeout, "a new leg")
    return get()[-1]


@pytest.mark.parametrize("rig", [1.0], indirect=True)  # bob answers after 1 s (ring timeout 2 s)
async def test_complete_while_the_colleague_still_rings_gives_her_the_caller_when_she_answers(rig: Rig) -> None:
    a_leg = await connected_to_anna(rig)
    rig.session.request_transfer(TransferRequest(rig.session.call_id, "cards", by="anna", to_agent="bob",
                                                 kind="consult", note="over to you"))
    await until_true(lambda: ("ringing", "bob") in rig.status(), 10, "bob's phone ringing")
    rig.session.request_transfer(TransferRequest(rig.session.call_id, "general", by="anna", kind="complete"))
    await asyncio.wait_for(a_leg.ended.wait(), 5)  # anna leaves at once
    assert rig.acd.agent("bob").state is AgentState.RINGING
    b_leg = await leg_from(rig.b, CALLER, 10)
    await until_true(lambda: any(isinstance(e, AgentAssigned) and e.agent == "bob" for e in rig.seen), 10, "pop")
    await asyncio.sleep(0.3)
    assert tone_share(await rig.caller_hears(), B_HZ) > 0.5
    pop = next(e for e in rig.seen if isinstance(e, AgentAssigned) and e.agent == "bob")
    assert pop.context["note"] == "over to you"
    await rig.caller_leg.hangup()
    await asyncio.wait_for(b_leg.ended.wait(), 10)
    await asyncio.wait_for(rig.run, 10)
    assert "consultation completed by anna while agent bob rang" in rig.events()
    legs = rig.rows("SELECT kind, answered_at IS NOT NULL, end_reason FROM legs WHERE call_id=? ORDER BY started_at")
    assert legs == [("agent", 1, "agent_transferred"), ("consult", 1, "caller_hung_up_with_agent")], legs


# -------------------------------------------------- attended transfer from the agent's phone (hotline/attended.py)
def b_takes_replacements(rig: Rig, consult_at_b: CallLeg) -> None:
    """Bob's phone lets an INVITE with Replaces take over its call with anna (as real phones do): the new call
    plays his tone and is recorded like any call his phone answers."""
    consult_at_b.on_replaced = lambda new: rig.session._spawn(rig.b._on_call(new))


def longest_quiet_s(pcm: bytes, rms: float = 200.0) -> float:
    """The longest run of 20 ms frames quieter than `rms`, in seconds."""
    x = np.frombuffer(pcm[: len(pcm) // 320 * 320], "<i2").astype(np.float64).reshape(-1, 160)
    quiet = np.sqrt((x ** 2).mean(axis=1)) < rms
    best = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        best = max(best, run)
    return best * 0.02


async def test_attended_transfer_by_refer_with_replaces_from_the_agents_phone(rig: Rig) -> None:
    """Shape a): anna's phone consults bob's directly, then REFERs the hotline with Refer-To: <bob?Replaces=
    (anna-bob dialog)>: the hotline dials bob with Replaces, his phone swaps anna's call for ours."""
    a_leg = await connected_to_anna(rig)
    bob = f"sip:bob@127.0.0.1:{rig.b.port}"
    await a_leg.hold("inactive")  # anna's phone holds the caller (sends nothing): the hotline plays hold music
    music = "the agent's phone put the caller on hold; hold music"
    await until_true(lambda: rig.events().count(music) == 1, 5, "hold music")  # after 0.5 s of quiet
    held = await rig.caller_hears(1.0)
    assert tone_share(held, A_HZ) < 0.05 and np.abs(np.frombuffer(held, "<i2")).mean() > 100, "hold music"
    consult = await rig.a.endpoint.dial(bob, from_user="anna", timeout=5)  # anna's phone calls bob's
    b_takes_replacements(rig, await leg_from(rig.b, "anna", 5))
    # Bob's phone refuses a Replaces naming a dialog it does not hold (481): anna keeps the caller, bob is free.
    assert await a_leg.refer(uri_with_replaces(bob, Replaces("nosuch@x", "t", "f")), timeout=10) == 481
    assert rig.acd.agent("bob").state is AgentState.AVAILABLE and not a_leg.ended.is_set()
    await a_leg.resume()  # anna back with the caller: her voice, no music
    await asyncio.sleep(0.3)
    assert tone_share(await rig.caller_hears(), A_HZ) > 0.5
    await a_leg.hold("inactive")
    await until_true(lambda: rig.events().count(music) == 2, 5, "hold music again")  # after 0.5 s of quiet

    start = len(rig.caller.heard_pcm(rig.caller_leg))
    assert await a_leg.refer(uri_with_replaces(bob, replaces_for(consult)), timeout=10) == 200
    await a_leg.hangup()  # what a phone does after the NOTIFY 200
    await asyncio.wait_for(consult.ended.wait(), 5)  # bob's phone ended its call with anna (replaced)
    await until_true(lambda: any(isinstance(e, AgentAssigned) and e.agent == "bob" for e in rig.seen), 10, "pop")
    await asyncio.sleep(0.3)
    assert tone_share(await rig.caller_hears(), B_HZ) > 0.5  # the caller talks to bob
    gap = longest_quiet_s(rig.caller.heard_pcm(rig.caller_leg)[start:])
    print(f"longest quiet for the caller across the hand-over: {gap:.2f} s")
    assert gap < 1.0, gap
    assert rig.acd.agent("bob").state is AgentState.ON_CALL and rig.acd.agent("anna").state is AgentState.AVAILABLE
    pop = next(e for e in rig.seen if isinstance(e, AgentAssigned) and e.agent == "bob")
    assert pop.context["transfer_mode"] == "consult" and pop.context["transferred_by"] == "anna (phone)"
    assert pop.context["intent"] == "card_lost" and pop.queue == "cards"
    b_leg = rig.b.legs[-1]
    await rig.caller_leg.hangup()
    await asyncio.wait_for(b_leg.ended.wait(), 10)
    await asyncio.wait_for(rig.run, 10)
    events = rig.events()
    assert "attended transfer to nosuch" not in " ".join(events)
    assert any(e.startswith("attended transfer to bob failed (481") and e.endswith("anna keeps the caller")
               for e in events), events
    assert "bob took the call from anna's phone (attended transfer)" in events, events
    assert "connected to agent bob" in events
    assert events.count("the agent's phone put the caller on hold; hold music") == 2, events
    legs = rig.rows("SELECT kind, peer, answered_at IS NOT NULL, end_reason FROM legs WHERE call_id=? "
                    "ORDER BY started_at")
    assert [(k, a, r) for k, _, a, r in legs] == [("agent", 1, "agent_transferred"), ("agent", 0, "failed"),
                                                  ("agent", 1, "caller_hung_up_with_agent")], legs
    assert legs[2][1].startswith(bob)
    assert rig.rows("SELECT agent FROM calls WHERE id=?") == [("bob",)]
    assert [s for s, _ in rig.status()] == ["ringing", "failed", "ringing", "completed", "connected"]
    assert rig.acd.agent("bob").state is AgentState.AVAILABLE


async def test_an_invite_with_replaces_takes_over_the_agents_leg(rig: Rig) -> None:
    """Shape b): bob's phone (anna REFERred it to the hotline) sends INVITE with Replaces naming the hotline's
    dialog with anna: his leg takes hers, she wraps up, bob (on a break until then) is on the call. A Replaces
    naming the caller's own leg is declined (603); one naming no dialog gets 481."""
    a_leg = await connected_to_anna(rig)
    hotline = rig.caller_leg.remote_target  # the hotline's Contact
    with pytest.raises(CallFailed) as err:
        await rig.b.endpoint.dial(hotline, from_user="bob", timeout=5,
                                  headers=[("Replaces", replaces_for(rig.caller_leg).header())])
    assert err.value.status == 603
    with pytest.raises(CallFailed) as err:
        await rig.b.endpoint.dial(hotline, from_user="bob", timeout=5,
                                  headers=[("Replaces", Replaces("nosuch@x", "t", "f").header())])
    assert err.value.status == 481
    assert not a_leg.ended.is_set() and tone_share(await rig.caller_hears(), A_HZ) > 0.5

    rig.acd.set_state("bob", AgentState.ON_BREAK)  # his phone takes the call anyway: he is claimed for it
    start = len(rig.caller.heard_pcm(rig.caller_leg))
    new = await rig.b.endpoint.dial(hotline, from_user="bob", timeout=5,
                                    headers=[("Replaces", replaces_for(a_leg).header())])
    rig.session._spawn(rig.b._on_call(new))  # bob's phone plays his tone on it
    await asyncio.wait_for(a_leg.ended.wait(), 5)
    assert a_leg.end_reason == "remote_bye"  # the hotline BYEs the replaced leg
    await until_true(lambda: any(isinstance(e, AgentAssigned) and e.agent == "bob" for e in rig.seen), 10, "pop")
    await asyncio.sleep(0.3)
    assert tone_share(await rig.caller_hears(), B_HZ) > 0.5
    gap = longest_quiet_s(rig.caller.heard_pcm(rig.caller_leg)[start:])
    print(f"longest quiet for the caller across the replacement: {gap:.2f} s")
    assert gap < 1.0, gap
    assert rig.acd.agent("bob").state is AgentState.ON_CALL and rig.acd.agent("anna").state is AgentState.AVAILABLE
    assert rig.session.agent_leg is not None and rig.session.agent_leg.call_id == new.call_id
    await rig.caller_leg.hangup()
    await asyncio.wait_for(new.ended.wait(), 10)
    await asyncio.wait_for(rig.run, 10)
    events = rig.events()
    assert "bob took the call from agent anna (INVITE with Replaces)" in events, events
    assert "connected to agent bob" in events
    legs = rig.rows("SELECT kind, answered_at IS NOT NULL, end_reason FROM legs WHERE call_id=? ORDER BY started_at")
    assert legs == [("agent", 1, "agent_transferred"), ("agent", 1, "caller_hung_up_with_agent")], legs
    assert [s for s, _ in rig.status()] == ["completed", "connected"]
    assert rig.acd.agent("bob").state is AgentState.AVAILABLE


async def test_an_attended_transfer_nobody_answers_after_the_agent_left_puts_the_caller_first_in_line(
    rig: Rig,
) -> None:
    """Anna's phone REFERs with Replaces to carol (no agent: recorded by URI, not tracked) and hangs up at once;
    carol's address never answers: the caller hears hold music, then goes back to general, first in line, and
    anna (wrap-up 0 s) takes them again."""
    a_leg = await connected_to_anna(rig)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        carol = f"sip:carol@127.0.0.1:{silent.getsockname()[1]}"
        refer = asyncio.ensure_future(a_leg.refer(uri_with_replaces(carol, Replaces("c@x", "t", "f")), timeout=10))
        await until_true(lambda: ("ringing", carol) in rig.status(), 5, "carol's address dialled")
        await a_leg.hangup()  # anna leaves before the transfer is done
        held = await rig.caller_hears(1.0)
        assert np.abs(np.frombuffer(held, "<i2")).mean() > 100, "hold music while carol's phone is tried"
        await until_true(lambda: len([leg for leg in rig.a.legs if leg.caller == CALLER]) == 2, 15, "anna again")
    await until_true(lambda: rig.session.agent_leg is not None, 10, "the caller bridged to anna again")
    with contextlib.suppress(Exception):
        await refer
    await rig.caller_leg.hangup()
    await asyncio.wait_for(rig.run, 10)
    events = rig.events()
    assert f"agent {carol} did not answer; the caller goes back to general, first in line" in events, events
    legs = rig.rows("SELECT kind, peer, answered_at IS NOT NULL, end_reason FROM legs WHERE call_id=? "
                    "ORDER BY started_at")
    assert [(k, a, r) for k, _, a, r in legs] == [("agent", 1, "agent_transferred"), ("agent", 0, "no_answer"),
                                                  ("agent", 1, "caller_hung_up_with_agent")], legs
    assert legs[1][1].startswith(carol) and legs[2][1].startswith("sip:anna@")
    assert [s for s, _ in rig.status()] == ["ringing", "failed"]
    assert rig.acd.agent("anna").state is AgentState.AVAILABLE


PJ_SCRIPT = Path(__file__).parents[1] / "telephony" / "pjsua2_script.py"


@pytest.mark.interop
@pytest.mark.skipif(importlib.util.find_spec("pjsua2") is None, reason="pip install pjsua2-python")
async def test_pjsua2_phone_completes_an_attended_transfer_into_the_session(rig: Rig) -> None:
    """A real third-party phone (pjsua2, PJSIP) as bob: anna's phone consults it, then REFERs it to the hotline
    with Replaces naming the hotline's dialog with anna; pjsua2's own INVITE with Replaces takes anna's place
    in the session, and the caller hears pjsua2's 800 Hz tone."""
    a_leg = await connected_to_anna(rig)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rig.acd.add_agent(AgentProfile("pj", f"sip:pj@127.0.0.1:{port}", queues=frozenset({"cards"})),
                      AgentState.AVAILABLE)
    rtp_port = port // 2 * 2 + 2 if port < 60000 else 46000
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(PJ_SCRIPT), "--port", str(port), "--rtp-port", str(rtp_port), "--answer", "--linger", "10",
        "waitend", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        consult = None
        for _ in range(20):  # until pjsua2 is up and answers anna's phone
            with contextlib.suppress(CallFailed):
                consult = await rig.a.endpoint.dial(f"sip:pj@127.0.0.1:{port}", from_user="anna", timeout=3)
                break
            await asyncio.sleep(0.3)
        assert consult is not None, "pjsua2 did not answer"
        hotline = rig.caller_leg.remote_target
        assert await consult.refer(uri_with_replaces(hotline, replaces_for(a_leg)), timeout=10) == 200
        await consult.hangup()  # the transferor's call with pjsua2 is done
        await asyncio.wait_for(a_leg.ended.wait(), 5)  # replaced: the hotline BYEs anna's leg
        await until_true(lambda: any(isinstance(e, AgentAssigned) and e.agent == "pj" for e in rig.seen), 10, "pop")
        await asyncio.sleep(0.3)
        assert tone_share(await rig.caller_hears(), 800.0) > 0.5  # the caller talks to pjsua2
        assert rig.acd.agent("pj").state is AgentState.ON_CALL
        await rig.caller_leg.hangup()
        await asyncio.wait_for(rig.run, 10)
        out = (await asyncio.wait_for(proc.communicate(), 20))[0].decode(errors="replace")
        assert "XFERREQ <sip:" in out and "Replaces=" in out and "DONE" in out, out[-2000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "pj took the call from agent anna (INVITE with Replaces)" in rig.events()
    legs = rig.rows("SELECT kind, answered_at IS NOT NULL, end_reason FROM legs WHERE call_id=? ORDER BY started_at")
    assert legs == [("agent", 1, "agent_transferred"), ("agent", 1, "caller_hung_up_with_agent")], legs
