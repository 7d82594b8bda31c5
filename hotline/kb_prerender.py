"""Knowledge-base answers rendered into the prompt cache before a caller asks (issue #3).

A caller's question answered from the knowledge base is spoken as `Say(answer, lang)` (dialog/engine.py),
then the "anything else?" prompt (or the entry's follow-up). Synthesising a new answer costs the first
caller 50-100 ms before its first frame (docs/SPEECH.md); `KbPrerender` renders every in-force entry's
answer in each language the flow offers (the text and language the session will ask the cache for, so
the same cache key) into the prompt cache's group "knowledge" (tts/prompt_cache.py `prerender_group`):

- after start-up, in the background: it waits `tts.kb_prerender_delay_s`, so the first call is never
  delayed, then renders one text at a time on its own thread at a lower CPU priority (nice +10), with a
  short pause between texts;
- when a new knowledge-base version goes live (hotline/knowledge_live.py `LiveKnowledge.on_swap`): the
  group is replaced by the new answers: a changed answer's old audio is dropped, the new one rendered;
- bounded: at most `tts.kb_prerender_max_entries` texts and `tts.kb_prerender_max_mb` of audio
  (8 kHz PCM16: 16 kB a second; the bank flow's 16 texts in en and zh take 3.3 MB).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dialog import DialogEngine
from dialog.flow import FAQ_PREFIX
from tts import PromptCache
from tts.prompt_cache import GroupReport

log = logging.getLogger(__name__)

__all__ = ["GROUP", "KbPrerender", "answer_prompts", "start_kb_prerender"]

GROUP = "knowledge"


def answer_prompts(engine: DialogEngine) -> list[tuple[str, str]]:
    """(text, lang) of every in-force knowledge answer in each language the flow offers, as the session
    will speak it, then the prompts said right after an answer (follow-ups, "anything else?")."""
    flow = engine.flow
    kb = flow.knowledge
    items: list[tuple[str, str]] = []
    after: list[tuple[str, str]] = []
    for lang in flow.languages:
        for entry in kb.entries:
            if not entry.answer or not kb.in_force(entry.id):
                continue
            items.append((kb.answer(entry.id, lang), lang))
            follow = flow.config.follow_ups.get(FAQ_PREFIX + entry.id)
            text = follow.say.get(lang) if follow is not None else None
            if text and "{" not in text:
                after.append((text, lang))
        anything_else = flow.config.prompts.anything_else.get(lang)
        if anything_else:
            after.append((anything_else, lang))
    return list(dict.fromkeys(items + after))


def _lower_priority() -> None:
    """The prerender thread (and the espeak-ng processes it starts) yields the CPU to calls."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class KbPrerender:
    """One per server: keeps the prompt cache's "knowledge" group equal to the live answers."""

    def __init__(self, prompts: PromptCache, *, max_entries: int = 400, max_mb: float = 32.0,
                 delay_s: float = 2.0, pause_s: float = 0.02) -> None:
        self.prompts = prompts
        self.max_entries = max_entries
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.delay_s = delay_s
        self.pause_s = pause_s
        self.last: GroupReport | None = None
        self.runs = 0  # finished prerenders
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-prerender", initializer=_lower_priority)
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.done = asyncio.Event()  # set after each finished run (tests, benchmarks)

    def schedule(self, engine: DialogEngine, delay_s: float | None = None) -> None:
        """(Re)starts the prerender for `engine`'s answers (on the event loop); a running one is cancelled."""
        self._loop = asyncio.get_running_loop()
        if self._task is not None:
            self._task.cancel()
        self.done.clear()
        self._task = asyncio.ensure_future(self._run(engine, self.delay_s if delay_s is None else delay_s))

    def swapped(self, engine: DialogEngine) -> None:
        """`LiveKnowledge.on_swap`: called from whatever thread published; re-render on the event loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self.schedule, engine, 0.0)

    async def _run(self, engine: DialogEngine, delay_s: float) -> None:
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        items = answer_prompts(engine)
        try:
            self.last = await self.prompts.prerender_group(
                GROUP, items, max_items=self.max_entries, max_bytes=self.max_bytes, executor=self._pool,
                pause_s=self.pause_s)
        except RuntimeError as exc:  # the pool shut down (server stopping)
            log.info("knowledge answers not prerendered: %s", exc)
            return
        self.runs += 1
        self.done.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._pool.shutdown(wait=False, cancel_futures=True)


def start_kb_prerender(hotline: Any) -> KbPrerender | None:
    """For `Hotline.start()` after the SIP endpoint is up: prerenders the live answers in the background and
    again on each publish (`tts.kb_prerender*` settings; `tts.kb_prerender: false` turns it off)."""
    ts = hotline.settings.tts
    if not ts.kb_prerender or hotline.deps is None:
        return None
    pre = KbPrerender(hotline.deps.prompts, max_entries=ts.kb_prerender_max_entries, max_mb=ts.kb_prerender_max_mb,
                      delay_s=ts.kb_prerender_delay_s)
    pre.schedule(hotline.deps.engine)
    live = hotline.knowledge
    if live is not None:
        live.on_swap.append(pre.swapped)
        live.on_stop.append(pre.stop)
    return pre
