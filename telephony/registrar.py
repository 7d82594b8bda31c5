"""A SIP registrar with digest authentication (RFC 3261 section 10, RFC 7616 / RFC 8760).

Pure logic, no I/O: the endpoint hands it each REGISTER and sends back the response it describes.

- Digest: SHA-256 and MD5 challenges (SHA-256 first, RFC 8760 section 2.4), ``qop=auth`` required,
  stateless nonces (issue time + random + HMAC, so a forged or altered nonce is refused) that expire
  after ``nonce_ttl`` seconds: a right answer to an expired nonce gets a new challenge with
  ``stale=true`` (the phone retries without asking the user); the nonce count ``nc`` must grow with each
  use of a nonce (a replayed request is refused).
- Bindings per user (address of record): contact URI, expiry, source address. ``Expires: 0`` (header
  or contact parameter) removes one, ``Contact: *`` with ``Expires: 0`` removes all.
- ``lookup(user)`` gives the contact to ring, the most recently refreshed binding that has not expired.
- A user's secret is a password or, when only the digest hashes are stored (RFC 7616 section 3.4.2: H(A1) =
  H(user:realm:password) for each algorithm), an ``Ha1``; ``set_user`` / ``remove_user`` change them live
  (removal also drops the user's bindings).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .sip_message import ParseError, SipRequest, parse_name_addr, parse_uri

__all__ = ["Binding", "Ha1", "RegisterResult", "Registrar", "digest_response", "ha1_of"]

log = logging.getLogger(__name__)

ALGORITHMS: dict[str, Callable[[bytes], str]] = {
    "SHA-256": lambda b: hashlib.sha256(b).hexdigest(),
    "MD5": lambda b: hashlib.md5(b, usedforsecurity=False).hexdigest(),
}
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)\s*,?')
MAX_NONCES = 20_000  # nonce counters kept (oldest forgotten first); a forgotten nonce gets stale=true


@dataclass(frozen=True)
class Binding:
    contact: str  # the contact URI to send INVITEs to
    expires_at: float  # monotonic clock of the registrar
    source: tuple[str, int]
    call_id: str
    cseq: int


@dataclass(frozen=True)
class Ha1:
    """H(user:realm:password) per digest algorithm (lowercase hex): what a registrar needs instead of the
    password. Only valid for the realm it was made with."""

    realm: str
    by_algorithm: Mapping[str, str]

    def __repr__(self) -> str:  # never in a log
        return f"Ha1(realm={self.realm!r}, algorithms={sorted(self.by_algorithm)})"


def ha1_of(username: str, realm: str, password: str, algorithms: tuple[str, ...] = ("SHA-256", "MD5")) -> Ha1:
    """The HA1 hashes of a password for ``realm`` (to store instead of the password)."""
    return Ha1(realm, {a: ALGORITHMS[a](f"{username}:{realm}:{password}".encode()) for a in algorithms})


@dataclass
class RegisterResult:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    user: str = ""


def digest_response(algorithm: str, username: str, realm: str, password: str, method: str, uri: str, nonce: str,
                    nc: str = "", cnonce: str = "", qop: str = "") -> str:
    """The ``response`` value of RFC 7616 section 3.4.1 (the client side; used by tests and the registrar)."""
    h = ALGORITHMS[algorithm.upper()]
    return _response_from_ha1(algorithm, h(f"{username}:{realm}:{password}".encode()), method, uri, nonce, nc,
                              cnonce, qop)


def _response_from_ha1(algorithm: str, ha1: str, method: str, uri: str, nonce: str, nc: str, cnonce: str,
                       qop: str) -> str:
    h = ALGORITHMS[algorithm.upper()]
    ha2 = h(f"{method}:{uri}".encode())
    if qop:
        return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())
    return h(f"{ha1}:{nonce}:{ha2}".encode())


def parse_digest(value: str) -> dict[str, str]:
    """Parameters of a ``Digest ...`` credentials value; raises ParseError if it is not one."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise ParseError(f"not a Digest credential: {scheme[:20]!r}")
    out: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            raise ParseError(f"bad Digest parameters near {rest[pos:pos + 30]!r}")
        v = m.group(2)
        if v.startswith('"'):
            v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[m.group(1).lower()] = v
        pos = m.end()
    return out


