"""The paddlespeech backend refuses to start without its models, naming tts.model_path, the path and
how to get them (paddlespeech and its models are not installed on this machine: only the error
paths can run here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from hotline.settings import Settings
from tts import SynthesizerUnavailable, available_synthesizers, create_synthesizer
from tts.paddlespeech_backend import find_model_files


def test_registered_and_configurable() -> None:
    assert "paddlespeech" in available_synthesizers()
    s = Settings.model_validate({"tts": {"backend": "paddlespeech", "model_path": "/srv/tts/csmsc"}})
    assert s.tts.model_path == "/srv/tts/csmsc"


def test_without_model_path_start_up_fails_naming_the_key_and_how_to_get_models() -> None:
    with pytest.raises(SynthesizerUnavailable) as err:
        create_synthesizer("paddlespeech")
    assert err.value.config_key == "tts.model_path"
    assert "tts.model_path" in str(err.value) and "fastspeech2" in str(err.value) and "am/" in str(err.value)


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    where = tmp_path / "nope"
    with pytest.raises(SynthesizerUnavailable) as err:
        create_synthesizer("paddlespeech", model_path=str(where))
    assert err.value.config_key == "tts.model_path" and err.value.tried == str(where)
    assert "No such directory" in str(err.value)


def test_missing_files_are_listed(tmp_path: Path) -> None:
    (tmp_path / "am").mkdir()
    (tmp_path / "am" / "default.yaml").write_text("fs: 24000\n")
    (tmp_path / "am" / "snapshot_iter_76000.pdz").write_bytes(b"\0")
    with pytest.raises(SynthesizerUnavailable) as err:
        find_model_files(tmp_path)
    msg = str(err.value)
    for missing in ("am/speech_stats.npy", "am/phone_id_map.txt", "voc/*.yaml", "voc/*.pdz", "voc/feats_stats.npy"):
        assert missing in msg
    assert "am/*.yaml" not in msg


def _complete(root: Path) -> None:
    for part, names in (("am", ["default.yaml", "snapshot_iter_76000.pdz", "speech_stats.npy", "phone_id_map.txt"]),
                        ("voc", ["default.yaml", "snapshot_iter_2500000.pdz", "feats_stats.npy"])):
        (root / part).mkdir()
        for n in names:
            (root / part / n).write_bytes(b"\0")


def test_complete_layout_is_found(tmp_path: Path) -> None:
    _complete(tmp_path)
    files = find_model_files(tmp_path)
    assert files["am_ckpt"].endswith("snapshot_iter_76000.pdz") and files["voc_stat"].endswith("feats_stats.npy")


@pytest.mark.skipif(importlib.util.find_spec("paddlespeech") is not None, reason="paddlespeech is installed")
def test_models_present_but_package_missing_names_the_backend_and_the_install(tmp_path: Path) -> None:
    _complete(tmp_path)
    with pytest.raises(SynthesizerUnavailable) as err:
        create_synthesizer("paddlespeech", model_path=str(tmp_path))
    assert err.value.config_key == "tts.backend" and "pip install paddlespeech" in str(err.value)
