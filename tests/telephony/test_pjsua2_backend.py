"""The optional pjsua2 backend (telephony.pjsua2_backend) against our own asyncio stack.

pjsua2 allows one library instance per process, so every test shares one module-scoped Pjsua2Endpoint on a
module-scoped event loop; each test installs its own ``on_call`` behaviour. The endpoint is stopped (and the
library destroyed) at module teardown.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest
import pytest_asyncio

from telephony import AgentPhone, AudioFrame, CallFailed, CallLeg, DtmfDigit, SipEndpoint, TestCaller, bridge
from telephony.testcaller import dominant_hz, loud_part, tone

try:
    import pjsua2  # noqa: F401  (the optional dependency under test)
except ImportError as exc:
    pytest.skip(f"pjsua2 cannot be imported ({exc}); pip install pjsua2-python", allow_module_level=True)

from telephony.pjsua2_backend import Pjsua2Endpoint, Pjsua2Leg, Pjsua2Unavailable

pytestmark = [
    pytest.mark.slow,
    pytest.mark.interop,
    pytest.mark.timeout(60),
    pytest.mark.asyncio(loop_scope="module"),
]

FRAME = 320
REPO = Path(__file__).resolve().parents[2]


@dataclass
class PjServer:
    """What the shared endpoint's on_call saw; ``behaviour`` replaces the default play-and-record."""

    ep: Pjsua2Endpoint
    play: bytes = b""
    legs: list[Pjsua2Leg] = field(default_factory=list)
    heard: dict[str, bytearray] = field(default_factory=dict)
    digits: dict[str, list[DtmfDigit]] = field(default_factory=dict)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    behaviour: Callable[[Pjsua2Leg], Awaitable[None]] | None = None

    def reset(self) -> None:
        self.play = b""
        self.legs.clear()
        self.heard.clear()
        self.digits.clear()
        self.answered = asyncio.Event()
        self.behaviour = None

    async def on_call(self, leg: Pjsua2Leg) -> None:
        self.legs.append(leg)
        self.heard[leg.call_id] = bytearray()
        self.digits[leg.call_id] = []
        self.answered.set()
        if self.behaviour is not None:
            await self.behaviour(leg)
            return
        if self.play:
            leg.send_audio(self.play)
        await record(leg, self.heard[leg.call_id], self.digits[leg.call_id])

    @property
    def uri(self) -> str:
        return f"sip:hotline@127.0.0.1:{self.ep.port}"


async def record(leg: Pjsua2Leg, heard: bytearray, digits: list[DtmfDigit]) -> None:
    while (item := await leg.recv()) is not None:
        if isinstance(item, AudioFrame):
            assert len(item.pcm) == FRAME
            heard += item.pcm
        else:
            digits.append(item)


async def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared() -> AsyncIterator[PjServer]:
    # RTP above the kernel's ephemeral range (32768-60999) and away from the other tests' RTP ranges:
    # pjsua tries only 100 port pairs from the start of its range before failing the call with 500.
    ep = Pjsua2Endpoint("127.0.0.1", 0, max_calls=4, rtp_ports=(61000, 62000), user_agent="hotline-pjsua2-test")
    srv = PjServer(ep)
    ep.on_call = srv.on_call
    await ep.start()
    try:
        yield srv
    finally:
        await ep.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def pj(shared: PjServer) -> AsyncIterator[PjServer]:
    shared.reset()
    await wait_for(lambda: not shared.ep.calls, 5.0)  # the previous test's calls are gone
    yield shared
    for leg in list(shared.ep.calls):
        await leg.hangup()


