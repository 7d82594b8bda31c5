"""Speculative recognition: start decoding an utterance when the caller pauses, before the endpointer
has decided that the turn is over.

The endpointer ends a turn after ``silence_ms`` (700 ms) of silence but keeps only ``tail_ms``
(300 ms) of it in the utterance. With ``Endpointer.speculate`` on, it emits ``SpeechPaused`` once
``tail_ms`` of silence has passed, holding exactly the audio the utterance will hold if the caller
says nothing more. `SpeculativeDecoder.paused` starts recognising that audio on the executor; when
the `Utterance` comes, `take` hands back the running (often finished) decode if its audio is the
same, byte for byte, and None otherwise (the caller spoke again: the session decodes the utterance
as before). The turn's recognition then overlaps the last 400 ms of the endpointer's wait.

The cost: a pause of 300-700 ms inside a turn decodes audio that is later thrown away (counted in
``wasted``). A speculation not yet started when a newer one comes is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

from asr.endpointer import SpeechPaused, Utterance
from asr.recognizer import Recognizer, Transcript

log = logging.getLogger(__name__)

__all__ = ["SpeculativeDecoder"]


class SpeculativeDecoder:
    """One per call (one caller leg): at most one speculative decode in flight."""

    def __init__(self, recognizer: Recognizer, executor: Executor | None, call_id: str = "") -> None:
        self.recognizer = recognizer
        self.executor = executor
        self.call_id = call_id
        self._pcm = b""
        self._lang = ""
        self._future: asyncio.Future[Transcript] | None = None
        self.started = 0  # speculative decodes started
        self.used = 0  # ... whose result became the turn's transcript
        self.wasted = 0  # ... thrown away (the caller spoke again, or another utterance came)
        self.peeked = 0  # decodes of speech still going on (long backchannels, asr/backchannel.py)

    def paused(self, pause: SpeechPaused, lang: str) -> None:
        """The caller paused: start recognising what they said so far (if the language has a model)."""
        self._drop()
        if lang not in self.recognizer.languages or not pause.pcm:
            return
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self.executor, self.recognizer.transcribe, pause.pcm, pause.sample_rate, lang)
        fut.add_done_callback(_retrieve)  # a failure is reported by take(), or not at all if unused
        self._future, self._pcm, self._lang = fut, pause.pcm, lang
        self.started += 1

    def peek(self, pcm: bytes, sample_rate: int, lang: str) -> asyncio.Future[Transcript] | None:
        """Decodes speech that is still going on (is a long run over a prompt only "okay, sure"?), apart
        from the pause decodes; None if `lang` has no model or there is no audio."""
        if lang not in self.recognizer.languages or not pcm:
            return None
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self.executor, self.recognizer.transcribe, pcm, sample_rate, lang)
        fut.add_done_callback(_retrieve)
        self.peeked += 1
        return fut

    @property
    def pending(self) -> asyncio.Future[Transcript] | None:
        """The decode in flight (or done) for the latest pause, if any; `take` may still claim it."""
        return self._future

    def take(self, utt: Utterance, lang: str) -> asyncio.Future[Transcript] | None:
        """The decode of exactly this utterance if one is running or done, else None."""
        fut = self._future
        if fut is None:
            return None
        if self._pcm == utt.pcm and self._lang == lang and not fut.cancelled():
            self._future, self._pcm = None, b""
            self.used += 1
            log.info("call %s: speculative decode used (%s at the endpoint)", self.call_id,
                     "done" if fut.done() else "running")
            return fut
        self._drop()
        return None

    def _drop(self) -> None:
        fut, self._future, self._pcm = self._future, None, b""
        if fut is not None:
            self.wasted += 1
            stopped = fut.cancel()  # only stops it if the executor has not started it yet
            log.info("call %s: speculative decode discarded (the caller went on speaking; %s)", self.call_id,
                     "not started" if stopped else "CPU spent")


def _retrieve(fut: asyncio.Future[Transcript]) -> None:
    if not fut.cancelled():
        fut.exception()
