"""espeak-ng synthesizer (real subprocess), pinyin conversion, WAV parsing and the registry."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from tts import SynthesisError, Synthesizer, SynthesizerUnavailable, create_synthesizer, register_synthesizer
from tts.espeak_backend import EspeakSynthesizer, parse_wav_stream, to_pinyin


@pytest.fixture(scope="module")
def espeak() -> EspeakSynthesizer:
    synth = create_synthesizer("espeak")
    assert isinstance(synth, EspeakSynthesizer)
    return synth


def seconds(pcm: bytes, rate: int) -> float:
    return len(pcm) / 2 / rate


def rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def test_declares_itself(espeak: EspeakSynthesizer) -> None:
    assert isinstance(espeak, Synthesizer)
    assert espeak.name == "espeak" and espeak.sample_rate == 22050
    assert espeak.voice("en") == "en-us"
    assert espeak.voice("zh-CN") == "cmn-latn-pinyin"
    with pytest.raises(ValueError, match="no espeak-ng voice"):
        espeak.voice("fr")


def test_english_sentence(espeak: EspeakSynthesizer) -> None:
    pcm = espeak.synthesize("Welcome to Example Bank. How can I help you today?", "en")
    assert 2.0 < seconds(pcm, 22050) < 6.0
    assert rms(pcm) > 500


def test_mandarin_sentence_with_numbers(espeak: EspeakSynthesizer) -> None:
    text = "您好，欢迎致电示例银行。我们的营业时间是9:00至17:30。"
    pcm = espeak.synthesize(text, "zh")
    # ~25 syllables at 3-6 syllables a second
    assert 3.0 < seconds(pcm, 22050) < 12.0
    assert rms(pcm) > 500


def test_empty_text_gives_no_audio(espeak: EspeakSynthesizer) -> None:
    assert espeak.synthesize("", "en") == b""
    assert espeak.synthesize("   ", "zh") == b""
    with pytest.raises(ValueError, match="text must be str"):
        espeak.synthesize(None, "en")  # type: ignore[arg-type]


def test_text_starting_with_dash_is_not_an_option(espeak: EspeakSynthesizer) -> None:
    assert seconds(espeak.synthesize("--version please", "en"), 22050) > 0.5


def test_to_pinyin() -> None:
    assert to_pinyin("您好，欢迎致电。") == "nin2 hao3, huan1 ying2 zhi4 dian4."
    assert to_pinyin("绿色的") == "lv4 se4 de5"  # ü as v, neutral tone 5
    assert to_pinyin("九五五五五") == "jiu3 wu3 wu3 wu3 wu3"


def test_parse_wav_stream() -> None:
    pcm = b"\x01\x00\x02\x00"
    header = b"RIFF" + struct.pack("<I", 0x7FFFF000) + b"WAVE"
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 22050, 44100, 2, 16)
    data = b"data" + struct.pack("<I", 0x7FFFF000) + pcm
    assert parse_wav_stream(header + fmt + data) == (pcm, 22050)
    with pytest.raises(SynthesisError, match="did not produce WAV"):
        parse_wav_stream(b"garbage")
    with pytest.raises(SynthesisError, match="no data chunk"):
        parse_wav_stream(header + fmt)


def test_missing_binary_and_unknown_backend() -> None:
    with pytest.raises(SynthesizerUnavailable, match="apt-get install espeak-ng"):
        EspeakSynthesizer(binary="espeak-ng-not-installed")
    with pytest.raises(SynthesizerUnavailable, match="known: espeak"):
        create_synthesizer("festival-xyz")
    with pytest.raises(SynthesizerUnavailable, match="no such voice"):
        EspeakSynthesizer(voices={"zh": "klingon-xx"})


def test_timeout_is_reported() -> None:
    slow = EspeakSynthesizer(timeout=0.001)
    with pytest.raises(SynthesisError, match="timed out"):
        slow.synthesize("A long sentence " * 200, "en")


def test_register_synthesizer() -> None:
    class Beep:
        name = "beep"
        sample_rate = 8000

        def synthesize(self, text: str, lang: str) -> bytes:
            return b"\x00\x10" * 80

        def voice(self, lang: str) -> str:
            return "beep"

    register_synthesizer("beep-test", Beep)
    assert create_synthesizer("beep-test").synthesize("x", "en") == b"\x00\x10" * 80
