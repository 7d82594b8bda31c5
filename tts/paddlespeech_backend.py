"""PaddleSpeech synthesizer (neural Mandarin voice), used only when its models are on disk.

PaddleSpeech's own CLI downloads models at run time, which a bank's servers cannot (and this project
never does). This backend takes a model directory (config key ``tts.model_path``) laid out as::

    MODEL_PATH/am/   acoustic model, e.g. fastspeech2_csmsc: *.yaml, *.pdz, speech_stats.npy, phone_id_map.txt
    MODEL_PATH/voc/  vocoder, e.g. hifigan_csmsc (or mb_melgan_csmsc, pwgan_csmsc): *.yaml, *.pdz, feats_stats.npy

and hands every file to ``paddlespeech.cli.tts.infer.TTSExecutor`` explicitly, so nothing is fetched.
Start-up fails with ``SynthesizerUnavailable`` naming ``tts.model_path``, the path tried and how to get
the models when the directory or a file is missing, and naming ``tts.backend`` when the packages are not
installed (paddlespeech 1.5 + paddlepaddle: a 1.9-2.7 GB install, not part of the default install).

**Not run against real models on this machine**: paddlespeech is not installed here and its models are
not on the package registries; the error paths are tested (tests/tts/test_paddlespeech_backend.py).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from tts.by_language import base_language
from tts.synthesizer import SynthesisError, SynthesizerUnavailable

log = logging.getLogger(__name__)

__all__ = ["HOW_TO_OBTAIN", "PaddleSpeechSynthesizer", "find_model_files"]

HOW_TO_OBTAIN = (
    "On a machine with internet access run `paddlespeech tts --input 你好 --am fastspeech2_csmsc "
    "--voc hifigan_csmsc` once (models land in ~/.paddlespeech/models/), or download "
    "fastspeech2_nosil_baker_ckpt and hifigan_csmsc_ckpt from PaddleSpeech's released models; copy the "
    "acoustic model's files to MODEL_PATH/am/ and the vocoder's to MODEL_PATH/voc/, and set "
    "`tts.model_path: MODEL_PATH` (with `tts.backend: paddlespeech`)."
)

_AM_FILES = {"config": "*.yaml", "ckpt": "*.pdz", "stat": "speech_stats.npy", "phones_dict": "phone_id_map.txt"}
_VOC_FILES = {"config": "*.yaml", "ckpt": "*.pdz", "stat": "feats_stats.npy"}


def find_model_files(model_path: str | os.PathLike[str] | None) -> dict[str, str]:
    """The files TTSExecutor needs, found under ``model_path``; raises SynthesizerUnavailable naming
    ``tts.model_path`` and what is missing."""
    if model_path is None or not str(model_path).strip():
        raise SynthesizerUnavailable("tts.model_path", None, "The paddlespeech backend needs its models on disk. "
                                     + HOW_TO_OBTAIN)
    root = Path(model_path).expanduser()
    if not root.is_dir():
        raise SynthesizerUnavailable("tts.model_path", str(root), "No such directory. " + HOW_TO_OBTAIN)
    found: dict[str, str] = {}
    missing: list[str] = []
    for part, wanted in (("am", _AM_FILES), ("voc", _VOC_FILES)):
        for key, pattern in wanted.items():
            matches = sorted((root / part).glob(pattern))
            if matches:
                found[f"{part}_{key}"] = str(matches[-1])  # the last checkpoint if there are several
            else:
                missing.append(f"{part}/{pattern}")
    if missing:
        raise SynthesizerUnavailable(
            "tts.model_path", str(root), f"Missing model files: {', '.join(missing)}. " + HOW_TO_OBTAIN
        )
    return found


class PaddleSpeechSynthesizer:
    """See the module docstring. ``am``/``voc``: PaddleSpeech model type names matching the files."""

    name = "paddlespeech"
    sample_rate = 24000  # the csmsc models; read back from each output file

    def __init__(
        self,
        *,
        model_path: str | None = None,
        am: str = "fastspeech2_csmsc",
        voc: str = "hifigan_csmsc",
        languages: tuple[str, ...] = ("zh",),
        device: str = "cpu",
    ) -> None:
        self.files = find_model_files(model_path)  # the models first: the most likely thing to be missing
        try:
            from paddlespeech.cli.tts.infer import TTSExecutor
        except ImportError as exc:
            raise SynthesizerUnavailable(
                "tts.backend", "paddlespeech",
                f"paddlespeech is not installed ({exc}): `.venv/bin/pip install paddlespeech paddlepaddle` "
                "(about 2 GB), or use `tts.backend: espeak`.",
            ) from exc
        self.am, self.voc, self.device = am, voc, device
        self.languages = frozenset(languages)
        self._executor: Any = TTSExecutor()
        self._lock = threading.Lock()  # TTSExecutor keeps per-call state: one synthesis at a time
        try:
            self.synthesize("你好", "zh")  # loads the models now: a broken file fails start-up, not a call
        except SynthesisError as exc:
            raise SynthesizerUnavailable("tts.model_path", str(model_path), f"The models did not load ({exc}). "
                                         + HOW_TO_OBTAIN) from exc

    def voice(self, lang: str) -> str:
        return f"{self.am}+{self.voc}"

    def synthesize(self, text: str, lang: str) -> bytes:
        from asr.audio import read_wav, resample

        base = base_language(lang)
        if base not in self.languages:
            raise SynthesisError(f"the paddlespeech voice {self.voice(lang)} speaks {sorted(self.languages)}, "
                                 f"not {lang!r}")
        if not text.strip():
            return b""
        f = self.files
        with tempfile.TemporaryDirectory(prefix="paddletts-") as tmp, self._lock:
            out = Path(tmp) / "out.wav"
            try:
                self._executor(
                    text=text, output=str(out), lang=base, device=self.device,
                    am=self.am, am_config=f["am_config"], am_ckpt=f["am_ckpt"], am_stat=f["am_stat"],
                    phones_dict=f["am_phones_dict"],
                    voc=self.voc, voc_config=f["voc_config"], voc_ckpt=f["voc_ckpt"], voc_stat=f["voc_stat"],
                )
                pcm, rate = read_wav(out)
            except Exception as exc:  # paddle raises many kinds; one synthesis fails, the caller decides
                raise SynthesisError(f"paddlespeech failed: {type(exc).__name__}: {exc}") from exc
        return pcm if rate == self.sample_rate else resample(pcm, rate, self.sample_rate)

    def __repr__(self) -> str:
        return f"PaddleSpeechSynthesizer(am={self.am!r}, voc={self.voc!r})"
