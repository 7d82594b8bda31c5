"""Small training sets for the trained-classifier tests: BANKING77 (CC BY 4.0) and a Chinese set."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

# 30 examples of each of CATEGORIES, taken from ../shared/data/banking77/train.csv (see data/README.md).
BANKING77 = Path(__file__).resolve().parent / "data" / "banking77_subset.csv"
CATEGORIES = (
    "card_arrival", "lost_or_stolen_card", "exchange_rate", "top_up_failed", "pin_blocked",
    "cash_withdrawal_charge", "terminate_account", "change_pin", "balance_not_updated_after_bank_transfer",
    "declined_card_payment",
)  # fmt: skip

# Written for these tests: how callers might ask in Mandarin.
CHINESE = {
    "zh_lost_card": [
        "我的卡丢了", "银行卡丢失了怎么办", "我要挂失", "信用卡被偷了", "卡找不到了", "帮我挂失银行卡",
        "钱包丢了卡也没了", "我的借记卡不见了", "挂失一张卡", "卡被人偷走了",
    ],
    "zh_balance": [
        "查一下余额", "我账户里还有多少钱", "余额查询", "帮我看看卡里的钱", "我想知道账户余额",
        "还剩多少钱", "查询存款余额", "账户余额是多少", "卡里有多少钱", "看一下我的余额",
    ],
    "zh_agent": [
        "转人工", "我要找客服", "人工服务", "请帮我接通客服人员", "我想和真人说话", "找个人工",
        "接人工客服", "让客服跟我说", "给我转客服", "我要人工",
    ],
    "zh_hours": [
        "你们几点开门", "营业时间是什么", "周末营业吗", "几点关门", "银行什么时候上班",
        "星期六开门吗", "今天营业到几点", "网点营业时间", "早上几点开始营业", "晚上几点下班",
    ],
}  # fmt: skip


def banking77_subset(per_category: int = 30) -> tuple[list[str], list[str]]:
    """The first `per_category` examples of each of `CATEGORIES`, in file order."""
    rows: dict[str, list[str]] = defaultdict(list)
    with BANKING77.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["category"] in CATEGORIES and len(rows[row["category"]]) < per_category:
                rows[row["category"]].append(row["text"])
    texts = [t for c in CATEGORIES for t in rows[c]]
    labels = [c for c in CATEGORIES for _ in rows[c]]
    return texts, labels


def mixed_training_set() -> tuple[list[str], list[str]]:
    texts, labels = banking77_subset()
    for intent, examples in CHINESE.items():
        texts += examples
        labels += [intent] * len(examples)
    return texts, labels


def write_csv(path: Path, texts: list[str], labels: list[str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "category"])
        writer.writerows(zip(texts, labels, strict=True))
    return path
