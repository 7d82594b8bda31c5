"""Speech synthesis: text normalisation, synthesizers behind one interface, prompt cache."""

from tts.by_language import LanguageSynthesizers, create_language_synthesizers
from tts.normalize import normalize
from tts.prompt_cache import PromptCache
from tts.synthesizer import (
    SynthesisError,
    Synthesizer,
    SynthesizerUnavailable,
    available_synthesizers,
    create_synthesizer,
    register_synthesizer,
)

__all__ = [
    "LanguageSynthesizers",
    "PromptCache",
    "SynthesisError",
    "Synthesizer",
    "SynthesizerUnavailable",
    "available_synthesizers",
    "create_language_synthesizers",
    "create_synthesizer",
    "normalize",
    "register_synthesizer",
]
