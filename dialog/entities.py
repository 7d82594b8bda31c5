"""Entity extraction for English and Mandarin: numbers, amounts, dates, digit strings, account types, yes/no.

    >>> [(e.kind, e.value) for e in extract("transfer 五百块 tomorrow", "zh", date(2026, 12, 1))]
    [('number', Decimal('500')), ('amount', (Decimal('500'), 'CNY')), ('date', datetime.date(2026, 12, 2))]

Everything is rules and tables (no model), so it runs in microseconds and behaves the same on every
machine. `extract` never raises on text: empty, hostile or very long input gives what it can find
in the first `MAX_CHARS` characters (or nothing).

Kinds and values:

| kind | value | examples |
|---|---|---|
| `number` | `Decimal` | 1,234.56, 1.5k, twelve hundred, one thousand two hundred and five, 一千二, 三点五 |
| `amount` | `(Decimal, currency code)` | ¥500, 500 yuan, $12.50, twelve dollars fifty, 五百块, 三块五, 50 美元 |
| `date` | `datetime.date` | today, next Friday, on the 5th, March 3, 2026-12-05, 明天, 下周五, 5号, 三月三日 |
| `digits` | `str` of 0-9 | ending in one two three four, 1234, 尾号1234, 幺二三四 |
| `account_type` | `str` | checking, savings, credit, debit, fixed_deposit, loan |
| `yes_no` | `bool` | yes, yeah, correct, no, nope, 是, 对, 好的, 不是, 不对, 不用 |

Rules worth knowing:
- Entities of different kinds may overlap: "500 yuan" is an amount and holds the number 500;
  "1234" is both a number and digits. Entities of one kind never overlap. The list is ordered by
  position (then kind).
- A run of two or more single digits ("one two three four", 幺二三四) is one number (1234) and a
  digits string ("1234"), never four numbers.
- Dates: "Friday" / "this Friday" / 这周五 / 周五 is the coming one (today if today is Friday);
  "next Friday" / 下周五 is the Friday of next week (weeks start on Monday). A month and day
  without a year ("March 3", 三月三日) is in today's year; a day alone ("on the 5th", 5号) in
  today's month.
- Currency codes: CNY, USD, EUR, HKD, GBP, JPY. "dollars" alone means USD.
- 储蓄 (卡/账户) is `savings`, 活期 `checking`, 定期 `fixed_deposit`.
- yes/no: strong words (yes, yeah, correct, no, nope) count anywhere as whole words; weak ones
  (right, sure, ok, fine, wrong) and every Chinese one only at the start of the utterance, so
  "right now" or 我的卡是信用卡 is not a yes. A negation just before a yes word makes it a no
  ("not correct", "that's not right").
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

log = logging.getLogger(__name__)

MAX_CHARS = 2000  # only this much of a text is searched (a caller's turn is far shorter)
MAX_NUMBER_DIGITS = 24  # longer runs of digits are digit strings, not numbers
KINDS = ("number", "amount", "date", "digits", "account_type", "yes_no")


@dataclass(frozen=True)
class Entity:
    """One thing found in a text: `text[start:end] == self.text`."""

    kind: str
    value: object
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class _Num:
    start: int
    end: int
    value: Decimal
    digit_string: str | None = None  # set when the number was said digit by digit


# --------------------------------------------------------------------------------------------
# English number words
# --------------------------------------------------------------------------------------------

_ONES = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9,
}  # fmt: skip
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
_SCALES = {"hundred": 100, "thousand": 1000, "grand": 1000, "million": 10**6, "billion": 10**9}
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
    "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
    "twentieth": 20, "thirtieth": 30,
}  # fmt: skip
_SUFFIX_SCALE = {"k": 1000, "m": 10**6, "b": 10**9}

# Words, typed numbers (1,234.56 / 1.5k / 1st) and any other single non-space character.
_EN_TOKEN = re.compile(
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?P<suffix>k|m|bn|b|st|nd|rd|th)?(?![a-z])"
    r"|(?P<word>[a-z]+(?:'[a-z]+)?)"
    r"|(?P<other>\S)",
    re.IGNORECASE | re.ASCII,
)


@dataclass(frozen=True)
class _Tok:
    text: str  # lower case
    start: int
    end: int
    kind: str  # num | word | other
    suffix: str = ""


def _en_tokens(text: str) -> list[_Tok]:
    tokens = []
    for m in _EN_TOKEN.finditer(text):
        kind = m.lastgroup or "other"
        if kind == "suffix":
            kind = "num"
        if m.group("num") is not None:
            tokens.append(_Tok(m.group("num"), m.start(), m.end(), "num", (m.group("suffix") or "").lower()))
        else:
            tokens.append(_Tok(m.group(0).lower(), m.start(), m.end(), kind))
    return tokens


def _typed_number(tok: _Tok) -> Decimal | None:
    raw = tok.text.replace(",", "")
    if len(raw.replace(".", "")) > MAX_NUMBER_DIGITS:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return None
    scale = {"k": 1000, "m": 10**6, "b": 10**9, "bn": 10**9}.get(tok.suffix)
    return value * scale if scale else value


def _en_numbers(tokens: list[_Tok]) -> list[_Num]:
    """Typed numbers, spoken digit runs and spoken numbers ("one thousand two hundred and five")."""
    found: list[_Num] = []
    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        if tok.kind == "num":
            value = _typed_number(tok)
            end = i
            if value is not None and tok.suffix in ("", "k", "m", "b", "bn"):
                # "2 thousand", "1.5 million"
                if tok.suffix == "" and i + 1 < n and tokens[i + 1].text in _SCALES and tokens[i + 1].kind == "word":
                    value *= _SCALES[tokens[i + 1].text]
                    end = i + 1
                found.append(_Num(tok.start, tokens[end].end, value))
            i = end + 1
            continue
        if tok.kind == "word" and (tok.text in _NUMBER_STARTS or tok.text in ("a", "double", "triple")):
            run = _digit_run(tokens, i)
            if run is not None:
                j, digits = run
                found.append(_Num(tok.start, tokens[j - 1].end, Decimal(int(digits)), digits))
                i = j
                continue
            parsed = _spoken_number(tokens, i)
            if parsed is not None:
                j, value = parsed
                found.append(_Num(tok.start, tokens[j - 1].end, value))
                i = j
                continue
        i += 1
    return found


_DIGIT_WORDS = {**_ONES, "o": 0}
_NUMBER_STARTS = {*_ONES, *_TEENS, *_TENS}


def _digit_run(tokens: list[_Tok], i: int) -> tuple[int, str] | None:
    """Two or more digits said one by one (with "double"/"triple"); returns (end index, digits)."""
    digits: list[str] = []
    j = i
    while j < len(tokens):
        word = tokens[j].text
        if word in ("double", "triple") and j + 1 < len(tokens) and tokens[j + 1].text in _DIGIT_WORDS:
            digits.append(str(_DIGIT_WORDS[tokens[j + 1].text]) * (2 if word == "double" else 3))
            j += 2
        elif word in _DIGIT_WORDS and tokens[j].kind == "word":
            digits.append(str(_DIGIT_WORDS[word]))
            j += 1
        elif word == "-" and digits and j + 1 < len(tokens) and tokens[j + 1].text in _DIGIT_WORDS:
            j += 1
        else:
            break
    joined = "".join(digits)
    if len(joined) < 2 or len(joined) > MAX_NUMBER_DIGITS:
        return None
    # "oh" and "o" only count inside a run of real digits
    if tokens[i].text in ("oh", "o") and len(digits) < 2:
        return None
    return j, joined


def _spoken_number(tokens: list[_Tok], i: int) -> tuple[int, Decimal] | None:
    """Parse a spoken cardinal starting at token i; returns (end index, value) or None."""
    total, current = 0, 0
    last = ""  # ones | teen | tens | hundred | scale
    used = 0
    j = i
    n = len(tokens)
    while j < n:
        tok = tokens[j]
        word = tok.text
        if tok.kind != "word" and word != "-":
            break
        if word == "-":  # twenty-five
            if last == "tens" and j + 1 < n and tokens[j + 1].text in _ONES:
                j += 1
                continue
            break
        if word == "a" and used == 0:
            if j + 1 < n and tokens[j + 1].text in _SCALES:
                current, last, used = 1, "ones", 1
                j += 1
                continue
            return None
        if word in _ONES and word != "oh":
            if last in ("ones", "teen"):
                break
            current += _ONES[word]
            last = "ones"
        elif word in _TEENS:
            if last in ("ones", "teen", "tens"):
                break
            current += _TEENS[word]
            last = "teen"
        elif word in _TENS:
            if last in ("ones", "teen", "tens"):
                break
            current += _TENS[word]
            last = "tens"
        elif word == "hundred":
            if last == "hundred" or last == "":
                break
            current = (current or 1) * 100
            last = "hundred"
        elif word in _SCALES:
            if last == "":
                break
            scale = _SCALES[word]
            total += (current or 1) * scale
            current = 0
            last = "scale"
        elif word == "and" and last in ("hundred", "scale") and j + 1 < n and _is_small(tokens[j + 1].text):
            j += 1
            continue
        elif word == "point" and last and j + 1 < n and tokens[j + 1].text in _DIGIT_WORDS:
            k = j + 1
            frac = ""
            while k < n and tokens[k].text in _DIGIT_WORDS and len(frac) < MAX_NUMBER_DIGITS:
                frac += str(_DIGIT_WORDS[tokens[k].text])
                k += 1
            return k, Decimal(f"{total + current}.{frac}")
        else:
            break
        used += 1
        j += 1
    if used == 0:
        return None
    return j, Decimal(total + current)


def _is_small(word: str) -> bool:
    return word in _ONES or word in _TEENS or word in _TENS


# --------------------------------------------------------------------------------------------
# Chinese numbers
# --------------------------------------------------------------------------------------------

_ZH_DIGITS = {
    "零": 0, "〇": 0, "洞": 0, "一": 1, "幺": 1, "壹": 1, "二": 2, "两": 2, "贰": 2, "三": 3, "叁": 3,
    "四": 4, "肆": 4, "五": 5, "伍": 5, "六": 6, "陆": 6, "七": 7, "柒": 7, "拐": 7, "八": 8, "捌": 8,
    "九": 9, "玖": 9,
}  # fmt: skip
_ZH_SMALL_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_ZH_BIG_UNITS = {"万": 10**4, "萬": 10**4, "亿": 10**8, "億": 10**8}
_ZH_NUM_CHARS = "零〇一幺壹二两贰三叁四肆五伍六陆七柒八捌九玖十拾百佰千仟万萬亿億"
# 洞 and 拐 (radio-style 0 and 7) only inside digit runs: handled by _ZH_DIGIT_RUN.
_ZH_NUMBER = re.compile(rf"[{_ZH_NUM_CHARS}]+(?:点[零〇一二两三四五六七八九]+)?")
_ZH_UNITS_OR_POINT = "十拾百佰千仟万萬亿億点"
_ZH_DIGIT_RUN = re.compile(
    rf"(?<![{_ZH_UNITS_OR_POINT}])[零〇洞一幺二两三四五六七拐八九]{{2,}}(?![{_ZH_UNITS_OR_POINT}])"
)
_ZH_MIXED = re.compile(r"(?<![\d.])(\d{1,12}(?:\.\d{1,12})?)\s*([十百千万亿])")
# A lone 一 in these words is not the number one ("一下", "一起", "统一", "一样" ...).
_ZH_NOT_ONE_AFTER = set("下起些样直定般共切旦边点会")
_ZH_NOT_ONE_BEFORE = set("统唯万第之")


def _zh_integer(s: str) -> int | None:
    if not any(ch in _ZH_SMALL_UNITS or ch in _ZH_BIG_UNITS for ch in s):
        digits = "".join(str(_ZH_DIGITS[ch]) for ch in s)
        return int(digits) if len(digits) <= MAX_NUMBER_DIGITS else None
    total, section, number = 0, 0, 0
    last_unit = 0
    unit_just_before = False
    saw_zero = False
    for ch in s:
        if ch in _ZH_DIGITS:
            if _ZH_DIGITS[ch] == 0:
                saw_zero = True
                unit_just_before = False
                continue
            number = _ZH_DIGITS[ch]
            abbreviated = unit_just_before and not saw_zero
            unit_just_before = False
            if not abbreviated:
                last_unit = 0
        elif ch in _ZH_SMALL_UNITS:
            unit = _ZH_SMALL_UNITS[ch]
            if number == 0 and unit == 10:
                number = 1  # 十二 = 12
            section += number * unit
            number, last_unit, unit_just_before, saw_zero = 0, unit, True, False
        else:
            unit = _ZH_BIG_UNITS[ch]
            if unit == 10**8:
                total = (total + section + number) * unit
            else:
                total += (section + number) * unit
            section, number = 0, 0
            last_unit, unit_just_before, saw_zero = unit, True, False
    if number and last_unit:  # 一千二 = 1200, 两万五 = 25000, 一百二 = 120
        number *= last_unit // 10
    return total + section + number


def _zh_numbers(text: str) -> list[_Num]:
    found: list[_Num] = []
    for m in _ZH_DIGIT_RUN.finditer(text):
        digits = "".join(str(_ZH_DIGITS[c]) for c in m.group(0))
        if len(digits) <= MAX_NUMBER_DIGITS:
            found.append(_Num(m.start(), m.end(), Decimal(int(digits)), digits))
    for m in _ZH_MIXED.finditer(text):
        try:
            value = Decimal(m.group(1))
        except InvalidOperation:
            continue
        unit = _ZH_SMALL_UNITS.get(m.group(2)) or _ZH_BIG_UNITS[m.group(2)]
        found.append(_Num(m.start(), m.end(), value * unit))
    taken_here = _Spans((f.start, f.end) for f in found)
    for m in _ZH_NUMBER.finditer(text):
        start, span = m.start(), m.group(0)
        # a number cannot start with a unit other than 十 (万一 is "in case", not a number)
        while span and span[0] in "百佰千仟万萬亿億":
            span, start = span[1:], start + 1
        if not span or taken_here.hits(start, start + len(span)):
            continue
        if span == "一" and (
            text[start + 1 : start + 2] in _ZH_NOT_ONE_AFTER or text[start - 1 : start] in _ZH_NOT_ONE_BEFORE
        ):
            continue
        integer_part, _, fraction = span.partition("点")
        value_int = _zh_integer(integer_part) if integer_part else 0
        if value_int is None:
            continue
        value = Decimal(value_int)
        if fraction:
            value = Decimal(f"{value_int}.{''.join(str(_ZH_DIGITS[c]) for c in fraction)}")
        found.append(_Num(start, start + len(span), value))
    return found


class _Spans:
    """Which characters are already covered: overlap tests in O(span length), not O(entities)."""

    def __init__(self, spans: Iterable[tuple[int, int]] = ()) -> None:
        self._mask = bytearray()
        for start, end in spans:
            self.add(start, end)

    def add(self, start: int, end: int) -> None:
        if end > len(self._mask):
            self._mask.extend(bytes(end - len(self._mask)))
        self._mask[start:end] = b"\x01" * (end - start)

    def hits(self, start: int, end: int) -> bool:
        return self._mask.find(1, start, min(end, len(self._mask))) != -1


def _overlaps(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return any(start < e and s < end for s, e in spans)


def _typed_numbers_plain(text: str) -> list[_Num]:
    """Arabic-digit numbers inside Chinese text (no word boundaries there)."""
    found = []
    for m in re.finditer(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?", text):
        raw = m.group(0).replace(",", "")
        if len(raw.replace(".", "")) > MAX_NUMBER_DIGITS:
            continue
        end = m.end()
        value = Decimal(raw)
        suffix = text[end : end + 1].lower()
        if suffix in _SUFFIX_SCALE and not text[end + 1 : end + 2].isalpha():
            value *= _SUFFIX_SCALE[suffix]
            end += 1
        found.append(_Num(m.start(), end, value))
    return found


def _numbers(text: str) -> list[_Num]:
    en = _en_numbers(_en_tokens(text))
    # digits glued to Chinese characters ("转500元") are not separate tokens for the English pass
    en_spans = _Spans((e.start, e.end) for e in en)
    plain = [n for n in _typed_numbers_plain(text) if not en_spans.hits(n.start, n.end)]
    zh = _zh_numbers(text)
    # 1.5万 (digits + Chinese unit) wins over the bare 1.5
    mixed = [z for z in zh if text[z.start].isdigit()]
    mixed_spans = _Spans((m.start, m.end) for m in mixed)
    result = [n for n in [*en, *plain] if not mixed_spans.hits(n.start, n.end)]
    result += zh
    result.sort(key=lambda n: (n.start, -n.end))
    merged: list[_Num] = []
    for num in result:
        if merged and num.start < merged[-1].end:
            continue
        merged.append(num)
    return merged


# --------------------------------------------------------------------------------------------
# Amounts
# --------------------------------------------------------------------------------------------

_CURRENCY_AFTER = [
    (re.compile(r"\s*(?:hong\s*kong|hk)\s*dollars?\b", re.I), "HKD"),
    (re.compile(r"\s*(?:us\s*)?(?:dollars?|bucks?|usd)\b", re.I), "USD"),
    (re.compile(r"\s*(?:yuan|rmb|cny|renminbi|kuai)\b", re.I), "CNY"),
    (re.compile(r"\s*(?:euros?|eur)\b", re.I), "EUR"),
    (re.compile(r"\s*(?:pounds?|quid|gbp)\b", re.I), "GBP"),
    (re.compile(r"\s*(?:yen|jpy)\b", re.I), "JPY"),
    (re.compile(r"\s*(?:hkd)\b", re.I), "HKD"),
    (re.compile(r"\s*(?:块钱|块|元|圆|人民币)"), "CNY"),
    (re.compile(r"\s*(?:美元|美金)"), "USD"),
    (re.compile(r"\s*欧元"), "EUR"),
    (re.compile(r"\s*(?:港币|港元)"), "HKD"),
    (re.compile(r"\s*英镑"), "GBP"),
    (re.compile(r"\s*日元"), "JPY"),
]
_CURRENCY_BEFORE = [
    (re.compile(r"(?:HK\$|HKD\s*)\s*$", re.I), "HKD"),
    (re.compile(r"(?:US\$|\$|USD\s*)\s*$", re.I), "USD"),
    (re.compile(r"(?:[¥￥]|RMB\s*|CNY\s*|人民币)\s*$", re.I), "CNY"),
    (re.compile(r"(?:€|EUR\s*)\s*$", re.I), "EUR"),
    (re.compile(r"(?:£|GBP\s*)\s*$", re.I), "GBP"),
    (re.compile(r"(?:JPY\s*)\s*$", re.I), "JPY"),
]
_CENTS_WORD = re.compile(r"\s*(?:and\s+)?$", re.I)
_CENTS_AFTER = re.compile(r"\s*(?:cents?|pence|p)\b", re.I)


_CURRENCY_HINT = re.compile(
    r"[$¥￥€£块元圆]|美元|美金|欧元|港币|港元|英镑|日元|人民币|dollar|buck|usd|yuan|rmb|cny|renminbi|kuai|euro|eur"
    r"|pound|quid|gbp|yen|jpy|hkd|cent|pence|\dp\b",
    re.I,
)


def _amounts(text: str, numbers: list[_Num]) -> list[Entity]:
    found: list[Entity] = []
    if not numbers or not _CURRENCY_HINT.search(text):
        return found
    by_start = {n.start: n for n in numbers}
    i = 0
    while i < len(numbers):
        num = numbers[i]
        start, end, value, currency = num.start, num.end, num.value, ""
        prefix = text[max(0, start - 8) : start]
        for pattern, code in _CURRENCY_BEFORE:
            m = pattern.search(prefix)
            if m:
                start, currency = start - (len(prefix) - m.start()), code
                break
        after_code = ""
        for pattern, code in _CURRENCY_AFTER:
            m = pattern.match(text, end)
            if m and (not currency or code == currency):
                end, after_code = m.end(), code
                break
        currency = currency or after_code
        if not currency:
            m_cents = _CENTS_AFTER.match(text, end)
            if m_cents and value < 100:
                found.append(_entity(text, "amount", (value / 100, "USD"), start, m_cents.end()))
            i += 1
            continue
        if after_code:
            end, value, i = _minor_units(text, numbers, by_start, i, end, value, currency)
        found.append(_entity(text, "amount", (value, currency), start, end))
        i += 1
    return found


def _minor_units(
    text: str, numbers: list[_Num], by_start: dict[int, _Num], i: int, end: int, value: Decimal, currency: str
) -> tuple[int, Decimal, int]:
    """'twelve dollars fifty (cents)', '三块五', '五元三角', returns (end, value, index of last number used)."""
    rest = text[end : end + 12]
    zh = _ZH_MINOR.match(rest) if currency == "CNY" else None
    if zh and (zh.group("bare") is None or text[end - 1] in "块元圆"):
        jiao = zh.group("jiao") or zh.group("bare")
        fen = zh.group("fen") or zh.group("fen_only")
        value += Decimal(_zh_digit(jiao) if jiao else 0) / 10 + Decimal(_zh_digit(fen) if fen else 0) / 100
        new_end = end + zh.end()
        while i + 1 < len(numbers) and numbers[i + 1].start < new_end:
            i += 1
        return new_end, value, i
    m = re.match(r"\s*(?:and\s+)?", text[end:], re.I)
    nxt = by_start.get(end + (m.end() if m else 0))
    if nxt is not None and nxt.value < 100 and nxt.value == nxt.value.to_integral_value() and nxt.digit_string is None:
        after = _CENTS_AFTER.match(text, nxt.end)
        value += nxt.value / 100
        return (after.end() if after else nxt.end), value, numbers.index(nxt)
    return end, value, i


_ZH_D = r"[零一二两三四五六七八九\d]"
_ZH_MINOR = re.compile(  # 五毛 / 五毛三分 / 零五分 / 三块五 (a bare digit only right after 块, 元 or 圆)
    rf"\s*(?:零?(?P<jiao>{_ZH_D})[毛角](?:零?(?P<fen>{_ZH_D})分)?"
    rf"|零?(?P<fen_only>{_ZH_D})分"
    rf"|(?P<bare>{_ZH_D})(?![\d零一二两三四五六七八九十百千万亿月日号点年块元毛角分]))"
)


def _zh_digit(ch: str) -> int:
    return int(ch) if ch.isdigit() else _ZH_DIGITS[ch]


# --------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------

_WEEKDAYS_EN = {
    "monday": 0, "mon": 0, "tuesday": 1, "tue": 1, "tues": 1, "wednesday": 2, "wed": 2, "thursday": 3,
    "thu": 3, "thurs": 3, "friday": 4, "fri": 4, "saturday": 5, "sat": 5, "sunday": 6, "sun": 6,
}  # fmt: skip
_MONTHS_EN = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4, "may": 5,
    "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9, "sep": 9, "sept": 9,
    "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}  # fmt: skip
_WEEKDAYS_ZH = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "末": 5}
_RELATIVE_EN = [
    (re.compile(r"\bthe\s+day\s+after\s+tomorrow\b", re.I), 2),
    (re.compile(r"\bthe\s+day\s+before\s+yesterday\b", re.I), -2),
    (re.compile(r"\btoday\b", re.I), 0),
    (re.compile(r"\btomorrow\b", re.I), 1),
    (re.compile(r"\byesterday\b", re.I), -1),
]
_RELATIVE_ZH = [
    (re.compile(r"大后天"), 3),
    (re.compile(r"大前天"), -3),
    (re.compile(r"后天"), 2),
    (re.compile(r"前天"), -2),
    (re.compile(r"今天|今日"), 0),
    (re.compile(r"明天|明日"), 1),
    (re.compile(r"昨天|昨日"), -1),
]
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_ORDINAL_WORDS = "|".join(sorted(_ORDINALS, key=len, reverse=True))
_EN_DATE_PATTERNS = [
    ("iso", re.compile(r"\b(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\b")),
    ("weekday", re.compile(r"\b(?:(next|this|coming|last|on)\s+)?(" + "|".join(_WEEKDAYS_EN) + r")\b", re.I)),
    (
        "month_day",
        re.compile(r"\b(" + "|".join(_MONTHS_EN) + r")\.?\s+(?:the\s+)?" + _DAY + r"(?!\d)(?:,?\s*(\d{4})\b)?", re.I),
    ),
    (
        "day_month",
        re.compile(
            r"\b(?:the\s+)?" + _DAY + r"\s+(?:of\s+)?(" + "|".join(_MONTHS_EN) + r")\b(?:,?\s*(\d{4})\b)?", re.I
        ),
    ),
    (
        "the_day",
        re.compile(
            r"\b(?:on|by|before|after|until|from|for|since)\s+the\s+(?:(\d{1,2})(?:st|nd|rd|th)|("
            + _ORDINAL_WORDS
            + r"))\b",
            re.I,
        ),
    ),
    (
        "the_day",
        re.compile(
            r"\bthe\s+(?:(\d{1,2})(?:st|nd|rd|th)|(" + _ORDINAL_WORDS + r"))\s+of\s+(?:the|this)\s+month\b", re.I
        ),
    ),
]
_ZH_NUM = r"[0-9零一二两三四五六七八九十]{1,4}"
_ZH_DATE_PATTERNS = [
    ("ymd", re.compile(r"(\d{4})年(" + _ZH_NUM + r")月(" + _ZH_NUM + r")[日号]")),
    ("md", re.compile(r"(" + _ZH_NUM + r")月(" + _ZH_NUM + r")[日号]")),
    ("week", re.compile(r"(下下|下|这|本|上)?(?:个)?(?:周|星期|礼拜)([一二三四五六日天末])")),
    ("d", re.compile(r"(" + _ZH_NUM + r")[号日](?![元子])")),
]


def _make_date(year: int, month: int, day: int) -> datetime.date | None:
    try:
        return datetime.date(year, month, day)
    except ValueError:
        return None


def _weekday(today: datetime.date, weekday: int, which: str) -> datetime.date:
    monday = today - datetime.timedelta(days=today.weekday())
    if which in ("next", "下"):
        return monday + datetime.timedelta(days=7 + weekday)
    if which == "下下":
        return monday + datetime.timedelta(days=14 + weekday)
    if which in ("last", "上"):
        return monday + datetime.timedelta(days=weekday - 7)
    if which in ("这", "本"):
        return monday + datetime.timedelta(days=weekday)
    return today + datetime.timedelta(days=(weekday - today.weekday()) % 7)  # the coming one


def _zh_small(s: str) -> int | None:
    if s.isdigit():
        return int(s)
    if all(ch in _ZH_DIGITS or ch in "十" for ch in s):
        return _zh_integer(s)
    return None


def _dates(text: str, today: datetime.date) -> list[Entity]:
    found: list[Entity] = []
    taken = _Spans()

    def add(value: datetime.date | None, start: int, end: int) -> None:
        if value is not None and not taken.hits(start, end):
            found.append(_entity(text, "date", value, start, end))
            taken.add(start, end)

    for pattern, days in [*_RELATIVE_EN, *_RELATIVE_ZH]:
        for m in pattern.finditer(text):
            add(today + datetime.timedelta(days=days), m.start(), m.end())
    for kind, pattern in _ZH_DATE_PATTERNS:
        for m in pattern.finditer(text):
            if kind == "week":
                which = m.group(1) or ""
                add(_weekday(today, _WEEKDAYS_ZH[m.group(2)], which), m.start(), m.end())
                continue
            parts = [_zh_small(g) for g in m.groups()]
            if any(p is None for p in parts):
                continue
            if kind == "ymd":
                add(_make_date(parts[0] or 0, parts[1] or 0, parts[2] or 0), m.start(), m.end())
            elif kind == "md":
                add(_make_date(today.year, parts[0] or 0, parts[1] or 0), m.start(), m.end())
            else:
                add(_make_date(today.year, today.month, parts[0] or 0), m.start(), m.end())
    for kind, pattern in _EN_DATE_PATTERNS:
        for m in pattern.finditer(text):
            g = m.groups()
            if kind == "iso":
                add(_make_date(int(g[0]), int(g[1]), int(g[2])), m.start(), m.end())
            elif kind == "weekday":
                which = (g[0] or "").lower()
                add(_weekday(today, _WEEKDAYS_EN[g[1].lower()], which), m.start(), m.end())
            elif kind == "month_day":
                year = int(g[2]) if g[2] else today.year
                add(_make_date(year, _MONTHS_EN[g[0].lower()], int(g[1])), m.start(), m.end())
            elif kind == "day_month":
                year = int(g[2]) if g[2] else today.year
                add(_make_date(year, _MONTHS_EN[g[1].lower()], int(g[0])), m.start(), m.end())
            else:
                day = int(g[0]) if g[0] else _ORDINALS[g[1].lower()]
                add(_make_date(today.year, today.month, day), m.start(), m.end())
    return found


# --------------------------------------------------------------------------------------------
# Digit strings, account types, yes/no
# --------------------------------------------------------------------------------------------

_GROUPED_DIGITS = re.compile(r"\d+(?:[ -]\d+)+")
_TYPED_DIGITS = re.compile(r"(?<![\d.,])\d{2,}(?:[ -]\d{2,})*(?![\d.,]\d)")


def _digit_strings(text: str, numbers: list[_Num]) -> list[Entity]:
    found = [_entity(text, "digits", n.digit_string, n.start, n.end) for n in numbers if n.digit_string is not None]
    taken = _Spans((e.start, e.end) for e in found)
    for m in _TYPED_DIGITS.finditer(text):
        if taken.hits(m.start(), m.end()):
            continue
        found.append(_entity(text, "digits", re.sub(r"[ -]", "", m.group(0)), m.start(), m.end()))
    return found


_ACCOUNT_TYPES = [
    (re.compile(r"\bfixed[\s-]*(?:term\s+)?deposit|\btime\s+deposit|\bcertificate\s+of\s+deposit|定期", re.I),
     "fixed_deposit"),
    (re.compile(r"\bchecking|\bchequing|\bcurrent\s+account|活期", re.I), "checking"),
    (re.compile(r"\bsavings?\b|储蓄|存折", re.I), "savings"),
    (re.compile(r"\bcredit(?:\s*card)?\b|信用卡|贷记卡", re.I), "credit"),
    (re.compile(r"\bdebit(?:\s*card)?\b|借记卡", re.I), "debit"),
    (re.compile(r"\bloan\s+account|\bmortgage\s+account|贷款账户", re.I), "loan"),
]  # fmt: skip


def _account_types(text: str) -> list[Entity]:
    found: list[Entity] = []
    taken = _Spans()
    for pattern, value in _ACCOUNT_TYPES:
        for m in pattern.finditer(text):
            if not taken.hits(m.start(), m.end()):
                taken.add(m.start(), m.end())
                end = m.end()
                tail = re.match(r"(?:卡|账户|帐户|账号|存款)", text[end:])
                if tail:
                    end += tail.end()
                found.append(_entity(text, "account_type", value, m.start(), end))
    return found


_EN_STRONG_YES = re.compile(r"\b(?:yes|yeah|yea|yep|yup|correct|affirmative|absolutely|definitely|exactly)\b", re.I)
# "no" only opens a clause ("no, the other one"; not "I have no card"); the others count anywhere.
_EN_STRONG_NO = re.compile(
    r"(?:^|[,.;!?]|\b(?:oh|uh|um|well|and))\s*(?P<no>no)\b(?!\s+(?:problem|worries)\b)"
    r"|\b(?P<other>nope|nah|negative|incorrect)\b",
    re.I,
)
_EN_WEAK = re.compile(
    r"^\W*(?:(?P<no>not\s+really|wrong|that'?s\s+wrong|never\s*mind)"
    r"|(?P<yes>that'?s\s+right|right(?!\s+(?:now|away|here|there|after|before))|sure|ok(?:ay)?|fine|go\s+ahead|please\s+do|do\s+it|confirm(?:ed)?|of\s+course))\b",
    re.I,
)
_EN_NEGATION = re.compile(r"(?:\bnot|n't)\s+(?:\w+\s+)?$", re.I)
_EN_NOT_RIGHT = re.compile(r"\b(?:not|isn'?t)\s+(?:right|correct)\b", re.I)
_ZH_PARTICLES = "嗯啊呃哦噢喔额唔，。！？、,.!? "
_ZH_PHRASES = sorted(
    [(p, False) for p in ("不是", "不对", "不用", "不要", "不行", "不可以", "不需要", "不必", "没有", "错了", "不")]
    + [(p, True) for p in ("是的", "是", "对的", "对", "好的", "好", "可以", "行", "没错", "没问题", "确认", "确定")],
    key=lambda item: -len(item[0]),
)


def _yes_no(text: str) -> list[Entity]:
    found: list[Entity] = []
    start = len(text) - len(text.lstrip(_ZH_PARTICLES))
    head = text[start:]
    match = next(((p, v) for p, v in _ZH_PHRASES if head.startswith(p)), None)
    if match and not head.startswith("不好意思"):
        found.append(_entity(text, "yes_no", match[1], start, start + len(match[0])))
    elif not head and "嗯" in text:  # 嗯 / 嗯嗯 on its own
        found.append(_entity(text, "yes_no", True, text.index("嗯"), text.rindex("嗯") + 1))
    weak = _EN_WEAK.match(text)
    if weak and not found:
        value = weak.group("yes") is not None
        group = "yes" if value else "no"
        found.append(_entity(text, "yes_no", value, weak.start(group), weak.end(group)))
    for m in _EN_STRONG_YES.finditer(text):
        negated = _EN_NEGATION.search(text[max(0, m.start() - 20) : m.start()]) is not None
        _add_unless_overlapping(found, _entity(text, "yes_no", not negated, m.start(), m.end()))
    for m in _EN_STRONG_NO.finditer(text):
        group = "no" if m.group("no") else "other"
        _add_unless_overlapping(found, _entity(text, "yes_no", False, m.start(group), m.end(group)))
    for m in _EN_NOT_RIGHT.finditer(text):
        _add_unless_overlapping(found, _entity(text, "yes_no", False, m.start(), m.end()))
    return found


def _add_unless_overlapping(found: list[Entity], entity: Entity) -> None:
    if not _overlaps(entity.start, entity.end, [(e.start, e.end) for e in found]):
        found.append(entity)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _entity(text: str, kind: str, value: object, start: int, end: int) -> Entity:
    if isinstance(value, Decimal):
        value = _tidy(value)
    elif isinstance(value, tuple) and value and isinstance(value[0], Decimal):
        value = (_tidy(value[0]), *value[1:])
    return Entity(kind, value, text[start:end], start, end)


def _tidy(value: Decimal) -> Decimal:
    """1500.0 -> 1500 (whole numbers without a fraction part); 12.50 stays 12.50."""
    if value.adjusted() > 20 or value != value.to_integral_value():
        return value
    return value.quantize(Decimal(1))


def extract(text: str, lang: str, today: datetime.date | None = None) -> list[Entity]:
    """Every entity found in `text`, by position. `lang` ("en" or "zh") only breaks ties: both
    languages' rules always run, since callers mix them ("转500 dollars", "my 信用卡")."""
    if not isinstance(text, str) or not text:
        return []
    if len(text) > MAX_CHARS:
        log.debug("entities: text of %d chars cut to %d", len(text), MAX_CHARS)
        text = text[:MAX_CHARS]
    today = today or datetime.date.today()
    dates = _dates(text, today)
    date_spans = _Spans((d.start, d.end) for d in dates)
    numbers = [n for n in _numbers(text) if not date_spans.hits(n.start, n.end)]
    entities: list[Entity] = [_entity(text, "number", n.value, n.start, n.end) for n in numbers]
    entities += _amounts(text, numbers)
    entities += dates
    digits = [d for d in _digit_strings(text, numbers) if not date_spans.hits(d.start, d.end)]
    # "6222 0212 3456 7890" is one digit string, not four numbers
    grouped = _Spans((d.start, d.end) for d in digits if _GROUPED_DIGITS.fullmatch(d.text))
    entities = [e for e in entities if e.kind != "number" or not grouped.hits(e.start, e.end)]
    entities += digits
    entities += _account_types(text)
    entities += _yes_no(text)
    order = {kind: i for i, kind in enumerate(KINDS)}
    entities.sort(key=lambda e: (e.start, order[e.kind], -e.end))
    return list(_one_per_span(entities, lang))


