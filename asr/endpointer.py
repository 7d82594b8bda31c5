"""Endpointing: turns a stream of PCM frames into speech onsets and whole utterances.

Runs on the 20 ms frame path of every call, so it is pure (no I/O, no threads) and cheap: one VAD
decision per frame plus list appends.

States::

    idle ──(onset_ms of consecutive speech)──▶ speaking  (emits SpeechStarted)
    speaking ──(silence_ms of trailing silence or max_utterance_s)──▶ idle  (emits Utterance,
                                                                            unless it was noise)

With ``speculate`` on, a pause of ``tail_ms`` inside an utterance emits ``SpeechPaused`` with exactly
the audio the utterance will hold if the caller says nothing more: the session starts recognising it
then, ``silence_ms - tail_ms`` before the endpointer decides (asr/speculative.py).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from asr.audio import check_pcm16
from asr.vad import Vad, WebRtcVad

log = logging.getLogger(__name__)

__all__ = ["Endpointer", "SpeechPaused", "SpeechStarted", "Utterance"]


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The caller started speaking (used for barge-in). ``offset_s``: stream time of the onset."""

    offset_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Utterance:
    """One spoken turn: PCM16 mono including the pre-roll before the onset."""

    pcm: bytes
    sample_rate: int
    duration_s: float
    speech_ms: int = 0  # how much of it the VAD called speech
    truncated: bool = False  # cut at max_utterance_s rather than ended by silence


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    """``tail_ms`` of silence inside an utterance (``Endpointer.speculate``): ``pcm`` is the Utterance
    that will follow, byte for byte, unless the caller speaks again before ``silence_ms``."""

    pcm: bytes
    sample_rate: int


