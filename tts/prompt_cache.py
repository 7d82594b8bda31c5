"""Prompt cache: text -> 8 kHz PCM16 telephone audio, rendered once and reused.

``render`` normalises the text, synthesises it in an executor (never on the event loop), resamples
it with soxr (high quality) to ``target_rate`` and lowers the volume slightly so resampling cannot
clip. Results are keyed by (text, lang, synthesizer name, voice, rate). A second request for a key
being rendered waits for the first instead of synthesising twice. Prerendered (static) prompts are
kept for the life of the cache; other (dynamic) texts live in a bounded LRU.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Executor

from asr.audio import resample
from tts.normalize import normalize
from tts.synthesizer import Synthesizer

log = logging.getLogger(__name__)

__all__ = ["PromptCache"]

CacheKey = tuple[str, str, str, str, int]


class PromptCache:
    """See the module docstring. ``gain`` 0.89 is about -1 dB."""

    def __init__(
        self,
        synthesizer: Synthesizer,
        target_rate: int = 8000,
        executor: Executor | None = None,
        *,
        max_dynamic: int = 256,
        gain: float = 0.89,
    ) -> None:
        if target_rate <= 0:
            raise ValueError(f"target_rate must be positive, got {target_rate}")
        self.synthesizer = synthesizer
        self.target_rate = target_rate
        self.executor = executor
        self.max_dynamic = max(0, max_dynamic)
        self.gain = gain
        self._static: dict[CacheKey, bytes] = {}
        self._dynamic: OrderedDict[CacheKey, bytes] = OrderedDict()
        self._inflight: dict[CacheKey, asyncio.Future[bytes]] = {}
        self.hits = 0
        self.misses = 0

    def key(self, text: str, lang: str) -> CacheKey:
        voice_fn = getattr(self.synthesizer, "voice", None)
        voice = str(voice_fn(lang)) if callable(voice_fn) else ""
        return (text, lang, self.synthesizer.name, voice, self.target_rate)

    def __len__(self) -> int:
        return len(self._static) + len(self._dynamic)

    def cached(self, text: str, lang: str) -> bytes | None:
        """The cached audio for (text, lang), or None; does not render."""
        k = self.key(text, lang)
        return self._static.get(k, self._dynamic.get(k))

    async def render(self, text: str, lang: str, *, static: bool = False) -> bytes:
        """8 kHz (``target_rate``) PCM16 for ``text`` in ``lang``; ``static`` pins it in the cache."""
        if not isinstance(text, str):
            raise ValueError(f"text must be str, got {type(text).__name__}")
        k = self.key(text, lang)
        hit = self._static.get(k)
        if hit is None:
            hit = self._dynamic.get(k)
            if hit is not None:
                self._dynamic.move_to_end(k)
                if static:
                    self._static[k] = self._dynamic.pop(k)
        if hit is not None:
            self.hits += 1
            return hit
        pending = self._inflight.get(k)
        if pending is not None:
            self.hits += 1
        else:
            self.misses += 1
            loop = asyncio.get_running_loop()
            pending = asyncio.ensure_future(loop.run_in_executor(self.executor, self._render_blocking, text, lang))
            self._inflight[k] = pending
            pending.add_done_callback(functools.partial(self._finished, k))
        # shield: a caller that is cancelled (its call hung up) does not cancel the rendering the
        # other callers wait for; the result is cached all the same.
        pcm = await asyncio.shield(pending)
        if static and k not in self._static:
            self._dynamic.pop(k, None)
            self._static[k] = pcm
        return pcm

    def _finished(self, k: CacheKey, fut: asyncio.Future[bytes]) -> None:
        self._inflight.pop(k, None)
        if fut.cancelled():
            return
        exc = fut.exception()  # retrieved here, so no "never retrieved" warning
        if exc is not None:
            log.warning("prompt rendering failed for %r: %s", k[0][:60], exc)
            return
        self._store(k, fut.result(), static=False)

    async def prerender(self, items: Iterable[tuple[str, str]]) -> None:
        """Renders (text, lang) pairs and pins them (static prompts). Renders run concurrently,
        bounded by the executor."""
        unique = list(dict.fromkeys((t, lang) for t, lang in items if t and t.strip()))
        t = time.perf_counter()
        await asyncio.gather(*(self.render(text, lang, static=True) for text, lang in unique))
        log.info("prerendered %d prompts in %.2f s", len(unique), time.perf_counter() - t)

    def _store(self, k: CacheKey, pcm: bytes, static: bool) -> None:
        if static:
            self._static[k] = pcm
            return
        if self.max_dynamic == 0:
            return
        self._dynamic[k] = pcm
        self._dynamic.move_to_end(k)
        while len(self._dynamic) > self.max_dynamic:
            self._dynamic.popitem(last=False)

    def _render_blocking(self, text: str, lang: str) -> bytes:
        t = time.perf_counter()
        spoken = normalize(text, lang)
        pcm = self.synthesizer.synthesize(spoken, lang)
        out = resample(pcm, self.synthesizer.sample_rate, self.target_rate, gain=self.gain)
        log.debug(
            "rendered %r (%s) in %.0f ms: %.2f s of audio",
            text[:60], lang, (time.perf_counter() - t) * 1e3, len(out) / 2 / self.target_rate,
        )
        return out
