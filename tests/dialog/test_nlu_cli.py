"""`hotline nlu train` / `hotline nlu predict`: the command functions with files, stdin and stdout."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import pytest

from dialog.nlu_cli import add_commands, read_training_csv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nlu_training_data import mixed_training_set, write_csv


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hotline")
    sub = parser.add_subparsers(dest="command")
    add_commands(sub)
    return parser.parse_args(list(argv))


def run(args: argparse.Namespace, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    if args.nlu_command == "predict":
        code = args.run(args, stdin=io.StringIO(stdin), out=out, err=err)
    else:
        code = args.run(args, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_train_then_predict_round_trip(tmp_path: Path) -> None:
    texts, labels = mixed_training_set()
    data = write_csv(tmp_path / "data.csv", [*texts, "  "], [*labels, "card_arrival"])
    model_dir = tmp_path / "model"
    code, out, err = run(parse("nlu", "train", "--data", str(data), "--out", str(model_dir), "--embeddings", "off"))
    assert code == 0, err
    assert "trained 14 intents on 340 examples" in out
    assert "skipped 1 row(s) with empty text (lines 342)" in err
    assert (model_dir / "manifest.json").is_file()

    lines = "my card has not arrived yet\n\n我要挂失\r\nwhat exchange rate do you use\n转人工\n"
    code, out, err = run(parse("nlu", "predict", "--model", str(model_dir)), stdin=lines)
    assert code == 0, err
    assert out.splitlines() == ["card_arrival", "no_match", "zh_lost_card", "exchange_rate", "zh_agent"]

    code, out, _ = run(parse("nlu", "predict", "--model", str(model_dir), "--scores"), stdin="我的卡丢了\n")
    intent, score = out.strip().split("\t")
    assert intent == "zh_lost_card" and 0.3 < float(score) <= 1.0


def test_predict_without_model_dir(tmp_path: Path) -> None:
    code, out, err = run(parse("nlu", "predict", "--model", str(tmp_path / "missing")), stdin="hi\n")
    assert code == 2 and out == ""
    assert "no such model directory" in err and "hotline nlu train" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"\n\n", "the file is empty"),
        (b"utterance,intent\nhello,greet\n", "missing column(s) text, category"),
        (b"text\nhello\n", "missing column(s) category"),
        (b"text,category\nhello,greet\ncaf\xe9,greet\n", ":3: not UTF-8 text"),
        (b"text,category\n,greet\n  ,x\n", "no rows with text"),
        (b"text,category\nhello,greet\nhi,\n", ":3: empty category"),
        (b"text,category\nhello,greet\nhi,greet\n", "only one category"),
    ],
)
def test_bad_csv_is_refused_clearly(tmp_path: Path, content: bytes, message: str) -> None:
    data = tmp_path / "bad.csv"
    data.write_bytes(content)
    args = parse("nlu", "train", "--data", str(data), "--out", str(tmp_path / "m"), "--embeddings", "off")
    code, out, err = run(args)
    assert code == 2 and out == ""
    assert message in err and str(data) in err
    assert not (tmp_path / "m").exists()


def test_missing_data_file(tmp_path: Path) -> None:
    code, _, err = run(parse("nlu", "train", "--data", str(tmp_path / "no.csv"), "--out", str(tmp_path / "m")))
    assert code == 2 and "no such file" in err


def test_csv_with_bom_quotes_extra_columns_and_case(tmp_path: Path) -> None:
    data = tmp_path / "ok.csv"
    data.write_bytes('\ufeffID,Text,Category\n1,"lost my card, help",lost\n2,我的卡丢了,lost\n3,balance,bal\n'.encode())
    err = io.StringIO()
    texts, labels = read_training_csv(data, err)
    assert texts == ["lost my card, help", "我的卡丢了", "balance"]
    assert labels == ["lost", "lost", "bal"]
    assert err.getvalue() == ""


def test_subcommand_is_required() -> None:
    with pytest.raises(SystemExit):
        parse("nlu")
