"""Unanswered questions (hotline/unanswered.py, /admin/kb/unanswered): the hotline's log clustered by
meaning in English (MiniLM) and Chinese (character n-grams), shown to supervisors and admins, and an
admin starting a knowledge-base entry from a group."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.kb_console import KbConsole, kb_console

from hotline.unanswered import Question, cluster_questions, default_encoder

from .conftest import PASSWORDS

GROUPS = {
    "mortgage": ["what are your mortgage rates", "how much interest do you charge on a home loan",
                 "current mortgage interest rate please", "what's the rate for a mortgage right now"],
    "address": ["how do I change my address", "I moved house and need to update my address",
                "update my home address on the account"],
    "child": ["can I open an account for my son", "how do I open a bank account for my child", "accounts for kids"],
    "fx": ["do you exchange foreign currency", "I need euros for my holiday", "can I buy us dollars at the branch"],
    "zh_mortgage": ["房贷利率是多少", "现在房贷利息多少", "买房贷款利率怎么算"],
    "zh_address": ["怎么修改我的地址", "我搬家了要改地址", "更新家庭住址"],
    "zh_fx": ["可以换外币吗", "我想换点美元", "外币兑换在哪里办"],
    "zh_child": ["能给孩子开户吗", "小孩可以办银行卡吗"],
}


def _questions() -> list[Question]:
    return [Question(t, "zh" if g.startswith("zh") else "en", f"call-{g}-{i}", f"2026-12-01T10:0{i}:00")
            for g, texts in GROUPS.items() for i, t in enumerate(texts)]


def test_paraphrases_group_together_and_topics_stay_apart() -> None:
    gold = {t: g for g, texts in GROUPS.items() for t in texts}
    clusters = cluster_questions(_questions(), default_encoder())
    found = [{gold[e["text"]] for e in c.examples} for c in clusters]
    print([(c.lang, c.count, c.label) for c in clusters])
    assert all(len(topics) == 1 for topics in found), found  # no group mixes two topics
    english = [c for c in clusters if c.lang == "en"]
    assert sorted(c.count for c in english) == [3, 3, 3, 4]  # every English paraphrase found its group
    chinese = [c for c in clusters if c.lang == "zh"]
    assert sorted(c.count for c in chinese) == [2, 3, 3, 3]  # 孩子/小孩, 地址/住址, 利息/利率 folded: 4 topics
    assert clusters[0].count == 4 and clusters[0].label in GROUPS["mortgage"]
    assert cluster_questions([]) == []
    one = cluster_questions([Question("hello there", "en", "c1", "t")])
    assert [(c.count, c.label) for c in one] == [(1, "hello there")]


# Chinese questions never tuned on (docs/CONSOLE.md "Unanswered questions"): HELD_OUT_ZH was written before any
# change to the Chinese grouping, ZH_LATER after the first sweep (the question-word stop list came after both).
HELD_OUT_ZH = {
    "lost": ["我的卡丢了", "银行卡不见了怎么办", "信用卡遗失了要挂失"],
    "balance": ["查一下余额", "我卡里还有多少钱", "账户余额是多少"],
    "hours": ["你们几点开门", "营业时间是什么时候", "周末上班吗"],
    "limit": ["转账限额是多少", "一天最多能转多少钱", "转账额度怎么提高"],
    "password": ["密码忘了怎么办", "我想重置密码", "忘记登录密码"],
    "loan": ["我想申请个人贷款", "贷款需要什么材料", "能借多少钱"],
    "cancel": ["我要注销信用卡", "怎么销卡", "不想用这张卡了"],
    "statement": ["怎么查账单", "上个月的账单在哪看", "信用卡对账单"],
    "branch": ["最近的网点在哪", "附近有没有你们的支行", "离我最近的银行在哪里"],
}
ZH_LATER = {
    "fee": ["年费怎么收", "这张卡有没有年费", "免年费的条件是什么"],
    "wealth": ["有什么理财产品", "理财收益怎么样", "我想买点理财"],
    "mobile": ["手机银行登不上", "手机银行怎么开通", "app打不开了"],
    "complain": ["我要投诉", "你们服务太差了我要投诉", "投诉电话是多少"],
}


def test_chinese_questions_never_tuned_on_are_seldom_mixed_across_topics() -> None:
    """Measured (docs/CONSOLE.md): held out 18 groups for 9 topics, 1 mixing two (挂失 with 注销信用卡: both
    "信用卡"); later 5 groups for 4 topics, none mixed. Character 1-2-grams before: 17 groups with 5 mixed, 9
    with 1 mixed."""
    for topics, most_groups, most_mixed in ((HELD_OUT_ZH, 19, 1), (ZH_LATER, 5, 0)):
        gold = {t: g for g, texts in topics.items() for t in texts}
        clusters = cluster_questions([Question(t, "zh", f"c{i}", "t") for i, t in enumerate(gold)])
        mixed = [[e["text"] for e in c.examples] for c in clusters if len({gold[e["text"]] for e in c.examples}) > 1]
        assert len(mixed) <= most_mixed, mixed
        assert len(topics) <= len(clusters) <= most_groups, [c.label for c in clusters]  # synonyms still split some


@pytest.fixture
async def kc(tmp_path: Path, users_db: Path) -> AsyncIterator[KbConsole]:
    async with kb_console(tmp_path, users_db) as console:
        yield console


async def test_the_page_shows_groups_and_an_admin_starts_an_entry_from_one(kc: KbConsole) -> None:
    for q in _questions():
        kc.kb.unanswered.record(q.call_id, q.lang, q.text, 0.2)
    kc.kb.unanswered.record("call-again", "en", "What are your mortgage rates", 0.1)  # the same words again
    with kc.kb.unanswered.path.open("a", encoding="utf-8") as f:
        f.write("{not json\n")

    anon = await kc.client.get("/admin/kb/unanswered", allow_redirects=False)
    assert anon.status == 302
    await kc.login("anna", PASSWORDS["anna"])
    assert (await kc.client.get("/admin/kb/unanswered")).status == 403
    await kc.logout()

    await kc.login("sam", PASSWORDS["sam"])
    page = await (await kc.client.get("/admin/kb/unanswered")).text()
    assert '<span id="unanswered-total">25</span>' in page and "1 lines of the log could not be read" in page
    first = page[page.index('class="cluster"'):]
    assert 'data-count="5"' in first[:80] and "mortgage" in first[:600]
    assert "Start an entry" not in page  # supervisors read
    assert 'href="/calls/call-zh_fx-0"' in page
    zh = await (await kc.client.get("/admin/kb/unanswered?lang_filter=zh")).text()
    assert 'class="cluster" data-lang="en"' not in zh and 'class="cluster" data-lang="zh"' in zh
    await kc.logout()

    await kc.login("ada", PASSWORDS["ada"])
    page = await (await kc.client.get("/admin/kb/unanswered?lang=zh")).text()
    links = [html.unescape(m) for m in re.findall(r'class="button start-entry" href="([^"]+)"', page)]
    assert links and all(link.startswith("/admin/kb/new?lang=") for link in links)
    new = await (await kc.client.get(links[0])).text()
    box = re.search(r'<textarea name="questions_en"[^>]*>([^<]*)</textarea>', new)
    assert box is not None
    asked = html.unescape(box.group(1)).splitlines()
    assert len(asked) == 4 and set(asked) <= {q.lower() for q in GROUPS["mortgage"]} | set(GROUPS["mortgage"]) | {
        "What are your mortgage rates"}
    hostile_url = "/admin/kb/new?lang=en&q=%3Cscript%3Ealert(1)%3C/script%3E&q=" + "x" * 400
    hostile = await (await kc.client.get(hostile_url)).text()
    assert "<script>alert(1)" not in hostile and "x" * 301 not in hostile
    bad_lang = await (await kc.client.get("/admin/kb/new?lang=fr&q=bonjour")).text()
    assert "bonjour" not in bad_lang
