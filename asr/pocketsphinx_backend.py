"""pocketsphinx recognizer: JSGF grammars of expected phrases (menus, yes/no, digits), US English.

The acoustic model and dictionary ship inside the PyPI wheel ``pocketsphinx`` (``model_path=None``)
or come from a pocketsphinx model directory (``asr.model_path``: ``en-us/`` acoustic model folder
plus ``*.dict``). Native rate 16 kHz: 8 kHz telephone audio is upsampled with soxr.

Grammar mode (``hints``): the phrases become one JSGF rule ``( p1 | p2 | ... )``; if every hint is a
single digit word ("zero".."nine", "oh") the rule repeats (``<digit>+``) so a card number spoken
digit by digit is one result. Hint words missing from the dictionary are dropped (logged); a
grammar is compiled once per decoder and reused. Without hints pocketsphinx decodes with its
default English language model, which is unusable for open speech (22-77 % WER): give hints.

Telephone lines are never digitally silent, but test audio and codec silence suppression are; long
runs of exact zeros wreck pocketsphinx's noise and cepstral-mean estimates (measured: 300 ms of
zero padding turned "agent" into nothing). ``comfort_noise_rms`` (default 20, about -64 dBFS) adds
deterministic low-level noise before decoding, and dither is on.

Thread safety: a pocketsphinx ``Decoder`` is not thread-safe; the recognizer keeps a pool of
decoders (one per concurrent decode, created on demand, ~0.4 s each) so several executor threads
can decode at once. A stream holds a decoder from a separate pool until ``finish`` (streamed
decoding leaves live-CMN state that changed later whole-utterance results on the same decoder).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from asr.audio import check_pcm16, resample
from asr.recognizer import RecognizerUnavailable, Transcript, normalize_lang
from asr.streaming import ChunkResampler

log = logging.getLogger(__name__)

__all__ = ["PocketsphinxRecognizer", "PocketsphinxStream", "create_pocketsphinx_recognizer", "jsgf_grammar"]

HOW_TO_OBTAIN = (
    "`pip install pocketsphinx` ships the US-English model (used when `asr.model_path` is empty); or set "
    "`asr.model_path` to a pocketsphinx model directory holding an acoustic model folder (e.g. en-us/ with "
    "mdef, means, variances, ...) and a pronunciation dictionary (*.dict)."
)
MIN_AUDIO_S = 0.1
DIGITS = frozenset("zero oh one two three four five six seven eight nine".split())
_WORD = re.compile(r"[a-z0-9']+")
_PARSER_LOCK = threading.Lock()  # decoder creation and JSGF compilation, shared by all recognizers
#: Starting cepstral mean for streams (live CMN): the mean over espeak-ng phrases at 8 kHz upsampled
#: to 16 kHz. pocketsphinx's built-in start (40,3,-1) lost the last word of "speak to an agent".
STREAM_CMN = "43.93,-3.62,-10.38,12.60,-5.12,-5.29,-1.66,-15.66,1.10,-5.73,1.76,0.83,-8.75"


def _model_files(path: Path) -> dict[str, str]:
    """Decoder paths (hmm, dict, and lm when there is one) found inside a pocketsphinx model directory."""
    if not path.is_dir():
        raise RecognizerUnavailable("asr.model_path", str(path), "No such directory. " + HOW_TO_OBTAIN)
    hmms = sorted(p.parent for p in path.rglob("mdef"))
    dicts = sorted(path.rglob("*.dict"))
    if not hmms or not dicts:
        missing = "an acoustic model folder (with mdef)" if not hmms else "a pronunciation dictionary (*.dict)"
        raise RecognizerUnavailable(
            "asr.model_path", str(path), f"Not a pocketsphinx model directory (no {missing}). " + HOW_TO_OBTAIN
        )
    files = {"hmm": str(hmms[0]), "dict": str(([d for d in dicts if "cmudict" in d.name] or dicts)[0])}
    lms = [p for p in sorted(path.rglob("*.lm.bin")) if "phone" not in p.name]
    if lms:
        files["lm"] = str(lms[0])
    return files


def _words(phrase: str) -> list[str]:
    return _WORD.findall(phrase.lower())


def jsgf_grammar(phrases: Sequence[Sequence[str]]) -> str:
    """Word lists -> a JSGF grammar with one public rule; digit-only single words may repeat."""
    alts = [" ".join(words) for words in phrases if words]
    if not alts:
        raise ValueError("no phrases for the grammar")
    body = "( " + " | ".join(alts) + " )"
    if all(len(w) == 1 and w[0] in DIGITS for w in phrases if w):
        body += "+"
    return f"#JSGF V1.0;\ngrammar hints;\npublic <hints> = {body};\n"


class PocketsphinxRecognizer:
    """See the module docstring."""

    name = "pocketsphinx"
    sample_rate = 16000
    languages: frozenset[str] = frozenset({"en"})

    def __init__(
        self,
        model_path: str | None = None,
        *,
        threads: int = 2,
        comfort_noise_rms: float = 20.0,
        max_grammars: int = 64,
        stream_cmn: str | None = STREAM_CMN,
        **decoder_options: Any,
    ) -> None:
        try:
            import pocketsphinx
        except ImportError as exc:
            raise RecognizerUnavailable(
                "asr.backend", "pocketsphinx", f"pocketsphinx is not installed ({exc}); pip install pocketsphinx"
            ) from exc
        base = Path(model_path).expanduser() if model_path else Path(pocketsphinx.get_model_path())
        files = _model_files(base)
        self._pocketsphinx = pocketsphinx
        self.model_path = str(base)
        self._config: dict[str, Any] = {
            **files, "samprate": self.sample_rate, "dither": True, "loglevel": "FATAL", **decoder_options,
        }
        self.comfort_noise_rms = float(comfort_noise_rms)
        self.stream_cmn = stream_cmn
        self.threads = threads
        self.max_grammars = max_grammars
        self._pool: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Streams get decoders of their own: a streamed (live-CMN) utterance leaves state behind that
        # changed the next whole-utterance decode on that decoder ("agent" -> "speak to an").
        self._stream_pool: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._created = 0
        self._lock = threading.Lock()
        self._grammar_names: dict[int, dict[str, str]] = {}  # id(decoder) -> grammar text -> search name
        t = time.perf_counter()
        try:
            self._pool.put(self._new_decoder())
        except Exception as exc:
            raise RecognizerUnavailable(
                "asr.model_path", str(base), f"The pocketsphinx model failed to load ({exc}). " + HOW_TO_OBTAIN
            ) from exc
        self.load_s = time.perf_counter() - t
        log.info("pocketsphinx model %s loaded in %.2f s", files["hmm"], self.load_s)

    # -- decoders -------------------------------------------------------------------------------
    def _new_decoder(self) -> Any:
        with _PARSER_LOCK:
            decoder = self._pocketsphinx.Decoder(**self._config)
        with self._lock:
            self._created += 1
            self._grammar_names[id(decoder)] = {}
        return decoder

    def _acquire(self, pool: queue.SimpleQueue[Any] | None = None) -> Any:
        try:
            return (pool or self._pool).get_nowait()
        except queue.Empty:
            return self._new_decoder()

    def _release(self, decoder: Any, pool: queue.SimpleQueue[Any] | None = None) -> None:
        (pool or self._pool).put(decoder)

    @property
    def decoders(self) -> int:
        """How many decoders exist (the peak number of concurrent decodes so far)."""
        return self._created

    def grammar_for(self, hints: Sequence[str] | None) -> str | None:
        """The JSGF text ``hints`` compile to (None: default language model); words missing from the
        dictionary are dropped with a warning, and ValueError is raised if no phrase survives."""
        if not hints:
            return None
        decoder = self._acquire()
        try:
            phrases: list[list[str]] = []
            for h in hints:
                if not isinstance(h, str):
                    continue
                words = _words(h)
                unknown = [w for w in words if decoder.lookup_word(w) is None]
                if unknown:
                    log.warning("pocketsphinx: hint %r dropped: %s not in the dictionary", h, ", ".join(unknown))
                    continue
                if words and words not in phrases:
                    phrases.append(words)
        finally:
            self._release(decoder)
        if not phrases:
            raise ValueError(f"none of the hint phrases is in the pocketsphinx dictionary: {list(hints)!r}")
        return jsgf_grammar(phrases)

    def _activate(self, decoder: Any, grammar: str | None) -> None:
        names = self._grammar_names.setdefault(id(decoder), {})
        if grammar is None:
            decoder.activate_search("_default")  # the language model from the decoder's configuration
            return
        name = names.get(grammar)
        if name is None:
            if len(names) >= self.max_grammars:
                with _PARSER_LOCK:
                    for old in names.values():
                        decoder.remove_search(old)
                names.clear()
            name = "g" + hashlib.sha1(grammar.encode()).hexdigest()[:12]
            with _PARSER_LOCK:  # sphinxbase's JSGF parser is not reentrant
                decoder.add_jsgf_string(name, grammar)
            names[grammar] = name
        decoder.activate_search(name)

    def _prepare(self, data: bytes, sample_rate: int, rng: np.random.Generator | None = None) -> bytes:
        """Resampled to 16 kHz with comfort noise added (deterministic for a given input length)."""
        audio = resample(data, sample_rate, self.sample_rate)
        if self.comfort_noise_rms <= 0 or not audio:
            return audio
        x = np.frombuffer(audio, dtype="<i2").astype(np.float32)
        gen = rng if rng is not None else np.random.default_rng(len(x))
        noise = gen.normal(0.0, self.comfort_noise_rms, len(x)).astype(np.float32)
        return np.clip(np.rint(x + noise), -32768, 32767).astype("<i2").tobytes()

    # -- recognition ----------------------------------------------------------------------------
    def transcribe(
        self, pcm: bytes, sample_rate: int, lang: str, hints: Sequence[str] | None = None
    ) -> Transcript:
        data = check_pcm16(pcm)
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")
        self._check_lang(lang)
        grammar = self.grammar_for(hints)
        if len(data) / 2 / sample_rate < MIN_AUDIO_S or not np.any(np.frombuffer(data, dtype="<i2")):
            return Transcript("", 0.0, lang)
        audio = self._prepare(data, sample_rate)
        decoder = self._acquire()
        try:
            self._activate(decoder, grammar)
            decoder.start_utt()
            decoder.process_raw(audio, full_utt=True)
            decoder.end_utt()
            return _transcript(decoder, lang)
        finally:
            self._release(decoder)

    def open_stream(
        self, sample_rate: int, lang: str, hints: Sequence[str] | None = None
    ) -> PocketsphinxStream:
        self._check_lang(lang)
        grammar = self.grammar_for(hints)
        decoder = self._acquire(self._stream_pool)
        try:
            self._activate(decoder, grammar)
            if self.stream_cmn:
                decoder.set_cmn(self.stream_cmn)
            decoder.start_utt()
        except Exception:
            self._release(decoder, self._stream_pool)
            raise
        return PocketsphinxStream(self, decoder, ChunkResampler(sample_rate, self.sample_rate), lang)

    def _check_lang(self, lang: str) -> None:
        if normalize_lang(lang) not in self.languages:
            raise RecognizerUnavailable(
                "asr.backend", "pocketsphinx",
                f"pocketsphinx here has a US-English model only, not {lang!r}; use another backend for it.",
            )

    def __repr__(self) -> str:
        return f"PocketsphinxRecognizer({self.model_path!r})"


GRAMMAR_CONFIDENCE = 0.8
LM_CONFIDENCE = 0.3


def _transcript(decoder: Any, lang: str) -> Transcript:
    hyp = decoder.hyp()
    text = " ".join(hyp.hypstr.split()) if hyp is not None and hyp.hypstr else ""
    if not text:
        return Transcript("", 0.0, lang)
    # pocketsphinx's posterior did not separate right from wrong grammar matches here (0.3-0.5 for
    # both, bestpath on), so the confidence is a fixed value per mode: a grammar match is usually
    # right; the default language model usually is not.
    grammar = decoder.current_search() != "_default"
    return Transcript(text, GRAMMAR_CONFIDENCE if grammar else LM_CONFIDENCE, lang)


class PocketsphinxStream:
    """One utterance decoded as it arrives; ``accept`` returns the partial hypothesis."""

    def __init__(self, owner: PocketsphinxRecognizer, decoder: Any, resampler: ChunkResampler, lang: str) -> None:
        self._owner = owner
        self._decoder: Any = decoder
        self._resampler = resampler
        self._lang = lang
        self._rng = np.random.default_rng(0)

    def accept(self, pcm: bytes) -> str:
        if self._decoder is None:
            raise RuntimeError("this pocketsphinx stream is finished")
        audio = self._resampler.process(pcm)
        if audio:
            self._decoder.process_raw(self._owner._prepare(audio, self._owner.sample_rate, self._rng))
        hyp = self._decoder.hyp()
        return " ".join(hyp.hypstr.split()) if hyp is not None and hyp.hypstr else ""

    def finish(self) -> Transcript:
        decoder = self._decoder
        if decoder is None:
            raise RuntimeError("this pocketsphinx stream is finished")
        self._decoder = None
        try:
            tail = self._resampler.flush()
            if tail:
                decoder.process_raw(self._owner._prepare(tail, self._owner.sample_rate, self._rng))
            decoder.end_utt()
            return _transcript(decoder, self._lang)
        finally:
            self._owner._release(decoder, self._owner._stream_pool)


def create_pocketsphinx_recognizer(
    model_path: str | None = None, threads: int = 2, **options: Any
) -> PocketsphinxRecognizer:
    return PocketsphinxRecognizer(model_path, threads=threads, **options)
