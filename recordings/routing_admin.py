"""Admin changes to queues and agents, kept in the call database (table `routing_overrides`, migration 0005).

One row per queue or agent an admin changed: its settings as JSON (the dicts of routing/admin.py). The
YAML configuration stays the base; at start-up `hotline serve` lays these rows over it (stored wins).
This module only stores and reads the dicts; routing/admin.py checks and applies them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

log = logging.getLogger(__name__)

Kind = Literal["queue", "agent"]
KINDS = ("queue", "agent")
MAX_DATA_BYTES = 16_000

_meta = sa.MetaData()
overrides_table = sa.Table(
    "routing_overrides",
    _meta,
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(64), nullable=False),
)


@dataclass(frozen=True)
class Override:
    kind: str
    name: str
    data: dict[str, Any]
    updated_at: datetime
    updated_by: str


class RoutingOverrides:
    """Blocking repository (run it off the event loop in the console)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine  # the table comes from migration 0005: open the CallStore (it upgrades) first

    def put(self, kind: Kind, name: str, data: dict[str, Any], *, by: str) -> None:
        """Stores (or replaces) the override of one queue or agent."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        if not 1 <= len(name) <= 64:
            raise ValueError("name must be 1 to 64 characters")
        text = json.dumps(data, sort_keys=True, ensure_ascii=False)
        if len(text.encode()) > MAX_DATA_BYTES:
            raise ValueError(f"{kind} {name}: settings too large ({len(text)} characters)")
        values = {"data": text, "updated_at": datetime.now(UTC), "updated_by": by[:64]}
        t = overrides_table.c
        with self.engine.begin() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(overrides_table.insert().values(kind=kind, name=name, **values))
            except IntegrityError:
                conn.execute(overrides_table.update().where(t.kind == kind, t.name == name).values(**values))
        log.info("routing override stored: %s %s by %s", kind, name, by)

    def delete(self, kind: Kind, name: str) -> bool:
        t = overrides_table.c
        with self.engine.begin() as conn:
            return bool(conn.execute(overrides_table.delete().where(t.kind == kind, t.name == name)).rowcount)

    def get(self, kind: Kind, name: str) -> Override | None:
        """One stored override, or None (none stored, or not JSON: logged)."""
        return next((o for o in self.all(kind) if o.name == name), None)

    def all(self, kind: Kind | None = None) -> list[Override]:
        q = overrides_table.select().order_by(overrides_table.c.kind, overrides_table.c.name)
        if kind is not None:
            q = q.where(overrides_table.c.kind == kind)
        out = []
        with self.engine.connect() as conn:
            for r in conn.execute(q):
                try:
                    data = json.loads(r.data)
                except ValueError:
                    log.error("routing override %s %s is not JSON: skipped", r.kind, r.name)
                    continue
                at = r.updated_at if r.updated_at.tzinfo else r.updated_at.replace(tzinfo=UTC)
                out.append(Override(r.kind, r.name, data, at, r.updated_by))
        return out

    def as_maps(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """(queues, agents): name → settings dict, for routing.admin.apply_overrides."""
        rows = self.all()
        queues = {o.name: o.data for o in rows if o.kind == "queue"}
        return queues, {o.name: o.data for o in rows if o.kind == "agent"}
