"""Cross-validate changes to the BANKING77 intent model on the training part only (never the test split).

    .venv/bin/python bench/nlu_banking77_cv.py [--data ../shared/data/banking77/train.csv] [--folds 5]

Takes the same stratified 80% that bench/nlu_banking77.py trains on (seed 0), encodes it once with the
int8 MiniLM encoder (cached in --cache), and runs k-fold cross-validation (seed 2) of the default model
(TF-IDF words + characters + embedding, linear SVM, temperature on an inner 10%, 5-neighbour embedding
vote at 0.4) against extra votes blended on top: an embedding-centroid vote and a character n-gram
TF-IDF nearest-example vote. Prints the accuracy of each per fold and on average.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from nlu_banking77 import load  # noqa: E402

from dialog.text_features import normalize  # noqa: E402
from dialog.trained_classifier import _char_vectorizer, _fit_temperature, _softmax, _word_vectorizer  # noqa: E402


def votes(
    sim: npt.NDArray[np.float32], owners: npt.NDArray[np.int64], n: int, k: int, sharp: float
) -> npt.NDArray[np.float32]:
    top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    out = np.zeros((sim.shape[0], n), np.float32)
    for r in range(sim.shape[0]):
        np.add.at(out[r], owners[top[r]], np.exp(sharp * (sim[r, top[r]] - 1.0)))
    out /= out.sum(1, keepdims=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "banking77" / "train.csv")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--cache", type=Path, default=Path("/tmp/banking77-train80-minilm-int8.npy"))
    args = p.parse_args()
    import scipy.sparse as sp
    from sklearn.model_selection import StratifiedKFold, train_test_split
    from sklearn.svm import LinearSVC

    texts, labels = load(args.data)
    x_tr, _, y_tr, _ = train_test_split(texts, labels, test_size=0.2, stratify=labels, random_state=0)
    cleaned = [normalize(t) for t in x_tr]
    classes = sorted(set(y_tr))
    y = np.array([classes.index(c) for c in y_tr], dtype=np.int64)
    if args.cache.exists():
        emb = np.load(args.cache)
    else:
        import tempfile

        from dialog.minilm import OnnxEncoder, build_onnx, find_model_dir

        with tempfile.TemporaryDirectory() as tmp:
            build_onnx(Path(tmp) / "encoder.onnx")
            emb = OnnxEncoder(Path(tmp) / "encoder.onnx", find_model_dir() / "tokenizer.json", threads=1).encode(
                cleaned
            )
        np.save(args.cache, emb)
    variants: dict[str, list[float]] = {"default": []}
    char_grid = [(s, k, sh) for s in (0.1, 0.2, 0.3) for k in (5, 10) for sh in (10.0, 20.0)]
    for s, k, sh in char_grid:
        variants[f"char vote {s} k={k} sharp={sh:g}"] = []
    variants["centroid vote 0.2 t=20"] = []
    n = len(classes)
    for f, (tr, va) in enumerate(StratifiedKFold(args.folds, shuffle=True, random_state=2).split(cleaned, y)):
        started = time.perf_counter()
        word, char = _word_vectorizer(), _char_vectorizer()
        tt, vt = [cleaned[i] for i in tr], [cleaned[i] for i in va]
        word.fit(tt)
        char.fit(tt)
        ctr, cva = char.transform(tt), char.transform(vt)
        xtr = sp.hstack([word.transform(tt), ctr, sp.csr_matrix(emb[tr] * 1.5)], format="csr")
        xva = sp.hstack([word.transform(vt), cva, sp.csr_matrix(emb[va] * 1.5)], format="csr")
        fit_i, cal_i = train_test_split(np.arange(len(tr)), test_size=0.1, stratify=y[tr], random_state=0)
        probe = LinearSVC(C=1.0, random_state=0).fit(xtr[fit_i], y[tr][fit_i])
        temperature = _fit_temperature(probe.decision_function(xtr[cal_i]).astype(np.float32), y[tr][cal_i])
        svm = LinearSVC(C=1.0, random_state=0).fit(xtr, y[tr])
        proba = _softmax(svm.decision_function(xva).astype(np.float32), temperature)
        base = 0.6 * proba + 0.4 * votes(emb[va] @ emb[tr].T, y[tr], n, 5, 20.0)
        variants["default"].append(float(np.mean(base.argmax(1) == y[va])))
        char_sim = (cva @ ctr.T).toarray().astype(np.float32)  # rows are unit length: cosine
        for s, k, sh in char_grid:
            out = (1 - s) * base + s * votes(char_sim, y[tr], n, k, sh)
            variants[f"char vote {s} k={k} sharp={sh:g}"].append(float(np.mean(out.argmax(1) == y[va])))
        centroids = np.zeros((n, emb.shape[1]), np.float32)
        np.add.at(centroids, y[tr], emb[tr])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        out = 0.8 * base + 0.2 * _softmax((emb[va] @ centroids.T).astype(np.float32), 20.0)
        variants["centroid vote 0.2 t=20"].append(float(np.mean(out.argmax(1) == y[va])))
        print(f"fold {f}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    for name, scores in variants.items():
        print(f"{name:<32} mean {np.mean(scores):.2%}  " + " ".join(f"{a:.2%}" for a in scores))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
