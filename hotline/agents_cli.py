"""`hotline agents` and `hotline queues`: agent states and queue statistics from the shared database.

Both read what the running workers write (routing/sqlstore.py: `routing_agents`, `routing_queue_stats`),
so they work against a running distributed system from any machine that reaches the database.

- ``hotline agents [--watch [SECONDS]]``: one row per agent (state, for how long, call, queue, calls).
- ``hotline agents --set AGENT=STATE``: log in/out, break, not ready, ready (only for an agent no worker
  holds for a call; the workers see the change within a second).
- ``hotline queues [--watch [SECONDS]]``: one row per queue, added up over the workers, then which
  workers reported and how long ago (a worker silent for more than 10 s is marked STALE and left out).

With `routing.store: memory` (one worker, agents in its memory) there is no shared state to show: the
commands say so and list the configured agents.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from hotline.settings import Settings

__all__ = ["add_commands", "agents_text", "queues_text", "run_agents", "run_queues", "set_agent_state"]

STALE_S = 10.0
DESCRIPTION = ("Reads what the running workers write to the shared database (routing.store: database), so it works "
               "against a running distributed system from any machine that reaches the database.")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Registers `agents` and `queues` on the CLI's sub-parsers."""
    for name, run, what in (("agents", run_agents, "agent states"), ("queues", run_queues, "queue statistics")):
        p = sub.add_parser(name, help=f"show {what} from the shared database (--watch refreshes)",
                           description=DESCRIPTION)
        p.add_argument("--watch", nargs="?", type=float, const=2.0, default=None, metavar="SECONDS",
                       help="redraw every SECONDS (default 2) until Ctrl-C")
        p.add_argument("--times", type=int, default=0, help=argparse.SUPPRESS)  # stop after N redraws (tests)
        if name == "agents":
            p.add_argument("--set", dest="set_state", metavar="AGENT=STATE",
                           help="set an agent's state: available, on_break, not_ready or logged_out")
        p.set_defaults(run=run)


def _engine_and_settings(args: argparse.Namespace) -> tuple[Engine, Settings]:
    import sqlalchemy as sa

    from hotline.settings import load_settings

    settings = load_settings(args.config)
    return sa.create_engine(settings.database_url), settings


def _has_tables(engine: Engine) -> bool:
    import sqlalchemy as sa

    return bool(sa.inspect(engine).has_table("routing_agents"))


def agents_text(engine: Engine, settings: Settings) -> str:
    from routing import render_agents
    from routing.sqlstore import agent_snapshots_from_db

    if not _has_tables(engine):
        return _no_shared_state(settings)
    snaps = agent_snapshots_from_db(engine)
    if not snaps:
        return "no agents in the shared database yet (a worker adds its configured agents when it starts)\n"
    return render_agents(snaps)


def queues_text(engine: Engine, settings: Settings) -> str:
    from routing import render_queues
    from routing.sqlstore import merge_queue_rows, queue_rows

    if not _has_tables(engine):
        return _no_shared_state(settings) + _callbacks_line(engine)
    rows = queue_rows(engine)
    if not rows:
        return "no queue statistics yet (workers publish them every 2 s while running)\n"
    fresh = [r for r in rows if r.age_s <= STALE_S]
    nodes: dict[str, float] = {}
    for r in rows:
        nodes[r.node] = min(r.age_s, nodes.get(r.node, r.age_s))
    reported = ", ".join(f"{n} {age:.0f} s ago{' STALE' if age > STALE_S else ''}" for n, age in sorted(nodes.items()))
    return render_queues(merge_queue_rows(fresh)) + f"workers: {reported}\n" + _callbacks_line(engine)


def _callbacks_line(engine: Engine) -> str:
    """Callbacks promised and not yet made, per queue, from the `callbacks` table (recordings/callbacks.py)."""
    from recordings.callbacks import open_counts

    counts = open_counts(engine)
    return ("callbacks pending: " + ", ".join(f"{q} {n}" for q, n in sorted(counts.items())) + "\n") if counts else ""


def _no_shared_state(settings: Settings) -> str:
    lines = ["no shared agent state in this database: it is kept there when routing.store is 'database'",
             f"(now: {settings.routing.store}); configured agents:"]
    for q in settings.queues:
        for a in q.agents:
            lines.append(f"  {a.name}\t{a.uri}\tqueue {q.name}")
    return "\n".join(lines) + "\n"


