"""`hotline nlu train` and `hotline nlu predict`: a bank trains and checks its own intent model.

    hotline nlu train --data utterances.csv --out models/intents
    printf 'I lost my card\\n我的卡丢了\\n' | hotline nlu predict --model models/intents

The CSV is UTF-8 with a header row holding at least the columns `text` and `category` (the intent).
Rows with empty text are skipped (and counted on stderr). `predict` reads one utterance per line
and writes one intent per line (`--scores` adds the confidence after a tab).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path
from typing import TextIO

REQUIRED_COLUMNS = ("text", "category")


class DataError(ValueError):
    """A training file that cannot be used; the message names the file and the problem."""


def read_training_csv(path: Path, err: TextIO | None = None) -> tuple[list[str], list[str]]:
    """Texts and categories from a CSV with `text` and `category` columns."""
    err = err if err is not None else sys.stderr
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a CSV file") from None
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (save the file as UTF-8)") from None
    if not content.strip():
        raise DataError(f"{path}: the file is empty")
    reader = csv.DictReader(io.StringIO(content, newline=""))
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise DataError(
            f"{path}:1: missing column(s) {', '.join(missing)}; the header row must name "
            f"{' and '.join(REQUIRED_COLUMNS)} (found: {', '.join(columns) or 'nothing'})"
        )
    reader.fieldnames = columns
    texts: list[str] = []
    labels: list[str] = []
    empty_text: list[int] = []
    try:
        for row in reader:
            text = (row.get("text") or "").strip()
            label = (row.get("category") or "").strip()
            if not text:
                empty_text.append(reader.line_num)
                continue
            if not label:
                raise DataError(f"{path}:{reader.line_num}: empty category for text {text[:40]!r}")
            texts.append(text)
            labels.append(label)
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: bad CSV ({exc})") from None
    if empty_text:
        shown = ", ".join(str(n) for n in empty_text[:5]) + (", ..." if len(empty_text) > 5 else "")
        print(f"{path}: skipped {len(empty_text)} row(s) with empty text (lines {shown})", file=err)
    if not texts:
        raise DataError(f"{path}: no rows with text")
    if len(set(labels)) < 2:
        raise DataError(f"{path}: only one category ({labels[0]!r}); a classifier needs at least two")
    return texts, labels


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `nlu train` and `nlu predict` on the main parser's subcommands."""
    nlu = sub.add_parser("nlu", help="train and try an intent model on your own labelled utterances")
    nlu_sub = nlu.add_subparsers(dest="nlu_command", metavar="ACTION", required=True)

    train = nlu_sub.add_parser("train", help="train an intent model from a CSV (columns text,category)")
    train.add_argument("--data", type=Path, required=True, help="UTF-8 CSV with a header row: text,category")
    train.add_argument("--out", type=Path, required=True, help="directory to write the model into")
    train.add_argument(
        "--embeddings",
        choices=("auto", "on", "off"),
        default="auto",
        help="add English sentence embeddings (all-MiniLM-L6-v2): auto uses them when installed (default)",
    )
    train.add_argument("--threads", type=int, default=2, help="threads for encoding while training (default 2)")
    train.add_argument(
        "--finetune-encoder",
        action="store_true",
        help="fine-tune the sentence encoder on the training examples first (needs PyTorch: pip install "
        "torch==2.13.0; BANKING77's 8,000 examples took 10-20 min an epoch on 2 shared cores; predicting "
        "still needs no torch)",
    )
    train.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs with --finetune-encoder (default 3)")
    train.set_defaults(run=run_train)

    predict = nlu_sub.add_parser("predict", help="read utterances (one a line) on stdin, print one intent a line")
    predict.add_argument("--model", type=Path, required=True, help="a directory written by `hotline nlu train`")
    predict.add_argument("--scores", action="store_true", help="print the confidence after a tab")
    predict.set_defaults(run=run_predict)


def run_train(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from dialog.trained_classifier import TrainedClassifier, TrainOptions

    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        texts, labels = read_training_csv(args.data, err)
    except DataError as exc:
        print(f"hotline nlu train: {exc}", file=err)
        return 2
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        print(f"hotline nlu train: {out_dir}: exists and is not a directory", file=err)
        return 2
    finetune = bool(getattr(args, "finetune_encoder", False))
    epochs = int(getattr(args, "epochs", 3))
    if finetune:
        from dialog.finetune import TorchUnavailable, require_torch

        if args.embeddings == "off":
            print(
                "hotline nlu train: --finetune-encoder needs the sentence embeddings (not --embeddings off)", file=err
            )
            return 2
        if epochs < 1:
            print(f"hotline nlu train: --epochs must be at least 1 (got {epochs})", file=err)
            return 2
        try:
            require_torch()
        except TorchUnavailable as exc:
            print(f"hotline nlu train: {exc}", file=err)
            return 2
    options = TrainOptions(
        embeddings=args.embeddings,
        threads=max(1, int(getattr(args, "threads", 2))),
        finetune_epochs=epochs if finetune else 0,
    )
    started = time.perf_counter()
    try:
        model = TrainedClassifier.train(texts, labels, options, work_dir=out_dir)
    except Exception as exc:  # a missing optional package, an unusable data set
        from dialog.minilm import EmbeddingModelUnavailable

        if type(exc) is not ValueError and not isinstance(exc, EmbeddingModelUnavailable):
            raise
        print(f"hotline nlu train: {exc}", file=err)
        return 2
    model.save(out_dir)
    features = model.manifest["features"]
    print(
        f"trained {len(model.labels)} intents on {len(texts)} examples in {time.perf_counter() - started:.1f} s "
        f"(embeddings: {features['embeddings'] or 'none'}); model written to {out_dir}",
        file=out,
    )
    return 0


def run_predict(args: argparse.Namespace, stdin: TextIO | None = None, out: TextIO | None = None,
                err: TextIO | None = None) -> int:  # fmt: skip
    from dialog.trained_classifier import ModelError, TrainedClassifier

    stdin = stdin if stdin is not None else sys.stdin
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        model = TrainedClassifier.load(args.model)
    except ModelError as exc:
        print(f"hotline nlu predict: {exc}", file=err)
        return 2
    batch: list[str] = []

    def flush() -> None:
        for intent, score in _predict_lines(model, batch):
            out.write(f"{intent}\t{score:.3f}\n" if args.scores else f"{intent}\n")
        out.flush()
        batch.clear()

    for line in stdin:
        batch.append(line.rstrip("\r\n"))
        if len(batch) >= 256 or not _is_buffered(stdin):
            flush()
    flush()
    return 0


def _predict_lines(model: object, lines: list[str]) -> list[tuple[str, float]]:
    from dialog.nlu import NO_MATCH
    from dialog.text_features import normalize
    from dialog.trained_classifier import TrainedClassifier

    assert isinstance(model, TrainedClassifier)
    results: list[tuple[str, float]] = [(NO_MATCH, 0.0)] * len(lines)
    real = [i for i, line in enumerate(lines) if normalize(line)]
    for i, prediction in zip(real, model.predict([lines[i] for i in real]), strict=True):
        results[i] = prediction
    return results


def _is_buffered(stream: TextIO) -> bool:
    """False for an interactive terminal, where each line is answered at once."""
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):
        return True
