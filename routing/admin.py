"""Admin changes to queues and agents as plain data (JSON-able dicts), checked and applied to a distributor.

The console's forms and the stored overrides (recordings/routing_admin.py) both speak these dicts:

    queue: {"strategy": "round_robin", "needs": {"zh": 2}, "priority": 1, "max_wait_s": 300,
            "overflow": "queue", "overflow_to": "general", "wrap_up_s": 10, "ring_timeout_s": 20,
            "hours": {"tz": "Asia/Shanghai", "weekly": {"mon-fri": "08:00-20:00"}, "holidays": ["2026-10-01"]}}
            (any subset; "hours": null means always open)
    agent: {"name": "Anna", "uri": "sip:anna@127.0.0.1:5090", "skills": {"zh": 3}, "queues": ["general"]}

`apply_overrides` lays stored overrides over the queues and agents built from the YAML at start-up: the
YAML is the base, a stored override wins; a bad or stale override is logged and skipped, never fatal.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from routing.agents import AgentProfile
from routing.distributor import CallDistributor, QueueConfig, check_name
from routing.hours import OpeningHours
from routing.states import AgentState
from routing.strategies import strategy_names

log = logging.getLogger(__name__)

QUEUE_KEYS = ("strategy", "needs", "priority", "max_wait_s", "overflow", "overflow_to", "wrap_up_s",
              "ring_timeout_s", "service_level_s", "hours")
AGENT_KEYS = ("name", "uri", "skills", "queues")


def _number(key: str, value: Any, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number of seconds, not {str(value)[:40]!r}")
    if value < 0:
        raise ValueError(f"{key} must not be negative")
    return float(value)


def _skills(key: str, value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} must map skill names to levels")
    return {check_name("skill", str(k)): v for k, v in value.items()}


def queue_changes(data: Mapping[str, Any]) -> dict[str, Any]:
    """A queue override dict → keyword arguments for `CallDistributor.update_queue` (ValueError if bad)."""
    unknown = sorted(set(data) - set(QUEUE_KEYS))
    if unknown:
        raise ValueError(f"unknown queue setting {unknown[0][:40]!r}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "strategy":
            if value not in strategy_names():
                raise ValueError(f"strategy must be one of {', '.join(strategy_names())}, not {str(value)[:40]!r}")
            out[key] = value
        elif key == "needs":
            out[key] = _skills("needs", value)
        elif key == "priority":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError("priority must be a whole number")
            out[key] = value
        elif key in ("max_wait_s", "ring_timeout_s"):
            out[key] = _number(key, value, optional=True)
        elif key in ("wrap_up_s", "service_level_s"):
            out[key] = _number(key, value)
        elif key == "overflow":
            if value not in (None, "queue", "callback"):
                raise ValueError(f"overflow must be empty, 'queue' or 'callback', not {str(value)[:40]!r}")
            out[key] = value
        elif key == "overflow_to":
            out[key] = None if value in (None, "") else check_name("queue", str(value))
        elif key == "hours":
            out[key] = hours_of(value)
    return out


def hours_of(value: Any) -> OpeningHours:
    """{"tz": ..., "weekly": {"mon-fri": "08:00-20:00"}, "holidays": [...]} or None (always open)."""
    if value is None:
        return OpeningHours.always()
    if not isinstance(value, Mapping) or not isinstance(value.get("weekly"), Mapping):
        raise ValueError("hours must be {tz, weekly: {days: 'HH:MM-HH:MM'}, holidays}")
    try:
        return OpeningHours.from_spec(str(value.get("tz", "UTC")), value["weekly"], value.get("holidays", ()))
    except (ValueError, KeyError, TypeError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"bad opening hours: {str(exc)[:120]}") from None


def agent_profile(agent_id: str, data: Mapping[str, Any]) -> AgentProfile:
    """An agent override dict → the profile to hand to `CallDistributor.put_agent` (ValueError if bad)."""
    unknown = sorted(set(data) - set(AGENT_KEYS))
    if unknown:
        raise ValueError(f"unknown agent setting {unknown[0][:40]!r}")
    uri = data.get("uri")
    if not isinstance(uri, str):
        raise ValueError("uri is required (a SIP URI such as sip:anna@127.0.0.1:5090)")
    queues = data.get("queues") or []
    if not isinstance(queues, list | tuple) or not all(isinstance(q, str) for q in queues):
        raise ValueError("queues must be a list of queue names")
    return AgentProfile(check_name("agent", agent_id), uri, str(data.get("name") or agent_id),
                        _skills("skills", data.get("skills") or {}), frozenset(queues))


@dataclass(frozen=True)
class Applied:
    """What `apply_overrides` did: names applied, and (name, reason) skipped."""

    queues: list[str]
    agents: list[str]
    skipped: list[tuple[str, str]]


def apply_overrides(
    acd: CallDistributor,
    queues: Mapping[str, Mapping[str, Any]],
    agents: Mapping[str, Mapping[str, Any]],
    *,
    new_agent_state: AgentState = AgentState.AVAILABLE,
) -> Applied:
    """Stored admin changes over the YAML-built distributor. Queues first (agents may name them)."""
    done_q: list[str] = []
    done_a: list[str] = []
    skipped: list[tuple[str, str]] = []
    for name, data in sorted(queues.items()):
        try:
            if name not in acd.queue_names:
                raise ValueError("no such queue in the configuration")
            acd.update_queue(name, **queue_changes(data))
            done_q.append(name)
        except ValueError as exc:
            skipped.append((f"queue {name}", str(exc)))
    for agent_id, data in sorted(agents.items()):
        try:
            acd.put_agent(agent_profile(agent_id, data), new_agent_state)
            done_a.append(agent_id)
        except ValueError as exc:
            skipped.append((f"agent {agent_id}", str(exc)))
    for what, why in skipped:
        log.error("stored routing override for %s not applied (the YAML definition stays): %s", what, why)
    if done_q or done_a:
        log.info("routing overrides applied: queues %s, agents %s", done_q, done_a)
    return Applied(done_q, done_a, skipped)


def queue_as_data(acd: CallDistributor, name: str) -> dict[str, Any]:
    """A queue's live parameters as an override dict (hours as stored specs are not recoverable: flag only)."""
    cfg = acd.queue_config(name)
    return {"strategy": cfg.strategy, "needs": dict(cfg.needs), "priority": cfg.priority,
            "max_wait_s": cfg.max_wait_s, "overflow": cfg.overflow, "overflow_to": cfg.overflow_to,
            "wrap_up_s": cfg.wrap_up_s, "ring_timeout_s": cfg.ring_timeout_s, "service_level_s": cfg.service_level_s}


