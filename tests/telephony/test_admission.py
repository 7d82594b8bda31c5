"""Admission control of a live SipEndpoint: allow-list, loop-lag overload, INVITE/REGISTER floods from sipp
(held calls keep their 20 ms pacing, measured by a separate process), oversized datagrams, drain."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from telephony import CallFailed, CallLeg, SipEndpoint, TestCaller
from telephony.registrar import Registrar
from telephony.sip_message import SipResponse, parse_message

if TYPE_CHECKING:
    from conftest import RawSip

HERE = Path(__file__).resolve().parent
needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) not installed")


async def _wait_ended(leg: CallLeg) -> None:
    await leg.ended.wait()


async def hold_call(raw: RawSip, port: int, call_id: str, rtp_port: int) -> None:
    """A hand-made caller whose RTP goes to ``rtp_port``: INVITE, 200, ACK."""
    raw.send(raw.request("INVITE", port, call_id=call_id, branch=f"z9hG4bK{call_id}",
                         body=raw.sdp(rtp_port, "0 101")), port)
    while True:
        msg = parse_message(await raw.expect(5.0))
        if isinstance(msg, SipResponse) and msg.call_id == call_id and msg.status >= 200:
            break
    assert msg.status == 200, msg.status
    tag = (msg.get("To") or "").split("tag=")[1]
    raw.send(raw.request("ACK", port, call_id=call_id, cseq="1 ACK", to_tag=tag, branch=f"z9hG4bKack{call_id}"),
             port)


async def test_allow_list_refuses_other_sources_with_403() -> None:
    ep = SipEndpoint("127.0.0.1", 0, allow=["127.0.0.1/32"])
    ep.on_call = _wait_ended
    await ep.start()
    try:
        async with TestCaller("127.0.0.3") as outsider, TestCaller("127.0.0.1") as trunk:
            with pytest.raises(CallFailed) as ei:
                await outsider.call(f"sip:hotline@127.0.0.1:{ep.port}", timeout=3)
            assert ei.value.status == 403
            leg = await trunk.call(f"sip:hotline@127.0.0.1:{ep.port}", timeout=3)
            await leg.hangup()
        assert ep.stats["forbidden"] == 1 and ep.stats["calls_in"] == 1
    finally:
        await ep.stop()


async def test_loop_lag_gives_503_with_retry_after_then_recovers(raw: RawSip) -> None:
    ep = SipEndpoint("127.0.0.1", 0, max_loop_lag=0.1, retry_after=7)
    ep.on_call = _wait_ended
    await ep.start()
    try:
        for _ in range(12):  # the loop is blocked 200 ms at a time (a stand-in for CPU-bound work on it)
            time.sleep(0.2)  # noqa: ASYNC251 - blocking the loop on purpose
            await asyncio.sleep(0.005)
        assert ep.loop_lag > 0.1 and ep.loop_lag_max >= 0.19
        raw.send(raw.request("INVITE", ep.port, call_id="lagged", body=raw.sdp(4000)), ep.port)
        data = await raw.expect(3)
        while data.startswith(b"SIP/2.0 100"):
            data = await raw.expect(3)
        assert data.startswith(b"SIP/2.0 503") and b"Retry-After: 7\r\n" in data
        assert ep.stats["overload"] == 1
        await asyncio.sleep(0.5)  # the loop runs freely again: the smoothed lag falls within a few ticks
        assert ep.loop_lag < 0.02
        async with TestCaller() as tc:
            leg = await tc.call(f"sip:hotline@127.0.0.1:{ep.port}", timeout=3)
            await leg.hangup()
    finally:
        await ep.stop()


async def test_busy_loop_gives_503_then_recovers(raw: RawSip) -> None:
    """A loop saturated by many short callbacks is not late (loop lag stays small) but has no idle time:
    that is what a call-rate overload looks like, and new calls get 503 until it eases."""
    ep = SipEndpoint("127.0.0.1", 0, max_loop_busy=0.9)
    ep.on_call = _wait_ended
    await ep.start()
    loop = asyncio.get_running_loop()
    stop = loop.time() + 2.5

    def spin() -> None:  # 2 ms of work per loop iteration, never idle
        end = time.perf_counter() + 0.002
        while time.perf_counter() < end:
            pass
        if loop.time() < stop:
            loop.call_soon(spin)

    try:
        loop.call_soon(spin)
        await asyncio.sleep(2.6)
        assert ep.loop_busy > 0.9 and ep.loop_lag < 0.05, (ep.loop_busy, ep.loop_lag)
        raw.send(raw.request("INVITE", ep.port, call_id="busy", body=raw.sdp(4000)), ep.port)
        data = await raw.expect(3)
        assert data.startswith(b"SIP/2.0 503") and b"Retry-After: 5\r\n" in data
        assert ep.stats["overload"] == 1
        await asyncio.sleep(3.0)  # idle again: the smoothed share falls within a few seconds
        assert ep.loop_busy < 0.3
        async with TestCaller() as tc:
            leg = await tc.call(f"sip:hotline@127.0.0.1:{ep.port}", timeout=3)
            await leg.hangup()
    finally:
        await ep.stop()


async def test_kernel_backlog_gives_503(raw: RawSip) -> None:
    """SIP waiting in the socket's kernel queue (the worker reads slower than INVITEs arrive, which loop lag
    cannot see) makes new calls get 503, so a backlog drains instead of growing into retransmissions."""
    import socket

    from telephony.guard import udp_rx_queue

    ep = SipEndpoint("127.0.0.1", 0, max_rx_queue=20_000)
    ep.on_call = _wait_ended
    await ep.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(40):  # queued while the loop is not running (this code does not yield)
                s.sendto(raw.request("OPTIONS", ep.port, call_id=f"q{i}", branch=f"z9hG4bKq{i}",
                                     extra="X-Pad: " + "p" * 600 + "\r\n").encode(), ("127.0.0.1", ep.port))
            assert (udp_rx_queue(ep.port) or 0) > 20_000
            ep._check_backlog()  # what the ticker does twice a second: one reading over the limit is a burst,
            assert ep._refusal() == ""
            assert ep.rx_queue == udp_rx_queue(ep.port)  # SO_MEMINFO on our socket reads what /proc/net/udp shows
            ep._check_backlog()  # two in a row without draining is a backlog
            raw.send(raw.request("INVITE", ep.port, call_id="late", body=raw.sdp(4000)), ep.port)
        while True:
            data = await raw.expect(3)
            if b"Call-ID: late" in data:
                break
        assert data.startswith(b"SIP/2.0 503") and ep.stats["overload"] == 1
        ep._check_backlog()  # drained: calls are taken again
        async with TestCaller() as tc:
            leg = await tc.call(f"sip:hotline@127.0.0.1:{ep.port}", timeout=3)
            await leg.hangup()
    finally:
        await ep.stop()


async def test_oversized_datagram_dropped_before_parsing(raw: RawSip) -> None:
    ep = SipEndpoint("127.0.0.1", 0, max_message_bytes=4000)
    await ep.start()
    try:
        big = raw.request("OPTIONS", ep.port, call_id="big", extra="X-Pad: " + "a" * 5000 + "\r\n")
        raw.send(big, ep.port)
        raw.send(raw.request("OPTIONS", ep.port, call_id="small", branch="z9hG4bKsmall"), ep.port)
        data = await raw.expect(2)
        assert b"Call-ID: small" in data and data.startswith(b"SIP/2.0 200")
        assert ep.stats["oversized"] == 1 and ep.stats["malformed"] == 0
        many = raw.request("OPTIONS", ep.port, call_id="many", branch="z9hG4bKmany",
                               extra="".join(f"X-{i}: 1\r\n" for i in range(300)))
        assert len(many) < 4000
        raw.send(many, ep.port)  # too many header lines: refused unparsed, no 400 echoing them
        with pytest.raises(TimeoutError):
            await raw.expect(0.5)
        assert ep.stats["malformed"] == 1
    finally:
        await ep.stop()


async def test_drain_refuses_new_calls_and_waits_for_calls_in_progress() -> None:
    ep = SipEndpoint("127.0.0.1", 0)

    async def short_call(leg: CallLeg) -> None:
        await asyncio.sleep(0.6)  # the call finishes on its own

    ep.on_call = short_call
    await ep.start()
    try:
        async with TestCaller() as tc:
            leg = await tc.call(f"sip:hotline@127.0.0.1:{ep.port}")
            t0 = time.monotonic()
            drain = asyncio.ensure_future(ep.drain(10.0))
            await asyncio.sleep(0.05)
            with pytest.raises(CallFailed) as ei:
                await tc.call(f"sip:hotline@127.0.0.1:{ep.port}", timeout=3)
            assert ei.value.status == 503
            assert await drain == 0
            assert 0.4 < time.monotonic() - t0 < 3.0
            await asyncio.wait_for(leg.ended.wait(), 2)
            assert leg.end_reason == "remote_bye"
            # a drain that times out leaves the call to stop()
            ep._draining = False
            ep.on_call = _wait_ended
            leg2 = await tc.call(f"sip:hotline@127.0.0.1:{ep.port}")
            abort = asyncio.Event()
            asyncio.get_running_loop().call_later(0.3, abort.set)  # a second SIGTERM
            assert await ep.drain(30.0, abort) == 1
            await ep.stop()
            await asyncio.wait_for(leg2.ended.wait(), 3)
            assert leg2.end_reason == "remote_bye"
    finally:
        await ep.stop()


async def _sipp(*args: str, timeout: float) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec("sipp", *args, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        return -9, out.decode(errors="replace")
    return proc.returncode or 0, out.decode(errors="replace")


@needs_sipp
@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("guard", ["rate_limit", "max_calls"])
async def test_invite_flood_from_sipp_is_limited_and_held_calls_keep_pacing(raw: RawSip, tmp_path: Path,
                                                                           guard: str) -> None:
    if guard == "rate_limit":  # per-source token bucket: 503 within the reply budget, then dropped
        ep = SipEndpoint("127.0.0.1", 0, invite_rate=20, invite_burst=20, max_calls=500)
    else:  # capacity: 4 held calls + 2 more, every other new INVITE gets 503 + Retry-After
        ep = SipEndpoint("127.0.0.1", 0, invite_rate=1e6, invite_burst=1e6, max_calls=6)
    ep.on_call = _wait_ended
    await ep.start()
    probe = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "rtp_probe.py"), "--ports", "4", "--seconds", "4",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        assert probe.stdout is not None and probe.stdin is not None
        ports = json.loads(await asyncio.wait_for(probe.stdout.readline(), 10))["ports"]
        for i, p in enumerate(ports):
            await hold_call(raw, ep.port, f"held-{i}", p)
        probe.stdin.write(b"go\n")
        await probe.stdin.drain()
        await asyncio.sleep(0.5)
        # the flood: 400 INVITEs/s for 2 s from 127.0.0.2 (sipp's own uac scenario; calls end after 100 ms)
        flood = asyncio.ensure_future(_sipp(
            "-sn", "uac", f"127.0.0.1:{ep.port}", "-i", "127.0.0.2", "-p", "0", "-r", "400", "-m", "800",
            "-d", "100", "-l", "800", "-nostdin", "-timeout", "6s", "-max_retrans", "1", "-recv_timeout", "2000",
            timeout=15))
        await asyncio.sleep(1.0)
        if guard == "rate_limit":
            async with TestCaller() as tc:  # another source still gets through during the flood
                leg = await tc.call(f"sip:hotline@127.0.0.1:{ep.port}", timeout=5)
                await leg.hangup()
        await flood
        result = json.loads(await asyncio.wait_for(probe.stdout.readline(), 15))["legs"]
        print(f"\nflood: {ep.stats}; limiter {ep.invite_limiter.stats}; held legs at the probe: {result}; "
              f"loop lag max {ep.loop_lag_max * 1000:.0f} ms; load {os.getloadavg()[0]:.1f}")
        if guard == "rate_limit":
            assert ep.invite_limiter.stats["passed"] <= 20 + 20 * 8 + 1  # burst + rate x sipp's run, at most
            assert ep.stats["rate_limited"] > 0 and ep.stats["flood_dropped"] > 0
            assert ep.stats["rate_limited"] <= 10 * 8 + 10  # the 503 budget: 10 per second per source
        else:
            assert ep.stats["busy"] >= 400 and ep.stats["calls_in"] >= 4 + 1
        for leg_stats in result:  # 4 s at 50 packets/s each, paced at 20 ms while the flood runs
            assert leg_stats["packets"] >= 0.9 * 200
            # bounds for a shared 2-core box: alone the p99 is 5-10 ms and the largest gap 25-80 ms (load 7-12),
            # but other processes' bursts on the same cores have given a p99 of 147 ms once (docs/SECURITY.md)
            assert leg_stats["p95_dev_ms"] <= 50 and leg_stats["max_gap_ms"] <= 250
        assert all(not c.ended.is_set() for c in ep.calls if c.call_id.startswith("held-"))
    finally:
        if probe.returncode is None:
            probe.kill()
        await probe.wait()
        await ep.stop()


REGISTER_FLOOD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register flood">
  <send>
    <![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:anna@[remote_ip]>;tag=[call_number]
To: <sip:anna@[remote_ip]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:anna@[local_ip]:[local_port]>
Authorization: AUTH
Max-Forwards: 70
Expires: 600
Content-Length: 0

    ]]>
  </send>
  <recv response="401" timeout="300" ontimeout="done"/>
  <label id="done"/>
</scenario>
"""