async def test_testcaller_calls_pjsua2_audio_both_ways(pj: PjServer) -> None:
    pj.play = tone(440, 2.0)
    taps: dict[str, int] = {"in": 0, "out": 0}
    played_s: list[float] = []

    async def behaviour(leg: Pjsua2Leg) -> None:
        leg.add_tap(lambda direction, pcm: taps.__setitem__(direction, taps[direction] + 1))
        leg.send_audio(pj.play)
        assert leg.playing
        t0 = time.monotonic()
        await leg.wait_played()
        played_s.append(time.monotonic() - t0)
        await record(leg, pj.heard[leg.call_id], pj.digits[leg.call_id])

    pj.behaviour = behaviour
    async with TestCaller(rtp_ports=(40000, 40400)) as tc:
        leg = await tc.call(pj.uri, from_user="alice", timeout=5)
        await pj.answered.wait()
        await tc.play(leg, tone(1000, 1.5))
        await asyncio.sleep(1.0)
        pleg = pj.legs[0]
        assert pleg.caller == "alice" and pleg.called == "hotline" and pleg.codec in ("PCMU", "PCMA")
        assert pleg.sample_rate == 8000 and pleg.call_id == leg.call_id
        await leg.hangup()
        await asyncio.wait_for(pleg.ended.wait(), 3)
        caller_heard = loud_part(tc.heard_pcm(leg))
    assert len(caller_heard) >= 1.6 * 16000, len(caller_heard)
    assert abs(dominant_hz(caller_heard) - 440) < 15
    pj_heard = loud_part(bytes(pj.heard[pleg.call_id]))
    assert len(pj_heard) >= 1.2 * 16000, len(pj_heard)
    assert abs(dominant_hz(pj_heard) - 1000) < 15
    assert played_s and 1.8 < played_s[0] < 3.0  # paced by the media clock, not dumped at once
    assert taps["in"] > 100 and taps["out"] > 100
    assert pleg.end_reason == "remote_bye"


async def test_rfc4733_dtmf_both_ways(pj: PjServer) -> None:
    async def behaviour(leg: Pjsua2Leg) -> None:
        await asyncio.sleep(0.3)
        leg.send_dtmf("47")
        await record(leg, pj.heard[leg.call_id], pj.digits[leg.call_id])

    pj.behaviour = behaviour
    async with TestCaller(rtp_ports=(40400, 40800)) as tc:
        leg = await tc.call(pj.uri, timeout=5)
        await pj.answered.wait()
        await asyncio.sleep(0.2)
        tc.send_dtmf(leg, "159#")
        pleg = pj.legs[0]
        await wait_for(lambda: len(pj.digits[pleg.call_id]) >= 4 and len(tc.digits(leg)) >= 2, 5)
        leg.te_pt = None  # make our caller fall back to SIP INFO (application/dtmf-relay)
        tc.send_dtmf(leg, "*")
        await wait_for(lambda: len(pj.digits[pleg.call_id]) >= 5, 5)
        await leg.hangup()
    got = pj.digits[pleg.call_id]
    assert "".join(d.digit for d in got) == "159#*"
    assert [d.method for d in got] == ["rfc4733"] * 4 + ["info"]
    assert tc.digits(leg) == ["4", "7"]
    with pytest.raises(ValueError):
        pleg.send_dtmf("x")


async def test_dial_agent_phone_audio_both_ways(pj: PjServer) -> None:
    async with AgentPhone(play_pcm=tone(600, 3.0), rtp_ports=(50000, 50400)) as agent:
        leg = await pj.ep.dial(f"sip:agent7@127.0.0.1:{agent.port}", from_user="bank", timeout=5)
        assert isinstance(leg, Pjsua2Leg) and leg.called == "agent7" and leg.caller == "bank"
        aleg = await agent.wait_for_call(3)
        assert aleg.caller == "bank" and aleg.call_id == leg.call_id
        leg.send_audio(tone(1000, 1.5))
        heard = bytearray()
        digits: list[DtmfDigit] = []
        rec = asyncio.create_task(record(leg, heard, digits))
        await asyncio.sleep(2.0)
        await leg.hangup()
        await asyncio.wait_for(rec, 3)
        assert leg.end_reason == "local_hangup" and await leg.recv() is None
        await asyncio.wait_for(aleg.ended.wait(), 3)
        assert aleg.end_reason == "remote_bye"
        agent_heard = loud_part(agent.heard_pcm(aleg))
    we_heard = loud_part(bytes(heard))
    assert len(we_heard) >= 1.5 * 16000 and abs(dominant_hz(we_heard) - 600) < 15
    assert len(agent_heard) >= 1.2 * 16000 and abs(dominant_hz(agent_heard) - 1000) < 15


