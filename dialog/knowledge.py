"""The FAQ knowledge base: entries from configs/knowledge/*.yaml and search over them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from dialog.config_file import ConfigProblem, FlowConfigError, YamlDocument, read_yaml
from dialog.text_features import TfidfVectorizer, normalize, tidy_spoken

log = logging.getLogger(__name__)

ID_PATTERN = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class KnowledgeEntry(_Strict):
    """One answerable question: its phrasings and its answer in each language."""

    id: str = Field(pattern=ID_PATTERN, max_length=64)
    category: str = Field(min_length=1)
    questions: dict[str, list[str]]
    answer: dict[str, Annotated[str, AfterValidator(tidy_spoken)]]
    # Optional: extra words that describe the entry for search only (not spoken).
    keywords: dict[str, list[str]] = Field(default_factory=dict)


class KnowledgeFile(_Strict):
    version: int = Field(ge=1, le=1)
    entries: list[KnowledgeEntry] = Field(min_length=1)


@dataclass(frozen=True)
class KnowledgeHit:
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


class KnowledgeBase:
    """Entries plus a TF-IDF index over their questions, keywords and answers (both languages)."""

    def __init__(self, entries: Sequence[KnowledgeEntry]) -> None:
        self.entries: list[KnowledgeEntry] = list(entries)
        self._by_id = {e.id: e for e in self.entries}
        texts: list[str] = []
        owners: list[int] = []
        for i, entry in enumerate(self.entries):
            for variants in (*entry.questions.values(), *entry.keywords.values()):
                texts.extend(variants)
                owners.extend([i] * len(variants))
            texts.extend(entry.answer.values())
            owners.extend([i] * len(entry.answer))
        self._vectorizer = TfidfVectorizer().fit(texts) if texts else TfidfVectorizer()
        self._matrix = self._vectorizer.transform(texts)
        self._owners = np.array(owners, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, entry_id: str) -> KnowledgeEntry | None:
        return self._by_id.get(entry_id)

    def answer(self, entry_id: str, lang: str) -> str:
        entry = self._by_id[entry_id]
        return entry.answer.get(lang) or next(iter(entry.answer.values()))

    def search(self, text: str, k: int = 3) -> list[KnowledgeHit]:
        """Best `k` entries for `text` by cosine similarity, best first."""
        if not self.entries or not text.strip():
            return []
        query = self._vectorizer.transform([text])[0]
        sims = self._matrix @ query
        best = np.full(len(self.entries), -1.0, dtype=np.float32)
        np.maximum.at(best, self._owners, sims)
        order = np.argsort(-best)[:k]
        return [KnowledgeHit(self.entries[int(i)], float(best[i])) for i in order if best[i] > 0]
