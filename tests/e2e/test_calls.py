"""Whole calls over real SIP on loopback: `hotline serve` in its own process, a test caller with its
own SIP stack, an agent phone; what the caller heard is transcribed and checked."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from support.e2e_server import Server, free_sip_port, start_server, stop_server, write_config

from telephony import AgentPhone, TestCaller

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]



AGENT_PORT = free_sip_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("hotline")
    cfg = write_config(tmp, agent_ports=[AGENT_PORT], endpointing__no_input_s=3.0)
    srv = start_server(cfg, tmp / "var")
    yield srv
    stop_server(srv)


def words(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", " ", text.lower())


async def heard_text(tc: TestCaller, leg: Any, ear: Any, *, silence_s: float = 1.5, timeout_s: float = 40) -> str:
    pcm = await tc.listen(leg, silence_s=silence_s, timeout_s=timeout_s)
    return words(await asyncio.to_thread(lambda: ear.transcribe(pcm, 8000, "en").text))


def wait_for(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


def last_call(server: Server, sip_call_id: str) -> Any:
    return server.store.find_by_sip_call_id(sip_call_id)


def closed_call(server: Server, sip_call_id: str, timeout: float = 20.0) -> Any:
    return wait_for(lambda: (c := last_call(server, sip_call_id)) is not None and c.ended_at is not None and c, timeout)


async def test_caller_asks_opening_hours_by_voice_and_hears_the_answer(server: Server, ear: Any, voice: Any) -> None:
    async with TestCaller() as tc:
        leg = await tc.call(server.uri, from_user="13800001111")
        greeting = await heard_text(tc, leg, ear)
        assert "opening hours" in greeting and "agent" in greeting, greeting
        await tc.play(leg, voice("What are your opening hours?"))
        answer = await heard_text(tc, leg, ear)
        assert "monday" in answer and "friday" in answer, answer
        await leg.hangup()
    call = await asyncio.to_thread(closed_call, server, leg.call_id)
    assert call, server.log()[-3000:]
    assert call.caller == "13800001111"
    assert call.last_intent == "faq:opening_hours"
    lines = server.store.get_transcript(call.id)
    caller_lines = [ln for ln in lines if ln.speaker == "caller"]
    assert any("opening hours" in words(ln.text) for ln in caller_lines)
    assert any("Monday to Friday" in ln.text for ln in lines if ln.speaker == "system")
    assert call.recording_path
    assert await asyncio.to_thread(os.path.getsize, call.recording_path) > 8000 * 2 * 2 * 5


async def test_keypad_answers_and_switches_to_chinese(server: Server, ear: Any) -> None:
    async with TestCaller() as tc:
        leg = await tc.call(server.uri)
        await tc.listen(leg, silence_s=1.5, timeout_s=40)
        tc.send_dtmf(leg, "2")
        answer = await heard_text(tc, leg, ear)
        assert "card" in answer, answer
        tc.send_dtmf(leg, "9")
        chinese = await tc.listen(leg, silence_s=1.5, timeout_s=30)
        assert len(chinese) > 8000 * 2 * 2  # more than two seconds of Mandarin prompt
        await leg.hangup()
    call = await asyncio.to_thread(closed_call, server, leg.call_id)
    lines = server.store.get_transcript(call.id)
    assert [ln.text for ln in lines if ln.speaker == "caller"] == ["[key 2]", "[key 9]"]
    assert any("中文" in ln.text for ln in lines if ln.speaker == "system")
    assert call.language == "zh"


async def test_caller_is_bridged_to_an_agent_and_both_hear_each_other(
    server: Server, ear: Any, voice: Any
) -> None:
    agent_voice = voice("Hello, this is the customer service desk. How can I help you?")
    async with AgentPhone(port=AGENT_PORT, play_pcm=agent_voice) as agent, TestCaller() as tc:
        leg = await tc.call(server.uri, from_user="13900002222")
        await tc.listen(leg, silence_s=1.5, timeout_s=40)
        await tc.play(leg, voice("I want to talk to a person."))
        agent_leg = await agent.wait_for_call(timeout=40)
        assert agent_leg.caller == "13900002222"  # the agent's phone shows who is calling
        # The caller hears the hold announcement, then the agent's own voice over the bridge.
        heard = ""
        deadline = time.monotonic() + 30
        while "customer service" not in heard and time.monotonic() < deadline:
            heard += " " + await heard_text(tc, leg, ear, timeout_s=10)
        assert "customer service" in heard, heard
        await tc.play(leg, voice("Hello, I have a question about my credit card."))
        await asyncio.sleep(1.0)
        agent_heard = words(await asyncio.to_thread(lambda: ear.transcribe(agent.heard_pcm(), 8000, "en").text))
        assert "credit card" in agent_heard, agent_heard
        await leg.hangup()
        assert await _ended(agent_leg, 10), "the agent's leg must be hung up when the caller leaves"
    call = await asyncio.to_thread(closed_call, server, leg.call_id)
    assert call.outcome == "transferred" and call.queue == "general" and call.agent == "agent0"
    assert call.last_intent == "agent"
    # Both sides of the agent conversation are in the transcript.
    lines = server.store.get_transcript(call.id)
    assert any(ln.speaker == "agent" and "customer service" in words(ln.text) for ln in lines)
    assert any(ln.speaker == "caller" and "credit card" in words(ln.text) for ln in lines)


async def test_caller_who_hangs_up_mid_prompt_leaves_a_closed_record(server: Server) -> None:
    async with TestCaller() as tc:
        leg = await tc.call(server.uri)
        await asyncio.sleep(2.0)  # the greeting is still playing
        await leg.hangup()
    call = await asyncio.to_thread(closed_call, server, leg.call_id)
    assert call.outcome == "caller_hangup" and call.ended_at is not None
    lines = server.store.get_transcript(call.id)
    assert lines and lines[0].speaker == "system" and "Welcome" in lines[0].text


async def test_silence_is_reprompted_then_sent_to_an_agent(server: Server) -> None:
    async with TestCaller() as tc:
        leg = await tc.call(server.uri)
        # Say nothing: greeting, two re-prompts (3 s apart here), then the transfer.
        call = await asyncio.to_thread(
            wait_for, lambda: (c := last_call(server, leg.call_id)) is not None and c.queue and c, 90
        )
        assert call, server.log()[-3000:]
        await leg.hangup()
    call = await asyncio.to_thread(closed_call, server, leg.call_id)
    lines = server.store.get_transcript(call.id)
    texts = [ln.text for ln in lines]
    assert sum(t == "no input" for t in texts) == 3
    assert any("didn't hear anything" in t for t in texts) and any("still can't hear you" in t for t in texts)
    assert call.queue == "general"
    assert call.outcome == "abandoned"  # nobody answered before the caller gave up


async def test_nonsense_is_reprompted_then_sent_to_an_agent(server: Server, voice: Any) -> None:
    async with TestCaller() as tc:
        leg = await tc.call(server.uri)
        await tc.listen(leg, silence_s=1.5, timeout_s=40)
        for _ in range(3):
            await tc.play(leg, voice("Purple elephants dance on the frozen lake."))
            await tc.listen(leg, silence_s=1.5, timeout_s=30)
        call = await asyncio.to_thread(
            wait_for, lambda: (c := last_call(server, leg.call_id)) is not None and c.queue and c, 30
        )
        assert call, server.log()[-3000:]
        await leg.hangup()
    lines = server.store.get_transcript(call.id)
    system = [ln.text for ln in lines if ln.speaker == "system"]
    assert any("didn't understand" in t for t in system)
    assert any("still didn't get that" in t for t in system)
    assert sum(ln.speaker == "caller" for ln in lines) == 3


async def agent_leg_from(agent: AgentPhone, caller: str, timeout: float) -> Any:
    """The agent phone's call from this caller, once it has rung and been answered."""
    deadline = time.monotonic() + timeout
    while True:
        agent.answered.clear()
        legs = [leg for leg in agent.legs if leg.caller == caller]
        if legs:
            return legs[-1]
        await asyncio.wait_for(agent.answered.wait(), max(0.0, deadline - time.monotonic()))


