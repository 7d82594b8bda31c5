"""`hotline kb ...`: edit, version and publish the knowledge base from the command line.

    hotline kb import configs/knowledge/faq.yaml      # CSV, YAML or JSON; good rows go into the draft
    hotline kb export kb.csv [--version N]            # the draft (default) or a published version
    hotline kb list [--version N]
    hotline kb show lost_card
    hotline kb edit lost_card --answer-en "Call us at once ..." --add-question-zh 卡被偷了
    hotline kb publish                                # draft -> published/v0001.yaml, v0002.yaml, ...
    hotline kb versions
    hotline kb rollback 3                             # v3's entries published again as the next version
    hotline kb diff [OLD [NEW]]                       # what changed: versions or "draft" (default: live -> draft)
    hotline kb search "when do you open" --lang en [--k 3] [--draft] [--date 2026-12-24]
    hotline kb unanswered [--limit 50]

The store lives in `--kb-dir` (default `var/knowledge`). Exit status: 0 done, 1 done but some
rows were refused (import) or nothing found (search), 2 nothing done (bad file, unknown id, ...).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Any, TextIO

from dialog.knowledge import KnowledgeEntry
from dialog.knowledge_store import (
    DEFAULT_LANGUAGES,
    KnowledgeStore,
    KnowledgeStoreError,
    diff_entries,
    write_entries,
)

DEFAULT_KB_DIR = Path("var/knowledge")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `kb ...` on the main parser's subcommands."""
    kb = sub.add_parser("kb", help="edit, version and publish the knowledge base")
    kb.add_argument("--kb-dir", type=Path, default=DEFAULT_KB_DIR, help="knowledge-base directory (var/knowledge)")
    kb.add_argument("--languages", default=",".join(DEFAULT_LANGUAGES), help="languages every entry must have (en,zh)")
    kb_sub = kb.add_subparsers(dest="kb_command", metavar="ACTION", required=True)

    p = kb_sub.add_parser("import", help="import entries from a CSV, YAML or JSON file into the draft")
    p.add_argument("file", type=Path)
    p.set_defaults(run=run_import)

    p = kb_sub.add_parser("export", help="write the draft (or a published version) as CSV, YAML or JSON")
    p.add_argument("file", type=Path)
    p.add_argument("--version", type=int, help="a published version instead of the draft")
    p.add_argument("--published", action="store_true", help="the newest published version instead of the draft")
    p.set_defaults(run=run_export)

    p = kb_sub.add_parser("list", help="list the entries of the draft (or a published version)")
    p.add_argument("--version", type=int)
    p.add_argument("--published", action="store_true")
    p.set_defaults(run=run_list)

    p = kb_sub.add_parser("show", help="print one entry")
    p.add_argument("id")
    p.add_argument("--version", type=int)
    p.add_argument("--published", action="store_true")
    p.set_defaults(run=run_show)

    p = kb_sub.add_parser("edit", help="change one draft entry")
    p.add_argument("id")
    p.add_argument("--category")
    p.add_argument("--effective-from", help="YYYY-MM-DD, or '' to clear")
    p.add_argument("--effective-until", help="YYYY-MM-DD, or '' to clear")
    for lang in DEFAULT_LANGUAGES:
        p.add_argument(f"--answer-{lang}", help=f"new answer in {lang}")
        p.add_argument(f"--add-question-{lang}", action="append", default=[], help=f"another question in {lang}")
    p.set_defaults(run=run_edit)

    p = kb_sub.add_parser("publish", help="make the draft the next published version")
    p.set_defaults(run=run_publish)

    p = kb_sub.add_parser("versions", help="list the published versions")
    p.set_defaults(run=run_versions)

    p = kb_sub.add_parser("rollback", help="publish an older version's entries again as the next version")
    p.add_argument("version", type=int)
    p.set_defaults(run=run_rollback)

    p = kb_sub.add_parser("diff", help="what changed between two versions (numbers, 'published' or 'draft')")
    p.add_argument("old", nargs="?", default="published", help="default: the newest published version")
    p.add_argument("new", nargs="?", default="draft", help="default: the draft")
    p.set_defaults(run=run_diff)

    p = kb_sub.add_parser("search", help="search the knowledge base as the hotline does")
    p.add_argument("text")
    p.add_argument("--lang", default=None, help="en, zh (default: every language)")
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--draft", action="store_true", help="search the draft instead of the published version")
    p.add_argument("--date", type=datetime.date.fromisoformat, help="day for effective dates (default today)")
    p.set_defaults(run=run_search)

    p = kb_sub.add_parser("unanswered", help="questions callers asked that the hotline could not answer")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(run=run_unanswered)


