"""Recordings at rest: FLAC-compressed (stereo kept) and AES-256-GCM encrypted with a key from the
environment; `open_recording` gives back WAV bytes for playback.

HOTLINE_RECORDING_KEY holds 32 random bytes in base64 (make one: `python -c "import os, base64;
print(base64.b64encode(os.urandom(32)).decode())"`). An encrypted file is MAGIC, a 12-byte nonce, then
the ciphertext with its 16-byte tag; the magic is authenticated too.

Suffixes: .wav (as recorded), .flac (compressed), .wav.enc / .flac.enc (encrypted). A call record keeps
the path it was given when the call started (.wav); `resolve_recording` finds what that became.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import wave
from collections.abc import Mapping
from pathlib import Path

import numpy as np

KEY_ENV = "HOTLINE_RECORDING_KEY"
MAGIC = b"HOTREC1\x00"
NONCE_BYTES = 12


class RecordingKeyError(ValueError):
    """The recording key is missing or unusable; the message says how to provide one."""


class RecordingUnreadable(ValueError):
    """A recording cannot be opened (missing, wrong key, damaged)."""


def load_key(env: Mapping[str, str] | None = None) -> bytes:
    """The 32-byte key from HOTLINE_RECORDING_KEY (base64), or RecordingKeyError saying what is wrong."""
    raw = (os.environ if env is None else env).get(KEY_ENV, "").strip()
    how = (f"set {KEY_ENV} to 32 random bytes in base64, e.g. the output of "
           "python3 -c \"import os, base64; print(base64.b64encode(os.urandom(32)).decode())\"")
    if not raw:
        raise RecordingKeyError(f"recording encryption is on but {KEY_ENV} is not set: {how}")
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise RecordingKeyError(f"{KEY_ENV} is not valid base64: {how}") from None
    if len(key) != 32:
        raise RecordingKeyError(f"{KEY_ENV} decodes to {len(key)} bytes, 32 are needed: {how}")
    return key


def encrypt(data: bytes, key: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE_BYTES)
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, data, MAGIC)


def decrypt(blob: bytes, key: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + NONCE_BYTES + 16:
        raise RecordingUnreadable("not an encrypted hotline recording")
    nonce = blob[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, blob[len(MAGIC) + NONCE_BYTES :], MAGIC)
    except InvalidTag:
        raise RecordingUnreadable("wrong key, or the file was altered") from None


def wav_to_flac(wav_bytes: bytes) -> bytes:
    import soundfile as sf

    with wave.open(io.BytesIO(wav_bytes)) as w:
        channels, rate = w.getnchannels(), w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, channels)
    out = io.BytesIO()
    sf.write(out, pcm, rate, format="FLAC", subtype="PCM_16")
    return out.getvalue()


def flac_to_wav(flac_bytes: bytes) -> bytes:
    import soundfile as sf

    pcm, rate = sf.read(io.BytesIO(flac_bytes), dtype="int16", always_2d=True)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(pcm).astype("<i2").tobytes())
    return out.getvalue()


def seal(wav_path: str | Path, *, compress: bool, key: bytes | None) -> Path:
    """Turns a finished .wav into its at-rest form; returns the new path (the .wav is then removed).

    The new file is written beside it and renamed into place, so a failure (disk full) leaves the .wav."""
    wav_path = Path(wav_path)
    if not compress and key is None:
        return wav_path
    data = wav_path.read_bytes()
    suffix = ".wav"
    if compress:
        data, suffix = wav_to_flac(data), ".flac"
    if key is not None:
        data, suffix = encrypt(data, key), suffix + ".enc"
    final = wav_path.with_name(wav_path.name.removesuffix(".wav") + suffix)
    tmp = final.with_name(final.name + ".part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    wav_path.unlink()
    return final


CANDIDATE_SUFFIXES = (".wav", ".flac", ".flac.enc", ".wav.enc")


def resolve_recording(path: str | Path) -> Path | None:
    """The file a recorded path became (itself, or its .flac / .enc form), or None if there is none."""
    p = Path(path)
    if p.exists():
        return p
    base = p.name
    for s in CANDIDATE_SUFFIXES:
        base = base.removesuffix(s)
    for s in CANDIDATE_SUFFIXES:
        candidate = p.with_name(base + s)
        if candidate.exists():
            return candidate
    return None


def open_recording(path: str | Path, key: bytes | None = None) -> bytes:
    """The recording as WAV bytes (decrypted and decompressed as needed). The key, when needed and not
    given, comes from HOTLINE_RECORDING_KEY."""
    found = resolve_recording(path)
    if found is None:
        raise RecordingUnreadable(f"no recording at {path} (deleted by the retention policy, or never made)")
    data = found.read_bytes()
    name = found.name
    if name.endswith(".enc"):
        data = decrypt(data, key if key is not None else load_key())
        name = name.removesuffix(".enc")
    if name.endswith(".flac"):
        try:
            return flac_to_wav(data)
        except RuntimeError as exc:  # soundfile's LibsndfileError
            raise RecordingUnreadable(f"{found}: not a readable FLAC file ({exc})") from None
    return data
