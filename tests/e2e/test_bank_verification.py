"""A caller verifies with card number and PIN on the keypad and hears their balance, over real SIP;
afterwards the card number and PIN are in none of the database, the log, the transcript or the recording.
A second caller says "please block my card", verifies, picks the card by key and confirms: the sample
bank's card is blocked (not the lost-card advice read out)."""

from __future__ import annotations

import asyncio
import re
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.e2e_server import Server, free_sip_port, start_server, stop_server, write_config

from dialog.samplebank import SampleBank
from telephony import TestCaller

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CARD, PIN = "6222021001234567", "246810"  # demo customer 1 (dialog/bank_cli.py)
CARD2, PIN2 = "4392260012345678", "864209"  # demo customer 2: debit card 5678, credit card 2222


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("bank-e2e")
    cfg = write_config(tmp, agent_ports=[free_sip_port()], endpointing__no_input_s=8.0)
    srv = start_server(cfg, tmp / "var")
    yield srv
    stop_server(srv)


def words(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", " ", text.lower())


async def heard(tc: TestCaller, leg: Any, ear: Any, timeout_s: float = 40) -> str:
    pcm = await tc.listen(leg, silence_s=1.5, timeout_s=timeout_s)
    return words(await asyncio.to_thread(lambda: ear.transcribe(pcm, 8000, "en").text))


def closed_call(server: Server, sip_call_id: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        call = server.store.find_by_sip_call_id(sip_call_id)
        if call is not None and call.ended_at is not None:
            return call
        time.sleep(0.2)
    return None


def no_secret_in(text: str, *, squeeze: bool = True) -> None:
    squeezed = re.sub(r"[^0-9]", "", text) if squeeze else ""  # also "6 2 2 2 ..." or "6222-0210-..." forms
    for secret in (CARD, PIN):
        assert secret not in text and secret not in squeezed, secret


async def test_caller_verifies_on_the_keypad_and_hears_the_balance(server: Server, ear: Any) -> None:
    async with TestCaller() as tc:
        leg = await tc.call(server.uri, from_user="13800002222")
        # Keys cut prompts short (the caller knows the menu): 3 in the greeting, 1 in the accounts menu.
        await asyncio.sleep(1.5)
        tc.send_dtmf(leg, "3")
        await asyncio.sleep(2.0)
        tc.send_dtmf(leg, "1")
        ask_number = await heard(tc, leg, ear)
        assert "card number" in ask_number or "account number" in ask_number, ask_number
        tc.send_dtmf(leg, CARD + "#")
        await tc.listen(leg, silence_s=1.5, timeout_s=40)  # "now please key in your PIN"
        tc.send_dtmf(leg, PIN)
        answer = await heard(tc, leg, ear, timeout_s=60)
        assert "verified" in answer or "balance" in answer, answer  # exact figures: checked in the transcript
        await leg.hangup()

    call = await asyncio.to_thread(closed_call, server, leg.call_id)
    assert call, server.log()[-3000:]
    lines = server.store.get_transcript(call.id)
    system = " ".join(ln.text for ln in lines if ln.speaker == "system")
    assert "52,380.50 yuan" in system and "Wang Fang" in system
    caller = [ln.text for ln in lines if ln.speaker == "caller"]
    assert caller[:2] == ["[key 3]", "[key 1]"] and "[key hidden]" in caller and "[key #]" in caller

    # Nothing stored holds the card number or the PIN: database files, the server log, the transcript.
    var = server.data_dir
    for db in var.glob("hotline.db*"):
        raw = db.read_bytes()
        assert CARD.encode() not in raw and PIN.encode() not in raw, db
    no_secret_in(server.log(), squeeze=False)  # a long log's digits joined would match anything
    no_secret_in(" ".join(ln.text for ln in lines))
    assert "Now please key in your six digit phone banking PIN." in system and "Accounts: press 1" in system
    # The recording paused while the secrets were keyed; its caller side, transcribed, reads neither back
    # (its hotline side is the system lines above, checked word for word).
    assert "recording paused" in server.log() and "recording resumed" in server.log()
    path = Path(call.recording_path)
    with wave.open(str(path)) as w:
        stereo = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)
    assert len(stereo) > 8000 * 10
    caller_side = stereo[:, 0].copy().tobytes()
    no_secret_in(await asyncio.to_thread(lambda: ear.transcribe(caller_side, 8000, "en").text))


async def test_caller_says_block_my_card_and_the_chosen_card_is_blocked(server: Server, ear: Any, voice: Any) -> None:
    async with TestCaller() as tc:
        leg = await tc.call(server.uri, from_user="13800003333")
        await tc.listen(leg, silence_s=1.5, timeout_s=40)  # the greeting
        await tc.play(leg, voice("Please block my card."))
        ask_number = await heard(tc, leg, ear)
        assert "card number" in ask_number or "account number" in ask_number, ask_number
        tc.send_dtmf(leg, CARD2 + "#")
        await tc.listen(leg, silence_s=1.5, timeout_s=40)  # "now please key in your PIN"
        tc.send_dtmf(leg, PIN2)
        await tc.listen(leg, silence_s=1.5, timeout_s=60)  # "verified ... which card? press 1 for ..."
        tc.send_dtmf(leg, "2")  # the credit card ending 2222
        await tc.listen(leg, silence_s=1.5, timeout_s=40)  # "you want to block the card ending 2222 ..."
        tc.send_dtmf(leg, "1")
        done = await heard(tc, leg, ear, timeout_s=60)
        assert "cannot be used" in done, done  # (the recogniser hears "now blocked" as "outlocked")
        await leg.hangup()

    call = await asyncio.to_thread(closed_call, server, leg.call_id)
    assert call, server.log()[-3000:]
    lines = server.store.get_transcript(call.id)
    system = " ".join(ln.text for ln in lines if ln.speaker == "system")
    assert "press 2 for your credit card ending 2222" in system
    assert "Your credit card ending 2222 is now blocked" in system
    assert "mobile app under Cards" not in system  # not the lost-card advice
    bank = SampleBank(f"sqlite:///{server.data_dir / 'bank.db'}")
    try:
        assert {c.last4: c.status for c in bank.cards(2)} == {"5678": "active", "2222": "blocked"}
    finally:
        bank.close()
