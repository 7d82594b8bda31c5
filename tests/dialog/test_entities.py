"""Entity extraction, table-driven in English and Mandarin, plus hostile input."""

from __future__ import annotations

import datetime
import time
from decimal import Decimal

import pytest

from dialog.entities import MAX_CHARS, Entity, extract, first

TODAY = datetime.date(2026, 12, 1)  # a Tuesday
D = Decimal

# (text, lang, kind, expected value of the first entity of that kind; None = no such entity)
CASES: list[tuple[str, str, str, object]] = [
    # numbers, English
    ("twelve hundred", "en", "number", D(1200)),
    ("one thousand two hundred and five", "en", "number", D(1205)),
    ("1.5k", "en", "number", D(1500)),
    ("1,234.56", "en", "number", D("1234.56")),
    ("twenty-five", "en", "number", D(25)),
    ("a hundred and ten", "en", "number", D(110)),
    ("two point five", "en", "number", D("2.5")),
    ("3 million", "en", "number", D(3_000_000)),
    ("I need forty two of them", "en", "number", D(42)),
    ("seven hundred thousand", "en", "number", D(700_000)),
    ("nothing numeric here", "en", "number", None),
    # numbers, Chinese
    ("一千二", "zh", "number", D(1200)),
    ("一千二百零五", "zh", "number", D(1205)),
    ("两万", "zh", "number", D(20000)),
    ("两万五", "zh", "number", D(25000)),
    ("三点五", "zh", "number", D("3.5")),
    ("十二", "zh", "number", D(12)),
    ("一百零五", "zh", "number", D(105)),
    ("一亿两千万", "zh", "number", D(120_000_000)),
    ("1.5万", "zh", "number", D(15000)),
    ("1,234.56", "zh", "number", D("1234.56")),
    ("我想查一下余额", "zh", "number", None),
    ("万一丢了怎么办", "zh", "number", None),
    # amounts
    ("¥500", "zh", "amount", (D(500), "CNY")),
    ("500 yuan", "en", "amount", (D(500), "CNY")),
    ("五百块", "zh", "amount", (D(500), "CNY")),
    ("三百五十元", "zh", "amount", (D(350), "CNY")),
    ("三块五", "zh", "amount", (D("3.5"), "CNY")),
    ("转五百块钱给我妈", "zh", "amount", (D(500), "CNY")),
    ("人民币500元", "zh", "amount", (D(500), "CNY")),
    ("50美元", "zh", "amount", (D(50), "USD")),
    ("五十块零五毛", "zh", "amount", (D("50.5"), "CNY")),
    ("两块五毛三分", "zh", "amount", (D("2.53"), "CNY")),
    ("五百元三月三日", "zh", "amount", (D(500), "CNY")),
    ("两千港币", "zh", "amount", (D(2000), "HKD")),
    ("$12.50", "en", "amount", (D("12.50"), "USD")),
    ("twelve dollars fifty", "en", "amount", (D("12.5"), "USD")),
    ("twelve dollars and fifty cents", "en", "amount", (D("12.5"), "USD")),
    ("a hundred euros", "en", "amount", (D(100), "EUR")),
    ("HK$100", "en", "amount", (D(100), "HKD")),
    ("100 hong kong dollars", "en", "amount", (D(100), "HKD")),
    ("send 2k pounds", "en", "amount", (D(2000), "GBP")),
    ("50 cents", "en", "amount", (D("0.5"), "USD")),
    ("five hundred", "en", "amount", None),
    # dates
    ("today", "en", "date", TODAY),
    ("tomorrow", "en", "date", datetime.date(2026, 12, 2)),
    ("the day after tomorrow", "en", "date", datetime.date(2026, 12, 3)),
    ("next Friday", "en", "date", datetime.date(2026, 12, 11)),
    ("on Friday", "en", "date", datetime.date(2026, 12, 4)),
    ("this tuesday", "en", "date", TODAY),
    ("on the 5th", "en", "date", datetime.date(2026, 12, 5)),
    ("March 3", "en", "date", datetime.date(2026, 3, 3)),
    ("the 3rd of March", "en", "date", datetime.date(2026, 3, 3)),
    ("March 3rd, 2027", "en", "date", datetime.date(2027, 3, 3)),
    ("2026-12-05", "en", "date", datetime.date(2026, 12, 5)),
    ("February 30", "en", "date", None),
    ("今天", "zh", "date", TODAY),
    ("明天", "zh", "date", datetime.date(2026, 12, 2)),
    ("后天", "zh", "date", datetime.date(2026, 12, 3)),
    ("下周五", "zh", "date", datetime.date(2026, 12, 11)),
    ("这周三", "zh", "date", datetime.date(2026, 12, 2)),
    ("下个星期一", "zh", "date", datetime.date(2026, 12, 7)),
    ("5号", "zh", "date", datetime.date(2026, 12, 5)),
    ("三月三日", "zh", "date", datetime.date(2026, 3, 3)),
    ("2027年1月15日", "zh", "date", datetime.date(2027, 1, 15)),
    ("十二月二十五号", "zh", "date", datetime.date(2026, 12, 25)),
    # digit strings
    ("ending in one two three four", "en", "digits", "1234"),
    ("the last four are 4321", "en", "digits", "4321"),
    ("card ending double three four five", "en", "digits", "3345"),
    ("one oh five", "en", "digits", "105"),
    ("1234 5678", "en", "digits", "12345678"),
    ("my card number is 6222 0212 3456 7890", "en", "digits", "6222021234567890"),
    ("my card number is 6222 0212 3456 7890", "en", "number", None),
    ("尾号1234", "zh", "digits", "1234"),
    ("幺二三四", "zh", "digits", "1234"),
    ("尾号是五六七八", "zh", "digits", "5678"),
    ("one", "en", "digits", None),
    # account types
    ("from my checking account", "en", "account_type", "checking"),
    ("savings please", "en", "account_type", "savings"),
    ("my credit card bill", "en", "account_type", "credit"),
    ("the debit card", "en", "account_type", "debit"),
    ("a fixed deposit", "en", "account_type", "fixed_deposit"),
    ("储蓄卡", "zh", "account_type", "savings"),
    ("信用卡", "zh", "account_type", "credit"),
    ("借记卡", "zh", "account_type", "debit"),
    ("活期账户", "zh", "account_type", "checking"),
    ("定期存款", "zh", "account_type", "fixed_deposit"),
    # yes / no
    ("yes", "en", "yes_no", True),
    ("yeah sure", "en", "yes_no", True),
    ("correct", "en", "yes_no", True),
    ("that's right", "en", "yes_no", True),
    ("no", "en", "yes_no", False),
    ("nope", "en", "yes_no", False),
    ("no, the other one", "en", "yes_no", False),
    ("that's not correct", "en", "yes_no", False),
    ("I have no card", "en", "yes_no", None),
    ("right now please", "en", "yes_no", None),
    ("no problem", "en", "yes_no", None),
    ("是", "zh", "yes_no", True),
    ("是的", "zh", "yes_no", True),
    ("对", "zh", "yes_no", True),
    ("好的，谢谢", "zh", "yes_no", True),
    ("嗯", "zh", "yes_no", True),
    ("不是", "zh", "yes_no", False),
    ("不对", "zh", "yes_no", False),
    ("不用了", "zh", "yes_no", False),
    ("嗯，不是", "zh", "yes_no", False),
    ("我的卡是信用卡", "zh", "yes_no", None),
]


