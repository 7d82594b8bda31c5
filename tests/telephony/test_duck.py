"""CallLeg.duck(): the queued prompt plays quieter from the next 20 ms frame until unduck(), clear_audio()
or the end of the queue, heard over a real call on loopback (the barge-in/backchannel path uses it)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import numpy as np
import pytest

from telephony import CallLeg, TestCaller
from telephony.testcaller import tone

if TYPE_CHECKING:
    from conftest import Server

pytestmark = pytest.mark.timeout(30)


def _frame_db(pcm: bytes) -> np.ndarray:
    x = np.frombuffer(pcm[: len(pcm) - len(pcm) % 320], "<i2").astype(np.float64).reshape(-1, 160)
    return np.asarray(20 * np.log10(np.sqrt((x * x).mean(axis=1)) + 1e-9))


async def test_duck_lowers_the_prompt_by_the_gain_and_unduck_or_clear_restores_it(server: Server) -> None:
    steps: list[str] = []

    async def behaviour(leg: CallLeg) -> None:
        leg.send_audio(tone(1000, 3.0, amp=8000))
        await asyncio.sleep(0.8)
        leg.duck(-24)
        steps.append(f"ducked={leg.ducked}")
        await asyncio.sleep(0.6)
        leg.unduck()
        await asyncio.sleep(0.6)
        leg.duck(-24)
        await asyncio.sleep(0.2)
        leg.clear_audio()  # barge-in: the next prompt plays at full volume
        steps.append(f"after clear ducked={leg.ducked}")
        leg.send_audio(tone(1000, 0.5, amp=8000))
        await leg.ended.wait()

    server.behaviour = behaviour
    async with TestCaller() as tc:
        leg = await tc.call(server.uri)
        await asyncio.sleep(3.0)
        await leg.hangup()
        db = _frame_db(tc.heard_pcm(leg))
    assert steps == ["ducked=True", "after clear ducked=False"]
    loud = db > db.max() - 6
    full = float(np.median(db[loud]))
    quiet = db[(db < full - 12) & (db > full - 40)]
    # ~30 frames ducked at 0.8-1.4 s and ~10 at 2.0-2.2 s, within G.711's accuracy of -24 dB
    assert 30 <= quiet.size <= 50, quiet.size
    assert abs(float(np.median(quiet)) - (full - 24)) < 1.5, (full, np.median(quiet))
    # full volume before, between and after (the tone after clear_audio is not ducked)
    k = np.nonzero(loud)[0]
    assert k.size >= (0.8 + 0.6 + 0.5) / 0.02 - 5, k.size
    audible = db[db > full - 40]
    assert (audible[-20:] > full - 3).all(), audible[-20:]  # the tone queued after clear_audio: full volume


async def test_the_queue_running_dry_ends_the_duck_and_bad_gains_are_refused(server: Server) -> None:
    async def behaviour(leg: CallLeg) -> None:
        with pytest.raises(ValueError, match="duck gain"):
            leg.duck(6.0)
        with pytest.raises(ValueError, match="duck gain"):
            leg.duck(float("nan"))
        leg.send_audio(tone(1000, 0.3, amp=8000))
        leg.duck(-20)
        await leg.wait_played()
        assert not leg.ducked
        leg.send_audio(tone(1000, 0.3, amp=8000))  # the next prompt: full volume
        await leg.ended.wait()

    server.behaviour = behaviour
    async with TestCaller() as tc:
        leg = await tc.call(server.uri)
        await asyncio.sleep(1.2)
        await leg.hangup()
        db = _frame_db(tc.heard_pcm(leg))
    top = db.max()
    assert 12 <= int(((db < top - 14) & (db > top - 26)).sum()) <= 16  # 0.3 s at -20 dB
    assert 12 <= int((db > top - 3).sum()) <= 16  # then 0.3 s at full volume


async def test_unduck_with_a_ramp_rises_evenly_back_to_full_volume(server: Server) -> None:
    async def behaviour(leg: CallLeg) -> None:
        leg.send_audio(tone(1000, 2.0))
        leg.duck(-24)
        await asyncio.sleep(0.5)
        leg.unduck(ramp_ms=200)
        assert leg.ducked  # until full volume
        await asyncio.sleep(0.4)
        assert not leg.ducked
        await leg.ended.wait()

    server.behaviour = behaviour
    async with TestCaller() as tc:
        leg = await tc.call(server.uri)
        await asyncio.sleep(1.6)
        await leg.hangup()
        db = _frame_db(tc.heard_pcm(leg))
    audible = db[db > db.max() - 40]
    full = float(np.median(audible[-20:]))
    rising = audible[(audible > full - 22.5) & (audible < full - 1)]
    assert 7 <= rising.size <= 11, rising - full  # 9 steps of 2.4 dB, 20 ms each
    assert (np.diff(rising) > 0).all(), rising - full
