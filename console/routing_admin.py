"""Admin pages for queues and agents: /admin/queues and /admin/agents (docs/CONSOLE.md, "Queues and agents").

Supervisors may look, admins may change. A change is checked (routing/admin.py), stored in the call
database (recordings/routing_admin.py), audited, and, when the console runs inside `hotline serve`
(it then has the distributor), applied to the running hotline at once. Under `hotline console` alone
there is no distributor: the change is stored and applies at the next start of `hotline serve`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from console.context import ctx, lang_of, requires, user_of
from recordings.routing_admin import RoutingOverrides
from recordings.sip_accounts import SipAccounts
from recordings.users import PasswordRejected, Role
from routing import AgentState, QueueConfig, UnknownQueue, strategy_names
from routing.admin import (
    RoutingBase,
    agent_as_data,
    agent_profile,
    queue_as_data,
    queue_changes,
    reset_agent,
    reset_queue,
)
from routing.distributor import check_name, check_profile, check_queue

log = logging.getLogger(__name__)

MAX_FIELD = 1000  # characters in one form field
AGENT_FIELDS = ("id", "name", "uri", "skills", "queues")
SIP_ACTIONS = ("sip_account_set", "sip_account_removed")
OVERRIDES: web.AppKey[RoutingOverrides] = web.AppKey("routing_overrides", RoutingOverrides)


@dataclass(frozen=True)
class RoutingHooks:
    """What the composition (hotline/web.py) hands the admin pages besides the distributor: `base`, the queues
    and agents as the YAML built them (for "reset to the configuration file"), and `changed(kind, name)`,
    called after every stored change so other workers apply it (hotline/routing_sync.py: the bus; kind "sip"
    for a desk phone's SIP account, which that also applies to this worker's registrar). `sip_accounts`, the
    store of those accounts with the registrar's realm and key (None: no desk-phone passwords here)."""

    base: RoutingBase | None = None
    changed: Callable[[str, str], None] | None = None
    sip_accounts: SipAccounts | None = None


HOOKS: web.AppKey[RoutingHooks] = web.AppKey("routing_hooks", RoutingHooks)

TEXT = {  # key: (en, zh)
    "queues": ("Queues", "队列"), "agents": ("Agents", "坐席"), "save": ("Save", "保存"),
    "strategy": ("Strategy", "分配策略"), "needs": ("Required skills", "所需技能"), "priority": ("Priority", "优先级"),
    "max_wait_s": ("Max wait (s)", "最长等待(秒)"), "overflow": ("Overflow", "溢出"),
    "overflow_to": ("Overflow to", "溢出到"), "wrap_up_s": ("Wrap-up (s)", "话后处理(秒)"),
    "ring_timeout_s": ("Ring timeout (s)", "振铃超时(秒)"), "hours": ("Opening hours", "服务时间"),
    "tz": ("Time zone", "时区"), "holidays": ("Holidays", "节假日"), "name": ("Name", "姓名"),
    "id": ("Agent id", "坐席编号"), "uri": ("SIP URI", "SIP 地址"), "skills": ("Skills", "技能"),
    "agent_queues": ("Queues (empty: all)", "队列(空:全部)"), "add_agent": ("Add or change an agent", "新增或修改坐席"),
    "state": ("State", "状态"), "stored": ("Stored changes", "已保存的修改"),
    "other_queue": ("Change a queue of the configuration", "修改配置中的队列"), "queue_name": ("Queue", "队列"),
    "edit": ("Edit", "编辑"),
    "reset": ("Reset to configuration file", "恢复为配置文件的设置"), "remove": ("Remove", "删除"),
    "reset_live": ("Reset to the configuration file: live now.", "已恢复为配置文件的设置,立即生效。"),
    "reset_after_call": ("Reset to the configuration file: applies when the agent's call ends.",
                         "已恢复为配置文件的设置,坐席通话结束后生效。"),
    "reset_next_start": ("Stored change deleted: the configuration file applies at the next start.",
                         "已删除保存的修改,热线下次启动时使用配置文件的设置。"),
    "removed": ("Agent removed: live now.", "坐席已删除,立即生效。"),
    "live": ("Saved: live now.", "已保存,立即生效。"),
    "after_call": ("Saved: applies when the agent's call ends.", "已保存,坐席通话结束后生效。"),
    "next_start": ("Saved: applies at the next start of the hotline (this console runs alone).",
                   "已保存,热线下次启动时生效(本控制台单独运行)。"),
    "offline": ("This console runs without the hotline: changes are stored and apply at its next start.",
                "本控制台未与热线同时运行:修改将保存,并在热线下次启动时生效。"),
    "yaml_base": ("The YAML configuration is the base; changes stored here win over it at start-up.",
                  "以 YAML 配置为基础;此处保存的修改在启动时优先。"),
    "hours_help": ("e.g. mon-fri=08:00-20:00; sat=09:00-12:00 (empty: always open)",
                   "例如 mon-fri=08:00-20:00; sat=09:00-12:00(空:全天开放)"),
    "skills_help": ("e.g. zh:3, cards:2 (levels 1-10)", "例如 zh:3, cards:2(等级 1-10)"),
    "registers": ("Desk phone registers", "座席话机注册"), "sip_password": ("SIP password", "SIP 密码"),
    "sip_new_password": ("Set new password (empty: keep)", "设置新密码(空:保持不变)"),
    "sip_help": ("SIP user name: the agent id; at least 12 characters; never shown again.",
                 "SIP 用户名即坐席编号;至少 12 个字符;保存后不再显示。"),
    "sip_account": ("desk phone account", "话机账号"),
    "sip_off": ("Desk-phone accounts are made inside the running hotline.", "话机账号须在运行中的热线里设置。"),
}


