"""Skills from the call, in a real CallSession (hotline/call_skills.py): a test caller dials a real SipEndpoint,
the session queues the leg with the Transfer's needs and priority on the real distributor, and the agent
whose skills fit is the one whose phone rings (AgentPhone tones tell who the caller hears); the transcript's
event lines and the screen pop show the needs, the priority and what was relaxed. SQLite records, espeak."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.agent_legs import leg_from, tone, tone_share
from support.session_rig import hotline_for_sessions
from support.waiting import until_true

from asr import create_recognizer
from console.live import routing_text
from dialog import Transfer
from hotline.bus import EventBus
from hotline.events import AgentAssigned, Event
from hotline.session import CallSession
from routing import AgentProfile, AgentState, CallDistributor, QueueConfig
from telephony import AgentPhone, CallLeg, TestCaller

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

CALLER = "5550188"
EN_HZ, ZH_HZ = 300.0, 2800.0


@dataclass
class Rig:
    acd: CallDistributor
    session: CallSession
    caller: TestCaller
    caller_leg: CallLeg
    en: AgentPhone
    zh: AgentPhone
    seen: list[Event]
    db: Path

    def events(self) -> list[str]:
        with sqlite3.connect(self.db) as conn:
            rows = conn.execute("SELECT text FROM transcript_lines WHERE call_id=? AND speaker='event' "
                                "ORDER BY start_s, id", (self.session.call_id,)).fetchall()
        return [t for (t,) in rows]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    queues = [{"name": "general", "ring_timeout_s": 5, "wrap_up_s": 0, "connect_prompt": {}, "hold_prompt": {},
               "relax_after_s": 30}]
    bus, seen = EventBus(), []
    bus.subscribe(seen.append)
    acd = CallDistributor([QueueConfig("general", ring_timeout_s=5)])
    async with (hotline_for_sessions(tmp_path, queues, acd, bus, create_recognizer("pocketsphinx")) as hotline,
                AgentPhone(port=0, play_pcm=tone(EN_HZ), repeat=True, gap_s=0.0) as en,
                AgentPhone(port=0, play_pcm=tone(ZH_HZ), repeat=True, gap_s=0.0) as zh,
                TestCaller() as caller):
        # anna logs in first: the longest idle, whom a call without needs would get
        acd.add_agent(AgentProfile("anna", f"sip:anna@127.0.0.1:{en.port}", skills={"en": 2}), AgentState.AVAILABLE)
        acd.add_agent(AgentProfile("li", f"sip:li@127.0.0.1:{zh.port}", skills={"zh": 1}), AgentState.AVAILABLE)
        caller_leg = await caller.call(hotline.uri, from_user=CALLER)
        session = CallSession(await asyncio.wait_for(hotline.legs.get(), 10), hotline.deps)
        hotline.store.start_call(session.call_id, sip_call_id="x", caller=CALLER, called="hotline")
        session._state.transferring = True
        reader = asyncio.ensure_future(session._read_media(session.leg, session._inputs.put_nowait))
        try:
            yield Rig(acd, session, caller, caller_leg, en, zh, seen, hotline.db)
        finally:
            if not caller_leg.ended.is_set():
                await caller_leg.hangup()
            reader.cancel()


async def test_a_mandarin_caller_gets_the_zh_agent_with_the_product_skill_relaxed(rig: Rig) -> None:
    # What the dialog hands over for a verified VIP Mandarin caller who asked to block a card
    routing = {"needs": {"cards": 1, "zh": 1}, "priority": 10}
    action = Transfer("general", "caller asked for an agent", {"intent": "agent", "language": "zh", "routing": routing},
                      needs={"cards": 1, "zh": 1}, relax=("cards", "zh"), priority=10)
    run = asyncio.ensure_future(rig.session._transfer(action))
    try:
        li_leg = await leg_from(rig.zh, CALLER, 20)
        await until_true(lambda: rig.session._bridged is not None, 10, "the caller bridged to li")
        await asyncio.sleep(0.3)
        start = len(rig.caller.heard_pcm(rig.caller_leg))
        await asyncio.sleep(0.6)
        assert tone_share(rig.caller.heard_pcm(rig.caller_leg)[start:], ZH_HZ) > 0.5  # the caller hears li
        assert not rig.en.legs  # anna, longer idle but English only, was never rung
        assert rig.acd.agent("anna").state is AgentState.AVAILABLE
        pop = next(e for e in rig.seen if isinstance(e, AgentAssigned))
        assert pop.agent == "li"
        assert pop.context["routing"] == {"needs": {"zh": 1}, "priority": 10, "relaxed": ["cards"]}
        assert routing_text(pop.context["routing"]) == "needs zh:1 · priority 10 · relaxed cards"  # the agent page
        await rig.caller_leg.hangup()
        await asyncio.wait_for(li_leg.ended.wait(), 10)
        with contextlib.suppress(Exception):  # the session ends by the caller's hang-up (its _CallGone)
            await asyncio.wait_for(run, 10)
    finally:
        run.cancel()
    events = rig.events()
    assert "queued for general (caller asked for an agent; needs cards:1, zh:1; priority 10)" in events, events
    assert "skill cards relaxed (no logged-in agent has it)" in events, events
    assert "connected to agent li" in events
    assert events.index("skill cards relaxed (no logged-in agent has it)") < events.index("connected to agent li")
