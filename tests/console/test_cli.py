"""`hotline users ...` manages console accounts (passwords never on the command line); `hotline console`
serves the records alone."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hotline.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "server.yaml"
    path.write_text(f"data_dir: {tmp_path / 'var'}\nweb: {{port: 0}}\n")
    return path


def test_users_add_list_role_unlock(config: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HOTLINE_NEW_PASSWORD", "correct-horse-1")
    assert main(["--config", str(config), "users", "add", "kim", "--role", "supervisor"]) == 0
    monkeypatch.delenv("HOTLINE_NEW_PASSWORD")
    monkeypatch.setattr(sys, "stdin", io.StringIO("battery-staple-2\n"))  # piped, not a terminal
    assert main(["--config", str(config), "users", "add", "lee", "--role", "agent", "--lang", "zh"]) == 0
    assert main(["--config", str(config), "users", "role", "lee", "admin"]) == 0
    assert main(["--config", str(config), "users", "unlock", "lee"]) == 0
    capsys.readouterr()
    assert main(["--config", str(config), "users", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["kim\tsupervisor\ten", "lee\tadmin\tzh"]


def test_users_add_refuses_weak_passwords_and_duplicates(config: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HOTLINE_NEW_PASSWORD", "1234567890123")
    assert main(["--config", str(config), "users", "add", "kim", "--role", "agent"]) == 1
    assert "only digits" in capsys.readouterr().err
    monkeypatch.setenv("HOTLINE_NEW_PASSWORD", "correct-horse-1")
    assert main(["--config", str(config), "users", "add", "kim", "--role", "agent"]) == 0
    assert main(["--config", str(config), "users", "add", "kim", "--role", "agent"]) == 1
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # there is no way to put a password on the command line
        main(["--config", str(config), "users", "add", "joe", "--role", "agent", "--password", "x"])


@pytest.mark.slow
def test_hotline_console_serves_records_alone_and_stops_on_sigterm(config: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "hotline.cli", "--config", str(config), "console"], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stderr is not None
        deadline, url = time.monotonic() + 60, None
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            m = re.search(r"console on (http://\S+)", line)
            url = m.group(1) if m else None
        assert url, "hotline console did not say where it listens"
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as r:
            assert r.status == 200 and b'"database": true' in r.read()
        with urllib.request.urlopen(f"{url}/login", timeout=5) as r:
            assert b"password" in r.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_console_in_hotline_serve_is_optional_and_a_busy_port_does_not_stop_calls(tmp_path: Path) -> None:
    import socket

    from hotline.server import Hotline
    from hotline.settings import DEFAULT_CONFIG, load_settings
    from hotline.web import start_console
    from recordings import CallStore

    store = CallStore(f"sqlite:///{tmp_path / 'h.db'}")
    off = Hotline(load_settings(DEFAULT_CONFIG, data_dir=str(tmp_path), web={"enabled": False}))
    assert await start_console(off, store) is None
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = Hotline(load_settings(DEFAULT_CONFIG, data_dir=str(tmp_path), web={"port": port}))
        assert await start_console(taken, store) is None  # logged; the hotline starts without its console
    free = Hotline(load_settings(DEFAULT_CONFIG, data_dir=str(tmp_path), web={"port": 0}))
    server = await start_console(free, store)
    assert server is not None and server.port > 0
    checks = await server.console.readiness()
    assert checks == {"sip": False, "database": True, "models": False}  # not started: not ready
    await server.stop()
    store.close()
