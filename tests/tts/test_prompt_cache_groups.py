"""PromptCache groups (tts/prompt_cache.py `prerender_group`): a named set of texts replaced as a whole,
bounded by count and bytes, rendered on the executor given, sharing renders with callers."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tts import PromptCache


class Synth:
    """0.1 s of 16 kHz tone per text (1600 bytes at 8 kHz), optionally slow; records calls and threads."""

    name = "counting"
    sample_rate = 16000

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, str]] = []
        self.threads: set[str] = set()
        self.delay = delay
        self._lock = threading.Lock()

    def voice(self, lang: str) -> str:
        return f"v-{lang}"

    def synthesize(self, text: str, lang: str) -> bytes:
        with self._lock:
            self.calls.append((text, lang))
            self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        t = np.arange(1600) / 16000
        return (np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2").tobytes()


async def test_a_group_holds_its_texts_and_a_changed_text_replaces_the_old_one() -> None:
    synth = Synth()
    cache = PromptCache(synth)
    with ThreadPoolExecutor(1, thread_name_prefix="bg") as bg:
        r = await cache.prerender_group("kb", [("Open 9 to 5.", "en"), ("九点到五点。", "zh"), ("Open 9 to 5.", "en")],
                                        executor=bg)
        assert (r.wanted, r.rendered, r.kept, r.dropped, r.skipped) == (2, 2, 0, 0, 0)
        assert synth.threads == {"bg_0"}  # rendered on the executor given
        first = cache.cached("Open 9 to 5.", "en")
        assert first is not None and cache.group_bytes("kb") == r.bytes == 2 * len(first)
        hits = cache.hits
        assert await cache.render("Open 9 to 5.", "en") is first and cache.hits == hits + 1  # no synthesis
        r = await cache.prerender_group("kb", [("Open 8 to 6.", "en"), ("九点到五点。", "zh")], executor=bg)
    assert (r.rendered, r.kept, r.dropped) == (1, 1, 1)
    assert cache.cached("Open 9 to 5.", "en") is None  # the old answer's audio is gone
    assert set(cache.group("kb")) == {("Open 8 to 6.", "en"), ("九点到五点。", "zh")}
    assert len(synth.calls) == 3


async def test_a_group_is_bounded_by_count_and_bytes_and_reuses_audio_already_cached() -> None:
    synth = Synth()
    cache = PromptCache(synth)
    await cache.render("answer 0", "en")  # a caller asked for it already: reused, not synthesised again
    r = await cache.prerender_group("kb", [(f"answer {i}", "en") for i in range(10)], max_items=6,
                                    max_bytes=5 * 1600)
    assert (r.rendered, r.kept, r.skipped) == (5, 1, 5)  # 5 fit in the bytes; 4 over max_items, 1 over bytes
    assert len(cache.group("kb")) == 5 and r.bytes <= 5 * 1600
    assert len(synth.calls) == 6  # "answer 0" once, answers 1-5 (the 6th rendered, then over the byte budget)
    assert cache.cached("answer 0", "en") is not None and cache.cached("answer 7", "en") is None


async def test_a_caller_asking_for_a_text_being_prerendered_waits_for_that_rendering() -> None:
    synth = Synth(delay=0.2)
    cache = PromptCache(synth)
    group = asyncio.ensure_future(cache.prerender_group("kb", [("Our rates", "en")]))
    await asyncio.sleep(0.05)
    pcm = await cache.render("Our rates", "en")
    await group
    assert len(synth.calls) == 1 and cache.group("kb")[("Our rates", "en")] == pcm
    # and the other way round: the group waits for the caller's rendering
    caller = asyncio.ensure_future(cache.render("Branches", "en"))
    await asyncio.sleep(0.05)
    r = await cache.prerender_group("kb", [("Our rates", "en"), ("Branches", "en")])
    assert await caller == cache.group("kb")[("Branches", "en")] and r.rendered == 0 and len(synth.calls) == 2
