"""Measure how fast the caller hears a prompt go quiet when they talk over it (not a test; run by hand):

    .venv/bin/python tests/hotline/measure_barge_in_duck.py --runs 6

Real SIP calls into an in-process Hotline (the harness of tests/hotline/test_barge_in.py: espeak-ng
speech mixed over the live echo of the prompt). For each run, the same phrase is spoken over the menu
with barge_in.backchannel_ms 0 (the prompt stops when the detector fires) and 600 (the prompt is ducked
at once; a "yeah" said first must leave it playing). Printed: the time from when the caller sent the
frame holding the speech onset to when the first ducked-or-stopped frame reached the caller; p50/max.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import test_barge_in as tb

from asr import resample
from dialog import Say
from hotline.server import Hotline
from hotline.settings import DEFAULT_CONFIG, load_settings
from tts.espeak_backend import EspeakSynthesizer

PHRASES = ["I lost my card yesterday.", "No, I want to block my card.", "Agent please.", "What is my balance?",
           "I want to speak to an agent."]


def _ms(x: float | None) -> str:
    return "none" if x is None else f"{x * 1000:.0f} ms"


async def main(runs: int) -> None:
    synth = EspeakSynthesizer(speed=160)

    def voice(text: str) -> np.ndarray:
        pcm = resample(synth.synthesize(text, "en"), synth.sample_rate, 8000, gain=0.89)
        return np.frombuffer(pcm, "<i2").astype(np.float32)

    settings = load_settings(DEFAULT_CONFIG, sip={"host": "127.0.0.1", "port": 0, "max_loop_lag_ms": 10000},
                             data_dir=tempfile.mkdtemp(), queues=[{"name": "general", "agents": []}],
                             web={"enabled": False})
    hotline = Hotline(settings)
    await hotline.start()
    quiet: dict[int, list[float]] = {0: [], 600: []}
    stopped: list[float] = []
    kept = 0
    try:
        for i in range(runs):
            for ms in (0, 600):
                tb._backchannel_ms(hotline, ms)
                track = np.zeros(7 * 8000, np.float32)
                yeah = tb._mix(track, voice("yeah"), 1.0) if ms else None
                speech = tb._mix(track, voice(PHRASES[i % len(PHRASES)]), 2.6 + 0.37 * i)
                res = await tb._call(hotline, [Say(tb.MENU, "en", True)], track, after_s=1.5)
                states = tb._heard_states(res["prompt"], res["taps"].out, res["heard"])
                t0 = res["enqueued"][speech // 160]
                q = tb._quiet_at(states, t0)
                off = next((t for t, st, _ in states if t >= t0 and st == "off"), None)
                line = f"run {i} backchannel_ms={ms}: heard quiet after {_ms(None if q is None else q - t0)}"
                if q is not None:
                    quiet[ms].append(q - t0)
                if ms and yeah is not None:
                    ty = res["enqueued"][yeah // 160]
                    qy = tb._quiet_at(states, ty)
                    back = qy is not None and any(qy < t < t0 and st == "full" and rms > 300 for t, st, rms in states)
                    ok = back and all(st != "off" for t, st, _ in states if t < t0)
                    kept += ok
                    if off is not None:
                        stopped.append(off - t0)
                    line += f", stopped after {_ms(None if off is None else off - t0)}, 'yeah' kept the prompt: {ok}"
                print(line, flush=True)
    finally:
        await hotline.stop()
    for ms, v in quiet.items():
        if v:
            print(f"backchannel_ms={ms}: heard quiet p50 {_ms(statistics.median(v))} max {_ms(max(v))} "
                  f"({len(v)}/{runs} runs)")
    if stopped:
        print(f"backchannel_ms=600: stopped p50 {_ms(statistics.median(stopped))} max {_ms(max(stopped))}; "
              f"'yeah' kept the prompt in {kept}/{runs}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=6)
    asyncio.run(main(ap.parse_args().runs))
