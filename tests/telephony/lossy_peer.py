"""One side of the packet-loss test (tests/telephony/test_packet_loss.py), run inside a network namespace.

    python lossy_peer.py serve --host 10.99.0.1 --port 5070 --seconds 40
    python lossy_peer.py call  --host 10.99.0.2 --target sip:hotline@10.99.0.1:5070 --calls 10

serve: answers calls, collects DTMF; hangs up a call itself when it receives "#" on an even-numbered call
(caller user ``c0``, ``c2``...); prints one JSON line per ended call, then "DONE" when stdin closes or the time
is up. call: places the calls at once (each: 1 s, DTMF "12#" over RFC 4733, then waits up to 4 s for the
hotline's BYE on even calls, hangs up itself on odd ones) and prints one JSON summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from telephony import CallFailed, CallLeg, DtmfDigit, SipEndpoint


def out(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def serve(args: argparse.Namespace) -> None:
    ep = SipEndpoint(args.host, args.port, rtp_ports=(30000, 40000))

    async def on_call(leg: CallLeg) -> None:
        digits = ""
        t0 = time.monotonic()
        while (item := await leg.recv()) is not None:
            if isinstance(item, DtmfDigit):
                digits += item.digit
                if item.digit == "#" and int(leg.caller.lstrip("c") or 1) % 2 == 0:
                    await leg.hangup()
        out({"caller": leg.caller, "digits": digits, "end": leg.end_reason, "frames_in": leg.frames_in,
             "seconds": round(time.monotonic() - t0, 2)})

    ep.on_call = on_call
    await ep.start()
    out({"ready": ep.port})
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    await asyncio.wait([stdin_closed], timeout=args.seconds)
    await ep.stop()
    out({"stats": ep.stats})
    sys.stdout.write("DONE\n")
    sys.stdout.flush()


async def one_call(ep: SipEndpoint, target: str, n: int) -> dict[str, object]:
    t0 = time.monotonic()
    try:
        leg = await ep.dial(target, from_user=f"c{n}", timeout=15)
    except CallFailed as exc:
        return {"n": n, "failed": exc.status}
    setup = time.monotonic() - t0
    await asyncio.sleep(1.0)
    leg.send_dtmf("12#")
    if n % 2 == 0:  # the hotline hangs up after "#"
        try:
            await asyncio.wait_for(leg.ended.wait(), 6)
        except TimeoutError:
            await leg.hangup()
    else:
        await asyncio.sleep(1.0)
        await leg.hangup()
    return {"n": n, "setup_s": round(setup, 2), "end": leg.end_reason, "frames_in": leg.frames_in}


async def call(args: argparse.Namespace) -> None:
    ep = SipEndpoint(args.host, 0, rtp_ports=(40000, 50000))
    await ep.start()
    results = await asyncio.gather(*(one_call(ep, args.target, n) for n in range(args.calls)))
    await asyncio.sleep(0.5)  # last BYE transactions
    await ep.stop()
    out({"calls": results, "stats": ep.stats})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["serve", "call"])
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=5070)
    ap.add_argument("--target", default="")
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=40.0)
    args = ap.parse_args()
    asyncio.run(serve(args) if args.mode == "serve" else call(args))


if __name__ == "__main__":
    main()