def _labels(request: web.Request) -> dict[str, str]:
    zh = lang_of(request) == "zh"
    return {k: (v[1] if zh else v[0]) for k, v in TEXT.items()}


DONE = ("live", "after_call", "next_start", "reset_live", "reset_after_call", "reset_next_start", "removed")


def overrides_of(app: web.Application) -> RoutingOverrides:
    return app[OVERRIDES]


# -- form parsing ------------------------------------------------------------------------------
def _field(form: Any, key: str) -> str:
    value = form.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected text")
    if len(value) > MAX_FIELD:
        raise ValueError(f"{key}: at most {MAX_FIELD} characters")
    if any(ord(ch) < 32 and ch not in "\t\r\n" for ch in value):
        raise ValueError(f"{key}: control characters are not allowed")
    return value.strip()


def _seconds(form: Any, key: str, *, optional: bool) -> float | None:
    raw = _field(form, key)
    if not raw and optional:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{key}: {raw[:40]!r} is not a number of seconds") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{key}: not a number")
    if value < 0:
        raise ValueError(f"{key}: must not be negative")
    return value


def parse_skills(text: str, key: str = "skills") -> dict[str, int]:
    """"zh:3, cards:2" → {"zh": 3, "cards": 2} (a bare name means level 1)."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.replace(";", ",").split(","))):
        name, sep, level = part.partition(":")
        name = check_name("skill", name.strip())
        try:
            out[name] = int(level.strip()) if sep else 1
        except ValueError:
            raise ValueError(f"{key}: level of {name} must be a whole number, not {level.strip()[:20]!r}") from None
    return out


def parse_hours(tz: str, weekly: str, holidays: str) -> dict[str, Any] | None:
    if not weekly:
        return None
    spec: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in weekly.replace("\n", ";").split(";"))):
        days, sep, ranges = part.partition("=")
        if not sep:
            raise ValueError(f"hours: {part[:40]!r} should look like mon-fri=08:00-20:00")
        spec.setdefault(days.strip(), []).extend(r.strip() for r in ranges.split(",") if r.strip())
    return {"tz": tz or "UTC", "weekly": spec, "holidays": [h.strip() for h in holidays.split(",") if h.strip()]}


def queue_form(form: Any) -> dict[str, Any]:
    """The queue form → an override dict (routing/admin.py); ValueError with a clear message if bad."""
    strategy = _field(form, "strategy")
    overflow = _field(form, "overflow") or None
    priority_raw = _field(form, "priority") or "0"
    try:
        priority = int(priority_raw)
    except ValueError:
        raise ValueError(f"priority: {priority_raw[:20]!r} is not a whole number") from None
    data: dict[str, Any] = {
        "strategy": strategy,
        "needs": parse_skills(_field(form, "needs"), "needs"),
        "priority": priority,
        "max_wait_s": _seconds(form, "max_wait_s", optional=True),
        "overflow": overflow,
        "overflow_to": _field(form, "overflow_to") or None,
        "wrap_up_s": _seconds(form, "wrap_up_s", optional=False),
        "ring_timeout_s": _seconds(form, "ring_timeout_s", optional=True),
        "hours": parse_hours(_field(form, "tz"), _field(form, "weekly"), _field(form, "holidays")),
    }
    queue_changes(data)  # every value checked the way start-up will check it
    return data


def agent_form(form: Any) -> tuple[str, dict[str, Any]]:
    agent_id = check_name("agent", _field(form, "id"))
    queues = [check_name("queue", q.strip()) for q in _field(form, "queues").split(",") if q.strip()]
    data = {"name": _field(form, "name") or agent_id, "uri": _field(form, "uri"),
            "skills": parse_skills(_field(form, "skills")), "queues": queues}
    agent_profile(agent_id, data)
    return agent_id, data


# -- pages -------------------------------------------------------------------------------------
def _queue_rows(request: web.Request, stored: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    acd = ctx(request).acd
    rows: list[dict[str, Any]] = []
    names = list(acd.queue_names) if acd is not None else []
    names += sorted(n for n in stored if n not in names)
    for name in names:
        live = queue_as_data(acd, name) if acd is not None and name in acd.queue_names else {}
        data = {**live, **stored.get(name, {})}
        hours = data.get("hours") or {}
        rows.append({
            "name": name, "stored": name in stored, "strategy": data.get("strategy", "longest_idle"),
            "needs": ", ".join(f"{k}:{v}" for k, v in sorted((data.get("needs") or {}).items())),
            "priority": data.get("priority", 0), "max_wait_s": _num(data.get("max_wait_s")),
            "overflow": data.get("overflow") or "", "overflow_to": data.get("overflow_to") or "",
            "wrap_up_s": _num(data.get("wrap_up_s", 0.0)), "ring_timeout_s": _num(data.get("ring_timeout_s")),
            "tz": hours.get("tz", "UTC"),
            "weekly": "; ".join(f"{d}={','.join(r)}" for d, r in (hours.get("weekly") or {}).items()),
            "holidays": ", ".join(hours.get("holidays") or []),
        })
    return rows


def _num(value: Any) -> str:
    if value is None:
        return ""
    return f"{float(value):g}"


def _agent_rows(request: web.Request, stored: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    acd = ctx(request).acd
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    if acd is not None:
        for rec in sorted(acd.agents(), key=lambda r: r.id):
            pending = acd.pending_profile(rec.id)
            data = agent_as_data(pending or rec.profile)
            rows.append({"id": rec.id, "state": str(rec.state), "pending": pending is not None,
                         "stored": rec.id in stored, **_agent_text(data)})
            seen.add(rec.id)
    for agent_id, data in sorted(stored.items()):
        if agent_id not in seen:
            rows.append({"id": agent_id, "state": "", "pending": False, "stored": True, **_agent_text(data)})
    return rows


def _agent_text(data: dict[str, Any]) -> dict[str, str]:
    return {"name": str(data.get("name", "")), "uri": str(data.get("uri", "")),
            "skills": ", ".join(f"{k}:{v}" for k, v in sorted((data.get("skills") or {}).items())),
            "queues": ", ".join(data.get("queues") or [])}


async def _page(request: web.Request, kind: str, error: str = "", status: int = 200,
                form: dict[str, str] | None = None) -> web.StreamResponse:
    from console.pages import render

    c = ctx(request)
    store = overrides_of(request.app)
    queues, agents = await c.db(store.as_maps)
    audit = await c.db(c.users.audit_log, 20, action=f"{kind}_change")
    L = _labels(request)
    done = request.query.get("done", "")
    common = {"L": L, "error": error, "done": L.get(done, "") if done in DONE else "",
              "live_acd": c.acd is not None, "audit": audit, "base": request.app[HOOKS].base}
    if kind == "queue":
        blank = {"strategy": "longest_idle", "needs": "", "priority": 0, "max_wait_s": "", "overflow": "",
                 "overflow_to": "", "wrap_up_s": "5", "ring_timeout_s": "20", "weekly": "", "tz": "UTC", "holidays": ""}
        return render(request, "admin_queues.html", status, queues=_queue_rows(request, queues),
                      strategies=strategy_names(), blank=blank, **common)
    rows = _agent_rows(request, agents)
    sip = request.app[HOOKS].sip_accounts
    accounts = set(await c.db(sip.users)) if sip is not None else set()
    for r in rows:
        r["sip"] = r["id"] in accounts
    if form is None:  # "?edit=<id>": the form starts with that agent's settings
        form = next(({**{k: str(r[k]) for k in AGENT_FIELDS}, "registers": "on" if r["sip"] else ""}
                     for r in rows if r["id"] == request.query.get("edit")), {})
    sip_audit = [e for action in SIP_ACTIONS for e in await c.db(c.users.audit_log, 10, action=action)]
    common["audit"] = sorted([*audit, *sip_audit], key=lambda e: e.at, reverse=True)[:20]
    return render(request, "admin_agents.html", status, agents=rows,
                  form={k: form.get(k, "") for k in (*AGENT_FIELDS, "registers")}, sip_on=sip is not None,
                  queue_names=list(c.acd.queue_names) if c.acd is not None else sorted(queues), **common)


@requires(Role.SUPERVISOR)
async def queues_page(request: web.Request) -> web.StreamResponse:
    return await _page(request, "queue")


@requires(Role.SUPERVISOR)
async def agents_page(request: web.Request) -> web.StreamResponse:
    return await _page(request, "agent")


@requires(Role.ADMIN)
async def change_queue(request: web.Request) -> web.StreamResponse:
    return await _change_queue(request, request.match_info["name"])


@requires(Role.ADMIN)
async def change_named_queue(request: web.Request) -> web.StreamResponse:
    """The form with the queue's name in a field (under `hotline console` alone, for a queue not shown yet)."""
    form = await request.post()
    name = form.get("name", "")
    return await _change_queue(request, name.strip() if isinstance(name, str) else "")


