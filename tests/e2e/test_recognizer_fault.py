"""Issue #7's fault: the recognizer crashes mid-call, and that call continues on keypad menus.

A real SIP call into an in-process Hotline whose real whisper recognizer loses its model while the
call is up (CTranslate2's `unload_model()`: every decode then raises RuntimeError, as after a crash
of the inference library). The caller speaks, hears in its language that the keypad is to be used,
presses 1 and hears the answer.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from support.inprocess import running_hotline

from hotline.server import Hotline
from telephony import TestCaller

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150), pytest.mark.asyncio(loop_scope="module")]


def words(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", " ", text.lower())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hotline(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Hotline]:
    async with running_hotline(tmp_path_factory.mktemp("asrfault")) as h:
        yield h


async def _hear_until(tc: TestCaller, leg: Any, ear: Any, word: str, timeout_s: float = 30.0) -> str:
    """What the caller hears, turn by turn, until `word` was heard (or the time is up)."""
    heard = ""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while word not in heard and loop.time() < deadline and not leg.ended.is_set():
        pcm = await tc.listen(leg, silence_s=1.2, timeout_s=max(1.0, deadline - loop.time()))
        heard += " " + words((await asyncio.to_thread(ear.transcribe, pcm, 8000, "en")).text)
    return heard


async def test_recognizer_crash_mid_call_the_call_goes_on_with_the_keypad(
    hotline: Hotline, ear: Any, voice: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hotline.session")
    assert hotline.deps is not None
    async with TestCaller() as tc:
        leg = await tc.call(f"sip:hotline@127.0.0.1:{hotline.port}")
        await asyncio.sleep(1.0)  # into the greeting
        # The model goes away under the running hotline (it had decoded the warm-up utterance).
        hotline.deps.recognizer._model.model.unload_model()  # type: ignore[attr-defined]
        session = next(iter(hotline.sessions))
        await tc.play(leg, voice("What are your opening hours?"))  # barges in; recognition now fails
        heard = await _hear_until(tc, leg, ear, "keypad")
        assert "keypad" in heard, heard
        tc.send_dtmf(leg, "1")
        answer = await _hear_until(tc, leg, ear, "friday")
        assert "monday" in answer and "friday" in answer, answer
        await leg.hangup()
    for _ in range(100):
        if not hotline.sessions:
            break
        await asyncio.sleep(0.05)
    lines = hotline.deps.store.get_transcript(session.call_id)
    texts = [(ln.speaker, ln.text) for ln in lines]
    assert ("event", "speech recognition failed; keypad only") in texts, texts
    assert ("caller", "[key 1]") in texts, texts
    assert any(sp == "system" and "keypad" in t for sp, t in texts), texts
    failures = [r for r in caplog.records if "recognizer failed" in r.getMessage()]
    assert failures and session.call_id in failures[0].getMessage()
    call = hotline.deps.store.get_call(session.call_id)
    assert call is not None and call.last_intent == "faq:opening_hours"
