"""Knowledge base: import/export round trips, bad files, versions and publishing, the CLI, unanswered log."""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dialog import DialogEngine, load_flow
from dialog.kb_cli import add_commands
from dialog.knowledge import KnowledgeBase, KnowledgeEntry, load_knowledge
from dialog.knowledge_store import MAX_IMPORT_BYTES, KnowledgeStore, read_entries, write_entries

REPO = Path(__file__).resolve().parents[2]
FAQ = REPO / "configs" / "knowledge" / "faq.yaml"
LANGS = ("en", "zh")


def entry(entry_id: str, **extra: object) -> dict[str, object]:
    data: dict[str, object] = {
        "id": entry_id,
        "category": "test",
        "questions": {"en": [f"question about {entry_id}"], "zh": [f"关于{entry_id}的问题"]},
        "answer": {"en": f"Answer {entry_id}.", "zh": f"答案{entry_id}。"},
    }
    data.update(extra)
    return data


def write_yaml(path: Path, entries: list[dict[str, object]]) -> Path:
    path.write_text(yaml.safe_dump({"version": 1, "entries": entries}, allow_unicode=True), encoding="utf-8")
    return path


def csv_file(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


CSV_HEADER = ["id", "category", "question_en", "question_zh", "answer_en", "answer_zh", "effective_from"]


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".yaml", ".json"])
def test_export_then_import_round_trips_every_field(tmp_path: Path, suffix: str) -> None:
    shipped = load_knowledge(FAQ, LANGS)
    dated = shipped[0].model_copy(
        update={"effective_from": datetime.date(2026, 1, 1), "effective_until": datetime.date(2027, 6, 30)}
    )
    entries = [dated, *shipped[1:]]
    exported = tmp_path / f"kb{suffix}"
    assert write_entries(exported, entries, LANGS) == len(entries)
    report = read_entries(exported, LANGS)
    assert report.problems == []
    assert [e.model_dump() for e in report.entries] == [e.model_dump() for e in entries]
    store = KnowledgeStore(tmp_path / "store")
    imported = store.import_file(exported)
    assert sorted(imported.added) == sorted(e.id for e in entries)
    assert [e.model_dump() for e in store.draft()] == [e.model_dump() for e in entries]


def test_the_shipped_faq_imports_cleanly_and_a_published_version_loads_as_a_flow_knowledge_file(
    tmp_path: Path,
) -> None:
    store = KnowledgeStore(tmp_path)
    report = store.import_file(FAQ)
    assert report.problems == [] and len(report.added) == 6
    version = store.publish()
    published = store.published_path(version)
    assert load_knowledge(published, LANGS) == load_knowledge(FAQ, LANGS)


def test_the_engine_answers_from_a_published_version(
    tmp_path: Path, bank_flow_data: dict[str, Any], write_flow: Callable[[dict[str, Any]], Path]
) -> None:
    store = KnowledgeStore(tmp_path / "kb")
    store.import_file(FAQ)
    store.edit("opening_hours", answer={"en": "We open at 8 am every weekday."})
    bank_flow_data["knowledge"] = [str(store.published_path(store.publish()))]
    conv = DialogEngine(load_flow(write_flow(bank_flow_data))).new_conversation("kb-call")
    conv.start()
    spoken = [getattr(a, "text", "") for a in conv.handle_text("what are your opening hours")]
    assert "We open at 8 am every weekday." in spoken


# --- bad files -------------------------------------------------------------------------------------


def test_wrong_encoding_imports_nothing_and_keeps_the_draft(tmp_path: Path) -> None:
    store = KnowledgeStore(tmp_path / "store")
    store.import_file(FAQ)
    before = store.draft_path.read_bytes()
    bad = tmp_path / "gbk.csv"  # what a spreadsheet on a Chinese Windows saves by default
    bad.write_bytes("id,category,question_en,question_zh,answer_en,answer_zh\nx,c,q,问题,a,答\n".encode("gbk"))
    report = store.import_file(bad)
    assert report.file_refused and report.entries == []
    assert "not UTF-8" in report.problems[0].problem and "line 2" in report.problems[0].problem
    assert store.draft_path.read_bytes() == before


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = csv_file(tmp_path / "m.csv", ["id", "question_en", "answer_en"], [["a", "q", "a"]])
    report = read_entries(path, LANGS)
    assert report.file_refused and report.entries == []
    assert "missing column(s) category" in report.problems[0].problem


