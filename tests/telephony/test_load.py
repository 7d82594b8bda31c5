"""100 concurrent calls (our TestCaller legs against our endpoint) with media both ways for ~5 s."""

from __future__ import annotations

import asyncio

import pytest

from telephony import AudioFrame, CallLeg, SipEndpoint, TestCaller
from telephony.testcaller import tone

CALLS = 100


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_hundred_concurrent_calls_with_media_both_ways() -> None:
    ep = SipEndpoint("127.0.0.1", 0, max_calls=CALLS + 5, rtp_ports=(20000, 30000))
    legs: list[CallLeg] = []
    frames: dict[str, int] = {}
    prompt = tone(1000, 10.0)

    async def on_call(leg: CallLeg) -> None:
        legs.append(leg)
        frames[leg.call_id] = 0
        leg.send_audio(prompt)
        while (item := await leg.recv()) is not None:
            if isinstance(item, AudioFrame):
                frames[leg.call_id] += 1

    ep.on_call = on_call
    await ep.start()
    try:
        async with TestCaller(max_calls=CALLS + 5, rtp_ports=(40000, 50000)) as tc:
            ours = await asyncio.gather(*(tc.call(f"sip:load@127.0.0.1:{ep.port}", timeout=20) for _ in range(CALLS)))
            for leg in ours:
                leg.send_audio(tone(440, 10.0))
            await asyncio.sleep(1.0)
            start_in = {cid: n for cid, n in frames.items()}
            start_heard = {leg.call_id: len(tc.heard_pcm(leg)) // 320 for leg in ours}
            await asyncio.sleep(5.0)
            got_in = [frames[cid] - start_in[cid] for cid in start_in]
            got_heard = [len(tc.heard_pcm(leg)) // 320 - start_heard[leg.call_id] for leg in ours]
            assert len(legs) == CALLS and len(ep.calls) == CALLS
            # 5 s = 250 frames per leg and direction; allow for scheduling jitter on a busy 2-core box
            assert min(got_in) >= 225, sorted(got_in)[:10]
            assert min(got_heard) >= 225, sorted(got_heard)[:10]
            assert all(leg.codec == "PCMU" and not leg.ended.is_set() for leg in ours)
            await asyncio.gather(*(leg.hangup() for leg in ours))
            await asyncio.sleep(0.3)
            assert ep.calls == [] and all(leg.end_reason == "remote_bye" for leg in legs)
    finally:
        await ep.stop()
