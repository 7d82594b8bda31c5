"""Scripted conversations with the sample bank's records: verification, slots, confirmation, complaints,
recommendations, menus, go back, lockout, and secrets kept out of everything the dialog leaves behind."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from support.bank_dialog import keys, spoken, start, verify

from dialog import (
    Action,
    DialogEngine,
    Flow,
    FlowConfigError,
    Listen,
    Transfer,
    Understood,
    load_flow,
)
from dialog.bank_cli import DEMO_CUSTOMERS
from dialog.flow import FAQ_PREFIX, BankIntent, MenuIntent
from dialog.samplebank import SampleBank, check_pin, hash_pin

CARD_1, PIN_1 = "6222021001234567", "246810"  # Wang Fang: no risk level yet, an inactive card ending 8888
CARD_2, PIN_2 = "4392260012345678", "864209"  # James Miller: risk level 3
ACCOUNT_4, PIN_4 = "4004500060007001", "112358"  # Emily Chen: risk level 1, savings account only
PAYEE = "5005600070008001"


def intents(actions: list[Action]) -> list[str]:
    return [a.intent for a in actions if isinstance(a, Understood)]


# ---- every intent, both languages ----------------------------------------------------------


def all_intents(flow: Flow) -> list[tuple[str, str]]:
    return [(name, lang) for name in sorted(flow.intent_names()) for lang in flow.languages]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_intent_is_reached_by_its_own_example_in_both_languages(bank_engine: DialogEngine, lang: str) -> None:
    flow = bank_engine.flow
    for name in sorted(flow.intent_names()):
        if name.startswith(FAQ_PREFIX):
            entry = flow.knowledge.get(name.removeprefix(FAQ_PREFIX))
            assert entry is not None
            example = entry.questions[lang][0]
        else:
            example = flow.config.intents[name].examples[lang][0]
        conv = start(bank_engine, lang)
        actions = conv.handle_text(example)
        assert intents(actions)[:1] == [name], (lang, example, intents(actions))
        assert isinstance(actions[-1], Listen | Transfer) or name == "goodbye"


def test_the_flow_has_at_least_25_intents_and_every_one_has_a_keypad_path(bank_flow: Flow) -> None:
    cfg = bank_flow.config
    assert len(bank_flow.intent_names()) >= 25
    reachable = set(cfg.dtmf.values())
    for spec in cfg.intents.values():
        if isinstance(spec, MenuIntent):
            reachable |= set(spec.options.values())
    # speech-only by nature: greetings, "yes", language names (8/9 cover those), go back (star in menus)
    speech_only = {"hello", "more_help", "goodbye", "go_back"}
    assert bank_flow.intent_names() - reachable - speech_only == set()


@pytest.mark.parametrize(
    ("menu_key", "option", "intent"),
    [
        ("3", "1", "balance"),
        ("3", "2", "recent_transactions"),
        ("3", "3", "transfer_money"),
        ("3", "4", "credit_card_bill"),
        ("3", "5", "credit_card_repayment"),
        ("4", "1", "block_card"),
        ("4", "2", "activate_card"),
        ("4", "3", "pin_reset"),
        ("4", "4", "faq:card_fees"),
        ("5", "1", "loan_info"),
        ("5", "2", "wealth_products"),
        ("5", "3", "risk_assessment"),
        ("5", "4", "faq:exchange_rates"),
        ("6", "1", "complaint"),
        ("6", "2", "complaint_status"),
        ("7", "1", "faq:opening_hours"),
        ("7", "2", "faq:branch_locations"),
        ("7", "3", "faq:card_fees"),
        ("7", "4", "faq:open_account"),
        ("7", "5", "faq:exchange_rates"),
        ("7", "6", "help"),
    ],
)
def test_keypad_menus_reach_every_service(bank_engine: DialogEngine, menu_key: str, option: str, intent: str) -> None:
    conv = start(bank_engine)
    menu = conv.handle_dtmf(menu_key)
    assert "star to go back" in spoken(menu)
    actions = conv.handle_dtmf(option)
    assert intents(actions)[0] == intent


def test_star_in_a_menu_goes_back_to_the_main_menu(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine, "zh")
    conv.handle_dtmf("3")
    assert "主菜单" in spoken(conv.handle_dtmf("*"))
    assert intents(conv.handle_dtmf("1")) == ["faq:opening_hours"]  # main menu keys again


# ---- verification and account answers ----------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "ask", "expected"),
    [("en", "what is my balance", "52,380.50 yuan"), ("zh", "查余额", "52380.50元")],
)
def test_balance_after_card_and_pin(bank_engine: DialogEngine, lang: str, ask: str, expected: str) -> None:
    conv = start(bank_engine, lang)
    first = conv.handle_text(ask)
    assert isinstance(first[-1], Listen) and first[-1].secret
    after_number = keys(conv, CARD_1 + "#")
    assert isinstance(after_number[-1], Listen) and after_number[-1].secret and after_number[-1].digits_max == 6
    actions = keys(conv, PIN_1)
    text = spoken(actions)
    assert expected in text and ("Wang Fang" in text or "王芳" in text)
    assert conv.customer is not None and conv.customer.id == 1
    # verified once per call: the next account question needs no PIN
    again = conv.handle_text("recent transactions" if lang == "en" else "最近的交易记录")
    assert ("Supermarket" in spoken(again)) or ("超市购物" in spoken(again))


def test_account_number_works_as_well_as_a_card_number(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine)
    conv.handle_text("check my balance")
    assert "3,150 yuan" in spoken(verify(conv, ACCOUNT_4, PIN_4))


def test_the_number_may_end_by_waiting_instead_of_hash(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine)
    conv.handle_text("check my balance")
    keys(conv, CARD_2)
    assert "Now please key in" in spoken(conv.handle_no_input())  # inter-digit timeout ends the entry
    assert "8,765.43" in spoken(keys(conv, PIN_2))


def test_a_hash_after_a_complete_pin_is_ignored(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine)
    conv.handle_text("check my balance")
    answer = verify(conv, CARD_2, PIN_2)
    assert "8,765.43" in spoken(answer)
    after = conv.handle_dtmf("#")
    assert after == [answer[-1]] and "[key #]" not in str(conv.history)
    assert "not an option" in spoken(conv.handle_dtmf("#"))  # a second one is a key like any other


def test_three_wrong_pins_lock_the_customer_and_transfer(bank_engine: DialogEngine, bank: SampleBank) -> None:
    conv = start(bank_engine)
    conv.handle_text("what is my balance")
    assert "do not match" in spoken(verify(conv, CARD_2, "000000"))
    assert "do not match" in spoken(verify(conv, CARD_2, "111111"))
    actions = verify(conv, CARD_2, "222222")
    transfer = actions[-1]
    assert isinstance(transfer, Transfer) and transfer.reason == "verification failed"
    assert "locked" in spoken(actions)
    # locked in the bank, not only in this call: the right PIN on the next call does not get in
    assert bank.verify(CARD_2, PIN_2).locked
    conv2 = start(bank_engine)
    conv2.handle_text("what is my balance")
    locked = verify(conv2, CARD_2, PIN_2)
    assert isinstance(locked[-1], Transfer) and "8,765.43" not in spoken(locked)
    bank.unlock(2)
    assert bank.verify(CARD_2, PIN_2).ok


def test_a_success_resets_the_failure_count(bank: SampleBank) -> None:
    assert not bank.verify(CARD_2, "000000").ok
    assert not bank.verify(CARD_2, "000000").ok
    assert bank.verify(CARD_2, PIN_2).ok
    assert bank.verify(CARD_2, "000000").attempts_left == 2


def test_unknown_numbers_fail_like_wrong_pins(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine)
    conv.handle_text("what is my balance")
    assert "do not match" in spoken(verify(conv, "9999888877776666", "123456"))
    short = keys(conv, "1234#")  # too short to be a card or account number
    assert "not a valid entry" in spoken(short)


def test_speaking_the_pin_is_refused_and_never_kept(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine)
    conv.handle_text("what is my balance")
    keys(conv, CARD_1 + "#")
    actions = conv.handle_text("two four six eight one zero")
    assert "keypad" in spoken(actions)
    assert isinstance(actions[-1], Listen) and actions[-1].secret
    assert "two four six" not in str(conv.history)
    assert "Wang Fang" in spoken(keys(conv, PIN_1))


def test_secrets_never_reach_history_transfer_context_events_or_logs(
    bank_engine: DialogEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    conv = start(bank_engine)
    seen: list[Action] = []
    seen += conv.handle_text("what is my balance")
    seen += keys(conv, CARD_1 + "#")
    seen += keys(conv, PIN_1)
    seen += conv.handle_text("transfer money")
    seen += keys(conv, PAYEE + "#")
    seen += keys(conv, "500#")
    seen += conv.handle_dtmf("1")
    seen += conv.handle_dtmf("0")  # to an agent, with the conversation so far
    transfer = seen[-1]
    assert isinstance(transfer, Transfer)
    everything = " ".join(
        [str(conv.history), str(transfer.context), str([a for a in seen if isinstance(a, Understood)]), caplog.text]
    )
    for secret in (CARD_1, PIN_1, PAYEE):
        assert secret not in everything, secret
    assert "[PIN entered]" in str(conv.history) and "[card or account number entered]" in str(conv.history)
    assert "4001" in spoken(seen)  # what the caller needs to hear is still said


# ---- transfers: slots, confirmation, correction, limits --------------------------------------


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_transfer_with_confirmation_moves_the_money(bank_engine: DialogEngine, bank: SampleBank, lang: str) -> None:
    conv = start(bank_engine, lang)
    conv.handle_text("I want to transfer money" if lang == "en" else "我要转账")
    verify(conv, CARD_1, PIN_1)
    ask_amount = keys(conv, PAYEE + "#")
    assert "How much" in spoken(ask_amount) or "多少" in spoken(ask_amount)
    confirm = conv.handle_text("five hundred yuan" if lang == "en" else "五百块")
    assert ("transfer 500 yuan to the account ending 8001" in spoken(confirm)) or ("尾号8001" in spoken(confirm))
    done = conv.handle_dtmf("1")
    assert intents(done) == ["transfer_money"] and ("Done" in spoken(done) or "转账成功" in spoken(done))
    main = bank.accounts(1)[0]
    assert main.balance == Decimal("51880.50")


def test_go_back_corrects_the_amount_before_confirming(bank_engine: DialogEngine, bank: SampleBank) -> None:
    conv = start(bank_engine)
    conv.handle_text("send money to another account")
    verify(conv, CARD_1, PIN_1)
    keys(conv, PAYEE + "#")
    assert "900 yuan" in spoken(keys(conv, "900#"))
    back = conv.handle_text("go back")
    assert "How much" in spoken(back)
    assert "300 yuan" in spoken(keys(conv, "300#"))
    conv.handle_dtmf("1")
    assert bank.accounts(1)[0].balance == Decimal("52080.50")


def test_cancelling_at_the_confirmation_changes_nothing(bank_engine: DialogEngine, bank: SampleBank) -> None:
    conv = start(bank_engine)
    conv.handle_text("wire transfer")
    verify(conv, CARD_1, PIN_1)
    keys(conv, PAYEE + "#")
    keys(conv, "700#")
    assert "cancelled" in spoken(conv.handle_text("no"))
    assert bank.accounts(1)[0].balance == Decimal("52380.50")


def test_transfers_above_the_limit_are_refused_with_the_limit_spoken(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine, "zh")
    conv.handle_text("我要转账")
    verify(conv, CARD_3 := "6222021005550001", "975310")
    keys(conv, PAYEE + "#")
    keys(conv, "60000#")
    refused = conv.handle_dtmf("1")
    assert "超出了转账限额" in spoken(refused) and CARD_3 not in str(conv.history)


def test_an_invalid_amount_is_asked_again_then_escalated(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine)
    conv.handle_text("i want to transfer money")
    verify(conv, CARD_1, PIN_1)
    keys(conv, PAYEE + "#")
    assert "not a valid entry" in spoken(keys(conv, "0#"))
    assert "How much" in spoken(conv.handle_text("the blue one"))  # no-match re-asks the question
    final = keys(conv, "#")
    assert isinstance(final[-1], Transfer) and final[-1].reason == "not understood"


def test_silence_in_a_form_reprompts_then_escalates(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine)
    conv.handle_text("what is my balance")
    assert "card number" in spoken(conv.handle_no_input())
    conv.handle_no_input()
    final = conv.handle_no_input()
    assert isinstance(final[-1], Transfer) and final[-1].reason == "no input"


def test_agent_request_in_the_middle_of_a_form_is_honoured(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine)
    conv.handle_text("i want to transfer money")
    verify(conv, CARD_1, PIN_1)
    out = conv.handle_text("let me speak to an agent")
    assert isinstance(out[-1], Transfer) and out[-1].context["intent"] == "agent"


# ---- cards and credit card ---------------------------------------------------------------


def test_block_a_card_chosen_from_the_callers_cards_on_the_keypad(bank_engine: DialogEngine, bank: SampleBank) -> None:
    conv = start(bank_engine)
    conv.handle_dtmf("4")
    conv.handle_dtmf("1")
    asked = spoken(verify(conv, CARD_1, PIN_1))
    assert "press 1 for your debit card ending 4567" in asked and "press 3 for your credit card ending 7788" in asked
    assert "ending 4567" in spoken(keys(conv, "1"))
    assert "now blocked" in spoken(conv.handle_text("yes"))
    assert {c.last4: c.status for c in bank.cards(1)}["4567"] == "blocked"


@pytest.mark.parametrize(
    ("lang", "offer"), [("en", "To block the card right now, press 1"), ("zh", "如需立即冻结该卡")]
)
def test_lost_card_advice_offers_to_block_it_on_1(bank_engine: DialogEngine, lang: str, offer: str) -> None:
    conv = start(bank_engine, lang)
    advice = conv.handle_dtmf("2")
    assert intents(advice) == ["faq:lost_card"] and offer in spoken(advice)
    block = conv.handle_dtmf("1")
    assert intents(block) == ["block_card"] and isinstance(block[-1], Listen) and block[-1].secret
    other = start(bank_engine, lang)
    other.handle_dtmf("2")
    assert intents(other.handle_dtmf("0")) == ["agent"]  # other keys keep their meaning


def test_follow_up_to_an_unknown_intent_is_refused(bank_flow_data: dict[str, Any], write_flow: Any) -> None:
    bank_flow_data["follow_ups"]["faq:lost_card"]["options"]["1"] = "block_crad"
    with pytest.raises(FlowConfigError, match=r"follow_ups\.faq:lost_card\.options\.1: unknown intent 'block_crad'"):
        load_flow(write_flow(bank_flow_data))


def test_activate_the_new_card(bank_engine: DialogEngine, bank: SampleBank) -> None:
    # Wang Fang has one inactive card (8888): picked from the records, no digits asked
    assert "尾号8888的借记卡已激活" in spoken(start_then_activate(bank_engine))
    assert "没有待激活的新卡" in spoken(start_then_activate(bank_engine))  # nothing left to activate


def start_then_activate(engine: DialogEngine) -> list[Action]:
    conv = start(engine, "zh")
    conv.handle_text("激活银行卡")
    return verify(conv, CARD_1, PIN_1)


def test_credit_card_bill_then_repayment(bank_engine: DialogEngine, bank: SampleBank) -> None:
    conv = start(bank_engine)
    conv.handle_text("how much is my credit card bill")
    bill = spoken(verify(conv, CARD_2, PIN_2))
    assert "1,200 yuan" in bill and "minimum" in bill
    conv.handle_text("i want to repay my credit card")
    assert "200 yuan" in spoken(conv.handle_text("two hundred yuan"))
    assert "ending 2222" in spoken(conv.handle_dtmf("1"))
    assert bank.credit_card_bill(2).statement_balance == Decimal("1000.00")


# ---- wealth: risk level first, then products that fit -----------------------------------


def test_wealth_products_need_a_risk_assessment_first(bank_engine: DialogEngine, bank: SampleBank) -> None:
    conv = start(bank_engine)
    conv.handle_text("wealth management products")
    first_question = verify(conv, CARD_1, PIN_1)
    assert "how long" in spoken(first_question)
    conv.handle_text("more than three years")
    conv.handle_dtmf("3")
    result = conv.handle_dtmf("3")
    text = spoken(result)
    assert "risk level is 5 of 5" in text
    assert "Technology Innovation fund" in text and "not deposits and carry risk" in text
    assert bank.find_customer(CARD_1).risk_level == 5  # type: ignore[union-attr]


def test_recommendations_never_exceed_the_customers_risk_level(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine, "zh")
    conv.handle_text("理财产品")
    text = spoken(verify(conv, ACCOUNT_4, PIN_4))
    assert "现金宝货币基金" in text and "成长股票基金" not in text and "理财非存款" in text


# ---- complaints --------------------------------------------------------------------------


def test_spoken_complaint_is_classified_ticketed_and_read_back_digit_by_digit(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine)
    conv.handle_text("i want to make a complaint")
    done = conv.handle_text("you charged me twice for the same coffee")
    text = spoken(done)
    assert "about fees" in text
    ticket = conv.history[-2]["text"].split("ticket number is ")[1].split(".")[0]
    assert len(ticket.split()) == 8 and all(len(d) == 1 for d in ticket.split())
    # The call record gets the ticket and the category's name (not its spoken label).
    understood = next(a for a in done if isinstance(a, Understood))
    assert understood.slots["ticket"] == ticket.replace(" ", "") and understood.slots["category"] == "fees"
    status = start(bank_engine)
    status.handle_text("complaint status")
    assert "open and waiting" in spoken(keys(status, ticket.replace(" ", "")))


def test_complaint_by_keypad_in_chinese_and_unknown_ticket(bank_engine: DialogEngine) -> None:
    conv = start(bank_engine, "zh")
    conv.handle_dtmf("6")
    conv.handle_dtmf("1")
    assert "关于费用的投诉已受理" in spoken(conv.handle_dtmf("2"))
    conv.handle_text("投诉进度")
    assert "没有找到" in spoken(keys(conv, "12345678"))


# ---- without a bank ------------------------------------------------------------------------


def test_without_bank_records_the_caller_goes_to_an_agent(engine: DialogEngine) -> None:
    conv = start(engine)
    conv.handle_text("what is my balance")
    out = verify(conv, CARD_1, PIN_1)
    assert isinstance(out[-1], Transfer) and out[-1].reason == "bank records unavailable"
    assert PIN_1 not in str(out[-1].context)


# ---- the sample bank itself ------------------------------------------------------------------


def test_pins_are_stored_as_salted_scrypt_hashes(bank_template: Path) -> None:
    raw = bank_template.read_bytes()
    for c in DEMO_CUSTOMERS:
        assert str(c["pin"]).encode() not in raw
    a, b = hash_pin("246810"), hash_pin("246810")
    assert a != b and a.startswith("scrypt$16384$8$1$") and check_pin("246810", a) and not check_pin("246811", a)


def test_daily_limit_to_payees(bank: SampleBank) -> None:
    bank.transfer(3, PAYEE, Decimal("50000"))
    bank.transfer(3, PAYEE, Decimal("50000"))
    with pytest.raises(Exception, match="daily limit"):
        bank.transfer(3, PAYEE, Decimal("1"))


def test_bank_intents_are_in_the_flow(bank_flow: Flow) -> None:
    ops = {spec.operation for spec in bank_flow.config.intents.values() if isinstance(spec, BankIntent)}
    assert len(ops) == 12


FORM_INTENTS = [
    "transfer_money",
    "block_card",
    "activate_card",
    "credit_card_repayment",
    "risk_assessment",
    "complaint_status",
]


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("name", FORM_INTENTS)
def test_every_form_reprompts_on_silence_and_nonsense_then_escalates(
    bank_engine: DialogEngine, bank: SampleBank, name: str, lang: str
) -> None:
    if name == "activate_card":  # asked only when there are several new cards: two replacements on the way
        bank.report_lost_card(2, "5678")
        bank.report_lost_card(2, "2222")
    flow = bank_engine.flow
    spec = flow.config.intents[name]
    assert isinstance(spec, BankIntent)
    conv = start(bank_engine, lang)
    conv.handle_text(spec.examples[lang][0])
    if spec.verify:
        verify(conv, CARD_2, PIN_2)
    question = spec.slots[0].prompt[lang].split("{")[0]  # a card question lists the caller's cards after it
    assert question in spoken(conv.handle_no_input())  # no input: the question again
    garbled = conv.handle_text("purple elephants dancing" if lang == "en" else "紫色大象跳舞")
    assert question in spoken(garbled) and intents(garbled) == ["no_match"]
    conv.handle_text("green bicycles singing loudly" if lang == "en" else "紫色大象又跳舞")
    final = conv.handle_text("still purple elephants" if lang == "en" else "还是紫色大象")
    assert isinstance(final[-1], Transfer) and final[-1].reason == "not understood"
    assert PIN_2 not in str(final[-1].context) and CARD_2 not in str(final[-1].context)
