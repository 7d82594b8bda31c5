"""Console users, their sessions and the audit log: who may read which call, and who did.

Passwords are hashed with scrypt (random salt, parameters stored with the hash); after
`MAX_FAILED_LOGINS` wrong passwords an account is locked for `LOCKOUT_S`. Session ids are random
tokens; only a keyed hash of each is stored, so a copy of the database cannot be used to log in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, delete, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from recordings.models import Base

log = logging.getLogger(__name__)

MAX_FAILED_LOGINS = 5
LOCKOUT_S = 15 * 60
MIN_PASSWORD_LEN = 10
MAX_PASSWORD_LEN = 256  # scrypt's cost does not grow with length, but a 10 MB "password" is not one
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-")


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


# What each role may do is a superset of the roles below it.
ROLE_RANK = {Role.AGENT: 1, Role.SUPERVISOR: 2, Role.ADMIN: 3}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text)
    lang: Mapped[str] = mapped_column(String(8), default="en")
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebSession(Base):
    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # keyed hash of the cookie's token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8), default="cookie")  # cookie | token (API bearer token)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    user: Mapped[str] = mapped_column(String(64))
    # login, login_failed, logout, view_transcript, play_recording, user_added, role_changed, unlocked, ...
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


class CallNote(Base):
    """An agent's wrap-up: disposition and notes for a call they took."""

    __tablename__ = "call_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    user: Mapped[str] = mapped_column(String(64))
    disposition: Mapped[str] = mapped_column(String(32))
    notes: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


DISPOSITIONS = ("resolved", "follow_up", "escalated", "complaint", "wrong_number", "other")


class PasswordRejected(ValueError):
    """The password does not meet the policy; the message says which rule."""


class UserExists(ValueError):
    pass


class UnknownUser(KeyError):
    def __str__(self) -> str:
        return f"no user {self.args[0]!r}"


