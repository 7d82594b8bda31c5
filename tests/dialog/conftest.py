"""Shared fixtures: the shipped bank flow, loaded once (training the NLU takes a fraction of a second), and the
SQL sample bank with its demo customers (seeded once per module, copied per test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.bank_dialog import copied_bank, seeded_bank_file

from dialog import Conversation, DialogEngine, Flow, load_flow
from dialog.samplebank import SampleBank

REPO = Path(__file__).resolve().parents[2]
BANK_FLOW = REPO / "configs" / "flows" / "bank.yaml"
FAQ = REPO / "configs" / "knowledge" / "faq.yaml"


@pytest.fixture(scope="session")
def bank_flow() -> Flow:
    return load_flow(BANK_FLOW)


@pytest.fixture(scope="session")
def engine(bank_flow: Flow) -> DialogEngine:
    return DialogEngine(bank_flow)


@pytest.fixture
def conv(engine: DialogEngine) -> Conversation:
    c = engine.new_conversation("test-call", caller="+8613800000000")
    c.start()
    return c


@pytest.fixture
def bank_flow_data() -> dict[str, Any]:
    """The shipped flow as plain data, with the knowledge path made absolute so it can be edited and saved anywhere."""
    data: dict[str, Any] = yaml.safe_load(BANK_FLOW.read_text(encoding="utf-8"))
    data["knowledge"] = [str(FAQ)]
    return data


@pytest.fixture
def write_flow(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    """Saves flow data as YAML in a temporary folder and returns the file's path."""

    def write(data: dict[str, Any], name: str = "flow.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="module")
def bank_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seeded_bank_file(tmp_path_factory.mktemp("bank"))  # seeding hashes four PINs once per module


@pytest.fixture
def bank(bank_template: Path, tmp_path: Path) -> Iterator[SampleBank]:
    b = copied_bank(bank_template, tmp_path)
    yield b
    b.close()


@pytest.fixture
def bank_engine(bank_flow: Flow, bank: SampleBank) -> DialogEngine:
    return DialogEngine(bank_flow, bank=bank)
