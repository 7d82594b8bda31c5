"""Call set-up, RFC 4733 DTMF and BYE from either side under 5% UDP packet loss each way.

Two network namespaces joined by a veth pair (10.99.0.1 hotline, 10.99.0.2 callers); in each, an nftables
output rule drops 5% of UDP datagrams at random (``numgen random mod 100 < 5``). ``tc ... netem`` is not
used: this machine's kernel has no sch_netem (and CI's may not either); nftables' numgen is in the
stock nf_tables module. Needs root, iproute2 and nftables (Debian: ``apt-get install nftables``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
PEER = HERE / "lossy_peer.py"
CALLS = 10


def sh(*cmd: str) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


@pytest.fixture
def lossy_link() -> Iterator[tuple[str, str]]:
    assert os.geteuid() == 0, "the packet-loss test creates network namespaces: run it as root"
    assert shutil.which("ip") and shutil.which("nft"), "needs iproute2 and nftables (apt-get install nftables)"
    tag = f"{os.getpid() % 100000}"
    a, b = f"hlA{tag}", f"hlB{tag}"
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        sh("ip", "link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vb{tag}")
        for ns, dev, addr in ((a, f"va{tag}", "10.99.0.1/24"), (b, f"vb{tag}", "10.99.0.2/24")):
            sh("ip", "link", "set", dev, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "nft", "add", "table", "inet", "loss")
            sh("ip", "netns", "exec", ns, "nft", "add", "chain", "inet", "loss", "out",
               "{ type filter hook output priority 0 ; }")
            sh("ip", "netns", "exec", ns, "nft", "add", "rule", "inet", "loss", "out", "meta", "l4proto", "udp",
               "numgen", "random", "mod", "100", "<", "5", "counter", "drop")
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def dropped(ns: str) -> int:
    m = re.search(r"counter packets (\d+)", sh("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "loss"))
    assert m, "no nft counter"
    return int(m.group(1))


async def test_calls_dtmf_and_bye_under_5_percent_loss(lossy_link: tuple[str, str]) -> None:
    ns_a, ns_b = lossy_link
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns_a, sys.executable, str(PEER), "serve", "--host", "10.99.0.1", "--port", "5070",
        "--seconds", "60", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
    try:
        assert server.stdout is not None and server.stdin is not None
        first = await asyncio.wait_for(server.stdout.readline(), 20)
        assert json.loads(first) == {"ready": 5070}, first
        caller = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", ns_b, sys.executable, str(PEER), "call", "--host", "10.99.0.2", "--target",
            "sip:hotline@10.99.0.1:5070", "--calls", str(CALLS), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
        cout, cerr = await asyncio.wait_for(caller.communicate(), 60)
        assert caller.returncode == 0, cerr.decode()[-2000:]
        result = json.loads(cout.decode().strip().splitlines()[-1])
        server.stdin.close()
        sout = (await asyncio.wait_for(server.stdout.read(), 20)).decode()
    finally:
        if server.returncode is None:
            server.kill()
        await server.wait()
    ended = [json.loads(line) for line in sout.splitlines() if line.startswith("{") and '"caller"' in line]
    calls = result["calls"]
    assert [c.get("failed") for c in calls] == [None] * CALLS, calls  # every call set up (retransmissions)
    assert len(ended) == CALLS, sout
    by_caller = {e["caller"]: e for e in ended}
    for c in calls:
        n = c["n"]
        seen = by_caller[f"c{n}"]
        assert seen["digits"] == "12#", (n, seen)  # RFC 4733: a digit survives while any of its packets does
        # BYE from the hotline on even calls, from the caller on odd ones; each side saw the other's BYE
        assert (seen["end"], c["end"]) == (("local_hangup", "remote_bye") if n % 2 == 0 else
                                           ("remote_bye", "local_hangup")), (n, seen, c)
    # Media: about 17.5 s of calls in all (50 frames/s). Per call it can start late: our RTP waits for the ACK of
    # our 200 OK, and a lost ACK costs 0.5 s, 1.5 s... (the 200 is retransmitted, RFC 3261 13.3.1.4).
    assert sum(e["frames_in"] for e in ended) > 600 and sum(c["frames_in"] for c in calls) > 600, (ended, calls)
    assert dropped(ns_a) > 0 and dropped(ns_b) > 0  # the loss really happened both ways
