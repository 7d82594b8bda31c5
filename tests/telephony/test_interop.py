"""Interop with independent SIP stacks on 127.0.0.1: sipp (uac/uas scenarios) and baresip (a real phone)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import wave
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from telephony import CallLeg, SipEndpoint, TestCaller
from telephony.testcaller import dominant_hz, loud_part, tone

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(60)]

needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) not installed")
needs_baresip = pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip not installed")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run(*cmd: str, timeout: float = 40.0, cwd: Path | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*cmd, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                cwd=cwd)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        return -9, out.decode(errors="replace")
    return proc.returncode or 0, out.decode(errors="replace")


@needs_sipp
async def test_sipp_uac_calls_our_endpoint(server: Server, tmp_path: Path) -> None:
    port = free_udp_port()
    rc, out = await run("sipp", "-sn", "uac", f"127.0.0.1:{server.ep.port}", "-i", "127.0.0.1", "-p", str(port),
                        "-m", "10", "-r", "20", "-d", "500", "-nostdin", "-timeout", "30s", "-timeout_error",
                        cwd=tmp_path)
    assert rc == 0, out[-2000:]
    assert len(server.legs) == 10
    await asyncio.sleep(0.1)
    assert all(leg.end_reason == "remote_bye" for leg in server.legs)
    assert server.ep.calls == []


@needs_sipp
async def test_our_dial_against_sipp_uas(tmp_path: Path) -> None:
    port = free_udp_port()
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-m", "3", "-nostdin", "-timeout", "30s",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path)
    try:
        await asyncio.sleep(0.5)
        async with TestCaller() as tc:
            for _ in range(3):
                leg = await tc.call(f"sip:sipp@127.0.0.1:{port}", timeout=10)
                assert leg.codec == "PCMU"
                await asyncio.sleep(0.3)
                await leg.hangup()
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def write_baresip_config(d: Path, sip_port: int, *, freq: int, auto_answer: bool) -> None:
    rtp = free_udp_port() // 2 * 2
    lo = 30000 + (rtp % 9000) // 2 * 2
    (d / "config").write_text(
        "poll_method epoll\n"
        f"sip_listen 127.0.0.1:{sip_port}\n"
        "audio_player aubridge,nil\n"
        f"audio_source ausine,{freq}\n"
        "audio_alert aubridge,nil\n"
        "ausrc_srate 48000\nausrc_channels 2\nauplay_srate 48000\nauplay_channels 2\n"
        f"rtp_ports {lo}-{lo + 200}\n"
        "module_path /usr/lib/baresip/modules\n"
        "module stdio.so\nmodule g711.so\nmodule ausine.so\nmodule aubridge.so\nmodule sndfile.so\n"
        "module_app account.so\nmodule_app menu.so\n"
        f"snd_path {d}\n"
    )
    mode = ";answermode=auto" if auto_answer else ""
    (d / "accounts").write_text(f"<sip:bs@127.0.0.1:{sip_port}>;regint=0{mode};audio_codecs=PCMU,PCMA\n")


def read_dump(d: Path, kind: str) -> bytes:
    files = sorted(d.glob(f"dump-*-{kind}.wav"))
    assert files, f"baresip wrote no {kind} dump in {d}"
    with wave.open(str(files[-1])) as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1
        return w.readframes(w.getnframes())


@needs_baresip
async def test_baresip_calls_our_endpoint_audio_both_ways(server: Server, tmp_path: Path) -> None:
    server.play = tone(440, 3.0)
    write_baresip_config(tmp_path, free_udp_port(), freq=1000, auto_answer=False)
    _rc, out = await run("baresip", "-f", str(tmp_path), "-n", "127.0.0.1", "-e",
                        f"/dial sip:hotline@127.0.0.1:{server.ep.port}", "-t", "3", timeout=20)
    assert "Call established" in out, out[-2000:]
    await asyncio.sleep(0.3)
    assert len(server.legs) == 1 and server.legs[0].end_reason == "remote_bye"
    we_heard = loud_part(bytes(server.heard[server.legs[0].call_id]))
    assert len(we_heard) > 1.5 * 16000 and abs(dominant_hz(we_heard) - 1000) < 20
    it_heard = loud_part(read_dump(tmp_path, "dec"))
    assert len(it_heard) > 1.5 * 16000 and abs(dominant_hz(it_heard) - 440) < 20


@needs_baresip
async def test_baresip_as_answering_agent(tmp_path: Path) -> None:
    port = free_udp_port()
    write_baresip_config(tmp_path, port, freq=1500, auto_answer=True)
    proc = await asyncio.create_subprocess_exec(
        "baresip", "-f", str(tmp_path), "-n", "127.0.0.1", "-t", "12",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    ep = SipEndpoint("127.0.0.1", 0)
    await ep.start()
    try:
        await asyncio.sleep(1.0)
        leg: CallLeg = await ep.dial(f"sip:bs@127.0.0.1:{port}", timeout=10)
        leg.send_audio(tone(600, 2.0))
        heard = bytearray()
        loop = asyncio.get_running_loop()
        end = loop.time() + 2.5
        while loop.time() < end:
            item = await asyncio.wait_for(leg.recv(), 2)
            if item is not None and hasattr(item, "pcm"):
                heard += item.pcm
        await leg.hangup()
        we_heard = loud_part(bytes(heard))
        assert len(we_heard) > 1.5 * 16000 and abs(dominant_hz(we_heard) - 1500) < 20
        await asyncio.sleep(0.5)
        it_heard = loud_part(read_dump(tmp_path, "dec"))
        assert len(it_heard) > 1.5 * 16000 and abs(dominant_hz(it_heard) - 600) < 20
    finally:
        await ep.stop()
        proc.terminate()
        await proc.wait()
