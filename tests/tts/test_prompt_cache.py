"""PromptCache: rendering to 8 kHz, caching, single-flight for concurrent requests, LRU bounds."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tts import PromptCache, SynthesisError, create_synthesizer


class CountingSynth:
    """A synthesizer that records its calls: 0.1 s of a 16 kHz tone per call, optionally slow."""

    name = "counting"
    sample_rate = 16000

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.delay = delay
        self.fail = fail
        self._lock = threading.Lock()

    def voice(self, lang: str) -> str:
        return f"v-{lang}"

    def synthesize(self, text: str, lang: str) -> bytes:
        with self._lock:
            self.calls.append((text, lang))
        time.sleep(self.delay)
        if self.fail:
            raise SynthesisError("engine broke")
        t = np.arange(1600) / 16000
        return (np.sin(2 * np.pi * 300 * t) * 32767).astype("<i2").tobytes()  # full scale: must not clip


async def test_render_resamples_to_8k_and_lowers_volume() -> None:
    synth = CountingSynth()
    cache = PromptCache(synth, target_rate=8000)
    pcm = await cache.render("hello", "en")
    assert abs(len(pcm) // 2 - 800) <= 2  # 0.1 s at 8 kHz
    peak = int(np.abs(np.frombuffer(pcm, "<i2").astype(np.int32)).max())
    assert 0.8 * 32767 < peak < 0.95 * 32767


async def test_second_render_is_cached() -> None:
    synth = CountingSynth()
    cache = PromptCache(synth)
    a = await cache.render("Welcome", "en")
    b = await cache.render("Welcome", "en")
    assert a is b and len(synth.calls) == 1
    await cache.render("Welcome", "zh")  # another language is another prompt
    assert len(synth.calls) == 2
    assert cache.cached("Welcome", "en") is a and cache.cached("Other", "en") is None
    assert cache.hits == 1 and cache.misses == 2


async def test_text_is_normalised_before_synthesis() -> None:
    synth = CountingSynth()
    await PromptCache(synth).render("Your balance is $1,234.56", "en")
    assert synth.calls == [("Your balance is one thousand two hundred thirty-four dollars and fifty-six cents", "en")]


async def test_concurrent_renders_synthesise_once() -> None:
    synth = CountingSynth(delay=0.2)
    with ThreadPoolExecutor(max_workers=4) as pool:
        cache = PromptCache(synth, executor=pool)
        results = await asyncio.gather(*(cache.render("Please hold", "en") for _ in range(5)))
    assert len(synth.calls) == 1
    assert all(r == results[0] for r in results)


async def test_failure_reaches_every_waiter_and_is_not_cached() -> None:
    synth = CountingSynth(delay=0.05, fail=True)
    cache = PromptCache(synth)
    results = await asyncio.gather(*(cache.render("x", "en") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, SynthesisError) for r in results)
    assert len(synth.calls) == 1
    synth.fail = False
    assert await cache.render("x", "en")
    assert len(synth.calls) == 2


async def test_lru_bounds_dynamic_text_but_keeps_static_prompts() -> None:
    synth = CountingSynth()
    cache = PromptCache(synth, max_dynamic=3)
    await cache.prerender([("greeting", "en"), ("问候", "zh"), ("greeting", "en"), ("", "en")])
    assert len(synth.calls) == 2  # duplicates and empty texts skipped
    for i in range(10):
        await cache.render(f"your balance is {i}", "en")
    assert len(cache) == 2 + 3
    await cache.render("greeting", "en")
    await cache.render("问候", "zh")
    assert len(synth.calls) == 12  # static prompts survived
    await cache.render("your balance is 9", "en")  # most recent dynamic one is still there
    assert len(synth.calls) == 12
    await cache.render("your balance is 0", "en")  # the oldest was evicted
    assert len(synth.calls) == 13


async def test_key_includes_voice_and_rate() -> None:
    synth = CountingSynth()
    assert PromptCache(synth).key("a", "en") == ("a", "en", "counting", "v-en", 8000)
    assert PromptCache(synth, target_rate=16000).key("a", "en")[-1] == 16000
    with pytest.raises(ValueError):
        PromptCache(synth, target_rate=0)


async def test_real_espeak_prompts_en_and_zh() -> None:
    cache = PromptCache(create_synthesizer("espeak"), target_rate=8000)
    await cache.prerender([("Thank you for calling.", "en"), ("感谢您的来电，请拨95555。", "zh")])
    en = await cache.render("Thank you for calling.", "en")
    zh = await cache.render("感谢您的来电，请拨95555。", "zh")
    assert 0.8 < len(en) / 16000 < 4.0
    assert 2.0 < len(zh) / 16000 < 10.0


async def test_cancelled_caller_does_not_break_the_others() -> None:
    synth = CountingSynth(delay=0.2)
    cache = PromptCache(synth)
    first = asyncio.create_task(cache.render("Goodbye", "en"))
    await asyncio.sleep(0.02)
    second = asyncio.create_task(cache.render("Goodbye", "en"))
    await asyncio.sleep(0.02)
    first.cancel()  # e.g. the first caller hung up
    pcm = await second
    assert pcm and len(synth.calls) == 1
    assert first.cancelled()
    assert cache.cached("Goodbye", "en") == pcm  # rendered once, cached for the next call
