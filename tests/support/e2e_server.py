"""`hotline serve` as a real process for end-to-end tests, with its own settings file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from recordings import CallStore

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    proc: subprocess.Popen[str]
    port: int
    config: Path
    data_dir: Path
    log_path: Path

    @property
    def uri(self) -> str:
        return f"sip:95555@127.0.0.1:{self.port}"

    @property
    def store(self) -> CallStore:
        return CallStore(f"sqlite:///{self.data_dir / 'hotline.db'}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def write_config(tmp: Path, *, agent_ports: list[int], **overrides: Any) -> Path:
    cfg = yaml.safe_load((ROOT / "configs" / "server.yaml").read_text())
    cfg["sip"]["port"] = 0
    cfg.setdefault("web", {})["port"] = 0
    cfg["data_dir"] = str(tmp / "var")
    cfg["dialog"]["flow"] = str(ROOT / "configs" / "flows" / "bank.yaml")
    cfg["queues"][0]["agents"] = [
        {"name": f"agent{i}", "uri": f"sip:agent{i}@127.0.0.1:{p}"} for i, p in enumerate(agent_ports)
    ]
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if name:
            cfg[section][name] = value
        else:
            cfg[section] = value
    path = tmp / "server.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


def start_server(config: Path, data_dir: Path, timeout: float = 90.0) -> Server:
    log_path = data_dir.parent / "serve.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logf = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hotline.cli", "--config", str(config), "serve"],
        cwd=ROOT,
        stdout=logf,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"answering on sip:hotline@127\.0\.0\.1:(\d+)", log_path.read_text(errors="replace"))
        if m:
            return Server(proc, int(m.group(1)), config, data_dir, log_path)
        if proc.poll() is not None:
            raise RuntimeError(f"hotline serve exited with {proc.returncode}:\n{log_path.read_text()}")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"hotline serve did not start in {timeout}s:\n{log_path.read_text()}")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(5)




def free_sip_port() -> int:
    """A free UDP port below every RTP range the tests and the hotline allocate from (and below the
    kernel's ephemeral range), so an RTP socket opened later cannot take it."""
    import random
    import socket

    for port in random.sample(range(12000, 15000), 200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free UDP port in 12000-14999")
