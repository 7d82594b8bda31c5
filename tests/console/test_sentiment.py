"""Caller sentiment (dialog/sentiment.py): its accuracy on labelled caller lines in English and Mandarin,
the running per-call flag, the live scorer on the real event bus writing to a real store
(hotline/sentiment_live.py, recordings/sentiment.py), and the console showing it (wallboard snapshot,
search, call page, API, dashboard)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from dialog.sentiment import CallMood, LineSentiment, detect_language, score_line
from hotline.bus import EventBus
from hotline.events import CallEnded, CallStarted, TranscriptAdded
from hotline.sentiment_live import SentimentChanged, SentimentLive
from recordings import CallStore
from recordings.sentiment import SentimentStore

from .conftest import Console, seed_call

# Caller lines labelled by hand: angry (hostile, a supervisor should look), negative (unhappy, not hostile),
# neutral (a request), positive. Written to sound like callers, several without any word of the lexicon
# verbatim, and a few hard ones (sarcasm, a polite "no", a request mentioning a problem).
LABELLED: list[tuple[str, str]] = [
    # English
    ("This is ridiculous, I have been on hold for forty minutes!", "angry"),
    ("You people are completely useless.", "angry"),
    ("I want to speak to a manager right now.", "angry"),
    ("I'm sick and tired of calling you about the same thing.", "angry"),
    ("What the hell happened to my money?", "angry"),
    ("THIS IS UNACCEPTABLE", "angry"),
    ("You charged me twice and nobody helps, I'm furious", "angry"),
    ("I'm going to close my account and call my lawyer", "angry"),
    ("Honestly this bank is a joke, worst service ever", "angry"),
    ("I am not happy with how this was handled.", "negative"),
    ("I'm a bit disappointed, the transfer still hasn't arrived.", "negative"),
    ("The app keeps failing when I log in.", "negative"),
    ("I'm worried someone used my card.", "negative"),
    ("It's been a week and nothing has changed.", "negative"),
    ("Great, another robot. Just what I needed.", "negative"),
    ("I'd like to check my account balance.", "neutral"),
    ("What are your opening hours on Saturday?", "neutral"),
    ("I lost my credit card yesterday.", "neutral"),
    ("Can I transfer money to my savings account?", "neutral"),
    ("My card number ends in four five six seven.", "neutral"),
    ("I need to report a problem with a payment.", "neutral"),
    ("Yes.", "neutral"),
    ("No, thank you.", "positive"),
    ("Thanks, that was really helpful.", "positive"),
    ("Perfect, that's exactly what I needed.", "positive"),
    ("Great service, I appreciate it.", "positive"),
    ("That's not bad at all, thank you.", "positive"),
    ("Lovely, have a nice day.", "positive"),
    # Mandarin
    ("你们这什么破银行，气死我了！", "angry"),
    ("我等了四十分钟了，太离谱了", "angry"),
    ("叫你们经理出来！", "angry"),
    ("我要投诉你们，乱扣我的钱", "angry"),
    ("你们简直就是骗子", "angry"),
    ("我受够了，每次打电话都没用", "angry"),
    ("你们到底怎么回事？岂有此理", "angry"),
    ("我对这个处理结果不满意", "negative"),
    ("转账还是没到账，有点着急", "negative"),
    ("手机银行又登不上去了，真郁闷", "negative"),
    ("我担心我的卡被盗刷了", "negative"),
    ("这个流程太麻烦了", "negative"),
    ("我想查一下余额", "neutral"),
    ("你们周六几点开门？", "neutral"),
    ("我的信用卡丢了", "neutral"),
    ("帮我转账到储蓄账户", "neutral"),
    ("卡号后四位是四五六七", "neutral"),
    ("是的", "neutral"),
    ("我想开一个新账户", "neutral"),
    ("谢谢你，说得很清楚", "positive"),
    ("太好了，问题解决了", "positive"),
    ("你们的服务还不错", "positive"),
    ("非常感谢，辛苦了", "positive"),
    ("好的，明白了，谢谢", "positive"),
]


# HELD_OUT was written after tuning on LABELLED and measured once (en 79 %, zh 71 %, angry precision 1/2,
# recall 1/8); the lexicon was then widened (synonyms, "you"/你们 aimed hostility), so it is tuned now too.
# FRESH was written after that and never tuned on: the figure to quote (docs/CONSOLE.md).
HELD_OUT: list[tuple[str, str]] = [
    ("I've called five times and every time I get cut off, this is absurd", "angry"),
    ("Stop wasting my time and put me through to a human", "angry"),
    ("You stole my money, I'll report you to the regulator", "angry"),
    ("Your bank is terrible and your staff are clueless", "angry"),
    ("I'm really annoyed that the fee was taken without warning", "negative"),
    ("The payment bounced and I don't know why", "negative"),
    ("I'm confused about this charge on my statement", "negative"),
    ("I'd like to order a new cheque book", "neutral"),
    ("How much is the annual fee for the gold card?", "neutral"),
    ("Please block my card", "neutral"),
    ("Could you tell me my last five transactions", "neutral"),
    ("That sorted it, cheers", "positive"),
    ("Brilliant, thanks for your help", "positive"),
    ("You've been very patient, thank you", "positive"),
    ("我已经打了五次电话了，你们到底管不管", "angry"),
    ("别跟我说这些废话，我要人工", "angry"),
    ("你们凭什么扣我的年费", "angry"),
    ("这服务太差劲了，我要销户", "angry"),
    ("我有点不放心，这笔钱是不是被转走了", "negative"),
    ("等了好久都没有人接", "negative"),
    ("这个手续费我不太理解", "negative"),
    ("我想办一张借记卡", "neutral"),
    ("请问最近的网点在哪里", "neutral"),
    ("帮我查一下上个月的账单", "neutral"),
    ("我要挂失", "neutral"),
    ("好的，谢谢您的帮助", "positive"),
    ("这样就可以了，很方便", "positive"),
    ("你们客服态度很好", "positive"),
]


FRESH: list[tuple[str, str]] = [
    ("Are you serious? I told the last guy all of this already!", "angry"),
    ("This is the worst experience I've had with any company", "angry"),
    ("Nobody at this bank knows what they're doing", "angry"),
    ("If this isn't fixed today I'm moving all my money elsewhere", "angry"),
    ("I keep getting an error when I try to pay my bill", "negative"),
    ("Unfortunately the card still doesn't work abroad", "negative"),
    ("I'm a little concerned about a login I don't recognise", "negative"),
    ("I want to increase my daily withdrawal limit", "neutral"),
    ("When will my new card arrive?", "neutral"),
    ("My account number is one two three four five", "neutral"),
    ("Can I speak to someone about a mortgage?", "neutral"),
    ("Wonderful, you've been a great help", "positive"),
    ("OK that's fine, thanks", "positive"),
    ("你们这是在浪费我的时间", "angry"),
    ("我说了三遍了，你们听不懂吗？", "angry"),
    ("再这样我就去银监会投诉", "angry"),
    ("你们的系统整天出问题，烂透了", "angry"),
    ("我的工资怎么还没到账", "negative"),
    ("密码输错了好几次，卡被锁了，挺烦的", "negative"),
    ("这个利率有点低啊", "negative"),
    ("我想了解一下理财产品", "neutral"),
    ("怎么修改预留手机号", "neutral"),
    ("我的卡快到期了", "neutral"),
    ("问题解决了，谢谢你们", "positive"),
    ("服务很周到，点赞", "positive"),
]


def _evaluate(lines: list[tuple[str, str]]) -> tuple[dict[str, float], float, float, list[Any]]:
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    tp = fp = fn = 0
    wrong = []
    for text, gold in lines:
        got = score_line(text).label
        lang = detect_language(text)
        total[lang] += 1
        if _coarse(got) == _coarse(gold):
            right[lang] += 1
        else:
            wrong.append((text, gold, got))
        tp += got == "angry" and gold == "angry"
        fp += got == "angry" and gold != "angry"
        fn += got != "angry" and gold == "angry"
    return ({lang: right[lang] / total[lang] for lang in total}, tp / max(1, tp + fp), tp / max(1, tp + fn), wrong)


def test_accuracy_on_lines_never_tuned_on() -> None:
    for name, lines in (("held out (tuned once)", HELD_OUT), ("fresh", FRESH)):
        accuracy, precision, recall, wrong = _evaluate(lines)
        print(f"{name}: accuracy {accuracy}, angry precision {precision:.2f} recall {recall:.2f}; wrong: {wrong}")
    assert min(accuracy.values()) >= 0.6, wrong


def _coarse(label: str) -> str:
    return "negative" if label in ("angry", "negative") else label


def test_accuracy_on_labelled_lines_in_both_languages() -> None:
    results = {"en": Counter[str](), "zh": Counter[str]()}
    angry_tp = angry_fp = angry_fn = 0
    wrong = []
    for text, gold in LABELLED:
        got = score_line(text).label
        lang = detect_language(text)
        ok = _coarse(got) == _coarse(gold)
        results[lang]["right" if ok else "wrong"] += 1
        if not ok:
            wrong.append((text, gold, got))
        angry_tp += got == "angry" and gold == "angry"
        angry_fp += got == "angry" and gold != "angry"
        angry_fn += got != "angry" and gold == "angry"
    for lang, c in results.items():
        print(f"{lang}: {c['right']}/{c['right'] + c['wrong']} right (negative/neutral/positive)")
    print(f"angry: precision {angry_tp}/{angry_tp + angry_fp}, recall {angry_tp}/{angry_tp + angry_fn}")
    print("wrong:", wrong)
    for lang, c in results.items():
        assert c["right"] / (c["right"] + c["wrong"]) >= 0.8, (lang, wrong)
    assert angry_tp / (angry_tp + angry_fp) >= 0.8 and angry_tp / (angry_tp + angry_fn) >= 0.7, wrong


def test_negation_intensifiers_and_shouting_move_the_score() -> None:
    assert score_line("I am happy").score > 0 > score_line("I am not happy").score
    assert score_line("not bad").score > 0 > score_line("bad").score
    assert score_line("very disappointed").score < score_line("disappointed").score < 0
    assert score_line("THIS IS USELESS").score < score_line("this is useless").score
    assert score_line("useless!!").score < score_line("useless").score
    assert score_line("我很满意").score > 0 > score_line("我不满意").score
    assert score_line("不错").score > 0 > score_line("错").score
    assert score_line("非常失望").score < score_line("失望").score < 0
    assert score_line("no, thank you").score > 0  # a polite no is not a negated thanks
    assert score_line("").score == 0.0 and score_line("   ").score == 0.0
    with pytest.raises(TypeError, match="text must be str"):
        score_line(None)  # type: ignore[arg-type]


def test_the_running_mood_flags_a_call_that_turns_angry_and_remembers_it() -> None:
    mood = CallMood()
    assert mood.add(LineSentiment(0.0)) is False and not mood.angry and mood.label == "neutral"
    mood.add(score_line("I was charged twice this month."))
    assert not mood.angry
    assert mood.add(score_line("This is ridiculous, I want to speak to a manager!")) is True
    assert mood.angry and mood.label == "angry" and mood.minimum < -0.9
    mood.add(score_line("OK, thank you, that solves it."))
    mood.add(score_line("Thanks a lot."))
    assert not mood.angry and mood.ever_angry and mood.lines == 5


class _Sessions:
    def __init__(self, *ids: str) -> None:
        self.ids = set(ids)

    def __call__(self, call_id: str) -> bool:
        return call_id in self.ids


def _say(bus: EventBus, call_id: str, speaker: str, text: str) -> None:
    bus.publish(TranscriptAdded(call_id, speaker, text, 1.0, 0.9))


def test_live_scorer_publishes_changes_and_keeps_the_mood_with_the_call(tmp_path: Any) -> None:
    store = CallStore(f"sqlite:///{tmp_path / 'h.db'}")
    try:
        bus = EventBus()
        seen: list[Any] = []
        bus.subscribe(seen.append)
        live = SentimentLive(bus, SentimentStore(store.engine), is_local=_Sessions("c1"))
        store.start_call("c1", sip_call_id="c1@t", caller="13800138000", called="95555")
        bus.publish(CallStarted("c1", "13800138000", "95555"))
        _say(bus, "c1", "system", "Welcome. You are useless, said nobody.")  # system lines are not scored
        _say(bus, "c1", "caller", "I want to check my balance")
        _say(bus, "c1", "caller", "[key hidden]")  # markers are not speech
        _say(bus, "c1", "caller", "your app is down again")
        _say(bus, "c1", "caller", "This is ridiculous, I'm furious!")
        _say(bus, "c-remote", "caller", "You are all idiots")  # another worker's call: it scores its own
        moods = [e for e in seen if isinstance(e, SentimentChanged)]
        assert moods[0].label == "neutral" and moods[-1].angry and moods[-1].label == "angry"
        assert all(m.call_id == "c1" for m in moods) and moods[-1].to_dict()["topic"] == "call.sentiment"
        row = SentimentStore(store.engine).get("c1")
        assert row is not None and row["angry"] and row["label"] == "angry" and row["lines"] == 3
        _say(bus, "c1", "caller", "OK thank you, that is very helpful")
        _say(bus, "c1", "caller", "thanks a lot, great")
        bus.publish(CallEnded("c1", "goodbye", "caller_hangup", 30.0))
        row = SentimentStore(store.engine).get("c1")
        assert row is not None and row["lines"] == 5 and row["angry"] and row["label"] != "angry"  # flagged once
        assert "c1" not in live.moods and SentimentStore(store.engine).get("c-remote") is None
        with pytest.raises(ValueError, match="label must be one of"):
            SentimentStore(store.engine).save("c1", score=0.0, minimum=0.0, lines=1, label="furious", angry=False)
        with pytest.raises(ValueError, match="scores must be in"):
            SentimentStore(store.engine).save("c1", score=3.0, minimum=0.0, lines=1, label="angry", angry=True)
        assert SentimentStore(store.engine).get("c1")["lines"] == 5  # type: ignore[index]  # nothing lost
        live.stop()
        _say(bus, "c1", "caller", "idiots")
        assert "c1" not in live.moods
    finally:
        store.close()


def test_a_failed_write_is_logged_and_the_events_go_on(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    store = CallStore(f"sqlite:///{tmp_path / 'h.db'}")
    bus = EventBus()
    seen: list[Any] = []
    bus.subscribe(seen.append)
    SentimentLive(bus, SentimentStore(store.engine))
    store.close()
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE call_sentiment")
    _say(bus, "c9", "caller", "you are completely useless")
    assert any(isinstance(e, SentimentChanged) and e.angry for e in seen)
    assert "call c9: sentiment not saved" in caplog.text


async def test_console_shows_the_mood_live_in_search_on_the_call_page_and_dashboard(console: Console) -> None:
    seed_call(console)  # CALL_ID, ended
    from .conftest import CALL_ID

    SentimentLive(console.bus, SentimentStore(console.store.engine))
    assert (await console.login("sam")).status == 302
    ws = await console.client.ws_connect("/ws/events")
    try:
        snap = await ws.receive_json(timeout=5)
        assert snap["topic"] == "snapshot"
        console.bus.publish(CallStarted("live-1", "13900000000", "95555"))
        _say(console.bus, "live-1", "caller", "你们这什么破银行，气死我了！")
        got = [await ws.receive_json(timeout=5) for _ in range(3)]
        mood = [m for m in got if m["topic"] == "call.sentiment"]
        assert mood and mood[0]["angry"] is True and mood[0]["label"] == "angry" and mood[0]["call_id"] == "live-1"
    finally:
        await ws.close()
    ws = await console.client.ws_connect("/ws/events")
    snap = await ws.receive_json(timeout=5)
    await ws.close()
    assert [c["sentiment"]["angry"] for c in snap["calls"] if c["call_id"] == "live-1"] == [True]
    _say(console.bus, "live-1", "caller", "you are completely useless")  # still angry: counted once
    metrics = await (await console.client.get("/metrics")).text()
    assert "hotline_angry_calls_total 1.0" in metrics

    # the seeded call, scored as the live scorer does for calls that ran here
    SentimentStore(console.store.engine).save(CALL_ID, score=-0.7, minimum=-0.95, lines=2, label="angry", angry=True)
    page = await (await console.client.get("/calls?q=credit")).text()
    assert 'data-mood="angry"' in page and 'data-angry="true"' in page
    page = await (await console.client.get(f"/calls/{CALL_ID}")).text()
    assert 'id="call-mood"' in page and "-0.70" in page and "-0.95" in page
    api = await (await console.client.get("/api/calls?q=credit")).json()
    assert api["calls"][0]["sentiment"]["angry"] is True
    record = await (await console.client.get(f"/api/calls/{CALL_ID}")).json()
    assert record["call"]["sentiment"]["label"] == "angry"
    page = await (await console.client.get("/dashboard")).text()
    assert '<b id="mood-angry">1</b>' in page and f'href="/calls/{CALL_ID}"' in page
