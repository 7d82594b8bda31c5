"""Slots filled from the bank's records and the calendar, through the real engine and the SQL sample bank:
which card to block (or report lost and replace), which account's balance, which period's transactions,
and callers correcting them ("no, the savings one", 上个月的呢)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from support.bank_dialog import seeded_bank_file, spoken, verify

from dialog import Action, Conversation, DialogEngine, Flow, FlowConfigError, Listen, Understood, load_flow
from dialog.corebank import BankError
from dialog.entities import period
from dialog.samplebank import AccountRow, SampleBank, TransactionRow

CARD_1, PIN_1 = "6222021001234567", "246810"  # Wang Fang: debit 4567, debit 8888 (inactive), credit 7788
CARD_2, PIN_2 = "4392260012345678", "864209"  # James Miller: debit 5678, credit 2222; accounts 5001/5002/5003
CARD_3, PIN_3 = "6222021005550001", "975310"  # Zhang Min: one debit card
ACCOUNT_4, PIN_4 = "4004500060007001", "112358"  # Emily Chen: one savings account, one debit card 5432
TODAY = date(2026, 12, 1)  # a Tuesday


@pytest.fixture(scope="module")
def bank_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seeded_bank_file(tmp_path_factory.mktemp("bank"))


@pytest.fixture
def bank_url(bank_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "bank.db"
    shutil.copy(bank_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def bank(bank_url: str) -> Iterator[SampleBank]:
    b = SampleBank(bank_url)
    yield b
    b.close()


@pytest.fixture
def bank_engine(bank_flow: Flow, bank: SampleBank) -> DialogEngine:
    return DialogEngine(bank_flow, bank=bank)


def start(engine: DialogEngine, lang: str = "en") -> Conversation:
    conv = engine.new_conversation("slot-test", caller="+8613800000002", lang=lang)
    conv.today = TODAY
    conv.start()
    return conv


def intents(actions: list[Action]) -> list[str]:
    return [a.intent for a in actions if isinstance(a, Understood)]


def statuses(bank: SampleBank, customer_id: int) -> dict[str, str]:
    return {c.last4: c.status for c in bank.cards(customer_id)}


# ---- block my card / freeze my card / 冻结我的卡 -----------------------------------------------


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("block my card", "en"),
        ("freeze my card", "en"),
        ("can you block my card please", "en"),
        ("please freeze my credit card", "en"),
        ("冻结我的卡", "zh"),
        ("帮我冻结一下银行卡", "zh"),
    ],
)
def test_block_requests_start_blocking_not_the_lost_card_advice(engine: DialogEngine, text: str, lang: str) -> None:
    conv = engine.new_conversation("block-words", lang=lang)
    conv.start()
    assert intents(conv.handle_text(text))[:1] == ["block_card"]


def test_a_card_named_in_the_request_is_confirmed_and_a_correction_changes_it(
    bank_engine: DialogEngine, bank: SampleBank, bank_url: str
) -> None:
    conv = start(bank_engine)
    conv.handle_text("freeze my credit card")
    confirm = spoken(verify(conv, CARD_2, PIN_2))
    assert "block the card ending 2222" in confirm and "Which card" not in confirm  # no question: it was said
    assert "ending 5678" in spoken(conv.handle_text("no, the debit one"))  # changed, asked again
    done = conv.handle_text("yes")
    assert "debit card ending 5678 is now blocked" in spoken(done)
    assert [a.slots for a in done if isinstance(a, Understood)][-1]["card"] == "5678"
    assert statuses(bank, 2) == {"5678": "blocked", "2222": "active"}
    again = SampleBank(bank_url)  # persisted: another connection sees it
    try:
        assert statuses(again, 2)["5678"] == "blocked"
    finally:
        again.close()


def test_a_caller_with_several_cards_is_asked_which_one_by_speech(bank_engine: DialogEngine, bank: SampleBank) -> None:
    conv = start(bank_engine)
    conv.handle_text("block my card")
    asked = verify(conv, CARD_1, PIN_1)
    assert "press 2 for your debit card ending 8888" in spoken(asked) and isinstance(asked[-1], Listen)
    assert not asked[-1].secret
    two_debit = spoken(conv.handle_text("the debit one"))  # two debit cards: still ambiguous, asked again
    assert "Which card" in two_debit
    assert "ending 8888" in spoken(conv.handle_text("the one ending eight eight eight eight"))
    assert "cancelled" in spoken(conv.handle_dtmf("2"))
    assert statuses(bank, 1) == {"4567": "active", "7788": "active", "8888": "inactive"}  # nothing changed


def test_one_card_needs_no_question_in_chinese_and_a_blocked_card_is_not_offered_again(
    bank_engine: DialogEngine, bank: SampleBank
) -> None:
    conv = start(bank_engine, "zh")
    conv.handle_text("冻结我的卡")
    assert "尾号0001" in spoken(verify(conv, CARD_3, PIN_3))
    assert "借记卡已冻结" in spoken(conv.handle_dtmf("1"))
    assert statuses(bank, 3) == {"0001": "blocked"}
    out = conv.handle_text("冻结我的卡")  # verified already; the only card is blocked
    assert "没有找到" in spoken(out) and isinstance(out[-1], Listen)


def test_lost_card_advice_then_2_blocks_and_orders_a_replacement(bank_engine: DialogEngine, bank: SampleBank) -> None:
    conv = start(bank_engine)
    assert "press 2" in spoken(conv.handle_text("I lost my card"))
    assert intents(conv.handle_dtmf("2")) == ["report_lost_card"]
    assert "report the card ending 5432 lost" in spoken(verify(conv, ACCOUNT_4, PIN_4))
    done = conv.handle_dtmf("1")
    cards = bank.cards(4)
    new = next(c for c in cards if c.last4 != "5432")
    assert statuses(bank, 4) == {"5432": "blocked", new.last4: "inactive"} and new.account_last4 == "7001"
    assert f"new card ending {new.last4}" in spoken(done)
    # the replacement is activated when it arrives: the only inactive card, picked from the records
    assert f"card ending {new.last4} is now active" in spoken(conv.handle_text("activate my card"))
    assert statuses(bank, 4)[new.last4] == "active"


def test_report_lost_in_chinese_by_the_cards_menu(bank_engine: DialogEngine, bank: SampleBank) -> None:
    conv = start(bank_engine, "zh")
    conv.handle_dtmf("4")
    assert intents(conv.handle_dtmf("5")) == ["report_lost_card"]
    assert "尾号2222的信用卡请按2" in spoken(verify(conv, CARD_2, PIN_2))
    conv.handle_dtmf("2")
    assert "新卡将在七个工作日内寄出" in spoken(conv.handle_dtmf("1"))
    assert statuses(bank, 2)["2222"] == "blocked" and len(bank.cards(2)) == 3


def test_report_lost_card_in_the_sample_bank(bank: SampleBank) -> None:
    bank.block_card(2, "5678")
    with pytest.raises(BankError) as already:
        bank.block_card(2, "5678")
    assert already.value.code == "card_blocked"
    done = bank.report_lost_card(2, "5678")  # frozen first, then reported lost: still replaced
    assert done.blocked.status == "blocked" and done.replacement.status == "inactive"
    assert done.replacement.last4 not in ("5678", "2222") and done.replacement.kind == "debit"
    with pytest.raises(BankError) as missing:
        bank.report_lost_card(2, "0000")
    assert missing.value.code == "card_not_found"


# ---- periods --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lang", "first", "last"),
    [
        ("transactions since last Monday", "en", date(2026, 11, 23), TODAY),
        ("since Friday", "en", date(2026, 11, 27), TODAY),
        ("since the 5th", "en", date(2026, 11, 5), TODAY),
        ("statement for March", "en", date(2026, 3, 1), date(2026, 3, 31)),
        ("what did I spend in december", "en", TODAY, TODAY),
        ("last week", "en", date(2026, 11, 23), date(2026, 11, 29)),
        ("this month", "en", TODAY, TODAY),
        ("the last 7 days", "en", date(2026, 11, 25), TODAY),
        ("past two weeks", "en", date(2026, 11, 18), TODAY),
        ("from November 3 to November 10", "en", date(2026, 11, 3), date(2026, 11, 10)),
        ("yesterday", "en", date(2026, 11, 30), date(2026, 11, 30)),
        ("上个月的账单", "zh", date(2026, 11, 1), date(2026, 11, 30)),
        ("昨天", "zh", date(2026, 11, 30), date(2026, 11, 30)),
        ("最近7天", "zh", date(2026, 11, 25), TODAY),
        ("三月份的流水", "zh", date(2026, 3, 1), date(2026, 3, 31)),
        ("上周一以来的交易", "zh", date(2026, 11, 23), TODAY),
        ("上周", "zh", date(2026, 11, 23), date(2026, 11, 29)),
        ("去年", "zh", date(2025, 1, 1), date(2025, 12, 31)),
    ],
)
def test_periods_are_concrete_ranges_from_a_given_today(text: str, lang: str, first: date, last: date) -> None:
    found = period(text, lang, TODAY)
    assert found is not None and found.value == (first, last), found
    assert text[found.start : found.end] == found.text


@pytest.mark.parametrize(
    "text", ["my balance please", "may i see my transactions", "三个月", "", "🙂" * 5000, "9" * 10_000, "last " * 3000]
)
def test_no_period_is_found_where_none_is_named(text: str) -> None:
    started = time.perf_counter()
    assert period(text, "en", TODAY) is None
    assert time.perf_counter() - started < 0.1


@pytest.fixture
def emily_history(bank: SampleBank) -> None:
    """Emily's own transactions on fixed days (the seeded ones move with the real clock)."""
    with bank._sessions.begin() as s:
        s.query(TransactionRow).filter(TransactionRow.account_number == ACCOUNT_4).delete()
        for day, desc, amount in [
            (datetime(2026, 3, 5, 10), "Bookshop", "-45.00"),
            (datetime(2026, 11, 20, 9), "Pharmacy", "-32.50"),
            (datetime(2026, 11, 30, 18), "Cinema", "-80.00"),
        ]:
            s.add(TransactionRow(account_number=ACCOUNT_4, posted_at=day, description=desc, description_zh=desc,
                                 amount=Decimal(amount)))


