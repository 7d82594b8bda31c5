"""Call-setup rate of the real `hotline serve` under `sipp -sn uac`, on 127.0.0.1 only.

    .venv/bin/python bench/sip_call_rate.py [--rates 50,100,200,300] [--seconds 10] [--hold-ms 500]
    .venv/bin/python bench/sip_call_rate.py --workers 2      # two `hotline serve` behind kamailio's dispatcher

Starts `hotline serve` in its own process (own settings file and data directory in a temporary folder,
as tests/support/e2e_server.py does), then for each offered rate runs
`sipp -sn uac 127.0.0.1:<port> -r <rate> -m <rate*seconds> -d <hold-ms>` and prints a markdown table:
offered rate, calls completed / failed (by sipp's count), achieved calls/s, mean setup time, and the
hotline process's CPU (its own CPU time / wall time over the sipp run, from /proc) and RSS.

With --workers N, N `hotline serve` processes (each its own SIP port, RTP range, node name and SQLite file)
run behind one Kamailio (tests/support/kamailio.py: the dispatcher config of the distributed-mode test,
round robin, record-route), and sipp calls Kamailio with bench/sipp_uac_rr.xml (the uac scenario whose ACK
and BYE follow the route set); hotline CPU is the sum over the workers.

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

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.e2e_server import Server, start_server, stop_server, write_config  # noqa: E402
from support.kamailio import Kamailio  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_RATE = 200.0


# --------------------------------------------------------------------------------- /proc helpers (Linux)


def proc_cpu_seconds(pid: int, thread: int | None = None) -> float:
    """user + system CPU time of a process (all its threads), or of one of its threads, in seconds."""
    with open(f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15 of stat)


def group_cpu_seconds(pgid: int) -> float:
    """user + system CPU time of every live process in a process group (kamailio forks its children)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # pgrp (field 5 of stat)
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


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
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = write_config(tmp, agent_ports=[free_udp_port()], **overrides)
    return start_server(cfg, tmp / "var")


def start_workers(tmp: Path, n: int, sip: dict[str, object]) -> tuple[list[Server], Kamailio]:
    """n `hotline serve` workers (own SIP port, RTP range, node name, SQLite file) behind one Kamailio."""
    from support.kamailio import free_udp_port as kam_port  # a port free now, for a worker's fixed sip.port

    ports: list[int] = []
    while len(ports) < n:
        if (port := kam_port()) not in ports:
            ports.append(port)
    span = 20000 // n
    servers: list[Server] = []
    kam = Kamailio(ports)
    try:
        for i, port in enumerate(ports):
            rtp_min = 20000 + i * span
            servers.append(start_hotline(tmp / f"w{i + 1}", node_name=f"w{i + 1}", sip={
                **sip, "host": "127.0.0.1", "port": port, "rtp_port_min": rtp_min, "rtp_port_max": rtp_min + span - 2}))
        kam.start()
    except BaseException:
        for srv in servers:
            stop_server(srv)
        kam.close()
        raise
    return servers, kam


