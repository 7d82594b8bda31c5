"""Search latency over 100,000 synthetic calls (mixed Mandarin and English, ~10 lines each).

    .venv/bin/python bench/search_100k.py                    # SQLite in a temporary folder
    .venv/bin/python bench/search_100k.py --postgres         # a throwaway PostgreSQL cluster (Debian package)
    .venv/bin/python bench/search_100k.py --url postgresql+psycopg://...   # an existing, empty database

Fills the database through the same schema and index as CallStore (bulk inserts, not one commit per line),
then runs each typical query --repeat times and prints p50/p95 latency. Target: under 1 s.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recordings import CallStore  # noqa: E402
from recordings.models import Call, TranscriptLine  # noqa: E402
from recordings.privacy import mask_secrets  # noqa: E402
from recordings.search import search_calls  # noqa: E402
from recordings.store import INDEX_LINE_SQL  # noqa: E402
from recordings.textsearch import index_terms  # noqa: E402

EN_Q = ["I lost my credit card", "What are your opening hours on {day}?", "I want to check my account balance",
        "How do I transfer money to {name}?", "My debit card was swallowed by the ATM", "I want to speak to a person",
        "Why was I charged a fee of {n} dollars?", "Can I change my PIN online?", "I'd like to apply for a mortgage",
        "There is a payment to {shop} I don't recognise", "How do I activate my new card?", "I want to complain"]
ZH_Q = ["我的信用卡丢了", "你们{day}营业时间是几点", "我想查一下账户余额", "怎么给{name}转账", "取款机吞了我的借记卡",
        "我要转人工", "为什么扣了我{n}元手续费", "可以在网上改密码吗", "我想申请房贷", "有一笔{shop}的消费我不认识",
        "新卡怎么激活", "我要投诉"]
EN_A = ["Welcome to Example Bank. How can I help you?", "I can help with that.", "Please hold while I check.",
        "Our branches open at nine in the morning.", "Your card has been blocked.", "Is there anything else?",
        "Connecting you to an agent now.", "Thank you for calling. Goodbye."]
ZH_A = ["欢迎致电示例银行，请问有什么可以帮您？", "好的，我来帮您处理。", "请稍候，正在为您查询。",
        "我们的网点早上九点开门。", "您的卡已经挂失。", "还有其他可以帮您的吗？", "正在为您转接人工坐席。",
        "感谢来电，再见。"]
NAMES_EN = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry"]
NAMES_ZH = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强"]
DAYS_EN, DAYS_ZH = ["Saturday", "Sunday", "Monday"], ["周六", "周日", "周一"]
SHOPS_EN, SHOPS_ZH = ["Amazon", "Tesco", "Uber", "Netflix"], ["淘宝", "京东", "美团", "携程"]
INTENTS = ["card_lost", "opening_hours", "balance", "transfer", "card_swallowed", "agent", "fees", "pin_change",
           "mortgage", "unknown_payment", "card_activation", "complaint"]
QUEUES = [None, None, "general", "cards"]


def _line(rng: random.Random, zh: bool, qi: int) -> str:
    tmpl = (ZH_Q if zh else EN_Q)[qi]
    return tmpl.format(day=rng.choice(DAYS_ZH if zh else DAYS_EN), name=rng.choice(NAMES_ZH if zh else NAMES_EN),
                       n=rng.randint(5, 500), shop=rng.choice(SHOPS_ZH if zh else SHOPS_EN))


def fill(store: CallStore, calls: int, seed: int = 7) -> tuple[int, float]:
    rng = random.Random(seed)
    t_end = datetime(2026, 11, 30, tzinfo=UTC)
    dialect = store.engine.dialect.name
    line_id = 0
    t0 = time.perf_counter()
    chunk = 2000
    for base in range(0, calls, chunk):
        call_rows: list[dict[str, Any]] = []
        line_rows: list[dict[str, Any]] = []
        idx_rows: list[dict[str, Any]] = []
        for i in range(base, min(base + chunk, calls)):
            zh = rng.random() < 0.5
            qi = rng.randrange(len(INTENTS))
            start = t_end - timedelta(seconds=rng.randrange(90 * 86400))
            queue = rng.choice(QUEUES)
            cid = f"bench-{i:06d}"
            call_rows.append(dict(id=cid, sip_call_id=cid, caller=f"138{rng.randrange(10**8):08d}", called="95555",
                                  language="zh" if zh else "en", started_at=start,
                                  ended_at=start + timedelta(seconds=rng.randint(30, 900)),
                                  outcome="transferred" if queue else "goodbye", end_reason="bench",
                                  last_intent=INTENTS[qi], queue=queue,
                                  agent=rng.choice(["anna", "bo"]) if queue else None,
                                  worker="bench", recording_deleted=False))
            answers = ZH_A if zh else EN_A
            texts = [answers[0], _line(rng, zh, qi)]
            for _ in range(rng.randint(3, 4)):
                texts += [rng.choice(answers[1:]), _line(rng, zh, rng.randrange(len(INTENTS)))]
            for seq, t in enumerate(texts, 1):
                line_id += 1
                t = mask_secrets(t)
                line_rows.append(dict(id=line_id, call_id=cid, seq=seq, speaker="system" if seq % 2 else "caller",
                                      text=t, start_s=float(seq * 3), end_s=float(seq * 3 + 2),
                                      language=call_rows[-1]["language"]))
                idx_rows.append({"id": line_id, "call_id": cid, "terms": index_terms(t)})
        with store.engine.begin() as conn:
            conn.execute(insert(Call), call_rows)
            conn.execute(insert(TranscriptLine), line_rows)
            conn.execute(INDEX_LINE_SQL[dialect], idx_rows)  # the statement CallStore.add_line uses
    if dialect == "postgresql":
        with store.engine.begin() as conn:
            conn.execute(text("SELECT setval(pg_get_serial_sequence('transcript_lines', 'id'), :n)"), {"n": line_id})
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    return line_id, time.perf_counter() - t0


QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("rare English words: 'mortgage apply'", {"text": "apply mortgage"}),
    ("medium English: 'credit card'", {"text": "credit card"}),
    ("in every call (greeting): 'welcome'", {"text": "welcome"}),
    ("rare Chinese: '房贷'", {"text": "房贷"}),
    ("medium Chinese: '信用卡'", {"text": "信用卡"}),
    ("in every call (greeting): '银行'", {"text": "银行"}),
    ("Chinese + filters: '手续费' zh, queue cards, last 30 days", {"text": "手续费", "lang": "zh", "queue": "cards",
                                                                   "since": datetime(2026, 10, 31, tzinfo=UTC)}),
    ("name: '张伟'", {"text": "张伟"}),
    ("filters only: agent anna, intent fees", {"agent": "anna", "intent": "fees"}),
    ("caller number fragment: '1380000'", {"caller": "1380000"}),
    ("page 5 of 'card' (offset 200)", {"text": "card", "offset": 200}),
]


def run(store: CallStore, repeat: int) -> list[tuple[str, float, float, int]]:
    out = []
    for name, kw in QUERIES:
        times, n = [], 0
        for _ in range(repeat):
            t = time.perf_counter()
            n = len(search_calls(store, **kw))
            times.append(time.perf_counter() - t)
        times.sort()
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        out.append((name, statistics.median(times) * 1e3, p95 * 1e3, n))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--url", help="an empty database to fill (default: SQLite in a temporary folder)")
    ap.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL cluster for the run")
    args = ap.parse_args()
    pg = None
    with tempfile.TemporaryDirectory() as d:
        url = args.url or f"sqlite:///{d}/bench.db"
        if args.postgres:
            sys.path.insert(0, str(ROOT / "tests"))
            from support.postgres import PgServer, find_bindir

            bindir = find_bindir()
            if bindir is None:
                sys.exit("PostgreSQL binaries not found (Debian package postgresql)")
            pg = PgServer(bindir)
            pg.start()
            url = pg.create_database("bench")
        try:
            store = CallStore(url)
            lines, fill_s = fill(store, args.calls)
            load = os.getloadavg()
            results = run(store, args.repeat)
            store.close()
        finally:
            if pg is not None:
                pg.close()
    print(f"database: {store.engine.dialect.name}; {args.calls} calls, {lines} transcript lines, filled in "
          f"{fill_s:.0f} s; `nproc` = {os.cpu_count()}; load average before queries {load[0]:.2f} {load[1]:.2f}")
    print(f"command: .venv/bin/python bench/search_100k.py {' '.join(sys.argv[1:])}\n")
    print("| query (50 calls a page, newest first, with snippets) | p50 ms | p95 ms | hits | target |")
    print("|---|---|---|---|---|")
    for name, p50, p95, n in results:
        print(f"| {name} | {p50:.0f} | {p95:.0f} | {n} | {'ok' if p95 < 1000 else 'MISSED'} (< 1000 ms) |")


if __name__ == "__main__":
    main()
