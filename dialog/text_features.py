"""Text normalisation and TF-IDF features that work for English and Chinese alike.

English gets word unigrams, bigrams and character n-grams inside words (these absorb ASR
spelling noise and inflections: "open" / "opening"); Chinese gets character 1-3 grams, so no
word segmenter is needed.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

FloatMatrix = npt.NDArray[np.float32]

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[a-z0-9]+|[{_CJK}]+")
_CJK_RUN = re.compile(rf"[{_CJK}]+")
_LATIN = re.compile(r"[a-z]")

# Words so common in requests that they only add noise between intents.
_EN_STOPWORDS = frozenset(
    "a an the i me my we our you your to of in on for at is are am be it this that do does did "
    "can could would will please um uh er like just want wanna need id im "
    "and or so some any there".split()
)
# Single Chinese characters that carry no intent on their own (particles, pronouns, politeness).
_ZH_STOPCHARS = frozenset("的了吗呢吧啊呀我你您们请想要是在一下个么好")


def normalize(text: str) -> str:
    """Lowercase, unify width, drop punctuation and symbols, collapse spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace("'", "").replace("\u2019", "")
    chars = [" " if unicodedata.category(ch)[0] in "PSZC" else ch for ch in text]
    return " ".join("".join(chars).split())


_WIDE = rf"{_CJK}\u3000-\u303f\uff00-\uffef"  # Chinese characters and full-width punctuation
_SPACE_NEXT_TO_CJK = re.compile(rf"(?<=[{_WIDE}])\s+|\s+(?=[{_WIDE}])")


def tidy_spoken(text: str) -> str:
    """Collapse whitespace, and drop it next to Chinese text (YAML line folding adds spaces there)."""
    return _SPACE_NEXT_TO_CJK.sub("", " ".join(text.split()))


def cjk_count(text: str) -> int:
    return sum(len(run) for run in _CJK_RUN.findall(text))


def cjk_ratio(text: str) -> float:
    """Share of Chinese characters among the letters of `text` (0 for English, 1 for Chinese)."""
    cjk = cjk_count(text)
    latin = len(_LATIN.findall(text.lower()))
    return cjk / (cjk + latin) if cjk + latin else 0.0


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def features(text: str) -> Counter[str]:
    """Sparse feature counts of already normalised or raw text."""
    counts: Counter[str] = Counter()
    words: list[str] = []
    for token in _TOKEN.findall(normalize(text)):
        if _CJK_RUN.fullmatch(token):
            _add_cjk(token, counts)
            words.append("<zh>")
            continue
        if token in _EN_STOPWORDS:
            words.append("<stop>")
            continue
        stem = _stem(token)
        words.append(stem)
        counts["w:" + stem] += 1
        padded = f" {token} "
        for n in (3, 4, 5):
            for i in range(len(padded) - n + 1):
                counts["c:" + padded[i : i + n]] += 1
    for left, right in itertools.pairwise(words):
        if left[0] != "<" and right[0] != "<":
            counts[f"b:{left}_{right}"] += 1
    return counts


def _add_cjk(run: str, counts: Counter[str]) -> None:
    for ch in run:
        if ch not in _ZH_STOPCHARS:
            counts["z1:" + ch] += 1
    # Bigrams carry most of the meaning ("开门", "挂失"); trigrams proved too sparse to help.
    # Two particles together say nothing ("我的"), unless they are all there is ("你好").
    for i in range(len(run) - 1):
        pair = run[i : i + 2]
        if len(run) == 2 or pair[0] not in _ZH_STOPCHARS or pair[1] not in _ZH_STOPCHARS:
            counts["z2:" + pair] += 1


class TfidfVectorizer:
    """Sublinear TF-IDF with L2-normalised rows; vocabulary fixed at `fit` time."""

    def __init__(self) -> None:
        self.vocabulary: dict[str, int] = {}
        self.idf: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)

    def fit(self, texts: Sequence[str]) -> TfidfVectorizer:
        docs = [features(t) for t in texts]
        df: Counter[str] = Counter()
        for doc in docs:
            df.update(doc.keys())
        self.vocabulary = {name: i for i, name in enumerate(sorted(df))}
        n = len(docs)
        idf = np.zeros(len(self.vocabulary), dtype=np.float32)
        for name, i in self.vocabulary.items():
            idf[i] = math.log((1 + n) / (1 + df[name])) + 1.0
        self.idf = idf
        return self

    def transform(self, texts: Iterable[str]) -> FloatMatrix:
        rows = [features(t) for t in texts]
        matrix = np.zeros((len(rows), len(self.vocabulary)), dtype=np.float32)
        for r, counts in enumerate(rows):
            for name, count in counts.items():
                col = self.vocabulary.get(name)
                if col is not None:
                    matrix[r, col] = (1.0 + math.log(count)) * self.idf[col]
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        np.divide(matrix, norms, out=matrix, where=norms > 0)
        return matrix
