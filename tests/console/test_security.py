"""Logins, sessions, CSRF, lockout, password policy, hostile input and the audit log."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from support.postgres import pg_server  # noqa: F401  (fixture: one shared PostgreSQL cluster)

from recordings.users import (
    MAX_FAILED_LOGINS,
    PasswordRejected,
    User,
    UserStore,
    check_password_policy,
    hash_password,
    verify_password,
)


def session_token(console: Any) -> str:
    cookie = console.client.session.cookie_jar.filter_cookies(console.client.make_url("/"))["hotline_session"]
    return str(cookie.value)


# -- passwords ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("password", "rule"), [
    ("short-1", "at least 10"),
    ("12345678901234", "only digits"),
    ("anna", "at least 10"),
    ("Annabelle-anna-2026", "user name"),
    ("x" * 300, "at most"),
])
def test_password_policy_names_the_rule_broken(password: str, rule: str) -> None:
    with pytest.raises(PasswordRejected, match=rule):
        check_password_policy("anna", password)


def test_passwords_are_salted_scrypt_hashes_with_their_parameters() -> None:
    a, b = hash_password("same-password-1"), hash_password("same-password-1")
    assert a != b and a.startswith("scrypt$16384$8$1$")
    assert verify_password("same-password-1", a) and not verify_password("same-password-2", a)
    assert not verify_password("same-password-1", "md5$garbage")


async def test_admin_form_refuses_a_weak_password_and_says_why(console: Any) -> None:
    await console.login("ada")
    token = await console.csrf()
    r = await console.client.post("/admin/users", data={"name": "weak", "role": "agent", "password": "1234567890",
                                                        "csrf_token": token}, allow_redirects=False)
    assert r.status == 400 and "only digits" in await r.text()
    assert "weak" not in [u.name for u in console.users.users()]


# -- login, lockout, sessions ------------------------------------------------------------------
async def test_lockout_after_five_failures_even_with_the_right_password_then_unlock(console: Any) -> None:
    for _ in range(MAX_FAILED_LOGINS - 1):
        r = await console.login("sam", "wrong-password-x")
        assert r.status == 401 and "Wrong user name or password" in await r.text()
    r = await console.login("sam", "wrong-password-x")
    assert r.status == 401 and "locked" in await r.text()
    r = await console.login("sam")  # the right password, but locked
    assert r.status == 401 and "locked" in await r.text()
    assert console.users.get_user("sam").locked()
    # An admin unlocks through the users page.
    await console.login("ada")
    token = await console.csrf()
    r = await console.client.post("/admin/users/sam/unlock", data={"csrf_token": token}, allow_redirects=False)
    assert r.status == 302
    r = await console.login("sam")
    assert r.status == 302
    actions = [a.action for a in console.users.audit_log(20, target="sam")]
    assert "unlocked" in actions


async def test_lockout_ends_by_itself_after_fifteen_minutes(console: Any) -> None:
    for _ in range(MAX_FAILED_LOGINS):
        await console.login("sam", "wrong-password-x")
    assert console.users.get_user("sam").locked()
    with console.store.engine.begin() as conn:  # the clock moves on
        conn.execute(update(User).where(User.name == "sam").values(
            locked_until=datetime.now(UTC) - timedelta(seconds=1)))
    r = await console.login("sam")
    assert r.status == 302


async def test_unknown_user_and_wrong_password_look_the_same(console: Any) -> None:
    a = await console.login("nobody", "whatever-password")
    b = await console.login("sam", "whatever-password")
    assert a.status == b.status == 401
    strip = lambda t: re.sub(r'value="[^"]+"', "", t)  # noqa: E731
    assert strip(await a.text()) == strip(await b.text())


async def test_session_cookie_is_httponly_samesite_strict(console: Any) -> None:
    r = await console.login("sam")
    header = r.headers.getall("Set-Cookie")
    cookie = next(h for h in header if h.startswith("hotline_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie


async def test_idle_session_expires_and_logout_ends_it(console: Any) -> None:
    await console.login("sam")
    token = session_token(console)
    assert (await console.client.get("/wallboard", allow_redirects=False)).status == 200
    console.users.age_session(token, 601)  # idle limit in the fixture: 600 s
    r = await console.client.get("/wallboard", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"].startswith("/login")
    assert console.users.session(token, idle_s=600, max_age_s=3600) is None
    # A fresh login, then logout: the old token is useless at once.
    await console.login("sam")
    token = session_token(console)
    csrf = await console.csrf()
    await console.client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    console.client.session.cookie_jar.update_cookies({"hotline_session": token})
    assert (await console.client.get("/api/me")).status == 401


async def test_sessions_are_stored_as_keyed_hashes_not_tokens(console: Any) -> None:
    await console.login("sam")
    token = session_token(console)
    with console.store.engine.connect() as conn:
        ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM web_sessions")]
    assert ids and token not in ids
    other = UserStore(console.store.engine)  # another process with another key cannot use it
    assert other.session(token, idle_s=600, max_age_s=3600) is None


# -- CSRF --------------------------------------------------------------------------------------
async def test_state_changes_without_the_csrf_token_are_refused(console: Any) -> None:
    await console.login("sam")
    c = console.client
    r = await c.post("/api/agents/anna/state", json={"state": "on_break"})
    assert r.status == 403 and "CSRF" in await r.text()
    r = await c.post("/api/agents/anna/state", json={"state": "on_break"}, headers={"X-CSRF-Token": "forged"})
    assert r.status == 403
    r = await c.post("/logout", data={"csrf_token": "forged"}, allow_redirects=False)
    assert r.status == 403
    assert console.acd.agent("anna").state.value == "available"  # nothing changed
    token = await console.csrf()
    r = await c.post("/api/agents/anna/state", json={"state": "on_break"}, headers={"X-CSRF-Token": token})
    assert r.status == 200 and console.acd.agent("anna").state.value == "on_break"


async def test_login_form_needs_its_own_csrf_cookie(console: Any) -> None:
    r = await console.client.post("/login", data={"user": "sam", "password": "green-valley-42"},
                                  allow_redirects=False)
    assert r.status == 403
    assert console.users.get_user("sam").failed_logins == 0  # not even counted as an attempt


async def test_api_token_works_without_csrf_and_a_cookie_value_is_no_token(console: Any) -> None:
    token, _ = console.users.create_session("sam", kind="token")
    c = console.client
    r = await c.post("/api/agents/anna/state", json={"state": "on_break"},
                     headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200
    await console.login("sam")
    cookie = session_token(console)
    c.session.cookie_jar.clear()
    r = await c.get("/api/queues", headers={"Authorization": f"Bearer {cookie}"})
    assert r.status == 401


# -- hostile input -----------------------------------------------------------------------------
async def test_hostile_input_gets_a_clear_4xx(console: Any, seeded: str) -> None:
    await console.login("sam")
    c = console.client
    h = {"X-CSRF-Token": await console.csrf()}
    r = await c.post("/api/agents/anna/state", data="{not json", headers={**h, "Content-Type": "application/json"})
    assert r.status == 400 and "not valid JSON" in (await r.json())["error"]
    r = await c.post("/api/agents/anna/state", json=["a", "list"], headers=h)
    assert r.status == 400
    r = await c.post("/api/agents/anna/state", json={"state": "on_call"}, headers=h)
    assert r.status == 400 and "calls" in (await r.json())["error"]
    r = await c.post("/api/agents/anna/state", json={"state": "dancing"}, headers=h)
    assert r.status == 400
    r = await c.post("/api/calls/x/wrapup", data="x" * 200_000, headers={**h, "Content-Type": "application/json"})
    assert r.status == 413
    r = await c.post("/admin/users", data={"name": "a", "password": "y" * 200_000, "csrf_token": h["X-CSRF-Token"]})
    assert r.status == 413
    for bad in ("/api/calls?from=yesterday", "/api/calls?limit=abc", "/api/calls?limit=100000",
                "/api/calls?q=" + "x" * 300):
        r = await c.get(bad)
        assert r.status == 400 and (await r.json())["error"], bad
    r = await c.get("/calls?from=2026-13-45")
    assert r.status == 400 and "expected a date" in await r.text()
    for q in ("信用卡", "💳 card", "'; DROP TABLE calls; --", "%_\\"):
        r = await c.get("/api/calls", params={"q": q})
        assert r.status in (200, 400), q  # full-text search may refuse a query without words, never a 500
    assert console.store.get_call(seeded) is not None  # nothing lost


@pytest.mark.parametrize("path", [
    "/calls/..%2F..%2Fetc%2Fpasswd/recording",
    "/calls/%2e%2e/recording",
    "/calls/a%00b/recording",
    "/calls/" + "x" * 100 + "/recording",
    "/api/calls/..%2Fhotline.db",
])
async def test_path_traversal_on_recordings_gets_a_4xx(console: Any, seeded: str, path: str) -> None:
    await console.login("sam")
    r = await console.client.get(path, allow_redirects=False)
    assert 400 <= r.status < 500, (path, r.status)
    assert b"root:" not in await r.read()


async def test_a_record_pointing_outside_the_recordings_folder_is_not_served(console: Any) -> None:
    console.store.start_call("evil", sip_call_id="e", caller="1", called="2", recording_path="/etc/passwd")
    await console.login("sam")
    r = await console.client.get("/calls/evil/recording")
    assert r.status == 404


async def test_transcript_text_is_escaped_not_run(console: Any, seeded: str) -> None:
    console.store.add_line(seeded, "caller", "<script>alert(1)</script>", 9.0)
    await console.login("sam")
    html = await (await console.client.get(f"/calls/{seeded}")).text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_security_headers_on_pages(console: Any) -> None:
    r = await console.client.get("/login")
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Cache-Control"] == "no-store"


# -- audit -------------------------------------------------------------------------------------
async def test_audit_log_records_who_viewed_played_and_changed_what(console: Any, seeded: str) -> None:
    await console.login("ada")
    c = console.client
    assert (await c.get(f"/calls/{seeded}")).status == 200
    assert (await c.get(f"/api/calls/{seeded}")).status == 200
    assert (await c.get(f"/calls/{seeded}/recording")).status == 200
    r = await c.get(f"/calls/{seeded}/recording", headers={"Range": "bytes=100-199"})
    assert r.status == 206 and len(await r.read()) == 100
    token = await console.csrf()
    await c.post("/admin/users/anna/role", data={"role": "supervisor", "csrf_token": token})
    log = [(a.user, a.action, a.target) for a in console.users.audit_log(50)]
    assert ("ada", "view_transcript", seeded) in log
    assert log.count(("ada", "play_recording", seeded)) == 1  # a later range request is the same play
    assert ("ada", "role_changed", "anna") in log
    assert console.users.get_user("anna").role.value == "supervisor"
    page = await (await c.get("/admin/users")).text()
    assert "role_changed" in page and "play_recording" in page


async def test_expired_sessions_are_swept_from_the_table(console: Any) -> None:
    await console.login("sam")
    old = session_token(console)
    await console.login("ada")
    console.users.age_session(old, 700)
    assert console.users.expire_sessions(idle_s=600, max_age_s=3600) == 1
    with console.store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM web_sessions").scalar() == 1


async def test_https_setting_marks_the_cookie_secure(console: Any) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from console import ConsoleSettings, create_app

    app = create_app(console.store, None, None, ConsoleSettings(https=True), users=console.users)
    async with TestClient(TestServer(app)) as client:
        page = await client.get("/login")
        assert "Secure" in page.headers["Set-Cookie"]  # the client will not send it back over http: we do
        html = await page.text()
        nonce = re.search(r'name="csrf_token" value="([^"]+)"', html[html.index('id="login"'):])
        assert nonce is not None
        r = await client.post("/login", data={"user": "sam", "password": "green-valley-42",
                                              "csrf_token": nonce.group(1)}, allow_redirects=False,
                              headers={"Cookie": f"hotline_login_csrf={nonce.group(1)}"})
        cookie = next(h for h in r.headers.getall("Set-Cookie") if h.startswith("hotline_session="))
        assert "Secure" in cookie and "HttpOnly" in cookie


@pytest.mark.slow
def test_users_sessions_and_audit_on_postgresql(pg_server: Any) -> None:  # noqa: F811
    from recordings import CallStore

    store = CallStore(pg_server.create_database())
    users = UserStore(store.engine)
    users.add_user("sam", "green-valley-42", "supervisor")
    for _ in range(MAX_FAILED_LOGINS):
        users.authenticate("sam", "wrong-password-x")
    assert users.get_user("sam").locked() and users.authenticate("sam", "green-valley-42").reason == "locked"
    users.unlock("sam", by="ada")
    assert users.authenticate("sam", "green-valley-42").reason == "ok"
    token, csrf = users.create_session("sam")
    view = users.session(token, idle_s=600, max_age_s=3600)
    assert view is not None and view.user.name == "sam" and view.csrf == csrf
    users.age_session(token, 700)
    assert users.expire_sessions(idle_s=600, max_age_s=3600) == 1
    users.add_note("c1", "sam", "resolved", "ok")
    assert [n.disposition for n in users.notes("c1")] == ["resolved"]
    assert {a.action for a in users.audit_log(50)} >= {"user_added", "login_failed", "unlocked", "login", "wrap_up"}
    store.close()
