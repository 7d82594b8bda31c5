"""NLU accuracy on labelled held-out phrases: `python -m dialog.evaluation FLOW CASES`."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dialog.engine import DialogEngine
from dialog.flow import load_flow
from dialog.nlu import Nlu


@dataclass
class LanguageScore:
    lang: str
    total: int = 0
    correct: int = 0
    errors: list[tuple[str, str, str | None, float]] = field(default_factory=list)
    out_of_scope: int = 0
    false_accepts: list[tuple[str, str, float]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def evaluate(nlu: Nlu, cases_path: Path | str) -> dict[str, LanguageScore]:
    """Score `nlu` on a cases file: `{lang: [[text, intent], ...], out_of_scope: {lang: [text]}}`."""
    data = yaml.safe_load(Path(cases_path).read_text(encoding="utf-8"))
    scores: dict[str, LanguageScore] = {}
    for lang, cases in data.items():
        if lang == "out_of_scope":
            continue
        score = scores.setdefault(lang, LanguageScore(lang))
        for text, expected in cases:
            result = nlu.interpret(text)
            score.total += 1
            if result.intent == expected:
                score.correct += 1
            else:
                score.errors.append((text, expected, result.intent, result.confidence))
    for lang, texts in (data.get("out_of_scope") or {}).items():
        score = scores.setdefault(lang, LanguageScore(lang))
        for text in texts:
            score.out_of_scope += 1
            result = nlu.interpret(text)
            if result.intent is not None:
                score.false_accepts.append((text, result.intent, result.confidence))
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure intent accuracy of a flow's NLU on held-out phrases.")
    parser.add_argument("flow", help="flow file, e.g. configs/flows/bank.yaml")
    parser.add_argument("cases", help="labelled phrases, e.g. tests/dialog/nlu_paraphrases.yaml")
    args = parser.parse_args(argv)
    engine = DialogEngine(load_flow(args.flow))
    out = sys.stdout
    for score in evaluate(engine.nlu, args.cases).values():
        out.write(
            f"{score.lang}: {score.correct}/{score.total} correct ({score.accuracy:.1%}); "
            f"out-of-scope accepted {len(score.false_accepts)}/{score.out_of_scope}\n"
        )
        for text, expected, got, conf in score.errors:
            out.write(f"  miss  {text!r}: expected {expected}, got {got} ({conf:.2f})\n")
        for text, got, conf in score.false_accepts:
            out.write(f"  false accept  {text!r}: {got} ({conf:.2f})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
