"""Agents and their reservations in a shared SQL database, for several hotline workers.

`SqlAgentStore(url, node="worker-1")` is both the `AgentDirectory` and the `ReservationStore` of a
`CallDistributor`:

    store = SqlAgentStore(url, node=settings.node_name)
    acd = CallDistributor(queues, directory=store, store=store)

The database holds the truth about every agent (`routing_agents`, one row each). Reserving an agent is
one atomic statement,

    UPDATE routing_agents SET state='ringing', call_id=:call, node=:me
     WHERE id=:agent AND state='available' AND call_id IS NULL

and succeeds only when it changed one row, so two workers racing for one agent never both get her.
The worker that reserved an agent "holds" her (`node`) until she is back in a resting state
(available, not ready, on break, logged out); other workers cannot overwrite a held agent's row
(`save` is conditional on `node IS NULL OR node = :me`), and `release` only frees one's own holds.
Each worker keeps its own `AgentRecord`s (history, timers) and refreshes their state from the table
on `all()`/`get()` (at most every `refresh_s`), so agent states changed by other workers are seen
within that time; `CallDistributor.poll()` (every 0.5 s) calls `all()` and dispatches, so a caller
waiting on worker A gets an agent freed on worker B.

`recover_node()` (at start-up) frees the agents a previous run of this worker held when it died;
`heartbeat()` / `free_stale_holds()` free those of a worker that died and stays dead.
`publish_queue_snapshots()` / `queue_rows()` share each worker's queue statistics for
`hotline queues`. SQLAlchemy 2 Core, its own tables on its own `MetaData`; SQLite and PostgreSQL.
A database error never escapes into a call: reads fall back to the last known state, a failed
reservation counts as "not reserved", and each is logged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from routing.agents import AgentProfile, AgentRecord, UnknownAgent
from routing.clock import Clock, SystemClock
from routing.distributor import AgentSnapshot, QueueSnapshot
from routing.states import AgentState, AgentStatus, StateChange

log = logging.getLogger(__name__)
S = AgentState
RESTING = frozenset({S.AVAILABLE, S.NOT_READY, S.ON_BREAK, S.LOGGED_OUT})

metadata = sa.MetaData()

agents_table = sa.Table(
    "routing_agents",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("uri", sa.String(256), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("skills", sa.Text, nullable=False, default="{}"),  # JSON {"zh": 2, "cards": 1}
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("call_id", sa.String(128), nullable=True),  # the call ringing or connected
    sa.Column("queue", sa.String(64), nullable=True),
    sa.Column("node", sa.String(64), nullable=True),  # the worker holding the agent for that call
    sa.Column("calls_taken", sa.Integer, nullable=False, default=0),
    sa.Column("state_since", sa.Float, nullable=False),  # epoch seconds (wall clock)
    sa.Column("available_since", sa.Float, nullable=False),  # epoch seconds: longest-idle ordering
    sa.Column("updated_at", sa.Float, nullable=False),
)

queue_stats_table = sa.Table(
    "routing_queue_stats",
    metadata,
    sa.Column("node", sa.String(64), primary_key=True),
    sa.Column("queue", sa.String(64), primary_key=True),
    sa.Column("is_open", sa.Boolean, nullable=False),
    sa.Column("waiting", sa.Integer, nullable=False),
    sa.Column("callbacks_waiting", sa.Integer, nullable=False),
    sa.Column("longest_wait_s", sa.Float, nullable=False),
    sa.Column("offered", sa.Integer, nullable=False),
    sa.Column("answered", sa.Integer, nullable=False),
    sa.Column("abandoned", sa.Integer, nullable=False),
    sa.Column("service_level_pct", sa.Float, nullable=True),
    sa.Column("asa_s", sa.Float, nullable=True),
    sa.Column("aht_s", sa.Float, nullable=True),
    sa.Column("agents_available", sa.Integer, nullable=False),
    sa.Column("agents_staffed", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


nodes_table = sa.Table(
    "routing_nodes",
    metadata,
    sa.Column("node", sa.String(64), primary_key=True),
    sa.Column("seen_at", sa.Float, nullable=False),  # epoch seconds of the worker's last heartbeat
)


@dataclass(frozen=True)
class QueueRow:
    """One worker's last published statistics for one queue."""

    node: str
    age_s: float
    snapshot: QueueSnapshot


def create_tables(engine: Engine) -> None:
    """Creates the routing tables if missing (several workers may race to do it at once)."""
    for attempt in range(3):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except (IntegrityError, sa.exc.ProgrammingError):  # another worker created them in the same instant
            if attempt == 2:
                raise
            time.sleep(0.1)


