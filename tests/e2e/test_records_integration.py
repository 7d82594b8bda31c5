"""The call session writes the records layer over real SIP: intents, keys, the queue entry with its
wait, the agent leg; a caller who hangs up in the queue is `abandoned` with a wait; `hotline report`
over that database agrees with the calls made."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from support.e2e_server import ROOT, Server, free_sip_port, start_server, stop_server, write_config

from recordings.analytics import format_report, report
from recordings.models import DtmfRecord, IntentRecord, Leg, QueueEntry
from telephony import AgentPhone, TestCaller

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

AGENT_PORT = free_sip_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("records-e2e")
    cfg = write_config(tmp, agent_ports=[AGENT_PORT], endpointing__no_input_s=8.0)
    srv = start_server(cfg, tmp / "var")
    yield srv
    stop_server(srv)


def closed_call(server: Server, sip_call_id: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        call = server.store.find_by_sip_call_id(sip_call_id)
        if call is not None and call.ended_at is not None:
            return call
        time.sleep(0.2)
    return None


def rows(server: Server, model: Any, call_id: str) -> list[Any]:
    store = server.store
    try:
        with store.engine.connect() as conn:
            return list(conn.execute(select(model).where(model.call_id == call_id)))
    finally:
        store.close()


async def agent_leg_from(agent: AgentPhone, caller: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        agent.answered.clear()
        legs = [leg for leg in agent.legs if leg.caller == caller]
        if legs:
            return legs[-1]
        await asyncio.wait_for(agent.answered.wait(), max(0.0, deadline - time.monotonic()))


async def test_intents_keys_queue_and_agent_leg_are_recorded_and_reported(server: Server, voice: Any) -> None:
    agent_voice = voice("Hello, this is the customer service desk.")
    async with (
        AgentPhone(port=AGENT_PORT, play_pcm=agent_voice) as agent,
        TestCaller() as first,
        TestCaller() as second,
    ):
        # Caller 1: a key (opening hours), then asks for a person by voice; waits; is bridged.
        leg1 = await first.call(server.uri, from_user="2001")
        await asyncio.sleep(1.5)  # keys cut the greeting short
        first.send_dtmf(leg1, "1")
        await first.listen(leg1, silence_s=1.5, timeout_s=40)  # the opening hours, then "anything else?"
        await first.play(leg1, voice("I want to talk to a person."))
        await agent_leg_from(agent, "2001", 40)  # the only agent is now busy with caller 1

        # Caller 2: asks for an agent with the key, waits in the queue, gives up.
        leg2 = await second.call(server.uri, from_user="2002")
        await asyncio.sleep(1.5)
        second.send_dtmf(leg2, "0")
        await second.listen(leg2, silence_s=1.0, timeout_s=20)  # "all our agents are busy ..."
        await asyncio.sleep(2.0)
        await leg2.hangup()
        call2 = await asyncio.to_thread(closed_call, server, leg2.call_id)
        assert call2, server.log()[-3000:]
        await leg1.hangup()
    call1 = await asyncio.to_thread(closed_call, server, leg1.call_id)
    assert call1, server.log()[-3000:]
    assert call1.outcome == "transferred" and call1.agent == "agent0"
    assert call2.outcome == "abandoned"

    # Caller 1: every intent understood, with where it came from; the key; the answered queue entry.
    intents = rows(server, IntentRecord, call1.id)
    assert [(r.intent, r.source) for r in intents] == [("faq:opening_hours", "dtmf"), ("agent", "speech")], intents
    assert all(r.confidence is not None and r.confidence > 0 for r in intents)
    assert [(r.digits, r.secret) for r in rows(server, DtmfRecord, call1.id)] == [("1", False)]
    (entry1,) = rows(server, QueueEntry, call1.id)
    assert (entry1.queue, entry1.status, entry1.agent) == ("general", "answered", "agent0")
    assert entry1.wait_s is not None and 0 < entry1.wait_s < 60 and entry1.left_at is not None
    legs = {r.kind: r for r in rows(server, Leg, call1.id)}
    assert set(legs) == {"caller", "agent"}
    assert legs["caller"].sip_call_id == leg1.call_id and legs["caller"].ended_at is not None
    agent_leg = legs["agent"]
    assert agent_leg.peer == f"sip:agent0@127.0.0.1:{AGENT_PORT}"
    assert agent_leg.answered_at is not None and agent_leg.ended_at is not None
    assert agent_leg.end_reason == "caller_hung_up_with_agent"
    # Skills from the call: an English caller needs "en"; agent0 has no skills, so it is relaxed at once.
    events = [ln.text for ln in server.store.get_transcript(call1.id) if ln.speaker == "event"]
    assert "queued for general (caller asked for an agent; needs en:1)" in events, events
    assert "skill en relaxed (no logged-in agent has it)" in events, events

    # Caller 2: hung up while queued → abandoned, with the time waited.
    assert [(r.intent, r.source) for r in rows(server, IntentRecord, call2.id)] == [("agent", "dtmf")]
    assert [r.digits for r in rows(server, DtmfRecord, call2.id)] == ["0"]
    (entry2,) = rows(server, QueueEntry, call2.id)
    assert (entry2.status, entry2.agent) == ("abandoned", None)
    assert entry2.wait_s is not None and 2.0 <= entry2.wait_s < 60, entry2.wait_s
    assert [r.kind for r in rows(server, Leg, call2.id)] == ["caller"]  # no agent was ever rung

    # The report over this database: both calls went to a queue, one of the two was abandoned.
    store = server.store
    try:
        rep = report(store)
    finally:
        store.close()
    total = rep.total
    assert (total.calls, total.transferred, total.answered, total.abandoned) == (2, 2, 1, 1)
    assert total.transfer_rate == 1.0 and total.abandonment_rate == 0.5 and total.containment_rate == 0.0
    assert dict(rep.intent_mix) == {"agent": 2, "faq:opening_hours": 1}
    cli = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "hotline.cli", "--config", str(server.config), "report"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == format_report(rep).strip()
