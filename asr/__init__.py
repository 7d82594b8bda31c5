"""Speech recognition: voice activity detection, endpointing, recognizers behind one interface."""

from asr.audio import WavFormatError, read_wav, resample, write_wav
from asr.endpointer import Endpointer, SpeechPaused, SpeechStarted, Utterance
from asr.recognizer import (
    Recognizer,
    RecognizerUnavailable,
    Transcript,
    available_backends,
    create_recognizer,
    register_backend,
)
from asr.vad import Vad, WebRtcVad

__all__ = [
    "Endpointer",
    "Recognizer",
    "RecognizerUnavailable",
    "SpeechPaused",
    "SpeechStarted",
    "Transcript",
    "Utterance",
    "Vad",
    "WavFormatError",
    "WebRtcVad",
    "available_backends",
    "create_recognizer",
    "read_wav",
    "register_backend",
    "resample",
    "write_wav",
]