def make_engine(url: str) -> Engine:
    # No pre-ping (it would double every reservation's round trips): a connection broken by a database
    # restart fails one operation (logged, treated as "not reserved" / last known state) and is replaced.
    connect_args = {"connect_timeout": 3} if url.startswith("postgresql") else {}
    engine = sa.create_engine(url, connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()
    return engine


class SqlAgentStore:
    """`AgentDirectory` + `ReservationStore` in a shared database (see the module docstring)."""

    def __init__(self, url_or_engine: str | Engine, *, node: str, clock: Clock | None = None,
                 refresh_s: float = 0.05) -> None:
        if not node or len(node) > 64:
            raise ValueError(f"node name must be 1-64 characters, not {node!r}")
        self.engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        self._owns_engine = isinstance(url_or_engine, str)
        self.node = node
        self.clock: Clock = clock or SystemClock()
        self.refresh_s = refresh_s
        self._records: dict[str, AgentRecord] = {}
        self._configured: set[str] = set()  # added by this worker (the others were learned from the table)
        self._last_refresh = float("-inf")
        self._errors = 0
        create_tables(self.engine)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    # -- AgentDirectory --------------------------------------------------------------------------
    def add(self, record: AgentRecord) -> None:
        """Registers a configured agent. A row another worker already made keeps its live state
        (the agent may be on a call there); the profile (uri, name, skills) is taken from this config."""
        if record.id in self._configured:
            raise ValueError(f"agent {record.id!r} already exists")
        p = record.profile
        now = self._wall()
        values = {"uri": p.uri, "name": p.name, "skills": json.dumps(dict(p.skills), sort_keys=True)}
        with self.engine.begin() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(agents_table.insert().values(
                        id=p.id, state=str(record.state), call_id=None, queue=None, node=None,
                        calls_taken=record.calls_taken, state_since=now, available_since=now, updated_at=now,
                        **values))
            except IntegrityError:
                conn.execute(agents_table.update().where(agents_table.c.id == p.id).values(updated_at=now, **values))
            row = conn.execute(agents_table.select().where(agents_table.c.id == p.id)).one()
        self._records[p.id] = record  # replaces a copy learned from the table, if any
        self._configured.add(p.id)
        self._sync(record, row._mapping, self.clock.monotonic(), now)

    def get(self, agent_id: str) -> AgentRecord:
        self._refresh()
        try:
            return self._records[agent_id]
        except KeyError:
            raise UnknownAgent(agent_id) from None

    def all(self) -> list[AgentRecord]:
        self._refresh()
        return list(self._records.values())

    def save(self, record: AgentRecord) -> None:
        """Writes this worker's view of an agent, unless another worker holds her for a call."""
        t = agents_table.c
        values: dict[str, Any] = {
            "state": str(record.state), "queue": record.queue, "calls_taken": record.calls_taken,
            "state_since": self._wall_of(record.status.since), "updated_at": self._wall(),
        }
        if record.state is S.AVAILABLE:
            values["available_since"] = self._wall_of(record.available_since)
        try:
            with self.engine.begin() as conn:
                n = conn.execute(sa.update(agents_table)
                                 .where(t.id == record.id, sa.or_(t.node.is_(None), t.node == self.node))
                                 .values(**values)).rowcount
        except SQLAlchemyError as exc:
            self._db_error("save agent " + record.id, exc)
            return
        if n != 1:
            log.warning("agent %s: %s not saved, another worker holds her; taking the shared state",
                        record.id, record.state)
            self._refresh(force=True)

    def remove(self, agent_id: str) -> None:
        """Forgets an agent here and deletes her shared row (unless another worker holds her for a call: then
        the row stays, and goes when that worker removes her too)."""
        if self._records.pop(agent_id, None) is None:
            raise UnknownAgent(agent_id)
        self._configured.discard(agent_id)
        t = agents_table.c
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.delete(agents_table).where(t.id == agent_id, t.node.is_(None)))
        except SQLAlchemyError as exc:
            self._db_error("remove agent " + agent_id, exc)

    # -- ReservationStore ------------------------------------------------------------------------
    def try_reserve(self, agent_id: str, call_id: str) -> bool:
        """One conditional UPDATE: True only if the agent was available and unreserved."""
        t = agents_table.c
        now = self._wall()
        try:
            with self.engine.begin() as conn:
                n = conn.execute(
                    sa.update(agents_table)
                    .where(t.id == agent_id, t.state == str(S.AVAILABLE), t.call_id.is_(None))
                    .values(state=str(S.RINGING), call_id=call_id, node=self.node, state_since=now, updated_at=now)
                ).rowcount
        except SQLAlchemyError as exc:
            self._db_error(f"call {call_id}: reserve agent {agent_id}", exc)
            return False
        if n != 1:
            log.info("call %s: agent %s was taken by another worker", call_id, agent_id)
            self._last_refresh = float("-inf")  # our view is stale: read again next time
        return n == 1

    def release(self, agent_id: str) -> None:
        """Frees this worker's hold on the agent (no-op if another worker holds her)."""
        t = agents_table.c
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.update(agents_table).where(t.id == agent_id, t.node == self.node)
                             .values(call_id=None, node=None, updated_at=self._wall()))
        except SQLAlchemyError as exc:
            self._db_error(f"release agent {agent_id}", exc)

    def holder(self, agent_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(agents_table.c.call_id).where(agents_table.c.id == agent_id)).scalar()

    # -- workers -----------------------------------------------------------------------------------
    def recover_node(self, why: str = "held by a previous run") -> list[str]:
        """Frees the agents this worker holds: they become available. Returns their ids.

        At start-up (before taking calls) for what a previous run held when it died; at a clean stop for
        agents still in wrap-up, which no one else could end."""
        t = agents_table.c
        now = self._wall()
        with self.engine.begin() as conn:
            held = [r.id for r in conn.execute(sa.select(t.id).where(t.node == self.node))]
            if held:
                conn.execute(sa.update(agents_table).where(t.node == self.node).values(
                    state=str(S.AVAILABLE), call_id=None, queue=None, node=None, state_since=now,
                    available_since=now, updated_at=now))
        if held:
            log.warning("%s: freed agents %s %s", self.node, ", ".join(held), why)
            self._refresh(force=True)
        return held

    def heartbeat(self) -> None:
        """Says "this worker is alive" (every few seconds, with the queue statistics)."""
        t = nodes_table.c
        now = self._wall()
        with self.engine.begin() as conn:
            if conn.execute(sa.update(nodes_table).where(t.node == self.node).values(seen_at=now)).rowcount == 0:
                try:
                    with conn.begin_nested():
                        conn.execute(nodes_table.insert().values(node=self.node, seen_at=now))
                except IntegrityError:
                    conn.execute(sa.update(nodes_table).where(t.node == self.node).values(seen_at=now))

    def free_stale_holds(self, max_age_s: float) -> dict[str, list[str]]:
        """Frees the agents held by workers with no heartbeat for `max_age_s` (they died and did not come
        back); returns {node: [agent ids]}. A worker merely stalled for that long loses its holds too, so
        keep `max_age_s` well above any pause a live worker can have."""
        a, n = agents_table.c, nodes_table.c
        now = self._wall()
        freed: dict[str, list[str]] = {}
        with self.engine.begin() as conn:
            dead = [r.node for r in conn.execute(sa.select(n.node).where(n.seen_at < now - max_age_s,
                                                                            n.node != self.node))]
            if not dead:
                return freed
            for row in conn.execute(sa.select(a.id, a.node).where(a.node.in_(dead))):
                freed.setdefault(row.node, []).append(row.id)
            if freed:
                conn.execute(sa.update(agents_table).where(a.node.in_(list(freed))).values(
                    state=str(S.AVAILABLE), call_id=None, queue=None, node=None, state_since=now,
                    available_since=now, updated_at=now))
        for node, ids in freed.items():
            log.warning("%s: freed agents %s held by %s (no heartbeat for %.0f s)", self.node, ", ".join(ids),
                        node, max_age_s)
        self._last_refresh = float("-inf")  # read again on the next all()/get() (this may run in a thread)
        return freed

    def publish_queue_snapshots(self, snapshots: Iterable[QueueSnapshot]) -> None:
        """Stores this worker's queue statistics (for `hotline queues` on any machine)."""
        t = queue_stats_table.c
        now = self._wall()
        rows = [{
            "node": self.node, "queue": s.name, "is_open": s.open, "waiting": s.waiting,
            "callbacks_waiting": s.callbacks_waiting, "longest_wait_s": s.longest_wait_s, "offered": s.offered,
            "answered": s.answered, "abandoned": s.abandoned, "service_level_pct": s.service_level_pct,
            "asa_s": s.average_speed_of_answer_s, "aht_s": s.average_handle_s,
            "agents_available": s.agents_available, "agents_staffed": s.agents_staffed, "updated_at": now,
        } for s in snapshots]
        with self.engine.begin() as conn:
            conn.execute(sa.delete(queue_stats_table).where(t.node == self.node))
            if rows:
                conn.execute(queue_stats_table.insert(), rows)
        self.heartbeat()

    # -- internals ---------------------------------------------------------------------------------
    def _wall(self) -> float:
        return self.clock.now().timestamp()

    def _wall_of(self, mono: float) -> float:
        return self._wall() - (self.clock.monotonic() - mono)

    def _db_error(self, what: str, exc: Exception) -> None:
        self._errors += 1
        if self._errors == 1 or self._errors % 100 == 0:
            log.error("routing database (%s): %s failed: %s (%d errors so far)",
                      self.node, what, exc.__class__.__name__, self._errors)

    def _refresh(self, force: bool = False) -> None:
        mono = self.clock.monotonic()
        if not force and mono - self._last_refresh < self.refresh_s:
            return
        try:
            with self.engine.connect() as conn:
                rows = [r._mapping for r in conn.execute(agents_table.select())]
        except SQLAlchemyError as exc:
            self._db_error("read agents", exc)
            return
        self._last_refresh = mono
        wall = self._wall()
        for gone in set(self._records) - {row["id"] for row in rows}:  # removed by an admin on another worker
            del self._records[gone]
            self._configured.discard(gone)
            log.info("agent %s is no longer in the shared table: removed here too", gone)
        for row in rows:
            rec = self._records.get(row["id"])
            if rec is None:  # configured on another worker only
                profile = AgentProfile(row["id"], row["uri"], row["name"], json.loads(row["skills"] or "{}"))
                rec = AgentRecord(profile, AgentStatus(profile.id, mono, self.clock.now()))
                self._records[profile.id] = rec
            self._sync(rec, row, mono, wall)

    def _sync(self, rec: AgentRecord, row: Mapping[Any, Any], mono: float, wall: float) -> None:
        """Takes the shared state into this worker's record (bypassing the transition rules: it happened)."""
        state = AgentState(row["state"])
        mine = row["node"] == self.node
        if state is not rec.state:
            since = mono - max(0.0, wall - float(row["state_since"]))
            rec.status.history.append(StateChange(state, since, self.clock.now(), "shared"))
            if not mine:
                rec.ring_started = rec.answered_at = rec.wrap_up_until = None
        if not mine:
            rec.call_id, rec.queue = row["call_id"], row["queue"]
        rec.calls_taken = int(row["calls_taken"])
        rec.available_since = mono - max(0.0, wall - float(row["available_since"]))


