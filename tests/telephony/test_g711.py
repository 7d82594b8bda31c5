"""G.711 codecs: the C path (audioop) and the numpy tables agree on every value; the playout queue's
whole-buffer encoding gives the same packets as encoding each 20 ms frame."""

from __future__ import annotations

import random

import numpy as np
import pytest

from telephony import g711
from telephony.endpoint import SipEndpoint
from telephony.leg import FRAME_BYTES, CallLeg

ALL_PCM = np.arange(-32768, 32768, dtype="<i2").tobytes()
ALL_CODES = bytes(range(256))


def test_fast_and_table_codecs_agree_on_every_value() -> None:
    assert g711.ulaw_encode(ALL_PCM) == g711._np_ulaw_encode(ALL_PCM)
    assert g711.alaw_encode(ALL_PCM) == g711._np_alaw_encode(ALL_PCM)
    assert g711.ulaw_decode(ALL_CODES) == g711._np_ulaw_decode(ALL_CODES)
    assert g711.alaw_decode(ALL_CODES) == g711._np_alaw_decode(ALL_CODES)
    assert g711.encode("PCMU", bytes(320)) == g711.silence_payload("PCMU")
    assert g711.encode("PCMA", bytes(320)) == g711.silence_payload("PCMA")


def test_odd_length_pcm_is_refused() -> None:
    with pytest.raises(ValueError):
        g711.ulaw_encode(b"\x01\x02\x03")


class _Sent:
    def __init__(self) -> None:
        self.payloads: list[bytes] = []

    def sendto(self, data: bytes, addr: object) -> None:
        self.payloads.append(data[12:])

    def close(self) -> None:
        pass


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
async def test_buffer_encoded_once_gives_the_per_frame_packets(codec: str) -> None:
    rng = random.Random(7)
    leg = CallLeg(SipEndpoint("127.0.0.1", 0), call_id="unit", caller="a", called="b", is_uas=True)
    sent = _Sent()
    leg._transport = sent  # type: ignore[assignment]
    leg._set_media(codec, 0 if codec == "PCMU" else 8, None, ("127.0.0.1", 9))
    heard: list[bytes] = []
    leg.add_tap(lambda direction, pcm: heard.append(pcm) if direction == "out" else None)
    for _ in range(600):
        r = rng.random()
        if r < 0.1:  # odd sizes too: frames then straddle buffers at odd offsets
            n = rng.choice([1, 3, 159, 320, 321, 640, 1001, 4000, 40001])
            leg.send_audio(rng.randbytes(n))
        elif r < 0.12:
            leg.clear_audio()
        elif r < 0.14:
            leg.duck(-12.0)
        leg._tick()
    assert len(sent.payloads) == len(heard) == 600
    assert sum(1 for pcm in heard if pcm != bytes(FRAME_BYTES)) > 150  # many ticks played queued audio
    for pcm, payload in zip(heard, sent.payloads, strict=True):
        assert payload == g711.encode(codec, pcm)
