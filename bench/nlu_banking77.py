"""Benchmark the trainable intent classifier on BANKING77 (not part of the unit tests).

    .venv/bin/python bench/nlu_banking77.py [--data ../shared/data/banking77/train.csv] [--variants tfidf,tfidf+minilm]
    .venv/bin/python bench/nlu_banking77.py --finetune-encoder [--epochs 3]   # needs torch==2.13.0

Holds out a stratified 20% of train.csv (seed 0) as the test split, trains each variant on the
other 80% (the model's own confidence calibration carves 10% of that; C and the embedding weight
were chosen on a validation split of the 80%, never on the test split), then measures accuracy,
macro-F1, per-utterance latency of `rank()` on one thread, training time and model size.

`--finetune-encoder` runs the `ft` variants instead: the MiniLM encoder fine-tuned on the training
80% (`dialog.finetune`, PyTorch on 2 threads), then the same SVM (+ vote) over TF-IDF and the
fine-tuned embeddings; `--encoder-dir DIR` reuses an encoder fine-tuned before (its training time is
then not in the row). Variants: tfidf+minilm-ft (int8 ONNX, as saved by default), ...-ft-fp32 (float
ONNX graph), ...-ft-novote (no nearest-example vote).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # latency is measured on one core; set before numpy loads

import argparse  # noqa: E402
import csv  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dialog.trained_classifier import TrainedClassifier, TrainOptions  # noqa: E402

VARIANTS = {
    "tfidf": TrainOptions(embeddings="off"),
    "tfidf+minilm": TrainOptions(embeddings="on"),
}
FINETUNED = {
    "tfidf+minilm-ft": TrainOptions(embeddings="on"),
    "tfidf+minilm-ft-fp32": TrainOptions(embeddings="on", encoder_precision="fp32"),
    "tfidf+minilm-ft-novote": TrainOptions(embeddings="on", knn_share=0.0),
}


def load(path: Path) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def macro_f1(truth: list[str], predicted: list[str]) -> float:
    scores = []
    for label in sorted(set(truth)):
        tp = sum(t == label and p == label for t, p in zip(truth, predicted, strict=True))
        fp = sum(t != label and p == label for t, p in zip(truth, predicted, strict=True))
        fn = sum(t == label and p != label for t, p in zip(truth, predicted, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "banking77" / "train.csv")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--test-share", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--finetune-encoder", action="store_true", help="bench the fine-tuned encoder variants")
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (default 3)")
    p.add_argument("--encoder-dir", type=Path, help="reuse this fine-tuned encoder (encoder.safetensors)")
    args = p.parse_args()
    if args.finetune_encoder and args.variants == ",".join(VARIANTS):
        args.variants = ",".join(FINETUNED)
    variants = VARIANTS | FINETUNED
    from sklearn.model_selection import train_test_split

    texts, labels = load(args.data)
    x_train, x_test, y_train, y_test = train_test_split(
        texts, labels, test_size=args.test_share, stratify=labels, random_state=args.seed
    )
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"nproc: {os.cpu_count()}  data: {args.data.name}  train: {len(x_train)}  test: {len(x_test)}  "
          f"intents: {len(set(labels))}  split: stratified {args.test_share:.0%}, seed {args.seed}")  # fmt: skip
    print("latency: rank() per utterance, one at a time, 1 thread (BLAS and onnxruntime)")
    header = f"{'variant':<22} {'accuracy':>8}"
    header += f" {'macro-F1':>8} {'p50 ms':>7} {'p95 ms':>7} {'train s':>8} {'size MB':>8}"
    rows = [header, "-" * len(header)]
    encoder_dir: Path | None = args.encoder_dir
    for name in args.variants.split(","):
        options = variants[name]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "model"
            if name in FINETUNED:
                if encoder_dir is None:  # the first fine-tuned variant fine-tunes; the others reuse it
                    options = replace(options, finetune_epochs=args.epochs)
                else:
                    options = replace(options, encoder_dir=str(encoder_dir))
            started = time.perf_counter()
            TrainedClassifier.train(x_train, y_train, options, work_dir=out).save(out)
            train_s = time.perf_counter() - started
            if name in FINETUNED and encoder_dir is None:
                encoder_dir = Path(tempfile.mkdtemp(prefix="banking77-ft-"))
                for file in ("encoder.safetensors", "tokenizer.json"):
                    shutil.copyfile(out / file, encoder_dir / file)
                print(f"fine-tuned encoder kept in {encoder_dir} (reuse: --encoder-dir)", file=sys.stderr)
            size_mb = sum(f.stat().st_size for f in out.iterdir()) / 1e6
            model = TrainedClassifier.load(out, threads=1)
            predicted = [intent for intent, _ in model.predict(x_test)]
            accuracy = float(np.mean([a == b for a, b in zip(predicted, y_test, strict=True)]))
            for text in x_test[:20]:  # warm up
                model.rank(text)
            times = []
            for text in x_test:  # as the caller said it: rank() normalises (and the encoder reads it as said)
                t0 = time.perf_counter()
                model.rank(text)
                times.append(time.perf_counter() - t0)
            p50, p95 = (float(np.percentile(times, q)) * 1000 for q in (50, 95))
        rows.append(
            f"{name:<22} {accuracy:>8.2%} {macro_f1(y_test, predicted):>8.4f} {p50:>7.2f} {p95:>7.2f} "
            f"{train_s:>8.1f} {size_mb:>8.1f}"
        )
        print(rows[-1], file=sys.stderr, flush=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
