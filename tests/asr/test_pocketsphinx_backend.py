"""pocketsphinx backend (US-English model inside the PyPI wheel) with JSGF grammars from hints, on
espeak-ng speech at 8 kHz (upsampled to 16 kHz by the backend)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from asr import create_recognizer
from asr.recognizer import RecognizerUnavailable, available_backends
from asr.streaming import supports_streaming

if TYPE_CHECKING:
    from asr.pocketsphinx_backend import PocketsphinxRecognizer

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pocketsphinx") is None, reason="PyPI package `pocketsphinx` is not installed"
)

MENU = ["one", "two", "three", "agent", "balance", "speak to an agent", "lost card"]
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
Say = Callable[[str], bytes]
PAD = b"\x00\x00" * 2400  # 300 ms of digital silence each side, like the endpointer's pre-roll and tail


@pytest.fixture(scope="module")
def sphinx() -> PocketsphinxRecognizer:
    from asr.pocketsphinx_backend import PocketsphinxRecognizer

    rec = create_recognizer("pocketsphinx")  # ~0.5 s
    assert isinstance(rec, PocketsphinxRecognizer)
    return rec


def test_registered_and_declares_its_rate_and_language(sphinx: PocketsphinxRecognizer) -> None:
    assert "pocketsphinx" in available_backends()
    assert (sphinx.name, sphinx.sample_rate, sphinx.languages) == ("pocketsphinx", 16000, frozenset({"en"}))
    assert supports_streaming(sphinx)


@pytest.mark.parametrize("word", ["one", "two", "three", "agent", "balance", "speak to an agent"])
def test_menu_words_at_8khz(sphinx: PocketsphinxRecognizer, espeak_8k: Say, word: str) -> None:
    t = sphinx.transcribe(PAD + espeak_8k(word) + PAD, 8000, "en", hints=MENU)
    assert t.text == word
    assert t.confidence > 0.5 and t.lang == "en"


def test_digit_hints_allow_a_digit_sequence(sphinx: PocketsphinxRecognizer, espeak_8k: Say) -> None:
    t = sphinx.transcribe(espeak_8k("four five one two"), 8000, "en-US", hints=DIGITS)
    assert t.text == "four five one two"


def test_output_stays_inside_the_grammar(sphinx: PocketsphinxRecognizer, espeak_8k: Say) -> None:
    t = sphinx.transcribe(PAD + espeak_8k("I lost my card") + PAD, 8000, "en", hints=MENU)
    assert t.text in {*MENU, ""}


def test_streaming_gives_partials_and_the_final_phrase(sphinx: PocketsphinxRecognizer, espeak_8k: Say) -> None:
    pcm = espeak_8k("speak to an agent")
    stream = sphinx.open_stream(8000, "en", hints=MENU)
    partials = [stream.accept(pcm[i : i + 320]) for i in range(0, len(pcm), 320)]
    assert stream.finish().text == "speak to an agent"
    assert any(partials)  # partial hypotheses while the audio arrives
    with pytest.raises(RuntimeError):
        stream.finish()


def test_concurrent_decodes_use_separate_decoders(sphinx: PocketsphinxRecognizer, espeak_8k: Say) -> None:
    audio = {w: PAD + espeak_8k(w) + PAD for w in ("one", "agent", "balance", "two")}
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda w: sphinx.transcribe(audio[w], 8000, "en", hints=MENU).text, list(audio) * 2))
    assert got == list(audio) * 2


def test_hints_outside_the_dictionary(sphinx: PocketsphinxRecognizer) -> None:
    grammar = sphinx.grammar_for(["agent", "zzqxv"])
    assert grammar is not None and "agent" in grammar and "zzqxv" not in grammar
    with pytest.raises(ValueError, match="dictionary"):
        sphinx.grammar_for(["zzqxv", "qqxz"])


def test_edge_cases(sphinx: PocketsphinxRecognizer) -> None:
    assert sphinx.transcribe(b"", 8000, "en", hints=MENU).text == ""
    assert sphinx.transcribe(b"\x00\x00" * 8000, 8000, "en", hints=MENU).text == ""
    with pytest.raises(ValueError):
        sphinx.transcribe(b"\x00", 8000, "en")
    with pytest.raises(RecognizerUnavailable) as err:
        sphinx.transcribe(b"\x00\x00" * 8000, 8000, "zh")
    assert err.value.config_key == "asr.backend"


def test_a_missing_model_dir_names_the_config_key(tmp_path: Path) -> None:
    with pytest.raises(RecognizerUnavailable) as err:
        create_recognizer("pocketsphinx", model_path=str(tmp_path / "none"))
    assert err.value.config_key == "asr.model_path" and err.value.path_tried == str(tmp_path / "none")
    with pytest.raises(RecognizerUnavailable, match="mdef"):
        create_recognizer("pocketsphinx", model_path=str(tmp_path))


def test_jsgf_text() -> None:
    from asr.pocketsphinx_backend import jsgf_grammar

    assert jsgf_grammar([["yes"], ["no"]]).endswith("public <hints> = ( yes | no );\n")
    assert "( one | two )+;" in jsgf_grammar([["one"], ["two"]])
    with pytest.raises(ValueError):
        jsgf_grammar([])