def agent_snapshots_from_db(engine: Engine, clock: Clock | None = None) -> list[AgentSnapshot]:
    """Every agent's state as the shared table has it (for `hotline agents`); occupancy is per worker: '-'."""
    now = (clock or SystemClock()).now().timestamp()
    with engine.connect() as conn:
        rows = list(conn.execute(agents_table.select().order_by(agents_table.c.id)))
    return [AgentSnapshot(r.id, r.name, AgentState(r.state), max(0.0, now - r.state_since), r.call_id, r.queue,
                          r.calls_taken, None, json.loads(r.skills or "{}")) for r in rows]


def queue_rows(engine: Engine, clock: Clock | None = None) -> list[QueueRow]:
    """Every worker's last published queue statistics, with their age."""
    now = (clock or SystemClock()).now().timestamp()
    with engine.connect() as conn:
        rows = list(conn.execute(queue_stats_table.select().order_by(queue_stats_table.c.queue,
                                                                      queue_stats_table.c.node)))
    return [QueueRow(r.node, max(0.0, now - r.updated_at), QueueSnapshot(
        r.queue, r.is_open, r.waiting, r.callbacks_waiting, r.longest_wait_s, r.offered, r.answered, r.abandoned,
        r.service_level_pct, r.asa_s, r.aht_s, r.agents_available, r.agents_staffed)) for r in rows]