@pytest.mark.usefixtures("emily_history")
def test_transactions_for_the_period_the_caller_names_and_corrections(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine)
    conv.handle_text("show my transactions for March")
    answer = spoken(verify(conv, ACCOUNT_4, PIN_4))
    assert "from March 1 to March 31" in answer and "Bookshop" in answer and "Cinema" not in answer
    last_month = conv.handle_text("what about last month")
    assert intents(last_month)[0] == "recent_transactions"
    assert "Pharmacy" in spoken(last_month) and "Cinema" in spoken(last_month) and "Bookshop" not in spoken(last_month)
    assert "no transactions on your accounts on November 29" in spoken(conv.handle_text("and the day before yesterday"))
    latest = spoken(conv.handle_text("recent transactions"))  # no period: the latest ones
    assert latest.index("Cinema") < latest.index("Pharmacy") < latest.index("Bookshop")


@pytest.mark.usefixtures("emily_history")
def test_transactions_for_a_period_in_chinese(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine, "zh")
    conv.handle_text("上个月的交易")
    answer = spoken(verify(conv, ACCOUNT_4, PIN_4))
    assert "11月1日至11月30日的2笔交易" in answer and "Bookshop" not in answer
    assert "11月30日的1笔交易" in spoken(conv.handle_text("昨天的呢"))


