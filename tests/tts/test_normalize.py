"""Text normalisation tables, English and Mandarin."""

from __future__ import annotations

import pytest

from tts import normalize
from tts.normalize import en_cardinal, en_ordinal, read_digits, zh_cardinal

EN = [
    # amounts
    ("$1,234.56", "one thousand two hundred thirty-four dollars and fifty-six cents"),
    ("$1", "one dollar"),
    ("$0.50", "fifty cents"),
    ("$1.01", "one dollar and one cent"),
    ("$12.5", "twelve dollars and fifty cents"),
    ("€20", "twenty euros"),
    ("£3.99", "three pounds and ninety-nine pence"),
    ("¥100", "one hundred yuan"),
    ("USD 100", "one hundred dollars"),
    ("250 USD", "two hundred fifty dollars"),
    ("a fee of $2,500,000", "a fee of two million five hundred thousand dollars"),
    ("10000 dollars", "ten thousand dollars"),
    # plain numbers
    ("0", "zero"),
    ("7", "seven"),
    ("13", "thirteen"),
    ("42", "forty-two"),
    ("100", "one hundred"),
    ("1,234", "one thousand two hundred thirty-four"),
    ("3.75", "three point seven five"),
    ("0.5", "zero point five"),
    ("the 3rd and 21st", "the third and twenty-first"),
    # times
    ("9:00", "nine a m"),
    ("17:30", "five thirty p m"),
    ("open 9:05 am", "open nine oh five a m"),
    ("0:15", "twelve fifteen a m"),
    ("12:00", "twelve p m"),
    # percentages
    ("3.5%", "three point five percent"),
    ("rates from 4 %", "rates from four percent"),
    # digit strings
    ("95555", "nine five five five five"),
    ("card 6222021234567890", "card six two two two, zero two one two, three four five six, seven eight nine zero"),
    ("6222 0212 3456 7890", "six two two two, zero two one two, three four five six, seven eight nine zero"),
    ("call 400-820-8888", "call four zero zero, eight two zero, eight eight eight eight"),
    ("account 123456", "account one two three four five six"),
    # keypad
    ("press # or *", "press pound or star"),
    # untouched
    ("Hello, how can I help?", "Hello, how can I help?"),
]

ZH = [
    # amounts
    ("¥1,234.56", "一千二百三十四元五角六分"),
    ("￥1,234.56", "一千二百三十四元五角六分"),
    ("1234.56元", "一千二百三十四元五角六分"),
    ("¥1,005.06", "一千零五元零六分"),
    ("¥10.50", "十元五角"),
    ("¥0.05", "五分"),
    ("¥100", "一百元"),
    ("转账¥100元", "转账一百元"),
    ("RMB 20", "二十元"),
    ("100000元", "十万元"),
    ("50块", "五十元"),
    ("$12.50", "十二点五美元"),
    ("300美元", "三百美元"),
    # plain numbers
    ("0", "零"),
    ("10", "十"),
    ("15", "十五"),
    ("20", "二十"),
    ("110", "一百一十"),
    ("1001", "一千零一"),
    ("1,010", "一千零一十"),
    ("3.5", "三点五"),
    ("第2位", "第二位"),
    # times
    ("9:00", "九点"),
    ("17:30", "十七点三十分"),
    ("9:05", "九点零五分"),
    ("2:00", "两点"),
    ("营业时间9:00至17:30", "营业时间九点至十七点三十分"),
    # percentages and dates
    ("利率3.5%", "利率百分之三点五"),
    ("100%", "百分之一百"),
    ("2024年3月5日", "二零二四年三月五日"),
    # digit strings
    ("拨打95555", "拨打九五五五五"),
    ("手机13800138000", "手机一三八，零零一三，八零零零"),
    ("卡号6222 0212 3456 7890", "卡号六二二二，零二一二，三四五六，七八九零"),
    ("请拨400-820-8888", "请拨四零零，八二零，八八八八"),
    # keypad
    ("请按#号键", "请按井号键"),
    ("按*", "按星号"),
]


@pytest.mark.parametrize(("text", "expected"), EN)
def test_normalize_en(text: str, expected: str) -> None:
    assert normalize(text, "en") == expected


@pytest.mark.parametrize(("text", "expected"), ZH)
def test_normalize_zh(text: str, expected: str) -> None:
    assert normalize(text, "zh") == expected


@pytest.mark.parametrize(("text", "lang"), [*((t, "en") for t, _ in EN), *((t, "zh") for t, _ in ZH)])
def test_normalize_is_idempotent(text: str, lang: str) -> None:
    once = normalize(text, lang)
    assert normalize(once, lang) == once
    assert not any(c.isdigit() for c in once)


@pytest.mark.parametrize(
    ("n", "en", "zh"),
    [
        (0, "zero", "零"),
        (19, "nineteen", "十九"),
        (101, "one hundred one", "一百零一"),
        (10005, "ten thousand five", "一万零五"),
        (20000, "twenty thousand", "二万"),
        (100010000, "one hundred million ten thousand", "一亿零一万"),
        (123456789, "one hundred twenty-three million four hundred fifty-six thousand seven hundred eighty-nine",
         "一亿二千三百四十五万六千七百八十九"),
        (1_000_000_000_000, "one trillion", "一万亿"),
    ],
)
def test_cardinals(n: int, en: str, zh: str) -> None:
    assert en_cardinal(n) == en
    assert zh_cardinal(n) == zh


def test_ordinals_and_digits() -> None:
    assert [en_ordinal(n) for n in (1, 2, 3, 5, 9, 12, 20, 40, 101)] == [
        "first", "second", "third", "fifth", "ninth", "twelfth", "twentieth", "fortieth", "one hundred first",
    ]
    assert read_digits("1234567", "en") == "one two three four, five six seven"
    assert read_digits("12345678901", "zh") == "一二三，四五六七，八九零一"
    assert read_digits("123456789", "en") == "one two three four, five six seven eight nine"


def test_language_variants_and_errors() -> None:
    assert normalize("15", "zh-CN") == "十五"
    assert normalize("15", "en-US") == "fifteen"
    assert normalize("15", "cmn") == "十五"
    with pytest.raises(ValueError, match="text must be str"):
        normalize(15, "en")  # type: ignore[arg-type]
