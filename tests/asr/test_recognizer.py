"""Recognizer registry, errors, and a real round trip: espeak-ng -> 8 kHz -> Endpointer -> whisper."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from asr import (
    Endpointer,
    Recognizer,
    RecognizerUnavailable,
    Transcript,
    Utterance,
    available_backends,
    create_recognizer,
    register_backend,
)


def words(text: str) -> set[str]:
    return set(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


def endpoint(audio: bytes, frames: Callable[[bytes], Iterator[bytes]]) -> list[Utterance]:
    ep = Endpointer()
    utts: list[Utterance] = []
    for f in frames(b"\x00\x00" * 4000 + audio + b"\x00\x00" * 8000):
        utts += [ev for ev in ep.feed(f) if isinstance(ev, Utterance)]
    return utts


# -- registry and errors (no model needed) -------------------------------------------------------
def test_unknown_backend_lists_known_ones() -> None:
    with pytest.raises(RecognizerUnavailable) as err:
        create_recognizer("nonesuch")
    msg = str(err.value)
    assert "asr.backend" in msg and "nonesuch" in msg and "whisper" in msg
    assert err.value.config_key == "asr.backend"


def test_missing_model_path_names_key_path_and_remedy(tmp_path: Path) -> None:
    with pytest.raises(RecognizerUnavailable) as err:
        create_recognizer("whisper", model_path=str(tmp_path / "nowhere"))
    e = err.value
    assert e.config_key == "asr.model_path" and e.path_tried == str(tmp_path / "nowhere")
    assert "CTranslate2" in e.how_to_obtain and "asr.model_path" in str(e)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecognizerUnavailable, match=r"missing model\.bin"):
        create_recognizer("whisper", model_path=str(tmp_path / "empty"))


def test_register_backend() -> None:
    class Echo:
        name = "echo"
        sample_rate = 8000
        languages = frozenset({"en"})

        def transcribe(self, pcm: bytes, sample_rate: int, lang: str, hints: Sequence[str] | None = None) -> Transcript:
            return Transcript("echo", 1.0, lang)

    register_backend("echo-test", lambda model_path=None, threads=2: Echo())
    rec = create_recognizer("echo-test")
    assert isinstance(rec, Recognizer)
    assert rec.transcribe(b"", 8000, "en").text == "echo"
    assert "echo-test" in available_backends()


# -- whisper tiny.en --------------------------------------------------------------------------
def test_whisper_declares_itself(whisper: Recognizer) -> None:
    assert whisper.name == "whisper" and whisper.sample_rate == 16000
    assert whisper.languages == frozenset({"en"})
    assert isinstance(whisper, Recognizer)


def test_empty_short_and_silent_audio_give_empty_transcript(whisper: Recognizer) -> None:
    assert whisper.transcribe(b"", 8000, "en") == Transcript("", 0.0, "en")
    assert whisper.transcribe(b"\x01\x00" * 400, 8000, "en") == Transcript("", 0.0, "en")  # 50 ms
    assert whisper.transcribe(b"\x00\x00" * 8000, 8000, "en") == Transcript("", 0.0, "en")  # digital silence


def test_bad_input_raises_value_error(whisper: Recognizer) -> None:
    with pytest.raises(ValueError, match="odd byte count"):
        whisper.transcribe(b"\x00" * 3201, 8000, "en")
    with pytest.raises(ValueError, match="PCM16 bytes"):
        whisper.transcribe([0, 1, 2], 8000, "en")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample_rate"):
        whisper.transcribe(b"\x00" * 3200, 0, "en")
    with pytest.raises(ValueError, match="lang"):
        whisper.transcribe(b"\x00" * 3200, 8000, "")


def test_mandarin_with_english_model_is_explicitly_unavailable(whisper: Recognizer) -> None:
    with pytest.raises(RecognizerUnavailable) as err:
        whisper.transcribe(b"\x00\x10" * 8000, 8000, "zh")
    assert "asr.model_path" in str(err.value) and "multilingual" in str(err.value)


PHRASES = [
    ("What are your opening hours?", {"opening", "hours"}),
    ("My card was stolen.", {"card", "stolen"}),
    ("I want to speak to an agent, please.", {"speak", "agent"}),
    ("Transfer money to my savings account.", {"transfer", "money", "savings", "account"}),
]


@pytest.mark.slow
@pytest.mark.parametrize(("phrase", "key_words"), PHRASES)
def test_round_trip_espeak_8k_endpointer_whisper(
    whisper: Recognizer, espeak_8k: Callable[[str], bytes], frames: Callable[[bytes], Iterator[bytes]],
    phrase: str, key_words: set[str],
) -> None:
    (utt,) = endpoint(espeak_8k(phrase), frames)
    assert utt.sample_rate == 8000
    t = time.perf_counter()
    tr = whisper.transcribe(utt.pcm, utt.sample_rate, "en")
    took = time.perf_counter() - t
    assert key_words <= words(tr.text), tr
    assert 0.0 < tr.confidence <= 1.0 and tr.lang == "en"
    assert took < 5.0


@pytest.mark.slow
def test_hints_are_passed_as_prompt(whisper: Recognizer, espeak_8k: Callable[[str], bytes]) -> None:
    audio = espeak_8k("I want to check my account balance.")
    tr = whisper.transcribe(audio, 8000, "en", hints=["account balance", "check my balance"])
    assert {"account", "balance"} <= words(tr.text), tr


@pytest.mark.slow
def test_concurrent_transcriptions_from_executor_threads(
    whisper: Recognizer, espeak_8k: Callable[[str], bytes]
) -> None:
    audio = espeak_8k("I lost my credit card.")
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: whisper.transcribe(audio, 8000, "en"), range(3)))
    assert all({"card"} <= words(r.text) for r in results), results
    assert len({r.text for r in results}) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("well come come come come come come", "well come"),
        ("Thank you. See you next time, see you next time, see you next time", "Thank you. See you next time,"),
        ("I lost my card", "I lost my card"),
        ("one one two three", "one one two three"),
        ("press one one one one for balance", "press one one one one for balance"),  # digits are kept
        ("1111 1111 1111", "1111 1111 1111"),
        ("", ""),
    ],
)
def test_collapse_repeats(text: str, expected: str) -> None:
    from asr.whisper_backend import collapse_repeats

    assert collapse_repeats(text) == expected
