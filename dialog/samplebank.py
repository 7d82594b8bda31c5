"""A SQL-backed sample bank behind `CoreBank`: customers, accounts, cards, transactions, products,
complaints. Its own tables in its own database (default: `bank.db` in the data folder), never the
call-record database. PINs are stored as salted scrypt hashes; 3 failed checks in a row lock the
customer until a person unlocks them (`hotline bank seed --reset` for the demo).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Numeric, String, create_engine, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from dialog.corebank import (
    Account,
    BankError,
    Card,
    CardReplacement,
    Complaint,
    CreditCardBill,
    Customer,
    Product,
    Transaction,
    TransferResult,
    Verification,
)

log = logging.getLogger(__name__)

MAX_FAILED_VERIFICATIONS = 3
# scrypt cost: 2**14 x 8 x 1 uses 16 MiB and tens of milliseconds, which makes guessing slow.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
PER_TRANSFER_LIMIT = Decimal("50000")  # to someone else's account
DAILY_TRANSFER_LIMIT = Decimal("100000")
CENT = Decimal("0.01")


def hash_pin(pin: str, *, salt: bytes | None = None, n: int = SCRYPT_N) -> str:
    """`scrypt$n$r$p$salt_hex$hash_hex`: the parameters travel with the hash so they can be raised later."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 1024 * 1024, dklen=32)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_pin(pin: str, stored: str) -> bool:
    try:
        _, n, r, p, salt_hex, digest_hex = stored.split("$")
        digest = hashlib.scrypt(
            pin.encode(), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r), p=int(p), maxmem=64 * 1024 * 1024, dklen=32
        )
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), digest_hex)


_DUMMY_HASH = hash_pin("000000", salt=b"\x00" * 16)


class Base(DeclarativeBase):
    pass


class CustomerRow(Base):
    __tablename__ = "bank_customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    name_zh: Mapped[str] = mapped_column(String(100))
    language: Mapped[str] = mapped_column(String(8), default="en")
    segment: Mapped[str] = mapped_column(String(16), default="retail")
    risk_level: Mapped[int | None] = mapped_column(default=None)
    pin_hash: Mapped[str] = mapped_column(String(200))
    failed_verifications: Mapped[int] = mapped_column(default=0)
    locked_at: Mapped[datetime | None] = mapped_column(default=None)


class AccountRow(Base):
    __tablename__ = "bank_accounts"
    number: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("bank_customers.id"))
    kind: Mapped[str] = mapped_column(String(16))  # savings, current, credit
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    balance: Mapped[Decimal] = mapped_column(Numeric(18, 2), default=Decimal(0))
    credit_limit: Mapped[Decimal] = mapped_column(Numeric(18, 2), default=Decimal(0))
    statement_balance: Mapped[Decimal] = mapped_column(Numeric(18, 2), default=Decimal(0))
    statement_due: Mapped[date | None] = mapped_column(default=None)


class CardRow(Base):
    __tablename__ = "bank_cards"
    number: Mapped[str] = mapped_column(String(19), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("bank_customers.id"))
    account_number: Mapped[str] = mapped_column(ForeignKey("bank_accounts.number"))
    kind: Mapped[str] = mapped_column(String(8))  # debit, credit
    status: Mapped[str] = mapped_column(String(10), default="active")


class TransactionRow(Base):
    __tablename__ = "bank_transactions"
    id: Mapped[int] = mapped_column(primary_key=True)
    account_number: Mapped[str] = mapped_column(ForeignKey("bank_accounts.number"), index=True)
    posted_at: Mapped[datetime]
    description: Mapped[str] = mapped_column(String(100))
    description_zh: Mapped[str] = mapped_column(String(100))
    amount: Mapped[Decimal] = mapped_column(Numeric(18, 2))
    reference: Mapped[str] = mapped_column(String(20), default="")


class ProductRow(Base):
    __tablename__ = "bank_products"
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    name_zh: Mapped[str] = mapped_column(String(100))
    risk_level: Mapped[int]
    expected_return_pct: Mapped[Decimal] = mapped_column(Numeric(6, 2))
    term_days: Mapped[int]
    min_amount: Mapped[Decimal] = mapped_column(Numeric(18, 2))


class ComplaintRow(Base):
    __tablename__ = "bank_complaints"
    ticket: Mapped[str] = mapped_column(String(12), primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("bank_customers.id"), default=None)
    category: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime]