# ---- which account ---------------------------------------------------------------------------


def test_balance_of_the_account_named_and_corrections(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine)
    conv.handle_text("what is my savings balance")
    answer = spoken(verify(conv, CARD_2, PIN_2))
    assert "savings account ending 5002, 25,000 yuan" in answer and "5001" not in answer
    current = spoken(conv.handle_text("no, the current one"))
    assert "current account ending 5001, 8,765.43 yuan" in current and "5002" not in current
    assert "credit account ending 5003" in spoken(conv.handle_text("what about my credit card"))
    every = spoken(conv.handle_text("what is my balance"))  # none named: every account
    assert all(last4 in every for last4 in ("5001", "5002", "5003"))
    assert conv.ended is False


def test_balance_asks_which_account_when_the_named_one_fits_two(bank_engine: DialogEngine, bank: SampleBank) -> None:
    with bank._sessions.begin() as s:
        s.add(AccountRow(number="2002300040009009", customer_id=2, kind="savings", balance=Decimal("777")))
    conv = start(bank_engine, "zh")
    conv.handle_text("储蓄账户余额")
    asked = spoken(verify(conv, CARD_2, PIN_2))
    assert "尾号5002的储蓄账户请按1" in asked and "尾号9009的储蓄账户请按2" in asked and "5001" not in asked
    assert "尾号9009的储蓄账户，777元" in spoken(conv.handle_dtmf("2"))


def test_a_card_slot_in_a_flow_needs_choice_wording(
    bank_flow_data: dict[str, Any], write_flow: Callable[[dict[str, Any]], Path]
) -> None:
    del bank_flow_data["intents"]["block_card"]["slots"][0]["choice"]
    bank_flow_data["intents"]["balance"]["slots"][0]["choice"]["en"] = "press {key} for {colour}"
    path = write_flow(bank_flow_data)
    with pytest.raises(FlowConfigError) as err:
        load_flow(path)
    text = str(err.value)
    assert "intents.block_card.slots[0].choice: a card slot needs `choice`" in text
    assert "intents.balance.slots[0].choice.en: unknown placeholder {colour}" in text


@pytest.mark.usefixtures("emily_history")
def test_a_goodbye_naming_a_day_after_an_answer_is_still_a_goodbye(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine)
    conv.handle_text("recent transactions")
    verify(conv, ACCOUNT_4, PIN_4)
    assert intents(conv.handle_text("goodbye, see you tomorrow")) == ["goodbye"] and conv.ended