def merge_queue_rows(rows: Iterable[QueueRow]) -> list[QueueSnapshot]:
    """One snapshot per queue over the workers: counts added, longest wait the longest, rates weighted."""
    by_queue: dict[str, list[QueueSnapshot]] = {}
    for r in rows:
        by_queue.setdefault(r.snapshot.name, []).append(r.snapshot)
    out = []
    for name, snaps in by_queue.items():
        answered = sum(s.answered for s in snaps)

        def weighted(vals: list[tuple[float | None, int]]) -> float | None:
            num = sum(v * w for v, w in vals if v is not None)
            den = sum(w for v, w in vals if v is not None)
            return num / den if den else None

        out.append(QueueSnapshot(
            name=name,
            open=any(s.open for s in snaps),
            waiting=sum(s.waiting for s in snaps),
            callbacks_waiting=sum(s.callbacks_waiting for s in snaps),
            longest_wait_s=max(s.longest_wait_s for s in snaps),
            offered=sum(s.offered for s in snaps),
            answered=answered,
            abandoned=sum(s.abandoned for s in snaps),
            service_level_pct=weighted([(s.service_level_pct, s.answered + s.abandoned) for s in snaps]),
            average_speed_of_answer_s=weighted([(s.average_speed_of_answer_s, s.answered) for s in snaps]),
            average_handle_s=weighted([(s.average_handle_s, s.answered) for s in snaps]),
            agents_available=max(s.agents_available for s in snaps),  # every worker sees the same agents
            agents_staffed=max(s.agents_staffed for s in snaps),
        ))
    return out
