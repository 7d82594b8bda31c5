"""What one pathological datagram costs the event loop, with the size cap checked before parsing.

Before the cap (docs/TELEPHONY.md) a 64 KB request cost 7-21 ms of loop time: 13 000 short headers 17 ms,
a Via of 65 000 commas 21 ms, 1 300 Via headers 12 ms (and the 400 echoed all of them). Now a datagram over
``max_message_bytes`` (16 KB by default) is dropped unparsed, and more than 256 header lines are refused
before decoding. The figures are printed (``-s``); the bounds below are generous for a loaded 2-core box.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from telephony import SipEndpoint
from telephony.sip_message import MAX_HEADER_LINES

pytestmark = [pytest.mark.timeout(60)]

HEAD = ("OPTIONS sip:hotline@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKcost\r\n"
        "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: cost\r\nCSeq: 1 OPTIONS\r\n")


def _cases(limit: int) -> dict[str, bytes]:
    def fill(line: str, size: int) -> str:
        return line * max(1, (size - len(HEAD) - 4) // len(line))

    out = {}
    for size, label in ((65_000, "64 KB"), (limit - 100, "just under the cap")):
        out[f"{label}: short headers"] = (HEAD + fill("X: 1\r\n", size) + "\r\n").encode()[:size]
        out[f"{label}: Via of commas"] = (HEAD.replace("cost\r\n", "cost" + "," * (size - 300) + "\r\n", 1)
                                          + "\r\n").encode()
        out[f"{label}: many Via headers"] = (HEAD + fill("Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n", size)
                                             + "\r\n").encode()
    return out


async def test_pathological_datagrams_cost_little_loop_time() -> None:
    ep = SipEndpoint("127.0.0.1", 0)
    await ep.start()
    try:
        rows = []
        for name, data in _cases(ep.max_message_bytes).items():
            runs = []
            for _ in range(5):
                t = time.perf_counter()
                ep._on_datagram(data, ("127.0.0.1", 9))  # what the socket callback runs, timed on its own
                runs.append(time.perf_counter() - t)
            best = min(runs) * 1000
            rows.append((name, len(data), best))
            if len(data) > ep.max_message_bytes:
                assert best < 0.5, (name, best)  # dropped unparsed: microseconds
            else:
                assert best < 8.0, (name, best)  # parsed or refused (header-line cap): well under the 7-21 ms before
            await asyncio.sleep(0)
        print("\nloop time per datagram (best of 5 ms):\n" + "\n".join(f"  {n:40s} {size:6d} B  {ms:7.3f} ms"
                                                                       for n, size, ms in rows))
        assert ep.stats["oversized"] == 15
        assert MAX_HEADER_LINES == 256
    finally:
        await ep.stop()