async def test_bridge_caller_to_agent_through_pjsua2(pj: PjServer) -> None:
    """The hotline's transfer path on this backend: answer, dial the agent, telephony.bridge() the two legs."""
    async with AgentPhone(play_pcm=tone(600, 3.0), rtp_ports=(50600, 51000)) as agent:

        async def transfer(leg: Pjsua2Leg) -> None:
            agent_leg = await pj.ep.dial(f"sip:agent@127.0.0.1:{agent.port}", from_user=leg.caller, timeout=5)
            try:  # bridge() is typed for CallLeg; Pjsua2Leg has the same surface (taps, dtmf_listeners, ...)
                await bridge(cast(CallLeg, leg), cast(CallLeg, agent_leg))
            finally:
                await agent_leg.hangup()

        pj.behaviour = transfer
        async with TestCaller(rtp_ports=(41600, 42000)) as tc:
            leg = await tc.call(pj.uri, from_user="carol", timeout=5)
            aleg = await agent.wait_for_call(5)
            assert aleg.caller == "carol"
            await asyncio.sleep(0.3)
            await tc.play(leg, tone(1000, 1.5))
            tc.send_dtmf(leg, "7")
            await wait_for(lambda: agent.digits(aleg) == ["7"], 3)
            await asyncio.sleep(0.5)
            await leg.hangup()
            await asyncio.wait_for(aleg.ended.wait(), 3)  # the bridge ended and the agent leg was hung up
            caller_heard = loud_part(tc.heard_pcm(leg))
            agent_heard = loud_part(agent.heard_pcm(aleg))
    assert len(caller_heard) >= 1.0 * 16000 and abs(dominant_hz(caller_heard) - 600) < 15
    assert len(agent_heard) >= 1.0 * 16000 and abs(dominant_hz(agent_heard) - 1000) < 15


async def test_dial_busy_raises_call_failed(pj: PjServer) -> None:
    busy = SipEndpoint("127.0.0.1", 0, max_calls=0, rtp_ports=(50400, 50600))

    async def never(leg: object) -> None:
        raise AssertionError("no call should be answered")

    busy.on_call = never
    await busy.start()
    try:
        with pytest.raises(CallFailed) as ei:
            await pj.ep.dial(f"sip:agent@127.0.0.1:{busy.port}", timeout=5)
        assert ei.value.status == 503  # our endpoint refuses over max_calls with 503 (docs/SECURITY.md)
    finally:
        await busy.stop()
    await wait_for(lambda: not pj.ep.calls, 3)


async def test_fifth_concurrent_call_gets_486(pj: PjServer) -> None:
    pj.play = tone(440, 4.0)
    async with TestCaller(rtp_ports=(40800, 41200)) as tc:
        legs = [await tc.call(pj.uri, timeout=5) for _ in range(4)]
        with pytest.raises(CallFailed) as ei:
            await tc.call(pj.uri, timeout=5)
        assert ei.value.status == 486
        with pytest.raises(CallFailed) as ei2:  # no slot for an outgoing call either
            await pj.ep.dial("sip:agent@127.0.0.1:9", timeout=2)
        assert ei2.value.status == 503
        await asyncio.sleep(1.0)
        for leg in legs:  # the four calls are unharmed
            assert not leg.ended.is_set()
            heard = loud_part(tc.heard_pcm(leg))
            assert len(heard) > 0.5 * 16000 and abs(dominant_hz(heard) - 440) < 20
        await legs[0].hangup()
        await wait_for(lambda: len(pj.ep.calls) == 3, 3)
        again = await tc.call(pj.uri, timeout=5)  # a freed slot is usable again
        assert not again.ended.is_set()
        for leg in [*legs[1:], again]:
            await leg.hangup()
    await wait_for(lambda: not pj.ep.calls, 3)
    assert all(leg.ended.is_set() for leg in pj.legs)


async def test_hangup_from_either_side(pj: PjServer) -> None:
    # 1) the caller hangs up: the pjsua2 leg ends and recv() drains to None
    async with TestCaller(rtp_ports=(41200, 41600)) as tc:
        leg = await tc.call(pj.uri, timeout=5)
        await pj.answered.wait()
        pleg = pj.legs[0]
        await asyncio.sleep(0.3)
        await leg.hangup()
        await asyncio.wait_for(pleg.ended.wait(), 3)
        assert pleg.end_reason == "remote_bye"
        while await asyncio.wait_for(pleg.recv(), 1) is not None:
            pass

        # 2) the pjsua2 side hangs up (on_call returns): the caller's leg ends
        pj.reset()

        async def short(leg: Pjsua2Leg) -> None:
            await asyncio.sleep(0.3)

        pj.behaviour = short
        leg2 = await tc.call(pj.uri, timeout=5)
        await asyncio.wait_for(leg2.ended.wait(), 3)
        assert leg2.end_reason == "remote_bye"
        pleg2 = pj.legs[0]
        assert pleg2.ended.is_set() and pleg2.end_reason == "local_hangup"
        while await asyncio.wait_for(pleg2.recv(), 1) is not None:  # drains what was buffered, then None
            pass
        assert await asyncio.wait_for(pleg2.recv(), 1) is None
        pleg2.send_audio(tone(440, 0.1))  # no-ops after the end
        assert not pleg2.playing
        await pleg2.hangup()


