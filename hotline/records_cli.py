"""`hotline db`, `hotline retention`, `hotline report` and `hotline calls search`: the records from the
command line (docs/RECORDS.md)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hotline.settings import load_settings


def _when(text: str) -> datetime:
    """ISO date or date-time (UTC unless it says otherwise), or N followed by h/d: that long ago."""
    t = text.strip()
    try:
        if t[-1:] in ("h", "d") and t[:-1].isdigit():
            n = int(t[:-1])
            return datetime.now(UTC) - (timedelta(hours=n) if t.endswith("h") else timedelta(days=n))
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use 2026-12-01, 2026-12-01T09:30 or 7d") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def add_commands(sub: Any, calls: argparse.ArgumentParser) -> None:
    db = sub.add_parser("db", help="the call database's schema: upgrade it, or show its revision")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = db_sub.add_parser("upgrade", help="migrate the schema to the newest revision (serve does it too)")
    up.add_argument("--revision", default="head")
    up.set_defaults(run=_db_upgrade)
    cur = db_sub.add_parser("current", help="print the database's schema revision and the newest one")
    cur.set_defaults(run=_db_current)

    ret = sub.add_parser("retention", help="delete recordings older than N days; records and transcripts stay")
    ret.add_argument("--days", type=int, help="default: recordings.retention_days in the settings")
    ret.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
    ret.set_defaults(run=_retention)

    rep = sub.add_parser("report", help="containment, transfers, handle time, speed of answer, abandonment, ...")
    rep.add_argument("--since", type=_when, help="from (ISO date/time UTC, or e.g. 7d, 12h ago)")
    rep.add_argument("--until", type=_when, help="up to, not including")
    rep.add_argument("--by", choices=["hour", "day", "queue", "agent"])
    rep.add_argument("--sl-seconds", type=float, default=20.0, help="service level threshold (default 20)")
    rep.set_defaults(run=_report)

    play = sub.add_parser("recording", help="write one call's recording as a plain WAV (decrypted, decompressed)")
    play.add_argument("call_id")
    play.add_argument("-o", "--output", type=Path, required=True, help="the WAV file to write")
    play.set_defaults(run=_recording)

    calls_sub = calls.add_subparsers(dest="calls_command", metavar="ACTION")
    se = calls_sub.add_parser("search", help="full-text search of transcripts (English and Chinese) with filters")
    se.add_argument("text", nargs="?", default=None, help="words to find in one line of a transcript")
    se.add_argument("--since", type=_when)
    se.add_argument("--until", type=_when)
    for name in ("intent", "outcome", "queue", "agent", "lang", "caller"):
        se.add_argument(f"--{name}")
    se.add_argument("--limit", type=int, default=50)
    se.add_argument("--offset", type=int, default=0)
    se.set_defaults(run=_search)
    for parser in (up, cur, ret, rep, se, play):
        parser.set_defaults(run=_unreachable_is_an_error(parser.get_default("run")))


def _unreachable_is_an_error(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        from sqlalchemy.exc import InterfaceError, OperationalError

        try:
            return int(fn(args))
        except (OperationalError, InterfaceError) as exc:
            print(f"hotline: the database cannot be used: {str(exc.orig or exc).strip().splitlines()[0]}",
                  file=sys.stderr)
            return 1

    return run


def _store(args: argparse.Namespace) -> Any:
    from recordings import CallStore

    return CallStore(load_settings(args.config).database_url)


def _db_upgrade(args: argparse.Namespace) -> int:
    from recordings.migrate import current, engine_for, upgrade

    engine = engine_for(load_settings(args.config).database_url)
    before = current(engine)
    after = upgrade(engine, args.revision)
    print(f"database schema: {before or '(none)'} -> {after}" if before != after else f"database schema: {after}")
    engine.dispose()
    return 0


def _db_current(args: argparse.Namespace) -> int:
    from recordings.migrate import current, engine_for, head

    engine = engine_for(load_settings(args.config).database_url)
    rev, newest = current(engine), head()
    engine.dispose()
    state = "up to date" if rev == newest else "needs `hotline db upgrade`"
    print(f"database schema {rev or '(none)'}; newest {newest}: {state}")
    return 0 if rev == newest else 1


def _retention(args: argparse.Namespace) -> int:
    from recordings.retention import apply_retention

    settings = load_settings(args.config)
    days = args.days if args.days is not None else settings.recordings.retention_days
    if days is None:
        print("hotline: give --days N, or set recordings.retention_days in the settings", file=sys.stderr)
        return 2
    if days < 1:
        print("hotline: --days must be at least 1", file=sys.stderr)
        return 2
    store = _store(args)
    res = apply_retention(store, days, dry_run=args.dry_run)
    store.close()
    verb = "would delete" if args.dry_run else "deleted"
    print(f"recordings of calls before {res.cutoff:%Y-%m-%d %H:%M} UTC: {verb} {res.deleted} "
          f"({res.bytes_freed / 1e6:.1f} MB), {res.missing} already gone, {res.failed} could not be deleted")
    return 1 if res.failed else 0


def _report(args: argparse.Namespace) -> int:
    from recordings.analytics import format_report, report

    store = _store(args)
    try:
        rep = report(store, since=args.since, until=args.until, by=args.by, sl_threshold_s=args.sl_seconds)
    except ValueError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(format_report(rep))
    return 0


def _recording(args: argparse.Namespace) -> int:
    from recordings.atrest import RecordingKeyError, RecordingUnreadable, open_recording

    store = _store(args)
    call = store.get_call(args.call_id)
    store.close()
    if call is None:
        print(f"hotline: no call {args.call_id!r} (see `hotline calls`)", file=sys.stderr)
        return 1
    if not call.recording_path:
        print(f"hotline: call {args.call_id} has no recording", file=sys.stderr)
        return 1
    try:
        wav = open_recording(call.recording_path)
    except (RecordingUnreadable, RecordingKeyError) as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 1
    args.output.write_bytes(wav)
    print(f"{args.output}: {len(wav)} bytes")
    return 0


def _search(args: argparse.Namespace) -> int:
    from recordings.search import SearchError, search_calls

    store = _store(args)
    try:
        hits = search_calls(store, args.text, since=args.since, until=args.until, intent=args.intent,
                            outcome=args.outcome, queue=args.queue, agent=args.agent, lang=args.lang,
                            caller=args.caller, limit=args.limit, offset=args.offset)
    except SearchError as exc:
        print(f"hotline: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    for h in hits:
        print(f"{h.call_id}\t{h.started_at:%Y-%m-%d %H:%M:%S}\t{h.caller or '-'}\t{h.outcome or 'in progress'}"
              f"\t{h.last_intent or '-'}\t{h.queue or '-'}\t{h.agent or '-'}")
        for s in h.snippets:
            print(f"    {s.seq:>3} {s.speaker:>7}: {s.text}")
    if not hits:
        print("no calls found", file=sys.stderr)
    return 0
