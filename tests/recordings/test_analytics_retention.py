"""Call-centre figures from the records, the retention policy, and the records commands."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.records_cli import config_over_filled_store

from recordings import CallStore, StereoRecorder
from recordings.analytics import format_report, report
from recordings.atrest import RecordingUnreadable, open_recording
from recordings.retention import apply_retention

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def _call(store: CallStore, cid: str, *, start: datetime, minutes: float, queue: str | None = None,
          wait_s: float | None = None, agent: str | None = None, intent: str | None = None,
          said: str | None = None, outcome: str = "goodbye") -> None:
    store.start_call(cid, sip_call_id=cid, caller="1001", called="95555")
    if said:
        store.add_line(cid, "caller", said, 1.0)
    fields: dict = {"started_at": start, "last_intent": intent}
    if queue:
        fields |= {"queue": queue, "queued_at": start + timedelta(seconds=30)}
        if agent and wait_s is not None:
            fields |= {"agent": agent, "agent_answered_at": start + timedelta(seconds=30 + wait_s)}
    store.update_call(cid, **fields)
    store.end_call(cid, outcome=outcome, end_reason="test")
    store.update_call(cid, ended_at=start + timedelta(minutes=minutes))


def _fill(store: CallStore) -> None:
    _call(store, "a", start=T0, minutes=2, intent="balance")
    _call(store, "b", start=T0 + timedelta(minutes=10), minutes=3, intent="opening_hours")
    _call(store, "c", start=T0 + timedelta(hours=1), minutes=6, queue="cards", wait_s=10, agent="anna",
          intent="card_lost", outcome="transferred")
    _call(store, "d", start=T0 + timedelta(hours=1, minutes=5), minutes=8, queue="cards", wait_s=50, agent="bo",
          intent="card_lost", outcome="transferred")
    _call(store, "e", start=T0 + timedelta(hours=1, minutes=9), minutes=1, queue="general", said="我要投诉",
          outcome="abandoned")
    _call(store, "f", start=T0 + timedelta(hours=2), minutes=1, said="Can I change my PIN online?")
    _call(store, "g", start=T0 + timedelta(hours=2, minutes=1), minutes=1, said="can i change my pin online")
    store.add_complaint("fees", "charged twice", call_id="c")
    store.add_complaint("fees", "annual fee", call_id="d")
    store.add_complaint("service", "rude", call_id="d")


def test_report_figures_by_queue_and_hour(tmp_path: Path) -> None:
    store = CallStore(f"sqlite:///{tmp_path / 'h.db'}")
    _fill(store)
    rep = report(store, by="queue")
    t = rep.total
    assert (t.calls, t.contained, t.transferred, t.answered, t.abandoned) == (7, 4, 3, 2, 1)
    assert t.containment_rate == round(4 / 7, 4) and t.transfer_rate == round(3 / 7, 4)
    assert t.abandonment_rate == round(1 / 3, 4)
    assert t.service_level == round(1 / 3, 4)  # c answered in 10 s; d in 50 s; e never
    assert t.avg_speed_of_answer_s == 30.0
    assert t.avg_handle_time_s == pytest.approx(((6 * 60 - 40) + (8 * 60 - 80)) / 2, abs=0.01)
    assert t.avg_call_duration_s == pytest.approx(60 * (2 + 3 + 6 + 8 + 1 + 1 + 1) / 7, abs=0.01)
    by_queue = {f.group: f for f in rep.groups}
    assert set(by_queue) == {"(no queue)", "cards", "general"}
    assert by_queue["cards"].answered == 2 and by_queue["general"].abandonment_rate == 1.0
    assert rep.intent_mix == [("card_lost", 2), ("balance", 1), ("opening_hours", 1)]
    assert rep.unanswered[0] == ("can i change my pin online", 2, "f")
    assert ("我要投诉", 1, "e") in rep.unanswered
    assert rep.complaint_categories == [("fees", 2), ("service", 1)]
    hours = report(store, by="hour", since=T0 + timedelta(minutes=30), until=T0 + timedelta(hours=2))
    assert [(g.group, g.calls) for g in hours.groups] == [("2026-11-30 10:00", 3)]
    assert report(store, by="agent").groups[0].group == "(no agent)"
    text = format_report(rep)
    assert "cards" in text and "57.1%" in text and "can i change my pin online" in text
    with pytest.raises(ValueError, match="since is after until"):
        report(store, since=T0, until=T0 - timedelta(days=1))
    store.close()


def test_retention_deletes_old_audio_and_keeps_the_record(tmp_path: Path) -> None:
    store = CallStore(f"sqlite:///{tmp_path / 'h.db'}")
    now = datetime.now(UTC)
    for cid, age_days, compress in (("old", 40, True), ("old-gone", 45, False), ("new", 2, False)):
        rec = StereoRecorder(tmp_path / "rec" / f"{cid}.wav", compress=compress)
        for _ in range(10):
            rec.tap("out", bytes(320))
        rec.close()
        path = str(tmp_path / "rec" / f"{cid}.wav")
        store.start_call(cid, sip_call_id=cid, caller="", called="", recording_path=path)
        store.add_line(cid, "caller", "hello", 0.0)
        store.end_call(cid, outcome="goodbye", end_reason="test")
        store.update_call(cid, started_at=now - timedelta(days=age_days))
    (tmp_path / "rec" / "old-gone.wav").unlink()
    store.start_call("open", sip_call_id="o", caller="", called="", recording_path=str(tmp_path / "open.wav"))
    store.update_call("open", started_at=now - timedelta(days=60))  # still in progress: never touched

    dry = apply_retention(store, 30, dry_run=True)
    assert (dry.deleted, dry.missing) == (1, 1) and (tmp_path / "rec" / "old.flac").exists()
    res = apply_retention(store, 30)
    assert (res.deleted, res.missing, res.failed) == (1, 1, 0) and res.bytes_freed > 0
    assert not (tmp_path / "rec" / "old.flac").exists() and (tmp_path / "rec" / "new.wav").exists()
    old = store.get_call("old")
    assert old is not None and old.recording_deleted and store.get_transcript("old")[0].text == "hello"
    assert not store.get_call("new").recording_deleted  # type: ignore[union-attr]
    with pytest.raises(RecordingUnreadable, match="retention"):
        open_recording(old.recording_path or "")
    assert apply_retention(store, 30).deleted == 0  # nothing twice
    with pytest.raises(ValueError):
        apply_retention(store, 0)
    store.close()


def test_records_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    from hotline.cli import main

    cfg = config_over_filled_store(tmp_path, monkeypatch, _fill)

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            rc = main(["--config", str(cfg), *argv])
        except SystemExit as exc:  # argparse refuses bad arguments this way
            rc = int(exc.code or 0)
        out = capsys.readouterr()
        return rc, out.out, out.err

    rc, out, err = run("db", "current")
    assert rc == 0 and "up to date" in out, err
    rc, out, err = run("calls", "search", "pin", "--limit", "5")
    assert rc == 0 and out.splitlines()[0].startswith("g\t"), err
    assert "[PIN]" in out and "\nf\t" in out
    rc, out, _ = run("calls", "search", "--queue", "cards")
    assert [ln.split("\t")[0] for ln in out.splitlines()] == ["d", "c"]
    rc, out, err = run("report", "--by", "day")
    assert rc == 0 and "2026-11-30" in out and "fees 2" in out, err
    rc, _, err = run("retention")
    assert rc == 2 and "--days" in err
    rc, out, err = run("retention", "--days", "30")
    assert rc == 0 and "deleted 0" in out, err
    rc, _, err = run("report", "--since", "yesterday")
    assert rc == 2 and "is not a date" in err
    rc, out, _ = run("calls")
    assert rc == 0 and len(out.splitlines()) == 7  # the plain listing still works

    key = base64.b64encode(bytes(range(32))).decode()
    monkeypatch.setenv("HOTLINE_RECORDING_KEY", key)
    rec = StereoRecorder(tmp_path / "var" / "recordings" / "z.wav", compress=True, key=bytes(range(32)))
    for _ in range(25):
        rec.tap("out", bytes(320))
    rec.close()
    store = CallStore(f"sqlite:///{tmp_path / 'var' / 'hotline.db'}")
    store.start_call("z", sip_call_id="z", caller="", called="", recording_path=str(rec.path.with_name("z.wav")))
    store.close()
    rc, out, err = run("recording", "z", "-o", str(tmp_path / "z-out.wav"))
    assert rc == 0, err
    assert (tmp_path / "z-out.wav").read_bytes()[:4] == b"RIFF"
    monkeypatch.setenv("HOTLINE_RECORDING_KEY", base64.b64encode(bytes(32)).decode())
    rc, _, err = run("recording", "z", "-o", str(tmp_path / "z-out.wav"))
    assert rc == 1 and "wrong key" in err
