"""Routing hints the dialog puts on its Transfer (the flow's `transfer` section), at text level through the
real engine and the SQL sample bank: the caller's language and the product of what they asked about as
skills, the order to relax them, the VIP segment's priority, the queue per intent; the checks of that
section; and card activation picking the inactive card from the records."""

from __future__ import annotations

from typing import Any

import pytest
from support.bank_dialog import spoken, start, verify

from dialog import Action, DialogEngine, FlowConfigError, Transfer, load_flow
from dialog.flow import check_queues
from dialog.samplebank import SampleBank

CARD_2, PIN_2 = "4392260012345678", "864209"  # James Miller (en, retail)
CARD_3, PIN_3 = "6222021005550001", "975310"  # Zhang Min (zh, vip)


def transfer_of(actions: list[Action]) -> Transfer:
    assert isinstance(actions[-1], Transfer), actions
    return actions[-1]


def test_a_mandarin_caller_asking_to_block_a_card_needs_zh_and_cards(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine, "zh")
    conv.handle_text("冻结我的卡")
    t = transfer_of(conv.handle_text("转人工"))  # leaves the verification for a person
    assert t.queue == "general" and t.needs == {"cards": 1, "zh": 1} and t.relax == ("cards", "zh")
    assert t.priority == 0  # not verified
    assert t.context["routing"] == {"needs": {"cards": 1, "zh": 1}, "priority": 0}


def test_the_latest_product_question_routes_the_call_after_other_turns(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine)
    conv.handle_text("I need a loan")  # answered by the robot; then a question about opening hours
    conv.handle_dtmf("1")
    t = transfer_of(conv.handle_dtmf("0"))
    assert t.needs == {"loans": 1, "en": 1} and t.relax == ("loans", "en")


def test_a_caller_with_no_product_question_needs_only_their_language(bank_engine: DialogEngine) -> None:
    t = transfer_of(start(bank_engine, "zh").handle_text("转人工"))
    assert t.needs == {"zh": 1} and t.relax == ("zh",) and t.priority == 0


def test_a_verified_vip_customer_gets_the_segment_priority(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine, "zh")
    conv.handle_text("查一下余额")
    assert "余额" in spoken(verify(conv, CARD_3, PIN_3))
    t = transfer_of(conv.handle_text("转人工"))
    assert t.priority == 10 and t.context["routing"]["priority"] == 10 and t.needs == {"zh": 1}
    retail = start(bank_engine)  # a retail customer, verified the same way: no priority
    retail.handle_text("what is my balance")
    verify(retail, CARD_2, PIN_2)
    assert transfer_of(retail.handle_dtmf("0")).priority == 0


def test_queue_by_intent_and_language_skill_off(bank_flow_data: dict[str, Any], write_flow: Any) -> None:
    bank_flow_data["transfer"].update(queue_by_intent={"loan_info": "loans"}, language_skill=False)
    engine = DialogEngine(load_flow(write_flow(bank_flow_data)))
    conv = start(engine)
    conv.handle_text("I need a loan")
    t = transfer_of(conv.handle_dtmf("0"))
    assert t.queue == "loans" and t.needs == {"loans": 1} and t.relax == ("loans",)
    assert transfer_of(start(engine).handle_dtmf("0")).queue == "general"
    check_queues(engine.flow, ["general", "loans"])  # both exist in the server's settings
    with pytest.raises(FlowConfigError) as err:
        check_queues(engine.flow, ["general"])
    line = str(err.value)
    assert line.startswith(f"{engine.flow.path}:") and line.split(":")[1].isdigit()
    assert "transfer.queue_by_intent.loan_info: unknown queue 'loans' (queues in the server settings: general)" in line


@pytest.mark.parametrize(
    ("edit", "key", "words"),
    [
        (lambda t: t["skills"].update(blok_card={"cards": 1}), "transfer.skills.blok_card", "unknown intent"),
        (lambda t: t["skills"].update(block_card={"cards": 0}), "transfer.skills.block_card.cards", "greater than"),
        (lambda t: t["skills"].update(block_card={"card s": 1}), "transfer.skills.block_card.card s",
         "pattern"),
        (lambda t: t["queue_by_intent"].update(loan_info="Loans!"), "transfer.queue_by_intent.loan_info",
         "pattern"),
        (lambda t: t["priority_by_segment"].update(vip="high"), "transfer.priority_by_segment.vip", "integer"),
    ],
)
def test_a_bad_transfer_section_is_refused_with_file_line_and_key(
    bank_flow_data: dict[str, Any], write_flow: Any, edit: Any, key: str, words: str
) -> None:
    edit(bank_flow_data["transfer"])
    path = write_flow(bank_flow_data)
    with pytest.raises(FlowConfigError) as err:
        load_flow(path)
    line = next((ln for ln in str(err.value).splitlines() if f": {key}" in ln), None)
    assert line is not None, str(err.value)
    assert line.startswith(f"{path}:") and line.split(":")[1].isdigit() and words in line


def test_activation_asks_which_new_card_only_when_there_are_several(bank_engine: DialogEngine,
                                                                    bank: SampleBank) -> None:
    bank.report_lost_card(2, "5678")  # two replacements on the way for James Miller
    bank.report_lost_card(2, "2222")
    new = sorted((c for c in bank.cards(2) if c.status == "inactive"), key=lambda c: c.last4)
    conv = start(bank_engine)
    conv.handle_text("activate my card")
    question = spoken(verify(conv, CARD_2, PIN_2))
    assert "Which card do you want to activate?" in question
    assert all(f"ending {c.last4}" in question for c in new)
    order = [c.last4 for c in new if f"ending {c.last4}" in question]
    chosen = next(c for c in new if question.index(f"ending {c.last4}") == min(
        question.index(f"ending {x}") for x in order))
    done = spoken(conv.handle_dtmf("1"))
    assert f"ending {chosen.last4} is now active" in done
    assert {c.last4: c.status for c in bank.cards(2)}[chosen.last4] == "active"
    # and the last one is picked without a question, named by the caller's words or not
    again = spoken(conv.handle_text("activate my card"))
    left = next(c for c in new if c.last4 != chosen.last4)
    assert f"ending {left.last4} is now active" in again
