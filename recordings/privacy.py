"""Secrets kept out of transcripts: card numbers masked before a line is stored."""

from __future__ import annotations

import re

# Runs of 13 or more digits (cards have 13 to 19; a longer run may be a card and more, so it is masked
# too), maybe grouped by spaces, dots or dashes ("4111 1111 1111 1111", "4111-1111-...").
_DIGIT_RUN = re.compile(r"(?<!\d)\d(?:[ \-.]?\d){12,}(?!\d)")

# Chinese digit words as callers say them (and recognizers write them): 四一一一 幺 两 ...
_ZH_DIGITS = {
    "零": "0", "〇": "0", "○": "0", "洞": "0", "一": "1", "幺": "1", "壹": "1", "二": "2", "两": "2", "贰": "2",
    "三": "3", "叁": "3", "四": "4", "肆": "4", "五": "5", "伍": "5", "六": "6", "陆": "6", "七": "7", "柒": "7",
    "八": "8", "捌": "8", "九": "9", "玖": "9",
}
_ZH_CLASS = "".join(_ZH_DIGITS)
_ZH_RUN = re.compile(rf"(?<![{_ZH_CLASS}\d])[{_ZH_CLASS}\d](?:[ ，,、\-]?[{_ZH_CLASS}\d]){{12,}}(?![{_ZH_CLASS}\d])")


def _is_digit(ch: str) -> bool:
    return ch.isdecimal() or ch in _ZH_DIGITS


def _mask(run: str) -> str:
    """Keep the run's shape and its last four digits; every other digit becomes '*'."""
    positions = [i for i, ch in enumerate(run) if _is_digit(ch)]
    keep = set(positions[-4:])
    return "".join("*" if (i in positions and i not in keep) else ch for i, ch in enumerate(run))


def mask_secrets(text: str) -> str:
    """Masks card-number-like digit runs (13 or more digits, spaced or dashed, Arabic or Chinese digit words),
    keeping the last four: "4111 1111 1111 1234" -> "**** **** **** 1234"."""
    if not text:
        return text
    text = _DIGIT_RUN.sub(lambda m: _mask(m.group(0)), text)
    return _ZH_RUN.sub(lambda m: _mask(m.group(0)), text)


def mask_dtmf(digits: str, secret: bool) -> str:
    """What the record keeps of keys pressed: '*' per key during secret entry, else the keys."""
    return "*" * len(digits) if secret else digits
