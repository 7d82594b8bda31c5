"""CPU cost of a call's record writes (CallStore on SQLite): start, 4 transcript lines, end.

    .venv/bin/python bench/record_writes.py [--calls 200] [--threads 16]

--threads > 1 runs the calls from that many threads at once, each call one write at a time (as
`hotline serve`'s call sessions do through its 16 database threads): the writes then share commits
(group commit, docs/RECORDS.md); the table shows how many writes went into each transaction.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from recordings import CallStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        store = CallStore(f"sqlite:///{d}/bench.db")

        def call(i: int) -> None:
            cid = f"c{i}"
            store.start_call(cid, sip_call_id=cid, caller="13800138000", called="95555", recording_path="/x.wav")
            for j in range(4):
                store.add_line(cid, "system", "Welcome to Example Bank. How can I help you today?", j, j + 1.0)
            store.end_call(cid, outcome="goodbye", end_reason="bench")

        wall, cpu = time.perf_counter(), time.process_time()
        if args.threads <= 1:
            for i in range(args.calls):
                call(i)
        else:
            with ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(call, range(args.calls)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        per_batch = store.batched_writes / max(1, store.batches)
        store.close()
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"`nproc` = {os.cpu_count()}; command: .venv/bin/python bench/record_writes.py --calls {args.calls} "
          f"--threads {args.threads}\n")
    print("| calls | threads | writes per call | wall s | CPU ms per call | writes/s | writes per transaction | load |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.calls} | {args.threads} | 6 | {wall:.2f} | {cpu / args.calls * 1e3:.2f} "
          f"| {args.calls * 6 / wall:.0f} | {per_batch:.1f} | {load} |")


if __name__ == "__main__":
    main()
