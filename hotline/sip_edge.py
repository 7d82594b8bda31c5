"""Composition of the SIP edge: the endpoint with its admission control and the agents' registrar,
dialling agents at their registered contact, and the graceful drain on SIGTERM (docs/SECURITY.md)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from hotline.settings import ConfigError, Settings
from recordings.sip_accounts import SipAccount, SipAccounts
from telephony import CallLeg, SipEndpoint
from telephony.registrar import Ha1, Registrar

log = logging.getLogger(__name__)


def registrar_for(s: Settings) -> Registrar | None:
    """A registrar for the agents with ``register: true`` (None if there are none). Each password comes from
    the environment variable the agent's ``password_env`` names; a missing one stops the start-up."""
    users = yaml_sip_users(s)
    if not users:
        return None
    return Registrar(users, realm=s.sip.realm, algorithms=tuple(s.sip.digest_algorithms))


def yaml_sip_users(s: Settings) -> dict[str, str]:
    """SIP user → password of the YAML's agents with ``register: true`` (ConfigError if one is not set)."""
    users: dict[str, str] = {}
    for qi, q in enumerate(s.queues):
        for ai, a in enumerate(q.agents):
            if not a.registers or a.name in users:
                continue
            assert a.password_env is not None  # settings check it
            password = os.environ.get(a.password_env)
            if not password:
                raise ConfigError(_config_file(s), f"queues[{qi}].agents[{ai}].password_env",
                                  f"environment variable {a.password_env} (agent {a.name}'s SIP password) is not set")
            users[a.name] = password
    return users


def sip_account_secret(account: SipAccount, realm: str) -> Ha1 | None:
    """A stored desk-phone account as the registrar takes it; None (logged) if it was made for another realm
    (``sip.realm`` changed since: the admin sets a new password)."""
    if account.realm != realm:
        log.error("SIP account %s was made for realm %r, the registrar's is %r: set a new password in the console",
                  account.user, account.realm, realm)
        return None
    return Ha1(realm, dict(account.ha1))


def attach_sip_accounts(endpoint: Any, s: Settings, sync: Any, engine: Any, key: bytes | None) -> SipAccounts | None:
    """Desk-phone accounts made in the console (recordings/sip_accounts.py) into the endpoint's registrar, and
    `sync` (hotline/routing_sync.py) keeps them current. A registrar is made if the YAML has none, so the first
    account made in the console works without a restart. None for an endpoint without a registrar (pjsua2)."""
    if not hasattr(endpoint, "registrar"):
        log.info("SIP accounts from the console are not used: this SIP backend has no registrar")
        return None
    accounts = SipAccounts(engine, realm=s.sip.realm, key=key)
    if endpoint.registrar is None:
        endpoint.registrar = Registrar({}, realm=s.sip.realm, algorithms=tuple(s.sip.digest_algorithms))
    registrar: Registrar = endpoint.registrar
    loaded = []
    for account in accounts.all():  # at start-up, before calls: a blocking read is fine
        secret = sip_account_secret(account, registrar.realm)
        if secret is not None:
            registrar.set_user(account.user, secret)  # the console's account wins over the YAML's password
            loaded.append(account.user)
    if loaded:
        log.info("SIP accounts from the console: %s", ", ".join(loaded))
    sync.sip_accounts, sync.registrar, sync.yaml_sip = accounts, registrar, yaml_sip_users(s)
    return accounts


def trunk_auth_for(s: Settings) -> Registrar | None:
    """Digest authentication of INVITEs from sources off the allow-list (``sip.trunk_accounts``: user ->
    environment variable of its password); None when no account is configured. A missing password stops the
    start-up."""
    users: dict[str, str] = {}
    for user, env in s.sip.trunk_accounts.items():
        password = os.environ.get(env)
        if not password:
            raise ConfigError(_config_file(s), f"sip.trunk_accounts.{user}",
                              f"environment variable {env} (trunk account {user}'s SIP password) is not set")
        users[user] = password
    if not users:
        return None
    return Registrar(users, realm=s.sip.realm, algorithms=tuple(s.sip.digest_algorithms))


def _config_file(s: Settings) -> str:
    return os.path.join(s.config_dir, "server.yaml")


def sip_endpoint(s: Settings) -> SipEndpoint:
    """The project's own SIP endpoint with every ``sip:`` setting applied."""
    sip = s.sip
    return SipEndpoint(
        sip.host, sip.port, max_calls=sip.max_calls, rtp_ports=(sip.rtp_port_min, sip.rtp_port_max),
        max_message_bytes=sip.max_message_bytes, allow=sip.allow, invite_rate=sip.invite_rate,
        invite_burst=sip.invite_burst, register_rate=sip.register_rate, register_burst=sip.register_burst,
        max_loop_lag=sip.max_loop_lag_ms / 1000, max_loop_busy=sip.max_loop_busy if sip.max_loop_busy < 1 else None,
        max_cps=sip.max_cps or None, cps_burst=sip.cps_burst, max_rx_queue=sip.max_rx_queue_kb * 1024 or None,
        retry_after=sip.retry_after_s,
        registrar=registrar_for(s), invite_auth=trunk_auth_for(s),
    )


def agent_dialer(endpoint: Any, s: Settings, acd: Any = None) -> Callable[..., Awaitable[CallLeg]]:
    """``endpoint.dial`` that rings a registering agent's registered contact instead of the static URI. With
    the distributor (`acd`), also agents whose account was made in the console: the agent whose profile has
    that URI, if her id is a registrar user."""
    by_uri = {a.uri: a.name for q in s.queues for a in q.agents if a.registers}

    async def dial(uri: str, **kw: Any) -> CallLeg:
        registrar: Registrar | None = getattr(endpoint, "registrar", None)
        name = by_uri.get(uri)
        if name is None and registrar is not None and acd is not None:
            name = next((r.id for r in acd.agents() if r.profile.uri == uri and r.id in registrar.users), None)
        contact = registrar.lookup(name) if registrar is not None and name else None
        if contact:
            log.info("agent %s is registered: ringing %s instead of %s", name, contact, uri)
            uri = contact
        leg: CallLeg = await endpoint.dial(uri, **kw)
        return leg

    return dial


async def drain(endpoint: Any, timeout: float, abort: asyncio.Event) -> int:
    """SIGTERM: new calls get 503, calls in progress may finish for ``timeout`` s or until ``abort`` is
    set (a second SIGTERM). Returns how many calls were still up (the caller's stop() hangs them up)."""
    if not hasattr(endpoint, "drain"):
        return len(getattr(endpoint, "calls", []))
    left: int = await endpoint.drain(timeout, abort)
    return left
