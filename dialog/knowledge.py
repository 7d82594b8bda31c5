"""The FAQ knowledge base: entries from configs/knowledge/*.yaml and search over them.

An entry holds question variants and an answer per language, a category, an optional period in
which it is in force (`effective_from` / `effective_until`, both inclusive) and a version number
that the knowledge-base store (`dialog.knowledge_store`) raises on every change.

Search is per language: English questions are matched on word stems, word pairs and character
3-5-grams inside words, Chinese ones on single characters and character pairs (no segmenter), all
weighted by TF-IDF over that language's texts (`dialog.text_features`). An entry's score is its
best matching question or keyword (answers count at 0.8: they are longer and less specific),
blended half and half with the similarity to the average of its questions; entries out of force on the day are
never returned.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, NamedTuple

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from dialog.config_file import ConfigProblem, FlowConfigError, YamlDocument, read_yaml
from dialog.text_features import FloatMatrix, TfidfVectorizer, normalize, tidy_spoken

log = logging.getLogger(__name__)

ID_PATTERN = r"^[a-z][a-z0-9_]*$"
ANSWER_WEIGHT = 0.8  # a match on the answer text counts less than one on a question
CENTROID_SHARE = 0.5  # score = 0.5 x best variant + 0.5 x similarity to the mean of the questions


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class KnowledgeEntry(_Strict):
    """One answerable question: its phrasings and its answer in each language."""

    id: str = Field(pattern=ID_PATTERN, max_length=64)
    category: str = Field(min_length=1, max_length=64)
    questions: dict[str, list[str]]
    answer: dict[str, Annotated[str, AfterValidator(tidy_spoken)]]
    # Optional: extra words that describe the entry for search only (not spoken).
    keywords: dict[str, list[str]] = Field(default_factory=dict)
    # Optional: the entry is answered only from / until these days (inclusive).
    effective_from: datetime.date | None = None
    effective_until: datetime.date | None = None
    version: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _period_in_order(self) -> KnowledgeEntry:
        if self.effective_from and self.effective_until and self.effective_until < self.effective_from:
            raise ValueError(f"effective_until {self.effective_until} is before effective_from {self.effective_from}")
        return self

    def in_force(self, day: datetime.date) -> bool:
        """Whether the entry may be answered on `day`."""
        if self.effective_from and day < self.effective_from:
            return False
        return not (self.effective_until and day > self.effective_until)

    def content(self) -> dict[str, object]:
        """Everything but the version, to tell whether an edit changed anything."""
        return self.model_dump(exclude={"version"}, mode="json")


class KnowledgeFile(_Strict):
    version: int = Field(ge=1, le=1)
    entries: list[KnowledgeEntry] = Field(min_length=1)


class KnowledgeHit(NamedTuple):
    """A search result; unpacks as `(entry, score)`."""

    entry: KnowledgeEntry
    score: float


def load_knowledge(path: Path | str, languages: Sequence[str]) -> list[KnowledgeEntry]:
    """Read and check one knowledge file; every entry must cover every offered language."""
    doc = read_yaml(path)
    parsed = doc.validate(KnowledgeFile)
    problems: list[ConfigProblem] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(parsed.entries):
        loc: tuple[str | int, ...] = ("entries", i)
        if entry.id in seen:
            problems.append(doc.problem((*loc, "id"), f"id {entry.id!r} is already used by entries[{seen[entry.id]}]"))
        seen.setdefault(entry.id, i)
        for field_name in ("questions", "answer", "keywords"):
            for lang in getattr(entry, field_name):
                if lang not in languages:
                    offered = ", ".join(languages)
                    problems.append(
                        doc.problem((*loc, field_name, lang), f"language {lang!r} is not offered ({offered})")
                    )
        for lang in languages:
            questions = [q for q in entry.questions.get(lang, []) if q.strip()]
            if not questions:
                problems.append(doc.problem((*loc, "questions", lang), f"needs at least one question in {lang!r}"))
            if not entry.answer.get(lang, "").strip():
                problems.append(doc.problem((*loc, "answer", lang), f"needs an answer in {lang!r}"))
    problems += _duplicate_questions(doc, parsed.entries)
    if problems:
        raise FlowConfigError(doc.path, problems)
    return list(parsed.entries)


def _duplicate_questions(doc: YamlDocument, entries: Sequence[KnowledgeEntry]) -> list[ConfigProblem]:
    owner: dict[str, str] = {}
    problems = []
    for i, entry in enumerate(entries):
        for lang, texts in entry.questions.items():
            for j, text in enumerate(texts):
                first = owner.setdefault(normalize(text), entry.id)
                if first != entry.id:
                    problems.append(
                        doc.problem(("entries", i, "questions", lang, j), f"question {text!r} is also under {first!r}")
                    )
    return problems


class _Index:
    """TF-IDF rows of one language's texts, each owned by an entry (index into the entry list)."""

    def __init__(self, entries: Sequence[KnowledgeEntry], lang: str | None) -> None:
        texts: list[str] = []
        owners: list[int] = []
        weights: list[float] = []
        question_rows: list[tuple[int, str]] = []
        for i, entry in enumerate(entries):
            langs = [lang] if lang else sorted({*entry.questions, *entry.answer})
            for code in langs:
                for text in entry.questions.get(code, []):
                    texts.append(text)
                    owners.append(i)
                    weights.append(1.0)
                    question_rows.append((i, text))
                for text in entry.keywords.get(code, []):
                    texts.append(text)
                    owners.append(i)
                    weights.append(1.0)
                if entry.answer.get(code):
                    texts.append(entry.answer[code])
                    owners.append(i)
                    weights.append(ANSWER_WEIGHT)
        self.vectorizer = TfidfVectorizer().fit(texts) if texts else TfidfVectorizer()
        self.matrix: FloatMatrix = self.vectorizer.transform(texts)
        self.owners = np.array(owners, dtype=np.int64)
        self.weights = np.array(weights, dtype=np.float32)
        # the mean of each entry's question vectors (unit length), for the centroid part of the score
        self.centroids = np.zeros((len(entries), self.matrix.shape[1]), dtype=np.float32)
        q_owner = np.array([i for i, _ in question_rows], dtype=np.int64)
        if len(q_owner):
            q_matrix = self.vectorizer.transform([t for _, t in question_rows])
            np.add.at(self.centroids, q_owner, q_matrix)
            norms = np.linalg.norm(self.centroids, axis=1, keepdims=True)
            np.divide(self.centroids, norms, out=self.centroids, where=norms > 0)

    def scores(self, text: str, n_entries: int) -> FloatMatrix:
        query = self.vectorizer.transform([text])[0]
        sims = (self.matrix @ query) * self.weights
        best = np.zeros(n_entries, dtype=np.float32)
        np.maximum.at(best, self.owners, sims)
        centroid = self.centroids @ query
        result: FloatMatrix = (1 - CENTROID_SHARE) * best + CENTROID_SHARE * centroid
        return result


