"""Agents' phones register with the hotline's registrar (digest auth) and are rung at their registered contact:
baresip and pjsua2 (tests/telephony/pjsua2_peer.py) with the right and the wrong password."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import socket
import sys
import wave
from pathlib import Path

import pytest

from telephony import CallLeg, SipEndpoint
from telephony.registrar import Registrar
from telephony.testcaller import dominant_hz, loud_part, tone

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(60)]

PEER = Path(__file__).with_name("pjsua2_peer.py")
needs_baresip = pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip not installed")


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


def baresip_config(d: Path, sip_port: int, hotline_port: int, password: str, *, freq: int) -> None:
    lo = 30000 + (free_udp_port() % 9000) // 2 * 2
    (d / "config").write_text(
        "poll_method epoll\n"
        f"sip_listen 127.0.0.1:{sip_port}\n"
        "audio_player aubridge,nil\naudio_source ausine," + str(freq) + "\naudio_alert aubridge,nil\n"
        "ausrc_srate 48000\nausrc_channels 2\nauplay_srate 48000\nauplay_channels 2\n"
        f"rtp_ports {lo}-{lo + 200}\n"
        "module_path /usr/lib/baresip/modules\n"
        "module stdio.so\nmodule g711.so\nmodule ausine.so\nmodule aubridge.so\n"
        "module_app account.so\nmodule_app menu.so\n"
    )
    (d / "accounts").write_text(
        f"<sip:anna@127.0.0.1:{hotline_port}>;auth_pass={password};regint=120;answermode=auto;"
        "audio_codecs=PCMU,PCMA\n")


async def wait_for(cond: object, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if callable(cond) and cond():
            return True
        await asyncio.sleep(0.05)
    return False


@needs_baresip
@pytest.mark.parametrize("password,registers", [("anna-secret", True), ("wrong", False)])
async def test_baresip_registers_with_digest_and_is_rung_at_its_contact(tmp_path: Path, password: str,
                                                                        registers: bool) -> None:
    reg = Registrar({"anna": "anna-secret"}, algorithms=("MD5",))  # Debian's baresip 1.0 (libre 1.1) knows MD5 only
    ep = SipEndpoint("127.0.0.1", 0, registrar=reg)
    await ep.start()
    phone_port = free_udp_port()
    baresip_config(tmp_path, phone_port, ep.port, password, freq=1500)
    proc = await asyncio.create_subprocess_exec(
        "baresip", "-f", str(tmp_path), "-n", "127.0.0.1", "-t", "10",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        ok = await wait_for(lambda: reg.lookup("anna") is not None, 4.0)
        assert ok is registers, reg.stats
        if not registers:
            assert reg.stats["refused"] >= 1 and reg.stats["registered"] == 0
            return
        contact = reg.lookup("anna")
        assert contact is not None and f":{phone_port}" in contact
        assert set(reg.authenticated_with) == {"MD5"}, reg.authenticated_with
        leg: CallLeg = await ep.dial(contact, timeout=5)  # what the hotline does for a registered agent
        heard = bytearray()
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.5
        while loop.time() < end:
            item = await asyncio.wait_for(leg.recv(), 2)
            if item is not None and hasattr(item, "pcm"):
                heard += item.pcm
        await leg.hangup()
        we_heard = loud_part(bytes(heard))
        assert len(we_heard) > 16000 and abs(dominant_hz(we_heard) - 1500) < 20
    finally:
        proc.terminate()
        out, _ = await proc.communicate()
        await ep.stop()
    if registers:
        assert b"200 OK" in out or b"registered" in out.lower(), out[-1500:]


@pytest.mark.skipif(importlib.util.find_spec("pjsua2") is None, reason="pip install pjsua2-python")
@pytest.mark.parametrize("password,registers", [("anna-secret", True), ("wrong", False)])
async def test_pjsua2_registers_with_sha256_digest_and_is_rung(tmp_path: Path, password: str,
                                                                registers: bool) -> None:
    reg = Registrar({"anna": "anna-secret"})  # the default challenge: SHA-256 first, then MD5 (RFC 8760)
    ep = SipEndpoint("127.0.0.1", 0, registrar=reg)
    await ep.start()
    write_wav(tmp_path / "play.wav", tone(900, 6.0))
    phone_port = free_udp_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(PEER), "answer", "--port", str(phone_port), "--rtp-port", str(free_udp_port() // 2 * 2),
        "--play", str(tmp_path / "play.wav"), "--record", str(tmp_path / "rec.wav"), "--seconds", "6",
        "--register-to", f"sip:127.0.0.1:{ep.port}", "--user", "anna", "--password", password,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        ok = await wait_for(lambda: reg.lookup("anna") is not None, 4.0)
        assert ok is registers, reg.stats
        if not registers:
            assert reg.stats["refused"] >= 1 and reg.stats["registered"] == 0
            return
        contact = reg.lookup("anna")
        assert contact is not None and f":{phone_port}" in contact
        assert set(reg.authenticated_with) == {"SHA-256"}, reg.authenticated_with
        leg: CallLeg = await ep.dial(contact, timeout=5)
        heard = bytearray()
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.5
        while loop.time() < end:
            item = await asyncio.wait_for(leg.recv(), 2)
            if item is not None and hasattr(item, "pcm"):
                heard += item.pcm
        await leg.hangup()
        we_heard = loud_part(bytes(heard))
        assert len(we_heard) > 16000 and abs(dominant_hz(we_heard) - 900) < 20
    finally:
        proc.kill()
        out, _ = await proc.communicate()
        await ep.stop()
    text = out.decode(errors="replace")
    assert "REG 200" in text, text[-2000:]


SIPP_REGISTER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register with digest">
  <send retrans="500">
    <![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:anna@[remote_ip]>;tag=[call_number]
To: <sip:anna@[remote_ip]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:anna@[local_ip]:[local_port]>
Max-Forwards: 70
Expires: 600
Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:anna@[remote_ip]>;tag=[call_number]
To: <sip:anna@[remote_ip]>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:anna@[local_ip]:[local_port]>
[authentication username=anna password=PASSWORD]
Max-Forwards: 70
Expires: 600
Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) not installed")
@pytest.mark.parametrize("password,registers", [("anna-secret", True), ("wrong", False)])
async def test_sipp_registers_with_md5_digest(tmp_path: Path, password: str, registers: bool) -> None:
    reg = Registrar({"anna": "anna-secret"}, algorithms=("MD5",))  # sipp 3.6 (Debian) answers MD5 only
    ep = SipEndpoint("127.0.0.1", 0, registrar=reg)
    await ep.start()
    try:
        scenario = tmp_path / "register.xml"
        scenario.write_text(SIPP_REGISTER.replace("PASSWORD", password))
        port = free_udp_port()
        proc = await asyncio.create_subprocess_exec(
            "sipp", "-sf", str(scenario), f"127.0.0.1:{ep.port}", "-i", "127.0.0.1", "-p", str(port), "-m", "1",
            "-nostdin", "-timeout", "5s", "-recv_timeout", "3000", cwd=tmp_path,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        await asyncio.wait_for(proc.communicate(), 15)
        assert (proc.returncode == 0) is registers, proc.returncode
        if registers:
            assert reg.lookup("anna") == f"sip:anna@127.0.0.1:{port}" and reg.authenticated_with == {"MD5": 1}
        else:
            assert reg.lookup("anna") is None and reg.stats["refused"] == 1
    finally:
        await ep.stop()
