"""Search terms for transcripts in English and Chinese, the same on SQLite (FTS5) and PostgreSQL (tsvector).

Chinese has no spaces between words, so each run of Han characters is indexed as overlapping character
bigrams ("信用卡" -> 信用, 用卡); a query's run matches as a phrase of its bigrams, which finds the word
wherever it occurs without a segmenter's dictionary. Other words are lower-cased (NFKC first, so full-width
letters and digits match their ASCII forms). Han bigrams are written as ASCII tokens ("h4fe17528") so that
neither database's tokenizer, nor its locale, can split or drop them. Each stretch's last character is
also indexed alone, so a one-character query (matched as a prefix) finds every occurrence.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUN = re.compile(rf"([{_HAN}]+)|([^\W_{_HAN}]+)")


def _han_token(chars: str) -> str:
    return "h" + "".join(f"{ord(c):04x}" for c in chars)


def _runs(text: str, *, indexing: bool = False) -> list[list[str]]:
    """Token runs: one run per Han stretch (its bigrams, or the lone character) and one per other word.

    Indexed text also gets each Han stretch's last character alone, so that a one-character query
    (a prefix of the tokens) finds it at the end of a stretch too."""
    out: list[list[str]] = []
    for m in _RUN.finditer(unicodedata.normalize("NFKC", text).lower()):
        han, word = m.group(1), m.group(2)
        if han:
            if len(han) == 1:
                out.append([_han_token(han)])
            else:
                run = [_han_token(han[i : i + 2]) for i in range(len(han) - 1)]
                out.append([*run, _han_token(han[-1])] if indexing else run)
        elif word:
            out.append([word[:64]])
    return out


def index_terms(text: str) -> str:
    """The space-separated terms stored in the full-text index for one transcript line."""
    return " ".join(t for run in _runs(text, indexing=True) for t in run)


def _lone_han(run: tuple[str, ...]) -> bool:
    """A run of one Han character (matched as a prefix of the bigrams)."""
    return len(run) == 1 and len(run[0]) == 5 and run[0].startswith("h") and not run[0].isalpha()


@dataclass(frozen=True)
class Query:
    """A parsed search: every run must occur in the same line; a Han run's bigrams as a phrase."""

    runs: tuple[tuple[str, ...], ...]

    def __bool__(self) -> bool:
        return bool(self.runs)

    def matches(self, text: str) -> bool:
        """Whether one line matches, as the database indexes judge it (used to pick snippets)."""
        terms = index_terms(text).split()
        for run in self.runs:
            if _lone_han(run):
                if not any(t.startswith(run[0]) for t in terms):
                    return False
            elif not any(tuple(terms[i : i + len(run)]) == run for i in range(len(terms) - len(run) + 1)):
                return False
        return True

    def fts5(self) -> str:
        """SQLite FTS5 MATCH expression. A lone Han character matches bigrams starting with it."""
        parts = []
        for run in self.runs:
            if _lone_han(run):
                parts.append(f'"{run[0]}"*')
            else:
                parts.append('"' + " ".join(run) + '"')
        return " AND ".join(parts)

    def tsquery(self) -> str:
        """PostgreSQL to_tsquery('simple', ...) expression."""
        parts = []
        for run in self.runs:
            if _lone_han(run):
                parts.append(f"{run[0]}:*")
            else:
                parts.append("(" + " <-> ".join(run) + ")")
        return " & ".join(parts)


def parse_query(text: str) -> Query:
    return Query(tuple(tuple(r) for r in _runs(text)))


def snippet(text: str, query_text: str, width: int = 40) -> str:
    """The part of a line around the first query word found, the words in [brackets]."""
    words = [w for w in re.split(r"\s+", unicodedata.normalize("NFKC", query_text).strip()) if w]
    norm = unicodedata.normalize("NFKC", text)
    low = norm.lower()
    best = None
    for w in words:
        i = low.find(w.lower())
        if i >= 0 and (best is None or i < best[0]):
            best = (i, len(w))
    if best is None:
        return norm[: 2 * width] + ("…" if len(norm) > 2 * width else "")
    i, n = best
    start, end = max(0, i - width), min(len(norm), i + n + width)
    out = norm[start:i] + "[" + norm[i : i + n] + "]" + norm[i + n : end]
    return ("…" if start > 0 else "") + out + ("…" if end < len(norm) else "")
