"""Console changes to queues and agents reach every worker live (docs/CONSOLE.md, "Queues and agents").

The worker whose console stored a change (or a reset) applies it itself and publishes `RoutingConfigChanged`
(`routing.config_changed`: kind and name only; the database holds the settings). Every other worker, on
that event from the bus (MQTT between workers), re-reads that one row and applies it to its own distributor
with `routing.admin.sync_one`: the stored settings if there is a row, else the YAML's (`RoutingBase`, taken
before the stored rows were laid over the YAML at start-up). A row that no longer fits is logged and
skipped, as at start-up.

Desk-phone SIP accounts (kind "sip", name the SIP user) travel the same way: the registrar of every worker,
this one included, re-reads that account (recordings/sip_accounts.py: the digest hashes) and takes it, or
forgets the user and her bindings if the row is gone (hotline/sip_edge.py `sip_account_secret`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hotline.bus import EventBus
from hotline.events import Event, RoutingConfigChanged
from hotline.sip_edge import sip_account_secret
from recordings.routing_admin import RoutingOverrides
from recordings.sip_accounts import SipAccounts
from routing import CallDistributor
from routing.admin import RoutingBase, sync_one
from telephony.registrar import Ha1, Registrar

log = logging.getLogger(__name__)


class RoutingSync:
    """`changed(kind, name)` announces this worker's change; other workers' announcements are applied here."""

    def __init__(self, acd: CallDistributor, base: RoutingBase, overrides: RoutingOverrides, bus: EventBus,
                 node: str) -> None:
        self.acd, self.base, self.overrides, self.bus, self.node = acd, base, overrides, bus, node
        self._tasks: set[asyncio.Task[Any]] = set()
        self.applied: list[tuple[str, str, str]] = []  # (kind, name, result) applied from other workers
        self.sip_accounts: SipAccounts | None = None  # desk-phone accounts and this worker's registrar:
        self.registrar: Registrar | None = None  # set by hotline/sip_edge.py attach_sip_accounts
        self.yaml_sip: dict[str, str] = {}  # the YAML's registering agents' passwords (password_env)
        self._unsubscribe = bus.subscribe(self.on_event)

    def changed(self, kind: str, name: str) -> None:
        if kind == "sip":  # the console stored it; this worker's registrar takes it too (at once, off the loop)
            self._spawn(self.apply(kind, name, self.node))
        self.bus.publish(RoutingConfigChanged("", kind=kind, name=name, node=self.node))

    def on_event(self, event: Event) -> None:
        if not isinstance(event, RoutingConfigChanged) or event.node == self.node:
            return  # ours: applied by the console already
        self._spawn(self.apply(event.kind, event.name, event.node))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self) -> None:
        """Waits until every change being applied now is applied (tests; a clean stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def apply(self, kind: str, name: str, source: str = "") -> str | None:
        """Re-reads one stored row (off the loop) and applies it, or the YAML's settings if it is gone."""
        if kind == "sip":
            return await self._apply_sip(name, source)
        if kind not in ("queue", "agent"):
            log.warning("routing change from worker %s ignored: unknown kind %r", source, kind[:20])
            return None
        try:
            row = await asyncio.to_thread(self.overrides.get, kind, name)  # type: ignore[arg-type]
            result = sync_one(self.acd, self.base, kind, name, row.data if row is not None else None)
        except ValueError as exc:
            log.error("routing change of %s %s from worker %s not applied here: %s", kind, name[:64], source, exc)
            return None
        except Exception:
            log.exception("routing change of %s %s from worker %s failed here", kind, name[:64], source)
            return None
        log.info("routing change of %s %s from worker %s applied (%s)", kind, name, source,
                 "stored settings" if row is not None else "configuration file")
        self.applied.append((kind, name, result))
        return result

    async def _apply_sip(self, user: str, source: str) -> str | None:
        if self.sip_accounts is None or self.registrar is None:
            log.info("SIP account %s changed on worker %s: no registrar here", user[:64], source)
            return None
        try:
            account = await asyncio.to_thread(self.sip_accounts.get, user)
        except Exception as exc:  # database away or hashes unreadable: the registrar keeps what it has
            log.error("SIP account %s from worker %s not applied here: %s", user[:64], source, exc)
            return None
        secret: Ha1 | str | None = sip_account_secret(account, self.registrar.realm) if account else None
        if secret is None:
            secret = self.yaml_sip.get(user)  # a YAML agent's password (password_env) comes back
        if secret is None:
            gone = self.registrar.remove_user(user)
            result = "removed" if gone else "absent"
        else:
            self.registrar.set_user(user, secret)
            result = "set"
        log.info("SIP account %s from worker %s: %s in this worker's registrar", user, source, result)
        if source != self.node:
            self.applied.append(("sip", user, result))
        return result

    async def stop(self) -> None:
        self._unsubscribe()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
