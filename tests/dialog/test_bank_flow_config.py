"""Bad bank parts of a flow file are refused with the file, the line and the key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dialog import FlowConfigError, load_flow

WriteFlow = Callable[[dict[str, Any]], Path]


def problem_for(path: Path, key: str) -> str:
    with pytest.raises(FlowConfigError) as err:
        load_flow(path)
    lines = [line for line in str(err.value).splitlines() if f": {key}: " in line]
    assert lines, f"no problem names {key}: {err.value}"
    assert lines[0].startswith(f"{path}:") and lines[0].split(":")[1].isdigit()  # file:line:
    return lines[0]


def test_unknown_placeholder_in_an_answer(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    bank_flow_data["intents"]["balance"]["item"]["en"] = "{kind} ending {last4}: {balence}"
    line = problem_for(write_flow(bank_flow_data), "intents.balance.item.en")
    assert "unknown placeholder {balence}" in line and "balance" in line


def test_menu_option_to_an_unknown_intent(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    bank_flow_data["intents"]["cards_menu"]["options"]["2"] = "activate_crad"
    assert "unknown intent 'activate_crad'" in problem_for(write_flow(bank_flow_data), "intents.cards_menu.options.2")


def test_bank_intents_need_the_bank_section(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    del bank_flow_data["bank"]
    assert "required key is missing" in problem_for(write_flow(bank_flow_data), "bank")


def test_choice_slot_without_options(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    bank_flow_data["intents"]["risk_assessment"]["slots"][0]["options"] = {}
    assert "needs options" in problem_for(write_flow(bank_flow_data), "intents.risk_assessment.slots[0].options")


def test_slot_type_and_operation_must_be_known(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    bank_flow_data["intents"]["transfer_money"]["slots"][1]["type"] = "money"
    bank_flow_data["intents"]["balance"]["operation"] = "balanse"
    path = write_flow(bank_flow_data)
    assert "money" in problem_for(path, "intents.transfer_money.slots[1].type")
    assert "balanse" in problem_for(path, "intents.balance.operation")


def test_missing_chinese_verification_prompt(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    del bank_flow_data["bank"]["verification"]["ask_pin"]["zh"]
    assert "missing the 'zh' text" in problem_for(write_flow(bank_flow_data), "bank.verification.ask_pin.zh")


def test_errors_need_the_unavailable_message(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    del bank_flow_data["bank"]["errors"]["unavailable"]
    assert "required" in problem_for(write_flow(bank_flow_data), "bank.errors.unavailable")


def test_misspelt_slot_key(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    bank_flow_data["intents"]["block_card"]["slots"][0]["max_digts"] = 4
    assert "unknown key" in problem_for(write_flow(bank_flow_data), "intents.block_card.slots[0].max_digts")