async def _change_queue(request: web.Request, name: str) -> web.StreamResponse:
    c = ctx(request)
    user = user_of(request).name
    form = await request.post()
    try:
        check_name("queue", name)
        if c.acd is not None and name not in c.acd.queue_names:
            raise UnknownQueue(name)
        data = queue_form(form)
        changes = queue_changes(data)
        if c.acd is not None:  # the whole new configuration checked before anything is stored
            check_queue(replace(c.acd.queue_config(name), **changes), _queue_map(c.acd))
        else:
            QueueConfig(name, **changes)
    except UnknownQueue as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    except (ValueError, TypeError) as exc:
        log.info("console: %s: queue %s change refused: %s", user, name[:64], exc)
        return await _page(request, "queue", str(exc), 400)
    await c.db(overrides_of(request.app).put, "queue", name, data, by=user)
    done = "next_start"
    if c.acd is not None:
        c.acd.update_queue(name, **changes)
        done = "live"
    await c.db(c.users.audit, user, "queue_change", name, json.dumps(data, sort_keys=True, ensure_ascii=False))
    _tell_workers(request, "queue", name)
    raise web.HTTPFound(f"/admin/queues?done={done}")


def _queue_map(acd: Any) -> dict[str, QueueConfig]:
    return {n: acd.queue_config(n) for n in acd.queue_names}


