"""Skills-based routing from the call itself: what the session asks the distributor for a Transfer.

The dialog's Transfer carries the caller's own needs (language, product of what they asked about), the
order in which they may be relaxed, and the priority of the verified customer's segment (dialog/engine.py,
the flow's `transfer` section); the queue's settings add `relax_after_s`. The distributor merges the needs
with the queue's (routing.skills.merge_needs) and drops the relaxable ones when nobody with them can take
the call (docs/ROUTING.md "Skills from the call"). This module turns that into `acquire` arguments, the
transcript's event lines and the screen pop's `routing` block.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dialog import Transfer
from hotline.settings import QueueSettings
from routing.skills import Relaxation


def acquire_args(action: Transfer | None, qs: QueueSettings) -> dict[str, Any]:
    """Keyword arguments for `QueueView.acquire`: priority, needs, relax order, relax_after_s."""
    if action is None:
        return {}
    return {"priority": action.priority, "needs": dict(action.needs), "relax": tuple(action.relax),
            "relax_after_s": qs.relax_after_s}


def queued_note(action: Transfer) -> str:
    """"; needs en:1, cards:1; priority 10" for the "queued for ..." event line (empty when nothing asked)."""
    parts = []
    if action.needs:
        parts.append("needs " + ", ".join(f"{k}:{v}" for k, v in sorted(action.needs.items())))
    if action.priority:
        parts.append(f"priority {action.priority}")
    return "".join(f"; {p}" for p in parts)


class RelaxNotes:
    """Which of a queued call's relaxations were already written to its transcript."""

    def __init__(self) -> None:
        self.written: list[Relaxation] = []

    def new(self, relaxed: list[Relaxation]) -> list[Relaxation]:
        fresh = relaxed[len(self.written):] if relaxed[:len(self.written)] == self.written else []
        self.written.extend(fresh)
        return fresh


def with_routing(action: Transfer, needs_now: dict[str, int], written: list[Relaxation]) -> Transfer:
    """The Transfer whose context (the screen pop) shows the needs the agent was chosen by, the priority
    and the skills relaxed on the way."""
    routing = dict(action.context.get("routing") or {})
    routing.update(needs=dict(needs_now), priority=action.priority,
                   relaxed=[r.skill for r in written])
    return replace(action, context={**action.context, "routing": routing})