class Registrar:
    """Bindings of SIP users who prove they know their password. ``users`` maps user name → password or
    ``Ha1`` (the stored digest hashes)."""

    def __init__(self, users: Mapping[str, str | Ha1], *, realm: str = "hotline", nonce_ttl: float = 300.0,
                 min_expires: int = 60, max_expires: int = 3600, default_expires: int = 3600,
                 algorithms: tuple[str, ...] = ("SHA-256", "MD5"), clock: Callable[[], float] = time.monotonic
                 ) -> None:
        for a in algorithms:
            if a not in ALGORITHMS:
                raise ValueError(f"unknown digest algorithm {a!r}; known: {', '.join(ALGORITHMS)}")
        self.users: dict[str, str | Ha1] = dict(users)
        self.realm = realm
        self.nonce_ttl = nonce_ttl
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.algorithms = algorithms
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._opaque = secrets.token_hex(8)
        self._nc: OrderedDict[str, int] = OrderedDict()  # nonce -> highest nc used
        self._bindings: dict[str, dict[str, Binding]] = {}  # user -> contact -> binding
        self.stats = {"registered": 0, "unregistered": 0, "challenged": 0, "refused": 0, "stale": 0}
        self.authenticated_with: dict[str, int] = {}  # digest algorithm -> requests it authenticated

    # ------------------------------------------------------------------ accounts
    def set_user(self, user: str, secret: str | Ha1) -> None:
        """Adds or changes a user's password (or HA1 hashes), live: the next REGISTER is checked against it."""
        if isinstance(secret, Ha1) and secret.realm != self.realm:
            raise ValueError(f"user {user}: HA1 made for realm {secret.realm!r}, this registrar's is {self.realm!r}")
        self.users[user] = secret

    def remove_user(self, user: str) -> bool:
        """Removes a user and her bindings (she is no longer rung at her phone); True if she was there."""
        self._bindings.pop(user, None)
        return self.users.pop(user, None) is not None

    # ------------------------------------------------------------------ lookups
    def lookup(self, user: str) -> str | None:
        """The contact URI to ring for ``user``: the newest unexpired binding, or None."""
        live = self.bindings(user)
        return live[-1].contact if live else None

    def bindings(self, user: str) -> list[Binding]:
        """Unexpired bindings of ``user``, oldest refresh first."""
        now = self._clock()
        current = self._bindings.get(user, {})
        for contact in [c for c, b in current.items() if b.expires_at <= now]:
            del current[contact]
        return list(current.values())

    # ------------------------------------------------------------------ nonces
    def new_nonce(self) -> str:
        raw = int(self._clock() * 1000).to_bytes(8, "big") + secrets.token_bytes(8)
        mac = hmac.new(self._secret, raw, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(raw + mac).decode().rstrip("=")

    def _nonce_age(self, nonce: str) -> float | None:
        """Seconds since we issued ``nonce``; None if we did not issue it."""
        try:
            blob = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return None
        if len(blob) != 32:
            return None
        raw, mac = blob[:16], blob[16:]
        if not hmac.compare_digest(mac, hmac.new(self._secret, raw, hashlib.sha256).digest()[:16]):
            return None
        return self._clock() - int.from_bytes(raw[:8], "big") / 1000

    def _challenge(self, stale: bool = False, proxy: bool = False) -> RegisterResult:
        nonce = self.new_nonce()
        headers = [
            ("Proxy-Authenticate" if proxy else "WWW-Authenticate",
             f'Digest realm="{self.realm}", nonce="{nonce}", opaque="{self._opaque}", algorithm={alg}, qop="auth"'
             + (", stale=true" if stale else ""))
            for alg in self.algorithms
        ]
        self.stats["stale" if stale else "challenged"] += 1
        if proxy:
            return RegisterResult(407, "Proxy Authentication Required", headers)
        return RegisterResult(401, "Unauthorized", headers)

    # ------------------------------------------------------------------ other requests (INVITE from trunks)
    def authenticate(self, req: SipRequest, source: tuple[str, int], *, proxy: bool = True) -> RegisterResult:
        """Digest-authenticate any request (an INVITE from a trunk not on the allow-list): status 200 with
        ``user`` set when the credentials are right, else the challenge (407 Proxy-Authenticate, or 401
        WWW-Authenticate with ``proxy=False``) or refusal to send. Credentials are read from
        Proxy-Authorization and Authorization (some peers answer a 407 with the latter)."""
        creds = None
        for name in ("Proxy-Authorization", "Authorization"):
            for value in req.get_all(name):
                try:
                    params = parse_digest(value)
                except ParseError:
                    continue
                if params.get("realm") == self.realm:
                    creds = params
                    break
            if creds is not None:
                break
        if creds is None:
            return self._challenge(proxy=proxy)
        user = creds.get("username", "")
        verdict = self._verify(creds, req.method)
        if verdict == "stale":
            return self._challenge(stale=True, proxy=proxy)
        if verdict != "ok":
            self.stats["refused"] += 1
            log.warning("call %s: %s %r from %s:%d refused: %s", req.call_id, req.method, user[:64], source[0],
                        source[1], verdict)
            if verdict in ("bad password", "unknown user"):
                return self._challenge(proxy=proxy)
            return RegisterResult(400 if verdict.startswith("bad") else 403, "Bad Authorization"
                                  if verdict.startswith("bad") else "Forbidden")
        return RegisterResult(200, "OK", user=user)

    # ------------------------------------------------------------------ REGISTER
    def handle(self, req: SipRequest, source: tuple[str, int]) -> RegisterResult:
        """Authenticate and apply one REGISTER; the result says what to answer."""
        try:
            aor = parse_uri(parse_name_addr(req.get("To") or "").uri)
        except ParseError as exc:
            return RegisterResult(400, f"Bad To ({str(exc)[:40]})")
        creds = None
        for value in req.get_all("Authorization"):
            try:
                params = parse_digest(value)
            except ParseError:
                continue
            if params.get("realm") == self.realm:
                creds = params
                break
        if creds is None:
            return self._challenge()
        user = creds.get("username", "")
        verdict = self._verify(creds, req.method)
        if verdict == "stale":
            log.info("REGISTER %s from %s:%d: stale nonce; new challenge", user, *source)
            return self._challenge(stale=True)
        if verdict != "ok":
            self.stats["refused"] += 1
            log.warning("REGISTER %r from %s:%d refused: %s", user[:64], source[0], source[1], verdict)
            if verdict in ("bad password", "unknown user"):
                return self._challenge()  # the phone may ask its user again; the rate limit bounds guessing
            return RegisterResult(400 if verdict.startswith("bad") else 403, "Bad Authorization"
                                  if verdict.startswith("bad") else "Forbidden")
        if aor.user != user:
            self.stats["refused"] += 1
            log.warning("REGISTER from %s:%d: user %s may not register %s", source[0], source[1], user, aor.user)
            return RegisterResult(403, "Forbidden (To user differs from the authenticated user)")
        return self._apply(user, req, source)

    def _verify(self, creds: Mapping[str, str], method: str) -> str:
        user = creds.get("username", "")
        alg = creds.get("algorithm", "MD5").upper()
        nonce = creds.get("nonce", "")
        if alg not in self.algorithms:
            return f"bad algorithm {alg[:20]!r}"
        if creds.get("qop", "").lower() != "auth":
            return "bad qop (auth is required)"
        nc_text = creds.get("nc", "")
        if not re.fullmatch(r"[0-9a-fA-F]{8}", nc_text) or not creds.get("cnonce") or not creds.get("response"):
            return "bad nc, cnonce or response"
        secret = self.users.get(user)
        if secret is None:
            return "unknown user"
        if isinstance(secret, Ha1):
            ha1 = secret.by_algorithm.get(alg)
            if ha1 is None:
                return "unknown user"  # no hash stored for this algorithm: a fresh challenge offers the others
            expected = _response_from_ha1(alg, ha1, method, creds.get("uri", ""), nonce, nc_text, creds["cnonce"],
                                          "auth")
        else:
            expected = digest_response(alg, user, self.realm, secret, method, creds.get("uri", ""), nonce,
                                       nc_text, creds["cnonce"], "auth")
        if not hmac.compare_digest(expected, creds["response"].lower()):
            return "bad password"
        age = self._nonce_age(nonce)
        if age is None:
            return "stale"  # not a nonce of this run (e.g. before a restart): a fresh challenge mends it
        if age > self.nonce_ttl or age < -1:
            return "stale"
        nc = int(nc_text, 16)
        last = self._nc.get(nonce)
        if last is None and len(self._nc) >= MAX_NONCES:
            self._nc.popitem(last=False)
        if last is not None and nc <= last:
            return f"replayed nonce count {nc_text}"
        self._nc[nonce] = nc
        self._nc.move_to_end(nonce)
        self.authenticated_with[alg] = self.authenticated_with.get(alg, 0) + 1
        return "ok"

    def _apply(self, user: str, req: SipRequest, source: tuple[str, int]) -> RegisterResult:
        header_expires = req.get("Expires")
        default = self.default_expires
        if header_expires is not None:
            if not header_expires.strip().isascii() or not header_expires.strip().isdigit() \
                    or len(header_expires.strip()) > 10:
                return RegisterResult(400, "Bad Expires")
            default = int(header_expires)
        contacts = req.get_all("Contact")
        cseq = req.cseq[0]
        current = self._bindings.setdefault(user, {})
        now = self._clock()
        if [c.strip() for c in contacts] == ["*"]:
            if default != 0:
                return RegisterResult(400, "Contact * needs Expires: 0")
            n = len(current)
            current.clear()
            self.stats["unregistered"] += n
            log.info("REGISTER %s from %s:%d: all %d bindings removed", user, *source, n)
            return RegisterResult(200, "OK", user=user)
        changes: list[tuple[str, int]] = []
        for value in contacts:
            try:
                na = parse_name_addr(value)
                parse_uri(na.uri)
            except ParseError as exc:
                return RegisterResult(400, f"Bad Contact ({str(exc)[:40]})")
            exp_param = na.params.get("expires")
            expires = default
            if exp_param is not None:
                if not exp_param.isascii() or not exp_param.isdigit() or len(exp_param) > 10:
                    return RegisterResult(400, "Bad Contact expires")
                expires = int(exp_param)
            if 0 < expires < self.min_expires:
                return RegisterResult(423, "Interval Too Brief", [("Min-Expires", str(self.min_expires))])
            changes.append((na.uri, min(expires, self.max_expires)))
        for uri, expires in changes:
            old = current.get(uri)
            if old is not None and old.call_id == req.call_id and cseq <= old.cseq:
                continue  # an older REGISTER arriving late
            if expires == 0:
                if current.pop(uri, None) is not None:
                    self.stats["unregistered"] += 1
                    log.info("REGISTER %s from %s:%d: binding %s removed", user, source[0], source[1], uri)
                continue
            current.pop(uri, None)  # re-inserted last: the newest refresh is the one lookup() rings
            current[uri] = Binding(uri, now + expires, source, req.call_id, cseq)
            self.stats["registered"] += 1
            log.info("REGISTER %s from %s:%d: %s for %d s", user, source[0], source[1], uri, expires)
        # Rounded up: a retransmitted REGISTER (same Call-ID and CSeq, skipped above) answers with what was granted.
        out = [
            ("Contact", f"<{b.contact}>;expires={max(0, math.ceil(b.expires_at - now - 1e-6))}")
            for b in self.bindings(user)
        ]
        return RegisterResult(200, "OK", out, user=user)

