"""Call-setup rate of the real `hotline serve` under `sipp -sn uac`, on 127.0.0.1 only.

    .venv/bin/python bench/sip_call_rate.py [--rates 50,100,200,300] [--seconds 10] [--hold-ms 500]

Starts `hotline serve` in its own process (own settings file and data directory in a temporary folder,
as tests/support/e2e_server.py does), then for each offered rate runs
`sipp -sn uac 127.0.0.1:<port> -r <rate> -m <rate*seconds> -d <hold-ms>` and prints a markdown table:
offered rate, calls completed / failed (by sipp's count), achieved calls/s, mean setup time, and the
hotline process's CPU (its own CPU time / wall time over the sipp run, from /proc) and RSS.

What it measures: SIP signalling plus what the hotline does per call (a call session, a database
record, the greeting prompt played as RTP, the dialog waiting for input). sipp's built-in uac scenario
sends no RTP, so no speech recognition runs: this is the signalling rate, not a speech-load test.
Bounded: at most --max-calls calls per step, every sipp run is killed after its own time limit.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.e2e_server import Server, start_server, stop_server, write_config  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_RATE = 200.0


# --------------------------------------------------------------------------------- /proc helpers (Linux)


def proc_cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15 of stat)


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def free_udp_port(even: bool = False) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not even or port % 2 == 0:
            return port
    raise OSError("no free UDP port")


def start_hotline(tmp: Path, **overrides: object) -> Server:
    """`hotline serve` with the repository's configs, SIP on a free port, data in ``tmp``."""
    cfg = write_config(tmp, agent_ports=[free_udp_port()], **overrides)
    return start_server(cfg, tmp / "var")


def log_problems(server: Server, start: int = 0) -> tuple[int, int, int]:
    """(ERROR lines, tracebacks, bytes read) in the hotline's log from byte ``start``."""
    text = server.log_path.read_bytes()[start:].decode(errors="replace")
    return len(re.findall(r" ERROR ", text)), text.count("Traceback"), start + len(text.encode())


def refused_503(server: Server, start: int, end: int) -> int:
    """INVITEs the hotline refused with 503 (overload: loop lag or max_calls) between two log offsets."""
    text = server.log_path.read_bytes()[start:end].decode(errors="replace")
    return sum(int(n) for n in re.findall(r"refused (\d+) new calls in the last second with 503", text))


# --------------------------------------------------------------------------------- sipp


@dataclass
class Step:
    rate: float
    calls: int
    ok: int
    failed: int
    achieved: float
    setup: str
    retrans: int
    cpu_pct: float
    rss_mb: float
    sipp_cpu_pct: float
    wall_s: float
    errors: int
    rc: int
    load: str
    refused: int = 0


def _buckets(row: dict[str, str]) -> str:
    """INVITE -> 200 OK time from sipp's ResponseTimeRepartition1 buckets: share under 10 ms, worst bucket."""
    counts = [(k.split("_", 1)[1], int(v or 0)) for k, v in row.items()
              if k.startswith("ResponseTimeRepartition1_") and (v or "").strip().isdigit()]
    total = sum(n for _, n in counts)
    if not total:
        return "?"
    fast = sum(n for b, n in counts if b == "<10")
    worst = [b for b, n in counts if n][-1]
    return f"{100 * fast / total:.0f}% <10 ms, worst {worst} ms"