async def test_one_library_per_process(pj: PjServer) -> None:
    with pytest.raises(RuntimeError, match="one library instance per process"):
        await Pjsua2Endpoint("127.0.0.1", 0).start()
    assert pj.ep.port > 0  # the shared endpoint is untouched


async def test_port_in_use_is_an_oserror() -> None:
    code = (
        "import asyncio, socket\n"
        "from telephony.pjsua2_backend import Pjsua2Endpoint\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0))\n"
        "async def main():\n"
        "    ep = Pjsua2Endpoint('127.0.0.1', s.getsockname()[1])\n"
        "    try:\n        await ep.start()\n    except OSError as e:\n        print('OSERR', e)\n"
        "    await Pjsua2Endpoint('127.0.0.1', 0).start()  # the failed start left no instance behind\n"
        "    print('RESTARTED')\n"
        "asyncio.run(main())\n"
        "import os; os._exit(0)\n"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=str(REPO),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    text = out.decode()
    assert "OSERR pjsua2 could not start on udp 127.0.0.1:" in text and "RESTARTED" in text, text


async def test_forgotten_stop_does_not_hang_the_process_at_exit() -> None:
    code = (
        "import asyncio\n"
        "from telephony.pjsua2_backend import Pjsua2Endpoint\n"
        "from telephony import TestCaller\n"
        "async def main():\n"
        "    ep = Pjsua2Endpoint('127.0.0.1', 0)\n"
        "    async def on_call(leg):\n        await asyncio.sleep(30)\n"
        "    ep.on_call = on_call\n"
        "    await ep.start()\n"
        "    tc = TestCaller(rtp_ports=(42000, 42400))\n"
        "    await tc.start()\n"
        "    await tc.call(f'sip:hotline@127.0.0.1:{ep.port}', timeout=5)\n"
        "    print('CALL UP', flush=True)\n"
        "asyncio.run(main())  # no ep.stop(): the atexit hook destroys the library\n"
    )
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=str(REPO),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    text = out.decode()
    assert "CALL UP" in text and proc.returncode == 0, text
    assert time.monotonic() - t0 < 15


async def test_import_telephony_does_not_need_pjsua2() -> None:
    code = (
        "import sys; sys.modules['pjsua2'] = None\n"
        "import telephony, telephony.pjsua2_backend as b\n"
        "try:\n    b.Pjsua2Endpoint('127.0.0.1', 0)\nexcept b.Pjsua2Unavailable as e:\n    print('ERR', e)\n"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=str(REPO),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    text = out.decode()
    assert proc.returncode == 0 and "ERR" in text and "pip install pjsua2-python" in text, text
    assert issubclass(Pjsua2Unavailable, ImportError)


async def test_duck_lowers_the_queued_prompt_until_unduck_clear_or_drain() -> None:
    """The session ducks a prompt while it judges a possible backchannel (hotline/session.py): the pjsua2 leg
    must offer the same duck/unduck/ducked surface as the own stack's CallLeg."""
    import numpy as np

    leg = Pjsua2Leg(cast(Pjsua2Endpoint, None), call_id="c", caller="a", called="b", is_uas=True)
    loud = (np.full(160, 8000, dtype="<i2")).tobytes()
    leg.send_audio(loud * 3)
    with pytest.raises(ValueError):
        leg.duck(6.0)
    leg.duck(-24.0)
    assert leg.ducked
    pcm, drained = leg._next_out()
    assert pcm is not None and not drained
    assert int(np.frombuffer(pcm, "<i2")[0]) == (8000 * round(32768 * 10 ** (-24 / 20))) >> 15  # about -24 dB
    leg.unduck(ramp_ms=200)
    pcm, _ = leg._next_out()
    assert pcm == loud and not leg.ducked
    leg.duck()
    pcm, drained = leg._next_out()  # the last frame: the duck ends with the prompt
    assert drained and pcm != loud and not leg.ducked
    leg.send_audio(loud)
    leg.duck()
    leg.clear_audio()
    assert not leg.ducked and leg._next_out() == (None, False)
