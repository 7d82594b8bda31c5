"""Flow and knowledge files: the shipped ones load; broken ones are refused with file, key and line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dialog import Flow, FlowConfigError, load_flow
from dialog.config_file import key_path

WriteFlow = Callable[..., Path]

MINIMAL_FLOW = """\
version: 1
name: tiny
languages:
  offered: [en]
  default: en
no_input: {max_reprompts: 1, reason: no input}
no_match: {max_reprompts: 1, reason: not understood}
transfer:
  queue: general
  announcement: {en: Hold on.}
prompts:
  greeting: {en: Hello.}
  language_switched: {en: English.}
  anything_else: {en: "Anything else?"}
  no_input: [{en: "Hello?"}]
  no_match: [{en: "Sorry?"}]
  unknown_key: {en: Not a key.}
  goodbye: {en: Bye.}
intents:
  agent:
    action: transfer
    reason: asked
    examples:
      en: [agent please, a person]
dtmf:
  "0": agent
"""


def write_text(tmp_path: Path, text: str, name: str = "flow.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path) -> FlowConfigError:
    with pytest.raises(FlowConfigError) as info:
        load_flow(path)
    message = str(info.value)
    assert str(path) in message, "the error must name the file"
    return info.value


def test_shipped_bank_flow_loads_with_both_languages(bank_flow: Flow) -> None:
    cfg = bank_flow.config
    assert bank_flow.languages == ["en", "zh"] and cfg.languages.default == "en"
    assert cfg.transfer.queue == "general"
    assert {"agent", "balance", "recent_transactions", "transfer_money", "goodbye", "repeat"} <= set(cfg.intents)
    assert {e.id for e in bank_flow.knowledge.entries} >= {
        "opening_hours",
        "branch_locations",
        "exchange_rates",
        "card_fees",
        "lost_card",
        "open_account",
    }
    assert cfg.dtmf == {
        "1": "faq:opening_hours",
        "2": "faq:lost_card",
        "3": "accounts_menu",
        "4": "cards_menu",
        "5": "wealth_menu",
        "6": "complaints_menu",
        "7": "info_menu",
        "0": "agent",
        "9": "chinese",
        "8": "english",
        "*": "repeat",
    }


def test_a_minimal_flow_without_knowledge_loads(tmp_path: Path) -> None:
    flow = load_flow(write_text(tmp_path, MINIMAL_FLOW))
    assert flow.intent_names() == {"agent"}


def test_missing_key_names_the_key(tmp_path: Path) -> None:
    error = refused(write_text(tmp_path, MINIMAL_FLOW.replace("  goodbye: {en: Bye.}\n", "")))
    assert error.key == "prompts.goodbye"
    assert "required key is missing" in str(error)
    assert error.line == 11  # the `prompts:` mapping that lacks it


def test_unknown_key_is_an_error_with_its_line(tmp_path: Path) -> None:
    error = refused(
        write_text(
            tmp_path,
            MINIMAL_FLOW.replace("      en: [agent", "      en: [agent").replace("    examples:\n", "    exampels:\n"),
        )
    )
    message = str(error)
    assert "intents.agent.exampels" in message and "unknown key" in message
    assert f"{tmp_path / 'flow.yaml'}:23:" in message
    assert "intents.agent.examples: required key is missing" in message


def test_wrong_type_names_key_and_value(tmp_path: Path, bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    bank_flow_data["listen"]["timeout_s"] = "soon"
    error = refused(write_flow(bank_flow_data))
    assert error.key == "listen.timeout_s" and "'soon'" in str(error)


def test_examples_must_be_a_list_per_language(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    bank_flow_data["intents"]["balance"]["examples"]["en"] = "what is my balance"
    error = refused(write_flow(bank_flow_data))
    assert error.key == "intents.balance.examples.en"


def test_unquoted_yes_gets_a_hint(tmp_path: Path) -> None:
    error = refused(write_text(tmp_path, MINIMAL_FLOW.replace("[agent please, a person]", "[agent please, yes]")))
    assert error.key == "intents.agent.examples.en[1]"
    assert "quotes" in str(error)


def test_bad_yaml_syntax_reports_the_line(tmp_path: Path) -> None:
    error = refused(write_text(tmp_path, MINIMAL_FLOW.replace("  offered: [en]", "  offered: [en")))
    assert "invalid YAML" in str(error) and error.line is not None and 4 <= error.line <= 6


@pytest.mark.parametrize("text", ["", "\n# only a comment\n"])
def test_empty_file_is_refused(tmp_path: Path, text: str) -> None:
    assert "empty" in str(refused(write_text(tmp_path, text)))


def test_a_list_at_the_top_is_refused(tmp_path: Path) -> None:
    assert "expected a mapping" in str(refused(write_text(tmp_path, "- a\n- b\n")))


def test_missing_file_is_refused(tmp_path: Path) -> None:
    assert "cannot read" in str(refused(tmp_path / "nope.yaml"))


def test_duplicate_yaml_key_is_refused(tmp_path: Path) -> None:
    text = MINIMAL_FLOW.replace("  goodbye: {en: Bye.}\n", "  goodbye: {en: Bye.}\n  goodbye: {en: Bye bye.}\n")
    error = refused(write_text(tmp_path, text))
    assert "duplicate key 'goodbye'" in str(error) and error.line == 19


def test_same_example_under_two_intents_is_refused(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    bank_flow_data["intents"]["agent"]["examples"]["en"].append("what is my balance")
    error = refused(write_flow(bank_flow_data))
    # Intents are checked in file order: `agent` comes first, so `balance` gets the complaint.
    assert error.key == "intents.balance.examples.en[0]"
    assert "'what is my balance' is also under intent 'agent'" in str(error)


def test_example_repeating_a_knowledge_question_is_refused(
    bank_flow_data: dict[str, Any], write_flow: WriteFlow
) -> None:
    bank_flow_data["intents"]["agent"]["examples"]["zh"].append("你们几点开门")
    assert "knowledge entry 'opening_hours'" in str(refused(write_flow(bank_flow_data)))


def test_missing_language_text_is_refused(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    del bank_flow_data["prompts"]["goodbye"]["zh"]
    error = refused(write_flow(bank_flow_data))
    assert error.key == "prompts.goodbye.zh" and "missing the 'zh' text" in str(error)


def test_text_in_a_language_not_offered_is_refused(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    bank_flow_data["prompts"]["goodbye"]["zn"] = "再见"
    assert refused(write_flow(bank_flow_data)).key == "prompts.goodbye.zn"


def test_default_language_must_be_offered(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    bank_flow_data["languages"]["default"] = "fr"
    assert refused(write_flow(bank_flow_data)).key == "languages.default"


def test_dtmf_to_an_unknown_intent_is_refused(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    bank_flow_data["dtmf"]["3"] = "faq:mortgage"
    error = refused(write_flow(bank_flow_data))
    assert error.key == "dtmf.3" and "unknown intent 'faq:mortgage'" in str(error)


def test_dtmf_key_must_be_a_keypad_key(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    bank_flow_data["dtmf"]["10"] = "agent"
    assert refused(write_flow(bank_flow_data)).key == "dtmf.10"


def test_unknown_action_is_refused(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    bank_flow_data["intents"]["balance"]["action"] = "teleport"
    error = refused(write_flow(bank_flow_data))
    assert error.key == "intents.balance.action" and "'teleport'" in str(error)


def test_missing_action_is_refused(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    del bank_flow_data["intents"]["balance"]["action"]
    error = refused(write_flow(bank_flow_data))
    assert error.key == "intents.balance" and "'action'" in str(error)


def test_key_not_used_by_the_action_is_refused(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    bank_flow_data["intents"]["repeat"]["queue"] = "general"
    assert refused(write_flow(bank_flow_data)).key == "intents.repeat.queue"


def test_threshold_out_of_range_is_refused(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    bank_flow_data["nlu"]["threshold"] = 3
    assert refused(write_flow(bank_flow_data)).key == "nlu.threshold"


def test_missing_knowledge_file_is_named(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    bank_flow_data["knowledge"] = ["../knowledge/nope.yaml"]
    error = refused(write_flow(bank_flow_data))
    assert error.key == "knowledge[0]" and "nope.yaml" in str(error)


KB_ENTRY = """\
version: 1
entries:
  - id: opening_hours
    category: branches
    questions:
      en: [when are you open]
      zh: [几点开门]
    answer:
      en: Nine to five.
      zh: 九点到五点。
