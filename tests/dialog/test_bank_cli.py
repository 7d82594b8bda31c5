"""`hotline bank seed` and `hotline bank unlock` against the sample bank's own database."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from dialog.samplebank import SampleBank
from hotline.cli import main


def test_seed_then_refuse_to_overwrite_then_reset_and_unlock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "server.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'var'}\n")
    assert main(["--config", str(cfg), "bank", "seed"]) == 0
    out = capsys.readouterr().out
    assert "seeded 4 demo customers" in out and "王芳" in out and "James Miller" in out
    db = tmp_path / "var" / "bank.db"
    assert db.is_file() and not (tmp_path / "var" / "hotline.db").exists()  # not the call-record database

    assert main(["--config", str(cfg), "bank", "seed"]) == 1  # already seeded: left alone
    assert "--reset" in capsys.readouterr().err

    bank = SampleBank(f"sqlite:///{db}")
    for pin in ("000000", "111111", "222222"):
        bank.verify("4392260012345678", pin)
    assert bank.verify("4392260012345678", "864209").locked
    assert main(["--config", str(cfg), "bank", "unlock", "2"]) == 0
    assert bank.verify("4392260012345678", "864209").ok

    bank.transfer(2, "5005600070008001", Decimal("100"))
    assert main(["--config", str(cfg), "bank", "seed", "--reset"]) == 0
    assert str(bank.accounts(2)[0].balance) == "8765.43"  # demo data as new
    bank.close()


def test_bank_without_subcommand_prints_help(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bank"]) == 2
    assert "seed" in capsys.readouterr().out