def _one_per_span(entities: list[Entity], lang: str) -> Iterator[Entity]:
    """Drop same-kind overlaps (the earlier, longer one wins)."""
    ends: dict[str, int] = {}
    for e in entities:
        if e.start < ends.get(e.kind, -1):
            continue
        ends[e.kind] = e.end
        yield e


def first(text: str, lang: str, kind: str, today: datetime.date | None = None) -> Entity | None:
    """The first entity of `kind` in `text`, or None."""
    if kind not in KINDS:
        raise ValueError(f"unknown entity kind {kind!r}; one of {', '.join(KINDS)}")
    return next((e for e in extract(text, lang, today) if e.kind == kind), None)


# --------------------------------------------------------------------------------------------
# Periods: "since last Monday", "statement for March", 上个月, 最近七天, 昨天 -> (first day, last day)
# --------------------------------------------------------------------------------------------

_EN_UNITS = {"day": 1, "days": 1, "week": 7, "weeks": 7, "month": 30, "months": 30}
_EN_LAST_N = re.compile(
    r"\b(?:last|past|previous)\s+(\d{1,3}|" + "|".join(sorted([*_ONES, *_TEENS, *_TENS], key=len, reverse=True))
    + r"|a|one)?\s*(days?|weeks?|months?)\b",
    re.I,
)
_EN_CALENDAR = re.compile(r"\b(last|this|previous|past|current)\s+(week|month|year)\b", re.I)
_EN_SINCE = re.compile(r"\b(?:since|from|after|starting)\b", re.I)
_EN_MONTH = re.compile(
    r"(?:\b(?:in|for|of|during)\s+(may)|\b(" + "|".join(k for k in _MONTHS_EN if len(k) > 3)
    + r"))\b(?:\s+(\d{4})\b)?",
    re.I,
)
_ZH_N = r"([0-9零一二两三四五六七八九十]{1,3})"
_ZH_LAST_N = re.compile(r"(?:最近|近|过去|前)" + _ZH_N + r"?\s*(?:个)?(天|日|周|星期|礼拜|月)")
_ZH_CALENDAR = re.compile(r"(上个?|这个?|本|今|去)(月|周|星期|礼拜|年)(?![一二三四五六日天末]|[\d零两七八九十]+[日号])")
_ZH_SINCE = re.compile(r"\s*(?:以来|之后|以后|起|开始)")
# groups as _EN_MONTH's: month, (unused), (no year)
_ZH_MONTH = re.compile(
    r"(?<![\d一二三四五六七八九十零两个])(\d{1,2}|[一二三四五六七八九十]{1,2})()月份?(?![\d零一二两三四五六七八九十]+[日号]?)()"
)


