"""Interop with pjsua2 (PyPI pjsua2-python, the PJSIP stack) as caller and as answering agent.

pjsua2 runs in a subprocess (tests/telephony/pjsua2_peer.py): it is a C stack with its own threads and
asserts/aborts on misuse, which must not take the test process down.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
import wave
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from telephony import AudioFrame, DtmfDigit, SipEndpoint
from telephony.testcaller import dominant_hz, loud_part, tone

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.timeout(60),
    pytest.mark.skipif(importlib.util.find_spec("pjsua2") is None, reason="pip install pjsua2-python"),
]

PEER = Path(__file__).with_name("pjsua2_peer.py")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_wav(path: Path, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)


def read_wav_8k(path: Path) -> bytes:
    """pjsua2's recorder may leave the RIFF sizes at 0 (header is finalised on destroy): read it by hand."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and data[36:40] == b"data", data[:48]
    assert int.from_bytes(data[24:28], "little") == 8000 and int.from_bytes(data[22:24], "little") == 1
    return data[44:]


async def start_peer(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, str(PEER), *args, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def test_pjsua2_calls_our_endpoint(server: Server, tmp_path: Path) -> None:
    server.play = tone(440, 4.0)
    write_wav(tmp_path / "play.wav", tone(700, 5.0))
    proc = await start_peer("call", "--port", str(free_udp_port()), "--rtp-port", str(free_udp_port() // 2 * 2),
                            "--uri", server.uri, "--play", str(tmp_path / "play.wav"), "--record",
                            str(tmp_path / "rec.wav"), "--seconds", "2.5", "--dtmf", "19#")
    out, _ = await asyncio.wait_for(proc.communicate(), 40)
    text = out.decode(errors="replace")
    assert "STATE CONFIRMED" in text and "DONE" in text, text[-3000:]
    await asyncio.sleep(0.2)
    leg = server.legs[0]
    assert leg.end_reason == "remote_bye" and leg.caller == "pj"
    assert "".join(d.digit for d in server.digits[leg.call_id]) == "19#"
    we_heard = loud_part(bytes(server.heard[leg.call_id]))
    assert len(we_heard) > 1.5 * 16000 and abs(dominant_hz(we_heard) - 700) < 20
    it_heard = loud_part(read_wav_8k(tmp_path / "rec.wav"))
    assert len(it_heard) > 1.5 * 16000 and abs(dominant_hz(it_heard) - 440) < 20


async def test_pjsua2_as_answering_agent(tmp_path: Path) -> None:
    port = free_udp_port()
    write_wav(tmp_path / "play.wav", tone(1200, 6.0))
    proc = await start_peer("answer", "--port", str(port), "--rtp-port", str(free_udp_port() // 2 * 2),
                            "--play", str(tmp_path / "play.wav"), "--record", str(tmp_path / "rec.wav"),
                            "--seconds", "15")
    ep = SipEndpoint("127.0.0.1", 0)
    await ep.start()
    try:
        assert proc.stdout is not None
        line = b""
        while b"READY" not in line:
            line = await asyncio.wait_for(proc.stdout.readline(), 10)
        leg = await ep.dial(f"sip:pj@127.0.0.1:{port}", timeout=10)
        leg.send_audio(tone(600, 2.5))
        await asyncio.sleep(0.5)
        leg.send_dtmf("47")
        heard = bytearray()
        loop = asyncio.get_running_loop()
        end = loop.time() + 2.5
        while loop.time() < end:
            item = await asyncio.wait_for(leg.recv(), 2)
            if isinstance(item, AudioFrame):
                heard += item.pcm
            assert not isinstance(item, DtmfDigit)
        await leg.hangup()
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        text = out.decode(errors="replace")
        assert "DTMF 4" in text and "DTMF 7" in text, text[-3000:]
        assert "STATE DISCONNECTED" in text
        we_heard = loud_part(bytes(heard))
        assert len(we_heard) > 1.5 * 16000 and abs(dominant_hz(we_heard) - 1200) < 20
        it_heard = loud_part(read_wav_8k(tmp_path / "rec.wav"))
        assert len(it_heard) > 1.5 * 16000 and abs(dominant_hz(it_heard) - 600) < 20
    finally:
        await ep.stop()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
