"""A local append-only journal of record writes, for when the database cannot be reached.

Each entry is one JSON line, flushed and fsync'd before the write counts as done, so a call's record
survives both a database outage and a crash of this process during one. Files are named
records-<pid>.jsonl; the live process holds an exclusive lock on its own file, so a worker starting up
replays only the journals that no running process owns. A torn last line (a crash mid-write) is skipped.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$dt"}:
            return datetime.fromisoformat(value["$dt"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


Entry = tuple[str, dict[str, Any]]


class Journal:
    """This process's journal file: append, read back in order, clear once written to the database."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"records-{os.getpid()}.jsonl"
        self._f = open(self.path, "a+b")
        fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.count = sum(1 for _ in self.entries())

    def append(self, op: str, args: dict[str, Any]) -> None:
        line = json.dumps({"op": op, "args": encode(args)}, ensure_ascii=False, separators=(",", ":"))
        self._f.seek(0, os.SEEK_END)
        self._f.write(line.encode() + b"\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        self.count += 1

    def entries(self) -> Iterator[Entry]:
        self._f.flush()
        yield from read_entries(self.path)

    def clear(self) -> None:
        self._f.truncate(0)
        self._f.flush()
        os.fsync(self._f.fileno())
        self.count = 0

    def close(self) -> None:
        empty = self.count == 0
        self._f.close()
        if empty:
            self.path.unlink(missing_ok=True)


def read_entries(path: Path) -> Iterator[Entry]:
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                log.error("journal %s: line %d is incomplete (torn write) and is skipped", path, n)
                return
            try:
                obj = json.loads(raw)
                yield str(obj["op"]), _decode(obj["args"])
            except (ValueError, KeyError, TypeError) as exc:
                log.error("journal %s: line %d unreadable, skipped: %s", path, n, exc)


def orphan_journals(directory: str | Path, own: Path | None = None) -> Iterator[tuple[Path, Any]]:
    """Journals left by processes that are gone: (path, locked file object; close it when done)."""
    d = Path(directory)
    if not d.is_dir():
        return
    for path in sorted(d.glob("records-*.jsonl")):
        if own is not None and path == own:
            continue
        f = open(path, "a+b")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()  # a live process owns it
            continue
        yield path, f
