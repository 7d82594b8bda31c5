"""Full-text search over transcripts in English and Chinese with filters, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from support.postgres import PgServer, pg_server  # noqa: F401  (fixture)

from recordings import CallStore
from recordings.search import SearchError, search_calls
from recordings.textsearch import index_terms, parse_query

CALLS = {
    # id: (caller, lang, queue, agent, outcome, intent, lines)
    "en-lost": ("13800000001", "en", "cards", "anna", "transferred", "card_lost",
                ["Welcome to Example Bank.", "I lost my credit card yesterday", "My card is 4111 1111 1111 1234"]),
    "zh-lost": ("13800000002", "zh", "cards", "bo", "transferred", "card_lost",
                ["欢迎致电示例银行。", "我的信用卡丢了，请帮我挂失", "好的，正在为您转接"]),
    "zh-hours": ("13800000003", "zh", None, None, "goodbye", "opening_hours",
                 ["欢迎致电示例银行。", "你们营业时间是几点", "我们早上九点开门"]),
    "en-hours": ("13900000004", "en", None, None, "goodbye", "opening_hours",
                 ["Welcome to Example Bank.", "What are your opening hours on Saturday?", "We open at nine."]),
}


def _fill(store: CallStore) -> None:
    for n, (cid, (caller, lang, queue, agent, outcome, intent, lines)) in enumerate(CALLS.items()):
        store.start_call(cid, sip_call_id=cid, caller=caller, called="95555")
        for i, text in enumerate(lines):
            store.add_line(cid, "system" if i % 2 == 0 else "caller", text, float(i), language=lang)
        store.update_call(cid, language=lang, queue=queue, agent=agent, last_intent=intent,
                          started_at=datetime(2026, 11, 1 + n, 10, tzinfo=UTC))
        store.end_call(cid, outcome=outcome, end_reason="test")


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CallStore]:
    """The same calls in each database, filled once (the tests only read)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('search') / 'h.db'}"
    else:
        url = request.getfixturevalue("pg_server").create_database()
    s = CallStore(url)
    _fill(s)
    yield s
    s.close()


def _ids(hits: list) -> list[str]:
    return [h.call_id for h in hits]


def test_chinese_and_english_words_are_found_in_either_language(store: CallStore) -> None:
    assert _ids(search_calls(store, "信用卡")) == ["zh-lost"]
    assert _ids(search_calls(store, "挂失")) == ["zh-lost"]
    assert _ids(search_calls(store, "营业时间")) == ["zh-hours"]
    assert _ids(search_calls(store, "银行")) == ["zh-hours", "zh-lost"]  # newest first
    assert _ids(search_calls(store, "credit CARD")) == ["en-lost"]  # words anywhere in one line, any case
    assert _ids(search_calls(store, "Saturday hours")) == ["en-hours"]
    assert _ids(search_calls(store, "信用卡 营业")) == []  # every word in the same line
    assert _ids(search_calls(store, "卡")) == ["zh-lost"]  # a single character, at the start of a word
    assert _ids(search_calls(store, "失")) == ["zh-lost"]  # ... and at the end of a stretch (挂失)


def test_snippets_show_the_matching_line(store: CallStore) -> None:
    [hit] = search_calls(store, "信用卡")
    assert hit.snippets[0].seq == 2 and "[信用卡]" in hit.snippets[0].text
    [hit] = search_calls(store, "lost")
    assert hit.snippets[0].text == "I [lost] my credit card yesterday"


def test_card_numbers_are_not_searchable(store: CallStore) -> None:
    assert _ids(search_calls(store, "4111")) == []
    assert _ids(search_calls(store, "1234")) == ["en-lost"]  # the last four are kept


def test_filters_narrow_the_calls(store: CallStore) -> None:
    assert _ids(search_calls(store, lang="en")) == ["en-hours", "en-lost"]
    assert _ids(search_calls(store, queue="cards", agent="bo")) == ["zh-lost"]
    assert _ids(search_calls(store, intent="opening_hours", outcome="goodbye")) == ["en-hours", "zh-hours"]
    assert _ids(search_calls(store, caller="1390")) == ["en-hours"]
    since = datetime(2026, 11, 2, tzinfo=UTC)
    assert _ids(search_calls(store, "银行", since=since, until=since + timedelta(days=1))) == ["zh-lost"]
    assert _ids(search_calls(store, limit=2)) == ["en-hours", "zh-hours"]
    assert _ids(search_calls(store, limit=2, offset=2)) == ["zh-lost", "en-lost"]


def test_bad_searches_are_refused_clearly(store: CallStore) -> None:
    with pytest.raises(SearchError, match="nothing to search"):
        search_calls(store, "?!")
    with pytest.raises(SearchError, match="limit"):
        search_calls(store, "card", limit=0)
    with pytest.raises(SearchError, match="since is after until"):
        search_calls(store, since=datetime(2026, 2, 1, tzinfo=UTC), until=datetime(2026, 1, 1, tzinfo=UTC))
    assert _ids(search_calls(store, 'card" OR "x')) == []  # query syntax is never passed through


def test_terms_are_ascii_bigrams_for_chinese() -> None:
    assert index_terms("信用卡 Card") == "h4fe17528 h75285361 h5361 card"
    assert parse_query("信用卡").fts5() == '"h4fe17528 h75285361"'
    assert parse_query("ｃａｒｄ").runs == (("card",),)  # full-width letters
