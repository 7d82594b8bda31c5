"""FunASR Paraformer recognizer (Mandarin) through ``funasr-onnx``: streaming or whole-utterance.

No Paraformer model is on the package registries, so the bank supplies one as a directory
(config key ``asr.model_path``), exported to ONNX on a machine with internet, for example::

    pip install funasr modelscope onnx
    python -c "from funasr import AutoModel; \
        AutoModel(model='paraformer-zh-streaming').export(type='onnx', quantize=True)"
    # -> ~/.cache/modelscope/hub/iic/speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-online

Streaming directory (``paraformer-zh-streaming``): ``model.onnx`` + ``decoder.onnx`` (or the
``*_quant.onnx`` pair, preferred when present), ``config.yaml``, ``am.mvn``, ``tokens.json``.
A directory without a decoder (``paraformer-zh``, offline) is loaded with the offline Paraformer:
``transcribe`` works, ``open_stream`` does not. The files are checked before funasr-onnx sees the
path: given a missing path it would try to download, given a missing ONNX file it would try to export.

Streaming: audio goes in 600 ms chunks (``chunk_size=[5, 10, 5]``, 60 ms frames); ``accept``
returns the text so far. funasr-onnx keeps streaming state in the model object's frontend, so
every stream has its own frontend and cache and swaps its frontend in under the model's lock for
each chunk: many streams share one model; ``workers`` models decode in parallel.
``hints`` are ignored (Paraformer has no grammar). Confidence is a fixed 0.7 for non-empty text:
funasr-onnx exposes no usable score.
"""

from __future__ import annotations

import logging
import queue
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

__all__ = ["FunasrRecognizer", "FunasrStream", "check_model_dir", "create_funasr_recognizer"]

HOW_TO_OBTAIN = (
    "Set `asr.model_path` to a FunASR Paraformer ONNX directory (model.onnx or model_quant.onnx, plus "
    "decoder.onnx/decoder_quant.onnx for streaming, config.yaml, am.mvn, tokens.json). No such model is on "
    "the package registries: on a machine with internet run `pip install funasr modelscope onnx` and "
    "`AutoModel(model='paraformer-zh-streaming').export(type='onnx', quantize=True)`, then copy the "
    "exported directory here. Install `funasr-onnx` to load it."
)
CONFIDENCE = 0.7
MIN_AUDIO_S = 0.1
_REQUIRED = ("config.yaml", "am.mvn", "tokens.json")


