"""The chat channel over HTTP: the same answers as the phone (same engine, text level), sessions per
user that expire, rate and size limits, CSRF, bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.kb_console import KbConsole, kb_console

from dialog import Say

PASSWORDS = {"anna": "blue-harbour-7", "sam": "green-valley-42", "ada": "red-mountain-333"}


@pytest.fixture
async def kc(tmp_path: Path, users_db: Path) -> AsyncIterator[KbConsole]:
    async with kb_console(tmp_path, users_db) as c:
        yield c


async def chat(c: KbConsole, token: str, session: str, text: str | None, lang: str | None = "en",
               status: int = 200) -> dict[str, Any]:
    r = await c.client.post("/api/chat", json={"session": session, "text": text, "lang": lang},
                            headers={"X-CSRF-Token": token})
    body = await r.json()
    assert r.status == status, body
    return dict(body)


@pytest.mark.parametrize(("lang", "question"), [("en", "when are you open on saturday"), ("zh", "信用卡年费多少"),
                                                ("en", "I lost my card")])
async def test_chat_answers_as_the_phone_does(kc: KbConsole, lang: str, question: str) -> None:
    token = await kc.login("anna", PASSWORDS["anna"])
    conv = kc.live.engine.new_conversation("phone", "13800138000", lang=lang)
    greeting = [a.text for a in conv.start() if isinstance(a, Say)]
    phone = [a.text for a in conv.handle_text(question, 1.0) if isinstance(a, Say)]
    opened = await chat(kc, token, "s1", None, lang)
    assert opened["texts"] == greeting and opened["lang"] == lang and not opened["ended"]
    reply = await chat(kc, token, "s1", question, lang)
    assert reply["texts"] == phone and reply["restarted"] is False


async def test_chat_follows_a_publish_and_keys_work(kc: KbConsole) -> None:
    token = await kc.login("anna", PASSWORDS["anna"])
    new = "Open every day from 7 am to 11 pm."
    kc.kb.edit("opening_hours", answer={"en": new})
    kc.kb.publish()
    kc.live.refresh()
    await chat(kc, token, "k1", None)
    reply = await chat(kc, token, "k1", "1")  # a digit is a keypad key: 1 = opening hours
    assert reply["texts"][0] == new
    bye = await chat(kc, token, "k1", "goodbye")
    assert bye["ended"] is True
    # An ended chat is forgotten: the next message starts a new one with the greeting.
    again = await chat(kc, token, "k1", "hello")
    assert again["restarted"] is True and again["texts"][0].startswith("Welcome")


async def test_a_verification_secret_is_flagged_so_the_page_masks_it(kc: KbConsole) -> None:
    token = await kc.login("anna", PASSWORDS["anna"])
    await chat(kc, token, "v1", None)
    asked = await chat(kc, token, "v1", "what is my balance")
    assert asked["secret"] is True and "card number" in asked["texts"][0]


async def test_sessions_belong_to_their_user_and_expire(kc: KbConsole) -> None:
    token = await kc.login("anna", PASSWORDS["anna"])
    await chat(kc, token, "mine", None)
    hub = _hub(kc)
    assert list(hub.last_seen) == ["anna/mine"]
    await kc.logout()
    token2 = await kc.login("sam", PASSWORDS["sam"])
    other = await chat(kc, token2, "mine", "when are you open")
    assert other["restarted"] is True, "sam cannot continue anna's chat: his is a new one"
    assert sorted(hub.last_seen) == ["anna/mine", "sam/mine"]
    hub.idle_s = 0.0
    assert hub.expire() == 2 and not hub.sessions and not hub.last_seen


def _hub(kc: KbConsole) -> Any:
    from console.context import CONSOLE

    return kc.client.app[CONSOLE].chat


async def test_chat_refuses_bad_input_floods_and_missing_csrf(kc: KbConsole) -> None:
    anon = await kc.client.post("/api/chat", json={"session": "a", "text": "hi"})
    assert anon.status == 401
    token = await kc.login("anna", PASSWORDS["anna"])
    no_csrf = await kc.client.post("/api/chat", json={"session": "a", "text": "hi"})
    assert no_csrf.status == 403
    assert "session" in (await chat(kc, token, "../etc", "hi", status=400))["error"]
    assert "text" in (await chat(kc, token, "a", "x" * 501, status=400))["error"]
    assert "lang" in (await chat(kc, token, "a", "hi", "fr", status=400))["error"]
    r = await kc.client.post("/api/chat", data="not json", headers={"X-CSRF-Token": token,
                                                                    "Content-Type": "application/json"})
    assert r.status == 400
    hub = _hub(kc)
    hub.rate_per_s, hub.burst = 0.0, 3.0
    hub.buckets.clear()
    statuses = []
    for _ in range(5):
        r = await kc.client.post("/api/chat", json={"session": "a", "text": None, "lang": "en"},
                                 headers={"X-CSRF-Token": token})
        statuses.append(r.status)
    assert statuses == [200, 200, 200, 429, 429]
    hub.rate_per_s, hub.burst, hub.max_per_user = 100.0, 100.0, 2
    hub.buckets.clear()
    await chat(kc, token, "b", None)
    assert "too many open chats" in (await chat(kc, token, "c", None, status=429))["error"]


async def test_chat_page_loads_for_a_logged_in_user(kc: KbConsole) -> None:
    await kc.login("anna", PASSWORDS["anna"])
    page = await (await kc.client.get("/chat?lang=zh")).text()
    assert 'id="chat-form"' in page and 'data-enabled="yes"' in page and "/static/chat.js" in page
    js = await kc.client.get("/static/chat.js")
    assert js.status == 200 and "innerHTML" not in (await js.text()).split("never innerHTML", 1)[1]
