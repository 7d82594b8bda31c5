"""The recognizer interface, its errors and the backend registry.

A backend registers a factory under a name; ``create_recognizer(name, ...)`` builds it. Backends are
imported lazily, so a deployment that never uses one does not pay for (or need) its library.
Later streaming backends (vosk, funasr, pocketsphinx) register the same way and may also offer
``open_stream()``; the per-utterance ``transcribe`` stays the common denominator.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)

__all__ = [
    "Recognizer",
    "RecognizerUnavailable",
    "Transcript",
    "available_backends",
    "create_recognizer",
    "normalize_lang",
    "register_backend",
]


@dataclass(frozen=True, slots=True)
class Transcript:
    """What a recognizer heard. ``confidence`` in [0, 1]; empty text with 0.0 means nothing usable."""

    text: str
    confidence: float
    lang: str


class RecognizerUnavailable(RuntimeError):
    """A recognizer cannot be built or cannot serve a request (missing model, unknown backend,
    language the model does not know). Names the config key, the path tried and how to fix it."""

    def __init__(self, config_key: str, path_tried: str | None, how_to_obtain: str) -> None:
        self.config_key = config_key
        self.path_tried = path_tried
        self.how_to_obtain = how_to_obtain
        tried = f" (tried: {path_tried})" if path_tried else ""
        super().__init__(f"speech recognizer unavailable: check `{config_key}`{tried}. {how_to_obtain}")


@runtime_checkable
class Recognizer(Protocol):
    """Per-utterance speech recognizer.

    ``transcribe`` is blocking CPU work (run it in an executor), resamples to ``sample_rate`` itself
    and is safe to call from several threads at once. Empty or too-short audio gives
    ``Transcript("", 0.0, lang)``; malformed input raises ValueError.
    """

    name: str
    sample_rate: int
    languages: frozenset[str]  # languages this model can transcribe, e.g. {"en"}

    def transcribe(
        self, pcm: bytes, sample_rate: int, lang: str, hints: Sequence[str] | None = None
    ) -> Transcript: ...


def normalize_lang(lang: str) -> str:
    """"en-US" -> "en", "zh_CN"/"cmn" -> "zh"; raises ValueError for a non-string or empty value."""
    if not isinstance(lang, str) or not lang.strip():
        raise ValueError(f"lang must be a language code such as 'en' or 'zh', got {lang!r}")
    base = lang.strip().lower().replace("_", "-").split("-")[0]
    return "zh" if base in ("cmn", "zho", "chi") else base


RecognizerFactory = Callable[..., Recognizer]

# name -> "module:attribute" (lazy) or a factory
_BACKENDS: dict[str, str | RecognizerFactory] = {
    "whisper": "asr.whisper_backend:create_whisper_recognizer",
    "vosk": "asr.vosk_backend:create_vosk_recognizer",
    "pocketsphinx": "asr.pocketsphinx_backend:create_pocketsphinx_recognizer",
    "funasr": "asr.funasr_backend:create_funasr_recognizer",
}


def register_backend(name: str, factory: str | RecognizerFactory) -> None:
    """Registers a backend: a factory ``(model_path=..., threads=..., **options) -> Recognizer`` or a
    lazy ``"module:attribute"`` reference to one."""
    _BACKENDS[name] = factory


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def create_recognizer(
    backend: str = "whisper", *, model_path: str | None = None, threads: int = 2, **options: Any
) -> Recognizer:
    """Builds the named recognizer. Raises RecognizerUnavailable for an unknown backend or a model
    that cannot be found or loaded."""
    entry = _BACKENDS.get(backend)
    if entry is None:
        raise RecognizerUnavailable(
            "asr.backend", backend, f"Unknown recognizer backend {backend!r}; known backends: "
            + ", ".join(available_backends())
        )
    if isinstance(entry, str):
        module_name, _, attr = entry.partition(":")
        try:
            factory: RecognizerFactory = getattr(importlib.import_module(module_name), attr)
        except ImportError as exc:
            raise RecognizerUnavailable(
                "asr.backend", backend, f"The {backend!r} backend needs a library that is not installed ({exc})."
            ) from exc
    else:
        factory = entry
    return factory(model_path=model_path, threads=threads, **options)
