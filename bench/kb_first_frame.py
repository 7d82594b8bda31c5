"""First-frame latency of a knowledge-base answer, without and with prerendering (issue #3 item 3).

    .venv/bin/python bench/kb_first_frame.py [--rounds 5] [--key 1]

For each round and each mode (tts.kb_prerender false, then true) an in-process Hotline starts on loopback
with the repository's configs (a fresh prompt cache), the project's TestCaller calls it, waits 1.5 s into
the greeting and presses --key (1: opening hours, a knowledge-base answer in the bank flow). Measured on
the hotline's side of the call: from the key reaching the hotline's leg (its DTMF listener) to the first
frame of the answer's audio leaving it (an out tap; the answer's frames are matched byte for byte, and
the position of the first loud one in the answer is subtracted). With prerendering on, the round waits
for the background prerender to finish before calling. Prints each figure, the median per mode and the
load average (figures taken while other processes use the 2 cores are noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from dialog import Say  # noqa: E402
from hotline.server import Hotline  # noqa: E402
from hotline.settings import DEFAULT_CONFIG, load_settings  # noqa: E402
from telephony import TestCaller  # noqa: E402

FRAME = 320


def _loud(pcm: bytes) -> bool:
    x = np.frombuffer(pcm, "<i2").astype(np.float32)
    return bool(x.size) and float(np.sqrt(np.mean(x * x))) > 300


async def one_round(prerender: bool, key: str) -> float:
    with tempfile.TemporaryDirectory(prefix="kbff-") as tmp:
        settings = load_settings(
            DEFAULT_CONFIG, sip={"host": "127.0.0.1", "port": 0, "max_loop_lag_ms": 10000}, data_dir=tmp,
            queues=[{"name": "general", "agents": []}], web={"enabled": False},
            tts={"kb_prerender": prerender, "kb_prerender_delay_s": 0},
        )
        h = Hotline(settings)
        await h.start()
        try:
            assert h.deps is not None
            pre = getattr(h, "kb_prerender", None)
            if prerender:
                assert pre is not None
                await asyncio.wait_for(pre.done.wait(), 120)
            conv = h.deps.engine.new_conversation("bench", "")
            conv.start()
            answer = next(a for a in conv.handle_dtmf(key) if isinstance(a, Say))
            out: list[tuple[float, bytes]] = []
            pressed: list[float] = []
            async with TestCaller() as tc:
                leg = await tc.call(f"sip:hotline@127.0.0.1:{h.port}")
                for _ in range(2000):
                    if h.sessions:
                        break
                    await asyncio.sleep(0.005)
                session = next(iter(h.sessions))
                session.leg.add_tap(lambda d, pcm: out.append((time.monotonic(), pcm)) if d == "out" else None)
                session.leg.dtmf_listeners.append(lambda digit: pressed.append(time.monotonic()))
                await asyncio.sleep(1.5)
                tc.send_dtmf(leg, key)
                for _ in range(300):
                    await asyncio.sleep(0.02)
                    if pressed and out and out[-1][0] > pressed[0] + 0.1 and len(out) > 10:
                        break
                await asyncio.sleep(0.6)
                await leg.hangup()
            pcm = await h.deps.prompts.render(answer.text, answer.lang)
        finally:
            await h.stop()
    frames = [pcm[i : i + FRAME].ljust(FRAME, b"\x00") for i in range(0, len(pcm), FRAME)]
    k = next(i for i, f in enumerate(frames) if _loud(f))
    sent = next(t for t, f in out if t > pressed[0] and f == frames[k])
    return sent - pressed[0] - k * 0.020


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--key", default="1")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    got: dict[bool, list[float]] = {False: [], True: []}
    for r in range(args.rounds):
        for mode in (False, True):
            ms = await one_round(mode, args.key) * 1000
            got[mode].append(ms)
            print(f"round {r + 1} kb_prerender={str(mode).lower():5} key {args.key} -> first answer frame {ms:6.1f} ms")
    for mode in (False, True):
        xs = got[mode]
        print(f"kb_prerender={str(mode).lower():5}: median {statistics.median(xs):.1f} ms, min {min(xs):.1f}, "
              f"max {max(xs):.1f} (n={len(xs)})")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    asyncio.run(main())
