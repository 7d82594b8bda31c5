"""The call session's record writes that no end-to-end call reaches yet: a complaint ticket the dialog
reports, and a recording that fails mid-call (a real ENOSPC from /dev/full). Real CallStore (SQLite),
real event bus, the session's own single-thread writer pool; the session is driven directly."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import select

from dialog import Understood
from hotline.bus import EventBus
from hotline.events import Event, RecordingFailed
from hotline.session import CallSession, SessionDeps
from hotline.settings import Settings
from recordings import CallStore, StereoRecorder
from recordings.models import IntentRecord
from telephony import CallLeg


@pytest.fixture
def session(tmp_path: Path) -> Iterator[tuple[CallSession, CallStore, list[Event]]]:
    store = CallStore(f"sqlite:///{tmp_path / 'hotline.db'}")
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db")
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    unused = cast(Any, None)  # stages these record writes never touch
    deps = SessionDeps(settings=Settings(data_dir=str(tmp_path)), store=store, bus=bus, engine=unused,
                       recognizer=unused, prompts=unused, queues={}, dial=unused, cpu_pool=pool, db_pool=pool,
                       endpointer_factory=unused)
    s = CallSession(cast(CallLeg, unused), deps)
    store.start_call(s.call_id, sip_call_id="sip-1", caller="2001", called="95555")
    yield s, store, seen
    pool.shutdown(wait=True)
    store.close()


async def test_a_complaint_ticket_from_the_dialog_is_stored_with_the_call(
    session: tuple[CallSession, CallStore, list[Event]],
) -> None:
    s, store, _ = session
    await s._understood(Understood("complaint", 1.0, {"problem": "charged twice", "category": "fees",
                                                      "ticket": "48213377"}))
    await s._understood(Understood("complaint_status", 1.0, {"ticket": "48213377"}))  # no category: not filed
    (complaint,) = store.complaints(call_id=s.call_id)
    assert complaint.category == "fees" and complaint.status == "open"
    assert complaint.text == "charged twice (bank ticket 48213377)"
    assert complaint.ticket.startswith("C-")
    with store.engine.connect() as conn:
        intents = [r.intent for r in conn.execute(select(IntentRecord).where(IntentRecord.call_id == s.call_id)
                                                  .order_by(IntentRecord.at))]
    assert intents == ["complaint", "complaint_status"]


async def test_a_recording_that_fails_raises_one_alert_and_the_call_goes_on(
    session: tuple[CallSession, CallStore, list[Event]], caplog: pytest.LogCaptureFixture,
) -> None:
    s, store, seen = session
    rec = StereoRecorder("/dev/full", call_id=s.call_id)  # every write that reaches the device: ENOSPC
    s._recorder = rec
    for _ in range(100):  # 2 s of audio: more than the file buffer holds
        rec.tap("in", bytes(320))
        rec.tap("out", bytes(320))
    assert rec.failed
    with caplog.at_level(logging.ERROR, logger="hotline.session"):
        await s._line("system", "Your balance is 100 yuan.", 1.0)
        await s._line("caller", "thank you", 3.0)
    alerts = [e for e in seen if isinstance(e, RecordingFailed)]
    assert len(alerts) == 1 and alerts[0].call_id == s.call_id and alerts[0].path == "/dev/full"
    assert alerts[0].topic == "call.recording_failed"
    assert sum("ALERT recording failed" in r.getMessage() and s.call_id in r.getMessage()
               for r in caplog.records) == 1
    assert [ln.text for ln in store.get_transcript(s.call_id)] == ["Your balance is 100 yuan.", "thank you"]
