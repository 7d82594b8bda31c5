"""CPU cost of a call's record writes (CallStore on SQLite): start, 4 transcript lines, end.

    .venv/bin/python bench/record_writes.py [--calls 200]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from recordings import CallStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        store = CallStore(f"sqlite:///{d}/bench.db")
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(args.calls):
            cid = f"c{i}"
            store.start_call(cid, sip_call_id=cid, caller="13800138000", called="95555", recording_path="/x.wav")
            for j in range(4):
                store.add_line(cid, "system", "Welcome to Example Bank. How can I help you today?", j, j + 1.0)
            store.end_call(cid, outcome="goodbye", end_reason="bench")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        store.close()
    print(f"`nproc` = {os.cpu_count()}; command: .venv/bin/python bench/record_writes.py --calls {args.calls}\n")
    print("| calls | writes per call | wall s | CPU ms per call | writes/s |")
    print("|---|---|---|---|---|")
    print(f"| {args.calls} | 6 | {wall:.2f} | {cpu / args.calls * 1e3:.2f} | {args.calls * 6 / wall:.0f} |")


if __name__ == "__main__":
    main()
