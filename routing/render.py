"""Plain-text tables for `hotline queues` and `hotline agents`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from routing.distributor import AgentSnapshot, QueueSnapshot


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(r) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def _secs(v: float | None) -> str:
    if v is None:
        return "-"
    v = round(v)
    return f"{v // 60}:{v % 60:02d}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}%"


def render_queues(snapshots: Iterable[QueueSnapshot]) -> str:
    headers = ["queue", "open", "waiting", "callbacks", "longest", "offered", "answered", "abandoned",
               "SL", "ASA", "AHT", "agents free/staffed"]
    rows = [[s.name, "yes" if s.open else "no", str(s.waiting), str(s.callbacks_waiting), _secs(s.longest_wait_s),
             str(s.offered), str(s.answered), str(s.abandoned), _pct(s.service_level_pct),
             _secs(s.average_speed_of_answer_s), _secs(s.average_handle_s),
             f"{s.agents_available}/{s.agents_staffed}"] for s in snapshots]
    return _table(headers, rows)


def render_agents(snapshots: Iterable[AgentSnapshot]) -> str:
    headers = ["agent", "name", "state", "for", "call", "queue", "calls", "occupancy", "skills"]
    rows = [[a.id, a.name, str(a.state), _secs(a.in_state_s), a.call_id or "-", a.queue or "-", str(a.calls_taken),
             _pct(a.occupancy_pct), ",".join(f"{k}:{v}" for k, v in sorted(a.skills.items())) or "-"]
            for a in snapshots]
    return _table(headers, rows)
