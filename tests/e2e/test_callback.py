"""Callbacks and hold music over real SIP: `hotline serve` in its own process, test callers, an agent's
phone and the customer's phone that the hotline dials back (docs/ROUTING.md, "Callbacks in the call")."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sqlite3
import time
import wave
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import yaml
from support.agent_legs import leg_from, words
from support.e2e_server import ROOT, Server, free_sip_port, start_server, stop_server, write_config

from recordings.atrest import open_recording
from telephony import AgentPhone, CallLeg, TestCaller

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

AGENT_PORT = free_sip_port()
CUSTOMER_PORT = free_sip_port()  # the "PSTN gateway" the dial-back goes to: the customer's phone
DIGIT_WORDS = dict(zip("zero one two three four five six seven eight nine".split(), "0123456789", strict=True))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("callback")
    queue = yaml.safe_load((ROOT / "configs" / "server.yaml").read_text())["queues"][0]
    queue.update(
        agents=[{"name": "agent0", "uri": f"sip:agent0@127.0.0.1:{AGENT_PORT}"}],
        wrap_up_s=0,
        announce_every_s=8,
        hold_music="tones",
        callback={
            "enabled": True,
            "offer_after_s": None,
            "dial_uri": f"sip:{{number}}@127.0.0.1:{CUSTOMER_PORT}",
            "attempts": 2,
            "retry_after_s": 1,
            "ring_timeout_s": 4,
        },
    )
    cfg = write_config(tmp, agent_ports=[AGENT_PORT], queues=[queue], endpointing__no_input_s=3.0)
    srv = start_server(cfg, tmp / "var")
    yield srv
    stop_server(srv)


def rows(server: Server, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(server.data_dir / "hotline.db") as db:
        return db.execute(sql, args).fetchall()


def wait_for(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


async def rows_soon(server: Server, sql: str, *args: Any, timeout: float = 20.0) -> list[tuple[Any, ...]]:
    """`rows` once there are some (polled off the event loop: the test's SIP legs keep running)."""
    for _ in range(int(timeout / 0.2)):
        found = await asyncio.to_thread(rows, server, sql, *args)
        if found:
            return found
        await asyncio.sleep(0.2)
    return await asyncio.to_thread(rows, server, sql, *args)


def longest_run(flags: Any) -> int:
    best = run = 0
    for f in flags:
        run = run + 1 if f else 0
        best = max(best, run)
    return best


async def queue_behind_busy_agent(server: Server, agent: AgentPhone, first: TestCaller, second: TestCaller,
                                  number: str) -> tuple[CallLeg, CallLeg]:
    leg1, leg2 = await asyncio.gather(first.call(server.uri, from_user="1001"),
                                      second.call(server.uri, from_user=number))
    await asyncio.gather(first.listen(leg1, silence_s=1.5, timeout_s=40),
                         second.listen(leg2, silence_s=1.5, timeout_s=40))  # both greeted
    first.send_dtmf(leg1, "0")
    await leg_from(agent, "1001", 40)  # the only agent is now busy
    second.send_dtmf(leg2, "0")
    return leg1, leg2


async def test_queued_caller_hears_music_takes_a_callback_and_is_dialled_back_to_the_agent(
    server: Server, ear: Any, voice: Any
) -> None:
    async with (
        AgentPhone(port=AGENT_PORT, play_pcm=voice("Hello, this is the customer service desk."), repeat=True) as agent,
        AgentPhone(port=CUSTOMER_PORT, play_pcm=voice("Yes, this is the customer."), repeat=True,
                   gap_s=1.0) as customer,
        TestCaller() as first,
        TestCaller() as second,
    ):
        leg1, leg2 = await queue_behind_busy_agent(server, agent, first, second, "5550002")
        # Queued: announcements with music between them. Over one whole announcement cycle (8 s) the
        # caller never hears more than a second of silence (without music: ~3 s after each prompt).
        await asyncio.sleep(9.0)
        held = np.frombuffer(second.heard_pcm(leg2)[-8 * 16000:], dtype="<i2").astype(np.float64)
        rms = np.sqrt((held[: len(held) // 160 * 160].reshape(-1, 160) ** 2).mean(axis=1))
        assert len(rms) >= 390, len(rms)
        assert longest_run(rms < 100) < 50, f"longest silence {longest_run(rms < 100) * 20} ms"
        assert rms.max() < 12000

        second.send_dtmf(leg2, "*")  # "call me back"
        heard_start = len(second.heard_pcm(leg2))
        await asyncio.sleep(1.0)
        await second.wait_silence(leg2, silence_s=1.0, timeout_s=20)
        heard = second.heard_pcm(leg2)[heard_start:]
        offer = words(await asyncio.to_thread(lambda: ear.transcribe(heard, 8000, "en").text))
        # The caller's number read digit by digit (whisper tiny sometimes drops one of three equal digits, and
        # writes the digits as words or as figures; the exact number is checked in the call's transcript below).
        figures = " ".join(DIGIT_WORDS.get(w, w) for w in offer.split())
        assert "press 1" in figures and "5 5" in figures, offer
        second.send_dtmf(leg2, "1")  # the number calling: 5550002
        await asyncio.wait_for(leg2.ended.wait(), 40)  # thanked, then the hotline hangs up
        said = words(await asyncio.to_thread(
            lambda: ear.transcribe(second.heard_pcm(leg2)[heard_start + len(heard):], 8000, "en").text))
        assert "place" in said and "goodbye" in said, said

        await leg1.hangup()  # the agent is free: the hotline dials the customer back
        cust_leg = await customer.wait_for_call(timeout=30)
        assert cust_leg.caller == "hotline"
        agent_leg = await leg_from(agent, "5550002", 30)  # then rings the agent, showing the customer's number
        await asyncio.sleep(4.0)
        cust_heard = words(await asyncio.to_thread(lambda: ear.transcribe(customer.heard_pcm(cust_leg), 8000,
                                                                          "en").text))
        # The greeting ("... your bank calling you back. Connecting you to an agent now."), then the agent.
        assert "calling you" in cust_heard and "connecting" in cust_heard, cust_heard
        assert "customer service" in cust_heard.split("connecting", 1)[-1], cust_heard
        heard_by_agent = np.frombuffer(agent.heard_pcm(agent_leg), dtype="<i2").astype(np.float64)
        agent_rms = np.sqrt((heard_by_agent[: len(heard_by_agent) // 160 * 160].reshape(-1, 160) ** 2).mean(axis=1))
        assert (agent_rms > 300).sum() >= 50, "the agent hears the customer's voice (at least 1 s of speech)"
        await cust_leg.hangup()
        await asyncio.wait_for(agent_leg.ended.wait(), 10)

    call = wait_for(lambda: (c := server.store.find_by_sip_call_id(leg2.call_id)) and c.outcome == "callback_connected"
                    and c)
    assert call, server.log()[-3000:]
    assert call.agent == "agent0"
    legs = wait_for(lambda: (r := rows(server, "SELECT kind, answered_at IS NOT NULL, end_reason FROM legs "
                                               "WHERE call_id=? ORDER BY started_at", call.id))
                    and r[-1][2] is not None and r)
    assert [(k, a) for k, a, _ in legs] == [("caller", 1), ("callback", 1), ("agent", 1)], legs
    assert legs[1][2] == "customer_hung_up"
    assert rows(server, "SELECT status, agent FROM queue_entries WHERE call_id=?", call.id) == [("answered", "agent0")]
    events = [ln.text for ln in server.store.get_transcript(call.id) if ln.speaker == "event"]
    assert any("callback requested to 5550002" in e for e in events), events
    assert any("callback connected to agent agent0" in e for e in events), events
    # The callback conversation is transcribed and recorded on the call, like an agent call: the recording
    # the call page plays is the call's own with the callback's joined after it.
    lines = wait_for(lambda: (t := server.store.get_transcript(call.id)) and "callback ended" in t[-1].text and t)
    connected = next(ln.seq for ln in lines if ln.text.startswith("callback connected"))
    talk = {ln.speaker for ln in lines if ln.seq > connected and ln.speaker in ("caller", "agent") and ln.text}
    assert talk == {"caller", "agent"}, [(ln.speaker, ln.text) for ln in lines if ln.seq > connected]
    path = wait_for(lambda: (c := server.store.get_call(call.id)) and "joined" in (c.recording_path or "")
                    and c.recording_path)
    assert path, server.store.get_call(call.id)
    with wave.open(io.BytesIO(open_recording(path))) as w:
        assert w.getnchannels() == 2 and w.getnframes() / 8000 > 15  # the IVR and queue, then the callback
    files = [p.name for p in (server.data_dir / "recordings").glob(f"{call.id}*")]
    assert files == [os.path.basename(path)], files  # the two parts were replaced by the joined file


async def test_callback_nobody_answers_is_retried_then_recorded_failed(server: Server, voice: Any) -> None:
    async with (
        AgentPhone(port=AGENT_PORT, play_pcm=voice("Hello.")) as agent,
        TestCaller() as first,
        TestCaller() as second,
    ):
        # The customer's phone (CUSTOMER_PORT) is not running: nothing answers the dial-back.
        leg1, leg2 = await queue_behind_busy_agent(server, agent, first, second, "12")  # too short to call
        await asyncio.sleep(2.0)  # queued (music and announcements: never a second of silence to wait for)
        second.send_dtmf(leg2, "*")
        await asyncio.sleep(1.0)
        await second.wait_silence(leg2, silence_s=1.0, timeout_s=20)  # "key in the number"
        second.send_dtmf(leg2, "5550003#")
        await asyncio.wait_for(leg2.ended.wait(), 40)
        await leg1.hangup()
        call = wait_for(lambda: (c := server.store.find_by_sip_call_id(leg2.call_id)) and c.outcome == "callback_failed"
                        and c, 40)
        assert call, server.log()[-3000:]
        assert not [leg for leg in agent.legs if leg.caller == "5550003"]  # the agent was never rung for it
    callbacks = rows(server, "SELECT answered_at, end_reason FROM legs WHERE call_id=? AND kind='callback'", call.id)
    assert callbacks == [(None, "no_answer"), (None, "no_answer")]
    assert rows(server, "SELECT status FROM queue_entries WHERE call_id=?", call.id) == [("abandoned",)]
    events = [ln.text for ln in server.store.get_transcript(call.id) if ln.speaker == "event"]
    assert any("given up after 2 attempts" in e for e in events), events


async def test_a_callback_outlives_a_killed_worker(server: Server, voice: Any) -> None:
    """The worker is SIGKILLed after the caller took the callback and before any agent was free; the restarted
    worker takes it back from the database and the customer is called back and connected (last in the module:
    the module's server is the restarted one afterwards)."""
    async with (
        AgentPhone(port=AGENT_PORT, play_pcm=voice("Hello.")) as agent,
        AgentPhone(port=CUSTOMER_PORT, play_pcm=voice("Yes."), repeat=True, gap_s=1.0) as customer,
        TestCaller() as first,
        TestCaller() as second,
    ):
        # Lean: keys over the prompts (DTMF always barges in), and the caller hangs up once the callback is taken.
        leg1, leg2 = await asyncio.gather(first.call(server.uri, from_user="1001"),
                                          second.call(server.uri, from_user="5550004"))
        await asyncio.sleep(1.5)
        first.send_dtmf(leg1, "0")
        await leg_from(agent, "1001", 40)  # the only agent is now busy
        second.send_dtmf(leg2, "0")
        await asyncio.sleep(2.0)  # queued
        second.send_dtmf(leg2, "*")
        await asyncio.sleep(2.0)  # "Press 1 to be called back on 5 5 5 0 0 0 4. Or key in another number, ..."
        second.send_dtmf(leg2, "1#")
        sql = "SELECT b.state, b.attempts, c.id FROM callbacks b JOIN calls c ON c.id = b.call_id WHERE c.sip_call_id=?"
        [(state, _, call_id)] = await rows_soon(server, sql, leg2.call_id)
        assert state == "pending"
        await leg2.hangup()
        os.kill(server.proc.pid, signal.SIGKILL)  # nothing is said to anybody: the promise is only in the database
        server.proc.wait(10)
        bye = asyncio.ensure_future(leg1.hangup())  # to the dead worker: unanswered, meanwhile the restart
        restarted = await asyncio.to_thread(start_server, server.config, server.data_dir)
        server.proc, server.port = restarted.proc, restarted.port  # the fixture stops this one
        cust_leg = await customer.wait_for_call(timeout=40)
        agent_leg = await leg_from(agent, "5550004", 30)
        await asyncio.sleep(1.0)
        await cust_leg.hangup()
        await asyncio.wait_for(agent_leg.ended.wait(), 10)
        await bye
    done = wait_for(lambda: rows(server, "SELECT state, attempts FROM callbacks WHERE call_id=?", call_id)
                    == [("done", 1)])
    assert done, server.log()[-3000:]
    assert server.store.get_call(call_id).outcome == "callback_connected"
    events = [ln.text for ln in server.store.get_transcript(call_id) if ln.speaker == "event"]
    assert "callback to 5550004 taken back by worker-1 (place kept)" in events, events
