"""Bank operations the flow's `action: bank` intents run: call `CoreBank`, return the values for the answer.

Each operation takes the verified customer (or None), the slot values and the language, and returns
`Answer(values, items)`: `values` fill the intent's `say` template, `items` (one dict per row) fill
its `item` template, joined into `{items}`. Money and dates are formatted for speech per language.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from dialog.corebank import BankError, CoreBank, Customer
from dialog.nlu import NearestExampleClassifier, TrainingExample

RISK_NAMES = {
    "en": {1: "conservative", 2: "moderately conservative", 3: "balanced", 4: "growth", 5: "aggressive"},
    "zh": {1: "保守型", 2: "稳健型", 3: "平衡型", 4: "成长型", 5: "进取型"},
}


@dataclass
class Answer:
    values: dict[str, str] = field(default_factory=dict)
    items: list[dict[str, str]] = field(default_factory=list)
    # Machine-readable results for the call record (Understood slots), e.g. a complaint's ticket and category.
    record: dict[str, str] = field(default_factory=dict)


@dataclass
class OpContext:
    bank: CoreBank
    customer: Customer | None
    slots: dict[str, str]
    lang: str
    label: Callable[[str], str]  # bank.labels lookup: "savings" -> "savings" / "储蓄"
    complaint_classifier: NearestExampleClassifier | None = None


def money(amount: Decimal, lang: str) -> str:
    """52380.5 -> "52,380.50" (en) / "52380.50" (zh); whole amounts without ".00"."""
    amount = Decimal(amount).quantize(Decimal("0.01"))
    text = f"{amount:,.2f}" if lang == "en" else f"{amount:.2f}"
    return text[:-3] if text.endswith(".00") else text


def spoken_date(day: date | datetime, lang: str) -> str:
    if lang == "zh":
        return f"{day.month}月{day.day}日"
    return f"{day:%B} {day.day}"


def digit_by_digit(digits: str, lang: str) -> str:
    return " ".join(digits) if lang == "en" else "，".join(digits)


def _customer(ctx: OpContext) -> Customer:
    if ctx.customer is None:  # the flow marks the intent `verify: false` by mistake
        raise BankError("unavailable", "this operation needs a verified caller")
    return ctx.customer


def _amount(ctx: OpContext, slot: str = "amount") -> Decimal:
    try:
        return Decimal(ctx.slots[slot])
    except (KeyError, ArithmeticError):
        raise BankError("invalid_amount", f"slot {slot!r} holds no amount") from None


def parse_period(value: str) -> tuple[date, date] | None:
    """A period slot's value, "2026-11-23..2026-12-01", as (first day, last day); None when empty or bad."""
    first, sep, last = value.partition("..")
    try:
        return (date.fromisoformat(first), date.fromisoformat(last)) if sep else None
    except ValueError:
        return None


def spoken_period(start: date, end: date, lang: str) -> str:
    """How the answer names a period: "on March 3", "from March 1 to March 31" / "3月1日至3月31日"."""
    if start == end:
        return f"{spoken_date(start, lang)}" if lang == "zh" else f"on {spoken_date(start, lang)}"
    if lang == "zh":
        return f"{spoken_date(start, lang)}至{spoken_date(end, lang)}"
    return f"from {spoken_date(start, lang)} to {spoken_date(end, lang)}"


def balance(ctx: OpContext) -> Answer:
    accounts = ctx.bank.accounts(_customer(ctx).id)
    chosen = ctx.slots.get("account", "")
    if chosen:  # one account, by its last four digits (an account slot); empty: all of them
        accounts = [a for a in accounts if a.last4 == chosen] or accounts
    items = [
        {
            "kind": ctx.label(a.kind),
            "last4": a.last4,
            "balance": money(a.balance, ctx.lang),
            "available": money(a.available, ctx.lang),
            "currency": ctx.label(a.currency),
        }
        for a in accounts
    ]
    return Answer({"count": str(len(items))}, items)


def transactions(ctx: OpContext) -> Answer:
    period = parse_period(ctx.slots.get("period", ""))
    if period is None:
        rows = ctx.bank.recent_transactions(_customer(ctx).id, 5)
        said = "最近" if ctx.lang == "zh" else ""  # {period}: "Your last 5 transactions" / "您最近的5笔交易"
    else:
        rows = ctx.bank.recent_transactions(_customer(ctx).id, 10, since=period[0], until=period[1])
        said = spoken_period(period[0], period[1], ctx.lang)
        said = said if ctx.lang == "zh" else " " + said  # "Your last 3 transactions from May 1 to May 31"
    items = [
        {
            "date": spoken_date(t.posted_at, ctx.lang),
            "description": t.description_zh if ctx.lang == "zh" else t.description,
            "amount": money(abs(t.amount), ctx.lang),
            "direction": ctx.label("out" if t.amount < 0 else "in"),
            "last4": t.account_last4,
        }
        for t in rows
    ]
    return Answer({"count": str(len(items)), "period": said}, items)


def block_card(ctx: OpContext) -> Answer:
    card = ctx.bank.block_card(_customer(ctx).id, ctx.slots.get("card_last4", ""))
    return Answer({"last4": card.last4, "kind": ctx.label(card.kind)}, record={"card": card.last4})


def report_lost(ctx: OpContext) -> Answer:
    done = ctx.bank.report_lost_card(_customer(ctx).id, ctx.slots.get("card_last4", ""))
    return Answer(
        {"last4": done.blocked.last4, "kind": ctx.label(done.blocked.kind), "new_last4": done.replacement.last4},
        record={"card": done.blocked.last4, "replacement": done.replacement.last4},
    )