async def _ended(leg: Any, timeout: float) -> bool:
    try:
        await asyncio.wait_for(leg.ended.wait(), timeout)
        return True
    except TimeoutError:
        return False


def test_recording_is_stereo_8k_with_the_prompts_on_the_right(server: Server) -> None:
    # Which channel holds the caller is pinned by tests/recordings/test_store.py.
    import wave

    calls = [c for c in server.store.recent_calls(50) if c.recording_path and c.ended_at]
    assert calls, "an earlier test in this module leaves a recording"
    with wave.open(calls[0].recording_path) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert np.abs(data[:, 1]).max() > 1000  # the hotline's prompts on the right


async def test_second_caller_hears_the_queue_announcement_until_the_agent_is_free(
    server: Server, ear: Any, voice: Any
) -> None:
    agent_voice = voice("Hello, this is the customer service desk.")
    async with (
        AgentPhone(port=AGENT_PORT, play_pcm=agent_voice) as agent,
        TestCaller() as first,
        TestCaller() as second,
    ):
        leg1 = await first.call(server.uri, from_user="1001")
        await first.listen(leg1, silence_s=1.5, timeout_s=40)
        first.send_dtmf(leg1, "0")
        await agent_leg_from(agent, "1001", 40)  # the only agent is now busy with the first caller

        leg2 = await second.call(server.uri, from_user="1002")
        await second.listen(leg2, silence_s=1.5, timeout_s=40)
        second.send_dtmf(leg2, "0")
        held = await heard_text(second, leg2, ear, timeout_s=30)
        assert "stay on the line" in held and "number 1" in held.replace("one", "1"), held
        assert not [leg for leg in agent.legs if leg.caller == "1002"]

        await leg1.hangup()  # the agent becomes free and the waiting caller is put through
        await agent_leg_from(agent, "1002", 30)
        assert "customer service" in await heard_text(second, leg2, ear, timeout_s=20)  # bridged
        await leg2.hangup()
    call2 = await asyncio.to_thread(closed_call, server, leg2.call_id)
    assert call2.outcome == "transferred" and call2.agent == "agent0"
    lines = server.store.get_transcript(call2.id)
    assert any(ln.speaker == "system" and "agents are busy" in ln.text for ln in lines)
