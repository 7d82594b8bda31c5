"""`hotline bank seed|unlock|customers`: the sample bank's demo data, and opening the bank for the server.

The demo customers are made up; their PINs are printed by `hotline bank seed` so a tester can call in.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from dialog.samplebank import (
    AccountRow,
    Base,
    CardRow,
    CustomerRow,
    ProductRow,
    SampleBank,
    TransactionRow,
    hash_pin,
)

log = logging.getLogger(__name__)

# (id, name, name_zh, language, segment, risk level, PIN, accounts, cards)
# accounts: (number, kind, balance, credit limit, statement balance); cards: (number, kind, account, status)
DEMO_CUSTOMERS: list[dict[str, object]] = [
    {
        "id": 1,
        "name": "Wang Fang",
        "name_zh": "王芳",
        "language": "zh",
        "segment": "retail",
        "risk": None,
        "pin": "246810",
        "accounts": [
            ("1001200030004001", "current", "52380.50", "0", "0"),
            ("1001200030004002", "savings", "120000.00", "0", "0"),
            ("1001200030004003", "credit", "3250.00", "50000", "3250.00"),
        ],
        "cards": [
            ("6222021001234567", "debit", "1001200030004001", "active"),
            ("6258091001237788", "credit", "1001200030004003", "active"),
            ("6222021009998888", "debit", "1001200030004002", "inactive"),
        ],
    },
    {
        "id": 2,
        "name": "James Miller",
        "name_zh": "詹姆斯·米勒",
        "language": "en",
        "segment": "retail",
        "risk": 3,
        "pin": "864209",
        "accounts": [
            ("2002300040005001", "current", "8765.43", "0", "0"),
            ("2002300040005002", "savings", "25000.00", "0", "0"),
            ("2002300040005003", "credit", "1200.00", "20000", "1200.00"),
        ],
        "cards": [
            ("4392260012345678", "debit", "2002300040005001", "active"),
            ("5187660011112222", "credit", "2002300040005003", "active"),
        ],
    },
    {
        "id": 3,
        "name": "Zhang Min",
        "name_zh": "张敏",
        "language": "zh",
        "segment": "vip",
        "risk": 5,
        "pin": "975310",
        "accounts": [("3003400050006001", "current", "860000.00", "0", "0")],
        "cards": [("6222021005550001", "debit", "3003400050006001", "active")],
    },
    {
        "id": 4,
        "name": "Emily Chen",
        "name_zh": "陈艾米",
        "language": "en",
        "segment": "retail",
        "risk": 1,
        "pin": "112358",
        "accounts": [("4004500060007001", "savings", "3150.00", "0", "0")],
        "cards": [("4392260098765432", "debit", "4004500060007001", "active")],
    },
]
# An account at the bank that belongs to nobody above: a payee for transfer demos.
PAYEE_ACCOUNTS = ["5005600070008001"]

_SPENDING = [
    ("Supermarket", "超市购物", "-326.80"),
    ("Salary", "工资", "15000.00"),
    ("Electricity bill", "电费", "-215.40"),
    ("Restaurant", "餐饮消费", "-188.00"),
    ("Online shopping", "网上购物", "-899.00"),
]

PRODUCTS = [
    ("WM01", "Cash Plus money market fund", "现金宝货币基金", 1, "2.10", 1, "1"),
    ("WM02", "Steady Income 90-day note", "稳盈90天理财", 2, "3.20", 90, "10000"),
    ("WM03", "Balanced Allocation fund", "平衡配置基金", 3, "4.80", 365, "10000"),
    ("WM04", "Growth Equity fund", "成长股票基金", 4, "7.50", 0, "1000"),
    ("WM05", "Technology Innovation fund", "科技创新基金", 5, "10.00", 0, "1000"),
]


def seed_demo(bank: SampleBank, *, reset: bool = False) -> int:
    """Writes the demo customers, accounts, cards, transactions and products; returns customers written.

    Without `reset` an already seeded bank is left alone (0); with it every bank table is emptied first.
    """
    if bank.is_seeded() and not reset:
        return 0
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    with bank._sessions.begin() as s:
        for table in reversed(Base.metadata.sorted_tables):
            s.execute(delete(table))
        for c in DEMO_CUSTOMERS:
            s.add(
                CustomerRow(
                    id=c["id"],
                    name=c["name"],
                    name_zh=c["name_zh"],
                    language=c["language"],
                    segment=c["segment"],
                    risk_level=c["risk"],
                    pin_hash=hash_pin(str(c["pin"])),
                    failed_verifications=0,
                )
            )
        s.flush()
        for c in DEMO_CUSTOMERS:
            for number, kind, balance, limit, statement in c["accounts"]:  # type: ignore[attr-defined]
                s.add(
                    AccountRow(
                        number=number,
                        customer_id=c["id"],
                        kind=kind,
                        balance=Decimal(balance),
                        credit_limit=Decimal(limit),
                        statement_balance=Decimal(statement),
                        statement_due=date.today() + timedelta(days=15) if kind == "credit" else None,
                    )
                )
        for number in PAYEE_ACCOUNTS:
            s.add(AccountRow(number=number, customer_id=None, kind="current", balance=Decimal("1000")))
        s.flush()
        for c in DEMO_CUSTOMERS:
            for number, kind, account, status in c["cards"]:  # type: ignore[attr-defined]
                s.add(CardRow(number=number, customer_id=c["id"], account_number=account, kind=kind, status=status))
            main = c["accounts"][0][0]  # type: ignore[index]
            for i, (desc, desc_zh, amount) in enumerate(_SPENDING):
                s.add(
                    TransactionRow(
                        account_number=main,
                        posted_at=now - timedelta(days=2 * i + 1),
                        description=desc,
                        description_zh=desc_zh,
                        amount=Decimal(amount),
                    )
                )
        for code, name, name_zh, risk, ret, term, minimum in PRODUCTS:
            s.add(
                ProductRow(
                    code=code,
                    name=name,
                    name_zh=name_zh,
                    risk_level=risk,
                    expected_return_pct=Decimal(ret),
                    term_days=term,
                    min_amount=Decimal(minimum),
                )
            )
    log.info("sample bank seeded: %d customers, %d products", len(DEMO_CUSTOMERS), len(PRODUCTS))
    return len(DEMO_CUSTOMERS)


def open_bank(url: str, *, seed_if_empty: bool = True) -> SampleBank:
    """The sample bank at `url` (an SQLite file's folder is created), seeded on first use if asked."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    bank = SampleBank(url)
    if seed_if_empty:
        try:
            seed_demo(bank)
        except IntegrityError:  # another worker sharing the database seeded it in the same moment
            log.info("sample bank already seeded by another process")
    return bank


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], bank_url: Callable[[argparse.Namespace], str]
) -> None:
    """Registers `hotline bank ...`; `bank_url(args)` gives the database URL from the settings."""
    bank = sub.add_parser("bank", help="the sample bank's records: seed demo data, unlock a customer")
    cmds = bank.add_subparsers(dest="bank_command", metavar="BANK_COMMAND")
    seed = cmds.add_parser("seed", help="write the demo customers, accounts, cards and products")
    seed.add_argument("--url", help="bank database URL (default: bank.url in the settings, or DATA_DIR/bank.db)")
    seed.add_argument("--reset", action="store_true", help="empty the bank's tables first (demo data only!)")
    seed.set_defaults(run=lambda a: _seed(a, bank_url))
    unlock = cmds.add_parser("unlock", help="unlock a customer after 3 failed PIN checks")
    unlock.add_argument("customer_id", type=int)
    unlock.add_argument("--url")
    unlock.set_defaults(run=lambda a: _unlock(a, bank_url))

    def _help(_: argparse.Namespace) -> int:
        bank.print_help()
        return 2

    bank.set_defaults(run=_help)


