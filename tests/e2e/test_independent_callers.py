"""A caller on an independent SIP stack (pjsua2, PJSIP's own C stack) talks to the hotline."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.e2e_server import Server, free_sip_port, start_server, stop_server, write_config

from asr import write_wav

pytest.importorskip("pjsua2", reason="pjsua2-python is in the test extras; install with pip install -e .[test]")
pytestmark = [pytest.mark.slow, pytest.mark.interop, pytest.mark.timeout(180)]

PEER = Path(__file__).resolve().parents[1] / "telephony" / "pjsua2_peer.py"



@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("hotline-pj")
    srv = start_server(write_config(tmp, agent_ports=[free_sip_port()]), tmp / "var")
    yield srv
    stop_server(srv)


def test_pjsua2_caller_barges_in_with_a_question_and_hears_the_answer(
    server: Server, ear: Any, voice: Any, tmp_path: Path
) -> None:
    # Two seconds into the greeting the caller asks; barge-in stops the greeting and the answer follows.
    question = b"\x00\x00" * 16000 + voice("What are your opening hours?") + b"\x00\x00" * 8000 * 40
    write_wav(tmp_path / "say.wav", question, 8000)
    proc = subprocess.run(
        [
            sys.executable, str(PEER), "call", "--port", str(free_sip_port()), "--rtp-port", str(free_sip_port()),
            "--uri", server.uri, "--play", str(tmp_path / "say.wav"), "--record", str(tmp_path / "heard.wav"),
            "--seconds", "22",
        ],
        capture_output=True, text=True, timeout=60,
    )
    assert "STATE CONFIRMED" in proc.stdout, proc.stdout + proc.stderr
    # pjsua2's recorder leaves the RIFF sizes at 0 when the process exits: PCM16 8 kHz after the 44-byte header.
    heard = (tmp_path / "heard.wav").read_bytes()[44:]
    text = ear.transcribe(heard[: len(heard) // 2 * 2], 8000, "en").text.lower()
    assert "monday" in text and "friday" in text, text
    call = server.store.recent_calls(1)[0]
    lines = server.store.get_transcript(call.id)
    assert any(ln.speaker == "caller" and "opening hours" in ln.text.lower() for ln in lines)
    assert any(ln.speaker == "event" and "barged in" in ln.text for ln in lines)


async def test_hotline_on_the_pjsua2_backend_answers_a_keypad_caller(
    tmp_path_factory: pytest.TempPathFactory, ear: Any
) -> None:
    from telephony import TestCaller

    tmp = tmp_path_factory.mktemp("hotline-pjsua2-backend")
    cfg = write_config(
        tmp, agent_ports=[free_sip_port()],
        sip={"backend": "pjsua2", "host": "127.0.0.1", "port": 0, "max_calls": 4,
             "rtp_port_min": 61000, "rtp_port_max": 62000},
    )
    srv = await asyncio.to_thread(start_server, cfg, tmp / "var")
    try:
        async with TestCaller() as tc:
            leg = await tc.call(srv.uri)
            await tc.listen(leg, silence_s=1.5, timeout_s=40)
            tc.send_dtmf(leg, "1")
            pcm = await tc.listen(leg, silence_s=1.5, timeout_s=40)
            text = (await asyncio.to_thread(ear.transcribe, pcm, 8000, "en")).text.lower()
            assert "monday" in text, text + srv.log()[-3000:]
            await leg.hangup()
    finally:
        await asyncio.to_thread(stop_server, srv)