@needs_sipp
@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_register_flood_from_sipp_is_dropped_and_others_still_register(raw: RawSip,
                                                                               tmp_path: Path) -> None:
    reg = Registrar({"anna": "right"})
    ep = SipEndpoint("127.0.0.1", 0, register_rate=10, register_burst=10, registrar=reg)
    await ep.start()
    try:
        scenario = tmp_path / "register_flood.xml"
        scenario.write_text(REGISTER_FLOOD.replace("AUTH", 'Digest username="anna", realm="hotline", nonce="x", '
                                                   'uri="sip:[remote_ip]", response="0", qop=auth, nc=00000001, '
                                                   'cnonce="c"'))
        flood = asyncio.ensure_future(_sipp(
            "-sf", str(scenario), f"127.0.0.1:{ep.port}", "-i", "127.0.0.4", "-p", "0", "-r", "500", "-m", "1000",
            "-l", "1000", "-nostdin", "-timeout", "6s", timeout=15))
        await asyncio.sleep(1.0)
        raw.send(raw.request("REGISTER", ep.port, call_id="legit", branch="z9hG4bKlegit",
                                     extra="Expires: 60\r\n"), ep.port)  # from 127.0.0.1: challenged as usual
        data = await raw.expect(2)
        assert data.startswith(b"SIP/2.0 401") and b"WWW-Authenticate: Digest" in data
        await flood
        print(f"\nREGISTER flood: {ep.stats}; limiter {ep.register_limiter.stats}; registrar {reg.stats}")
        limited = ep.register_limiter.stats
        assert limited["passed"] <= 10 + 10 * 8 + 2 and limited["dropped"] >= 500
        assert limited["rejected"] == 0  # REGISTER floods get no reply at all
        assert reg.lookup("anna") is None and reg.stats["registered"] == 0
    finally:
        await ep.stop()
