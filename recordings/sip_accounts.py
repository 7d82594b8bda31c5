"""Agents' desk-phone SIP accounts made in the console (table `sip_accounts`, migration 0007).

A registering agent proves she knows her password with HTTP digest (RFC 7616). The registrar needs only
H(A1) = H(user:realm:password) per algorithm, so that is all this table keeps, never the password: one row
per SIP user (the agent id) with the realm the hashes were made for and the hashes as JSON
({"SHA-256": hex, "MD5": hex}). With a key (`HOTLINE_RECORDING_KEY`, recordings/atrest.py) the hashes are
sealed with AES-256-GCM like the recordings and callback numbers at rest. An HA1 is password-equivalent for
this realm: it lets a thief register as the agent, not learn her password elsewhere.

Password policy: the console's (recordings/users.py) and at least `MIN_SIP_PASSWORD_LEN` characters (a
phone's password is typed once and guessed offline from one captured REGISTER if it is weak).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from recordings.atrest import RecordingUnreadable, decrypt, encrypt
from recordings.users import PasswordRejected, check_password_policy

log = logging.getLogger(__name__)

MIN_SIP_PASSWORD_LEN = 12
ALGORITHMS = ("SHA-256", "MD5")
SEALED = "aes:"  # prefix of a sealed value: base64 of recordings.atrest.encrypt(...)

_meta = sa.MetaData()
sip_accounts_table = sa.Table(
    "sip_accounts",
    _meta,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("realm", sa.String(64), nullable=False),
    sa.Column("ha1", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(64), nullable=False),
)


class SipAccountUnreadable(ValueError):
    """Stored hashes cannot be read (sealed and no key, the wrong key, or damaged)."""


@dataclass(frozen=True)
class SipAccount:
    user: str
    realm: str
    ha1: dict[str, str]  # digest algorithm -> H(user:realm:password), lowercase hex
    updated_at: datetime
    updated_by: str

    def __repr__(self) -> str:  # the hashes never reach a log
        return f"SipAccount(user={self.user!r}, realm={self.realm!r}, updated_by={self.updated_by!r})"


def ha1_hashes(user: str, realm: str, password: str) -> dict[str, str]:
    """H(user:realm:password) for MD5 and SHA-256 (RFC 7616 section 3.4.2)."""
    a1 = f"{user}:{realm}:{password}".encode()
    return {"SHA-256": hashlib.sha256(a1).hexdigest(), "MD5": hashlib.md5(a1, usedforsecurity=False).hexdigest()}


def check_sip_password(user: str, password: str) -> None:
    """PasswordRejected with the rule broken: the console's policy, and at least 12 characters."""
    if len(password) < MIN_SIP_PASSWORD_LEN:
        raise PasswordRejected(f"a desk phone's password must have at least {MIN_SIP_PASSWORD_LEN} characters")
    check_password_policy(user, password)


class SipAccounts:
    """Blocking repository (run it off the event loop). `realm` is the registrar's digest realm
    (`sip.realm`); `key` seals the hashes (None: stored as they are)."""

    def __init__(self, engine: Engine, *, realm: str, key: bytes | None = None) -> None:
        self.engine, self.realm, self.key = engine, realm, key  # table from migration 0007 (CallStore upgrades)

    def set_password(self, user: str, password: str, *, by: str) -> None:
        """Stores the hashes of a new password for `user` (PasswordRejected if it breaks the policy)."""
        if not 1 <= len(user) <= 64:
            raise ValueError("a SIP user name has 1 to 64 characters")
        check_sip_password(user, password)
        text = json.dumps(ha1_hashes(user, self.realm, password), sort_keys=True)
        values = {"realm": self.realm, "ha1": self._seal(text), "updated_at": datetime.now(UTC),
                  "updated_by": by[:64]}
        with self.engine.begin() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(sip_accounts_table.insert().values(username=user, **values))
            except IntegrityError:
                conn.execute(sip_accounts_table.update().where(sip_accounts_table.c.username == user).values(**values))
        log.info("SIP account %s: password set by %s", user, by)

    def delete(self, user: str) -> bool:
        with self.engine.begin() as conn:
            n = conn.execute(sip_accounts_table.delete().where(sip_accounts_table.c.username == user)).rowcount
        if n:
            log.info("SIP account %s removed", user)
        return bool(n)

    def get(self, user: str) -> SipAccount | None:
        """One account, or None. SipAccountUnreadable if its hashes cannot be opened."""
        with self.engine.connect() as conn:
            row = conn.execute(sip_accounts_table.select().where(sip_accounts_table.c.username == user)).first()
        return None if row is None else self._account(row)

    def users(self) -> list[str]:
        """The users with an account (nothing opened: for lists)."""
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(sip_accounts_table.c.username).order_by(sip_accounts_table.c.username))
                        .scalars())

    def all(self) -> list[SipAccount]:
        """Every readable account; one that cannot be opened is logged and skipped (never fatal)."""
        out = []
        with self.engine.connect() as conn:
            rows = list(conn.execute(sip_accounts_table.select().order_by(sip_accounts_table.c.username)))
        for row in rows:
            try:
                out.append(self._account(row))
            except SipAccountUnreadable as exc:
                log.error("SIP account %s skipped: %s", row.username, exc)
        return out

    def _account(self, row: sa.Row[tuple[object, ...]]) -> SipAccount:
        try:
            ha1 = json.loads(self._unseal(row.ha1))
        except ValueError as exc:
            raise SipAccountUnreadable(f"SIP account {row.username}: {exc}") from None
        at = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
        hashes = {k: v for k, v in ha1.items() if k in ALGORITHMS}
        return SipAccount(row.username, row.realm, hashes, at, row.updated_by)

    def _seal(self, text: str) -> str:
        if self.key is None:
            return text
        return SEALED + base64.b64encode(encrypt(text.encode(), self.key)).decode()

    def _unseal(self, value: str) -> str:
        if not value.startswith(SEALED):
            return value
        if self.key is None:
            raise SipAccountUnreadable("the hashes are sealed and no key is set (HOTLINE_RECORDING_KEY)")
        try:
            return decrypt(base64.b64decode(value[len(SEALED):]), self.key).decode()
        except (RecordingUnreadable, ValueError) as exc:
            raise SipAccountUnreadable(f"the hashes cannot be opened: {exc}") from None
