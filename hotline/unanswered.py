"""Questions the knowledge base could not answer (`dialog.knowledge_dir`/unanswered.jsonl), grouped so an
editor sees what callers keep asking: one cluster per question asked in different words.

Per language: English questions are embedded with all-MiniLM-L6-v2 (dialog/minilm.py, packaged weights,
plain numpy), Chinese ones (MiniLM has no Chinese vocabulary) as TF-IDF over jieba words (a small banking
synonym map folds 小孩/孩子, 住址/地址, 利息/利率, ...; question words and particles dropped) plus the
character bigrams of those words (`zh_terms`). Then
average-linkage agglomerative clustering on cosine distance with a distance threshold (scikit-learn), so
the number of clusters comes from the data. Each cluster: the most central question as its label, the
count, up to `EXAMPLES` examples with their call ids, and when it was last asked. The newest `MAX_ITEMS`
questions are clustered (the clustering is quadratic).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

MAX_ITEMS = 1000
EXAMPLES = 5
# cosine distance under which two groups merge (average linkage); chosen on the questions in
# tests/console/test_unanswered.py, where it keeps paraphrases together and different topics apart.
DISTANCE = {"en": 0.65, "zh": 0.85}
# Chinese: words that mean the same to a bank's caller, folded to one (jieba words → the first form).
ZH_SYNONYMS = {
    "小孩": "孩子", "儿童": "孩子", "子女": "孩子", "儿子": "孩子", "女儿": "孩子", "小朋友": "孩子",
    "住址": "地址", "利息": "利率", "兑换": "换", "换汇": "换", "美元": "外币", "欧元": "外币", "港币": "外币",
    "日元": "外币", "修改": "改", "更改": "改", "更新": "改", "变更": "改",
}
# Chinese question words and particles: they say a question is asked, not what about.
ZH_STOP = frozenset({
    "的", "了", "吗", "呢", "吧", "啊", "呀", "我", "你", "您", "你们", "我们", "是", "在", "有", "要", "想", "能",
    "可以", "怎么", "怎么办", "怎么样", "怎样", "如何", "什么", "多少", "哪里", "哪儿", "哪", "办", "请问", "一下",
    "时候", "为什么", "么", "请", "帮", "给",
})


class Encoder(Protocol):
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> npt.NDArray[np.float32]: ...


@dataclass(frozen=True)
class Question:
    text: str
    lang: str
    call_id: str = ""
    time: str = ""


@dataclass(frozen=True)
class Cluster:
    lang: str
    label: str
    count: int
    examples: list[dict[str, str]]
    last_asked: str

    def to_dict(self) -> dict[str, Any]:
        return {"lang": self.lang, "label": self.label, "count": self.count, "examples": self.examples,
                "last_asked": self.last_asked}


_encoder: Encoder | None = None
_encoder_failed = False
_encoder_lock = threading.Lock()


def default_encoder() -> Encoder | None:
    """The packaged MiniLM encoder, loaded once; None (TF-IDF for English too) when it is not installed."""
    global _encoder, _encoder_failed
    with _encoder_lock:
        if _encoder is None and not _encoder_failed:
            try:
                from dialog.minilm import MiniLmEncoder

                _encoder = MiniLmEncoder()
            except Exception as exc:  # EmbeddingModelUnavailable, a broken wheel
                log.warning("unanswered questions: MiniLM not available (%s); grouping English by words", exc)
                _encoder_failed = True
        return _encoder


_CACHE_MAX = 5000
_embedded: dict[str, npt.NDArray[np.float32]] = {}  # text -> embedding: a new question costs one encode
_embedded_lock = threading.Lock()


def _embed(texts: list[str], encoder: Encoder) -> npt.NDArray[np.float64]:
    from threadpoolctl import threadpool_limits

    with _embedded_lock:
        todo = [t for t in dict.fromkeys(texts) if t not in _embedded]
    if todo:
        with threadpool_limits(1):  # BLAS threads fighting the calls' own CPU work cost 3-5x here
            vectors = encoder.encode(todo)
        with _embedded_lock:
            if len(_embedded) + len(todo) > _CACHE_MAX:
                _embedded.clear()
            _embedded.update(zip(todo, vectors, strict=True))
            found = {t: _embedded[t] for t in texts if t in _embedded}
        missing = [t for t in texts if t not in found]
        if missing:  # evicted by a concurrent clear: encode these again
            found.update(zip(missing, encoder.encode(missing), strict=True))
    else:
        with _embedded_lock:
            found = {t: _embedded[t] for t in texts}
    return np.asarray([found[t] for t in texts], dtype=np.float64)


def zh_terms(text: str) -> list[str]:
    """A Chinese question's terms for TF-IDF: jieba words with synonyms folded and question words dropped,
    then the character bigrams of what is left (they catch words jieba cut differently)."""
    import jieba

    jieba.setLogLevel(logging.WARNING)  # not "Building prefix dict ..." on every first use

    words = [ZH_SYNONYMS.get(w, w) for w in jieba.lcut(text.lower())]
    words = [w for w in words if w.strip() and w not in ZH_STOP and any(ch.isalnum() for ch in w)]
    joined = "".join(words)
    terms = words + [joined[i:i + 2] for i in range(len(joined) - 1)]
    return terms or [ch for ch in text if not ch.isspace()] or ["?"]  # only question words: its characters


def _vectors(texts: list[str], lang: str, encoder: Encoder | None) -> npt.NDArray[np.float64]:
    if lang == "en" and encoder is not None:
        v = _embed(texts, encoder)
    else:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(analyzer=zh_terms) if lang == "zh" else TfidfVectorizer(lowercase=True)
        matrix = vectorizer.fit_transform(texts)
        v = np.asarray(matrix.todense(), dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.asarray(v / np.where(norms == 0, 1.0, norms))


def _labels(v: npt.NDArray[np.float64], distance: float) -> npt.NDArray[np.int_]:
    if len(v) == 1:
        return np.zeros(1, dtype=np.int_)
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(n_clusters=None, distance_threshold=distance, metric="cosine",
                                    linkage="average")
    return np.asarray(model.fit_predict(v))


def cluster_questions(questions: Sequence[Question], encoder: Encoder | None = None,
                      distances: dict[str, float] | None = None) -> list[Cluster]:
    """Clusters, largest first (then the most recently asked)."""
    distances = {**DISTANCE, **(distances or {})}
    items = [q for q in questions if q.text.strip()][-MAX_ITEMS:]
    out: list[Cluster] = []
    for lang in sorted({q.lang for q in items}):
        group = [q for q in items if q.lang == lang]
        # the same words asked again are one point (weighted), not many
        unique: dict[str, list[Question]] = {}
        for q in group:
            unique.setdefault(" ".join(q.text.lower().split()), []).append(q)
        texts = list(unique)
        v = _vectors(texts, lang, encoder)
        labels = _labels(v, distances.get(lang, 0.6))
        for label in set(labels.tolist()):
            idx = [i for i, x in enumerate(labels.tolist()) if x == label]
            weights = np.array([len(unique[texts[i]]) for i in idx], dtype=np.float64)
            centre = (v[idx] * weights[:, None]).sum(axis=0)
            central = idx[int(np.argmax(v[idx] @ centre))]
            asked = sorted((q for i in idx for q in unique[texts[i]]), key=lambda q: q.time, reverse=True)
            examples, seen = [], set()
            for q in asked:
                key = q.text.lower()
                if key in seen:
                    continue
                seen.add(key)
                examples.append({"text": q.text, "call_id": q.call_id, "time": q.time})
                if len(examples) >= EXAMPLES:
                    break
            out.append(Cluster(lang, unique[texts[central]][0].text, len(asked), examples, asked[0].time))
    return sorted(out, key=lambda c: (c.count, c.last_asked), reverse=True)
