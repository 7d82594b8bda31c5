"""The live "angry caller" flag: each caller transcript line is scored (dialog/sentiment.py), the call's
running mood is kept with the call (recordings/sentiment.py) and published as `call.sentiment`.

`SentimentLive(bus, store, write=..., is_local=...)` subscribes to the bus. Only calls this worker runs
are scored (with an MQTT bus the other workers' events arrive too; they score their own). An event is
published when the label or the angry flag changes, and the row is written then and when the call ends,
on the writer it is given (`hotline serve`: the sessions' one database thread, so writes stay in order and
never block the loop). A failed write is logged with the call id; the call goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dialog.sentiment import CallMood, score_line
from hotline.events import SentimentChanged
from recordings.sentiment import SentimentStore

log = logging.getLogger(__name__)

MAX_CALLS = 5000  # moods kept in memory; an end that never came (a crash) must not grow this forever


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
        self._unsubscribe: Callable[[], None] | None = bus.subscribe(self.listener)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def listener(self, event: Any) -> None:
        topic = getattr(event, "topic", "")
        call_id = getattr(event, "call_id", "")
        if topic == "call.transcript" and getattr(event, "speaker", "") == "caller":
            if self._is_local is not None and call_id not in self.moods and not self._is_local(call_id):
                return
            self._line(call_id, str(getattr(event, "text", "")))
        elif topic == "call.agent_assigned":
            lang = (getattr(event, "context", None) or {}).get("language")
            if lang:
                self._languages[call_id] = str(lang)
        elif topic == "call.ended":
            mood = self.moods.pop(call_id, None)
            self._languages.pop(call_id, None)
            if mood is not None:
                self._save(call_id, mood)

    def _line(self, call_id: str, text: str) -> None:
        if not text or text.startswith("["):  # "[key hidden]" and other markers are not speech
            return
        mood = self.moods.get(call_id)
        if mood is None:
            if len(self.moods) >= MAX_CALLS:
                del self.moods[next(iter(self.moods))]
            mood = self.moods[call_id] = CallMood()
        line = score_line(text, self._languages.get(call_id))
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
    return live
