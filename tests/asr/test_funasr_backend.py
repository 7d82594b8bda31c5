"""funasr Paraformer backend: registered; without a bank-supplied model every path ends in
RecognizerUnavailable naming `asr.model_path`, the path tried and how to obtain a model. (No
Paraformer model is on the package registries, so decoding itself is not tested here.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from asr import create_recognizer
from asr.funasr_backend import check_model_dir
from asr.recognizer import RecognizerUnavailable, available_backends

STREAMING = ("model.onnx", "decoder.onnx", "config.yaml", "am.mvn", "tokens.json")


def make_dir(root: Path, files: tuple[str, ...]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for f in files:
        (root / f).write_bytes(b"not a real model\n")
    return root


def test_registered() -> None:
    assert "funasr" in available_backends()


def test_no_model_path_says_how_to_obtain_one() -> None:
    with pytest.raises(RecognizerUnavailable) as err:
        create_recognizer("funasr")
    assert err.value.config_key == "asr.model_path" and err.value.path_tried is None
    assert "asr.model_path" in str(err.value) and "paraformer-zh-streaming" in str(err.value)


def test_a_missing_directory_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "paraformer-zh-streaming"
    with pytest.raises(RecognizerUnavailable) as err:
        create_recognizer("funasr", model_path=str(missing))
    assert err.value.config_key == "asr.model_path" and err.value.path_tried == str(missing)
    assert "No such directory" in str(err.value) and "export(type='onnx'" in str(err.value)


def test_an_incomplete_directory_names_the_missing_files(tmp_path: Path) -> None:
    d = make_dir(tmp_path / "m", ("model.onnx", "config.yaml"))
    with pytest.raises(RecognizerUnavailable, match=r"missing am\.mvn, tokens\.json"):
        create_recognizer("funasr", model_path=str(d))
    d2 = make_dir(tmp_path / "n", ("config.yaml", "am.mvn", "tokens.json"))
    with pytest.raises(RecognizerUnavailable, match=r"missing model\.onnx"):
        create_recognizer("funasr", model_path=str(d2))


def test_model_dir_kinds(tmp_path: Path) -> None:
    assert check_model_dir(make_dir(tmp_path / "s", STREAMING))[1:] == (True, False)
    offline = make_dir(tmp_path / "o", ("model_quant.onnx", "config.yaml", "am.mvn", "tokens.json"))
    assert check_model_dir(offline)[1:] == (False, True)
    both = make_dir(tmp_path / "q", (*STREAMING, "model_quant.onnx", "decoder_quant.onnx"))
    assert check_model_dir(both)[1:] == (True, True)


@pytest.mark.skipif(
    importlib.util.find_spec("funasr_onnx") is None, reason="PyPI package `funasr-onnx` is not installed"
)
def test_broken_model_files_fail_to_load_without_any_download(tmp_path: Path) -> None:
    d = make_dir(tmp_path / "broken", STREAMING)
    with pytest.raises(RecognizerUnavailable) as err:
        create_recognizer("funasr", model_path=str(d))
    assert err.value.path_tried == str(d) and "failed to load" in str(err.value)