@requires(Role.ADMIN)
async def change_agent(request: web.Request) -> web.StreamResponse:
    c = ctx(request)
    user = user_of(request).name
    form = await request.post()
    sip = request.app[HOOKS].sip_accounts
    try:
        agent_id, data = agent_form(form)
        profile = agent_profile(agent_id, data)
        if c.acd is not None:
            check_profile(profile, _queue_map(c.acd))
        sip_change = await _sip_change(c, sip, agent_id, form)  # checked before anything is stored
    except (ValueError, TypeError) as exc:  # PasswordRejected is a ValueError; its message holds no secret
        log.info("console: %s: agent change refused: %s", user, exc)
        sent = {k: v[:MAX_FIELD] for k in (*AGENT_FIELDS, "registers") if isinstance(v := form.get(k, ""), str)}
        return await _page(request, "agent", str(exc), 400, form=sent)  # what was typed, never the password
    if sip is not None and sip_change is not None:
        await _apply_sip_change(request, sip, agent_id, sip_change)
    await c.db(overrides_of(request.app).put, "agent", agent_id, data, by=user)
    done = "next_start"
    if c.acd is not None:
        done = "live" if c.acd.put_agent(profile, AgentState.AVAILABLE) else "after_call"
    await c.db(c.users.audit, user, "agent_change", agent_id, json.dumps(data, sort_keys=True, ensure_ascii=False))
    _tell_workers(request, "agent", agent_id)
    raise web.HTTPFound(f"/admin/agents?done={done}")


async def _sip_change(c: Any, sip: SipAccounts | None, agent_id: str, form: Any) -> str | None:
    """What the desk-phone fields ask: a new password (checked against the policy), "remove", or None (no
    change). ValueError when they cannot be honoured."""
    registers = form.get("registers", "") in ("on", "1", "true")
    password = form.get("sip_password", "")
    if not isinstance(password, str) or len(password) > MAX_FIELD:
        raise ValueError(f"sip_password: text of at most {MAX_FIELD} characters")
    if sip is None:
        if registers or password:
            raise ValueError("desk-phone accounts are made inside the running hotline (hotline serve)")
        return None
    exists = agent_id in await c.db(sip.users)
    if not registers:
        if password:
            raise ValueError("a SIP password was typed but \"Desk phone registers\" is not ticked")
        return "remove" if exists else None
    if not password:
        if not exists:
            raise ValueError("a desk phone that registers needs a SIP password")
        return None
    from recordings.sip_accounts import check_sip_password

    check_sip_password(agent_id, password)
    return password


