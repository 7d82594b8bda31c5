"""A caller keys a card number and PIN to verify, over real SIP, with events on a real MQTT broker and
recordings compressed and encrypted at rest. Afterwards neither secret is anywhere: the database files
(the `dtmf` rows hold only "*"), every other file the hotline wrote, the server log (also read as the
digits it shows one by one, in sequence), every event the bus carried, and the recording (decrypted,
decoded and transcribed)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import time
import wave
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from support.e2e_server import Server, free_sip_port, start_server, stop_server, write_config
from support.mosquitto import Mosquitto, running_broker

from hotline.events import Event
from hotline.mqtt_bus import MqttEventBus
from recordings.atrest import KEY_ENV, MAGIC, open_recording
from recordings.models import DtmfRecord
from telephony import TestCaller

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CARD, PIN = "6222021001234567", "246810"  # demo customer 1 (dialog/samplebank.py)
KEY = os.urandom(32)


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    yield from running_broker()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, broker: Mosquitto) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("privacy-e2e")
    cfg = write_config(
        tmp, agent_ports=[free_sip_port()], endpointing__no_input_s=8.0,
        events={"backend": "mqtt", "host": "127.0.0.1", "port": broker.port},
        recordings={"compress": True, "encrypt": True},
    )
    old = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = base64.b64encode(KEY).decode()  # the server process inherits it
    try:
        srv = start_server(cfg, tmp / "var")
    finally:
        if old is None:
            os.environ.pop(KEY_ENV, None)
        else:
            os.environ[KEY_ENV] = old
    yield srv
    stop_server(srv)


def closed_call(server: Server, sip_call_id: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        call = server.store.find_by_sip_call_id(sip_call_id)
        if call is not None and call.ended_at is not None:
            return call
        time.sleep(0.2)
    return None


def lone_digits(text: str) -> str:
    """The digits a text shows one at a time ("DTMF 6 received", "[key 6]"), joined in order: a secret
    spelled out key by key over many lines shows up here as one run."""
    return "".join(re.findall(r"(?<![\w.:,/-])\d(?![\w.:,/%-])", text))


def assert_no_secret(text: str, where: str, *, squeeze: bool = True) -> None:
    forms = [text, lone_digits(text)]
    if squeeze:  # "6222-0210-..." or "6 2 2 2 ..." forms; only for short texts (a long one's digits match anything)
        forms.append(re.sub(r"[^0-9]", "", text))
    for secret in (CARD, PIN):
        for form in forms:
            assert secret not in form, f"{where} holds {secret}"


def test_the_lone_digit_check_catches_keys_logged_one_by_one() -> None:
    leaked = "\n".join(f"12:00:0{i % 10},123 INFO telephony.leg: call 7f3a-{i}@127.0.0.1: DTMF {d} received (rfc4733)"
                       for i, d in enumerate(PIN))
    with pytest.raises(AssertionError, match=PIN):
        assert_no_secret(leaked, "a leaking log", squeeze=False)


async def test_card_number_and_pin_are_nowhere_after_the_call(server: Server, broker: Mosquitto, ear: Any) -> None:
    observer = MqttEventBus("127.0.0.1", broker.port, node="privacy-observer")
    events: list[Event] = []
    observer.subscribe(events.append)
    await observer.start()
    try:
        await observer.connected(10)
        async with TestCaller() as tc:
            leg = await tc.call(server.uri, from_user="13800003333")
            await asyncio.sleep(1.5)  # keys cut prompts short: 3 in the greeting, 1 in the accounts menu
            tc.send_dtmf(leg, "3")
            await asyncio.sleep(2.0)
            tc.send_dtmf(leg, "1")
            await tc.listen(leg, silence_s=1.5, timeout_s=40)  # "please key in your card number ..."
            tc.send_dtmf(leg, CARD + "#")
            await tc.listen(leg, silence_s=1.5, timeout_s=40)  # "now please key in your PIN"
            tc.send_dtmf(leg, PIN)
            await tc.listen(leg, silence_s=1.5, timeout_s=60)  # the balance
            await leg.hangup()
        call = await asyncio.to_thread(closed_call, server, leg.call_id)
        assert call, server.log()[-3000:]
        deadline = time.monotonic() + 10
        while not any(e.topic == "call.ended" and e.call_id == call.id for e in events):
            assert time.monotonic() < deadline, "call.ended never came over MQTT"
            await asyncio.sleep(0.1)
    finally:
        await observer.stop()

    # The caller really verified (otherwise the secrets were never used): the balance was read out.
    store = server.store
    try:
        lines = store.get_transcript(call.id)
        with store.engine.connect() as conn:
            keys = list(conn.execute(select(DtmfRecord).where(DtmfRecord.call_id == call.id)
                                     .order_by(DtmfRecord.at)))
    finally:
        store.close()
    assert "52,380.50 yuan" in " ".join(ln.text for ln in lines if ln.speaker == "system")

    # The keys table: the menu keys as pressed, every secret key as "*".
    assert [(k.digits, k.secret) for k in keys[:2]] == [("3", False), ("1", False)]
    secret_keys = [k for k in keys if k.secret]
    assert len(secret_keys) == len(CARD) + 1 + len(PIN)  # the card number, "#", the PIN
    assert {k.digits for k in secret_keys} == {"*"}

    # Every file the hotline wrote but the bank's own records (which hold the customer's card by design).
    files = [p for p in server.data_dir.rglob("*") if p.is_file() and not p.name.startswith("bank.db")]
    assert any(p.name.startswith("hotline.db") for p in files)
    for path in files:
        raw = path.read_bytes()
        assert CARD.encode() not in raw and PIN.encode() not in raw, path

    # The server log, as a whole and as the digits it shows one at a time.
    log_text = server.log()
    assert "DTMF key received" in log_text  # the keys arrived and were logged, without their values
    assert_no_secret(log_text, "the server log", squeeze=False)

    # Every event the bus carried, as it went over the wire (JSON), each event and all of them in order.
    mine = [e for e in events if e.call_id == call.id]
    assert {"call.started", "call.transcript", "call.intent", "call.ended"} <= {e.topic for e in mine}
    wire = [json.dumps(e.to_dict(), ensure_ascii=False) for e in mine]
    for w in wire:
        assert_no_secret(w, f"the event {w[:80]}")
    assert_no_secret("\n".join(wire), "the events", squeeze=False)

    # The recording: sealed at rest (FLAC, AES-GCM), and what it holds reads neither secret back.
    assert call.recording_path and call.recording_path.endswith(".flac.enc")  # the record names the sealed file
    sealed = [p for p in files if p.name.startswith(call.id)]
    assert [p.name for p in sealed] == [f"{call.id}.flac.enc"], sealed
    assert sealed[0].read_bytes().startswith(MAGIC)
    wav = await asyncio.to_thread(open_recording, call.recording_path, KEY)
    with wave.open(io.BytesIO(wav)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 8000)
        stereo = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert len(stereo) > 8000 * 10
    assert "recording paused" in log_text and "recording resumed" in log_text
    caller_side = stereo[:, 0].copy().tobytes()
    heard = await asyncio.to_thread(lambda: ear.transcribe(caller_side, 8000, "en").text)
    assert_no_secret(heard, "the recording's caller side")

