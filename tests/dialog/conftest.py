"""Shared fixtures: the shipped bank flow, loaded once (training the NLU takes a fraction of a second)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dialog import Conversation, DialogEngine, Flow, load_flow

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
