"""The console's own settings: where it listens and how long a login lasts."""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsoleSettings:
    host: str = "127.0.0.1"
    port: int = 8080  # 0: any free port (tests); the bound one is `ConsoleServer.port`
    # The environment variable holding the key that hashes session ids at rest. Unset: a random key per
    # process (logins then do not survive a restart).
    secret_env: str = "HOTLINE_CONSOLE_SECRET"
    session_idle_s: float = 30 * 60  # a session unused this long is gone
    session_max_s: float = 12 * 3600  # and none lives longer than this
    https: bool = False  # behind an https proxy: cookies get the Secure flag
    recordings_dir: str | None = None  # recordings are served only from inside this folder (None: any)
    max_body_bytes: int = 64 * 1024  # forms and JSON bodies larger than this are refused (413)
    chat_idle_s: float = 15 * 60  # a chat unused this long is forgotten (the next message starts anew)
    login_per_ip_per_min: int = 20  # POST /login attempts per client address per minute; more: 429 + Retry-After

    def secret_key(self) -> bytes:
        value = os.environ.get(self.secret_env, "")
        if value:
            return value.encode()
        log.warning("%s is not set: console sessions will not survive a restart", self.secret_env)
        return secrets.token_bytes(32)

    @property
    def recordings_root(self) -> Path | None:
        return Path(self.recordings_dir).resolve() if self.recordings_dir else None