def test_a_file_over_the_size_limit_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with path.open("wb") as f:
        f.write(b"id,category,question_en,question_zh,answer_en,answer_zh\n")
        f.truncate(MAX_IMPORT_BYTES * 2)  # 10 MB
    started = time.process_time()
    store = KnowledgeStore(tmp_path / "store")
    report = store.import_file(path)
    assert report.file_refused and "10.0 MB" in report.problems[0].problem
    assert not store.draft_path.exists()
    assert time.process_time() - started < 1.0


def test_bad_rows_get_row_column_and_problem_while_good_rows_import(tmp_path: Path) -> None:
    rows = [
        ["good_one", "c", "how do i pay", "怎么付款", "Pay in the app.", "在应用里付款。", ""],
        ["good_one", "c", "another question", "另一个问题", "Dup.", "重复。", ""],  # duplicate id
        ["bad_date", "c", "when is it", "什么时候", "Soon.", "很快。", "2026-02-30"],
        ["soon_date", "c", "what about later", "以后呢", "Later.", "以后。", "next week"],
        ["Bad-Id", "c", "bad id question", "坏的", "x", "x", ""],
        ["no_chinese", "c", "english only", "", "Only English.", "", ""],
        ["dup_question", "c", "how do i pay", "付款问题", "Dup q.", "重复问题。", ""],
        ["good_two", "c", "where is it | where can i find it", "在哪里", "Here.", "这里。", "2026-01-01"],
    ]
    path = csv_file(tmp_path / "rows.csv", CSV_HEADER, rows)
    store = KnowledgeStore(tmp_path / "store")
    report = store.import_file(path)
    assert sorted(report.added) == ["good_one", "good_two"]
    problems = {(p.row, p.column): p.problem for p in report.problems}
    assert "already in row 2" in problems[(3, "id")]
    assert (4, "effective_from") in problems and (5, "effective_from") in problems
    assert "lower case letters" in problems[(6, "id")]
    assert "needs at least one question in 'zh'" in problems[(7, "question_zh")]
    assert "also under 'good_one'" in problems[(8, "questions.en")]
    assert len(report.problems) == 6
    assert store.get("good_two").questions["en"] == ["where is it", "where can i find it"]