async def _apply_sip_change(request: web.Request, sip: SipAccounts, agent_id: str, change: str) -> None:
    """Stores (or deletes) the account, audits it without the secret, and has every worker's registrar take it."""
    c, user = ctx(request), user_of(request).name
    if change == "remove":
        await c.db(sip.delete, agent_id)
        await c.db(c.users.audit, user, "sip_account_removed", agent_id, "desk phone no longer registers")
    else:
        try:
            await c.db(sip.set_password, agent_id, change, by=user)
        except PasswordRejected as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        await c.db(c.users.audit, user, "sip_account_set", agent_id, "new password (digest hashes stored)")
    _tell_workers(request, "sip", agent_id)


def _tell_workers(request: web.Request, kind: str, name: str) -> None:
    changed = request.app[HOOKS].changed
    if changed is None:
        return
    try:
        changed(kind, name)
    except Exception:  # stored and live here already; other workers then see it at their next start
        log.exception("console: routing change of %s %s not announced to other workers", kind, name)


@requires(Role.ADMIN)
async def reset_queue_route(request: web.Request) -> web.StreamResponse:
    """Deletes a queue's stored change and puts the YAML's parameters back (live inside `hotline serve`)."""
    c = ctx(request)
    user, name = user_of(request).name, request.match_info["name"]
    try:
        check_name("queue", name)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    base = request.app[HOOKS].base
    if not await c.db(overrides_of(request.app).delete, "queue", name):
        return await _page(request, "queue", f"queue {name}: no stored change to reset", 404)
    done = "reset_next_start"  # also a stale row of a queue the configuration no longer has: just deleted
    if c.acd is not None and base is not None and name in base.queues and name in c.acd.queue_names:
        reset_queue(c.acd, base, name)
        done = "reset_live"
    log.info("console: %s reset queue %s to the configuration file (%s)", user, name, done)
    await c.db(c.users.audit, user, "queue_change", name, "reset to the configuration file")
    _tell_workers(request, "queue", name)
    raise web.HTTPFound(f"/admin/queues?done={done}")


@requires(Role.ADMIN)
async def reset_agent_route(request: web.Request) -> web.StreamResponse:
    """Deletes an agent's stored change: a YAML agent gets the YAML's profile back, an agent added here is
    removed from the running distributor (`CallDistributor.remove_agent`). Refused (409, nothing changed) for
    an added agent who is ringing, on a call or in wrap-up."""
    c = ctx(request)
    user, agent_id = user_of(request).name, request.match_info["id"]
    try:
        check_name("agent", agent_id)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    store = overrides_of(request.app)
    _queues, agents = await c.db(store.as_maps)
    if agent_id not in agents:
        return await _page(request, "agent", f"agent {agent_id}: no stored change to reset", 404)
    base = request.app[HOOKS].base
    done = "reset_next_start"
    if c.acd is not None and base is not None:
        try:
            result = reset_agent(c.acd, base, agent_id)
        except ValueError as exc:
            return await _page(request, "agent", str(exc), 409)
        done = {"live": "reset_live", "after_call": "reset_after_call"}.get(result, "removed")
    await c.db(store.delete, "agent", agent_id)
    sip = request.app[HOOKS].sip_accounts
    if done in ("removed", "reset_next_start") and base is not None and agent_id not in base.agents \
            and sip is not None and agent_id in await c.db(sip.users):
        await _apply_sip_change(request, sip, agent_id, "remove")  # her desk phone may no longer register
    detail = "removed (not in the configuration file)" if done == "removed" else "reset to the configuration file"
    log.info("console: %s: agent %s %s", user, agent_id, detail)
    await c.db(c.users.audit, user, "agent_change", agent_id, detail)
    _tell_workers(request, "agent", agent_id)
    raise web.HTTPFound(f"/admin/agents?done={done}")


def add_routes(app: web.Application, hooks: RoutingHooks | None = None) -> None:
    from console.context import CONSOLE

    app[OVERRIDES] = RoutingOverrides(app[CONSOLE].calls.engine)
    app[HOOKS] = hooks or RoutingHooks()
    r = app.router
    r.add_get("/admin/queues", queues_page)
    r.add_post("/admin/queues", change_named_queue)
    r.add_post("/admin/queues/{name}", change_queue)
    r.add_post("/admin/queues/{name}/reset", reset_queue_route)
    r.add_get("/admin/agents", agents_page)
    r.add_post("/admin/agents", change_agent)
    r.add_post("/admin/agents/{id}/reset", reset_agent_route)
