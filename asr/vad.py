"""Voice activity detection: a small interface and the webrtcvad implementation (the default)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import webrtcvad

__all__ = ["VAD_KINDS", "Vad", "WebRtcVad", "create_vad"]


@runtime_checkable
class Vad(Protocol):
    """Frame classifier: speech or not. ``sample_rate`` is its native rate; frames are PCM16 mono."""

    sample_rate: int
    frame_ms: int  # the frame length the endpointer should feed (10, 20 or 30 for webrtcvad)

    def is_speech(self, pcm: bytes) -> bool: ...


class WebRtcVad:
    """webrtcvad (the WebRTC GMM VAD). Accepts 10, 20 or 30 ms frames at 8, 16, 32 or 48 kHz.

    ``aggressiveness`` 0 (keeps most audio as speech) to 3 (most eager to call audio non-speech).
    ``min_rms``: frames quieter than this RMS (PCM16 units; 100 is about -50 dBFS) are never speech.
    webrtcvad keeps saying "speech" for ~100 ms after any loud sound (its hangover), so without this
    gate a single click on a quiet line would look like 5 frames of speech.
    """

    RATES = (8000, 16000, 32000, 48000)

    def __init__(
        self, sample_rate: int = 8000, aggressiveness: int = 2, frame_ms: int = 20, *, min_rms: float = 100.0
    ) -> None:
        if sample_rate not in self.RATES:
            raise ValueError(f"webrtcvad supports sample rates {self.RATES}, not {sample_rate}")
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"webrtcvad aggressiveness must be 0-3, not {aggressiveness}")
        if frame_ms not in (10, 20, 30):
            raise ValueError(f"webrtcvad frames are 10, 20 or 30 ms, not {frame_ms}")
        self.sample_rate = sample_rate
        self.aggressiveness = aggressiveness
        self.frame_ms = frame_ms
        self.min_rms = float(min_rms)
        self._min_energy = self.min_rms**2
        self._vad = webrtcvad.Vad(aggressiveness)
        self._frame_bytes = {ms: sample_rate * ms // 1000 * 2 for ms in (10, 20, 30)}

    def is_speech(self, pcm: bytes) -> bool:
        """True when the 10/20/30 ms PCM16 frame holds speech."""
        if len(pcm) not in self._frame_bytes.values():
            raise ValueError(
                f"webrtcvad needs a 10, 20 or 30 ms frame at {self.sample_rate} Hz "
                f"({sorted(self._frame_bytes.values())} bytes), got {len(pcm)} bytes"
            )
        if not self._vad.is_speech(pcm, self.sample_rate):
            return False
        if self._min_energy <= 0:
            return True
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        return float(np.dot(x, x)) / len(x) >= self._min_energy

    def __repr__(self) -> str:
        return f"WebRtcVad(sample_rate={self.sample_rate}, aggressiveness={self.aggressiveness})"


VAD_KINDS = ("webrtc", "silero", "fsmn")


def create_vad(
    kind: str = "webrtc",
    sample_rate: int = 8000,
    *,
    aggressiveness: int = 2,
    threshold: float = 0.5,
    model_path: str | None = None,
    **options: Any,
) -> Vad:
    """One VAD for one call (``asr.vad`` in the settings): ``webrtc`` (``aggressiveness`` 0-3),
    ``silero`` (``threshold``; ``model_path`` = the .onnx file) or ``fsmn`` (``model_path`` = the
    model folder). Silero and FSMN raise ``VadUnavailable`` naming ``asr.vad_model_path`` when their
    model is missing; an unknown kind raises ValueError."""
    if kind == "webrtc":
        return WebRtcVad(sample_rate=sample_rate, aggressiveness=aggressiveness, **options)
    if kind == "silero":
        from asr.silero_vad import SileroVad

        return SileroVad(sample_rate=sample_rate, threshold=threshold, model_path=model_path, **options)
    if kind == "fsmn":
        from asr.fsmn_vad import FsmnVad

        return FsmnVad(sample_rate=sample_rate, model_dir=model_path, **options)
    raise ValueError(f"unknown VAD {kind!r}; choose one of {', '.join(VAD_KINDS)}")