_WEEKDAY_WORD = re.compile(r"(?:" + "|".join(_WEEKDAYS_EN) + r")\b|周|星期|礼拜", re.I)


def _past(day: datetime.date, said: str, today: datetime.date) -> datetime.date:
    """A day named for past transactions lies in the past: "Monday" is the last one, "the 5th" last
    month's, "March 3" last year's."""
    if day <= today:
        return day
    if _WEEKDAY_WORD.search(said):
        return day - datetime.timedelta(days=7 * (1 + (day - today).days // 7))
    if day.year == today.year and day.month == today.month:  # "the 31st" of a 30-day month: its last day
        year, month = today.year - (today.month == 1), (today.month - 2) % 12 + 1
        return _make_date(year, month, day.day) or _month_range(year, month, today)[1]
    return _make_date(day.year - 1, day.month, day.day) or day - datetime.timedelta(days=365)


def _day(entity: Entity) -> datetime.date:
    assert isinstance(entity.value, datetime.date)
    return entity.value


def _month_range(year: int, month: int, today: datetime.date) -> tuple[datetime.date, datetime.date]:
    first = datetime.date(year, month, 1)
    nxt = datetime.date(year + (month == 12), month % 12 + 1, 1)
    return first, min(nxt - datetime.timedelta(days=1), today)


def _months_back(today: datetime.date, n: int) -> datetime.date:
    month0 = today.month - 1 - n
    year, month = today.year + month0 // 12, month0 % 12 + 1
    return _make_date(year, month, min(today.day, 28)) or today


def _calendar(unit: str, last: bool, today: datetime.date) -> tuple[datetime.date, datetime.date]:
    if unit == "week":
        monday = today - datetime.timedelta(days=today.weekday())
        if last:
            return monday - datetime.timedelta(days=7), monday - datetime.timedelta(days=1)
        return monday, today
    if unit == "month":
        if last:
            end = today.replace(day=1) - datetime.timedelta(days=1)
            return end.replace(day=1), end
        return today.replace(day=1), today
    if last:
        return datetime.date(today.year - 1, 1, 1), datetime.date(today.year - 1, 12, 31)
    return datetime.date(today.year, 1, 1), today


def _count(word: str | None) -> int | None:
    if not word:
        return 1
    word = word.lower()
    if word.isdigit():
        return int(word)
    if word in ("a", "one"):
        return 1
    if word in _ONES or word in _TEENS or word in _TENS:
        return {**_ONES, **_TEENS, **_TENS}[word]
    return _zh_small(word)


def period(text: str, lang: str = "en", today: datetime.date | None = None) -> Entity | None:
    """The period of time `text` names, as an Entity of kind "period" with value (first day, last day),
    both inclusive and never after `today`; None when it names none. Checked in this order: "last 7
    days" / 最近7天; "since Monday" / 上周一以来; "last month" / 上个月 / "this week" / 本周; "March" /
    三月份; a single day ("yesterday", "last Monday", 昨天: that day only)."""
    if not isinstance(text, str) or not text:
        return None
    text = text[:MAX_CHARS]
    today = today or datetime.date.today()

    def found(start: datetime.date, end: datetime.date, m_start: int, m_end: int) -> Entity:
        start, end = min(start, end), min(max(start, end), today)
        return _entity(text, "period", (start, end), m_start, m_end)

    m = _EN_CALENDAR.search(text)
    if m is not None and m.group(1).lower() != "past":
        last = m.group(1).lower() in ("last", "previous")
        return found(*_calendar(m.group(2).lower(), last, today), m.start(), m.end())
    for pattern in (_EN_LAST_N, _ZH_LAST_N):
        m = pattern.search(text)
        if m is None:
            continue
        n = _count(m.group(1))
        if n is None or not 0 < n <= 400:
            continue
        unit = m.group(2).lower()
        if unit.startswith("month") or unit == "月":
            start = _months_back(today, n) + datetime.timedelta(days=1)
        else:
            days = n * (7 if unit.startswith("week") or unit in ("周", "星期", "礼拜") else 1)
            start = today - datetime.timedelta(days=days - 1)
        return found(start, today, m.start(), m.end())
    dates = _dates(text, today)
    for d in dates:
        before, after = text[max(0, d.start - 12) : d.start] + " " + d.text[:6], text[d.end : d.end + 4]
        if _EN_SINCE.search(before) or _ZH_SINCE.match(after) or re.search(r"(?:自从|自|从)\s*$", before):
            start, end, m_end = _past(_day(d), d.text, today), today, d.end
            later = [e for e in dates if e.start >= d.end]
            if later and re.search(r"\b(?:to|until|till|and)\b|到|至", text[d.end : later[0].start]):
                end, m_end = _past(_day(later[0]), later[0].text, today), later[0].end
            return found(start, end, d.start, m_end)
    m = _ZH_CALENDAR.search(text)
    if m is not None:
        unit = {"月": "month", "年": "year"}.get(m.group(2), "week")
        return found(*_calendar(unit, m.group(1)[0] in "上去", today), m.start(), m.end())
    day_spans = _Spans((d.start, d.end) for d in dates)
    for pattern in (_EN_MONTH, _ZH_MONTH):
        for m in pattern.finditer(text):
            group = 1 if m.group(1) else 2
            if day_spans.hits(m.start(group), m.end(group)):
                continue
            word = m.group(group).lower()
            month = _MONTHS_EN.get(word) or _zh_small(word)
            if not month or not 1 <= month <= 12:
                continue
            year = int(m.group(3)) if pattern is _EN_MONTH and m.group(3) else today.year
            if year == today.year and month > today.month:
                year -= 1
            return found(*_month_range(year, month, today), m.start(group), m.end())
    if dates:
        day = _past(_day(dates[0]), dates[0].text, today)
        return found(day, day, dates[0].start, dates[0].end)
    return None
