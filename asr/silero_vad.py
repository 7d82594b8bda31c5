"""Silero VAD (a small neural VAD) run with onnxruntime alone, behind the ``Vad`` protocol.

The ONNX file ships inside the PyPI package ``silero-vad`` (``silero_vad/data/silero_vad.onnx``).
Importing that package needs torch, so the file is located with ``importlib.util.find_spec`` (which
does not import it) and loaded with onnxruntime directly. A bank may point ``model_path`` at its own
copy of the file.

Silero looks at 32 ms chunks (256 samples at 8 kHz, 512 at 16 kHz) with 4 ms of context before
each. ``is_speech`` takes the endpointer's ``frame_ms`` frames (20 ms by default), buffers them and
runs the model whenever a whole chunk is ready; each frame gets the latest decision, with Silero's
usual hysteresis (speech starts at ``threshold``, ends below ``threshold - 0.15``). Decisions lag
the audio by at most one chunk. One instance per call (it keeps the model's recurrent state); the
ONNX session itself is shared by all instances in the process.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from asr.audio import check_pcm16

log = logging.getLogger(__name__)

__all__ = ["SileroVad", "VadUnavailable", "default_silero_model_path"]

HOW_TO_OBTAIN = (
    "Install the PyPI package `silero-vad` (its data/silero_vad.onnx is used; torch is not needed) "
    "and `onnxruntime`, or set the VAD's model_path to a copy of silero_vad.onnx."
)
_CHUNK = {8000: 256, 16000: 512}
_CONTEXT = {8000: 32, 16000: 64}
_SESSIONS: dict[tuple[str, int], Any] = {}
_SESSIONS_LOCK = threading.Lock()


class VadUnavailable(RuntimeError):
    """A VAD model cannot be found or loaded; names the config key, the path tried and the fix."""

    def __init__(self, config_key: str, path_tried: str | None, how_to_obtain: str) -> None:
        self.config_key = config_key
        self.path_tried = path_tried
        self.how_to_obtain = how_to_obtain
        tried = f" (tried: {path_tried})" if path_tried else ""
        super().__init__(f"voice activity detector unavailable: check `{config_key}`{tried}. {how_to_obtain}")


def default_silero_model_path() -> str | None:
    """``silero_vad/data/silero_vad.onnx`` inside the installed PyPI package, without importing it."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / "silero_vad.onnx"
        if candidate.is_file():
            return str(candidate)
    return None


def _session(path: str, threads: int) -> Any:
    key = (path, threads)
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise VadUnavailable(
                    "asr.vad", "silero", f"onnxruntime is not installed ({exc}). " + HOW_TO_OBTAIN
                ) from exc
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            try:
                session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own exception types for bad files
                raise VadUnavailable(
                    "asr.vad_model_path", path, f"The model failed to load ({exc}). " + HOW_TO_OBTAIN
                ) from exc
            _SESSIONS[key] = session
        return session


class SileroVad:
    """See the module docstring. ``sample_rate`` 8000 or 16000 (the model's own rates)."""

    RATES = (8000, 16000)

    def __init__(
        self,
        sample_rate: int = 8000,
        threshold: float = 0.5,
        frame_ms: int = 20,
        *,
        neg_threshold: float | None = None,
        model_path: str | None = None,
        threads: int = 1,
    ) -> None:
        if sample_rate not in self.RATES:
            raise ValueError(f"Silero VAD runs at {self.RATES} Hz, not {sample_rate}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, not {threshold}")
        if frame_ms <= 0 or frame_ms > 100 or sample_rate * frame_ms % 1000:
            raise ValueError(f"frame_ms must be a whole number of samples up to 100 ms, not {frame_ms}")
        path = model_path or default_silero_model_path()
        if path is None:
            raise VadUnavailable("asr.vad_model_path", None, HOW_TO_OBTAIN)
        if not Path(path).is_file():
            raise VadUnavailable("asr.vad_model_path", str(path), "No such file. " + HOW_TO_OBTAIN)
        self.model_path = str(path)
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.threshold = threshold
        self.neg_threshold = neg_threshold if neg_threshold is not None else max(0.01, threshold - 0.15)
        self._session = _session(self.model_path, threads)
        self._chunk = _CHUNK[sample_rate]
        self._frame_bytes = sample_rate * frame_ms // 1000 * 2
        self._sr = np.array(sample_rate, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        """Forgets the audio so far (a new call or a new turn)."""
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT[self.sample_rate], dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._triggered = False
        self.probability = 0.0

    def is_speech(self, pcm: bytes) -> bool:
        """True while the caller speaks. ``pcm``: one ``frame_ms`` frame of PCM16 at ``sample_rate``."""
        data = check_pcm16(pcm)
        if len(data) != self._frame_bytes:
            raise ValueError(
                f"Silero VAD needs {self.frame_ms} ms frames at {self.sample_rate} Hz "
                f"({self._frame_bytes} bytes), got {len(data)} bytes"
            )
        x = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        self._pending = np.concatenate([self._pending, x])
        while len(self._pending) >= self._chunk:
            chunk, self._pending = self._pending[: self._chunk], self._pending[self._chunk :]
            self._update(self._run(chunk))
        return self._triggered

    def _run(self, chunk: np.ndarray) -> float:
        window = np.concatenate([self._context, chunk])[np.newaxis, :]
        out, self._state = self._session.run(None, {"input": window, "state": self._state, "sr": self._sr})
        self._context = chunk[-len(self._context) :]
        return float(np.asarray(out).reshape(-1)[0])

    def _update(self, p: float) -> None:
        self.probability = p
        if p >= self.threshold:
            self._triggered = True
        elif p < self.neg_threshold:
            self._triggered = False

    def __repr__(self) -> str:
        return f"SileroVad(sample_rate={self.sample_rate}, threshold={self.threshold})"
