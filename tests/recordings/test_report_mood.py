"""`hotline report` shows the callers' mood the way the dashboard does (recordings/sentiment.py summary), per
group with --by: flagged angry calls, labels at the end of the call, the angry calls' ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.postgres import PgServer, pg_server  # noqa: F401  (fixture)
from support.records_cli import config_over_filled_store

from recordings import CallStore
from recordings.analytics import report
from recordings.sentiment import SentimentStore

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
MOODS = {  # call id: (queue, label at the end, ever flagged angry)
    "m1": ("cards", "angry", True), "m2": ("cards", "negative", True), "m3": ("cards", "neutral", False),
    "m4": ("general", "positive", False), "m5": ("general", "negative", False),
}


def _fill(store: CallStore) -> None:
    for i, (cid, (queue, label, angry)) in enumerate(MOODS.items()):
        start = T0 + timedelta(minutes=i)
        store.start_call(cid, sip_call_id=cid, caller="1001", called="95555")
        store.update_call(cid, started_at=start, queue=queue, queued_at=start + timedelta(seconds=20))
        store.end_call(cid, outcome="transferred", end_reason="test")
        SentimentStore(store.engine).save(cid, score=-0.9 if angry else 0.1, minimum=-0.9 if angry else 0.0,
                                          lines=2, label=label, angry=angry)
    store.start_call("unscored", sip_call_id="u", caller="1002", called="95555")
    store.update_call("unscored", started_at=T0 + timedelta(days=1))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'h.db'}"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.create_database()


def test_report_counts_moods_per_queue_like_the_dashboard(db_url: str) -> None:
    store = CallStore(db_url)
    _fill(store)
    try:
        rep = report(store, by="queue")
        dashboard = SentimentStore(store.engine).summary()  # what /dashboard shows
        mood = rep.extra["mood"]
        assert mood["total"] == dashboard and dashboard["scored"] == 5 and dashboard["angry"] == 2
        assert mood["groups"]["cards"] == {"scored": 3, "angry": 2,
                                           "labels": {"angry": 1, "negative": 1, "neutral": 1, "positive": 0}}
        assert mood["groups"]["general"]["labels"] == {"angry": 0, "negative": 1, "neutral": 0, "positive": 1}
        later = report(store, since=T0 + timedelta(hours=1), by="day")  # the window applies to the mood too
        assert later.extra["mood"]["total"]["scored"] == 0 and later.extra["mood"]["groups"] == {}
    finally:
        store.close()


def test_hotline_report_prints_the_mood(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from hotline.cli import main

    cfg = config_over_filled_store(tmp_path, monkeypatch, _fill)
    assert main(["--config", str(cfg), "report", "--by", "queue"]) == 0
    out = capsys.readouterr().out
    assert "caller mood: 5 calls scored, 2 flagged angry (40.0%)" in out
    assert "at the end of the call: angry 1, negative 2, calm 2 (neutral 1, positive 1)" in out
    cards = next(ln for ln in out.splitlines() if ln.strip().startswith("cards") and "scored" in ln)
    assert "3 scored,   2 flagged angry; angry 1, negative 1, calm 1" in cards
    assert "angry calls (latest first): m2, m1" in out
    assert main(["--config", str(cfg), "report", "--since", "2026-12-01"]) == 0
    out = capsys.readouterr().out
    assert "caller mood: 0 calls scored" in out and "angry calls (latest first): -" in out
