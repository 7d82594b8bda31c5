"""A `Hotline` started in this process, for tests that drive its sessions with a TestCaller: loopback SIP on a
free port, the default settings and bank flow, one `general` queue without agents, no console, and a loop-lag
guard (10 s) that a loaded test machine cannot trip."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from hotline.server import Hotline
from hotline.settings import DEFAULT_CONFIG, load_settings


@contextlib.asynccontextmanager
async def running_hotline(data_dir: Path, **overrides: Any) -> AsyncIterator[Hotline]:
    """``overrides``: whole top-level settings sections instead of these defaults (e.g. ``tts={...}``)."""
    base: dict[str, Any] = {
        "sip": {"host": "127.0.0.1", "port": 0, "max_loop_lag_ms": 10000}, "data_dir": str(data_dir),
        "queues": [{"name": "general", "agents": []}], "web": {"enabled": False},
    }
    settings = load_settings(DEFAULT_CONFIG, **{**base, **overrides})
    h = Hotline(settings)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()