def activate_card(ctx: OpContext) -> Answer:
    card = ctx.bank.activate_card(_customer(ctx).id, ctx.slots.get("card_last4", ""))
    return Answer({"last4": card.last4, "kind": ctx.label(card.kind)})


def _moved(result: object, lang: str) -> Answer:
    r = result  # TransferResult
    return Answer(
        {
            "amount": money(r.amount, lang),  # type: ignore[attr-defined]
            "to_last4": r.to_last4,  # type: ignore[attr-defined]
            "from_last4": r.from_last4,  # type: ignore[attr-defined]
            "reference": digit_by_digit(r.reference.lstrip("T"), lang),  # type: ignore[attr-defined]
            "balance_after": money(r.balance_after, lang),  # type: ignore[attr-defined]
        }
    )


def transfer(ctx: OpContext) -> Answer:
    result = ctx.bank.transfer(_customer(ctx).id, ctx.slots.get("to_account", ""), _amount(ctx))
    return _moved(result, ctx.lang)


def credit_card_bill(ctx: OpContext) -> Answer:
    bill = ctx.bank.credit_card_bill(_customer(ctx).id)
    return Answer(
        {
            "last4": bill.card_last4,
            "statement_balance": money(bill.statement_balance, ctx.lang),
            "minimum_payment": money(bill.minimum_payment, ctx.lang),
            "due_date": spoken_date(bill.due_date, ctx.lang),
        }
    )


def repay(ctx: OpContext) -> Answer:
    return _moved(ctx.bank.repay_credit_card(_customer(ctx).id, _amount(ctx)), ctx.lang)


def risk_assessment(ctx: OpContext) -> Answer:
    """Each answer is worth its option's value in points; the total maps onto levels 1..5."""
    points = sum(int(v) for k, v in ctx.slots.items() if v.isdigit() and not k.startswith("_"))
    questions = max(1, sum(1 for k, v in ctx.slots.items() if v.isdigit() and not k.startswith("_")))
    # each question scores 1..3: the average 1..3 maps onto 1..5
    level = max(1, min(5, round(1 + (points / questions - 1) * 2)))
    customer = ctx.bank.set_risk_level(_customer(ctx).id, level)
    ctx.customer = customer
    return Answer({"level": str(level), "level_name": RISK_NAMES.get(ctx.lang, RISK_NAMES["en"])[level]})


def recommend(ctx: OpContext) -> Answer:
    customer = _customer(ctx)
    if customer.risk_level is None:
        raise BankError("no_risk_level", "risk assessment first")
    products = ctx.bank.products(max_risk_level=customer.risk_level)
    names = RISK_NAMES.get(ctx.lang, RISK_NAMES["en"])
    items = [
        {
            "product": p.name_zh if ctx.lang == "zh" else p.name,
            "risk": str(p.risk_level),
            "return_pct": f"{p.expected_return_pct:.2f}".rstrip("0").rstrip("."),
            "term": str(p.term_days),
            "minimum": money(p.min_amount, ctx.lang),
        }
        for p in products[-3:]  # the three that fit the profile best: the riskiest allowed
    ]
    level = customer.risk_level
    return Answer({"count": str(len(items)), "level": str(level), "level_name": names[level]}, items)


def classify_complaint(text: str, classifier: NearestExampleClassifier | None) -> str:
    if classifier is None or not text.strip():
        return "other"
    ranking = classifier.rank(text)
    return ranking[0].intent if ranking and ranking[0].score >= 0.1 else "other"


def complaint_classifier(categories: dict[str, dict[str, list[str]]]) -> NearestExampleClassifier | None:
    examples: Sequence[TrainingExample] = [
        TrainingExample(text, name, lang)
        for name, by_lang in categories.items()
        for lang, texts in by_lang.items()
        for text in texts
    ]
    return NearestExampleClassifier(examples) if examples else None


def complaint(ctx: OpContext) -> Answer:
    text = ctx.slots.get("problem", "")
    category = ctx.slots.get("category") or classify_complaint(text, ctx.complaint_classifier)
    ticket = ctx.bank.create_complaint(ctx.customer.id if ctx.customer else None, category, text)
    return Answer(
        {
            "ticket": ticket.ticket,
            "ticket_digits": digit_by_digit(ticket.ticket, ctx.lang),
            "category": ctx.label(category),
        },
        record={"ticket": ticket.ticket, "category": category},
    )


def complaint_status(ctx: OpContext) -> Answer:
    ticket = ctx.slots.get("ticket", "")
    found = ctx.bank.complaint_status(ticket)
    if found is None:
        raise BankError("not_found", "no such ticket")
    return Answer(
        {
            "ticket": found.ticket,
            "ticket_digits": digit_by_digit(found.ticket, ctx.lang),
            "status": ctx.label(found.status),
            "category": ctx.label(found.category),
            "created": spoken_date(found.created_at, ctx.lang),
        }
    )


OPERATIONS: dict[str, Callable[[OpContext], Answer]] = {
    "balance": balance,
    "transactions": transactions,
    "block_card": block_card,
    "report_lost": report_lost,
    "activate_card": activate_card,
    "transfer": transfer,
    "credit_card_bill": credit_card_bill,
    "repay": repay,
    "risk_assessment": risk_assessment,
    "recommend": recommend,
    "complaint": complaint,
    "complaint_status": complaint_status,
}