@dataclass(frozen=True)
class UserView:
    id: int
    name: str
    role: Role
    lang: str
    failed_logins: int
    locked_until: datetime | None
    created_at: datetime

    def locked(self, now: datetime | None = None) -> bool:
        return self.locked_until is not None and _aware(self.locked_until) > (now or utcnow())

    def at_least(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


@dataclass(frozen=True)
class SessionView:
    user: UserView
    csrf: str
    kind: str


@dataclass(frozen=True)
class LoginResult:
    user: UserView | None  # None: refused
    reason: str  # ok, bad_credentials, locked


@dataclass(frozen=True)
class NoteView:
    call_id: str
    user: str
    disposition: str
    notes: str
    at: datetime


@dataclass(frozen=True)
class AuditView:
    at: datetime
    user: str
    action: str
    target: str
    detail: str


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(dt: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were written in UTC."""
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(want)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))  # unknown names cost as much as known ones


def check_password_policy(name: str, password: str) -> None:
    """Raises PasswordRejected with the rule broken."""
    if len(password) < MIN_PASSWORD_LEN:
        raise PasswordRejected(f"the password must have at least {MIN_PASSWORD_LEN} characters")
    if len(password) > MAX_PASSWORD_LEN:
        raise PasswordRejected(f"the password must have at most {MAX_PASSWORD_LEN} characters")
    if password.isdigit():
        raise PasswordRejected("the password must not be only digits")
    if password.strip().casefold() == name.casefold() or name.casefold() in password.casefold():
        raise PasswordRejected("the password must not contain the user name")


def check_user_name(name: str) -> None:
    if not 1 <= len(name) <= 64 or not set(name) <= NAME_CHARS:
        raise ValueError("user names are 1 to 64 characters: lower-case letters, digits, '.', '_' and '-'")


class UserStore:
    """Blocking repository over the call database (run it off the event loop)."""

    def __init__(self, engine: Engine, *, session_key: bytes | None = None) -> None:
        self.engine = engine
        # CallStore creates every table of Base it knows; these may be imported after it ran.
        tables = [Base.metadata.tables[t] for t in ("users", "web_sessions", "audit_log", "call_notes")]
        Base.metadata.create_all(engine, tables=tables)
        self._key = session_key or secrets.token_bytes(32)

    # -- users ------------------------------------------------------------------------------
    def add_user(self, name: str, password: str, role: Role | str, *, lang: str = "en", by: str = "cli") -> UserView:
        check_user_name(name)
        role = Role(role)
        check_password_policy(name, password)
        with self.engine.begin() as conn:
            if conn.scalar(select(User.id).where(User.name == name)) is not None:
                raise UserExists(f"user {name!r} already exists")
            conn.execute(
                insert(User).values(
                    name=name, role=role.value, password_hash=hash_password(password), lang=lang,
                    failed_logins=0, created_at=utcnow(),
                )
            )
        self.audit(by, "user_added", name, f"role={role.value}")
        return self.get_user(name)

    def get_user(self, name: str) -> UserView:
        with self.engine.connect() as conn:
            row = conn.execute(select(User).where(User.name == name)).first()
        if row is None:
            raise UnknownUser(name)
        return _user_view(row)

    def users(self) -> list[UserView]:
        with self.engine.connect() as conn:
            return [_user_view(r) for r in conn.execute(select(User).order_by(User.name))]

    def set_role(self, name: str, role: Role | str, *, by: str) -> None:
        role = Role(role)
        old = self.get_user(name).role
        with self.engine.begin() as conn:
            conn.execute(update(User).where(User.name == name).values(role=role.value))
        self.audit(by, "role_changed", name, f"{old.value} -> {role.value}")

    def set_password(self, name: str, password: str, *, by: str) -> None:
        self.get_user(name)
        check_password_policy(name, password)
        with self.engine.begin() as conn:
            conn.execute(update(User).where(User.name == name).values(password_hash=hash_password(password)))
            conn.execute(delete(WebSession).where(WebSession.user_id == select(User.id).where(User.name == name)
                                                  .scalar_subquery()))
        self.audit(by, "password_changed", name)

    def set_lang(self, name: str, lang: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(User).where(User.name == name).values(lang=lang))

    def unlock(self, name: str, *, by: str) -> None:
        self.get_user(name)
        with self.engine.begin() as conn:
            conn.execute(update(User).where(User.name == name).values(failed_logins=0, locked_until=None))
        self.audit(by, "unlocked", name)

    def authenticate(self, name: str, password: str, *, source: str = "") -> LoginResult:
        """Checks a login; counts failures, locks after MAX_FAILED_LOGINS, and audits either way."""
        now = utcnow()
        with self.engine.connect() as conn:
            row = conn.execute(select(User).where(User.name == name[:64])).first()
        if row is None:
            verify_password(password, _DUMMY_HASH)
            self.audit(name[:64], "login_failed", source, "unknown user")
            return LoginResult(None, "bad_credentials")
        user = _user_view(row)
        if user.locked(now):
            self.audit(name, "login_failed", source, "locked")
            return LoginResult(None, "locked")
        if len(password) <= MAX_PASSWORD_LEN and verify_password(password, row.password_hash):
            with self.engine.begin() as conn:
                conn.execute(update(User).where(User.id == user.id).values(failed_logins=0, locked_until=None))
            self.audit(name, "login", source)
            return LoginResult(self.get_user(name), "ok")
        failed = (0 if user.locked_until is not None else user.failed_logins) + 1
        locked_until = now + timedelta(seconds=LOCKOUT_S) if failed >= MAX_FAILED_LOGINS else None
        with self.engine.begin() as conn:
            conn.execute(
                update(User).where(User.id == user.id).values(
                    failed_logins=0 if locked_until else failed, locked_until=locked_until
                )
            )
        self.audit(name, "login_failed", source, "locked now" if locked_until else f"attempt {failed}")
        if locked_until:
            log.warning("console user %s locked for %d s after %d failed logins", name, LOCKOUT_S, failed)
            return LoginResult(None, "locked")
        return LoginResult(None, "bad_credentials")

    # -- sessions ----------------------------------------------------------------------------
    def _session_id(self, token: str) -> str:
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()

    def create_session(self, name: str, *, kind: str = "cookie") -> tuple[str, str]:
        """Returns (token for the cookie or Authorization header, CSRF token)."""
        user = self.get_user(name)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                insert(WebSession).values(
                    id=self._session_id(token), user_id=user.id, csrf=csrf, kind=kind, created_at=now, last_seen=now
                )
            )
        return token, csrf

    def session(self, token: str, *, idle_s: float, max_age_s: float) -> SessionView | None:
        """The live session for a token, touched; None (and deleted) once idle or too old."""
        if not token or len(token) > 128:
            return None
        sid = self._session_id(token)
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(select(WebSession).where(WebSession.id == sid)).first()
            if row is None:
                return None
            expired = row.kind == "cookie" and (
                (now - _aware(row.last_seen)).total_seconds() > idle_s
                or (now - _aware(row.created_at)).total_seconds() > max_age_s
            )
            if expired:
                conn.execute(delete(WebSession).where(WebSession.id == sid))
                return None
            user_row = conn.execute(select(User).where(User.id == row.user_id)).first()
            if user_row is None:
                return None
            # Touch at most every few seconds: page loads come in bursts of requests.
            if (now - _aware(row.last_seen)).total_seconds() > 5:
                conn.execute(update(WebSession).where(WebSession.id == sid).values(last_seen=now))
        return SessionView(_user_view(user_row), row.csrf, row.kind)

    def end_session(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(WebSession).where(WebSession.id == self._session_id(token)))

    def expire_sessions(self, *, idle_s: float, max_age_s: float) -> int:
        now = utcnow()
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(WebSession).where(
                    WebSession.kind == "cookie",
                    (WebSession.last_seen < now - timedelta(seconds=idle_s))
                    | (WebSession.created_at < now - timedelta(seconds=max_age_s)),
                )
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def age_session(self, token: str, seconds: float) -> None:
        """Moves a session's clock back (tests of idle expiry, and `hotline users` maintenance)."""
        back = timedelta(seconds=seconds)
        with self.engine.begin() as conn:
            row = conn.execute(select(WebSession).where(WebSession.id == self._session_id(token))).first()
            if row is not None:
                conn.execute(
                    update(WebSession).where(WebSession.id == row.id).values(
                        last_seen=_aware(row.last_seen) - back, created_at=_aware(row.created_at) - back
                    )
                )

    # -- audit -------------------------------------------------------------------------------
    def audit(self, user: str, action: str, target: str = "", detail: str = "") -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(AuditEntry).values(
                    at=utcnow(), user=user[:64], action=action[:32], target=target[:255], detail=detail[:2000]
                )
            )

    def audit_log(self, limit: int = 100, *, action: str | None = None, target: str | None = None) -> list[AuditView]:
        q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if action:
            q = q.where(AuditEntry.action == action)
        if target:
            q = q.where(AuditEntry.target == target)
        with self.engine.connect() as conn:
            return [AuditView(_aware(r.at), r.user, r.action, r.target, r.detail) for r in conn.execute(q)]

    # -- wrap-up -------------------------------------------------------------------------------
    def add_note(self, call_id: str, user: str, disposition: str, notes: str) -> None:
        if disposition not in DISPOSITIONS:
            raise ValueError(f"disposition must be one of {', '.join(DISPOSITIONS)}")
        with self.engine.begin() as conn:
            conn.execute(
                insert(CallNote).values(
                    call_id=call_id[:64], user=user[:64], disposition=disposition, notes=notes[:10000], at=utcnow()
                )
            )
        self.audit(user, "wrap_up", call_id, disposition)

    def notes(self, call_id: str) -> list[NoteView]:
        q = select(CallNote).where(CallNote.call_id == call_id).order_by(CallNote.id)
        with self.engine.connect() as conn:
            return [NoteView(r.call_id, r.user, r.disposition, r.notes, _aware(r.at)) for r in conn.execute(q)]

    def count_users(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count(User.id))) or 0)


def _user_view(row: Any) -> UserView:
    return UserView(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        lang=row.lang or "en",
        failed_logins=row.failed_logins or 0,
        locked_until=_aware(row.locked_until) if row.locked_until else None,
        created_at=_aware(row.created_at),
    )
