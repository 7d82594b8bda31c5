"""Measure CPU for N held calls with media both ways (not a test; run by hand):

    .venv/bin/python tests/telephony/measure_load.py --calls 100 --seconds 20

The hotline side (SipEndpoint; on_call reads every frame and plays a tone) runs in this process; the
callers (TestCaller, playing a tone and collecting everything heard) run in a child process, so each
side's CPU is measured on its own (process CPU time / wall time while all calls are held).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from telephony import AudioFrame, CallLeg, SipEndpoint, TestCaller
from telephony.testcaller import tone


def cpu() -> float:
    t = os.times()
    return t.user + t.system


async def caller(uri: str, calls: int, seconds: float) -> None:
    async with TestCaller(max_calls=calls + 10) as tc:
        legs = await asyncio.gather(*(tc.call(uri, timeout=20) for _ in range(calls)))
        sound = tone(440, seconds + 5)
        for leg in legs:
            leg.send_audio(sound)
        await asyncio.sleep(1.0)
        c0, w0 = cpu(), time.monotonic()
        await asyncio.sleep(seconds)
        c1, w1 = cpu(), time.monotonic()
        frames = [len(tc.heard_pcm(leg)) // 320 for leg in legs]
        await asyncio.gather(*(leg.hangup() for leg in legs))
    sys.stdout.write(json.dumps({"cpu": (c1 - c0) / (w1 - w0), "min_frames": min(frames)}) + "\n")


async def server(calls: int, seconds: float) -> None:
    ep = SipEndpoint("127.0.0.1", 0, max_calls=calls + 10)
    legs: list[CallLeg] = []
    prompt = tone(1000, seconds + 5)

    async def on_call(leg: CallLeg) -> None:
        legs.append(leg)
        leg.send_audio(prompt)
        n = 0
        while (item := await leg.recv()) is not None:
            if isinstance(item, AudioFrame):
                n += 1

    ep.on_call = on_call
    await ep.start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--role", "caller", "--uri", f"sip:hotline@127.0.0.1:{ep.port}",
        "--calls", str(calls), "--seconds", str(seconds), stdout=asyncio.subprocess.PIPE)
    all_up = asyncio.Event()
    ep_on_call = ep.on_call

    async def counting(leg: CallLeg) -> None:
        if len(legs) + 1 >= calls:
            all_up.set()
        await ep_on_call(leg)

    ep.on_call = counting
    await asyncio.wait_for(all_up.wait(), 60)
    await asyncio.sleep(1.0)
    f0 = sum(leg.frames_in for leg in legs)
    c0, w0 = cpu(), time.monotonic()
    await asyncio.sleep(seconds)
    c1, w1 = cpu(), time.monotonic()
    f1 = sum(leg.frames_in for leg in legs)
    out, _ = await proc.communicate()
    theirs = json.loads(out.decode().strip().splitlines()[-1])
    await ep.stop()
    print(f"nproc={os.cpu_count()} calls={calls} held={seconds:.0f}s")
    print(f"hotline side: {100 * (c1 - c0) / (w1 - w0):.1f}% of one core; "
          f"frames received {f1 - f0} of {calls * seconds * 50:.0f} expected "
          f"({100 * (f1 - f0) / (calls * seconds * 50):.1f}%), min per leg {min(leg.frames_in for leg in legs)}, "
          f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print(f"caller side:  {100 * theirs['cpu']:.1f}% of one core; min frames heard per leg {theirs['min_frames']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", default="server", choices=["server", "caller"])
    ap.add_argument("--uri", default="")
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.role == "caller":
        asyncio.run(caller(args.uri, args.calls, args.seconds))
    else:
        asyncio.run(server(args.calls, args.seconds))


if __name__ == "__main__":
    main()
