"""A real, throwaway PostgreSQL cluster for tests (Debian's postgresql package).

    from support.postgres import pg_server          # session-scoped fixture: one shared cluster

    def test_x(pg_server):
        url = pg_server.create_database()            # a fresh, empty database on the shared cluster
        store = CallStore(url)

`PgServer.create()` starts a private cluster (for outage tests that `.stop()` and `.start()` it again on
the same data directory and port, so the URL stays valid). The cluster lives in a temporary directory
under /tmp owned by the `postgres` user when we run as root (initdb refuses root), listens on 127.0.0.1 on
a free ephemeral port and on a unix socket inside the temporary directory, with fsync off. Tests skip with a
clear reason only when the PostgreSQL binaries are absent (scripts/install.sh installs them).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_USER = "postgres"


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin holding initdb, pg_ctl and postgres, or None."""
    found = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        bindir = Path(initdb).parent
        if (bindir / "pg_ctl").exists() and (bindir / "postgres").exists():
            try:
                found.append((int(bindir.parent.name), bindir))
            except ValueError:
                continue
    return max(found)[1] if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One PostgreSQL cluster: initdb on construction, then start/stop/close."""

    def __init__(self, bindir: Path, *, port: int | None = None) -> None:
        self.bindir = bindir
        self.port = port or _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="hotline-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.sockdir = self.root / "sock"
        self.logfile = self.root / "postgres.log"
        self.sockdir.mkdir()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            try:
                pw = pwd.getpwnam(PG_USER)
            except KeyError as e:
                raise RuntimeError(f"running as root needs the '{PG_USER}' user (Debian postgresql package)") from e
            for p in (self.root, self.sockdir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self.running = False
        self._run([str(bindir / "initdb"), "-D", str(self.data), "-U", PG_USER, "-A", "trust", "-E", "UTF8",
                   "--locale=C.UTF-8", "--no-sync", "--no-instructions"], timeout=120)
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(
                "\n# hotline tests\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.sockdir}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 50\nshared_buffers = 32MB\n"
            )

    @classmethod
    def create(cls) -> PgServer:
        """Init and start a private cluster; skip the test when PostgreSQL is not installed."""
        bindir = find_bindir()
        if bindir is None:
            pytest.skip("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin "
                        "(Debian package 'postgresql'; scripts/install.sh installs it)")
        server = cls(bindir)
        server.start()
        return server

    def _run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        if self._as_root:
            argv = ["runuser", "-u", PG_USER, "--", *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if proc.returncode != 0:
            log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{log}")
        return proc

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg 3) of the default `postgres` database over TCP."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 60) -> None:
        """Start (or restart after stop()) on the same data directory and port."""
        if self.running:
            return
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile),
                   "-w", "-t", str(int(timeout)), "start"], timeout=timeout + 10)
        self.running = True

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop the server (clients are disconnected); the data directory is kept."""
        if not self.running:
            return
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode,
                   "-w", "-t", str(int(timeout)), "stop"], timeout=timeout + 10)
        self.running = False

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL through psql over the unix socket; returns stdout (unaligned, tuples only)."""
        return self._run([str(self.bindir / "psql"), "-h", str(self.sockdir), "-p", str(self.port), "-U", PG_USER,
                          "-d", database, "-v", "ON_ERROR_STOP=1", "-A", "-t", "-c", sql]).stdout

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a unique name by default) and return its SQLAlchemy URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        if not name.replace("_", "").isalnum():
            raise ValueError(f"bad database name {name!r}")
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def close(self) -> None:
        """Stop the server and delete its data directory."""
        try:
            self.stop(mode="immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_shared: PgServer | None = None
_users = 0
_lock = threading.Lock()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL cluster shared by the whole test session (tests should use create_database()).

    Importing this fixture into several test modules registers it once per module; a reference count
    keeps a single cluster and closes it after the last user."""
    global _shared, _users
    with _lock:
        if _shared is None:
            _shared = PgServer.create()
        _users += 1
        server = _shared
    try:
        yield server
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _shared is not None:
                _shared.close()
                _shared = None
