"""Caller mood on labelled lines (issue 6): tests/dialog/data/sentiment_heldout.tsv (88 lines, written before
this round of tuning and never tuned on) and sentiment_dev.tsv (60 lines, tuned on), four classes per language,
angry precision and recall; the innocent banking lines; the acoustic rule `with_voice`; the cost per line.
The same figures, and the lines it gets wrong:

    .venv/bin/python tests/dialog/test_sentiment_eval.py [heldout|dev]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dialog.sentiment import ANGRY_AT, NEGATIVE_AT, LineSentiment, Voice, score_line, with_voice

DATA = Path(__file__).parent / "data"
CLASSES = ("angry", "negative", "neutral", "positive")


def load(name: str) -> list[tuple[str, str, str]]:
    """(lang, label, text) rows of data/sentiment_{name}.tsv."""
    rows = []
    for n, line in enumerate((DATA / f"sentiment_{name}.tsv").read_text("utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        lang, label, text = line.split("\t")
        if lang not in ("en", "zh") or label not in CLASSES:
            raise ValueError(f"sentiment_{name}.tsv line {n}: bad language or label: {line!r}")
        rows.append((lang, label, text))
    return rows


@dataclass
class Result:
    right: Counter[tuple[str, str]] = field(default_factory=Counter)
    total: Counter[tuple[str, str]] = field(default_factory=Counter)
    tp: int = 0
    fp: int = 0
    fn: int = 0
    wrong: list[tuple[str, str, str]] = field(default_factory=list)

    def accuracy(self, lang: str) -> float:
        r = sum(v for (lg, _), v in self.right.items() if lg == lang)
        return r / max(1, sum(v for (lg, _), v in self.total.items() if lg == lang))

    @property
    def precision(self) -> float:
        return self.tp / max(1, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return self.tp / max(1, self.tp + self.fn)

    def summary(self) -> str:
        out = []
        for lang in ("en", "zh"):
            per = ", ".join(f"{c} {self.right[lang, c]}/{self.total[lang, c]}" for c in CLASSES)
            n = sum(v for (lg, _), v in self.total.items() if lg == lang)
            out.append(f"{lang}: {round(self.accuracy(lang) * n)}/{n} ({per})")
        out.append(f"angry precision {self.tp}/{self.tp + self.fp}, recall {self.tp}/{self.tp + self.fn}")
        return "\n".join(out)


def evaluate(rows: list[tuple[str, str, str]]) -> Result:
    res = Result()
    for lang, gold, text in rows:
        got = score_line(text, lang).label
        res.total[lang, gold] += 1
        if got == gold:
            res.right[lang, gold] += 1
        else:
            res.wrong.append((text, gold, got))
        res.tp += got == "angry" and gold == "angry"
        res.fp += got == "angry" and gold != "angry"
        res.fn += got != "angry" and gold == "angry"
    return res


# Measured before this session's changes (the lexicon of docs/CONSOLE.md): en 22/44 (angry 3/16, negative 3/10,
# neutral 10/12, positive 6/6), zh 18/44 (angry 0/16, negative 5/10, neutral 8/12, positive 5/6), angry precision
# 3/3, recall 3/32. The floors below sit a little under what the scorer does now (printed by the test).
def test_held_out_lines_per_language_class_and_angry_precision_recall() -> None:
    result = evaluate(load("heldout"))
    print("held out (never tuned on):\n" + result.summary(), "\nwrong:", result.wrong)
    assert result.accuracy("en") >= 0.8 and result.accuracy("zh") >= 0.85, result.wrong
    assert result.precision >= 0.9 and result.recall >= 0.85, result.wrong


def test_development_lines() -> None:
    result = evaluate(load("dev"))
    print("development (tuned on):\n" + result.summary())
    assert result.accuracy("en") >= 0.9 and result.accuracy("zh") >= 0.9, result.wrong


@pytest.mark.parametrize("text", [
    "My card was stolen, I need to block it.", "I'd like to dispute a charge on my credit card.",
    "I want to report a fraudulent transaction.", "Can I close my savings account and move the money to current?",
    "I'd like to speak to someone about a mortgage.", "I want to close my old account.",
    "Someone stole my purse, I need to cancel my card.", "我的卡被偷了，帮我冻结一下", "我想注销这个储蓄账户",
    "我想销户", "有一笔交易不是我本人操作的", "我有点不放心，这笔钱是不是被转走了", "我想咨询一下房贷",
])
def test_innocent_banking_lines_are_never_angry(text: str) -> None:
    assert score_line(text).label != "angry", score_line(text)


def test_hostility_without_cue_words_and_sarcasm() -> None:
    for text in ("this is the third time I'm calling and nobody has fixed it", "I want to speak to your manager",
                 "我已经打了三次了还是没人管", "你们到底能不能办", "great, just great", "Thanks for nothing."):
        assert score_line(text).label == "angry", (text, score_line(text))
    assert score_line("Great, thanks for sorting that.").label == "positive"  # praise with thanks is sincere
    assert score_line("我说了好几遍了").cues == ("repeat:n times",)  # 好几 is a count, not "good"


def test_the_voice_rule() -> None:
    unhappy = score_line("I am a bit disappointed with this")
    assert NEGATIVE_AT > unhappy.score > ANGRY_AT
    assert with_voice(unhappy, Voice(loud_db=9.0)).label == "angry"
    assert with_voice(unhappy, Voice(loud_db=3.0)) == unhappy  # not louder than usual: the words decide
    assert with_voice(unhappy, Voice(loud_db=-9.0, rate_ratio=0.7)) == unhappy  # quieter, slower: no change
    assert with_voice(unhappy, Voice(rate_ratio=1.4)).score == pytest.approx(unhappy.score * 1.3, abs=1e-3)
    assert with_voice(unhappy, None) == unhappy and with_voice(unhappy, Voice()) == unhappy
    mild = score_line("I was charged twice for the same payment")  # an unhappy cue, neutral overall
    assert mild.label == "neutral"
    assert with_voice(mild, Voice(loud_db=9.0)) == mild  # louder alone: a bad line, not a mood
    assert with_voice(mild, Voice(loud_db=9.0, rate_ratio=1.4)).label == "negative"
    thanks, plain = score_line("thank you so much"), score_line("I want to check my balance")
    assert with_voice(thanks, Voice(9.0, 1.5, 1.5)) == thanks and with_voice(plain, Voice(9.0, 1.5, 1.5)) == plain
    assert with_voice(LineSentiment(-0.5, ("不满意",)), Voice(loud_db=7.0)).label == "angry"


def test_cost_per_line() -> None:
    rows = load("heldout") + load("dev")
    times = []
    for lang, _, text in rows * 5:
        t = time.perf_counter()
        score_line(text, lang)
        times.append(time.perf_counter() - t)
    p50 = statistics.median(times) * 1e6
    print(f"score_line: p50 {p50:.0f} µs over {len(times)} lines")
    assert p50 < 2000


if __name__ == "__main__":
    result = evaluate(load(sys.argv[1] if len(sys.argv) > 1 else "heldout"))
    print(result.summary())
    for text, gold, got in result.wrong:
        print(f"  {gold:8} got {got:8} {text}")
