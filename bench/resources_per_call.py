"""CPU and memory of the real `hotline serve` per held call, and how both grow with the number of calls.

    .venv/bin/python bench/resources_per_call.py [--calls 0,25,50,100,150,200] [--seconds 8]

Starts `hotline serve` once (own settings and data in a temporary folder), then for each N holds N calls
with media both ways in keypad mode, exactly as bench/held_calls.py does (its caller process and its
step: every leg streams 20 ms RTP silence and presses 1 every --key-every seconds, each step bounded by
--step-limit). N = 0 is the idle hotline over the same window. Per step: the hotline process's CPU
(CPU time of all its threads / wall time, % of one core) and peak RSS, read from /proc; the marginal cost
per call is (value at N - value at 0) / N. Prints a markdown table and writes
bench/results/resources_per_call.png (matplotlib, Agg backend).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent)]

from held_calls import RESULTS, run_step  # noqa: E402
from sip_call_rate import loadavg, proc_cpu_seconds, proc_rss_mb, start_hotline  # noqa: E402
from support.e2e_server import stop_server  # noqa: E402


@dataclass
class Row:
    calls: int  # asked for
    up: int  # held through the window
    cpu_pct: float
    rss_mb: float
    frames_ok: float  # share of the frames the callers expected that they heard (1.0 for N = 0)
    keys: str
    load: str


def idle_row(pid: int, seconds: float) -> Row:
    load = loadavg()
    c0, w0 = proc_cpu_seconds(pid), time.monotonic()
    rss = proc_rss_mb(pid)
    while time.monotonic() < w0 + seconds:
        time.sleep(0.5)
        rss = max(rss, proc_rss_mb(pid))
    cpu = 100 * (proc_cpu_seconds(pid) - c0) / (time.monotonic() - w0)
    return Row(0, 0, cpu, rss, 1.0, "-", load)


def overloaded(row: Row) -> bool:
    """The step did not hold: its CPU figure is what the hotline got, not what it needed."""
    if row.calls == 0:
        return False
    understood, pressed = (int(x) for x in row.keys.split(" / "))
    return row.up < row.calls or row.frames_ok < 0.98 or understood < pressed


def per_call(row: Row, base: Row) -> tuple[float, float]:
    """(CPU % of one core, MB) per call above the idle hotline."""
    if row.up == 0:
        return 0.0, 0.0
    return (row.cpu_pct - base.cpu_pct) / row.up, (row.rss_mb - base.rss_mb) / row.up


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = rows[0]
    calls = [r.up for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    ax1.plot(calls, [r.cpu_pct for r in rows], "o-", color="tab:red", label="CPU, % of one core")
    ax1.set_xlabel("concurrent held calls (media both ways, keypad)")
    ax1.set_ylabel("hotline CPU, % of one core", color="tab:red")
    ax1b = ax1.twinx()
    ax1b.plot(calls, [r.rss_mb for r in rows], "s--", color="tab:blue", label="RSS, MB")
    ax1b.set_ylabel("hotline RSS, MB", color="tab:blue")
    for ax in (ax1, ax1b):
        ax.set_ylim(bottom=0)
    ax1.set_xlim(left=0)
    bad = [r for r in rows if overloaded(r)]
    if bad:
        ax1.plot([r.up for r in bad], [r.cpu_pct for r in bad], "kx", markersize=10,
                 label="overloaded: frames or keys short, calls not all up")
        ax1.legend(loc="lower right", fontsize=8)
    ax1.set_title("total")
    marginal = [(r.up, *per_call(r, base)) for r in rows if r.up]
    ax2.plot([m[0] for m in marginal], [m[1] for m in marginal], "o-", color="tab:red")
    ax2.set_xlabel("concurrent held calls")
    ax2.set_ylabel("CPU per call, % of one core", color="tab:red")
    ax2b = ax2.twinx()
    ax2b.plot([m[0] for m in marginal], [1024 * m[2] for m in marginal], "s--", color="tab:blue")
    ax2b.set_ylabel("RSS per call, KB", color="tab:blue")
    for ax in (ax2, ax2b):
        ax.set_ylim(bottom=0)
    ax2.set_xlim(left=0)
    ax2.set_title("per call, above the idle hotline")
    fig.suptitle(f"hotline serve: resources per held call (nproc={os.cpu_count()}, load before {rows[-1].load})",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", default="0,25,50,100,150,200", help="held calls per step, comma-separated")
    ap.add_argument("--seconds", type=float, default=8.0, help="measuring window per step, all calls up")
    ap.add_argument("--key-every", type=float, default=4.0, help="each caller presses 1 this often (s)")
    ap.add_argument("--drain", type=float, default=5.0, help="seconds between the last key and the hang-up")
    ap.add_argument("--step-limit", type=float, default=30.0, help="hard limit per step: setup + window + hang-up")
    ap.add_argument("--setup-rate", type=float, default=50.0, help="new calls per second while a step sets up")
    ap.add_argument("--plot", default=str(RESULTS / "resources_per_call.png"))
    args = ap.parse_args()
    counts = sorted({int(c) for c in args.calls.split(",") if c.strip()} | {0})
    if args.seconds + args.drain + 8 > args.step_limit:
        ap.error("--seconds leaves no time for setup and hang-up within --step-limit")
    tmp = Path(tempfile.mkdtemp(prefix="hotline-bench-res-"))
    print(f"starting hotline serve (data in {tmp}) ...", file=sys.stderr)
    server = start_hotline(tmp, sip__max_calls=max(counts) + 50)
    rows: list[Row] = []
    try:
        time.sleep(3.0)  # start-up work (prompt pre-rendering, model load) settles
        rows.append(idle_row(server.proc.pid, args.seconds))
        for n in counts[1:]:
            print(f"{n} calls ...", file=sys.stderr)
            s = run_step(server, n, args.seconds, args.key_every, args.drain, args.step_limit, rows[0].rss_mb,
                         args.setup_rate)
            rows.append(Row(n, s.up, s.cpu_pct, s.rss_mb, s.heard / max(1, s.expected),
                            f"{s.keys_understood} / {s.keys_pressed}", s.load))
            if server.proc.poll() is not None:
                print("hotline exited!", file=sys.stderr)
                break
    finally:
        stop_server(server)
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)

    base = rows[0]
    print(f"\n`hotline serve`, resources per held call (media both ways, keypad mode); `nproc` = {os.cpu_count()}.")
    print(f"Command: `.venv/bin/python bench/resources_per_call.py --calls {args.calls} --seconds {args.seconds:g}` "
          f"(callers as in bench/held_calls.py; CPU = process CPU time / wall time over a {args.seconds:g} s window, "
          "RSS = peak VmRSS, both from /proc; per call = (value - idle value) / calls)\n")
    print("| calls held | hotline CPU (% of one core) | hotline RSS MB | CPU per call | RSS per call "
          "| frames heard / expected | keys understood / pressed | load avg before |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        cpu1, mb1 = per_call(r, base)
        held = f"{r.up} of {r.calls}" if r.calls else "0 (idle)"
        held += " (overloaded)" if overloaded(r) else ""
        print(f"| {held} | {r.cpu_pct:.1f}% | {r.rss_mb:.0f} | {cpu1:.2f}% | {1024 * mb1:.0f} KB "
              f"| {100 * r.frames_ok:.1f}% | {r.keys} | {r.load} |")
    try:
        plot(rows, Path(args.plot))
        print(f"\nplot: {args.plot}")
    except ImportError:
        print("\nmatplotlib not installed: no plot (.venv/bin/pip install matplotlib)")
    return 0 if all(r.up == r.calls for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