class SampleBank:
    """`CoreBank` over SQLAlchemy 2; thread-safe (one short session per call, SQLite serialised)."""

    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
        self._engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self._engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self._engine)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._lock = threading.Lock()  # read-modify-write of balances and lock counters

    def close(self) -> None:
        self._engine.dispose()

    def is_seeded(self) -> bool:
        with self._sessions() as s:
            return s.scalar(select(CustomerRow.id).limit(1)) is not None

    # ---- customers and verification ---------------------------------------------------------
    def find_customer(self, number: str) -> Customer | None:
        with self._sessions() as s:
            row = self._customer_by_number(s, number)
            return _customer(row) if row else None

    def verify(self, number: str, pin: str) -> Verification:
        with self._lock, self._sessions.begin() as s:
            row = self._customer_by_number(s, number)
            if row is None:
                check_pin(pin, _DUMMY_HASH)  # same time taken: an unknown number is not revealed
                log.info("verification failed: unknown card or account number")
                return Verification(False, attempts_left=MAX_FAILED_VERIFICATIONS)
            if row.locked_at is not None:
                log.info("verification refused: customer %d is locked", row.id)
                return Verification(False, locked=True)
            if check_pin(pin, row.pin_hash):
                row.failed_verifications = 0
                log.info("customer %d verified", row.id)
                return Verification(True, _customer(row), attempts_left=MAX_FAILED_VERIFICATIONS)
            row.failed_verifications += 1
            left = MAX_FAILED_VERIFICATIONS - row.failed_verifications
            if left <= 0:
                row.locked_at = datetime.now(UTC).replace(tzinfo=None)
                log.warning("customer %d locked after %d failed verifications", row.id, row.failed_verifications)
                return Verification(False, locked=True)
            log.info("verification failed for customer %d (%d attempts left)", row.id, left)
            return Verification(False, attempts_left=left)

    def unlock(self, customer_id: int) -> None:
        with self._sessions.begin() as s:
            row = s.get(CustomerRow, customer_id)
            if row is None:
                raise BankError("not_found", f"no customer {customer_id}")
            row.locked_at, row.failed_verifications = None, 0

    @staticmethod
    def _customer_by_number(s: Session, number: str) -> CustomerRow | None:
        number = "".join(ch for ch in number if ch.isdigit())
        if not 6 <= len(number) <= 19:
            return None
        card = s.get(CardRow, number)
        if card is not None:
            return s.get(CustomerRow, card.customer_id)
        account = s.get(AccountRow, number)
        if account is not None and account.customer_id is not None:
            return s.get(CustomerRow, account.customer_id)
        return None

    def _active_customer(self, s: Session, customer_id: int) -> CustomerRow:
        row = s.get(CustomerRow, customer_id)
        if row is None:
            raise BankError("not_found", f"no customer {customer_id}")
        if row.locked_at is not None:
            raise BankError("locked", f"customer {customer_id} is locked")
        return row

    # ---- accounts ---------------------------------------------------------------------------
    def accounts(self, customer_id: int) -> list[Account]:
        with self._sessions() as s:
            self._active_customer(s, customer_id)
            rows = s.scalars(
                select(AccountRow).where(AccountRow.customer_id == customer_id).order_by(AccountRow.number)
            ).all()
            return [_account(r) for r in rows]

    def recent_transactions(
        self, customer_id: int, limit: int = 5, since: date | None = None, until: date | None = None
    ) -> list[Transaction]:
        with self._sessions() as s:
            self._active_customer(s, customer_id)
            query = (
                select(TransactionRow)
                .join(AccountRow, AccountRow.number == TransactionRow.account_number)
                .where(AccountRow.customer_id == customer_id)
            )
            if since is not None:
                query = query.where(TransactionRow.posted_at >= datetime.combine(since, datetime.min.time()))
            if until is not None:
                end = datetime.combine(until + timedelta(days=1), datetime.min.time())
                query = query.where(TransactionRow.posted_at < end)
            rows = s.scalars(
                query.order_by(TransactionRow.posted_at.desc(), TransactionRow.id.desc())
                .limit(max(1, min(limit, 50)))
            ).all()
            return [
                Transaction(r.posted_at, r.description, r.description_zh, r.amount, r.account_number[-4:]) for r in rows
            ]

    def cards(self, customer_id: int) -> list[Card]:
        with self._sessions() as s:
            self._active_customer(s, customer_id)
            rows = s.scalars(select(CardRow).where(CardRow.customer_id == customer_id).order_by(CardRow.number))
            return [_card(r) for r in rows]

    def _card_by_last4(self, s: Session, customer_id: int, last4: str) -> CardRow:
        rows = s.scalars(select(CardRow).where(CardRow.customer_id == customer_id)).all()
        matches = [r for r in rows if r.number.endswith(last4)] if len(last4) == 4 else []
        if len(matches) != 1:
            raise BankError("card_not_found", "no single card with those last digits")
        return matches[0]

    def block_card(self, customer_id: int, last4: str) -> Card:
        with self._lock, self._sessions.begin() as s:
            self._active_customer(s, customer_id)
            card = self._card_by_last4(s, customer_id, last4)
            if card.status == "blocked":
                raise BankError("card_blocked", "the card is already blocked")
            card.status = "blocked"
            log.info("customer %d: card ending %s blocked", customer_id, last4)
            return _card(card)

    def report_lost_card(self, customer_id: int, last4: str) -> CardReplacement:
        with self._lock, self._sessions.begin() as s:
            self._active_customer(s, customer_id)
            card = self._card_by_last4(s, customer_id, last4)
            card.status = "blocked"  # already blocked (frozen earlier) is fine: the replacement is what matters
            new = CardRow(
                number=self._new_card_number(s, card.number),
                customer_id=customer_id,
                account_number=card.account_number,
                kind=card.kind,
                status="inactive",
            )
            s.add(new)
            s.flush()
            log.info("customer %d: card ending %s reported lost; replacement ending %s ordered",
                     customer_id, last4, new.number[-4:])
            return CardReplacement(_card(card), _card(new))

    @staticmethod
    def _new_card_number(s: Session, old: str) -> str:
        """Same issuer prefix, fresh digits; the last four differ from every card of the bank's (spoken by them)."""
        taken = {n[-4:] for n in s.scalars(select(CardRow.number))}
        for _ in range(1000):
            tail = f"{secrets.randbelow(10**4):04d}"
            if tail not in taken:
                middle = "".join(str(secrets.randbelow(10)) for _ in range(len(old) - 10))
                return old[:6] + middle + tail
        raise BankError("unavailable", "no free card number")

    def activate_card(self, customer_id: int, last4: str) -> Card:
        with self._lock, self._sessions.begin() as s:
            self._active_customer(s, customer_id)
            card = self._card_by_last4(s, customer_id, last4)
            if card.status == "blocked":
                raise BankError("card_blocked", "a blocked card cannot be activated")
            if card.status == "active":
                raise BankError("already_active", "card already active")
            card.status = "active"
            log.info("customer %d: card ending %s activated", customer_id, last4)
            return _card(card)

    # ---- money ------------------------------------------------------------------------------
    def transfer(self, customer_id: int, to_account: str, amount: Decimal) -> TransferResult:
        amount = _money(amount)
        to_account = "".join(ch for ch in to_account if ch.isdigit())
        with self._lock, self._sessions.begin() as s:
            self._active_customer(s, customer_id)
            source = self._main_account(s, customer_id)
            if to_account == source.number:
                raise BankError("same_account", "source and destination are the same account")
            target = s.get(AccountRow, to_account)
            own = target is not None and target.customer_id == customer_id
            if not 6 <= len(to_account) <= 19:
                raise BankError("not_found", "not an account number")
            if not own:
                if amount > PER_TRANSFER_LIMIT:
                    raise BankError("limit_exceeded", "over the per-transfer limit")
                if self._sent_today(s, source.number) + amount > DAILY_TRANSFER_LIMIT:
                    raise BankError("limit_exceeded", "over the daily limit")
            if amount > source.balance:
                raise BankError("insufficient_funds", "not enough money in the account")
            ref = _reference()
            now = datetime.now(UTC).replace(tzinfo=None)
            source.balance -= amount
            s.add(
                TransactionRow(
                    account_number=source.number,
                    posted_at=now,
                    description=f"Transfer to ...{to_account[-4:]}",
                    description_zh=f"转账至尾号{to_account[-4:]}",
                    amount=-amount,
                    reference=ref,
                )
            )
            if target is not None:
                if target.kind == "credit":
                    target.balance -= amount
                else:
                    target.balance += amount
                s.add(
                    TransactionRow(
                        account_number=target.number,
                        posted_at=now,
                        description=f"Transfer from ...{source.number[-4:]}",
                        description_zh=f"来自尾号{source.number[-4:]}的转账",
                        amount=amount,
                        reference=ref,
                    )
                )
            log.info(
                "customer %d: transfer %s %s to ...%s (ref %s)",
                customer_id,
                amount,
                source.currency,
                to_account[-4:],
                ref,
            )
            return TransferResult(ref, source.number[-4:], to_account[-4:], amount, source.balance, own)

    @staticmethod
    def _main_account(s: Session, customer_id: int) -> AccountRow:
        rows = s.scalars(
            select(AccountRow)
            .where(AccountRow.customer_id == customer_id, AccountRow.kind.in_(("current", "savings")))
            .order_by(AccountRow.kind, AccountRow.number)  # current before savings
        ).all()
        if not rows:
            raise BankError("not_found", "no account to pay from")
        return rows[0]

    @staticmethod
    def _sent_today(s: Session, number: str) -> Decimal:
        since = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
        rows = s.scalars(
            select(TransactionRow.amount).where(
                TransactionRow.account_number == number,
                TransactionRow.posted_at >= since,
                TransactionRow.amount < 0,
                TransactionRow.reference != "",
            )
        ).all()
        return -sum(rows, Decimal(0))

    def credit_card_bill(self, customer_id: int) -> CreditCardBill:
        with self._sessions() as s:
            self._active_customer(s, customer_id)
            card, account = self._credit_card(s, customer_id)
            minimum = max(Decimal("100"), (account.statement_balance * Decimal("0.1"))).quantize(CENT)
            minimum = min(minimum, account.statement_balance)
            due = account.statement_due or (date.today() + timedelta(days=20))
            return CreditCardBill(card.number[-4:], account.statement_balance, minimum, due, account.currency)

    @staticmethod
    def _credit_card(s: Session, customer_id: int) -> tuple[CardRow, AccountRow]:
        card = s.scalars(select(CardRow).where(CardRow.customer_id == customer_id, CardRow.kind == "credit")).first()
        if card is None:
            raise BankError("no_credit_card", "customer has no credit card")
        account = s.get(AccountRow, card.account_number)
        assert account is not None
        return card, account

    def repay_credit_card(self, customer_id: int, amount: Decimal) -> TransferResult:
        amount = _money(amount)
        with self._sessions() as s:
            card, account = self._credit_card(s, customer_id)
            number, card_last4 = account.number, card.number[-4:]
        result = replace(self.transfer(customer_id, number, amount), to_last4=card_last4)
        with self._lock, self._sessions.begin() as s:
            row = s.get(AccountRow, number)
            assert row is not None
            row.statement_balance = max(Decimal(0), row.statement_balance - amount)
        return result

    # ---- wealth -----------------------------------------------------------------------------
    def set_risk_level(self, customer_id: int, level: int) -> Customer:
        if not 1 <= level <= 5:
            raise ValueError("risk level is 1..5")
        with self._sessions.begin() as s:
            row = self._active_customer(s, customer_id)
            row.risk_level = level
            return _customer(row)

    def products(self, max_risk_level: int | None = None) -> list[Product]:
        with self._sessions() as s:
            q = select(ProductRow).order_by(ProductRow.risk_level, ProductRow.code)
            if max_risk_level is not None:
                q = q.where(ProductRow.risk_level <= max_risk_level)
            return [
                Product(r.code, r.name, r.name_zh, r.risk_level, r.expected_return_pct, r.term_days, r.min_amount)
                for r in s.scalars(q)
            ]

    # ---- complaints -------------------------------------------------------------------------
    def create_complaint(self, customer_id: int | None, category: str, text: str) -> Complaint:
        with self._lock, self._sessions.begin() as s:
            for _ in range(20):
                ticket = f"{secrets.randbelow(90_000_000) + 10_000_000}"
                if s.get(ComplaintRow, ticket) is None:
                    break
            row = ComplaintRow(
                ticket=ticket,
                customer_id=customer_id,
                category=category,
                text=text[:2000],
                status="open",
                created_at=datetime.now(UTC).replace(tzinfo=None),
            )
            s.add(row)
            log.info("complaint %s created (category %s)", ticket, category)
            return _complaint(row)

    def complaint_status(self, ticket: str) -> Complaint | None:
        with self._sessions() as s:
            row = s.get(ComplaintRow, "".join(ch for ch in ticket if ch.isdigit()))
            return _complaint(row) if row else None

    def set_complaint_status(self, ticket: str, status: str) -> None:
        with self._sessions.begin() as s:
            row = s.get(ComplaintRow, ticket)
            if row is None:
                raise BankError("not_found", f"no complaint {ticket}")
            row.status = status


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _money(amount: Decimal | int | float | str) -> Decimal:
    try:
        value = Decimal(str(amount)).quantize(CENT)
    except ArithmeticError:
        raise BankError("invalid_amount", f"not an amount: {amount!r}") from None
    if value <= 0 or value >= Decimal("1e12"):
        raise BankError("invalid_amount", "the amount must be above zero")
    return value


def _reference() -> str:
    return f"T{secrets.randbelow(10**9):09d}"


def _customer(row: CustomerRow) -> Customer:
    return Customer(row.id, row.name, row.name_zh, row.language, row.risk_level, row.segment)


def _account(row: AccountRow) -> Account:
    if row.kind == "credit":
        return Account(row.number, row.kind, row.currency, row.balance, row.credit_limit - row.balance)
    return Account(row.number, row.kind, row.currency, row.balance, row.balance)


def _card(row: CardRow) -> Card:
    return Card(row.number[-4:], row.kind, row.status, row.account_number[-4:])


def _complaint(row: ComplaintRow) -> Complaint:
    return Complaint(row.ticket, row.category, row.status, row.created_at, row.customer_id)
