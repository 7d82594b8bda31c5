"""Knowledge-base editing: import and export (CSV, YAML, JSON), a draft, published versions, and
the log of questions the hotline could not answer.

A store is a directory:

| file | holds |
|---|---|
| `draft.yaml` | the entries being edited (imports and `edit` change it) |
| `published/v0001.yaml`, ... | every published version, never changed afterwards; the newest is live |
| `published/index.jsonl` | one line per publication: version, time, entries (`rollback_of`: the version restored) |
| `unanswered.jsonl` | append-only: time, call id, language, text, best score and entry of questions not answered |

Draft and published files have the knowledge-file format of `configs/knowledge/*.yaml`, so a flow
can name a published file directly. Every file is written to a temporary name and renamed, so a
crash never leaves half a file.

A rollback publishes an older version's entries again as the next version (nothing is deleted, so it can be
undone the same way); the draft is left as it is. `diff_entries` tells what changed between two sets of
entries, field by field (`answer.en`, `questions.zh`, `category`, ...).

Import checks each row (CSV) or entry (YAML, JSON) on its own: bad rows are reported with row
number, column and problem, and every good row is imported. A file that cannot be read as a whole
(not UTF-8, too big, not CSV/YAML/JSON, required columns missing) imports nothing.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import ValidationError

from dialog.config_file import _StrictLoader
from dialog.knowledge import KnowledgeBase, KnowledgeEntry
from dialog.text_features import normalize

log = logging.getLogger(__name__)

MAX_IMPORT_BYTES = 5_000_000  # a knowledge base of thousands of entries is far smaller
MAX_LOGGED_TEXT = 500  # characters of an unanswered question kept in the log
DEFAULT_LANGUAGES = ("en", "zh")
LIST_SEPARATOR = "|"  # several questions or keywords in one CSV cell: "when do you open | opening hours"
FORMATS = {".csv": "csv", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}
_SCALAR_COLUMNS = ("id", "category", "effective_from", "effective_until", "version")


@dataclass(frozen=True)
class ImportProblem:
    """One refused row (or, with row 0, the whole file): where and why."""

    row: int  # CSV: line number (the header is line 1); YAML/JSON: entry number from 1; 0: the file
    column: str  # CSV column or entry key ("" for the whole row)
    problem: str

    def describe(self, file: str) -> str:
        where = f"{file}:{self.row}" if self.row else file
        return f"{where}: {self.column or '(row)'}: {self.problem}" if self.row else f"{where}: {self.problem}"


@dataclass
class ImportReport:
    """What an import did: the good entries, and the problems of the refused rows."""

    entries: list[KnowledgeEntry] = field(default_factory=list)
    problems: list[ImportProblem] = field(default_factory=list)
    rows: int = 0
    row_of: dict[str, int] = field(default_factory=dict)  # entry id -> its row in the file
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def file_refused(self) -> bool:
        return any(p.row == 0 for p in self.problems)


class KnowledgeStoreError(ValueError):
    """A request the store cannot carry out (unknown id, nothing to publish, unknown version)."""


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


def file_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise KnowledgeStoreError(f"{path}: unknown format {path.suffix!r}; use .csv, .yaml, .yml or .json")
    return fmt


def read_entries(path: Path | str, languages: Sequence[str] = DEFAULT_LANGUAGES) -> ImportReport:
    """Parse and check a CSV, YAML or JSON file; never raises for bad content."""
    path = Path(path)
    report = ImportReport()
    try:
        fmt = file_format(path)
        size = path.stat().st_size
    except KnowledgeStoreError as exc:
        report.problems.append(ImportProblem(0, "", str(exc).split(": ", 1)[1]))
        return report
    except FileNotFoundError:
        report.problems.append(ImportProblem(0, "", "no such file"))
        return report
    if path.is_dir():
        report.problems.append(ImportProblem(0, "", "is a directory"))
        return report
    if size > MAX_IMPORT_BYTES:
        report.problems.append(
            ImportProblem(0, "", f"file is {size / 1e6:.1f} MB; the limit is {MAX_IMPORT_BYTES / 1e6:.0f} MB")
        )
        return report
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        report.problems.append(
            ImportProblem(0, "", f"not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save it as UTF-8")
        )
        return report
    if "\x00" in text:
        report.problems.append(ImportProblem(0, "", "contains NUL characters: not a text file"))
        return report
    rows = _csv_rows(text, report) if fmt == "csv" else _structured_rows(text, fmt, report)
    seen: dict[str, int] = {}
    owners: dict[tuple[str, str], tuple[str, int]] = {}
    for row_number, data in rows:
        report.rows += 1
        entry = _validate(row_number, data, languages, report)
        if entry is None:
            continue
        if entry.id in seen:
            report.problems.append(
                ImportProblem(row_number, "id", f"id {entry.id!r} is already in row {seen[entry.id]}")
            )
            continue
        clash = _question_clash(entry, owners)
        if clash:
            column, text_, other, other_row = clash
            report.problems.append(
                ImportProblem(row_number, column, f"question {text_!r} is also under {other!r} (row {other_row})")
            )
            continue
        seen[entry.id] = row_number
        report.row_of[entry.id] = row_number
        for lang, questions in entry.questions.items():
            for q in questions:
                owners[(lang, normalize(q))] = (entry.id, row_number)
        report.entries.append(entry)
    return report


def _question_clash(
    entry: KnowledgeEntry, owners: dict[tuple[str, str], tuple[str, int]]
) -> tuple[str, str, str, int] | None:
    for lang, questions in entry.questions.items():
        for q in questions:
            other = owners.get((lang, normalize(q)))
            if other and other[0] != entry.id:
                return f"questions.{lang}", q, other[0], other[1]
    return None


def _csv_rows(text: str, report: ImportReport) -> list[tuple[int, dict[str, Any]]]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [(c or "").strip().lower() for c in reader.fieldnames or []]
    except csv.Error as exc:
        report.problems.append(ImportProblem(0, "", f"not a CSV file ({exc})"))
        return []
    if not header:
        report.problems.append(ImportProblem(0, "", "the file is empty"))
        return []
    missing = [c for c in ("id", "category") if c not in header]
    if not any(c.startswith("question_") for c in header):
        missing.append("question_<lang> (e.g. question_en)")
    if not any(c.startswith("answer_") for c in header):
        missing.append("answer_<lang> (e.g. answer_en)")
    if missing:
        report.problems.append(
            ImportProblem(0, "", f"missing column(s) {', '.join(missing)} (found: {', '.join(header) or 'nothing'})")
        )
        return []
    known = set(_SCALAR_COLUMNS)
    for column in header:
        if column not in known and not column.startswith(("question_", "answer_", "keywords_")):
            report.problems.append(ImportProblem(1, column, "unknown column, ignored"))
    if len(set(header)) != len(header):
        report.problems.append(ImportProblem(0, "", "a column name appears twice in the header"))
        return []
    reader.fieldnames = header
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        for record in reader:
            line = reader.line_num
            if None in record:  # more cells than header columns
                report.rows += 1
                report.problems.append(ImportProblem(line, "", "more cells than columns in the header"))
                continue
            if all(not (v or "").strip() for v in record.values()):
                continue
            rows.append((line, _csv_record_to_entry(record)))
    except csv.Error as exc:
        report.problems.append(ImportProblem(reader.line_num, "", f"unreadable CSV ({exc}); rows after it ignored"))
    return rows


def _csv_record_to_entry(record: dict[str, str | None]) -> dict[str, Any]:
    data: dict[str, Any] = {"questions": {}, "answer": {}, "keywords": {}}
    for column, value in record.items():
        value = (value or "").strip()
        if column in _SCALAR_COLUMNS:
            if value:
                data[column] = value
        elif column.startswith("question_") and value:
            data["questions"][column[9:]] = _split(value)
        elif column.startswith("answer_") and value:
            data["answer"][column[7:]] = value
        elif column.startswith("keywords_") and value:
            data["keywords"][column[9:]] = _split(value)
    return data


def _split(cell: str) -> list[str]:
    return [part.strip() for part in cell.replace("\n", LIST_SEPARATOR).split(LIST_SEPARATOR) if part.strip()]


def _structured_rows(text: str, fmt: str, report: ImportReport) -> list[tuple[int, dict[str, Any]]]:
    try:
        # YAML: duplicate keys are errors (plain YAML silently keeps the last one)
        data = json.loads(text) if fmt == "json" else yaml.load(text, Loader=_StrictLoader)
    except json.JSONDecodeError as exc:
        report.problems.append(ImportProblem(0, "", f"not valid JSON (line {exc.lineno}: {exc.msg})"))
        return []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        report.problems.append(ImportProblem(0, "", f"not valid YAML ({where}{what})"))
        return []
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"version", "entries"})
        if unknown or "entries" not in data:
            report.problems.append(
                ImportProblem(0, "", f"expected keys 'version' and 'entries' (found: {', '.join(map(str, data))})")
            )
            return []
        if data.get("version", 1) != 1:
            report.problems.append(ImportProblem(0, "", f"format version {data.get('version')!r}; this reads 1"))
            return []
        data = data["entries"]
    if not isinstance(data, list):
        report.problems.append(ImportProblem(0, "", "expected a list of entries (or {version: 1, entries: [...]})"))
        return []
    rows: list[tuple[int, dict[str, Any]]] = []
    for i, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            report.rows += 1
            report.problems.append(ImportProblem(i, "", f"expected a mapping of keys, found {type(item).__name__}"))
            continue
        rows.append((i, item))
    return rows


def _validate(row: int, data: dict[str, Any], languages: Sequence[str], report: ImportReport) -> KnowledgeEntry | None:
    try:
        entry = KnowledgeEntry.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors()[:5]:
            loc = [str(p) for p in err["loc"]]
            column = _column_name(loc)
            report.problems.append(ImportProblem(row, column, _message(err)))
        return None
    for lang in sorted({*entry.questions, *entry.answer, *entry.keywords}):
        if lang not in languages:
            report.problems.append(
                ImportProblem(row, f"answer_{lang}", f"language {lang!r} is not offered ({', '.join(languages)})")
            )
            return None
    for lang in languages:
        if not any(q.strip() for q in entry.questions.get(lang, [])):
            report.problems.append(ImportProblem(row, f"question_{lang}", f"needs at least one question in {lang!r}"))
            return None
        if not entry.answer.get(lang, "").strip():
            report.problems.append(ImportProblem(row, f"answer_{lang}", f"needs an answer in {lang!r}"))
            return None
    return entry


def _column_name(loc: list[str]) -> str:
    if not loc:
        return ""
    if loc[0] in ("questions", "answer", "keywords") and len(loc) > 1:
        return f"{'question' if loc[0] == 'questions' else loc[0]}_{loc[1]}"
    return loc[0]


def _message(err: Any) -> str:
    msg = str(err.get("msg", "invalid"))
    if err.get("type") == "string_pattern_mismatch":
        return "must be lower case letters, digits and underscores, starting with a letter"
    if err.get("type") == "extra_forbidden":
        return "unknown key (check the spelling)"
    value = err.get("input")
    if isinstance(value, str | int | float) and err.get("type") not in ("missing",):
        return f"{msg} (got {str(value)[:40]!r})"
    return msg


# --------------------------------------------------------------------------------------------
# Writing files
# --------------------------------------------------------------------------------------------


def entry_to_data(entry: KnowledgeEntry) -> dict[str, Any]:
    data = entry.model_dump(exclude_none=True)
    if not data.get("keywords"):
        data.pop("keywords", None)
    return data


def write_entries(path: Path | str, entries: Iterable[KnowledgeEntry], languages: Sequence[str] = ()) -> int:
    """Write entries as CSV, YAML or JSON (by the file's extension); returns how many."""
    path = Path(path)
    fmt = file_format(path)
    items = list(entries)
    if fmt == "csv":
        langs = list(languages) or sorted({lang for e in items for lang in (*e.questions, *e.answer)})
        buffer = io.StringIO(newline="")
        columns = ["id", "category", *(f"question_{lang}" for lang in langs), *(f"answer_{lang}" for lang in langs)]
        columns += [f"keywords_{lang}" for lang in langs] + ["effective_from", "effective_until", "version"]
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for e in items:
            row: dict[str, Any] = {"id": e.id, "category": e.category, "version": e.version}
            row["effective_from"] = e.effective_from.isoformat() if e.effective_from else ""
            row["effective_until"] = e.effective_until.isoformat() if e.effective_until else ""
            for lang in langs:
                row[f"question_{lang}"] = f" {LIST_SEPARATOR} ".join(e.questions.get(lang, []))
                row[f"answer_{lang}"] = e.answer.get(lang, "")
                row[f"keywords_{lang}"] = f" {LIST_SEPARATOR} ".join(e.keywords.get(lang, []))
            writer.writerow(row)
        text = buffer.getvalue()
    elif fmt == "json":
        payload = {"version": 1, "entries": [entry_to_data(e) for e in items]}
        text = json.dumps(payload, ensure_ascii=False, indent=2, default=_json_default) + "\n"
    else:
        text = _yaml_text(items)
    _atomic_write(path, text)
    return len(items)


def _json_default(value: object) -> str:
    if isinstance(value, datetime.date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _yaml_text(entries: list[KnowledgeEntry], header: str = "") -> str:
    body = yaml.safe_dump(
        {"version": 1, "entries": [entry_to_data(e) for e in entries]},
        allow_unicode=True,
        sort_keys=False,
        width=100,
    )
    return header + body


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


class KnowledgeStore:
    """A knowledge base under a directory: draft, published versions, unanswered questions."""

    def __init__(self, directory: Path | str, languages: Sequence[str] = DEFAULT_LANGUAGES) -> None:
        self.directory = Path(directory)
        self.languages = tuple(languages)
        self.draft_path = self.directory / "draft.yaml"
        self.published_dir = self.directory / "published"
        self.unanswered = UnansweredLog(self.directory / "unanswered.jsonl")

    # --- reading -------------------------------------------------------------------------------

    def draft(self) -> list[KnowledgeEntry]:
        """The draft's entries; a store without a draft starts from the newest published version."""
        if self.draft_path.is_file():
            return self._read(self.draft_path)
        versions = self.versions()
        return self.published(versions[-1]) if versions else []

    def versions(self) -> list[int]:
        found = []
        for p in self.published_dir.glob("v*.yaml"):
            if p.stem[1:].isdigit():
                found.append(int(p.stem[1:]))
        return sorted(found)

    def published_path(self, version: int | None = None) -> Path:
        versions = self.versions()
        if not versions:
            raise KnowledgeStoreError(f"{self.directory}: nothing published yet (run `hotline kb publish`)")
        chosen = versions[-1] if version is None else version
        if chosen not in versions:
            raise KnowledgeStoreError(
                f"{self.directory}: no published version {version}; have {', '.join(map(str, versions))}"
            )
        return self.published_dir / f"v{chosen:04d}.yaml"

    def published(self, version: int | None = None) -> list[KnowledgeEntry]:
        return self._read(self.published_path(version))

    def knowledge_base(self, source: str | int = "published") -> KnowledgeBase:
        """A searchable base of the draft (`"draft"`), the newest published version, or a version number."""
        return KnowledgeBase(self.entries_of(source))

    def get(self, entry_id: str, source: str | int = "draft") -> KnowledgeEntry:
        for entry in self.entries_of(source):
            if entry.id == entry_id:
                return entry
        raise KnowledgeStoreError(f"no entry {entry_id!r} in the {source} knowledge base")

    def _read(self, path: Path) -> list[KnowledgeEntry]:
        report = read_entries(path, self.languages)
        if report.problems:
            lines = "; ".join(p.describe(str(path)) for p in report.problems[:5])
            raise KnowledgeStoreError(f"{path} is damaged: {lines}")
        return report.entries

    # --- changing ------------------------------------------------------------------------------

    def save_draft(self, entries: Sequence[KnowledgeEntry]) -> None:
        header = "# Knowledge-base draft: `hotline kb publish` makes it live. See docs/DIALOG.md.\n"
        _atomic_write(self.draft_path, _yaml_text(list(entries), header))

    def import_file(self, path: Path | str) -> ImportReport:
        """Merge the good rows of a file into the draft (same id: replaced, version raised)."""
        report = read_entries(path, self.languages)
        if not report.entries:
            return report
        current = {e.id: e for e in self.draft()}
        merged = dict(current)
        owners = {(lang, normalize(q)): e.id for e in current.values() for lang, qs in e.questions.items() for q in qs}
        for entry in report.entries:
            clash = next(
                (
                    (lang, q, owners[(lang, normalize(q))])
                    for lang, qs in entry.questions.items()
                    for q in qs
                    if owners.get((lang, normalize(q)), entry.id) != entry.id
                ),
                None,
            )
            if clash:
                message = f"question {clash[1]!r} is already under {clash[2]!r} in the draft; not imported"
                report.problems.append(ImportProblem(report.row_of.get(entry.id, 0), f"question_{clash[0]}", message))
                continue
            old = current.get(entry.id)
            if old is None:
                merged[entry.id] = entry
                report.added.append(entry.id)
            elif old.content() == entry.content():
                report.unchanged.append(entry.id)
            else:
                merged[entry.id] = entry.model_copy(update={"version": max(old.version + 1, entry.version)})
                report.updated.append(entry.id)
            for lang, qs in entry.questions.items():
                for q in qs:
                    owners[(lang, normalize(q))] = entry.id
        if report.added or report.updated:
            self.save_draft(list(merged.values()))
        log.info(
            "knowledge import %s: %d added, %d updated, %d unchanged, %d problems",
            path,
            len(report.added),
            len(report.updated),
            len(report.unchanged),
            len(report.problems),
        )
        return report

    def edit(self, entry_id: str, **changes: Any) -> KnowledgeEntry:
        """Change one draft entry: `answer={"en": ...}` and `questions`/`keywords` merge per language;
        `add_questions={"en": [...]}` appends; other fields (category, effective_from, ...) replace."""
        entries = self.draft()
        i = next((n for n, e in enumerate(entries) if e.id == entry_id), None)
        if i is None:
            raise KnowledgeStoreError(f"no entry {entry_id!r} in the draft (see `hotline kb list`)")
        entry = entries[i]
        data = entry_to_data(entry)
        for key in ("answer", "questions", "keywords"):
            if changes.get(key):
                data[key] = {**data.get(key, {}), **changes.pop(key)}
        for lang, extra in (changes.pop("add_questions", None) or {}).items():
            data["questions"][lang] = [*data["questions"].get(lang, []), *extra]
        for key, value in changes.items():
            if value is not None:
                data[key] = None if value == "" else value
        data = {k: v for k, v in data.items() if v is not None}
        report = ImportReport()
        updated = _validate(0, data, self.languages, report)
        if updated is None:
            raise KnowledgeStoreError("; ".join(f"{p.column}: {p.problem}" for p in report.problems))
        others = {
            (lang, normalize(q)): e.id
            for e in entries
            if e.id != entry_id
            for lang, qs in e.questions.items()
            for q in qs
        }
        for lang, qs in updated.questions.items():
            for q in qs:
                if (lang, normalize(q)) in others:
                    raise KnowledgeStoreError(f"question {q!r} is already under {others[(lang, normalize(q))]!r}")
        if updated.content() != entry.content():
            updated = updated.model_copy(update={"version": entry.version + 1})
            entries[i] = updated
            self.save_draft(entries)
        return updated

    def publish(self) -> int:
        """Copy the draft to the next published version; returns its number."""
        entries = self.draft()
        if not entries:
            raise KnowledgeStoreError(f"{self.directory}: the draft is empty; import entries first")
        return self._publish(entries)

    def rollback(self, version: int) -> int:
        """Publish `version`'s entries again as the next version (callers hear them from their next call);
        returns the new version's number. The draft is not touched. KnowledgeStoreError for a version that
        does not exist or cannot be read, or for the newest version itself (nothing to roll back)."""
        versions = self.versions()
        if versions and version == versions[-1]:
            raise KnowledgeStoreError(f"version {version} is already the newest published version")
        entries = self.published(version)  # unknown or damaged: KnowledgeStoreError naming it
        new = self._publish(entries, rollback_of=version)
        log.info("knowledge base rolled back to version %d as version %d", version, new)
        return new

    def _publish(self, entries: Sequence[KnowledgeEntry], **note: Any) -> int:
        KnowledgeBase(entries)  # builds the index: entries that cannot be searched are not published
        versions = self.versions()
        version = (versions[-1] if versions else 0) + 1
        header = f"# Published knowledge base, version {version}. Do not edit: change the draft and publish.\n"
        _atomic_write(self.published_dir / f"v{version:04d}.yaml", _yaml_text(list(entries), header))
        record = {
            "version": version,
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "entries": len(entries),
            **note,
        }
        with (self.published_dir / "index.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        log.info("knowledge base version %d published (%d entries)", version, len(entries))
        return version

    def entries_of(self, source: str | int) -> list[KnowledgeEntry]:
        """The draft (`"draft"`), the newest published version (`"published"`) or a version number."""
        if source == "draft":
            return self.draft()
        return self.published(None if source == "published" else int(source))


# --------------------------------------------------------------------------------------------
# Differences between versions
# --------------------------------------------------------------------------------------------

_PER_LANGUAGE = ("questions", "answer", "keywords")


@dataclass(frozen=True)
class EntryChange:
    """One entry that differs: `kind` is "added", "removed" or "changed"; `fields` names what changed
    (`category`, `answer.en`, `questions.zh`, `effective_until`, ...)."""

    id: str
    kind: str
    fields: tuple[str, ...]
    old: KnowledgeEntry | None
    new: KnowledgeEntry | None


def diff_entries(old: Sequence[KnowledgeEntry], new: Sequence[KnowledgeEntry]) -> list[EntryChange]:
    """What changed from `old` to `new`: entries added and changed in `new`'s order, then those removed.
    The entry's own version number is not a change (an edit that changed nothing keeps it anyway)."""
    before = {e.id: e for e in old}
    after = {e.id: e for e in new}
    out: list[EntryChange] = []
    for entry in new:
        prev = before.get(entry.id)
        if prev is None:
            out.append(EntryChange(entry.id, "added", (), None, entry))
            continue
        a, b = prev.content(), entry.content()
        fields: list[str] = []
        for key in sorted(set(a) | set(b)):
            if key in _PER_LANGUAGE:
                x, y = cast(dict[str, Any], a.get(key) or {}), cast(dict[str, Any], b.get(key) or {})
                fields += [f"{key}.{lang}" for lang in sorted(set(x) | set(y)) if x.get(lang) != y.get(lang)]
            elif a.get(key) != b.get(key):
                fields.append(key)
        if fields:
            out.append(EntryChange(entry.id, "changed", tuple(fields), prev, entry))
    out += [EntryChange(e.id, "removed", (), e, None) for e in old if e.id not in after]
    return out


# --------------------------------------------------------------------------------------------
# Unanswered questions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnansweredQuestion:
    time: str
    call_id: str
    lang: str
    text: str
    best_score: float
    best_id: str | None = None


class UnansweredLog:
    """Append-only JSONL of questions the hotline could not answer, for the knowledge-base editors."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def record(
        self, call_id: str, lang: str, text: str, best_score: float, best_id: str | None = None
    ) -> UnansweredQuestion:
        item = UnansweredQuestion(
            time=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            call_id=str(call_id),
            lang=str(lang),
            text=" ".join(str(text).split())[:MAX_LOGGED_TEXT],
            best_score=round(float(best_score), 4),
            best_id=best_id,
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(item.__dict__, ensure_ascii=False) + "\n"
        # one write() of one line in append mode: lines from several processes never interleave
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)
        log.info("[call %s] unanswered question logged (%s, best %.2f)", call_id, lang, best_score)
        return item

    def read(self, limit: int | None = None) -> tuple[list[UnansweredQuestion], int]:
        """The logged questions, oldest first (the newest `limit`), and how many lines were unreadable."""
        if not self.path.is_file():
            return [], 0
        items: list[UnansweredQuestion] = []
        bad = 0
        with self.path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                    items.append(
                        UnansweredQuestion(
                            str(data["time"]),
                            str(data["call_id"]),
                            str(data["lang"]),
                            str(data["text"]),
                            float(data["best_score"]),
                            data.get("best_id"),
                        )
                    )
                except (ValueError, KeyError, TypeError):
                    bad += 1
        return (items[-limit:] if limit else items), bad
