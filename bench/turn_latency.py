"""Turn latency against the real `hotline serve` (issue #7 item 4), loopback only.

    .venv/bin/python bench/turn_latency.py [--calls 1,10,20] [--turns 3]

Starts `hotline serve` in its own process with the repository's configs and the default speech stack
(webrtcvad endpointer, whisper tiny.en, espeak-ng), then for each N places N concurrent calls from the
project's TestCaller (its own SIP stack, in this process). Each caller waits for the greeting, then
for --turns turns speaks a banking question (espeak-ng en-us at 8 kHz, bench/speech_quick.py's
phrases) and listens to the whole answer. Starts are staggered over --stagger seconds.

The figure is the hotline's own per-turn measurement (hotline/turn_latency.py, its log line
"turn latency N ms"): from the endpointer deciding the caller had finished (after its silence_ms of
quiet) to the first RTP frame of the reply leaving. The caller's view is printed beside it: from the
last frame of the question it sent to the first loud frame it heard back (= endpointer silence +
turn latency + transport).

Target (issue #7): p50 <= 300 ms and p95 <= 600 ms at 20 calls. The header prints the load average:
figures taken while other processes use the 2 cores are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).resolve().parent)]

from sip_call_rate import loadavg, proc_cpu_seconds, start_hotline  # noqa: E402
from speech_quick import PHRASES_EN  # noqa: E402
from support.e2e_server import Server, stop_server  # noqa: E402

from asr import resample  # noqa: E402
from tts.espeak_backend import EspeakSynthesizer  # noqa: E402

TARGET_P50_MS, TARGET_P95_MS = 300.0, 600.0
# Questions the bank flow answers from its knowledge base (no transfer, no identification form: a
# question that starts a card-number form would put the caller's next questions in digit mode).
QUESTIONS = [p for p in PHRASES_EN if not re.search(r"agent|lost|stolen|block|balance|loan|Transfer", p)] + [
    "Where is the nearest branch?",
    "I would like to open a new account.",
    "What is the exchange rate for euros?",
]
TURN_RE = re.compile(
    r"call (\S+): turn latency (\d+) ms \(recognition (-?\d+), dialog (-?\d+), synthesis (-?\d+), first frame (-?\d+)\)"
)
LOUD = 300.0  # rms: the caller hears the reply start


@dataclass
class Result:
    calls: int
    up: int = 0
    turns: list[tuple[float, float, float, float, float]] = field(default_factory=list)  # total, parts
    perceived: list[float] = field(default_factory=list)  # caller's view, ms
    spoken: int = 0
    failed: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    hotline_cores: float = 0.0  # the hotline process's CPU time / wall time over the step
    load: str = ""
    speculative_used: int = 0  # asr/speculative.py: decodes started at a pause that became the transcript
    speculative_wasted: int = 0  # ... discarded because the caller went on speaking


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, round(q * (len(v) - 1)))]


def synthesise(texts: list[str]) -> list[bytes]:
    synth = EspeakSynthesizer(speed=150)
    return [resample(synth.synthesize(t, "en"), synth.sample_rate, 8000, gain=0.89) for t in texts]


async def run_calls(uri: str, n: int, turns: int, audio: list[bytes], stagger: float, seed: int,
                    result: Result) -> None:
    from telephony import CallLeg, TestCaller

    rng = random.Random(seed)
    async with TestCaller(max_calls=n + 10, rtp_ports=(30000, 39999)) as tc:

        async def one(i: int) -> None:
            await asyncio.sleep(rng.uniform(0, stagger))
            try:
                leg: CallLeg = await tc.call(uri, from_user=f"1390000{i:04d}", timeout=20)
            except Exception as exc:
                result.failed.append(f"call {i}: {exc!r}"[:160])
                return
            result.up += 1
            heard_at: list[float] = []
            armed = [False]

            def tap(direction: str, pcm: bytes) -> None:  # the first loud frame after the question
                if direction == "in" and armed[0]:
                    x = np.frombuffer(pcm, "<i2").astype(np.float32)
                    if x.size and float(np.sqrt(np.mean(x * x))) > LOUD:
                        armed[0] = False
                        heard_at.append(time.monotonic())

            leg.add_tap(tap)
            try:
                await tc.listen(leg, silence_s=1.0, timeout_s=30)  # the greeting
                for k in range(turns):
                    if leg.ended.is_set():
                        break
                    pcm = audio[(i + k) % len(audio)]
                    await tc.play(leg, pcm + bytes(320))  # the question, then one frame of silence
                    sent = time.monotonic()
                    heard_at.clear()
                    armed[0] = True
                    result.spoken += 1
                    await tc.listen(leg, silence_s=1.2, timeout_s=40)  # the whole answer
                    armed[0] = False
                    if heard_at:
                        result.perceived.append((heard_at[0] - sent) * 1000)
            finally:
                leg.remove_tap(tap)
                await leg.hangup()

        await asyncio.gather(*(one(i) for i in range(n)))


def step(server: Server, n: int, turns: int, audio: list[bytes], stagger: float) -> Result:
    start = server.log_path.stat().st_size
    res = Result(n, load=loadavg())
    t, cpu0 = time.monotonic(), proc_cpu_seconds(server.proc.pid)
    asyncio.run(run_calls(server.uri, n, turns, audio, stagger, seed=n, result=res))
    time.sleep(0.5)  # the last log lines
    res.wall_s = time.monotonic() - t
    res.hotline_cores = (proc_cpu_seconds(server.proc.pid) - cpu0) / res.wall_s
    text = server.log_path.read_bytes()[start:].decode(errors="replace")
    res.speculative_used = text.count("speculative decode used")
    res.speculative_wasted = text.count("speculative decode discarded")
    for m in TURN_RE.finditer(text):
        res.turns.append(tuple(float(g) for g in m.groups()[1:]))  # type: ignore[arg-type]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", default="1,10,20")
    ap.add_argument("--turns", type=int, default=3, help="questions per call")
    ap.add_argument("--stagger", type=float, default=20.0,
                    help="call starts spread at random over this many seconds (about one greeting + turn)")
    ap.add_argument("--keep", action="store_true", help="keep the hotline's data folder (log, records)")
    args = ap.parse_args()
    counts = [int(c) for c in args.calls.split(",")]
    print(f"load average at start: {loadavg()}  ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    audio = synthesise(QUESTIONS)
    tmp = Path(tempfile.mkdtemp(prefix="turn-latency-"))
    server = start_hotline(tmp, sip__max_calls=max(counts) + 20)
    rows: list[Result] = []
    try:
        for n in counts:
            rows.append(step(server, n, args.turns, audio, args.stagger))
    finally:
        stop_server(server)
    cmd = f"python bench/turn_latency.py --calls {args.calls} --turns {args.turns} --stagger {args.stagger:g}"
    print("## Turn latency: endpointer's end-of-turn decision -> first RTP frame of the reply "
          f"(target at 20 calls: p50 <= {TARGET_P50_MS:.0f} ms, p95 <= {TARGET_P95_MS:.0f} ms)\n")
    print("| N calls | turns | p50 ms | p95 ms | max ms | target | met | recognition p50 ms | dialog p50 ms "
          "| synthesis p50 ms | first frame p50 ms | caller hears reply p50 ms | speculative decodes used/wasted "
          "| hotline CPU cores | load (1/5/15 min) | command |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        tot = [t[0] for t in r.turns]
        parts = [statistics.median([t[i] for t in r.turns]) if r.turns else float("nan") for i in range(1, 5)]
        p50, p95 = pct(tot, 0.5), pct(tot, 0.95)
        met = "yes" if p50 <= TARGET_P50_MS and p95 <= TARGET_P95_MS else "no"
        target = f"p50 <= {TARGET_P50_MS:.0f}, p95 <= {TARGET_P95_MS:.0f}" + (" (set at 20)" if r.calls != 20 else "")
        print(f"| {r.calls} ({r.up} up) | {len(tot)} of {r.spoken} spoken | {p50:.0f} | {p95:.0f} "
              f"| {max(tot, default=float('nan')):.0f} | {target} | {met} | {parts[0]:.0f} | {parts[1]:.0f} "
              f"| {parts[2]:.0f} | {parts[3]:.0f} | {pct(r.perceived, 0.5):.0f} "
              f"| {r.speculative_used}/{r.speculative_wasted} | {r.hotline_cores:.2f} | {r.load} | `{cmd}` |")
        for f in r.failed[:3]:
            print(f"  failed: {f}")
    print("\n(caller hears reply: from the end of the question audio it sent, espeak-ng's trailing silence "
          "included, to the first loud frame back: the endpointer's silence_ms + turn latency + transport.)")
    print(f"load average at end: {loadavg()}; hotline log: {server.log_path}")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