def test_effective_until_before_from_is_a_row_error(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path / "d.yaml",
        [entry("a", effective_from="2026-05-01", effective_until="2026-04-01"), entry("b")],
    )
    report = read_entries(path, LANGS)
    assert [e.id for e in report.entries] == ["b"]
    assert report.problems[0].row == 1 and "before effective_from" in report.problems[0].problem


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not valid JSON"),
        ('{"version": 2, "entries": []}', "format version 2"),
        ('{"entries": "nope"}', "expected a list"),
        ('{"rows": []}', "expected keys"),
    ],
)
def test_broken_json_is_refused_as_a_whole(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "kb.json"
    path.write_text(content, encoding="utf-8")
    report = read_entries(path, LANGS)
    assert report.file_refused and needle in report.problems[0].problem


def test_json_entries_with_unknown_keys_or_wrong_types_are_refused_one_by_one(tmp_path: Path) -> None:
    items = [entry("ok"), {**entry("typo"), "anwser": {}}, "just a string", entry("v", version="two")]
    path = tmp_path / "kb.json"
    path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    report = read_entries(path, LANGS)
    assert [e.id for e in report.entries] == ["ok"]
    rows = {(p.row, p.column) for p in report.problems}
    assert (2, "anwser") in rows and (3, "") in rows and (4, "version") in rows


def test_unknown_file_type_and_missing_file(tmp_path: Path) -> None:
    assert "unknown format" in read_entries(tmp_path / "kb.xlsx").problems[0].problem
    assert read_entries(tmp_path / "nope.csv").problems[0].problem == "no such file"


# --- versions and publishing -----------------------------------------------------------------------


def test_publish_changes_what_search_returns_and_old_versions_stay(tmp_path: Path) -> None:
    store = KnowledgeStore(tmp_path)
    pin = entry("pin_reset", questions={"en": ["i forgot my password"], "zh": ["忘记密码了"]})
    loans = entry("loans", questions={"en": ["tell me about loans"], "zh": ["贷款"]})
    store.import_file(write_yaml(tmp_path / "v1.yaml", [pin, loans]))
    assert store.publish() == 1
    before = store.knowledge_base().search("how do i reset my pin", "en", k=1)
    assert before[0].score < 0.5
    edited = store.edit("pin_reset", add_questions={"en": ["how do i reset my pin"]}, answer={"en": "Use the app."})
    assert edited.version == 2
    # the live (published) base is unchanged until publish
    assert store.knowledge_base().search("how do i reset my pin", "en", k=1)[0].entry.answer["en"] != "Use the app."
    assert store.publish() == 2
    top = store.knowledge_base().search("how do i reset my pin", "en", k=1)[0]
    assert (
        top.entry.id == "pin_reset" and top.entry.answer["en"] == "Use the app." and top.score > 0.6 > before[0].score
    )
    assert store.versions() == [1, 2]
    assert store.published(1)[0].answer["en"] == "Answer pin_reset."
    index = [json.loads(line) for line in (tmp_path / "published" / "index.jsonl").read_text().splitlines()]
    assert [r["version"] for r in index] == [1, 2]


def test_reimporting_raises_versions_only_for_changed_entries(tmp_path: Path) -> None:
    store = KnowledgeStore(tmp_path / "s")
    store.import_file(write_yaml(tmp_path / "a.yaml", [entry("a"), entry("b")]))
    changed = entry("b", answer={"en": "New.", "zh": "新。"})
    report = store.import_file(write_yaml(tmp_path / "b.yaml", [entry("a"), changed]))
    assert report.unchanged == ["a"] and report.updated == ["b"]
    assert {e.id: e.version for e in store.draft()} == {"a": 1, "b": 2}


def test_edit_refuses_bad_values_and_unknown_ids(tmp_path: Path) -> None:
    store = KnowledgeStore(tmp_path)
    store.import_file(write_yaml(tmp_path / "a.yaml", [entry("a"), entry("b")]))
    from dialog.knowledge_store import KnowledgeStoreError

    with pytest.raises(KnowledgeStoreError, match="no entry 'zzz'"):
        store.edit("zzz", category="x")
    with pytest.raises(KnowledgeStoreError, match="effective_from"):
        store.edit("a", effective_from="someday")
    with pytest.raises(KnowledgeStoreError, match="already under 'b'"):
        store.edit("a", add_questions={"en": ["question about b"]})
    with pytest.raises(KnowledgeStoreError, match="nothing published"):
        store.published()
    assert store.get("a").version == 1


def test_empty_draft_is_not_published(tmp_path: Path) -> None:
    from dialog.knowledge_store import KnowledgeStoreError

    with pytest.raises(KnowledgeStoreError, match="draft is empty"):
        KnowledgeStore(tmp_path).publish()


# --- effective dates -------------------------------------------------------------------------------


def test_search_honours_effective_dates() -> None:
    def make(entry_id: str, **extra: object) -> KnowledgeEntry:
        return KnowledgeEntry.model_validate(
            entry(entry_id, questions={"en": ["what is the savings rate"], "zh": ["储蓄利率是多少"]}, **extra)
            if entry_id == "rate_2026"
            else entry(entry_id, questions={"en": ["savings rate now"], "zh": ["现在储蓄利率"]}, **extra)
        )

    kb = KnowledgeBase(
        [
            make("rate_2026", effective_from=datetime.date(2026, 1, 1), effective_until=datetime.date(2026, 12, 31)),
            make("rate_2027", effective_from=datetime.date(2027, 1, 1)),
        ]
    )
    in_2026 = [h.entry.id for h in kb.search("what is the savings rate", "en", today=datetime.date(2026, 6, 1))]
    in_2027 = [h.entry.id for h in kb.search("what is the savings rate", "en", today=datetime.date(2027, 6, 1))]
    in_2025 = kb.search("储蓄利率是多少", "zh", today=datetime.date(2025, 6, 1))
    assert in_2026 == ["rate_2026"] and in_2027 == ["rate_2027"] and in_2025 == []
    assert kb.in_force("rate_2026", datetime.date(2026, 12, 31)) and not kb.in_force(
        "rate_2026", datetime.date(2027, 1, 1)
    )


# --- unanswered questions and the CLI ---------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hotline")
    add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


def run(*argv: str) -> tuple[int, str, str]:
    args = parse(*argv)
    out, err = io.StringIO(), io.StringIO()
    code = args.run(args, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_unanswered_questions_are_appended_and_listed(tmp_path: Path) -> None:
    store = KnowledgeStore(tmp_path)
    store.unanswered.record("call-1", "en", "can I buy gold bars", 0.21, "card_fees")
    with store.unanswered.path.open("a", encoding="utf-8") as f:
        f.write('{"broken": \n')  # a torn line must not hide the others
    store.unanswered.record("call-2", "zh", "你们卖金条吗" + "很" * 2000, 0.05)
    items, bad = store.unanswered.read()
    assert [i.call_id for i in items] == ["call-1", "call-2"] and bad == 1
    assert len(items[1].text) == 500
    code, out, err = run("kb", "--kb-dir", str(tmp_path), "unanswered", "--limit", "1")
    assert code == 0 and "call-2\tzh\t0.05" in out and "call-1" not in out and "1 unreadable" in err


def test_cli_import_publish_search_show_edit_export(tmp_path: Path) -> None:
    kb = ["kb", "--kb-dir", str(tmp_path / "kb")]
    code, out, err = run(*kb, "import", str(FAQ))
    assert code == 0 and "6 added" in out, err
    code, out, _ = run(*kb, "search", "lost my card", "--lang", "en")
    assert code == 2  # nothing published yet
    assert run(*kb, "publish")[0] == 0
    code, out, _ = run(*kb, "search", "someone stole my card", "--lang", "en", "--k", "1")
    assert code == 0 and out.split("\t")[1] == "lost_card"
    code, out, _ = run(*kb, "search", "我的卡被偷了", "--lang", "zh", "--k", "1")
    assert code == 0 and out.split("\t")[1] == "lost_card"
    code, out, _ = run(*kb, "edit", "lost_card", "--answer-en", "Call us at once.", "--add-question-zh", "卡被人偷走了")
    assert code == 0 and "version 2" in out
    code, out, _ = run(*kb, "show", "lost_card")
    assert "Call us at once." in out and "卡被人偷走了" in out
    code, out, _ = run(*kb, "list")
    assert code == 0 and "lost_card" in out and "6 entries" in out
    code, out, _ = run(*kb, "export", str(tmp_path / "out.json"), "--published")
    assert code == 0 and "Call us at once." not in (tmp_path / "out.json").read_text(encoding="utf-8")
    code, _, err = run(*kb, "show", "no_such_entry")
    assert code == 2 and "no entry 'no_such_entry'" in err


def test_diff_names_each_changed_field_and_rollback_publishes_an_old_version_again(tmp_path: Path) -> None:
    from dialog.knowledge_store import KnowledgeStoreError, diff_entries

    store = KnowledgeStore(tmp_path)
    store.import_file(write_yaml(tmp_path / "v1.yaml", [entry("a"), entry("b"), entry("c")]))
    assert store.publish() == 1
    store.edit("a", answer={"zh": "新答案。"}, add_questions={"en": ["another way to ask about a"]})
    store.edit("b", effective_until="2030-01-01")
    store.save_draft([e for e in store.draft() if e.id != "c"] + [KnowledgeEntry.model_validate(entry("d"))])
    assert store.publish() == 2
    changes = diff_entries(store.published(1), store.published(2))
    assert [(c.id, c.kind, c.fields) for c in changes] == [
        ("a", "changed", ("answer.zh", "questions.en")), ("b", "changed", ("effective_until",)),
        ("d", "added", ()), ("c", "removed", ())]
    assert diff_entries(store.published(2), store.draft()) == []  # an entry's version number alone is no change

    assert store.rollback(1) == 3
    assert [e.content() for e in store.published(3)] == [e.content() for e in store.published(1)]
    assert {e.id for e in store.draft()} == {"a", "b", "d"}, "the draft is left as it was"
    index = [json.loads(line) for line in (tmp_path / "published" / "index.jsonl").read_text().splitlines()]
    assert [(r["version"], r.get("rollback_of")) for r in index] == [(1, None), (2, None), (3, 1)]
    with pytest.raises(KnowledgeStoreError, match="no published version 9"):
        store.rollback(9)
    with pytest.raises(KnowledgeStoreError, match="already the newest"):
        store.rollback(3)
    (tmp_path / "published" / "v0002.yaml").write_text("entries: [{id: 1}]", encoding="utf-8")
    with pytest.raises(KnowledgeStoreError, match="damaged"):
        store.rollback(2)
    assert store.versions() == [1, 2, 3]  # nothing published by the refusals


def test_cli_rollback_and_diff(tmp_path: Path) -> None:
    kb = ["kb", "--kb-dir", str(tmp_path / "kb")]
    assert run(*kb, "import", str(FAQ))[0] == 0
    assert run(*kb, "publish")[0] == 0
    assert run(*kb, "diff") == (0, "no differences\n", "")
    assert run(*kb, "edit", "lost_card", "--answer-en", "Call us at once.")[0] == 0
    assert run(*kb, "diff")[:2] == (1, "~ lost_card: answer.en\n")
    assert run(*kb, "publish")[0] == 0
    assert run(*kb, "diff", "1", "v2")[:2] == (1, "~ lost_card: answer.en\n")
    code, out, _ = run(*kb, "rollback", "1")
    assert code == 0 and "published version 3 with the entries of version 1" in out
    assert run(*kb, "diff", "1", "published")[:2] == (0, "no differences\n")
    code, _, err = run(*kb, "rollback", "3")
    assert code == 2 and "already the newest" in err
    code, _, err = run(*kb, "diff", "7")
    assert code == 2 and "no published version 7" in err
    code, _, err = run(*kb, "diff", "yesterday")
    assert code == 2 and "'yesterday': a version number" in err


def test_cli_import_reports_bad_rows_and_exit_status(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path / "x.csv",
        CSV_HEADER,
        [
            ["fine", "c", "a question", "一个问题", "A.", "答。", ""],
            ["bad", "c", "q2", "问二", "B.", "答二。", "2026-13-01"],
        ],
    )
    code, out, err = run("kb", "--kb-dir", str(tmp_path / "kb"), "import", str(path))
    assert code == 1 and "1 added" in out and "1 refused" in out
    assert f"{path}:3: effective_from:" in err
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = run("kb", "--kb-dir", str(tmp_path / "kb"), "import", str(bad))
    assert code == 2 and "nothing imported" in err


async def test_the_call_session_logs_questions_the_dialog_could_not_answer(
    tmp_path: Path, engine: DialogEngine
) -> None:
    from types import SimpleNamespace

    from hotline.session import CallSession
    from hotline.settings import Settings

    async def db(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    session: Any = SimpleNamespace(
        deps=SimpleNamespace(engine=engine, settings=Settings(data_dir=str(tmp_path))),
        call_id="call-77",
        _lang="en",
        _db=db,
    )
    conv = engine.new_conversation("call-77")
    conv.start()
    for text in ("who won the football match", "what are your opening hours"):
        await CallSession._log_unanswered(session, text, conv.handle_text(text))
    items, bad = KnowledgeStore(tmp_path / "knowledge").unanswered.read()
    assert bad == 0 and [(i.call_id, i.lang, i.text) for i in items] == [
        ("call-77", "en", "who won the football match")
    ]
    assert 0 < items[0].best_score < 1


def test_yaml_with_a_duplicate_key_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("version: 1\nentries:\n  - id: a\n    id: b\n", encoding="utf-8")
    report = read_entries(path, LANGS)
    assert report.file_refused and "line 4: duplicate key 'id'" in report.problems[0].problem
