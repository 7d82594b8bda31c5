"""A settings file whose records (SQLite under its data_dir) hold what ``fill`` wrote, for running the records
commands (`hotline report`, `hotline calls`, ...) in-process with `hotline.cli.main`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from recordings import CallStore


def config_over_filled_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fill: Callable[[CallStore], None]
) -> Path:
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'var'}\n")
    store = CallStore(f"sqlite:///{tmp_path / 'var' / 'hotline.db'}")
    fill(store)
    store.close()
    monkeypatch.delenv("HOTLINE_DATABASE_URL", raising=False)  # the file's database, not the environment's
    return cfg