def _store(args: argparse.Namespace) -> KnowledgeStore:
    languages = tuple(x.strip() for x in str(getattr(args, "languages", "en,zh")).split(",") if x.strip())
    return KnowledgeStore(args.kb_dir, languages or DEFAULT_LANGUAGES)


def _source(args: argparse.Namespace) -> str | int:
    if getattr(args, "version", None) is not None:
        return int(args.version)
    return "published" if getattr(args, "published", False) else "draft"


def _fail(err: TextIO, command: str, exc: Exception) -> int:
    print(f"hotline kb {command}: {exc}", file=err)
    return 2


def run_import(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    store = _store(args)
    try:
        report = store.import_file(args.file)
    except KnowledgeStoreError as exc:
        return _fail(err, "import", exc)
    for problem in report.problems:
        print(problem.describe(str(args.file)), file=err)
    if report.file_refused:
        print(f"hotline kb import: nothing imported from {args.file}", file=err)
        return 2
    refused = len({p.row for p in report.problems if p.row and "ignored" not in p.problem})
    print(
        f"{args.file}: {report.rows} rows: {len(report.added)} added, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged, {refused} refused; draft in {store.draft_path}",
        file=out,
    )
    return 1 if refused else 0


def run_export(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    store = _store(args)
    try:
        entries = store.entries_of(_source(args))
        n = write_entries(args.file, entries, store.languages)
    except (KnowledgeStoreError, OSError) as exc:
        return _fail(err, "export", exc)
    print(f"wrote {n} entries to {args.file}", file=out)
    return 0


def _period(entry: KnowledgeEntry) -> str:
    if not entry.effective_from and not entry.effective_until:
        return "always"
    return f"{entry.effective_from or '...'} to {entry.effective_until or '...'}"


def run_list(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    store = _store(args)
    try:
        entries = store.entries_of(_source(args))
    except KnowledgeStoreError as exc:
        return _fail(err, "list", exc)
    print(f"{'id':<28} {'category':<18} {'ver':>3}  {'questions':<14} in force", file=out)
    for e in entries:
        counts = "/".join(f"{lang}:{len(e.questions.get(lang, []))}" for lang in store.languages)
        print(f"{e.id:<28} {e.category:<18} {e.version:>3}  {counts:<14} {_period(e)}", file=out)
    print(f"{len(entries)} entries ({_source(args)})", file=out)
    return 0


def run_show(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        entry = _store(args).get(args.id, _source(args))
    except KnowledgeStoreError as exc:
        return _fail(err, "show", exc)
    print(f"id: {entry.id}\ncategory: {entry.category}\nversion: {entry.version}\nin force: {_period(entry)}", file=out)
    for lang in sorted({*entry.questions, *entry.answer}):
        print(f"[{lang}] answer: {entry.answer.get(lang, '')}", file=out)
        for q in entry.questions.get(lang, []):
            print(f"[{lang}]   question: {q}", file=out)
        if entry.keywords.get(lang):
            print(f"[{lang}]   keywords: {', '.join(entry.keywords[lang])}", file=out)
    return 0


def run_edit(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    changes: dict[str, Any] = {
        "category": args.category,
        "effective_from": args.effective_from,
        "effective_until": args.effective_until,
    }
    answers = {lang: getattr(args, f"answer_{lang}") for lang in DEFAULT_LANGUAGES}
    changes["answer"] = {k: v for k, v in answers.items() if v}
    added = {lang: getattr(args, f"add_question_{lang}") for lang in DEFAULT_LANGUAGES}
    changes["add_questions"] = {k: v for k, v in added.items() if v}
    if not any(v for v in changes.values()):
        print("hotline kb edit: nothing to change (give --answer-en, --add-question-zh, --category, ...)", file=err)
        return 2
    store = _store(args)
    try:
        before = store.get(args.id)
        entry = store.edit(args.id, **changes)
    except KnowledgeStoreError as exc:
        return _fail(err, "edit", exc)
    if entry.version == before.version:
        print(f"{entry.id}: unchanged (version {entry.version})", file=out)
    else:
        print(f"{entry.id}: now version {entry.version} in the draft; `hotline kb publish` makes it live", file=out)
    return 0


def run_publish(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    store = _store(args)
    try:
        version = store.publish()
    except KnowledgeStoreError as exc:
        return _fail(err, "publish", exc)
    print(f"published version {version}: {store.published_path(version)}", file=out)
    return 0


def run_versions(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    store = _store(args)
    versions = store.versions()
    for v in versions:
        print(f"v{v:04d}  {store.published_path(v)}", file=out)
    if not versions:
        print("nothing published yet", file=out)
    return 0


def run_rollback(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    store = _store(args)
    try:
        version = store.rollback(args.version)
    except KnowledgeStoreError as exc:
        return _fail(err, "rollback", exc)
    print(f"published version {version} with the entries of version {args.version}; the draft is unchanged",
          file=out)
    return 0


def _diff_source(raw: str) -> str | int:
    if raw in ("draft", "published"):
        return raw
    try:
        return int(raw.lstrip("v"))
    except ValueError:
        raise KnowledgeStoreError(f"{raw!r}: a version number, 'published' or 'draft'") from None


def run_diff(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """One line per entry that differs: `+ id`, `- id`, `~ id: field, field`. Exit 0 when nothing differs, 1
    when something does (as diff(1)), 2 for an unknown version."""
    out, err = out or sys.stdout, err or sys.stderr
    store = _store(args)
    try:
        changes = diff_entries(store.entries_of(_diff_source(args.old)), store.entries_of(_diff_source(args.new)))
    except KnowledgeStoreError as exc:
        return _fail(err, "diff", exc)
    for ch in changes:
        mark = {"added": "+", "removed": "-", "changed": "~"}[ch.kind]
        print(f"{mark} {ch.id}" + (f": {', '.join(ch.fields)}" if ch.fields else ""), file=out)
    if not changes:
        print("no differences", file=out)
    return 1 if changes else 0


def run_search(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    store = _store(args)
    try:
        kb = store.knowledge_base("draft" if args.draft else "published")
    except KnowledgeStoreError as exc:
        return _fail(err, "search", exc)
    hits = kb.search(args.text, args.lang, k=max(1, args.k), today=args.date)
    for entry, score in hits:
        lang = args.lang if args.lang in entry.answer else next(iter(entry.answer))
        print(f"{score:.3f}\t{entry.id}\t{entry.answer[lang]}", file=out)
    if not hits:
        print("no match", file=err)
    return 0 if hits else 1


def run_unanswered(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    items, bad = _store(args).unanswered.read(limit=max(1, args.limit))
    for q in items:
        print(f"{q.time}\t{q.call_id}\t{q.lang}\t{q.best_score:.2f}\t{q.best_id or '-'}\t{q.text}", file=out)
    if bad:
        print(f"({bad} unreadable line(s) skipped)", file=err)
    if not items:
        print("no unanswered questions logged", file=out)
    return 0
