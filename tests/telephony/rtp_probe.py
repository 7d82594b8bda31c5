"""RTP arrival-time probe run as a separate process (so the process under test cannot delay its clock).

    python rtp_probe.py --ports N --seconds S

Binds N UDP sockets on 127.0.0.1, prints {"ports": [...]} on one line, waits for "go" on stdin, then records
the arrival time of every datagram for S seconds and prints one JSON line: per port the packet count, the
largest gap between packets and the 95th and 99th percentiles of |gap - 20 ms| (ms).
"""

from __future__ import annotations

import argparse
import itertools
import json
import selectors
import socket
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    args = ap.parse_args()
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(args.ports):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, len(socks))
        socks.append(s)
    print(json.dumps({"ports": [s.getsockname()[1] for s in socks]}), flush=True)
    sys.stdin.readline()
    times: list[list[float]] = [[] for _ in socks]
    end = time.monotonic() + args.seconds
    while (left := end - time.monotonic()) > 0:
        for key, _ in sel.select(left):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            while True:
                try:
                    s.recv(2048)
                except BlockingIOError:
                    break
                times[key.data].append(time.monotonic())
    out = []
    for ts in times:
        gaps = [(b - a) * 1000 for a, b in itertools.pairwise(ts)]
        dev = sorted(abs(g - 20) for g in gaps)
        out.append({"packets": len(ts), "max_gap_ms": round(max(gaps, default=0), 1),
                    "p95_dev_ms": round(dev[int(0.95 * (len(dev) - 1))], 1) if dev else None,
                    "p99_dev_ms": round(dev[int(0.99 * (len(dev) - 1))], 1) if dev else None})
    print(json.dumps({"legs": out}), flush=True)


if __name__ == "__main__":
    main()
