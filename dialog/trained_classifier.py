"""An intent classifier a bank trains on its own labelled utterances (`hotline nlu train`).

Features: TF-IDF of word 1-2-grams and of character 2-5-grams (inside word boundaries; Chinese needs
no segmenter since its characters form the n-grams), optionally joined by all-MiniLM-L6-v2 sentence
embeddings (English; `dialog.minilm`, run with onnxruntime). A linear SVM scores the intents; a
softmax with a temperature fitted on a validation split turns the scores into confidences in [0, 1],
so `nlu.threshold` keeps its meaning.

A model is a directory of plain files, loaded without pickle and without network:

| file | holds |
|---|---|
| `manifest.json` | format version, labels, feature settings, temperature, training metrics |
| `vocabulary.json` | the word and character n-gram vocabularies, in column order |
| `weights.npz` | IDF weights of both vocabularies, the SVM's coefficients (float32) and intercepts |
| `encoder.onnx`, `tokenizer.json` | the sentence encoder (int8), only when embeddings are used |
| `encoder.safetensors` | the fine-tuned encoder's weights (float32), only with `finetune_epochs` |

With `TrainOptions(finetune_epochs=N)` (`hotline nlu train --finetune-encoder`) the encoder is first
fine-tuned on the training examples (`dialog.finetune`, needs PyTorch at training time only); the
ONNX graph is then built from the fine-tuned weights, so predicting needs no torch.
"""

from __future__ import annotations

import json
import logging
import platform
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from dialog.nlu import IntentScore
from dialog.text_features import cjk_ratio, normalize

log = logging.getLogger(__name__)

FORMAT = "hotline-intent-model"
FORMAT_VERSION = 1
EmbeddingChoice = Literal["auto", "on", "off"]
EmbeddingInput = Literal["raw", "normalized"]


