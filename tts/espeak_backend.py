"""espeak-ng synthesizer (subprocess): English ``en-us``; Mandarin through pinyin.

espeak-ng's ``cmn`` voice reads pinyin tone digits as English, so Chinese text is converted to
pinyin with tone numbers (pypinyin TONE3, neutral tone 5) and spoken with ``cmn-latn-pinyin``.
Numbers are normalised to words first (``tts.normalize``).
"""

from __future__ import annotations

import logging
import re
import shutil
import struct
import subprocess
from collections.abc import Mapping

from tts.normalize import normalize
from tts.synthesizer import SynthesisError, SynthesizerUnavailable

log = logging.getLogger(__name__)

__all__ = ["EspeakSynthesizer", "parse_wav_stream", "to_pinyin"]

DEFAULT_VOICES: dict[str, str] = {"en": "en-us", "zh": "cmn-latn-pinyin"}
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_PUNCT = {
    "，": ", ", "、": ", ", "；": "; ", "：": ": ", "。": ". ", "！": "! ", "？": "? ",
    "（": " ", "）": " ", "“": " ", "”": " ", "《": " ", "》": " ", "…": ". ", "—": ", ",
}


def to_pinyin(text: str) -> str:
    """Chinese text -> space-separated pinyin with tone numbers (neutral tone 5, ü as v); Chinese
    punctuation becomes ASCII so espeak pauses; other text passes through."""
    from pypinyin import Style, lazy_pinyin

    parts = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True)
    out: list[str] = []
    for part in parts:
        if _HAN.search(part) is None and any(ch in _PUNCT for ch in part):
            part = "".join(_PUNCT.get(ch, ch) for ch in part)
        out.append(part)
    joined = " ".join(out)
    joined = re.sub(r"\s+([,.;:!?])", r"\1", joined)
    return re.sub(r"\s{2,}", " ", joined).strip()


def parse_wav_stream(data: bytes) -> tuple[bytes, int]:
    """Parses the WAV espeak-ng writes to stdout (its sizes are placeholders: the data runs to the
    end). Returns (PCM16 mono, rate)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SynthesisError(f"espeak-ng did not produce WAV output ({len(data)} bytes)")
    pos, rate, channels, bits = 12, 0, 0, 0
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            _fmt, channels, rate = struct.unpack_from("<HHI", data, body)
            bits = struct.unpack_from("<H", data, body + 14)[0]
        elif cid == b"data":
            if rate == 0 or channels != 1 or bits != 16:
                raise SynthesisError(f"unexpected espeak-ng WAV format: {channels} ch, {bits} bit, {rate} Hz")
            pcm = data[body:]
            if size < len(pcm):
                pcm = pcm[:size]
            return pcm[: len(pcm) - len(pcm) % 2], rate
        pos = body + size + (size & 1)
    raise SynthesisError("espeak-ng WAV output has no data chunk")


class EspeakSynthesizer:
    """espeak-ng via subprocess, one process per text (11-30 ms per sentence)."""

    name = "espeak"
    sample_rate = 22050

    def __init__(
        self,
        *,
        binary: str = "espeak-ng",
        voices: Mapping[str, str] | None = None,
        speed: int = 160,
        pitch: int | None = None,
        amplitude: int = 100,
        timeout: float = 15.0,
    ) -> None:
        path = shutil.which(binary)
        if path is None:
            raise SynthesizerUnavailable(
                "tts.backend", binary, "espeak-ng is not installed: `apt-get install espeak-ng` (Debian/Ubuntu)."
            )
        self.binary = path
        self.voices = {**DEFAULT_VOICES, **(voices or {})}
        self.speed = speed
        self.pitch = pitch
        self.amplitude = amplitude
        self.timeout = timeout
        self._check_voices()

    def _check_voices(self) -> None:
        try:
            out = subprocess.run(
                [self.binary, "--voices"], capture_output=True, timeout=max(self.timeout, 10.0), check=True
            ).stdout.decode("utf-8", "replace")
        except (OSError, subprocess.SubprocessError) as exc:
            raise SynthesizerUnavailable("tts.backend", self.binary, f"espeak-ng does not run ({exc}).") from exc
        known = {line.split()[1].lower() for line in out.splitlines()[1:] if len(line.split()) > 1}
        missing = [v for v in self.voices.values() if v.lower() not in known]
        if missing:
            raise SynthesizerUnavailable(
                "tts.voices", ", ".join(missing),
                "espeak-ng has no such voice (see `espeak-ng --voices`); Debian's espeak-ng-data has en-us and "
                "cmn-latn-pinyin.",
            )

    def voice(self, lang: str) -> str:
        base = lang.lower().replace("_", "-").split("-")[0] if isinstance(lang, str) else ""
        base = "zh" if base == "cmn" else base
        try:
            return self.voices[base]
        except KeyError:
            have = sorted(self.voices)
            raise ValueError(f"no espeak-ng voice configured for language {lang!r} (have {have})") from None

    def synthesize(self, text: str, lang: str) -> bytes:
        """Normalises, converts Chinese to pinyin, runs espeak-ng; PCM16 mono at 22050 Hz."""
        if not isinstance(text, str):
            raise ValueError(f"text must be str, got {type(text).__name__}")
        voice = self.voice(lang)
        spoken = normalize(text, "zh" if voice.startswith("cmn") else "en").strip()
        if voice.startswith("cmn"):
            spoken = to_pinyin(spoken)
        if not spoken:
            return b""
        cmd = [self.binary, "--stdout", "-b", "1", "-v", voice, "-s", str(self.speed), "-a", str(self.amplitude)]
        if self.pitch is not None:
            cmd += ["-p", str(self.pitch)]
        try:
            proc = subprocess.run(cmd, input=spoken.encode("utf-8"), capture_output=True, timeout=self.timeout)
        except subprocess.TimeoutExpired as exc:
            raise SynthesisError(f"espeak-ng timed out after {self.timeout:.0f} s on {len(spoken)} characters") from exc
        except OSError as exc:
            raise SynthesisError(f"espeak-ng could not be started: {exc}") from exc
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise SynthesisError(f"espeak-ng exited with {proc.returncode}: {err}")
        pcm, rate = parse_wav_stream(proc.stdout)
        if rate != self.sample_rate:
            from asr.audio import resample

            log.warning("espeak-ng produced %d Hz, expected %d Hz; resampling", rate, self.sample_rate)
            pcm = resample(pcm, rate, self.sample_rate)
        return pcm

    def __repr__(self) -> str:
        return f"EspeakSynthesizer(voices={self.voices}, speed={self.speed})"
