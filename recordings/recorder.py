"""StereoRecorder: a call's audio on disk, caller on the left, system and agent on the right."""

from __future__ import annotations

import logging
import threading
import wave
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FRAME_BYTES = 320  # 20 ms of PCM16 at 8 kHz
MAX_PENDING_IN = 50 * FRAME_BYTES  # one second of caller audio waiting for the outgoing clock


class StereoRecorder:
    """Interleaves what the caller sent with what we sent, paced by the outgoing 20 ms clock.

    The outgoing stream never stops (silence is sent when nothing plays), so it is the clock;
    caller frames wait in a small buffer and fill the left channel as outgoing frames arrive.
    """

    def __init__(self, path: str | Path, sample_rate: int = 8000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sample_rate = sample_rate
        self._wav: wave.Wave_write | None = wave.open(str(self.path), "wb")
        self._wav.setnchannels(2)
        self._wav.setsampwidth(2)
        self._wav.setframerate(sample_rate)
        self._pending_in = bytearray()
        self._lock = threading.Lock()
        self.frames_written = 0
        self.failed = False

    def tap(self, direction: str, pcm: bytes) -> None:
        """Feed from the call leg's tap: direction "in" (caller) or "out" (to the caller)."""
        if self._wav is None or self.failed:
            return
        with self._lock:
            if direction == "in":
                self._pending_in += pcm
                if len(self._pending_in) > MAX_PENDING_IN:
                    del self._pending_in[: len(self._pending_in) - MAX_PENDING_IN]
                return
            left = bytes(self._pending_in[: len(pcm)])
            del self._pending_in[: len(pcm)]
            left = left.ljust(len(pcm), b"\x00")
            try:
                self._wav.writeframesraw(_interleave(left, pcm))
            except OSError as exc:  # disk full must not end the call
                self.failed = True
                log.error("recording %s stopped: %s", self.path, exc)
                return
            self.frames_written += 1

    def close(self) -> None:
        with self._lock:
            if self._wav is not None:
                try:
                    self._wav.close()
                except OSError as exc:
                    log.error("recording %s could not be closed: %s", self.path, exc)
                self._wav = None

    @property
    def duration_s(self) -> float:
        return self.frames_written * 0.02


def _interleave(left: bytes, right: bytes) -> bytes:
    out = np.empty(len(left), dtype="<i2")  # two channels of len/2 samples each
    out[0::2] = np.frombuffer(left, dtype="<i2")
    out[1::2] = np.frombuffer(right, dtype="<i2")
    return out.tobytes()