class Endpointer:
    """VAD-driven endpointer.

    - ``SpeechStarted`` after ``onset_ms`` (default 80 ms) of consecutive speech frames: a click or a
      single noisy frame does not fire it.
    - ``Utterance`` after ``silence_ms`` of trailing silence (``digit_silence_ms`` in digit mode), or
      when the utterance reaches ``max_utterance_s``. It starts ``pre_roll_ms`` before the first
      speech frame, so the first word survives, and keeps at most ``tail_ms`` of trailing silence.
    - Utterances with less than ``min_speech_ms`` of speech are dropped as noise.

    ``feed`` accepts PCM16 chunks of any even length; they are cut into VAD frames internally.
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        vad: Vad | None = None,
        pre_roll_ms: int = 300,
        silence_ms: int = 700,
        max_utterance_s: float = 15.0,
        min_speech_ms: int = 120,
        *,
        onset_ms: int = 80,
        digit_silence_ms: int = 1500,
        tail_ms: int = 300,
    ) -> None:
        self.vad: Vad = vad if vad is not None else WebRtcVad(sample_rate=sample_rate)
        if self.vad.sample_rate != sample_rate:
            raise ValueError(
                f"the VAD runs at {self.vad.sample_rate} Hz but the endpointer is fed {sample_rate} Hz audio"
            )
        if silence_ms <= 0 or max_utterance_s <= 0 or onset_ms <= 0:
            raise ValueError("silence_ms, onset_ms and max_utterance_s must be positive")
        if pre_roll_ms < 0 or min_speech_ms < 0 or tail_ms < 0:
            raise ValueError("pre_roll_ms, min_speech_ms and tail_ms must not be negative")
        self.sample_rate = sample_rate
        self.frame_ms = self.vad.frame_ms
        self._frame_bytes = sample_rate * self.frame_ms // 1000 * 2
        self.pre_roll_ms = pre_roll_ms
        self.silence_ms = silence_ms
        self.digit_silence_ms = max(digit_silence_ms, silence_ms)
        self.max_utterance_s = max_utterance_s
        self.min_speech_ms = min_speech_ms
        self.onset_ms = onset_ms
        self.tail_ms = tail_ms
        self._onset_frames = max(1, -(-onset_ms // self.frame_ms))
        self._pre_frames = pre_roll_ms // self.frame_ms
        self._max_frames = max(1, int(max_utterance_s * 1000) // self.frame_ms)
        self._tail_frames = tail_ms // self.frame_ms
        self._digit_mode = False
        self.speculate = False  # emit SpeechPaused (not in digit mode: callers pause between digit groups)
        self._pending = b""
        self._frames_seen = 0
        self.reset()

    # -- control ------------------------------------------------------------------------------
    @property
    def digit_mode(self) -> bool:
        return self._digit_mode

    def set_digit_mode(self, on: bool) -> None:
        """While on, waits ``digit_silence_ms`` (not ``silence_ms``) before ending an utterance."""
        self._digit_mode = bool(on)

    @property
    def in_speech(self) -> bool:
        """True between SpeechStarted and the end of that utterance."""
        return self._speaking

    @property
    def speech_ms(self) -> int:
        """Speech (VAD frames) in the current utterance so far; 0 when idle."""
        return self._speech_frames * self.frame_ms if self._speaking else 0

    def reset(self) -> None:
        """Forgets any partial utterance and buffered audio (digit mode is kept)."""
        self._pending = b""
        # idle: recent frames (pre-roll + the onset run being counted)
        self._ring: deque[bytes] = deque(maxlen=self._pre_frames + self._onset_frames)
        self._run = 0  # consecutive speech frames while idle
        self._speaking = False
        self._frames: list[bytes] = []
        self._speech_frames = 0
        self._silence_run = 0

    # -- the frame path -----------------------------------------------------------------------
    def feed(self, pcm: bytes) -> list[SpeechStarted | Utterance | SpeechPaused]:
        """Feeds PCM16 audio (normally one 20 ms frame); returns the events it completed."""
        data = check_pcm16(pcm)
        if self._pending:
            data = self._pending + data
        fb = self._frame_bytes
        n = len(data) // fb
        self._pending = data[n * fb :]
        events: list[SpeechStarted | Utterance | SpeechPaused] = []
        for i in range(n):
            self._step(data[i * fb : (i + 1) * fb], events)
        return events

    def flush(self) -> list[Utterance]:
        """Ends a pending utterance now (e.g. the call ended or the listen timed out)."""
        if not self._speaking:
            self.reset()
            return []
        utt = self._finish(truncated=False)
        return [utt] if utt is not None else []

    def _step(self, frame: bytes, events: list[SpeechStarted | Utterance | SpeechPaused]) -> None:
        self._frames_seen += 1
        speech = self.vad.is_speech(frame)
        if not self._speaking:
            self._ring.append(frame)
            self._run = self._run + 1 if speech else 0
            if self._run >= self._onset_frames:
                self._speaking = True
                self._frames = list(self._ring)
                self._ring.clear()
                self._speech_frames = self._run
                self._silence_run = 0
                self._run = 0
                onset_frame = self._frames_seen - self._onset_frames
                events.append(SpeechStarted(offset_s=onset_frame * self.frame_ms / 1000))
            return
        self._frames.append(frame)
        if speech:
            self._speech_frames += 1
            self._silence_run = 0
        else:
            self._silence_run += 1
        patience = self.digit_silence_ms if self._digit_mode else self.silence_ms
        if self._silence_run * self.frame_ms >= patience:
            utt = self._finish(truncated=False)
            if utt is not None:
                events.append(utt)
        elif len(self._frames) >= self._max_frames:
            utt = self._finish(truncated=True)
            if utt is not None:
                events.append(utt)
        elif (
            self.speculate
            and self._silence_run == max(1, self._tail_frames)
            and not self._digit_mode
            and self._speech_frames * self.frame_ms >= self.min_speech_ms
        ):
            events.append(SpeechPaused(b"".join(self._frames), self.sample_rate))

    def _finish(self, *, truncated: bool) -> Utterance | None:
        frames = self._frames
        if self._silence_run > self._tail_frames:
            frames = frames[: len(frames) - (self._silence_run - self._tail_frames)]
        speech_ms = self._speech_frames * self.frame_ms
        self._speaking = False
        self._frames = []
        self._speech_frames = 0
        self._silence_run = 0
        self._run = 0
        self._ring.clear()
        if speech_ms < self.min_speech_ms:
            log.debug("dropped %d ms of speech as noise", speech_ms)
            return None
        pcm = b"".join(frames)
        return Utterance(
            pcm=pcm,
            sample_rate=self.sample_rate,
            duration_s=len(pcm) / 2 / self.sample_rate,
            speech_ms=speech_ms,
            truncated=truncated,
        )
