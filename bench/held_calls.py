"""Concurrent held calls against the real `hotline serve`, media both ways, keypad mode (loopback only).

    .venv/bin/python bench/held_calls.py [--calls 50,100,200] [--seconds 15]

Starts `hotline serve` in its own process (own settings and data in a temporary folder, like
tests/support/e2e_server.py). For each step, a caller process (TestCaller, its own SIP stack) sets up
N calls at once and holds them: every leg sends RTP continuously (20 ms silence frames: the hotline's
endpointer runs VAD on every one) and presses "1" (opening hours, RFC 4733) every --key-every seconds,
so each call stays in the menu, the hotline answers each key with a prompt, and no speech recognition
runs. Over a --seconds window with all N calls up, it measures:

- hotline CPU (process CPU time / wall time, all threads, from /proc) and RSS, and per call;
- frames the callers received from the hotline vs expected (50 per second per call);
- keys the hotline understood (its transcript lines "[key 1]") vs keys pressed;
- calls that ended early.

Prints a markdown table (target: >= 200 held calls) and writes bench/results/held_calls.png (CPU and
memory vs calls; needs matplotlib). Each step is bounded by --step-limit seconds (default 30).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).resolve().parent)]

from sip_call_rate import loadavg, proc_cpu_seconds, proc_rss_mb, start_hotline  # noqa: E402
from support.e2e_server import Server, stop_server  # noqa: E402

TARGET_CALLS = 200
RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------------- caller process


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _say(kind: str, **data: Any) -> None:
    sys.stdout.write(json.dumps({"kind": kind, **data}) + "\n")
    sys.stdout.flush()


async def caller(uri: str, calls: int, seconds: float, key_every: float, seed: int, drain: float,
                 setup_rate: float = 0.0) -> None:
    from telephony import CallLeg, TestCaller

    rng = random.Random(seed)
    async with TestCaller(max_calls=calls + 10, rtp_ports=(40000, 50000)) as tc:
        t0 = time.monotonic()
        async def one(i: int) -> CallLeg:
            if setup_rate > 0:  # paced set-up: i / rate seconds after the first call
                await asyncio.sleep(i / setup_rate)
            return await tc.call(uri, from_user=f"1380000{i:04d}", timeout=20)

        results = await asyncio.gather(*(one(i) for i in range(calls)), return_exceptions=True)
        legs: list[CallLeg] = [r for r in results if not isinstance(r, BaseException)]
        failed = [repr(r)[:120] for r in results if isinstance(r, BaseException)]
        setup_s = time.monotonic() - t0
        pressed = {leg.call_id: 0 for leg in legs}

        async def keypad(leg: CallLeg) -> None:
            await asyncio.sleep(1.0 + rng.random() * key_every)  # staggered: not every leg at once
            while not leg.ended.is_set():
                tc.send_dtmf(leg, "1")
                pressed[leg.call_id] += 1
                await asyncio.sleep(key_every)

        pressers = [asyncio.create_task(keypad(leg)) for leg in legs]
        await asyncio.sleep(2.0)  # settle: greetings start, first keys go out
        heard0 = {leg.call_id: len(tc.heard_pcm(leg)) for leg in legs}
        out0 = sum(leg.frames_out for leg in legs)
        c0, w0 = _cpu(), time.monotonic()
        _say("window_start", calls=len(legs), failed=failed, setup_s=round(setup_s, 2))
        await asyncio.sleep(seconds)
        c1, w1 = _cpu(), time.monotonic()
        _say("window_end")
        window = w1 - w0
        heard = [(len(tc.heard_pcm(leg)) - heard0[leg.call_id]) // 320 for leg in legs]
        sent = sum(leg.frames_out for leg in legs) - out0
        early = [leg.end_reason for leg in legs if leg.ended.is_set()]
        for t in pressers:
            t.cancel()
        await asyncio.sleep(drain)  # keys still in flight reach the hotline's transcript before the hang-up
        await asyncio.gather(*(leg.hangup() for leg in legs), return_exceptions=True)
        _say("done", window_s=window, frames_heard=sum(heard), min_heard=min(heard, default=0), frames_sent=sent,
             expected=int(len(legs) * window * 50), ended_early=early, cpu=(c1 - c0) / window,
             call_ids=[leg.call_id for leg in legs], pressed=sum(pressed.values()))


# --------------------------------------------------------------------------------- bench driver


@dataclass
class Step:
    calls: int
    up: int
    setup_s: float
    cpu_pct: float
    rss_mb: float
    rss_per_call_kb: float
    heard: int
    expected: int
    min_heard_per_leg: int
    window_s: float
    keys_pressed: int
    keys_understood: int
    ended_early: int
    caller_cpu_pct: float
    load: str
    failed: list[str]


def _read_line(proc: subprocess.Popen[str], deadline: float) -> dict[str, Any]:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"caller process exited with {proc.poll()}")
        line = line.strip()
        if line.startswith("{"):
            return dict(json.loads(line))
    raise TimeoutError("caller process too slow")


def keys_understood(server: Server, call_ids: list[str]) -> int:
    store = server.store
    n = 0
    try:
        for cid in call_ids:
            call = store.find_by_sip_call_id(cid)
            if call is not None:
                n += sum(1 for ln in store.get_transcript(call.id) if ln.speaker == "caller" and ln.text == "[key 1]")
    finally:
        store.close()
    return n


def run_step(server: Server, calls: int, seconds: float, key_every: float, drain: float, limit: float,
             idle_rss: float, setup_rate: float = 0.0) -> Step:
    deadline = time.monotonic() + limit
    proc = subprocess.Popen(
        [sys.executable, __file__, "--role", "caller", "--uri", server.uri, "--calls", str(calls),
         "--seconds", str(seconds), "--key-every", str(key_every), "--drain", str(drain),
         "--setup-rate", str(setup_rate)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True, cwd=ROOT)
    pid = server.proc.pid
    try:
        load = loadavg()
        start = _read_line(proc, deadline)
        c0, w0 = proc_cpu_seconds(pid), time.monotonic()
        rss = proc_rss_mb(pid)
        while time.monotonic() < w0 + seconds - 0.5:  # sample RSS through the window, keep the peak
            time.sleep(0.5)
            rss = max(rss, proc_rss_mb(pid))
        _read_line(proc, deadline)
        c1, w1 = proc_cpu_seconds(pid), time.monotonic()
        done = _read_line(proc, deadline)
        proc.wait(max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(3.0)  # sessions write their closing records
    up = int(start["calls"])
    return Step(calls, up, float(start["setup_s"]), 100 * (c1 - c0) / (w1 - w0), rss,
                1024 * (rss - idle_rss) / max(1, up), int(done["frames_heard"]), int(done["expected"]),
                int(done["min_heard"]), float(done["window_s"]), int(done["pressed"]),
                keys_understood(server, list(done["call_ids"])), len(done["ended_early"]),
                100 * float(done["cpu"]), load, list(start["failed"]))


def plot(steps: list[Step], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    calls = [s.up for s in steps]
    fig, ax1 = plt.subplots(figsize=(7, 4.2))
    ax1.plot(calls, [s.cpu_pct for s in steps], "o-", color="tab:red", label="hotline CPU (% of one core)")
    ax1.set_xlabel("concurrent held calls (media both ways, keypad)")
    ax1.set_ylabel("CPU, % of one core", color="tab:red")
    ax1.axvline(TARGET_CALLS, color="grey", linestyle=":", label=f"target {TARGET_CALLS} calls")
    ax1.set_ylim(bottom=0)
    ax1.set_xlim(left=0)
    ax2 = ax1.twinx()
    ax2.plot(calls, [s.rss_mb for s in steps], "s--", color="tab:blue", label="hotline RSS (MB)")
    ax2.set_ylabel("RSS, MB", color="tab:blue")
    ax2.set_ylim(bottom=0)
    lines = ax1.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax1.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax1.legend(lines, labels, loc="lower right", fontsize=8)
    ax1.set_title(f"hotline serve: held calls (nproc={os.cpu_count()})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", default="bench", choices=["bench", "caller"])
    ap.add_argument("--uri", default="")
    ap.add_argument("--calls", default="50,100,200", help="concurrent calls per step, comma-separated")
    ap.add_argument("--seconds", type=float, default=12.0, help="measuring window per step, all calls up")
    ap.add_argument("--key-every", type=float, default=4.0, help="each caller presses 1 this often (s)")
    ap.add_argument("--step-limit", type=float, default=30.0, help="hard limit per step: setup + window + hang-up")
    ap.add_argument("--drain", type=float, default=5.0, help="seconds between the last key and the hang-up")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--setup-rate", type=float, default=50.0,
                    help="new calls per second while a step sets up (0: all at once; one worker sets up ~75/s and "
                         "answers 503 to a burst it cannot drain, see docs/SECURITY.md)")
    ap.add_argument("--plot", default=str(RESULTS / "held_calls.png"))
    args = ap.parse_args()
    if args.role == "caller":
        asyncio.run(caller(args.uri, int(args.calls), args.seconds, args.key_every, args.seed, args.drain,
                           args.setup_rate))
        return 0

    counts = [int(c) for c in args.calls.split(",") if c.strip()]
    if args.seconds + args.drain + 8 > args.step_limit:
        ap.error("--seconds leaves no time for setup and hang-up within --step-limit")
    tmp = Path(tempfile.mkdtemp(prefix="hotline-bench-held-"))
    print(f"starting hotline serve (data in {tmp}) ...", file=sys.stderr)
    server = start_hotline(tmp, sip__max_calls=max(counts) + 50)
    steps: list[Step] = []
    try:
        time.sleep(2.0)
        c0 = proc_cpu_seconds(server.proc.pid)
        time.sleep(3.0)
        idle_cpu = 100 * (proc_cpu_seconds(server.proc.pid) - c0) / 3.0
        idle_rss = proc_rss_mb(server.proc.pid)
        for n in counts:
            print(f"{n} calls ...", file=sys.stderr)
            steps.append(run_step(server, n, args.seconds, args.key_every, args.drain, args.step_limit, idle_rss,
                                  args.setup_rate))
            if server.proc.poll() is not None:
                print("hotline exited!", file=sys.stderr)
                break
        log = server.log()
        errors, tracebacks = log.count(" ERROR "), log.count("Traceback")
    finally:
        stop_server(server)
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n`hotline serve`, held calls with media both ways in keypad mode; `nproc` = {os.cpu_count()}; "
          f"target: >= {TARGET_CALLS} held calls, all frames delivered, every key understood.")
    print(f"Command: `.venv/bin/python bench/held_calls.py --calls {args.calls} --seconds {args.seconds:g} "
          f"--key-every {args.key_every:g}` (callers: TestCaller in a separate process; each leg streams 20 ms "
          f"RTP silence and presses 1 every {args.key_every:g} s, none in the last {args.drain:g} s before hanging up; "
          f"idle hotline: CPU {idle_cpu:.1f}%, RSS {idle_rss:.0f} MB)\n")
    print("| calls held | set up in s | hotline CPU (% of one core) | CPU per call | hotline RSS MB | RSS per call "
          "| frames heard by callers / expected | min per leg | keys understood / pressed | ended early "
          "| caller process CPU | load avg before |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in steps:
        print(f"| {s.up} of {s.calls} | {s.setup_s:.1f} | {s.cpu_pct:.0f}% | {s.cpu_pct / max(1, s.up):.2f}% "
              f"| {s.rss_mb:.0f} | {s.rss_per_call_kb:.0f} KB | {s.heard} / {s.expected} "
              f"({100 * s.heard / max(1, s.expected):.1f}%) | {s.min_heard_per_leg} of {s.window_s * 50:.0f} "
              f"| {s.keys_understood} / {s.keys_pressed} | {s.ended_early} | {s.caller_cpu_pct:.0f}% | {s.load} |")
        if s.failed:
            print(f"|   failed set-ups: {s.failed[:3]} |")
    print(f"\nhotline log over the whole run: {errors} ERROR lines, {tracebacks} tracebacks")
    try:
        plot(steps, Path(args.plot))
        print(f"plot: {args.plot}")
    except ImportError:
        print("matplotlib not installed: no plot (.venv/bin/pip install matplotlib)")
    ok = any(s.up >= TARGET_CALLS and s.ended_early == 0 and s.heard >= 0.98 * s.expected for s in steps)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
