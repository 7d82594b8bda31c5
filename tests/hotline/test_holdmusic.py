"""Hold music sources and the callback settings: generated tones, bank WAV files, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from asr.audio import write_wav
from hotline.holdmusic import HoldMusic, HoldMusicError, load_hold_music, tones
from hotline.settings import DEFAULT_CONFIG, CallbackSettings, load_settings


def test_generated_tones_are_a_gentle_audible_loop() -> None:
    pcm = tones()
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    assert 5 * 8000 < len(x) < 12 * 8000
    peak_dbfs = 20 * np.log10(np.abs(x).max() / 32768)
    assert -19 < peak_dbfs < -17  # well below clipping, far above line noise
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    rms = np.sqrt((frames**2).mean(axis=1))
    assert (rms > 100).mean() > 0.85  # sound nearly all the time: the caller knows they are still connected
    spectrum = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(len(x), 1 / 8000)
    assert 400 < freqs[spectrum.argmax()] < 1100  # within the telephone band


def test_loop_wraps_round_without_gaps() -> None:
    music = HoldMusic(b"\x01\x00\x02\x00\x03\x00", rate=1000)  # 3 samples at 1 kHz
    assert music.next(5) == b"\x01\x00\x02\x00\x03\x00\x01\x00\x02\x00"
    assert music.next(2) == b"\x03\x00\x01\x00"


def test_bank_wav_is_resampled_to_8k(tmp_path: Path) -> None:
    path = tmp_path / "music.wav"
    t = np.arange(16000 * 2) / 16000
    write_wav(path, (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes(), 16000)
    pcm = load_hold_music("music.wav", base_dir=tmp_path)
    assert pcm is not None and abs(len(pcm) - 2 * 8000 * 2) <= 4
    assert load_hold_music(None) is None and load_hold_music("tones") == tones()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b"not a wav file at all"), "not a PCM WAV file"),
        (lambda p: write_wav(p, b"\x00\x00" * 800, 8000), "0.1 s of audio"),
        (lambda p: write_wav(p, b"\x00\x00" * 16000, 8000, channels=2), "only mono"),
    ],
)
def test_unusable_music_file_names_the_setting_and_the_problem(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "hold.wav"
    make(path)
    with pytest.raises(HoldMusicError) as err:
        load_hold_music(str(path), setting="queues[general].hold_music")
    assert str(err.value).startswith("queues[general].hold_music: ") and message in str(err.value)


def test_callback_settings_default_off_and_dial_uri_checked() -> None:
    s = load_settings(DEFAULT_CONFIG)
    assert all(not q.callback.enabled for q in s.queues)  # callbacks need a bank's dial_uri: off as shipped
    assert all(q.hold_music is None for q in s.queues)  # silence between announcements unless a bank turns it on
    assert CallbackSettings().enabled is False
    assert CallbackSettings(dial_uri="sip:{number}@gw.bank:5060").dial_uri.startswith("sip:")
    with pytest.raises(ValidationError, match="number"):
        CallbackSettings(dial_uri="sip:gw.bank:5060")
    with pytest.raises(ValidationError):
        CallbackSettings(key="12")



def test_a_console_change_of_max_wait_reaches_the_callers_wait() -> None:
    """The session's wait limit (hotline/session.py `_transfer`) is the distributor's live value once an admin
    changed it (/admin/queues), the YAML's until then; an unknown queue keeps the YAML's."""
    from hotline.callback import max_wait_s
    from routing import CallDistributor, QueueConfig

    qs = load_settings(DEFAULT_CONFIG).queues[0]
    acd = CallDistributor([QueueConfig(qs.name)])
    assert max_wait_s(acd, qs) == qs.max_wait_s == 600
    acd.update_queue(qs.name, max_wait_s=45.0)
    assert max_wait_s(acd, qs) == 45.0
    assert max_wait_s(CallDistributor([QueueConfig("other")]), qs) == 600
