"""create_vad: the `asr.vad` setting's choices, and the errors a bad choice gives at start-up."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from pydantic import ValidationError

from asr import Endpointer
from asr.silero_vad import VadUnavailable
from asr.vad import WebRtcVad, create_vad
from hotline.settings import Settings


def test_webrtc_is_the_default_and_takes_the_aggressiveness() -> None:
    vad = create_vad()
    assert isinstance(vad, WebRtcVad) and vad.aggressiveness == 2
    assert create_vad("webrtc", 8000, aggressiveness=3).aggressiveness == 3  # type: ignore[attr-defined]


@pytest.mark.skipif(importlib.util.find_spec("silero_vad") is None, reason="PyPI silero-vad not installed")
def test_silero_runs_in_the_endpointer_with_its_threshold(tone: object) -> None:
    vad = create_vad("silero", 8000, threshold=0.6)
    assert vad.threshold == 0.6  # type: ignore[attr-defined]
    ep = Endpointer(8000, vad=vad)
    assert ep.feed(b"\x00\x00" * 160) == []


def test_a_missing_silero_model_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(VadUnavailable) as err:
        create_vad("silero", 8000, model_path=str(tmp_path / "missing.onnx"))
    assert err.value.config_key == "asr.vad_model_path"


@pytest.mark.skipif(importlib.util.find_spec("funasr_onnx") is None, reason="funasr-onnx not installed")
def test_a_missing_fsmn_model_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(VadUnavailable) as err:
        create_vad("fsmn", 8000, model_path=str(tmp_path))
    assert err.value.config_key == "asr.vad_model_path" and "model.onnx" in str(err.value)


def test_unknown_vad_is_refused_by_the_factory_and_the_settings() -> None:
    with pytest.raises(ValueError, match="webrtc, silero, fsmn"):
        create_vad("energy")
    with pytest.raises(ValidationError):
        Settings.model_validate({"asr": {"vad": "energy"}})
    s = Settings.model_validate({"asr": {"vad": "silero", "vad_threshold": 0.6}, "barge_in": {"confirm_ms": 80}})
    assert s.asr.vad == "silero" and s.barge_in.confirm_ms == 80 and s.barge_in.echo_guard
