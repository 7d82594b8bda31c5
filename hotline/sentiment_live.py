"""The live "angry caller" flag: each caller transcript line is scored (dialog/sentiment.py), the call's
running mood is kept with the call (recordings/sentiment.py) and published as `call.sentiment`.

`SentimentLive(bus, store, write=..., is_local=...)` subscribes to the bus. Only calls this worker runs
are scored (with an MQTT bus the other workers' events arrive too; they score their own). An event is
published when the label or the angry flag changes, and the row is written then and when the call ends,
on the writer it is given (`hotline serve`: the sessions' one database thread, so writes stay in order and
never block the loop). A failed write is logged with the call id; the call goes on.

Acoustic cues: the session hands each caller utterance's audio to `heard(call_id, start_s, pcm, rate)`
(`SessionDeps.caller_audio`, set by `start_sentiment`). Its prosody (asr/prosody.py: level, speech time, pitch)
is measured on this scorer's own thread, never on the event loop; when the transcript line starting at the same
offset arrives, its level, speaking rate and pitch are compared with the caller's earlier lines in this call
(`CallerBaseline`) and `dialog.sentiment.with_voice` adjusts the text score (negative words said louder than
usual: angry). A line whose audio was not measured yet, or never given, is scored on its words alone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from asr.prosody import CallerBaseline, Prosody, measure, speaking_rate
from dialog.sentiment import CallMood, Voice, detect_language, score_line, with_voice
from hotline.events import SentimentChanged
from recordings.sentiment import SentimentStore

log = logging.getLogger(__name__)

MAX_CALLS = 5000  # moods kept in memory; an end that never came (a crash) must not grow this forever
MAX_PENDING = 4  # utterances measured per call and not yet matched to a transcript line
MATCH_S = 0.05  # an utterance and its transcript line start at the same offset (rounded to 10 ms)
MAX_AUDIO_S = 20.0  # longer audio is not measured (the endpointer cuts utterances at 15 s)


class SentimentLive:
    def __init__(
        self,
        bus: Any,
        store: SentimentStore | None,
        *,
        write: Callable[[Callable[[], None]], Any] | None = None,
        is_local: Callable[[str], bool] | None = None,
    ) -> None:
        self.bus, self.store = bus, store
        self._write = write or (lambda fn: fn())
        self._is_local = is_local
        self.moods: dict[str, CallMood] = {}
        self._languages: dict[str, str] = {}
        self._pending: dict[str, dict[float, Future[Prosody]]] = {}
        self._queued: dict[str, list[tuple[str, Future[Prosody] | None]]] = {}  # lines waiting for their audio
        self._baselines: dict[str, CallerBaseline] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._unsubscribe: Callable[[], None] | None = bus.subscribe(self.listener)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def heard(self, call_id: str, start_s: float, pcm: bytes, sample_rate: int) -> None:
        """One caller utterance's audio (from the session's media reader): its prosody is measured on this
        scorer's thread, for the transcript line starting at `start_s`. Never raises: a failure costs the cue."""
        try:
            if self._unsubscribe is None or len(pcm) > MAX_AUDIO_S * sample_rate * 2:
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="caller-voice")
            fut = self._pool.submit(measure, bytes(pcm), sample_rate)
            with self._lock:
                pending = self._pending.get(call_id)
                if pending is None:
                    if len(self._pending) >= MAX_CALLS:
                        del self._pending[next(iter(self._pending))]
                    pending = self._pending[call_id] = {}
                pending[round(start_s, 2)] = fut
                while len(pending) > MAX_PENDING:
                    del pending[next(iter(pending))]
        except Exception as exc:
            log.warning("call %s: caller voice not measured: %s", call_id, exc)

    def flush(self, timeout: float = 5.0) -> bool:
        """Waits (blocking; not on the event loop) until the utterances handed so far are measured; False if
        that took longer than `timeout` seconds."""
        with self._lock:
            futures = [f for pending in self._pending.values() for f in pending.values()]
        try:
            concurrent.futures.wait(futures, timeout=timeout)
        except Exception:
            return False
        return all(f.done() for f in futures)

    def _audio_for(self, call_id: str, offset_s: float | None) -> Future[Prosody] | None:
        """The measurement of the utterance starting at offset_s (taken out); older unmatched ones dropped."""
        if offset_s is None:
            return None
        with self._lock:
            pending = self._pending.get(call_id) or {}
            start = next((t for t in pending if abs(t - offset_s) <= MATCH_S), None)
            fut = pending.pop(start) if start is not None else None
            for t in [t for t in pending if t < offset_s]:  # sounds that never became a line
                del pending[t]
        if fut is None:
            log.debug("call %s: no caller audio starting at %.2f s", call_id, offset_s)
        return fut

    def _voice(self, call_id: str, fut: Future[Prosody] | None, text: str, lang: str) -> Voice | None:
        """The acoustic cues of a line (its measurement done), against the caller's earlier lines."""
        if fut is None:
            return None
        if not fut.done() or fut.cancelled() or fut.exception() is not None:
            log.debug("call %s: caller voice not measured (%s)", call_id, "late" if not fut.done() else "failed")
            return None
        p = fut.result()
        base = self._baselines.get(call_id)
        if base is None:
            if len(self._baselines) >= MAX_CALLS:
                del self._baselines[next(iter(self._baselines))]
            base = self._baselines[call_id] = CallerBaseline()
        rel = base.relative(p, speaking_rate(p, text, lang))
        log.debug("call %s: caller voice %s, against their usual %s", call_id, p, rel)
        return Voice(rel.loud_db, rel.rate_ratio, rel.pitch_ratio)

    def listener(self, event: Any) -> None:
        topic = getattr(event, "topic", "")
        call_id = getattr(event, "call_id", "")
        if topic == "call.transcript" and getattr(event, "speaker", "") == "caller":
            if self._is_local is not None and call_id not in self.moods and not self._is_local(call_id):
                return
            self._line(call_id, str(getattr(event, "text", "")), getattr(event, "offset_s", None))
        elif topic == "call.agent_assigned":
            lang = (getattr(event, "context", None) or {}).get("language")
            if lang:
                self._languages[call_id] = str(lang)
        elif topic == "call.ended":
            for text, fut in self._queued.pop(call_id, []):  # lines still waiting for their audio: score them now
                self._score(call_id, text, fut)
            mood = self.moods.pop(call_id, None)
            self._languages.pop(call_id, None)
            self._baselines.pop(call_id, None)
            with self._lock:
                self._pending.pop(call_id, None)
            if mood is not None:
                self._save(call_id, mood)

    def _line(self, call_id: str, text: str, offset_s: float | None = None) -> None:
        if not text or text.startswith("["):  # "[key hidden]" and other markers are not speech
            return
        fut = self._audio_for(call_id, offset_s)
        queue = self._queued.get(call_id)
        if queue is not None:  # an earlier line waits for its audio: this one waits behind it, in order
            queue.append((text, fut))
            return
        if fut is not None and not fut.done():
            # The words came before the audio was measured (a speculative decode is ready at the endpoint):
            # the line is scored when it is, a millisecond or so later, without blocking the loop.
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                concurrent.futures.wait([fut], timeout=0.5)  # no loop (a script): wait a little
            else:
                self._queued[call_id] = [(text, fut)]
                self._when_measured(fut, call_id, loop)
                return
        self._score(call_id, text, fut)

    def _drain(self, call_id: str) -> None:
        """Scores the lines of a call whose audio is measured now, in order."""
        queue = self._queued.get(call_id)
        while queue:
            text, fut = queue[0]
            if fut is not None and not fut.done():
                self._when_measured(fut, call_id, asyncio.get_running_loop())
                return
            queue.pop(0)
            self._score(call_id, text, fut)
        self._queued.pop(call_id, None)

    def _when_measured(self, fut: Future[Prosody], call_id: str, loop: asyncio.AbstractEventLoop) -> None:
        def done(_: Future[Prosody]) -> None:
            try:
                loop.call_soon_threadsafe(self._drain, call_id)
            except RuntimeError:  # the loop is closed (stopping): nothing more to score
                pass

        fut.add_done_callback(done)

    def _score(self, call_id: str, text: str, fut: Future[Prosody] | None) -> None:
        mood = self.moods.get(call_id)
        if mood is None:
            if len(self.moods) >= MAX_CALLS:
                del self.moods[next(iter(self.moods))]
            mood = self.moods[call_id] = CallMood()
        lang = self._languages.get(call_id) or detect_language(text)
        line = score_line(text, lang)
        try:
            line = with_voice(line, self._voice(call_id, fut, text, lang))
        except Exception as exc:  # the acoustic cue is a bonus: the words are still scored
            log.warning("call %s: caller voice not used: %s", call_id, exc)
        if not mood.add(line) and mood.lines > 1:
            return
        log.info("call %s: caller sentiment %s (%.2f, line %.2f: %s)", call_id, mood.label, mood.score, line.score,
                 ", ".join(line.cues) or "no cue")
        self.bus.publish(SentimentChanged(call_id, mood.score, mood.minimum, mood.label, mood.angry, mood.lines,
                                          line.score))
        self._save(call_id, mood)

    def _save(self, call_id: str, mood: CallMood) -> None:
        store = self.store
        if store is None:
            return
        score, minimum, lines, label, angry = mood.score, mood.minimum, mood.lines, mood.label, mood.ever_angry

        def write() -> None:
            try:
                store.save(call_id, score=score, minimum=minimum, lines=lines, label=label, angry=angry)
            except Exception as exc:
                log.error("call %s: sentiment not saved: %s", call_id, exc)

        try:
            self._write(write)
        except RuntimeError as exc:  # the writer is shut down (stopping)
            log.warning("call %s: sentiment not saved: %s", call_id, exc)


def start_sentiment(hotline: Any, store: Any) -> SentimentLive | None:
    """`hotline serve`: scores this worker's calls, writes on the sessions' database thread."""
    try:
        deps = hotline.deps
        pool = deps.db_pool if deps is not None else None
        live = SentimentLive(
            hotline.bus, SentimentStore(store.engine),
            write=(lambda fn: pool.submit(fn)) if pool is not None else None,
            is_local=lambda cid: any(getattr(s, "call_id", None) == cid for s in hotline.sessions),
        )
    except Exception as exc:  # a sentiment failure costs the flag, never the calls
        log.error("caller sentiment off: %s", exc)
        return None
    if deps is not None and hasattr(deps, "caller_audio"):
        deps.caller_audio = live.heard  # the session hands each caller utterance's audio (acoustic cues)
    return live
