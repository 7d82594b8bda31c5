"""A real mosquitto broker for tests, on a free loopback port, in its own temporary directory.

    from support.mosquitto import Mosquitto, running_broker

    @pytest.fixture
    def broker() -> Iterator[Mosquitto]:
        yield from running_broker()                         # a fresh broker per test

    def test_x(broker):
        bus = MqttEventBus("127.0.0.1", broker.port, node="a")
        broker.kill(); broker.start()                       # same port again: clients reconnect

Skips with a clear reason only when the binary is absent (Debian package `mosquitto`; scripts/install.sh).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BINARY_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")


def find_mosquitto() -> str | None:
    for p in BINARY_PATHS:
        if Path(p).exists():
            return p
    return shutil.which("mosquitto")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """One broker process: `start()`, `kill()` (SIGKILL, like a crash), `stop()`; same port across restarts."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="hotline-mqtt-"))
        self.config = self.root / "mosquitto.conf"
        self.logfile = self.root / "mosquitto.log"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        log = open(self.logfile, "ab")  # the process keeps its own copy
        self.proc = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited ({self.proc.returncode}):\n{self.log()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout} s:\n{self.log()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without closing connections politely."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def running_broker() -> Iterator[Mosquitto]:
    """A started broker, closed afterwards (for a fixture: `yield from running_broker()`)."""
    binary = find_mosquitto()
    if binary is None:
        pytest.skip("mosquitto not found (Debian package 'mosquitto'; scripts/install.sh installs it)")
    broker = Mosquitto(binary)
    broker.start()
    try:
        yield broker
    finally:
        broker.close()