class KnowledgeBase:
    """Entries plus per-language TF-IDF indexes over their questions, keywords and answers."""

    def __init__(self, entries: Sequence[KnowledgeEntry]) -> None:
        self.entries: list[KnowledgeEntry] = list(entries)
        self._by_id = {e.id: e for e in self.entries}
        self.languages: list[str] = sorted({lang for e in self.entries for lang in (*e.questions, *e.answer)})
        self._indexes: dict[str | None, _Index] = {lang: _Index(self.entries, lang) for lang in self.languages}
        self._indexes[None] = _Index(self.entries, None)  # every language at once

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, entry_id: str) -> KnowledgeEntry | None:
        return self._by_id.get(entry_id)

    def answer(self, entry_id: str, lang: str) -> str:
        entry = self._by_id[entry_id]
        return entry.answer.get(lang) or next(iter(entry.answer.values()))

    def in_force(self, entry_id: str, day: datetime.date | None = None) -> bool:
        """Whether the entry exists and may be answered on `day` (default today)."""
        entry = self._by_id.get(entry_id)
        return entry is not None and entry.in_force(day or datetime.date.today())

    def search(
        self, text: str, lang: str | None = None, k: int = 3, today: datetime.date | None = None
    ) -> list[KnowledgeHit]:
        """Best `k` entries in force on `today` for `text` in language `lang` (None: every
        language), best first, with scores in 0..1. Unknown languages search every language."""
        if not self.entries or not text or not text.strip() or k <= 0:
            return []
        day = today or datetime.date.today()
        index = self._indexes.get(lang) or self._indexes[None]
        scores = index.scores(text, len(self.entries))
        for i, entry in enumerate(self.entries):
            if not entry.in_force(day):
                scores[i] = -1.0
        order = np.argsort(-scores, kind="stable")[:k]
        return [KnowledgeHit(self.entries[int(i)], float(min(scores[i], 1.0))) for i in order if scores[i] > 0]
