"""Text normalisation for speech: numbers, amounts, times, percentages and digit strings as words.

``normalize(text, lang)`` with lang "en" or "zh". Rules, in order:

1. amounts with a currency ("$1,234.56", "¥1,234.56", "1234.56元", "RMB 100", "USD 5")
2. percentages ("3.5%")
3. clock times ("9:00", "17:30")
4. (zh) years before 年 ("2024年" -> 二零二四年)
5. digit strings in groups ("6222 0212 3456 7890", "400-820-8888") and long digit strings
   (5 or more digits: card, account and phone numbers, "95555") read digit by digit in groups
6. other numbers: "1,234" and "42" as cardinals, "3.75" with a point; (en) "3rd" as ordinals
7. the keypad symbols "#" and "*"

Normalising already-normalised text changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["en_cardinal", "en_ordinal", "normalize", "read_digits", "zh_cardinal"]

# -- English --------------------------------------------------------------------------------------
_EN_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_EN_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand"))


def _en_below_1000(n: int) -> str:
    words: list[str] = []
    if n >= 100:
        words.append(f"{_EN_ONES[n // 100]} hundred")
        n %= 100
    if n >= 20:
        words.append(_EN_TENS[n // 10] + (f"-{_EN_ONES[n % 10]}" if n % 10 else ""))
    elif n or not words:
        words.append(_EN_ONES[n])
    return " ".join(words)


def en_cardinal(n: int) -> str:
    """1234 -> 'one thousand two hundred thirty-four' (American style, no 'and')."""
    if n < 0:
        return "minus " + en_cardinal(-n)
    if n < 1000:
        return _en_below_1000(n)
    words: list[str] = []
    for value, name in _EN_SCALES:
        if n >= value:
            words.append(f"{en_cardinal(n // value) if n // value >= 1000 else _en_below_1000(n // value)} {name}")
            n %= value
    if n:
        words.append(_en_below_1000(n))
    return " ".join(words)


_EN_ORD_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                     "nine": "ninth", "twelve": "twelfth"}


def en_ordinal(n: int) -> str:
    """3 -> 'third', 21 -> 'twenty-first', 40 -> 'fortieth'."""
    words = en_cardinal(n)
    head, sep, last = words.rpartition("-") if "-" in words.split()[-1] else words.rpartition(" ")
    if last in _EN_ORD_IRREGULAR:
        last = _EN_ORD_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


_EN_DIGITS = _EN_ONES[:10]
_ZH_DIGITS = "零一二三四五六七八九"


def read_digits(digits: str, lang: str) -> str:
    """Reads a digit string digit by digit in groups: 16 digits in fours, 11 (a mobile number) as
    3-4-4, up to 6 digits as one group. Groups are separated by a comma (a pause)."""
    ds = [c for c in digits if c.isdigit()]
    n = len(ds)
    if n <= 6:
        sizes = [n]
    elif n == 11:
        sizes = [3, 4, 4]
    else:
        sizes = [4] * (n // 4) + ([n % 4] if n % 4 else [])
        if sizes[-1] == 1:
            sizes[-2:] = [5]
    groups: list[list[str]] = []
    pos = 0
    for size in sizes:
        groups.append(ds[pos : pos + size])
        pos += size
    return _join_digit_groups(groups, lang)


def _join_digit_groups(groups: list[list[str]], lang: str) -> str:
    if lang == "zh":
        return "，".join("".join(_ZH_DIGITS[int(d)] for d in g) for g in groups)
    return ", ".join(" ".join(_EN_DIGITS[int(d)] for d in g) for g in groups)


# -- Chinese --------------------------------------------------------------------------------------
def _zh_below_10000(n: int) -> str:
    out: list[str] = []
    zero = False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d = n // value % 10
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        out.append(_ZH_DIGITS[d] + unit)
    return "".join(out)


def zh_cardinal(n: int) -> str:
    """1234 -> 一千二百三十四, 10005 -> 一万零五, 15 -> 十五, 100000000 -> 一亿."""
    if n < 0:
        return "负" + zh_cardinal(-n)
    if n == 0:
        return "零"
    groups: list[int] = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    units = ["", "万", "亿", "万亿"]
    out: list[str] = []
    pending_zero = False
    for i in range(len(groups) - 1, -1, -1):
        g = groups[i]
        if g == 0:
            pending_zero = bool(out)
            continue
        if out and (pending_zero or g < 1000):
            out.append("零")
        out.append(_zh_below_10000(g) + units[i])
        pending_zero = False
    text = "".join(out)
    return text[1:] if text.startswith("一十") else text


# -- shared pieces --------------------------------------------------------------------------------
_NUM = r"\d{1,3}(?:,\d{3})+|\d+"
_AMOUNT = rf"(?P<int>{_NUM})(?:\.(?P<frac>\d{{1,2}}))?(?!\d)"


def _int(s: str) -> int:
    return int(s.replace(",", ""))


def _cents(frac: str | None) -> int:
    return int((frac or "0").ljust(2, "0")[:2])


def _decimal(s: str, lang: str) -> str:
    whole, _, frac = s.replace(",", "").partition(".")
    if lang == "zh":
        text = zh_cardinal(int(whole))
        return text + ("点" + "".join(_ZH_DIGITS[int(d)] for d in frac) if frac else "")
    text = en_cardinal(int(whole))
    return text + (" point " + " ".join(_EN_DIGITS[int(d)] for d in frac) if frac else "")


# English currency: symbol/code -> (unit, units, subunit, subunits)
_EN_CURRENCY = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "usd": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "eur": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "gbp": ("pound", "pounds", "penny", "pence"),
    "¥": ("yuan", "yuan", "fen", "fen"),
    "￥": ("yuan", "yuan", "fen", "fen"),
    "rmb": ("yuan", "yuan", "fen", "fen"),
    "cny": ("yuan", "yuan", "fen", "fen"),
}
_ZH_CURRENCY = {"$": "美元", "usd": "美元", "€": "欧元", "eur": "欧元", "£": "英镑", "gbp": "英镑", "港币": "港币",
                "hk$": "港币", "hkd": "港币"}
_YUAN = {"¥", "￥", "rmb", "cny", "人民币", "元", "块", "圆"}


def _en_amount(sym: str, whole: int, cents: int) -> str:
    one, many, sub_one, sub_many = _EN_CURRENCY[sym.lower()]
    parts = []
    if whole or not cents:
        parts.append(f"{en_cardinal(whole)} {one if whole == 1 else many}")
    if cents:
        parts.append(f"{en_cardinal(cents)} {sub_one if cents == 1 else sub_many}")
    return " and ".join(parts)


def _zh_yuan(whole: int, cents: int) -> str:
    jiao, fen = divmod(cents, 10)
    out = ""
    if whole or not cents:
        out = zh_cardinal(whole) + "元"
    if jiao:
        out += _ZH_DIGITS[jiao] + "角"
    if fen:
        out += ("零" if whole and not jiao else "") + _ZH_DIGITS[fen] + "分"
    return out


def _zh_other(unit: str, whole: int, frac: str | None) -> str:
    frac = (frac or "").rstrip("0")
    number = zh_cardinal(whole) + ("点" + "".join(_ZH_DIGITS[int(d)] for d in frac) if frac else "")
    return number + unit


_SYM = r"(?P<sym>HK\$|[$€£¥￥]|(?:USD|EUR|GBP|RMB|CNY|HKD)\b\s?)"
_RE_PREFIX_AMOUNT = re.compile(rf"(?<![A-Za-z0-9$]){_SYM}\s?{_AMOUNT}(?:\s?(?P<yuan>元))?", re.IGNORECASE)
_RE_SUFFIX_CODE = re.compile(rf"(?<![\d.,]){_AMOUNT}\s?(?P<code>USD|EUR|GBP|RMB|CNY|HKD)\b", re.IGNORECASE)
_RE_ZH_SUFFIX = re.compile(rf"(?<![\d.,]){_AMOUNT}\s?(?P<unit>元|块|美元|欧元|英镑|港币)")
_RE_PERCENT = re.compile(r"(?<![\d.,])(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)\s?%")
_RE_TIME = re.compile(
    r"(?<![\d:.])(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?![\d:])(?:\s?(?P<ampm>[ap])\.?\s?m\b\.?)?", re.IGNORECASE
)
_RE_ZH_YEAR = re.compile(r"(?<!\d)(?P<y>\d{4})\s?年")
_RE_GROUPED = re.compile(r"(?<![\d.,])\d{3,}(?:[ -]\d{2,}){1,5}(?![\d.,]\d)")
_RE_LONG = re.compile(
    r"(?<![\d.,])\d{5,}(?!\.\d|,\d{3}|\d|\s?(?:dollars?|euros?|pounds?|yuan|元|块|美元|欧元|英镑|港币)(?![A-Za-z]))",
    re.IGNORECASE,
)
_RE_NUMBER = re.compile(r"(?<![\d.,])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])")
_RE_ORDINAL = re.compile(r"(?<![\d.,])(?P<n>\d+)(?:st|nd|rd|th)\b", re.IGNORECASE)


def _sub(pattern: re.Pattern[str], fn: Callable[[re.Match[str]], str], text: str) -> str:
    return pattern.sub(fn, text)


def _normalize_en(text: str) -> str:
    def prefix_amount(m: re.Match[str]) -> str:
        sym = m["sym"].strip().lower()
        return _en_amount(sym, _int(m["int"]), _cents(m["frac"]))

    def suffix_code(m: re.Match[str]) -> str:
        return _en_amount(m["code"].lower(), _int(m["int"]), _cents(m["frac"]))

    def percent(m: re.Match[str]) -> str:
        return _decimal(m["num"], "en") + " percent"

    def time(m: re.Match[str]) -> str:
        h, mins = int(m["h"]), int(m["m"])
        ampm = (m["ampm"] or ("a" if h < 12 else "p")).lower()
        h12 = h % 12 or 12
        words = en_cardinal(h12)
        if mins:
            words += " " + (f"oh {en_cardinal(mins)}" if mins < 10 else en_cardinal(mins))
        return f"{words} {ampm} m"

    def ordinal(m: re.Match[str]) -> str:
        return en_ordinal(int(m["n"]))

    text = _sub(_RE_PREFIX_AMOUNT, prefix_amount, text)
    text = _sub(_RE_SUFFIX_CODE, suffix_code, text)
    text = _sub(_RE_PERCENT, percent, text)
    text = _sub(_RE_TIME, time, text)
    text = _sub(_RE_GROUPED, lambda m: _join_digit_groups([list(g) for g in re.split(r"[ -]", m[0])], "en"), text)
    text = _sub(_RE_LONG, lambda m: read_digits(m[0], "en"), text)
    text = _sub(_RE_ORDINAL, ordinal, text)
    text = _sub(_RE_NUMBER, lambda m: _decimal(m[0], "en"), text)
    text = re.sub(r"(?<![A-Za-z0-9#])#(?![A-Za-z0-9#])", "pound", text)
    text = re.sub(r"(?<![A-Za-z0-9*])\*(?![A-Za-z0-9*])", "star", text)
    return re.sub(r"[ \t]{2,}", " ", text)


def _normalize_zh(text: str) -> str:
    def prefix_amount(m: re.Match[str]) -> str:
        sym = m["sym"].strip().lower()
        whole = _int(m["int"])
        if sym in _YUAN:
            return _zh_yuan(whole, _cents(m["frac"]))
        return _zh_other(_ZH_CURRENCY[sym], whole, m["frac"])

    def suffix_code(m: re.Match[str]) -> str:
        code = m["code"].lower()
        if code in _YUAN:
            return _zh_yuan(_int(m["int"]), _cents(m["frac"]))
        return _zh_other(_ZH_CURRENCY[code], _int(m["int"]), m["frac"])

    def suffix_unit(m: re.Match[str]) -> str:
        unit = m["unit"]
        if unit in ("元", "块"):
            return _zh_yuan(_int(m["int"]), _cents(m["frac"]))
        return _zh_other(unit, _int(m["int"]), m["frac"])

    def percent(m: re.Match[str]) -> str:
        return "百分之" + _decimal(m["num"], "zh")

    def time(m: re.Match[str]) -> str:
        h, mins = int(m["h"]), int(m["m"])
        hour = "两" if h == 2 else zh_cardinal(h)
        prefix = ""
        if m["ampm"]:
            prefix = "上午" if m["ampm"].lower() == "a" else "下午"
        if not mins:
            return f"{prefix}{hour}点"
        return f"{prefix}{hour}点{'零' if mins < 10 else ''}{zh_cardinal(mins)}分"

    text = _sub(_RE_PREFIX_AMOUNT, prefix_amount, text)
    text = _sub(_RE_SUFFIX_CODE, suffix_code, text)
    text = _sub(_RE_ZH_SUFFIX, suffix_unit, text)
    text = _sub(_RE_PERCENT, percent, text)
    text = _sub(_RE_TIME, time, text)
    text = _sub(_RE_ZH_YEAR, lambda m: "".join(_ZH_DIGITS[int(d)] for d in m["y"]) + "年", text)
    text = _sub(_RE_GROUPED, lambda m: _join_digit_groups([list(g) for g in re.split(r"[ -]", m[0])], "zh"), text)
    text = _sub(_RE_LONG, lambda m: read_digits(m[0], "zh"), text)
    text = _sub(_RE_NUMBER, lambda m: _decimal(m[0], "zh"), text)
    text = text.replace("#号", "井号").replace("*号", "星号")
    text = re.sub(r"(?<![A-Za-z0-9#])#(?![A-Za-z0-9#])", "井号", text)
    text = re.sub(r"(?<![A-Za-z0-9*])\*(?![A-Za-z0-9*])", "星号", text)
    return text


def normalize(text: str, lang: str) -> str:
    """Writes numbers, amounts, times, percentages and digit strings as words for ``lang``
    ("en" or "zh"; "en-US", "zh-CN", "cmn" accepted). Unknown languages get English rules."""
    if not isinstance(text, str):
        raise ValueError(f"text must be str, got {type(text).__name__}")
    base = lang.lower().replace("_", "-").split("-")[0] if isinstance(lang, str) else "en"
    if base in ("zh", "cmn"):
        return _normalize_zh(text)
    return _normalize_en(text)
