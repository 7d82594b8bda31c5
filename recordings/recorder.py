"""StereoRecorder: a call's audio on disk, caller on the left, system and agent on the right."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FRAME_BYTES = 320  # 20 ms of PCM16 at 8 kHz
MAX_PENDING_IN = 50 * FRAME_BYTES  # one second of caller audio waiting for the outgoing clock
FLUSH_FRAMES = 25  # stereo 20 ms frames gathered before one write to the file (0.5 s, 32 KB)
_SILENCE = bytes(FRAME_BYTES)


class _FileThread:
    """The process's recording file thread (background recorders): creating a file cost ~250 µs of kernel
    CPU here, and a thread-pool hop per call more than that on the event loop. Jobs run in order.
    The thread wakes every POLL_S and runs what was queued meanwhile: queuing never wakes it (a wake-up
    per job was ~3.5% of the event loop at 100 calls/s, in the futex and the GIL hand-over after it)."""

    POLL_S = 0.05

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def put(self, fn: Callable[..., None], *args: Any) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._start_lock:
                if self._thread is None or not self._thread.is_alive():
                    # not a daemon: at interpreter exit it finishes the files still queued, then ends
                    self._thread = threading.Thread(target=self._run, name="recordings-io")
                    self._thread.start()
        self._jobs.put((fn, args))

    def _run(self) -> None:
        while True:
            time.sleep(self.POLL_S)
            if not threading.main_thread().is_alive() and self._jobs.empty():
                return  # the interpreter is exiting and every queued file is finished
            while True:
                try:
                    fn, args = self._jobs.get_nowait()
                except queue.Empty:
                    break
                try:
                    fn(*args)
                except Exception:  # a job handles its own errors; this keeps the thread for the other calls
                    log.exception("recordings: file job %s failed", getattr(fn, "__qualname__", fn))


_FILES = _FileThread()


def _settle(fut: asyncio.Future[Path], path: Path) -> None:
    if not fut.done():
        fut.set_result(path)


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

    background=True (the call session, on the event loop): the constructor does no I/O; creating the file,
    the block writes and closing (with compressing/encrypting) run in order on the process's recording file
    thread, and `close_async()` (on the loop) returns the final path. A file that cannot be created or
    written sets `.failed` as above (seen at the next check, not in the constructor).
    """

    def __init__(self, path: str | Path, sample_rate: int = 8000, *, call_id: str = "", compress: bool = False,
                 key: bytes | None = None, background: bool = False) -> None:
        self.path = Path(path)
        self.call_id = call_id or self.path.stem
        self.sample_rate = sample_rate
        self.compress = compress
        self._key = key
        self.background = background
        self._wav: wave.Wave_write | None = None
        self._opened = False  # background: the file thread has been asked to create the file
        self._closed = False
        if not background:
            self._open()
        self._pending_in = bytearray()
        self._lefts: list[bytes] = []  # 20 ms frames not yet written: caller side, and what we sent
        self._rights: list[bytes] = []
        self._lock = threading.Lock()
        self.frames_written = 0
        self.failed = False
        self.paused = False

    def _open(self) -> None:
        """Creates the WAV file (on the file thread for background recorders)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            wav = wave.open(str(self.path), "wb")
            wav.setnchannels(2)
            wav.setsampwidth(2)
            wav.setframerate(self.sample_rate)
        except OSError as exc:
            if not self.background:
                raise
            self._fail(exc)
            return
        self._wav = wav

    def _write(self, block: bytes) -> None:
        """One block to the file (background: on the file thread, after _open)."""
        if self._wav is None:
            return
        try:
            self._wav.writeframesraw(block)
        except OSError as exc:  # disk full must not end the call
            self._fail(exc)

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
        if self.failed or self._closed or (self._wav is None and not self.background):
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
            if self.background:
                _FILES.put(self._write, frame)
            else:
                self._write(frame)
                if self.failed:
                    return
            self.frames_written += 1

    def _flush(self) -> bool:
        """Writes the frames gathered (interleaved at once); False if the recording failed (or had)."""
        if not self._rights:
            return not self.failed if self.background else self._wav is not None
        block = _interleave(b"".join(self._lefts), b"".join(self._rights))
        self._lefts.clear()
        self._rights.clear()
        if self.background:
            if self.failed:
                return False
            if not self._opened:
                self._opened = True
                _FILES.put(self._open)
            _FILES.put(self._write, block)
            return True
        if self._wav is None:
            return False
        self._write(block)
        return not self.failed

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
        """Finishes the file (and compresses/encrypts it); returns its final path.
        Background recorders: close_async() on the loop, or close() from a thread that may block."""
        if self.background:
            done = threading.Event()
            with self._lock:
                self._flush_and_open()

            def finish() -> None:
                try:
                    self._finish()
                finally:
                    done.set()

            _FILES.put(finish)
            done.wait()
            return self.path
        with self._lock:
            if self._wav is not None:
                self._flush()
            self._finish()
        return self.path

    def close_async(self) -> asyncio.Future[Path]:
        """Background recorders, on the event loop: finishes the file on the file thread; the future gets
        the final path (one wake-up of the loop per call)."""
        if not self.background:
            raise RuntimeError("close_async is for background recorders")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Path] = loop.create_future()
        with self._lock:
            self._flush_and_open()

        def finish() -> None:
            try:
                self._finish()
            finally:
                try:
                    loop.call_soon_threadsafe(_settle, fut, self.path)
                except RuntimeError:  # the loop is closed: nobody waits
                    pass

        _FILES.put(finish)
        return fut

    def _flush_and_open(self) -> None:
        """Background close: what is gathered goes to the file thread; a call too short for one block
        still gets its (possibly empty) file."""
        self._closed = True
        if self._rights:
            self._flush()
        if not self._opened and not self.failed:
            self._opened = True
            _FILES.put(self._open)

    def _finish(self) -> None:
        """Closes the WAV and seals it (compress/encrypt); on the file thread for background recorders."""
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

    @property
    def duration_s(self) -> float:
        return self.frames_written * 0.02


def _interleave(left: bytes, right: bytes) -> bytes:
    out = np.empty(len(left), dtype="<i2")  # two channels of len/2 samples each
    out[0::2] = np.frombuffer(left, dtype="<i2")
    out[1::2] = np.frombuffer(right, dtype="<i2")
    return out.tobytes()
