"""Call-centre figures from the records: containment, transfers, handle time, speed of answer,
abandonment, service level, intent mix, top unanswered questions, complaint categories.

Definitions (all over calls started in [since, until), times in UTC):
- contained: the call never went to a queue (the robot handled it to the end, whoever hung up).
- transferred: the call went to a queue (asked for, or was sent to, a person).
- answered: an agent answered it; abandoned: queued but never answered.
- speed of answer: agent_answered_at - queued_at; handle time: ended_at - agent_answered_at (agent calls);
  call duration: ended_at - started_at (every ended call).
- service level: answered within `sl_threshold_s` seconds of being queued, over all queued calls.
- unanswered questions: what callers said (speech, not keys) in calls where no intent was ever
  understood, grouped by the normalised text.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from statistics import fmean
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import func, select

from recordings.models import Call, Complaint, IntentRecord, TranscriptLine
from recordings.sentiment import LABELS, CallSentiment, SentimentStore
from recordings.store import aware

if TYPE_CHECKING:
    from recordings.store import CallStore

GroupBy = Literal["hour", "day", "queue", "agent"]


@dataclass(frozen=True)
class Figures:
    """One row of the report: a group (an hour, a day, a queue, an agent, or all)."""

    group: str
    calls: int
    contained: int
    transferred: int
    answered: int
    abandoned: int
    containment_rate: float | None
    transfer_rate: float | None
    abandonment_rate: float | None
    service_level: float | None
    avg_speed_of_answer_s: float | None
    avg_handle_time_s: float | None
    avg_call_duration_s: float | None


@dataclass(frozen=True)
class Report:
    since: datetime | None
    until: datetime | None
    by: GroupBy | None
    sl_threshold_s: float
    total: Figures
    groups: list[Figures]
    intent_mix: list[tuple[str, int]]
    unanswered: list[tuple[str, int, str]]  # (question, times asked, an example call id)
    complaint_categories: list[tuple[str, int]]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Row:
    id: str
    started_at: datetime
    ended_at: datetime | None
    queue: str | None
    agent: str | None
    queued_at: datetime | None
    answered_at: datetime | None


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def _mean(xs: list[float]) -> float | None:
    return round(fmean(xs), 2) if xs else None


def _figures(group: str, rows: Iterable[_Row], sl_threshold_s: float) -> Figures:
    rows = list(rows)
    queued = [r for r in rows if r.queue]
    answered = [r for r in queued if r.answered_at]
    asa = [(r.answered_at - r.queued_at).total_seconds() for r in answered if r.answered_at and r.queued_at]
    aht = [(r.ended_at - r.answered_at).total_seconds() for r in answered if r.ended_at and r.answered_at]
    dur = [(r.ended_at - r.started_at).total_seconds() for r in rows if r.ended_at]
    in_sl = sum(1 for r in answered if r.queued_at and r.answered_at
                and (r.answered_at - r.queued_at).total_seconds() <= sl_threshold_s)
    return Figures(
        group=group, calls=len(rows), contained=len(rows) - len(queued), transferred=len(queued),
        answered=len(answered), abandoned=len(queued) - len(answered),
        containment_rate=_rate(len(rows) - len(queued), len(rows)), transfer_rate=_rate(len(queued), len(rows)),
        abandonment_rate=_rate(len(queued) - len(answered), len(queued)), service_level=_rate(in_sl, len(queued)),
        avg_speed_of_answer_s=_mean(asa), avg_handle_time_s=_mean(aht), avg_call_duration_s=_mean(dur),
    )


def _key(r: _Row, by: GroupBy) -> str:
    if by == "hour":
        return f"{r.started_at:%Y-%m-%d %H}:00"
    if by == "day":
        return f"{r.started_at:%Y-%m-%d}"
    if by == "queue":
        return r.queue or "(no queue)"
    return r.agent or "(no agent)"


_PUNCT = re.compile(r"[^\w\s]+")


def normalise_question(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_PUNCT.sub(" ", t).split())


def report(
    store: CallStore,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    by: GroupBy | None = None,
    sl_threshold_s: float = 20.0,
    top: int = 10,
) -> Report:
    if by not in (None, "hour", "day", "queue", "agent"):
        raise ValueError(f"by must be hour, day, queue or agent, not {by!r}")
    if since and until and since > until:
        raise ValueError("since is after until")

    def window(q: Any, col: Any) -> Any:
        if since:
            q = q.where(col >= since)
        if until:
            q = q.where(col < until)
        return q

    with store.engine.connect() as conn:
        rows = [
            _Row(r.id, aware(r.started_at), aware(r.ended_at) if r.ended_at else None, r.queue, r.agent,
                 aware(r.queued_at) if r.queued_at else None,
                 aware(r.agent_answered_at) if r.agent_answered_at else None)
            for r in conn.execute(window(select(Call.id, Call.started_at, Call.ended_at, Call.queue, Call.agent,
                                                Call.queued_at, Call.agent_answered_at), Call.started_at))
        ]
        intents = conn.execute(
            window(select(IntentRecord.intent, func.count()).join(Call, Call.id == IntentRecord.call_id)
                   .group_by(IntentRecord.intent), Call.started_at)).all()
        if not intents:  # before the session records each intent: the last one of each call
            intents = conn.execute(
                window(select(Call.last_intent, func.count()).where(Call.last_intent.is_not(None))
                       .group_by(Call.last_intent), Call.started_at)).all()
        understood = select(IntentRecord.call_id)
        lines = conn.execute(
            window(select(TranscriptLine.call_id, TranscriptLine.text).join(Call, Call.id == TranscriptLine.call_id)
                   .where(TranscriptLine.speaker == "caller", ~TranscriptLine.text.startswith("["),
                          Call.last_intent.is_(None), Call.id.not_in(understood)), Call.started_at)).all()
        complaints = conn.execute(
            window(select(Complaint.category, func.count()).group_by(Complaint.category), Complaint.created_at)).all()
        moods = conn.execute(window(select(CallSentiment.call_id, CallSentiment.label, CallSentiment.angry)
                                    .join(Call, Call.id == CallSentiment.call_id), Call.started_at)).all() if by else []
    # Caller sentiment (recordings/sentiment.py): the dashboard's own summary, and per group the same counts.
    mood: dict[str, Any] = {"total": SentimentStore(store.engine).summary(since=since, until=until), "groups": {}}

    groups: list[Figures] = []
    if by:
        buckets: dict[str, list[_Row]] = defaultdict(list)
        for r in rows:
            buckets[_key(r, by)].append(r)
        groups = [_figures(k, v, sl_threshold_s) for k, v in sorted(buckets.items())]
        key_of = {r.id: _key(r, by) for r in rows}
        for call_id, label, angry in moods:
            g = mood["groups"].setdefault(key_of.get(call_id, "?"),
                                          {"scored": 0, "angry": 0, "labels": dict.fromkeys(LABELS, 0)})
            g["scored"] += 1
            g["angry"] += 1 if angry else 0
            g["labels"][label] = g["labels"].get(label, 0) + 1
    asked: Counter[str] = Counter()
    example: dict[str, str] = {}
    for ln in lines:
        q = normalise_question(ln.text)
        if q:
            asked[q] += 1
            example.setdefault(q, ln.call_id)
    return Report(
        since=since, until=until, by=by, sl_threshold_s=sl_threshold_s,
        total=_figures("all", rows, sl_threshold_s), groups=groups,
        intent_mix=sorted(((str(i), int(n)) for i, n in intents), key=lambda x: (-x[1], x[0])),
        unanswered=[(q, n, example[q]) for q, n in asked.most_common(top)],
        complaint_categories=sorted(((str(c), int(n)) for c, n in complaints), key=lambda x: (-x[1], x[0])),
        extra={"mood": mood},
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}s"


def format_report(rep: Report) -> str:
    """The report as a terminal table."""
    head = (f"{'group':<20} {'calls':>6} {'contain':>8} {'transfer':>8} {'answered':>8} {'abandon':>8} "
            f"{'SL' + str(int(rep.sl_threshold_s)) + 's':>7} {'ASA':>7} {'AHT':>7} {'duration':>8}")
    out = [head, "-" * len(head)]
    for f in [*rep.groups, rep.total]:
        out.append(f"{f.group[:20]:<20} {f.calls:>6} {_pct(f.containment_rate):>8} {_pct(f.transfer_rate):>8} "
                   f"{f.answered:>8} {_pct(f.abandonment_rate):>8} {_pct(f.service_level):>7} "
                   f"{_s(f.avg_speed_of_answer_s):>7} {_s(f.avg_handle_time_s):>7} {_s(f.avg_call_duration_s):>8}")
    total = sum(n for _, n in rep.intent_mix) or 1
    out.append("")
    out.append("intent mix: " + (", ".join(f"{i} {n} ({100 * n / total:.0f}%)" for i, n in rep.intent_mix) or "-"))
    out.append("top unanswered questions:" + ("" if rep.unanswered else " -"))
    out += [f"  {n:>4}x  {q}  (e.g. call {c})" for q, n, c in rep.unanswered]
    out.append("complaint categories: " + (", ".join(f"{c} {n}" for c, n in rep.complaint_categories) or "-"))
    out += format_mood(rep.extra.get("mood"))
    return "\n".join(out)


def _labels(labels: dict[str, int]) -> str:
    calm = labels.get("neutral", 0) + labels.get("positive", 0)
    return (f"angry {labels.get('angry', 0)}, negative {labels.get('negative', 0)}, calm {calm} "
            f"(neutral {labels.get('neutral', 0)}, positive {labels.get('positive', 0)})")


def format_mood(mood: dict[str, Any] | None) -> list[str]:
    """Caller sentiment as the dashboard shows it: calls scored, flagged angry, the label at the end of each
    call (calm = neutral + positive), the mean score, the latest angry calls; per group with --by."""
    if not mood:
        return []
    t = mood["total"]
    mean = "-" if t["mean_score"] is None else f"{t['mean_score']:+.2f}"
    out = [f"caller mood: {t['scored']} calls scored, {t['angry']} flagged angry ({_pct(t['angry_rate'])}), "
           f"mean score {mean}; at the end of the call: {_labels(t['labels'])}"]
    for group, g in sorted(mood["groups"].items()):
        out.append(f"  {group[:20]:<20} {g['scored']:>4} scored, {g['angry']:>3} flagged angry; {_labels(g['labels'])}")
    out.append("angry calls (latest first): " + (", ".join(t["angry_calls"]) or "-"))
    return out