def wait_idle(pids: list[int], limit_s: float = 30.0, busy: float = 0.1) -> float:
    """Waits (at most limit_s) until the processes use under `busy` of a core over 0.5 s: start-up work
    (prompt prerendering, the knowledge answers rendered in the background) is not counted in a step.
    Returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        c0 = sum(proc_cpu_seconds(pid) for pid in pids)
        time.sleep(0.5)
        if sum(proc_cpu_seconds(pid) for pid in pids) - c0 < busy * 0.5:
            break
    return time.monotonic() - t0


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
    front_cpu_pct: float | None = None  # kamailio (--workers)
    loop_cpu_s: float = 0.0  # CPU time of the workers' main (event loop) threads over the step


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


def start_spy(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    """py-spy (threads on CPU, raw folded stacks, thread first) on the hotline for a step; None without it."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy not found: no profile", file=sys.stderr)
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", "200",
                             "--threads", "--nonblocking", "--format", "raw", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_sipp(servers: list[Server], target: int, rate: float, calls: int, hold_ms: int, workdir: Path,
             spy_dir: Path | None = None, front: Kamailio | None = None) -> Step:
    """One step: sipp calls 127.0.0.1:<target> (the hotline, or the Kamailio in front of the workers)."""
    port, media = free_udp_port(), free_udp_port(even=True)
    stats = workdir / f"stats_{int(rate)}.csv"
    limit = calls / rate + hold_ms / 1000 + 30
    # through Kamailio: the uac scenario with the route set kept (ACK and BYE follow Record-Route)
    scenario = ["-sf", str(ROOT / "bench" / "sipp_uac_rr.xml")] if front is not None else ["-sn", "uac"]
    cmd = ["sipp", *scenario, f"127.0.0.1:{target}", "-i", "127.0.0.1", "-p", str(port), "-mp", str(media),
           "-r", str(rate), "-m", str(calls), "-d", str(hold_ms), "-l", str(max(100, int(rate * 3))),
           "-nostdin", "-timeout", f"{int(limit)}s", "-timeout_error", "-trace_stat", "-stf", str(stats), "-fd", "1"]
    pids = [srv.proc.pid for srv in servers]
    kam_pgid = front.proc.pid if front is not None and front.proc is not None else None
    k0 = group_cpu_seconds(kam_pgid) if kam_pgid else 0.0
    c0, w0 = sum(proc_cpu_seconds(pid) for pid in pids), time.monotonic()
    m0 = sum(proc_cpu_seconds(pid, pid) for pid in pids)  # the main thread's id is the process id
    ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = loadavg()
    spy = start_spy(pids[0], spy_dir / f"spy_{int(rate)}.txt", calls / rate) if spy_dir else None
    try:
        out = subprocess.run(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=limit + 10, check=False)
        rc = out.returncode
    except subprocess.TimeoutExpired:
        rc = -9
    c1, w1 = sum(proc_cpu_seconds(pid) for pid in pids), time.monotonic()
    m1 = sum(proc_cpu_seconds(pid, pid) for pid in pids)
    k1 = group_cpu_seconds(kam_pgid) if kam_pgid else 0.0
    ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sipp_cpu = (ch1.ru_utime + ch1.ru_stime) - (ch0.ru_utime + ch0.ru_stime)
    if spy is not None:  # reaped after the reading: its CPU is not counted as sipp's
        spy.wait(timeout=30)
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
    return Step(rate, calls, ok, failed, ok / window, setup, retrans, 100 * (c1 - c0) / wall,
                sum(proc_rss_mb(pid) for pid in pids), 100 * sipp_cpu / wall, wall, 0, rc, load,
                front_cpu_pct=100 * (k1 - k0) / wall if kam_pgid else None, loop_cpu_s=m1 - m0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="50,100,200,300", help="offered calls/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds of calls per rate (calls = rate * seconds)")
    ap.add_argument("--hold-ms", type=int, default=500, help="sipp -d: how long each call is held before BYE")
    ap.add_argument("--max-calls", type=int, default=3000, help="upper bound of calls per step")
    ap.add_argument("--sip-max-calls", type=int, default=1000, help="the hotline's sip.max_calls for the run")
    ap.add_argument("--max-cps", type=float, default=0, help="the hotline's sip.max_cps (0: off): calls/s admitted")
    ap.add_argument("--spy", type=Path, default=None,
                    help="folder for a py-spy profile of the hotline per step (spy_<rate>.txt: raw, --threads)")
    ap.add_argument("--workers", type=int, default=1,
                    help="hotline processes; more than 1: behind Kamailio's dispatcher (needs kamailio)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (hotline log, sipp stats)")
    args = ap.parse_args()
    if shutil.which("sipp") is None:
        print("sipp not found (Debian package sip-tester)", file=sys.stderr)
        return 2
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="hotline-bench-rate-"))
    print(f"starting hotline serve (data in {tmp}) ...", file=sys.stderr)
    # per-source INVITE limit off: sipp is one source, and this measures capacity, not the flood guard
    sip = {"max_calls": args.sip_max_calls, "invite_rate": 1e6, "invite_burst": 1e6, "max_cps": args.max_cps}
    front: Kamailio | None = None
    if args.workers > 1:
        base = yaml.safe_load((ROOT / "configs" / "server.yaml").read_text())["sip"]
        servers, front = start_workers(tmp, args.workers, {**base, **sip})
        target = front.port
    else:
        servers = [start_hotline(tmp, **{f"sip__{k}": v for k, v in sip.items()})]
        target = servers[0].port
    steps: list[Step] = []
    try:
        time.sleep(3.0)  # past tts.kb_prerender_delay_s (2 s): the knowledge answers' rendering has begun
        waited = wait_idle([srv.proc.pid for srv in servers])
        print(f"hotline idle after {waited + 3:.1f} s of start-up work", file=sys.stderr)
        pos = [log_problems(srv)[2] for srv in servers]
        for rate in rates:
            calls = min(args.max_calls, max(1, int(rate * args.seconds)))
            print(f"rate {rate:g}/s: {calls} calls ...", file=sys.stderr)
            if args.spy:
                args.spy.mkdir(parents=True, exist_ok=True)
            step = run_sipp(servers, target, rate, calls, args.hold_ms, tmp, args.spy, front)
            time.sleep(3.0)  # let the sessions write their closing records
            for i, srv in enumerate(servers):
                before = pos[i]
                errors, tracebacks, pos[i] = log_problems(srv, before)
                step.errors += errors + tracebacks
                step.refused += refused_503(srv, before, pos[i])
            steps.append(step)
            if any(srv.proc.poll() is not None for srv in servers):
                print("a hotline process exited!", file=sys.stderr)
                break
    finally:
        for srv in servers:
            stop_server(srv)
        if front is not None:
            front.close()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    workers = (f"{args.workers} `hotline serve` workers behind Kamailio (dispatcher, round robin)"
               if args.workers > 1 else "one `hotline serve` process")
    print(f"\n`hotline serve` call-setup rate, {workers}, `nproc` = {os.cpu_count()}, sipp {args.hold_ms} ms per call; "
          f"target: >= {TARGET_RATE:.0f} calls/s with 0 failed.")
    front_name = "kamailio" if args.workers > 1 else "hotline"
    print(f"Command per step: `sipp -sn uac 127.0.0.1:<{front_name} port> -i 127.0.0.1 -p <port> -mp <port> "
          f"-r <rate> -m <rate*{args.seconds:g}> -d {args.hold_ms} -l <3*rate> -nostdin -timeout <t> -timeout_error`")
    print("Signalling rate only: sipp's uac scenario sends no RTP (the hotline still answers, records the call "
          "and plays its greeting as RTP; no speech recognition runs).\n")
    print("| offered calls/s | calls | completed | failed | achieved calls/s | INVITE->200 | retransmissions"
          " | refused 503 (overload) | hotline CPU (% of one core) | hotline CPU ms per call"
          " | event-loop thread ms per call"
          " | hotline RSS MB | sipp CPU % | kamailio CPU % | hotline log errors"
          " | load avg before | meets target |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in steps:
        meets = "yes" if s.failed == 0 and s.ok == s.calls and s.achieved >= min(TARGET_RATE, s.rate) * 0.95 else "no"
        if s.rate < TARGET_RATE:
            meets += " (below target rate)"
        print(f"| {s.rate:g} | {s.calls} | {s.ok} | {s.failed} | {s.achieved:.0f} | {s.setup} | {s.retrans} "
              f"| {s.refused} | {s.cpu_pct:.0f}% | {s.cpu_pct * s.wall_s * 10 / max(1, s.ok):.1f} "
              f"| {1000 * s.loop_cpu_s / max(1, s.ok):.1f} "
              f"| {s.rss_mb:.0f} | {s.sipp_cpu_pct:.0f}% "
              f"| {'-' if s.front_cpu_pct is None else f'{s.front_cpu_pct:.0f}%'} | {s.errors} | {s.load} "
              f"| {meets} |")
    bad = [s for s in steps if s.rate >= TARGET_RATE and (s.failed or s.ok < s.calls)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