@pytest.mark.parametrize(("text", "lang", "kind", "expected"), CASES, ids=[f"{c[2]}:{c[0]}" for c in CASES])
def test_first_entity_of_kind(text: str, lang: str, kind: str, expected: object) -> None:
    found = first(text, lang, kind, today=TODAY)
    if expected is None:
        assert found is None, found
        return
    assert found is not None, f"no {kind} in {text!r}: {extract(text, lang, TODAY)}"
    assert found.value == expected
    assert text[found.start : found.end] == found.text


def test_spans_and_several_kinds_in_one_sentence() -> None:
    text = "transfer 五百块 from savings tomorrow"
    entities = extract(text, "zh", TODAY)
    kinds = [(e.kind, e.value) for e in entities]
    assert ("amount", (D(500), "CNY")) in kinds
    assert ("account_type", "savings") in kinds
    assert ("date", datetime.date(2026, 12, 2)) in kinds
    assert [e.start for e in entities] == sorted(e.start for e in entities)
    for e in entities:
        assert isinstance(e, Entity) and text[e.start : e.end] == e.text


def test_spoken_digits_are_one_number_not_four() -> None:
    numbers = [e.value for e in extract("one two three four", "en", TODAY) if e.kind == "number"]
    assert numbers == [D(1234)]


def test_numbers_inside_dates_are_not_numbers() -> None:
    assert first("March 3", "en", "number", TODAY) is None
    assert first("5号转账", "zh", "number", TODAY) is None


def test_unknown_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown entity kind 'colour'"):
        first("red", "en", "colour")


HOSTILE = [
    "9" * 10_000,
    "1,2,3," * 2000,
    "一二三四五六七八九十百千万亿" * 700,
    "😀💳🏦" * 3000,
    "yes no 是 不是 " * 1000,
    "\x00\x01\x1b[31m\u202e\ufeff",
    "Ｔｗｅｌｖｅ ｈｕｎｄｒｅｄ ＄５００ 𝟏𝟐𝟑",
    "twenty-" * 2000,
    "on the " * 2000 + "5th",
    "$" * 5000 + "5",
    "点" * 5000,
    "",
    "   ",
    "1.2.3.4.5.6 1e309 0x1F -0 --5 ...",
    "Ünïcödé İstanbul ǅ ß ﬁ 500 yuan",
]


@pytest.mark.parametrize("text", HOSTILE, ids=[f"hostile{i}" for i in range(len(HOSTILE))])
def test_hostile_input_is_answered_quickly_without_exceptions(text: str) -> None:
    started = time.process_time()  # CPU time: other tests running on the machine do not count
    for lang in ("en", "zh"):
        entities = extract(text, lang, TODAY)
        for e in entities:
            assert e.end <= MAX_CHARS and text[e.start : e.end] == e.text
    assert time.process_time() - started < 1.0


def test_long_digit_runs_are_digit_strings_not_numbers() -> None:
    entities = extract("card 1234567890123456789012345678901234567890", "en", TODAY)
    assert [e.kind for e in entities] == ["digits"]
    assert entities[0].value == "1234567890123456789012345678901234567890"


def test_mixed_scripts_and_full_width() -> None:
    assert first("我要转 500 dollars", "zh", "amount", TODAY) == Entity("amount", (D(500), "USD"), "500 dollars", 4, 15)
    found = first("１２００元", "zh", "amount", TODAY)
    assert found is not None and found.value == (D(1200), "CNY")


def test_non_text_input_gives_nothing() -> None:
    assert extract(None, "en") == []  # type: ignore[arg-type]
