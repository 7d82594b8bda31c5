"""Graceful shutdown of the real `hotline serve`: SIGTERM stops new calls (503) and lets calls in progress
finish; a second SIGTERM, or sip.drain_timeout_s, hangs up the rest with BYE; the process exits 0."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from support.e2e_server import Server, free_sip_port, start_server, stop_server, write_config

from telephony import CallFailed, TestCaller

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def wait_log(srv: Server, text: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while text not in srv.log():
        assert time.monotonic() < end, f"{text!r} not in the log:\n{srv.log()[-3000:]}"
        await asyncio.sleep(0.1)


def start(tmp: Path, drain_s: float) -> Server:
    cfg = write_config(tmp, agent_ports=[free_sip_port()], endpointing__no_input_s=60.0,
                       sip__drain_timeout_s=drain_s)
    return start_server(cfg, tmp / "var")


async def test_sigterm_drains_then_second_sigterm_hangs_up(tmp_path: Path) -> None:
    srv = start(tmp_path, 60.0)
    try:
        async with TestCaller() as tc:
            a = await tc.call(srv.uri, timeout=10)
            b = await tc.call(srv.uri, timeout=10)
            await asyncio.sleep(1.0)
            srv.proc.send_signal(signal.SIGTERM)
            await wait_log(srv, "draining")
            with pytest.raises(CallFailed) as ei:
                await tc.call(srv.uri, timeout=5)
            assert ei.value.status == 503
            # the calls in progress go on: 20 ms frames keep coming
            n0 = len(tc.heard_pcm(a))
            await asyncio.sleep(1.0)
            assert len(tc.heard_pcm(a)) - n0 >= 0.8 * 16000
            assert not a.ended.is_set() and not b.ended.is_set()
            await a.hangup()  # the caller finishes
            await asyncio.sleep(0.5)
            assert srv.proc.poll() is None, "must wait for the other call"
            t = time.monotonic()
            srv.proc.send_signal(signal.SIGTERM)  # the second SIGTERM: hang up the rest now
            await asyncio.wait_for(b.ended.wait(), 10)
            assert b.end_reason == "remote_bye" and time.monotonic() - t < 5
            rc = await asyncio.to_thread(srv.proc.wait, 30)
        assert rc == 0
        for leg in (a, b):
            rec = srv.store.find_by_sip_call_id(leg.call_id)
            assert rec is not None and rec.ended_at is not None and rec.outcome != "interrupted", rec
    finally:
        if srv.proc.poll() is None:
            stop_server(srv)


async def test_drain_timeout_ends_calls_with_bye(tmp_path: Path) -> None:
    srv = start(tmp_path, 2.0)
    try:
        async with TestCaller() as tc:
            leg = await tc.call(srv.uri, timeout=10)
            await asyncio.sleep(0.5)
            t = time.monotonic()
            srv.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(leg.ended.wait(), 15)
            waited = time.monotonic() - t
            assert leg.end_reason == "remote_bye" and 1.8 <= waited < 8, waited
            rc = await asyncio.to_thread(srv.proc.wait, 30)
        assert rc == 0
        assert "drained: 1 calls left" in srv.log()
    finally:
        if srv.proc.poll() is None:
            stop_server(srv)