def set_agent_state(engine: Engine, agent_id: str, state: str) -> str:
    """Sets a resting state on an agent that no worker holds; returns what happened, raises ValueError."""
    import sqlalchemy as sa

    from routing import AgentState
    from routing.sqlstore import agents_table
    from routing.states import MANUAL_STATES, TRANSITIONS

    try:
        wanted = AgentState(state)
    except ValueError:
        raise ValueError(f"unknown state {state!r}: one of {', '.join(sorted(MANUAL_STATES))}") from None
    if wanted not in MANUAL_STATES:
        raise ValueError(f"{state} comes from calls; set one of {', '.join(sorted(MANUAL_STATES))}")
    t = agents_table.c
    now = time.time()
    with engine.begin() as conn:
        row = conn.execute(sa.select(t.state, t.node).where(t.id == agent_id)).first()
        if row is None:
            raise ValueError(f"no agent {agent_id!r} (see `hotline agents`)")
        current = AgentState(row.state)
        if current is wanted:
            return f"{agent_id} is already {wanted}"
        if wanted not in TRANSITIONS[current] or row.node is not None:
            raise ValueError(f"{agent_id} is {current}" + (f" on {row.node}" if row.node else "")
                             + f": cannot go to {wanted} now")
        values: dict[str, object] = {"state": str(wanted), "state_since": now, "updated_at": now}
        if wanted is AgentState.AVAILABLE:
            values["available_since"] = now
        n = conn.execute(sa.update(agents_table).where(t.id == agent_id, t.state == row.state, t.node.is_(None))
                         .values(**values)).rowcount
    if n != 1:
        raise ValueError(f"{agent_id} changed meanwhile; look again with `hotline agents`")
    return f"{agent_id}: {current} -> {wanted}"


def _safe_render(render: Callable[[Engine, Settings], str], engine: Engine, settings: Settings) -> str:
    """The table, or one line saying why the database cannot be read (raises nothing from SQLAlchemy)."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return render(engine, settings)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DatabaseUnreachable(f"cannot read the database {engine.url.render_as_string(hide_password=True)}: "
                                  f"{reason}") from None


class DatabaseUnreachable(Exception):
    pass


def _show(args: argparse.Namespace, render: Callable[[Engine, Settings], str], out: TextIO) -> int:
    engine, settings = _engine_and_settings(args)
    try:
        if args.watch is None:
            try:
                out.write(_safe_render(render, engine, settings))
            except DatabaseUnreachable as exc:
                print(f"hotline: {exc}", file=sys.stderr)
                return 1
            return 0
        if args.watch <= 0:
            print("hotline: --watch needs a positive number of seconds", file=sys.stderr)
            return 2
        n = 0
        try:
            while True:
                try:
                    text = _safe_render(render, engine, settings)
                except DatabaseUnreachable as exc:  # keep watching: it may come back
                    text = f"{exc}\n"
                clear = "\x1b[2J\x1b[H" if out.isatty() else ""
                out.write(f"{clear}{time.strftime('%H:%M:%S')}  (every {args.watch:g} s, Ctrl-C to stop)\n{text}\n")
                out.flush()
                n += 1
                if args.times and n >= args.times:
                    return 0
                time.sleep(args.watch)
        except KeyboardInterrupt:
            return 0
    finally:
        engine.dispose()


def run_agents(args: argparse.Namespace) -> int:
    if getattr(args, "set_state", None):
        agent_id, sep, state = args.set_state.partition("=")
        if not sep or not agent_id or not state:
            print("hotline: --set wants AGENT=STATE, e.g. --set anna=on_break", file=sys.stderr)
            return 2
        engine, settings = _engine_and_settings(args)
        try:
            if not _safe_render(lambda e, _s: "yes" if _has_tables(e) else "", engine, settings):
                print("hotline: " + _no_shared_state(settings).splitlines()[0], file=sys.stderr)
                return 1
            print(set_agent_state(engine, agent_id, state))
            return 0
        except (ValueError, DatabaseUnreachable) as exc:
            print(f"hotline: {exc}", file=sys.stderr)
            return 1
        finally:
            engine.dispose()
    return _show(args, agents_text, sys.stdout)


def run_queues(args: argparse.Namespace) -> int:
    return _show(args, queues_text, sys.stdout)
