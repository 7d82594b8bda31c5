"""`hotline transcribe` and `hotline say` (hotline/speech_cli.py) through a real argparse parser:
espeak-ng writes the WAV, whisper tiny.en reads it back."""

from __future__ import annotations

import argparse
import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import pytest

from asr import read_wav, write_wav
from hotline.speech_cli import add_commands, iter_paths

ROOT = Path(__file__).resolve().parents[2]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hotline")
    sub = p.add_subparsers(dest="command")
    add_commands(sub)
    return p


def run(*argv: str) -> int:
    args = parser().parse_args(list(argv))
    return int(args.run(args))


@pytest.fixture(scope="module")
def agent_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("say") / "agent.wav"
    assert run("say", "I want to speak to an agent, please.", "--lang", "en", "-o", str(path)) == 0
    return path


def test_both_commands_are_registered_with_a_run_function() -> None:
    p = parser()
    tr = p.parse_args(["transcribe", "a.wav", "-", "--backend", "vosk", "--lang", "zh", "--model-path", "/m"])
    assert (tr.files, tr.backend, tr.lang, tr.model_path) == (["a.wav", "-"], "vosk", "zh", "/m")
    assert callable(tr.run)
    say = p.parse_args(["say", "hello", "--lang", "en", "-o", "x.wav"])
    assert (say.text, say.lang, say.output, say.rate) == ("hello", "en", "x.wav", 8000)
    assert callable(say.run) and say.run is not tr.run
    with pytest.raises(SystemExit):
        p.parse_args(["say", "hello", "-o", "x.wav"])  # --lang is required


def test_say_writes_an_8khz_wav_by_default(agent_wav: Path) -> None:
    pcm, rate = read_wav(agent_wav)
    assert rate == 8000
    assert 1.5 < len(pcm) / 2 / rate < 6


def test_say_chinese_at_16khz_and_text_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "zh.wav"
    monkeypatch.setattr(sys, "stdin", io.StringIO("您的余额是¥1,234.56。\n"))
    assert run("say", "-", "--lang", "zh", "-o", str(out), "--rate", "16000") == 0
    pcm, rate = read_wav(out)
    assert rate == 16000 and len(pcm) / 2 / rate > 2


def test_say_refuses_empty_text_and_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("say", "  ", "--lang", "en", "-o", str(tmp_path / "x.wav")) == 2
    assert "nothing to say" in capsys.readouterr().err
    assert run("say", "hello", "--lang", "en", "-o", str(tmp_path / "no" / "dir" / "x.wav")) == 1
    assert "cannot write" in capsys.readouterr().err
    assert run("say", "hello", "--lang", "en", "-o", str(tmp_path / "x.wav"), "--rate", "12") == 2


def test_say_then_transcribe_round_trip(agent_wav: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("transcribe", str(agent_wav)) == 0
    out = capsys.readouterr().out
    name, _, text = out.rstrip("\n").partition("\t")
    assert name == str(agent_wav)
    assert "agent" in text.lower() and "\n" not in text


def test_transcribe_reads_paths_from_stdin(
    agent_wav: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pcm, rate = read_wav(agent_wav)
    second = tmp_path / "second.wav"
    write_wav(second, pcm, rate)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{agent_wav}\n\n{second}\n"))
    assert run("transcribe", "-") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("\t")[0] for ln in lines] == [str(agent_wav), str(second)]
    assert all("agent" in ln.split("\t")[1].lower() for ln in lines)


def test_a_bad_file_is_reported_and_the_rest_go_on(
    agent_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    missing = tmp_path / "missing.wav"
    assert run("transcribe", str(bad), str(agent_wav), str(missing)) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{agent_wav}\t") and len(captured.out.splitlines()) == 1
    errors = captured.err.splitlines()
    assert errors[0].startswith(f"{bad}\tERROR: ") and "not a PCM WAV" in errors[0]
    assert errors[1].startswith(f"{missing}\tERROR: ") and "no such file" in errors[1]


def test_transcribe_without_a_usable_recognizer_exits_2(
    agent_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("transcribe", str(agent_wav), "--backend", "nosuch") == 2
    assert "asr.backend" in capsys.readouterr().err
    assert run("transcribe", str(agent_wav), "--model-path", str(tmp_path / "none")) == 2
    assert "asr.model_path" in capsys.readouterr().err
    assert run("transcribe", str(agent_wav), "--lang", "zh") == 2  # tiny.en knows no Mandarin
    assert "asr.model_path" in capsys.readouterr().err


def test_iter_paths_reads_stdin_once() -> None:
    stdin = io.StringIO("a.wav\r\n \nb c.wav\n")
    assert list(iter_paths(["x.wav", "-", "y.wav", "-"], stdin)) == ["x.wav", "a.wav", "b c.wav", "y.wav"]


def test_runs_in_a_fresh_interpreter(agent_wav: Path) -> None:
    """The module imports nothing heavy at import time and its run functions work stand-alone."""
    code = (
        "import argparse, sys\n"
        "from hotline.speech_cli import add_commands\n"
        "p = argparse.ArgumentParser(); add_commands(p.add_subparsers())\n"
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.run(a))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, "transcribe", "-"], input=f"{agent_wav}\n", capture_output=True,
        text=True, cwd=ROOT, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{agent_wav}\t") and "agent" in r.stdout.lower()


@pytest.mark.skipif(
    importlib.util.find_spec("pocketsphinx") is None, reason="PyPI package `pocketsphinx` is not installed"
)
def test_transcribe_with_another_backend_and_hints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wav = tmp_path / "menu.wav"
    assert run("say", "speak to an agent", "--lang", "en", "-o", str(wav)) == 0
    hints = ["--hint", "agent", "--hint", "speak to an agent", "--hint", "balance"]
    assert run("transcribe", str(wav), "--backend", "pocketsphinx", *hints, "--timing") == 0
    fields = capsys.readouterr().out.rstrip("\n").split("\t")
    assert fields[:2] == [str(wav), "speak to an agent"]
    assert fields[-1].startswith("RTF ")
