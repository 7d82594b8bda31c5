"""Scripted text conversations against the shipped bank flow, in English and Chinese."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dialog import Action, Conversation, DialogEngine, Hangup, Listen, Say, Transfer, Understood, load_flow
from dialog.actions import FINAL_ACTIONS

HOURS_EN = "9 am to 5 pm"
HOURS_ZH = "上午9点到下午5点"


def says(actions: list[Action]) -> list[Say]:
    return [a for a in actions if isinstance(a, Say)]


def spoken(actions: list[Action]) -> str:
    return " ".join(s.text for s in says(actions))


def understood(actions: list[Action]) -> list[str]:
    return [a.intent for a in actions if isinstance(a, Understood)]


def assert_turn_ends_properly(actions: list[Action]) -> None:
    assert actions, "a turn must return actions"
    assert isinstance(actions[-1], FINAL_ACTIONS)
    assert not any(isinstance(a, FINAL_ACTIONS) for a in actions[:-1])


# ---- greeting and language ---------------------------------------------------------------


def test_greeting_welcomes_in_english_and_offers_chinese_on_9(engine: DialogEngine) -> None:
    conv = engine.new_conversation("c-greet")
    actions = conv.start()
    assert_turn_ends_properly(actions)
    first, offer = says(actions)
    assert first.lang == "en" and "Welcome to Example Bank" in first.text and "0" in first.text
    assert offer.lang == "zh" and "中文服务请按9" in offer.text
    assert conv.lang == "en" and conv.outcome == "in_progress"


def test_dtmf_9_switches_to_chinese_and_menu_answers_follow(conv: Conversation) -> None:
    actions = conv.handle_dtmf("9")
    assert conv.lang == "zh"
    assert all(s.lang == "zh" for s in says(actions)) and "中文" in spoken(actions)
    assert isinstance(actions[-1], Listen)
    assert HOURS_ZH in spoken(conv.handle_dtmf("1"))


def test_dtmf_8_switches_back_to_english(conv: Conversation) -> None:
    conv.handle_dtmf("9")
    conv.handle_dtmf("8")
    assert conv.lang == "en"


def test_caller_speaking_chinese_is_answered_in_chinese(conv: Conversation) -> None:
    actions = conv.handle_text("你们几点开门")
    assert understood(actions) == ["faq:opening_hours"]
    assert conv.lang == "zh"
    answer, anything_else = says(actions)
    assert answer.lang == "zh" and HOURS_ZH in answer.text
    assert "还有其他" in anything_else.text


# ---- FAQ answers -------------------------------------------------------------------------


def test_opening_hours_question_is_answered_then_asks_anything_else(conv: Conversation) -> None:
    actions = conv.handle_text("what are your opening hours")
    assert understood(actions) == ["faq:opening_hours"]
    assert HOURS_EN in spoken(actions)
    assert "anything else" in says(actions)[-1].text
    assert isinstance(actions[-1], Listen)
    assert conv.outcome == "answered"


def test_dtmf_1_gives_opening_hours_and_dtmf_2_lost_card_help(conv: Conversation) -> None:
    assert HOURS_EN in spoken(conv.handle_dtmf("1"))
    assert "lock it" in spoken(conv.handle_dtmf("2"))


@pytest.mark.parametrize(
    ("text", "intent", "phrase"),
    [
        ("where is the nearest branch", "faq:branch_locations", "Harbour Road"),
        ("what are your exchange rates", "faq:exchange_rates", "today's rates"),
        ("is there an annual fee on my debit card", "faq:card_fees", "no annual fee"),
        ("I lost my card", "faq:lost_card", "lock it"),
        ("how can I open an account", "faq:open_account", "ID card or passport"),
        ("最近的网点在哪里", "faq:branch_locations", "海港路1号"),
        ("今天美元汇率是多少", "faq:exchange_rates", "牌价"),
        ("信用卡年费多少钱", "faq:card_fees", "年费"),
        ("我的银行卡丢了", "faq:lost_card", "冻结"),
        ("开户需要什么材料", "faq:open_account", "身份证"),
    ],
)
def test_faq_questions_are_answered_from_the_knowledge_base(
    conv: Conversation, text: str, intent: str, phrase: str
) -> None:
    actions = conv.handle_text(text)
    assert understood(actions) == [intent]
    assert phrase in spoken(actions)


def test_caller_can_ask_several_questions_in_one_call(conv: Conversation) -> None:
    conv.handle_text("what time do you open")
    actions = conv.handle_text("and how do I open an account")
    assert understood(actions) == ["faq:open_account"]
    assert isinstance(actions[-1], Listen) and not conv.ended


# ---- transfer to a person ----------------------------------------------------------------


@pytest.mark.parametrize("request_text", ["I want to talk to a person", "转人工"])
def test_asking_for_a_person_transfers_to_general_with_what_was_said(conv: Conversation, request_text: str) -> None:
    conv.handle_text("what are your opening hours")
    actions = conv.handle_text(request_text)
    transfer = actions[-1]
    assert isinstance(transfer, Transfer)
    assert transfer.queue == "general"
    assert understood(actions) == ["agent"]
    caller_lines = [line["text"] for line in transfer.context["history"] if line["speaker"] == "caller"]
    assert caller_lines == ["what are your opening hours", request_text]
    assert transfer.context["intent"] == "agent"
    assert transfer.context["caller"] == "+8613800000000"
    assert transfer.context["language"] == conv.lang
    assert says(actions)[-1].lang == conv.lang  # the hold announcement is in the caller's language
    assert conv.outcome == "transferred" and conv.ended


def test_dtmf_0_transfers_to_an_agent(conv: Conversation) -> None:
    actions = conv.handle_dtmf("0")
    assert isinstance(actions[-1], Transfer) and actions[-1].queue == "general"
    assert "connect you" in spoken(actions)


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("what is my balance", "balance"),
        ("show me my recent transactions", "recent_transactions"),
        ("I want to transfer money to my mother", "transfer_money"),
        ("查余额", "balance"),
        ("最近的交易记录", "recent_transactions"),
        ("我要转账", "transfer_money"),
    ],
)
def test_account_specific_requests_ask_for_verification_first(conv: Conversation, text: str, intent: str) -> None:
    actions = conv.handle_text(text)
    assert understood(actions) == [intent]
    listen = actions[-1]
    assert isinstance(listen, Listen) and listen.secret and listen.digits_max == 19
    assert "card number or account number" in spoken(actions) or "银行卡号或账号" in spoken(actions)


@pytest.mark.parametrize(
    ("text", "question"), [("I want to make a complaint", "what happened"), ("我要投诉", "发生了什么")]
)
def test_complaints_ask_what_happened(conv: Conversation, text: str, question: str) -> None:
    actions = conv.handle_text(text)
    assert understood(actions) == ["complaint"] and question in spoken(actions)
    assert isinstance(actions[-1], Listen) and not actions[-1].secret


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("hello", "How can I help"),
        ("what can you do", "exchange rates"),
        ("你好", "有什么可以帮您"),
        ("你能做什么", "汇率"),
    ],
)
def test_greetings_and_help_requests_get_an_answer_and_the_call_goes_on(
    conv: Conversation, text: str, phrase: str
) -> None:
    actions = conv.handle_text(text)
    assert phrase in spoken(actions) and isinstance(actions[-1], Listen)


# ---- no input, no match ------------------------------------------------------------------


def test_silence_is_reprompted_twice_then_transferred(conv: Conversation) -> None:
    first = conv.handle_no_input()
    second = conv.handle_no_input()
    assert isinstance(first[-1], Listen) and isinstance(second[-1], Listen)
    assert "didn't hear" in spoken(first) and "still can't hear" in spoken(second)
    third = conv.handle_no_input()
    assert isinstance(third[-1], Transfer)
    assert third[-1].reason == "no input"
    assert conv.outcome == "transferred"


def test_no_input_count_restarts_after_the_caller_speaks(conv: Conversation) -> None:
    conv.handle_no_input()
    conv.handle_no_input()
    conv.handle_text("what time do you open")
    assert isinstance(conv.handle_no_input()[-1], Listen)


def test_no_input_can_end_with_hangup_when_configured(
    write_flow: Callable[[dict[str, Any]], Path], bank_flow_data: dict[str, Any]
) -> None:
    bank_flow_data["no_input"] = {"max_reprompts": 1, "then": "hangup", "reason": "caller silent"}
    conv = DialogEngine(load_flow(write_flow(bank_flow_data))).new_conversation("c-silent")
    conv.start()
    assert isinstance(conv.handle_no_input()[-1], Listen)
    actions = conv.handle_no_input()
    assert actions[-1] == Hangup("caller silent")
    assert "Goodbye" in spoken(actions)


def test_nonsense_is_reprompted_twice_then_transferred(conv: Conversation) -> None:
    first = conv.handle_text("banana helicopter")
    assert understood(first) == ["no_match"] and isinstance(first[-1], Listen)
    assert "didn't understand" in spoken(first)
    second = conv.handle_text("banana helicopter")
    assert isinstance(second[-1], Listen) and "opening hours" in spoken(second)  # second prompt lists options
    third = conv.handle_text("banana helicopter")
    assert isinstance(third[-1], Transfer) and third[-1].reason == "not understood"


def test_chinese_nonsense_gets_a_chinese_reprompt(conv: Conversation) -> None:
    actions = conv.handle_text("香蕉直升机")
    assert understood(actions) == ["no_match"]
    assert says(actions)[0].lang == "zh"


def test_knowledge_search_answers_when_no_intent_is_sure_enough(
    write_flow: Callable[[dict[str, Any]], Path], bank_flow_data: dict[str, Any]
) -> None:
    bank_flow_data["nlu"].update(threshold=0.99, knowledge_fallback_threshold=0.5)
    conv = DialogEngine(load_flow(write_flow(bank_flow_data))).new_conversation("c-kb")
    conv.start()
    actions = conv.handle_text("what are your opening hours")
    assert understood(actions) == ["faq:opening_hours"] and HOURS_EN in spoken(actions)


def test_low_asr_confidence_is_treated_as_not_understood(conv: Conversation) -> None:
    actions = conv.handle_text("what are your opening hours", confidence=0.05)
    assert understood(actions) == ["no_match"]
    assert HOURS_EN not in spoken(actions)


# ---- goodbye, repeat, odd input ----------------------------------------------------------


@pytest.mark.parametrize("text", ["goodbye", "no thanks, that's all", "再见", "没有了，谢谢"])
def test_goodbye_hangs_up_politely(conv: Conversation, text: str) -> None:
    actions = conv.handle_text(text)
    assert isinstance(actions[-1], Hangup)
    assert "Goodbye" in spoken(actions) or "再见" in spoken(actions)
    assert conv.outcome == "goodbye"


def test_goodbye_after_an_answer_counts_as_answered(conv: Conversation) -> None:
    conv.handle_text("what are your opening hours")
    conv.handle_text("no thank you")
    assert conv.outcome == "answered" and conv.ended


@pytest.mark.parametrize("how", ["say that again", "*"])
def test_repeat_says_the_last_prompt_again(conv: Conversation, how: str) -> None:
    answer = says(conv.handle_text("what are your opening hours"))
    actions = conv.handle_dtmf(how) if how == "*" else conv.handle_text(how)
    assert says(actions) == answer
    assert isinstance(actions[-1], Listen)


@pytest.mark.parametrize("digit", ["#", "A", "D", "", "12", "x", "\x00"])
def test_unknown_key_gets_a_spoken_fallback(conv: Conversation, digit: str) -> None:
    actions = conv.handle_dtmf(digit)
    assert "not an option" in spoken(actions)
    assert isinstance(actions[-1], Listen)


def test_empty_text_counts_as_silence(conv: Conversation) -> None:
    actions = conv.handle_text("   ...  ")
    assert "didn't hear" in spoken(actions)


def test_missing_text_from_a_failed_recogniser_counts_as_silence(conv: Conversation) -> None:
    actions = conv.handle_text(None)  # type: ignore[arg-type]
    assert "didn't hear" in spoken(actions) and isinstance(actions[-1], Listen)


def test_very_long_text_is_truncated_not_fatal(conv: Conversation, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dialog"):
        actions = conv.handle_text("what are your opening hours " + "blah " * 20_000)
    assert_turn_ends_properly(actions)
    assert "truncated" in caplog.text
    assert all(len(line["text"]) <= 300 for line in conv.history)


def test_input_after_the_call_ended_repeats_the_final_action(conv: Conversation) -> None:
    final = conv.handle_dtmf("0")[-1]
    assert conv.handle_text("hello?") == [final]
    assert conv.handle_dtmf("1") == [final]
    assert conv.handle_no_input() == [final]


def test_every_turn_ends_with_listen_transfer_or_hangup(engine: DialogEngine) -> None:
    rng = random.Random(7)
    inputs = [
        ("text", "what are your opening hours"),
        ("text", "banana"),
        ("text", ""),
        ("text", "你好"),
        ("text", "☃☃☃ \u200b"),
        ("text", "9" * 500),
        ("dtmf", "*"),
        ("dtmf", "#"),
        ("dtmf", "9"),
        ("dtmf", "1"),
        ("dtmf", "B"),
        ("silence", ""),
        ("text", "say that again"),
        ("text", "yes"),
    ]
    for call in range(40):
        conv = engine.new_conversation(f"fuzz-{call}")
        assert_turn_ends_properly(conv.start())
        for _ in range(12):
            kind, value = rng.choice(inputs)
            if kind == "text":
                actions = conv.handle_text(value, confidence=rng.random())
            elif kind == "dtmf":
                actions = conv.handle_dtmf(value)
            else:
                actions = conv.handle_no_input()
            assert_turn_ends_properly(actions)


def test_log_lines_carry_the_call_id(engine: DialogEngine, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="dialog"):
        conv = engine.new_conversation("call-42")
        conv.start()
        conv.handle_text("what are your opening hours")
    lines = [r for r in caplog.records if r.name == "dialog.engine"]
    assert lines and all(getattr(r, "call_id", None) == "call-42" and "call-42" in r.getMessage() for r in lines)
