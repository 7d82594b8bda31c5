"""The core-banking adapter: what the dialog may ask of the bank's records, as one Protocol.

A bank plugs its own system in by implementing `CoreBank`; `dialog.samplebank.SampleBank` is a
SQL-backed demo bank behind the same interface. Money is `Decimal` in the account's currency;
account and card numbers are strings of digits. Nothing here logs a full card number or a PIN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable


class BankError(Exception):
    """A request the bank refused; `code` is stable (the flow has a message for each), text is for logs."""

    CODES = (
        "unavailable",
        "not_found",
        "insufficient_funds",
        "limit_exceeded",
        "invalid_amount",
        "card_not_found",
        "card_blocked",
        "already_active",
        "no_inactive_card",
        "no_credit_card",
        "same_account",
        "no_risk_level",
        "locked",
    )

    def __init__(self, code: str, message: str = "") -> None:
        if code not in self.CODES:
            raise ValueError(f"unknown bank error code {code!r}")
        self.code = code
        super().__init__(message or code)


@dataclass(frozen=True)
class Customer:
    id: int
    name: str  # as the bank addresses them in their language of record
    name_zh: str
    language: str  # "en" or "zh"
    risk_level: int | None  # 1 (conservative) .. 5 (aggressive); None until assessed
    segment: str = "retail"  # retail, vip


@dataclass(frozen=True)
class Verification:
    """The outcome of a card/account number + PIN check. `customer` only when `ok`."""

    ok: bool
    customer: Customer | None = None
    locked: bool = False
    attempts_left: int = 0


@dataclass(frozen=True)
class Account:
    number: str
    kind: str  # savings, current, credit
    currency: str
    balance: Decimal  # for credit accounts: what is owed (positive)
    available: Decimal  # what can be spent or moved

    @property
    def last4(self) -> str:
        return self.number[-4:]


@dataclass(frozen=True)
class Card:
    last4: str
    kind: str  # debit, credit
    status: str  # active, inactive, blocked
    account_last4: str


@dataclass(frozen=True)
class CardReplacement:
    """A card reported lost or stolen: the old one blocked, a new one (inactive until activated) ordered."""

    blocked: Card
    replacement: Card


@dataclass(frozen=True)
class Transaction:
    posted_at: datetime
    description: str
    description_zh: str
    amount: Decimal  # negative = money out
    account_last4: str


@dataclass(frozen=True)
class TransferResult:
    reference: str
    from_last4: str
    to_last4: str
    amount: Decimal
    balance_after: Decimal
    to_own_account: bool


@dataclass(frozen=True)
class CreditCardBill:
    card_last4: str
    statement_balance: Decimal
    minimum_payment: Decimal
    due_date: date
    currency: str = "CNY"


@dataclass(frozen=True)
class Product:
    code: str
    name: str
    name_zh: str
    risk_level: int
    expected_return_pct: Decimal
    term_days: int
    min_amount: Decimal


@dataclass(frozen=True)
class Complaint:
    ticket: str  # digits only, read back digit by digit
    category: str
    status: str  # open, in_progress, resolved
    created_at: datetime
    customer_id: int | None = None
    notes: list[str] = field(default_factory=list, hash=False)


@runtime_checkable
class CoreBank(Protocol):
    """Everything the hotline asks of the bank's records. Methods may raise `BankError`."""

    def find_customer(self, number: str) -> Customer | None:
        """By full card or account number."""
        ...

    def verify(self, number: str, pin: str) -> Verification:
        """Card or account number + PIN; the customer is locked after 3 failures in a row."""
        ...

    def accounts(self, customer_id: int) -> list[Account]: ...

    def recent_transactions(
        self, customer_id: int, limit: int = 5, since: date | None = None, until: date | None = None
    ) -> list[Transaction]:
        """Newest first; `since`/`until` (both inclusive, local dates) narrow it to a period."""
        ...

    def cards(self, customer_id: int) -> list[Card]: ...

    def block_card(self, customer_id: int, last4: str) -> Card:
        """Stops the card at once (kept blocked; no replacement). `card_blocked` if it already is."""
        ...

    def report_lost_card(self, customer_id: int, last4: str) -> CardReplacement:
        """Lost or stolen: blocks the card and orders a new one on the same account (inactive until activated)."""
        ...

    def activate_card(self, customer_id: int, last4: str) -> Card: ...

    def transfer(self, customer_id: int, to_account: str, amount: Decimal) -> TransferResult:
        """From the customer's main current/savings account to one of their own accounts or a payee."""
        ...

    def credit_card_bill(self, customer_id: int) -> CreditCardBill: ...

    def repay_credit_card(self, customer_id: int, amount: Decimal) -> TransferResult: ...

    def set_risk_level(self, customer_id: int, level: int) -> Customer: ...

    def products(self, max_risk_level: int | None = None) -> list[Product]: ...

    def create_complaint(self, customer_id: int | None, category: str, text: str) -> Complaint: ...

    def complaint_status(self, ticket: str) -> Complaint | None: ...
