"""Fine-tune the all-MiniLM-L6-v2 sentence encoder on a bank's labelled utterances (needs PyTorch).

`hotline nlu train --finetune-encoder` calls `finetune_encoder`: the same 6-layer BERT that
`dialog.minilm.MiniLmEncoder` runs in numpy is built here in torch from the same safetensors
weights, a cosine-softmax head over the mean-pooled, L2-normalised sentence embedding is put on
top, and both are trained with cross-entropy (AdamW, linear warm-up then decay, dynamic padding).
Only the encoder is kept: its weights are written as `encoder.safetensors` (+ `tokenizer.json`)
into the model directory, so predicting needs no torch (the classifier turns them into the int8
ONNX graph and stacks the linear SVM over TF-IDF and the fine-tuned embeddings, as before).

PyTorch is an optional extra: the CPU build `pip install torch==2.13.0`. Everything else here
(reading and writing safetensors, the tokenizer) is shared with `dialog.minilm`.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dialog.minilm import (
    DIMENSION,
    ENCODER_WEIGHTS,
    MAX_TOKENS,
    EmbeddingModelUnavailable,
    find_model_dir,
    read_safetensors,
    weights_path,
    write_safetensors,
)

log = logging.getLogger(__name__)

TORCH_REQUIREMENT = "torch==2.13.0"
HEADS = 12


class TorchUnavailable(EmbeddingModelUnavailable):
    """Fine-tuning was asked for but PyTorch is not installed."""


def require_torch() -> Any:
    """The `torch` module, or a `TorchUnavailable` naming the install command."""
    try:
        import torch
    except ImportError:
        raise TorchUnavailable(
            f"fine-tuning the sentence encoder needs PyTorch (CPU build): .venv/bin/pip install {TORCH_REQUIREMENT}"
        ) from None
    return torch


@dataclass(frozen=True)
class FinetuneOptions:
    epochs: int = 3
    batch_size: int = 32
    encoder_lr: float = 5e-5
    head_lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_share: float = 0.1
    dropout: float = 0.1
    scale: float = 20.0  # cosine-softmax scale of the training head
    # False keeps the 30,522 x 384 word-embedding table as packaged (no Adam state for 11.7M weights;
    # words the examples never use keep their meaning). The BANKING77 figures were measured with True.
    train_word_embeddings: bool = True
    threads: int = 2
    seed: int = 0


@dataclass
class FinetuneReport:
    epochs: int
    examples: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # mean training loss per epoch


def _build_model(torch: Any, tensors: dict[str, npt.NDArray[Any]], dropout: float) -> Any:
    """The BERT encoder as a torch module whose parameters carry the safetensors names."""
    nn = torch.nn
    functional = torch.nn.functional
    layer_ids = sorted({int(k.split(".")[2]) for k in tensors if k.startswith("encoder.layer.")})

    module: Any = nn.Module

    class Bert(module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = nn.ParameterDict()
            for name, value in tensors.items():
                if name.startswith(("embeddings.", "encoder.")) and "position_ids" not in name:
                    array = np.array(value, dtype=np.float32)  # a writable copy of the memory map
                    self.weights[name.replace(".", "__")] = nn.Parameter(torch.from_numpy(array))
            self.drop = dropout

        def w(self, name: str) -> Any:
            return self.weights[name.replace(".", "__")]

        def dense(self, x: Any, name: str) -> Any:
            return functional.linear(x, self.w(f"{name}.weight"), self.w(f"{name}.bias"))

        def norm(self, x: Any, name: str) -> Any:
            return functional.layer_norm(x, (DIMENSION,), self.w(f"{name}.weight"), self.w(f"{name}.bias"), 1e-12)

        def forward(self, ids: Any, mask: Any) -> Any:
            n, length = ids.shape
            x = functional.embedding(ids, self.w("embeddings.word_embeddings.weight"))
            x = x + self.w("embeddings.position_embeddings.weight")[:length]
            x = x + self.w("embeddings.token_type_embeddings.weight")[0]
            x = functional.dropout(self.norm(x, "embeddings.LayerNorm"), self.drop, self.training)
            bias = ((1.0 - mask) * -1e9)[:, None, None, :]
            width = DIMENSION // HEADS
            for i in layer_ids:
                p = f"encoder.layer.{i}."

                def split(t: Any) -> Any:
                    return t.view(n, length, HEADS, width).transpose(1, 2)

                q = split(self.dense(x, p + "attention.self.query"))
                k = split(self.dense(x, p + "attention.self.key"))
                v = split(self.dense(x, p + "attention.self.value"))
                scores = q @ k.transpose(-1, -2) / math.sqrt(width) + bias
                probs = functional.dropout(scores.softmax(-1), self.drop, self.training)
                context = (probs @ v).transpose(1, 2).reshape(n, length, DIMENSION)
                out = functional.dropout(self.dense(context, p + "attention.output.dense"), self.drop, self.training)
                x = self.norm(out + x, p + "attention.output.LayerNorm")
                hidden = functional.gelu(self.dense(x, p + "intermediate.dense"))
                out = functional.dropout(self.dense(hidden, p + "output.dense"), self.drop, self.training)
                x = self.norm(out + x, p + "output.LayerNorm")
            pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True)
            return functional.normalize(pooled, dim=-1)

        def state_arrays(self) -> dict[str, npt.NDArray[np.float32]]:
            return {k.replace("__", "."): v.detach().cpu().numpy().astype(np.float32) for k, v in self.weights.items()}

    return Bert()


class TorchEncoder:
    """The torch twin of `MiniLmEncoder` (same weights, same embeddings); used for training and tests."""

    def __init__(self, model_dir: Path | None = None, dropout: float = 0.1, threads: int = 2) -> None:
        self.torch = require_torch()
        from tokenizers import Tokenizer

        self.torch.set_num_threads(max(1, threads))
        self.model_dir = model_dir or find_model_dir()
        self.tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.model = _build_model(self.torch, read_safetensors(weights_path(self.model_dir)), dropout)

    def batch(self, ids: Sequence[Sequence[int]]) -> tuple[Any, Any]:
        length = max(len(i) for i in ids)
        token_ids = np.zeros((len(ids), length), dtype=np.int64)
        mask = np.zeros((len(ids), length), dtype=np.float32)
        for r, row in enumerate(ids):
            token_ids[r, : len(row)] = row
            mask[r, : len(row)] = 1.0
        return self.torch.from_numpy(token_ids), self.torch.from_numpy(mask)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> npt.NDArray[np.float32]:
        ids = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        out = np.zeros((len(ids), DIMENSION), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        self.model.eval()
        with self.torch.no_grad():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                out[chunk] = self.model(*self.batch([ids[i] for i in chunk])).numpy()
        return out

    def save(self, directory: Path) -> Path:
        """Write `encoder.safetensors` and `tokenizer.json` into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_safetensors(directory / ENCODER_WEIGHTS, self.model.state_arrays())
        if (self.model_dir / "tokenizer.json").resolve() != (directory / "tokenizer.json").resolve():
            shutil.copyfile(self.model_dir / "tokenizer.json", directory / "tokenizer.json")
        return directory


