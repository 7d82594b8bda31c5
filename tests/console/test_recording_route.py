"""Recordings compressed and encrypted at rest still play in the console, with Range requests."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from recordings.atrest import seal


@pytest.fixture
def recording_key(monkeypatch: pytest.MonkeyPatch) -> bytes:
    key = os.urandom(32)
    monkeypatch.setenv("HOTLINE_RECORDING_KEY", base64.b64encode(key).decode())
    return key


async def test_sealed_recording_is_served_as_wav_with_ranges(console: Any, seeded: str, recording_key: bytes) -> None:
    plain, sealed, left = _seal(Path(console.store.get_call(seeded).recording_path), recording_key)
    assert sealed.name.endswith(".flac.enc") and not left
    await console.login("sam")
    r = await console.client.get(f"/calls/{seeded}/recording")
    assert r.status == 200 and r.headers["Content-Type"] == "audio/wav"
    body = await r.read()
    assert body[:4] == b"RIFF" and len(body) == len(plain)
    r = await console.client.get(f"/calls/{seeded}/recording", headers={"Range": "bytes=44-143"})
    assert r.status == 206 and r.headers["Content-Range"] == f"bytes 44-143/{len(body)}"
    assert await r.read() == body[44:144]
    r = await console.client.get(f"/calls/{seeded}/recording", headers={"Range": f"bytes={len(body) + 10}-"})
    assert r.status == 416


def _seal(recorded: Path, key: bytes) -> tuple[bytes, Path, bool]:
    """As a call's end does with recordings.compress and encrypt: (the WAV's bytes, the new file, wav left?)."""
    plain = recorded.read_bytes()
    sealed = seal(recorded, compress=True, key=key)
    return plain, sealed, recorded.exists()


async def test_wrong_key_is_a_clear_503_not_a_crash(console: Any, seeded: str, recording_key: bytes,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    seal(Path(console.store.get_call(seeded).recording_path), compress=False, key=recording_key)
    monkeypatch.setenv("HOTLINE_RECORDING_KEY", base64.b64encode(os.urandom(32)).decode())
    await console.login("sam")
    r = await console.client.get(f"/calls/{seeded}/recording")
    assert r.status == 503 and "cannot be opened" in await r.text()
