"""Intent recognition: a small classifier trained at load time from the flow's examples.

The classifier sits behind `IntentClassifier` so a trained model can replace it later; the
`Nlu` wrapper owns what stays the same: truncation, the no-match threshold and the result type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from dialog.text_features import TfidfVectorizer, normalize

NO_MATCH = "no_match"


@dataclass(frozen=True)
class TrainingExample:
    text: str
    intent: str
    lang: str


@dataclass(frozen=True)
class IntentScore:
    intent: str
    score: float


@dataclass(frozen=True)
class Interpretation:
    """`intent` is None when nothing scored above the threshold; `ranking` is best first."""

    intent: str | None
    confidence: float
    ranking: list[IntentScore] = field(default_factory=list)

    @property
    def best_guess(self) -> str | None:
        return self.ranking[0].intent if self.ranking else None


class IntentClassifier(Protocol):
    """Anything that ranks intents for a text, with scores in [0, 1]."""

    def rank(self, text: str) -> list[IntentScore]: ...


class NearestExampleClassifier:
    """TF-IDF cosine similarity: a blend of the closest example and the intent's centroid.

    The nearest example rewards a close paraphrase; the centroid rewards words typical of the
    intent as a whole, which keeps one stray example from winning on a single shared word.
    """

    def __init__(self, examples: Sequence[TrainingExample], nearest_weight: float = 0.4) -> None:
        if not examples:
            raise ValueError("the classifier needs at least one example")
        self.intents = sorted({e.intent for e in examples})
        index = {name: i for i, name in enumerate(self.intents)}
        texts = [e.text for e in examples]
        self._vectorizer = TfidfVectorizer().fit(texts)
        self._examples = self._vectorizer.transform(texts)
        self._owner = np.array([index[e.intent] for e in examples], dtype=np.int64)
        centroids = np.zeros((len(self.intents), self._examples.shape[1]), dtype=np.float32)
        np.add.at(centroids, self._owner, self._examples)
        norms = np.linalg.norm(centroids, axis=1, keepdims=True)
        np.divide(centroids, norms, out=centroids, where=norms > 0)
        self._centroids = centroids
        self._nearest_weight = nearest_weight

    def rank(self, text: str) -> list[IntentScore]:
        query = self._vectorizer.transform([text])[0]
        if not query.any():
            return []
        nearest = np.zeros(len(self.intents), dtype=np.float32)
        np.maximum.at(nearest, self._owner, self._examples @ query)
        centroid = self._centroids @ query
        scores = self._nearest_weight * nearest + (1 - self._nearest_weight) * centroid
        order = np.argsort(-scores)
        return [IntentScore(self.intents[int(i)], float(scores[i])) for i in order if scores[i] > 0]


class Nlu:
    """Turns caller text into an `Interpretation`; below `threshold` it is a no-match."""

    def __init__(self, classifier: IntentClassifier, threshold: float, max_chars: int = 300) -> None:
        self.classifier = classifier
        self.threshold = threshold
        self.max_chars = max_chars

    def interpret(self, text: str) -> Interpretation:
        cleaned = normalize(text[: self.max_chars * 2])[: self.max_chars]
        if not cleaned:
            return Interpretation(None, 0.0, [])
        # Classifiers normalise for themselves; a sentence encoder reads the text as said ("didn't", "?").
        ranking = self.classifier.rank(" ".join(text[: self.max_chars].split()))[:5]
        if not ranking:
            return Interpretation(None, 0.0, [])
        best = ranking[0]
        if best.score < self.threshold:
            return Interpretation(None, best.score, ranking)
        return Interpretation(best.intent, best.score, ranking)