def _seed(args: argparse.Namespace, bank_url: Callable[[argparse.Namespace], str]) -> int:
    url = args.url or bank_url(args)
    bank = open_bank(url, seed_if_empty=False)
    try:
        written = seed_demo(bank, reset=args.reset)
    finally:
        bank.close()
    if not written:
        print(f"hotline: the bank at {_safe(url)} already has customers; --reset replaces them", file=sys.stderr)
        return 1
    print(f"seeded {written} demo customers into {_safe(url)}")
    for c in DEMO_CUSTOMERS:
        cards = ", ".join(f"{n} ({k}, {st})" for n, k, _, st in c["cards"])  # type: ignore[attr-defined]
        print(f"  {c['id']}  {c['name']} / {c['name_zh']}  ({c['segment']})  PIN {c['pin']}  cards {cards}")
    return 0


def _unlock(args: argparse.Namespace, bank_url: Callable[[argparse.Namespace], str]) -> int:
    bank = open_bank(args.url or bank_url(args), seed_if_empty=False)
    try:
        bank.unlock(args.customer_id)
    finally:
        bank.close()
    print(f"customer {args.customer_id} unlocked")
    return 0


def _safe(url: str) -> str:
    """The URL without a password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


__all__ = ["DEMO_CUSTOMERS", "add_commands", "open_bank", "seed_demo"]