def encoder_text(text: str) -> str:
    """What the sentence encoder reads with `embedding_input="raw"`: the text with Unicode width
    folding and spaces collapsed, keeping apostrophes and punctuation ("didn't", "?") that the n-gram
    normalisation removes. On BANKING77 it gained 0.25 points in 3 folds of cross-validation on the
    training part but lost 3 of 1,202 on a separate validation split, so it is not the default."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


class ModelError(RuntimeError):
    """A model directory that is missing, incomplete or of an unknown format."""


@dataclass(frozen=True)
class TrainOptions:
    embeddings: EmbeddingChoice = "auto"  # auto: used when the packaged encoder and `onnx` are installed
    embedding_weight: float = 1.5  # scale of the (unit length) embedding next to the TF-IDF blocks
    # With embeddings, the SVM's confidences are blended with a vote of the nearest training examples
    # (cosine of the embeddings): share, neighbours, sharpness. Chosen on a validation split.
    knn_share: float = 0.4
    knn_k: int = 5
    knn_sharpness: float = 20.0
    embedding_input: EmbeddingInput = "normalized"  # "raw": the encoder reads `encoder_text(text)`
    c: float = 1.0  # SVM regularisation (chosen on a validation split of BANKING77)
    calibration_share: float = 0.1  # share of the data held out to fit the confidence temperature
    seed: int = 0
    threads: int = 2  # onnxruntime threads while encoding the training set (and torch threads fine-tuning)
    # Fine-tune the sentence encoder on the training examples first (`dialog.finetune`, needs PyTorch):
    # 0 keeps the packaged encoder frozen. The fine-tuned weights are stored with the model.
    finetune_epochs: int = 0
    encoder_dir: str | None = None  # reuse the encoder of this directory (e.g. a model fine-tuned before)
    encoder_precision: Literal["int8", "fp32"] = "int8"  # weights of the ONNX graph used at predict time


def _word_vectorizer() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b", lowercase=False, dtype=np.float32
    )


def _char_vectorizer() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, lowercase=False, dtype=np.float32)


def embeddings_available() -> str | None:
    """None when the sentence encoder can be built here, else why not."""
    import importlib.util

    for module, package in (("onnx", "onnx"), ("onnxruntime", "onnxruntime"), ("tokenizers", "tokenizers")):
        if importlib.util.find_spec(module) is None:
            return f"package {package!r} is not installed"
    from dialog.minilm import EmbeddingModelUnavailable, find_model_dir

    try:
        find_model_dir()
    except EmbeddingModelUnavailable as exc:
        return str(exc)
    return None


def _softmax(scores: npt.NDArray[np.float32], temperature: float) -> npt.NDArray[np.float32]:
    z = scores * np.float32(temperature)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _fit_temperature(scores: npt.NDArray[np.float32], truth: npt.NDArray[np.int64]) -> float:
    """The softmax temperature that minimises the log-loss of held-out scores (grid search)."""
    best, best_loss = 5.0, float("inf")
    for temperature in np.geomspace(0.5, 50, 60):
        p = _softmax(scores.copy(), float(temperature))[np.arange(len(truth)), truth]
        loss = float(-np.log(np.maximum(p, 1e-9)).mean())
        if loss < best_loss:
            best, best_loss = float(temperature), loss
    return best


class TrainedClassifier:
    """Implements `dialog.nlu.IntentClassifier`: `rank(text)` gives intents best first, scores 0..1."""

    def __init__(
        self,
        labels: list[str],
        word_vectorizer: Any,
        char_vectorizer: Any,
        coef: npt.NDArray[np.float32],
        intercept: npt.NDArray[np.float32],
        temperature: float,
        encoder: Any | None = None,
        embedding_weight: float = 0.0,
        manifest: dict[str, Any] | None = None,
        neighbours: tuple[npt.NDArray[np.float16], npt.NDArray[np.int64]] | None = None,
        knn: tuple[float, int, float] = (0.0, 5, 20.0),
    ) -> None:
        self.labels = labels
        self._word = word_vectorizer
        self._char = char_vectorizer
        self._coef_t = np.ascontiguousarray(coef.T, dtype=np.float32)  # features x labels
        self._intercept = intercept.astype(np.float32)
        self.temperature = temperature
        self._encoder = encoder
        self._embedding_weight = embedding_weight
        self.manifest: dict[str, Any] = manifest or {}
        self._set_neighbours(neighbours, knn)
        # models from before the "embedding_input" setting fed the encoder normalised text
        self._embed_raw = self.manifest.get("features", {}).get("embedding_input") == "raw"

    def _set_neighbours(
        self, neighbours: tuple[npt.NDArray[np.float16], npt.NDArray[np.int64]] | None, knn: tuple[float, int, float]
    ) -> None:
        self._neighbours = neighbours  # training embeddings (float16, as stored) and their label indices
        self._knn_matrix = None if neighbours is None else np.ascontiguousarray(neighbours[0].T, dtype=np.float32)
        self._knn_share, self._knn_k, self._knn_sharpness = knn

    # --- training ------------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: Sequence[str],
        labels: Sequence[str],
        options: TrainOptions | None = None,
        work_dir: Path | None = None,
    ) -> TrainedClassifier:
        """Train on `texts` with their intent `labels`. `work_dir` receives the encoder files."""
        import tempfile

        options = options or TrainOptions()
        if len(texts) != len(labels):
            raise ValueError("texts and labels differ in length")
        cleaned = [normalize(t) for t in texts]
        keep = [i for i, t in enumerate(cleaned) if t]
        cleaned, y_names = [cleaned[i] for i in keep], [labels[i] for i in keep]
        encoder_inputs = [encoder_text(texts[i]) for i in keep] if options.embedding_input == "raw" else cleaned
        classes = sorted(set(y_names))
        if len(classes) < 2:
            raise ValueError("training needs at least two intents")
        started = time.perf_counter()
        encoder = None
        use_embeddings = options.embeddings == "on"
        tuned = options.finetune_epochs > 0 or options.encoder_dir is not None
        if tuned and options.embeddings == "off":
            raise ValueError("fine-tuning the encoder needs embeddings on (not --embeddings off)")
        if tuned:
            use_embeddings = True
        elif options.embeddings == "auto":
            why_not = embeddings_available()
            use_embeddings = why_not is None
            if why_not:
                log.info("training without sentence embeddings: %s", why_not)
        finetune: dict[str, Any] | None = None
        if use_embeddings:
            import shutil

            from dialog.minilm import ENCODER_WEIGHTS, OnnxEncoder, build_onnx, find_model_dir

            target = work_dir or Path(tempfile.mkdtemp(prefix="hotline-nlu-"))
            target.mkdir(parents=True, exist_ok=True)
            source = find_model_dir()
            if options.finetune_epochs > 0:
                from dialog.finetune import FinetuneOptions, finetune_encoder

                report = finetune_encoder(
                    encoder_inputs,
                    y_names,
                    target,
                    FinetuneOptions(epochs=options.finetune_epochs, threads=options.threads, seed=options.seed),
                )
                source = target
                finetune = {"epochs": report.epochs, "seconds": round(report.seconds, 1),
                            "loss_per_epoch": [round(x, 4) for x in report.losses]}  # fmt: skip
            elif options.encoder_dir is not None:
                given = Path(options.encoder_dir)
                if not (given / ENCODER_WEIGHTS).is_file() or not (given / "tokenizer.json").is_file():
                    raise ValueError(f"{given}: no fine-tuned encoder there ({ENCODER_WEIGHTS}, tokenizer.json)")
                if given.resolve() != target.resolve():
                    for name in (ENCODER_WEIGHTS, "tokenizer.json"):
                        shutil.copyfile(given / name, target / name)
                source = target
                finetune = {"reused_from": str(given)}
            build_onnx(target / "encoder.onnx", model_dir=source, quantize=options.encoder_precision == "int8")
            if source.resolve() != target.resolve():
                shutil.copyfile(source / "tokenizer.json", target / "tokenizer.json")
            encoder = OnnxEncoder(target / "encoder.onnx", target / "tokenizer.json", threads=options.threads)
        embeddings = encoder.encode(encoder_inputs) if encoder is not None else None
        index = {name: i for i, name in enumerate(classes)}
        y = np.array([index[name] for name in y_names], dtype=np.int64)

        temperature = 5.0
        fit_idx, cal_idx = cls._calibration_split(y, options)
        if len(cal_idx):
            probe = cls._fit(classes, [cleaned[i] for i in fit_idx], y[fit_idx],
                             None if embeddings is None else embeddings[fit_idx], encoder, options)  # fmt: skip
            cal_scores = probe._scores([cleaned[i] for i in cal_idx],
                                       None if embeddings is None else embeddings[cal_idx])  # fmt: skip
            temperature = _fit_temperature(cal_scores, y[cal_idx])
        model = cls._fit(classes, cleaned, y, embeddings, encoder, options)
        model.temperature = temperature
        model._embed_raw = options.embedding_input == "raw"
        if embeddings is not None and options.knn_share > 0:
            knn = (options.knn_share, options.knn_k, options.knn_sharpness)
            model._set_neighbours((embeddings.astype(np.float16), y), knn)
        counts = Counter(y_names)
        model.manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "labels": classes,
            "features": {
                "normalize": "dialog.text_features.normalize",
                "word_ngrams": [1, 2],
                "char_wb_ngrams": [2, 5],
                "word_vocabulary": len(model._word.vocabulary_),
                "char_vocabulary": len(model._char.vocabulary_),
                "embeddings": None
                if encoder is None
                else f"all-MiniLM-L6-v2{' fine-tuned' if finetune else ''} ({options.encoder_precision} ONNX)",
                "encoder_finetune": finetune,
                "embedding_weight": options.embedding_weight if encoder is not None else 0.0,
                "embedding_input": options.embedding_input if encoder is not None else None,
                "knn": None
                if encoder is None
                else {"share": options.knn_share, "k": options.knn_k, "sharpness": options.knn_sharpness},
            },
            "classifier": {"kind": "LinearSVC", "C": options.c, "softmax_temperature": temperature},
            "training": {
                "examples": len(cleaned),
                "skipped_empty": len(texts) - len(cleaned),
                "min_examples_per_intent": min(counts.values()),
                "seconds": round(time.perf_counter() - started, 2),
                "python": platform.python_version(),
                "sklearn": _sklearn_version(),
            },
            "metrics": {},
        }
        return model

    @staticmethod
    def _calibration_split(
        y: npt.NDArray[np.int64], options: TrainOptions
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        counts = np.bincount(y)
        everything = np.arange(len(y))
        if options.calibration_share <= 0 or counts.min() < 3:
            return everything, everything[:0]
        from sklearn.model_selection import train_test_split

        n_cal = max(round(len(y) * options.calibration_share), len(counts))
        if len(y) - n_cal < len(counts):
            return everything, everything[:0]
        fit_idx, cal_idx = train_test_split(everything, test_size=n_cal, stratify=y, random_state=options.seed)
        return np.sort(fit_idx), np.sort(cal_idx)

    @classmethod
    def _fit(
        cls,
        classes: list[str],
        texts: list[str],
        y: npt.NDArray[np.int64],
        embeddings: npt.NDArray[np.float32] | None,
        encoder: Any | None,
        options: TrainOptions,
    ) -> TrainedClassifier:
        from sklearn.svm import LinearSVC

        word, char = _word_vectorizer(), _char_vectorizer()
        word.fit(texts)
        char.fit(texts)
        weight = options.embedding_weight if embeddings is not None else 0.0
        features = cls._stack(word.transform(texts), char.transform(texts), embeddings, weight)
        svm = LinearSVC(C=options.c, random_state=options.seed).fit(features, y)
        coef = np.asarray(svm.coef_, dtype=np.float32)
        intercept = np.asarray(svm.intercept_, dtype=np.float32)
        if len(classes) == 2:  # binary LinearSVC gives one row: the score of the second class
            coef = (np.vstack([-coef, coef]) / 2).astype(np.float32)
            intercept = (np.concatenate([-intercept, intercept]) / 2).astype(np.float32)
        return cls(classes, word, char, coef, intercept, 5.0, encoder, weight)

    @staticmethod
    def _stack(word: Any, char: Any, embeddings: npt.NDArray[np.float32] | None, weight: float) -> Any:
        import scipy.sparse as sp

        blocks = [word, char]
        if embeddings is not None:
            blocks.append(sp.csr_matrix(embeddings * np.float32(weight)))
        return sp.hstack(blocks, format="csr", dtype=np.float32)

    # --- prediction ----------------------------------------------------------------------------

    def _scores(self, cleaned: list[str], embeddings: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
        n_word = len(self._word.vocabulary_)
        n_char = len(self._char.vocabulary_)
        scores = self._word.transform(cleaned) @ self._coef_t[:n_word]
        scores += self._char.transform(cleaned) @ self._coef_t[n_word : n_word + n_char]
        if self._encoder is not None:
            if embeddings is None:
                embeddings = self._encoder.encode(cleaned)
            scores += (embeddings * np.float32(self._embedding_weight)) @ self._coef_t[n_word + n_char :]
        result: npt.NDArray[np.float32] = np.asarray(scores, dtype=np.float32) + self._intercept
        return result

    def predict_proba(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Confidences, one row per text, columns in `self.labels` order."""
        cleaned = [normalize(t) for t in texts]
        embeddings = None
        if self._encoder is not None:
            embeddings = self._encoder.encode([encoder_text(t) for t in texts] if self._embed_raw else cleaned)
        proba = _softmax(self._scores(cleaned, embeddings), self.temperature)
        if embeddings is None or self._neighbours is None or self._knn_matrix is None or self._knn_share <= 0:
            return proba
        owners = self._neighbours[1]
        similarity = embeddings @ self._knn_matrix
        k = min(self._knn_k, similarity.shape[1])
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        votes = np.zeros_like(proba)
        for r in range(len(votes)):
            weights = np.exp(self._knn_sharpness * (similarity[r, top[r]].astype(np.float32) - 1.0))
            np.add.at(votes[r], owners[top[r]], weights)
        votes /= np.maximum(votes.sum(axis=1, keepdims=True), 1e-12)
        # The encoder is English only: mostly Chinese text gets no vote, only the n-gram-led SVM.
        share = np.array([[0.0 if cjk_ratio(t) > 0.5 else self._knn_share] for t in cleaned], dtype=np.float32)
        blended: npt.NDArray[np.float32] = (1 - share) * proba + share * votes
        return blended.astype(np.float32)

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """The best intent and its confidence for each text."""
        if not texts:
            return []
        proba = self.predict_proba(texts)
        best = proba.argmax(axis=1)
        return [(self.labels[int(b)], float(proba[r, b])) for r, b in enumerate(best)]

    def rank(self, text: str, top: int = 10) -> list[IntentScore]:
        if not normalize(text):
            return []
        proba = self.predict_proba([text])[0]
        order = np.argsort(-proba)[:top]
        return [IntentScore(self.labels[int(i)], float(proba[i])) for i in order]

    # --- files ---------------------------------------------------------------------------------

    def save(self, directory: Path) -> Path:
        """Write the model files into `directory` (created if needed; the encoder files, if any,
        must already be there: `train(..., work_dir=directory)` puts them there)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._encoder is not None and not (directory / "encoder.onnx").is_file():
            raise ModelError(f"{directory}: encoder.onnx is missing; train with work_dir={directory}")
        vocab = {
            "word": sorted(self._word.vocabulary_, key=self._word.vocabulary_.__getitem__),
            "char": sorted(self._char.vocabulary_, key=self._char.vocabulary_.__getitem__),
        }
        (directory / "vocabulary.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        arrays: dict[str, npt.NDArray[Any]] = {
            "word_idf": self._word.idf_.astype(np.float32),
            "char_idf": self._char.idf_.astype(np.float32),
            "coef": self._coef_t.T.astype(np.float32),
            "intercept": self._intercept,
        }
        if self._neighbours is not None:
            arrays |= {"knn_embeddings": self._neighbours[0], "knn_labels": self._neighbours[1]}
        np.savez_compressed(directory / "weights.npz", allow_pickle=False, **arrays)
        manifest = dict(self.manifest) or {"format": FORMAT, "version": FORMAT_VERSION}
        manifest["labels"] = self.labels
        manifest.setdefault("classifier", {})["softmax_temperature"] = self.temperature
        manifest["files"] = [*sorted(p.name for p in directory.iterdir() if p.name != "manifest.json"), "manifest.json"]
        (directory / "manifest.json").write_text(
            json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        self.manifest = manifest
        return directory

    @classmethod
    def load(cls, directory: Path | str, threads: int = 1) -> TrainedClassifier:
        """Load a model directory written by `save` (no network, no pickle)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ModelError(f"{directory}: no such model directory (train one with `hotline nlu train`)")
        manifest_path = directory / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(f"{directory}: manifest.json is missing; not a model directory") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{manifest_path}: unreadable ({exc})") from None
        if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
            raise ModelError(
                f"{manifest_path}: format {manifest.get('format')!r} version {manifest.get('version')!r}; "
                f"this hotline reads {FORMAT!r} version {FORMAT_VERSION}"
            )
        try:
            vocab = json.loads((directory / "vocabulary.json").read_text(encoding="utf-8"))
            weights = np.load(directory / "weights.npz")
        except FileNotFoundError as exc:
            raise ModelError(f"{directory}: {Path(str(exc.filename)).name} is missing") from None
        word, char = _word_vectorizer(), _char_vectorizer()
        for vectorizer, terms, idf in (
            (word, vocab["word"], weights["word_idf"]),
            (char, vocab["char"], weights["char_idf"]),
        ):
            vectorizer.vocabulary_ = {term: i for i, term in enumerate(terms)}
            vectorizer.idf_ = np.asarray(idf, dtype=np.float32)
        features = manifest.get("features", {})
        encoder = None
        if features.get("embeddings"):
            from dialog.minilm import OnnxEncoder

            for name in ("encoder.onnx", "tokenizer.json"):
                if not (directory / name).is_file():
                    raise ModelError(f"{directory}: {name} is missing (the model uses sentence embeddings)")
            encoder = OnnxEncoder(directory / "encoder.onnx", directory / "tokenizer.json", threads=threads)
        labels = list(manifest["labels"])
        neighbours = None
        knn: tuple[float, int, float] = (0.0, 5, 20.0)
        if features.get("knn") and encoder is not None and "knn_embeddings" in weights:
            neighbours = (
                np.asarray(weights["knn_embeddings"], dtype=np.float16),
                np.asarray(weights["knn_labels"], dtype=np.int64),
            )
            knn = (float(features["knn"]["share"]), int(features["knn"]["k"]), float(features["knn"]["sharpness"]))
        coef = np.asarray(weights["coef"], dtype=np.float32)
        if coef.shape[0] != len(labels):
            raise ModelError(f"{directory}: weights.npz has {coef.shape[0]} intents, manifest.json {len(labels)}")
        return cls(
            labels,
            word,
            char,
            coef,
            np.asarray(weights["intercept"], dtype=np.float32),
            float(manifest["classifier"]["softmax_temperature"]),
            encoder,
            float(features.get("embedding_weight", 0.0)),
            manifest,
            neighbours,
            knn,
        )


def _sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)
