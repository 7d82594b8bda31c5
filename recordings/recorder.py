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
FLUSH_FRAMES = 25  # stereo 20 ms frames gathered before one write to the file (0.5 s, 32 KB)
_SILENCE = bytes(FRAME_BYTES)


class StereoRecorder:
    """Interleaves what the caller sent with what we sent, paced by the outgoing 20 ms clock.

    The outgoing stream never stops (silence is sent when nothing plays), so it is the clock;
    caller frames wait in a small buffer and fill the left channel as outgoing frames arrive.

    pause()/resume(): while secrets are keyed or spoken, silence is written instead of both sides
    (the recording keeps its length, so it stays in step with the transcript's times).
    A write that fails (disk full) stops the recording, not the call: `.failed` is set and the
    error is logged with the call id; what was written stays on disk.
    Whole 20 ms frames are gathered, then interleaved and written FLUSH_FRAMES at a time: 2.2-4.2 µs per
    frame pair instead of 5.3-9 µs for one numpy interleave and one `wave` write per frame (same bytes).
    On close, `compress` (FLAC) and `key` (AES-GCM, see recordings/atrest.py) turn the WAV into its
    at-rest form; `.path` is then the final file.
    """

    def __init__(self, path: str | Path, sample_rate: int = 8000, *, call_id: str = "", compress: bool = False,
                 key: bytes | None = None) -> None:
        self.path = Path(path)
        self.call_id = call_id or self.path.stem
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sample_rate = sample_rate
        self.compress = compress
        self._key = key
        self._wav: wave.Wave_write | None = wave.open(str(self.path), "wb")
        self._wav.setnchannels(2)
        self._wav.setsampwidth(2)
        self._wav.setframerate(sample_rate)
        self._pending_in = bytearray()
        self._lefts: list[bytes] = []  # 20 ms frames not yet written: caller side, and what we sent
        self._rights: list[bytes] = []
        self._lock = threading.Lock()
        self.frames_written = 0
        self.failed = False
        self.paused = False

    def pause(self) -> None:
        """Write silence from now on (secret entry); caller audio already buffered is dropped."""
        with self._lock:
            self.paused = True
            self._pending_in.clear()
        log.info("call %s: recording paused", self.call_id)

    def resume(self) -> None:
        with self._lock:
            self.paused = False
            self._pending_in.clear()
        log.info("call %s: recording resumed", self.call_id)

    def tap(self, direction: str, pcm: bytes) -> None:
        """Feed from the call leg's tap: direction "in" (caller) or "out" (to the caller)."""
        if self._wav is None or self.failed:
            return
        with self._lock:
            if direction == "in":
                if not self.paused:
                    self._pending_in += pcm
                    if len(self._pending_in) > MAX_PENDING_IN:
                        del self._pending_in[: len(self._pending_in) - MAX_PENDING_IN]
                return
            if len(pcm) == FRAME_BYTES:  # the 20 ms clock: into the block
                if self.paused:
                    self._lefts.append(_SILENCE)
                    self._rights.append(_SILENCE)
                else:
                    pending = self._pending_in
                    if len(pending) >= FRAME_BYTES:
                        self._lefts.append(bytes(pending[:FRAME_BYTES]))
                        del pending[:FRAME_BYTES]
                    else:  # the caller's frame is late or lost: silence fills the gap
                        self._lefts.append(bytes(pending).ljust(FRAME_BYTES, b"\x00"))
                        pending.clear()
                    self._rights.append(bytes(pcm))
                self.frames_written += 1
                if len(self._rights) == FLUSH_FRAMES:
                    self._flush()
                return
            if self.paused:
                frame = bytes(2 * len(pcm))
            else:
                left = bytes(self._pending_in[: len(pcm)])
                del self._pending_in[: len(pcm)]
                frame = _interleave(left.ljust(len(pcm), b"\x00"), pcm)
            if not self._flush():
                return
            try:
                self._wav.writeframesraw(frame)
            except OSError as exc:  # disk full must not end the call
                self._fail(exc)
                return
            self.frames_written += 1

    def _flush(self) -> bool:
        """Writes the frames gathered (interleaved at once); False if the recording failed (or had)."""
        if not self._rights:
            return self._wav is not None
        block = _interleave(b"".join(self._lefts), b"".join(self._rights))
        self._lefts.clear()
        self._rights.clear()
        if self._wav is None:
            return False
        try:
            self._wav.writeframesraw(block)
        except OSError as exc:  # disk full must not end the call
            self._fail(exc)
            return False
        return True

    def _fail(self, exc: OSError) -> None:
        self.failed = True
        log.error("call %s: recording %s stopped, the call goes on without it: %s", self.call_id, self.path, exc)
        if self._wav is not None:
            try:
                self._wav.close()  # flushes what it can and patches the header
            except OSError:
                pass
            self._wav = None

    def close(self) -> Path:
        """Finishes the file (and compresses/encrypts it); returns its final path."""
        with self._lock:
            if self._wav is not None:
                self._flush()
            if self._wav is not None:
                try:
                    self._wav.close()
                except OSError as exc:
                    self.failed = True
                    log.error("call %s: recording %s could not be closed: %s", self.call_id, self.path, exc)
                self._wav = None
                if (self.compress or self._key is not None) and self.path.suffix == ".wav" and self.path.exists():
                    from recordings.atrest import seal

                    try:
                        self.path = seal(self.path, compress=self.compress, key=self._key)
                    except (OSError, RuntimeError) as exc:
                        log.error("call %s: recording %s kept as WAV; compressing/encrypting failed: %s",
                                  self.call_id, self.path, exc)
        return self.path

    @property
    def duration_s(self) -> float:
        return self.frames_written * 0.02


def _interleave(left: bytes, right: bytes) -> bytes:
    out = np.empty(len(left), dtype="<i2")  # two channels of len/2 samples each
    out[0::2] = np.frombuffer(left, dtype="<i2")
    out[1::2] = np.frombuffer(right, dtype="<i2")
    return out.tobytes()
