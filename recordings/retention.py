"""Retention: delete recordings older than N days; the call record and transcript stay, marked
recording_deleted."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from recordings.atrest import resolve_recording
from recordings.models import Call
from recordings.store import utcnow

if TYPE_CHECKING:
    from recordings.store import CallStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionResult:
    cutoff: datetime
    deleted: int  # recordings whose file was removed
    missing: int  # records whose file was already gone (marked too)
    bytes_freed: int
    failed: int  # files that could not be removed (left, not marked; tried again next run)


def apply_retention(store: CallStore, days: int, *, now: datetime | None = None, dry_run: bool = False,
                    batch: int = 500) -> RetentionResult:
    """Deletes the audio of calls started more than `days` days ago (open calls are never touched)."""
    if days < 1:
        raise ValueError("retention must be at least 1 day")
    cutoff = (now or utcnow()) - timedelta(days=days)
    deleted = missing = freed = failed = 0
    last_id = ""
    while True:
        with store.engine.connect() as conn:
            rows = conn.execute(
                select(Call.id, Call.recording_path)
                .where(Call.started_at < cutoff, Call.ended_at.is_not(None), Call.recording_path.is_not(None),
                       Call.recording_deleted.is_(False), Call.id > last_id)
                .order_by(Call.id).limit(batch)
            ).all()
        if not rows:
            break
        last_id = rows[-1].id
        for call_id, path in rows:
            found = resolve_recording(path) if path else None
            if found is None:
                missing += 1
            else:
                size = found.stat().st_size
                if not dry_run:
                    try:
                        found.unlink()
                    except OSError as exc:
                        failed += 1
                        log.error("call %s: retention could not delete %s: %s", call_id, found, exc)
                        continue
                deleted += 1
                freed += size
            if not dry_run:
                store.mark_recording_deleted(call_id)
    log.info("retention %d days (before %s): %d recordings deleted, %d already gone, %d bytes freed, %d failed",
             days, cutoff.isoformat(timespec="seconds"), deleted, missing, freed, failed)
    return RetentionResult(cutoff, deleted, missing, freed, failed)