def finetune_encoder(
    texts: Sequence[str],
    labels: Sequence[str],
    out_dir: Path,
    options: FinetuneOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> FinetuneReport:
    """Fine-tune the packaged encoder on (`texts`, `labels`) and save it into `out_dir`.

    `texts` are what the encoder will read at predict time (the classifier's encoder input).
    """
    options = options or FinetuneOptions()
    if len(texts) != len(labels):
        raise ValueError("texts and labels differ in length")
    if options.epochs < 1:
        raise ValueError(f"epochs must be at least 1 (got {options.epochs})")
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError("fine-tuning needs at least two intents")
    torch = require_torch()
    torch.manual_seed(options.seed)
    rng = random.Random(options.seed)
    encoder = TorchEncoder(dropout=options.dropout, threads=options.threads)
    model = encoder.model
    index = {name: i for i, name in enumerate(classes)}
    y = torch.tensor([index[name] for name in labels], dtype=torch.long)
    ids = [e.ids for e in encoder.tokenizer.encode_batch(list(texts))]
    # The head starts at the class centroids of the frozen embeddings: training starts from a good place.
    frozen = torch.from_numpy(encoder.encode(texts))
    centroids = torch.zeros(len(classes), DIMENSION).index_add_(0, y, frozen)
    head = torch.nn.Parameter(torch.nn.functional.normalize(centroids, dim=-1))
    trained = dict(model.weights.items())
    if not options.train_word_embeddings:
        word = trained.pop("embeddings__word_embeddings__weight")
        word.requires_grad_(False)
    no_decay = [p for n, p in trained.items() if "LayerNorm" in n or n.endswith("bias")]
    decay = [p for n, p in trained.items() if not ("LayerNorm" in n or n.endswith("bias"))]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "lr": options.encoder_lr, "weight_decay": options.weight_decay},
            {"params": no_decay, "lr": options.encoder_lr, "weight_decay": 0.0},
            {"params": [head], "lr": options.head_lr, "weight_decay": 0.0},
        ],
        foreach=True,
    )
    steps_per_epoch = math.ceil(len(ids) / options.batch_size)
    total = steps_per_epoch * options.epochs
    warmup = max(1, int(total * options.warmup_share))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))
    )
    report = FinetuneReport(options.epochs, len(ids), 0.0)
    started = time.perf_counter()
    model.train()
    for epoch in range(options.epochs):
        # Batches of similar length (less padding), in a random order each epoch.
        order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), rng.random()))
        batches = [order[s : s + options.batch_size] for s in range(0, len(order), options.batch_size)]
        rng.shuffle(batches)
        total_loss = 0.0
        for chunk in batches:
            embedding = model(*encoder.batch([ids[i] for i in chunk]))
            logits = options.scale * embedding @ torch.nn.functional.normalize(head, dim=-1).T
            loss = torch.nn.functional.cross_entropy(logits, y[chunk])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            optimizer.step()
            scheduler.step()
            total_loss += float(loss.detach()) * len(chunk)
        report.losses.append(total_loss / len(ids))
        message = (
            f"fine-tuning epoch {epoch + 1}/{options.epochs}: loss {report.losses[-1]:.4f}, "
            f"{time.perf_counter() - started:.0f} s"
        )
        log.info(message)
        if progress is not None:
            progress(message)
    model.eval()
    encoder.save(out_dir)
    report.seconds = time.perf_counter() - started
    return report