def agent_as_data(profile: AgentProfile) -> dict[str, Any]:
    return {"name": profile.name, "uri": profile.uri, "skills": dict(profile.skills),
            "queues": sorted(profile.queues)}


@dataclass(frozen=True)
class RoutingBase:
    """The queues and agents as the YAML configuration built them, before stored overrides were laid over them:
    what "reset to the configuration file" goes back to. Take it with `RoutingBase.of(acd)` before
    `apply_overrides`."""

    queues: Mapping[str, QueueConfig]
    agents: Mapping[str, AgentProfile]

    @classmethod
    def of(cls, acd: CallDistributor) -> RoutingBase:
        return cls({n: acd.queue_config(n) for n in acd.queue_names}, {r.id: r.profile for r in acd.agents()})


def reset_queue(acd: CallDistributor, base: RoutingBase, name: str) -> QueueConfig:
    """Puts queue `name` back to its YAML parameters, live (waiting calls keep their place). KeyError if the
    YAML has no such queue."""
    cfg = base.queues[name]
    return acd.update_queue(name, **{f.name: getattr(cfg, f.name) for f in fields(QueueConfig) if f.name != "name"})


def reset_agent(acd: CallDistributor, base: RoutingBase, agent_id: str) -> str:
    """Puts agent `agent_id` back to the YAML's profile, or, for an agent the YAML does not have (added in the
    console), removes her from the running distributor (`CallDistributor.remove_agent`: gone from the queues'
    statistics and the wallboard). Returns "live", "after_call" (her profile changes when her call ends) or
    "removed". ValueError if she is not in the YAML and is ringing, on a call or in wrap-up (nothing changed)."""
    profile = base.agents.get(agent_id)
    if profile is not None:
        return "live" if acd.put_agent(profile, AgentState.AVAILABLE) else "after_call"
    try:
        rec = acd.agent(agent_id)
    except KeyError:
        return "removed"  # never added here (stored under `hotline console` alone)
    acd.remove_agent(rec.id, "removed_by_admin")  # ValueError while ringing, on a call or in wrap-up
    return "removed"


def sync_one(
    acd: CallDistributor, base: RoutingBase, kind: str, name: str, stored: Mapping[str, Any] | None
) -> str:
    """Makes one queue or agent of this worker match the database: its stored override if there is one, else
    the YAML's (a reset or a removal made on another worker). Returns what `reset_*`/`put_agent` did or
    "applied"; ValueError if the stored row no longer fits (logged by the caller; the current value stays)."""
    if kind == "queue":
        if name not in acd.queue_names:
            raise ValueError(f"no queue {name} on this worker")
        if stored is None:
            reset_queue(acd, base, name)
        else:
            acd.update_queue(name, **queue_changes(stored))
        return "applied"
    if kind == "agent":
        if stored is None:
            return reset_agent(acd, base, name)
        return "live" if acd.put_agent(agent_profile(name, stored), AgentState.AVAILABLE) else "after_call"
    raise ValueError(f"kind must be queue or agent, not {kind[:20]!r}")