def run_sipp(server: Server, rate: float, calls: int, hold_ms: int, workdir: Path) -> Step:
    port, media = free_udp_port(), free_udp_port(even=True)
    stats = workdir / f"stats_{int(rate)}.csv"
    limit = calls / rate + hold_ms / 1000 + 30
    cmd = ["sipp", "-sn", "uac", f"127.0.0.1:{server.port}", "-i", "127.0.0.1", "-p", str(port), "-mp", str(media),
           "-r", str(rate), "-m", str(calls), "-d", str(hold_ms), "-l", str(max(100, int(rate * 3))),
           "-nostdin", "-timeout", f"{int(limit)}s", "-timeout_error", "-trace_stat", "-stf", str(stats), "-fd", "1"]
    pid = server.proc.pid
    c0, w0 = proc_cpu_seconds(pid), time.monotonic()
    ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = loadavg()
    try:
        out = subprocess.run(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=limit + 10, check=False)
        rc = out.returncode
    except subprocess.TimeoutExpired:
        rc = -9
    c1, w1 = proc_cpu_seconds(pid), time.monotonic()
    ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sipp_cpu = (ch1.ru_utime + ch1.ru_stime) - (ch0.ru_utime + ch0.ru_stime)
    ok = failed = 0
    setup = "?"
    retrans = 0
    rows = list(csv.DictReader(stats.open(), delimiter=";")) if stats.exists() else []
    if rows:
        last = rows[-1]
        ok = int(last.get("SuccessfulCall(C)", 0) or 0)
        failed = int(last.get("FailedCall(C)", 0) or 0)
        setup = _buckets(last)
        retrans = int(last.get("Retransmissions(C)", 0) or 0)
    wall = w1 - w0
    # calls were offered over wall - hold time; achieved = completed calls over that window
    window = max(1e-3, wall - hold_ms / 1000)
    return Step(rate, calls, ok, failed, ok / window, setup, retrans, 100 * (c1 - c0) / wall, proc_rss_mb(pid),
                100 * sipp_cpu / wall, wall, 0, rc, load)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="50,100,200,300", help="offered calls/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds of calls per rate (calls = rate * seconds)")
    ap.add_argument("--hold-ms", type=int, default=500, help="sipp -d: how long each call is held before BYE")
    ap.add_argument("--max-calls", type=int, default=3000, help="upper bound of calls per step")
    ap.add_argument("--sip-max-calls", type=int, default=1000, help="the hotline's sip.max_calls for the run")
    ap.add_argument("--max-cps", type=float, default=0, help="the hotline's sip.max_cps (0: off): calls/s admitted")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (hotline log, sipp stats)")
    args = ap.parse_args()
    if shutil.which("sipp") is None:
        print("sipp not found (Debian package sip-tester)", file=sys.stderr)
        return 2
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="hotline-bench-rate-"))
    print(f"starting hotline serve (data in {tmp}) ...", file=sys.stderr)
    # per-source INVITE limit off: sipp is one source, and this measures capacity, not the flood guard
    server = start_hotline(tmp, sip__max_calls=args.sip_max_calls, sip__invite_rate=1e6, sip__invite_burst=1e6,
                           sip__max_cps=args.max_cps)
    steps: list[Step] = []
    try:
        time.sleep(1.0)
        _, _, pos = log_problems(server)
        for rate in rates:
            calls = min(args.max_calls, max(1, int(rate * args.seconds)))
            print(f"rate {rate:g}/s: {calls} calls ...", file=sys.stderr)
            step = run_sipp(server, rate, calls, args.hold_ms, tmp)
            time.sleep(3.0)  # let the sessions write their closing records
            before = pos
            errors, tracebacks, pos = log_problems(server, pos)
            step.errors = errors + tracebacks
            step.refused = refused_503(server, before, pos)
            steps.append(step)
            if server.proc.poll() is not None:
                print("hotline exited!", file=sys.stderr)
                break
    finally:
        stop_server(server)
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n`hotline serve` call-setup rate, `nproc` = {os.cpu_count()}, sipp {args.hold_ms} ms per call; "
          f"target: >= {TARGET_RATE:.0f} calls/s with 0 failed.")
    print("Command per step: `sipp -sn uac 127.0.0.1:<hotline port> -i 127.0.0.1 -p <port> -mp <port> "
          f"-r <rate> -m <rate*{args.seconds:g}> -d {args.hold_ms} -l <3*rate> -nostdin -timeout <t> -timeout_error`")
    print("Signalling rate only: sipp's uac scenario sends no RTP (the hotline still answers, records the call "
          "and plays its greeting as RTP; no speech recognition runs).\n")
    print("| offered calls/s | calls | completed | failed | achieved calls/s | INVITE->200 | retransmissions"
          " | refused 503 (overload) | hotline CPU (% of one core) | hotline CPU ms per call"
          " | hotline RSS MB | sipp CPU % | hotline log errors"
          " | load avg before | meets target |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in steps:
        meets = "yes" if s.failed == 0 and s.ok == s.calls and s.achieved >= min(TARGET_RATE, s.rate) * 0.95 else "no"
        if s.rate < TARGET_RATE:
            meets += " (below target rate)"
        print(f"| {s.rate:g} | {s.calls} | {s.ok} | {s.failed} | {s.achieved:.0f} | {s.setup} | {s.retrans} "
              f"| {s.refused} | {s.cpu_pct:.0f}% | {s.cpu_pct * s.wall_s * 10 / max(1, s.ok):.1f} "
              f"| {s.rss_mb:.0f} | {s.sipp_cpu_pct:.0f}% | {s.errors} | {s.load} "
              f"| {meets} |")
    bad = [s for s in steps if s.rate >= TARGET_RATE and (s.failed or s.ok < s.calls)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