def check_model_dir(path: str | Path) -> tuple[Path, bool, bool]:
    """-> (directory, streaming, quantized). Raises RecognizerUnavailable naming what is missing."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise RecognizerUnavailable("asr.model_path", str(p), "No such directory. " + HOW_TO_OBTAIN)
    missing = [f for f in _REQUIRED if not (p / f).is_file()]
    has = {f: (p / f).is_file() for f in ("model.onnx", "model_quant.onnx", "decoder.onnx", "decoder_quant.onnx")}
    # the int8 pair when it is complete (faster on CPU), else the float pair
    float_files = has["decoder.onnx"] or has["model.onnx"]
    quantized = has["model_quant.onnx"] and (has["decoder_quant.onnx"] or not float_files)
    if not (quantized or has["model.onnx"]):
        missing.append("model.onnx")
    if missing:
        raise RecognizerUnavailable(
            "asr.model_path", str(p),
            f"Not a Paraformer ONNX directory (missing {', '.join(missing)}). " + HOW_TO_OBTAIN,
        )
    streaming = has["decoder_quant.onnx"] if quantized else has["decoder.onnx"]
    return p, streaming, quantized


def _native_rate(path: Path) -> int:
    try:
        import yaml

        conf = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
        return int(conf.get("frontend_conf", {}).get("fs", 16000))
    except Exception:  # unreadable config: funasr-onnx will say so when loading
        return 16000


def _text(result: Any) -> str:
    """funasr-onnx result list -> text ("preds" is (sentence, ...) from sentence_postprocess)."""
    out = []
    for item in result or []:
        preds = item.get("preds") if isinstance(item, dict) else None
        if isinstance(preds, list | tuple) and preds:
            out.append(str(preds[0]))
        elif isinstance(preds, str):
            out.append(preds)
    return "".join(out)


class FunasrRecognizer:
    """See the module docstring."""

    name = "funasr"

    def __init__(
        self,
        model_path: str | None = None,
        *,
        threads: int = 2,
        workers: int = 1,
        languages: Sequence[str] = ("zh",),
        chunk_size: Sequence[int] = (5, 10, 5),
    ) -> None:
        if model_path is None:
            raise RecognizerUnavailable("asr.model_path", None, "No Paraformer model configured. " + HOW_TO_OBTAIN)
        path, streaming, quantized = check_model_dir(model_path)
        try:
            if streaming:
                from funasr_onnx.paraformer_online_bin import Paraformer as ModelClass
            else:
                from funasr_onnx import Paraformer as ModelClass
        except ImportError as exc:
            raise RecognizerUnavailable(
                "asr.backend", "funasr", f"funasr-onnx is not installed ({exc}); pip install funasr-onnx"
            ) from exc
        self.model_path = str(path)
        self.streaming = streaming
        self.quantized = quantized
        self.sample_rate = _native_rate(path)
        self.languages: frozenset[str] = frozenset(normalize_lang(lang) for lang in languages)
        self.chunk_size = [int(c) for c in chunk_size]
        # samples per streaming step: chunk_size[1] frames of 60 ms
        self._stride = self.chunk_size[1] * 60 * self.sample_rate // 1000
        per_worker = max(1, threads // max(1, workers))
        t = time.perf_counter()
        self._models: queue.SimpleQueue[Any] = queue.SimpleQueue()
        try:
            for _ in range(max(1, workers)):
                kwargs: dict[str, Any] = {"quantize": quantized, "intra_op_num_threads": per_worker}
                if streaming:
                    kwargs["chunk_size"] = list(self.chunk_size)
                self._models.put(ModelClass(model_dir=str(path), **kwargs))
        except Exception as exc:  # onnxruntime, yaml or json errors from a broken directory
            raise RecognizerUnavailable(
                "asr.model_path", str(path), f"The Paraformer model failed to load ({exc}). " + HOW_TO_OBTAIN
            ) from exc
        self.load_s = time.perf_counter() - t
        self._lock = threading.Lock()
        self.calls = 0
        log.info(
            "paraformer %s (%s%s) loaded in %.2f s", path, "streaming" if streaming else "offline",
            ", int8" if quantized else "", self.load_s,
        )

    def _check_lang(self, lang: str) -> None:
        if normalize_lang(lang) not in self.languages:
            raise RecognizerUnavailable(
                "asr.model_path", self.model_path,
                f"This Paraformer model is configured for {', '.join(sorted(self.languages))}, not {lang!r}.",
            )

    def _run(self, audio: np.ndarray, params: dict[str, Any], frontend: Any | None) -> Any:
        model = self._models.get()
        try:
            if frontend is not None:
                model.frontend = frontend  # the stream's own streaming state
            if self.streaming:
                return model(audio_in=audio, param_dict=params)
            return model(audio)
        finally:
            self._models.put(model)

    def new_frontend(self) -> Any:
        """A fresh funasr-onnx online frontend (streaming state of one stream)."""
        from funasr_onnx.utils.frontend import WavFrontendOnline
        from funasr_onnx.utils.utils import read_yaml

        config = read_yaml(str(Path(self.model_path) / "config.yaml"))
        return WavFrontendOnline(cmvn_file=str(Path(self.model_path) / "am.mvn"), **config["frontend_conf"])

    def transcribe(
        self, pcm: bytes, sample_rate: int, lang: str, hints: Sequence[str] | None = None
    ) -> Transcript:
        data = check_pcm16(pcm)
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")
        self._check_lang(lang)
        if len(data) / 2 / sample_rate < MIN_AUDIO_S or not np.any(np.frombuffer(data, dtype="<i2")):
            return Transcript("", 0.0, lang)
        if self.streaming:
            stream = self.open_stream(sample_rate, lang)
            stream.accept(data)
            return stream.finish()
        audio = np.frombuffer(resample(data, sample_rate, self.sample_rate), dtype="<i2").astype(np.float32) / 32768
        text = _text(self._run(audio, {}, None)).strip()
        with self._lock:
            self.calls += 1
        return Transcript(text, CONFIDENCE if text else 0.0, lang)

    def open_stream(self, sample_rate: int, lang: str, hints: Sequence[str] | None = None) -> FunasrStream:
        self._check_lang(lang)
        if not self.streaming:
            raise RecognizerUnavailable(
                "asr.model_path", self.model_path,
                "This Paraformer model is the offline one (no decoder.onnx): it cannot stream. Use a "
                "paraformer-zh-streaming export for partial results. " + HOW_TO_OBTAIN,
            )
        return FunasrStream(self, ChunkResampler(sample_rate, self.sample_rate), lang)

    def __repr__(self) -> str:
        return f"FunasrRecognizer({self.model_path!r})"


class FunasrStream:
    """Audio in any chunk size; decoded in 600 ms steps; ``finish`` decodes the rest."""

    def __init__(self, owner: FunasrRecognizer, resampler: ChunkResampler, lang: str) -> None:
        self._owner = owner
        self._resampler = resampler
        self._lang = lang
        self._frontend = owner.new_frontend()
        self._params: dict[str, Any] = {"cache": {}, "is_final": False}
        self._pending = np.zeros(0, dtype=np.float32)
        self._text = ""
        self._closed = False

    def _step(self, audio: np.ndarray, final: bool) -> None:
        self._params["is_final"] = final
        self._text += _text(self._owner._run(audio, self._params, self._frontend))

    def accept(self, pcm: bytes) -> str:
        if self._closed:
            raise RuntimeError("this funasr stream is finished")
        audio = self._resampler.process(pcm)
        if audio:
            x = np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768.0
            self._pending = np.concatenate([self._pending, x])
        stride = self._owner._stride
        while len(self._pending) >= stride:
            chunk, self._pending = self._pending[:stride], self._pending[stride:]
            self._step(chunk, final=False)
        return self._text

    def finish(self) -> Transcript:
        if self._closed:
            raise RuntimeError("this funasr stream is finished")
        self._closed = True
        tail = self._resampler.flush()
        if tail:
            x = np.frombuffer(tail, dtype="<i2").astype(np.float32) / 32768.0
            self._pending = np.concatenate([self._pending, x])
        self._step(self._pending, final=True)
        with self._owner._lock:
            self._owner.calls += 1
        text = self._text.strip()
        return Transcript(text, CONFIDENCE if text else 0.0, self._lang)


def create_funasr_recognizer(model_path: str | None = None, threads: int = 2, **options: Any) -> FunasrRecognizer:
    return FunasrRecognizer(model_path, threads=threads, **options)