"""


def flow_with_knowledge(tmp_path: Path, kb_text: str, bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> Path:
    (tmp_path / "kb.yaml").write_text(kb_text, encoding="utf-8")
    bank_flow_data["knowledge"] = ["kb.yaml"]
    bank_flow_data["dtmf"] = {"1": "faq:opening_hours", "0": "agent"}
    bank_flow_data.pop("follow_ups", None)
    skills = bank_flow_data["transfer"].get("skills", {})  # nor may the transfer skills map
    bank_flow_data["transfer"]["skills"] = {k: v for k, v in skills.items() if not k.startswith("faq:")}
    for intent in bank_flow_data["intents"].values():  # sub-menus may only name the one entry kept
        if intent["action"] == "menu":
            intent["options"] = {
                k: v for k, v in intent["options"].items() if not v.startswith("faq:") or v == "faq:opening_hours"
            }
    return write_flow(bank_flow_data)


def test_knowledge_file_relative_to_the_flow_loads(
    tmp_path: Path, bank_flow_data: dict[str, Any], write_flow: WriteFlow
) -> None:
    flow = load_flow(flow_with_knowledge(tmp_path, KB_ENTRY, bank_flow_data, write_flow))
    assert flow.knowledge.answer("opening_hours", "zh") == "九点到五点。"


@pytest.mark.parametrize(
    ("edit", "key", "words"),
    [
        (lambda t: t.replace("      zh: 九点到五点。\n", ""), "entries[0].answer.zh", "needs an answer"),
        (
            lambda t: t.replace("    category: branches\n", "    categroy: branches\n"),
            "entries[0].categroy",
            "unknown key",
        ),
        (lambda t: t.replace("id: opening_hours", "id: Opening Hours"), "entries[0].id", "pattern"),
        (lambda t: t + t.split("entries:\n")[1], "entries[1].id", "already used"),
        (lambda t: t.replace("      zh: [几点开门]\n", ""), "entries[0].questions.zh", "at least one question"),
    ],
)
def test_broken_knowledge_file_is_refused_naming_that_file(
    tmp_path: Path,
    bank_flow_data: dict[str, Any],
    write_flow: WriteFlow,
    edit: Callable[[str], str],
    key: str,
    words: str,
) -> None:
    path = flow_with_knowledge(tmp_path, edit(KB_ENTRY), bank_flow_data, write_flow)
    with pytest.raises(FlowConfigError) as info:
        load_flow(path)
    assert info.value.file == str((tmp_path / "kb.yaml").resolve())
    assert key in {p.key for p in info.value.problems} and words in str(info.value)


def test_key_path_formats_lists_and_maps() -> None:
    assert key_path(("intents", "balance", "examples", "en", 0)) == "intents.balance.examples.en[0]"


def test_many_problems_are_listed_together(bank_flow_data: dict[str, Any], write_flow: WriteFlow) -> None:
    bank_flow_data["listen"]["timeout_s"] = "soon"
    bank_flow_data["transfer"]["queue"] = "General Queue!"
    error = refused(write_flow(bank_flow_data))
    assert {p.key for p in error.problems} == {"listen.timeout_s", "transfer.queue"}
