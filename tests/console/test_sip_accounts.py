"""Desk-phone SIP accounts made in /admin/agents: only the digest HA1 hashes are stored (sealed with the
recording key when one is set), the registrar takes them live, a real pjsua2 phone registers with digest and
is rung at its contact; a wrong password is challenged again; after removal REGISTER fails
(recordings/sip_accounts.py, hotline/sip_edge.py, hotline/routing_sync.py, console/routing_admin.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from support.waiting import until_true

from console import ConsoleSettings, create_app
from console.routing_admin import RoutingHooks
from hotline.bus import EventBus
from hotline.routing_sync import RoutingSync
from hotline.settings import Settings
from hotline.sip_edge import agent_dialer, attach_sip_accounts
from recordings import CallStore
from recordings.routing_admin import RoutingOverrides
from recordings.sip_accounts import SipAccounts, SipAccountUnreadable, ha1_hashes
from recordings.users import PasswordRejected, UserStore
from routing import AgentProfile, AgentState, CallDistributor, QueueConfig
from routing.admin import RoutingBase
from telephony import AgentPhone, CallFailed, CallLeg, SipEndpoint
from telephony.registrar import Registrar, ha1_of
from telephony.testcaller import dominant_hz, loud_part, tone

from .conftest import csrf, login

PEER = Path(__file__).parents[1] / "telephony" / "pjsua2_peer.py"
CAROL_PW = "desk-phone-amber-2026"
KEY = os.urandom(32)


@dataclass
class Rig:
    client: TestClient[Any, Any]
    store: CallStore
    users: UserStore
    acd: CallDistributor
    endpoint: SipEndpoint
    sync: RoutingSync
    accounts: SipAccounts
    settings: Settings


def _settings() -> Settings:
    return Settings.model_validate({"sip": {"port": 0, "allow": ["127.0.0.0/8"], "realm": "bank-hq"},
                                    "queues": [{"name": "general", "agents": [{"name": "anna",
                                                                               "uri": "sip:anna@127.0.0.1:9"}]}]})


@pytest.fixture
async def rig(tmp_path: Path, users_db: Path) -> AsyncIterator[Rig]:
    """The pieces `hotline serve` composes, in process: call store, distributor, routing sync on the bus, our
    SIP endpoint with no YAML registrar, the console with the SIP account store (as hotline/web.py)."""
    shutil.copy(users_db, tmp_path / "hotline.db")
    store = CallStore(f"sqlite:///{tmp_path / 'hotline.db'}")
    users = UserStore(store.engine)
    acd = CallDistributor([QueueConfig("general")])
    acd.add_agent(AgentProfile("anna", "sip:anna@127.0.0.1:9"), AgentState.AVAILABLE)
    bus = EventBus()
    sync = RoutingSync(acd, RoutingBase.of(acd), RoutingOverrides(store.engine), bus, "w1")
    s = _settings()
    ep = SipEndpoint("127.0.0.1", 0, allow=["127.0.0.0/8"])  # no YAML agent registers: no registrar yet
    accounts = attach_sip_accounts(ep, s, sync, store.engine, KEY)
    assert accounts is not None and ep.registrar is not None
    await ep.start()
    app = create_app(store, acd, bus.subscribe, ConsoleSettings(port=0, recordings_dir=str(tmp_path / "rec")),
                     users=users, routing=RoutingHooks(sync.base, sync.changed, sync.sip_accounts))
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Rig(client, store, users, acd, ep, sync, accounts, s)
    finally:
        await client.close()
        await sync.stop()
        await ep.stop()
        store.close()


async def _post(rig: Rig, path: str, form: dict[str, str]) -> Any:
    token = await csrf(rig.client)
    return await rig.client.post(path, data={**form, "csrf_token": token}, allow_redirects=False)


def test_registrar_takes_ha1_hashes_and_the_store_keeps_only_sealed_hashes(tmp_path: Path) -> None:
    reg = Registrar({"carol": ha1_of("carol", "bank-hq", CAROL_PW)}, realm="bank-hq")
    assert ha1_of("carol", "bank-hq", CAROL_PW).by_algorithm == ha1_hashes("carol", "bank-hq", CAROL_PW)
    assert CAROL_PW not in repr(reg.users["carol"]) and "by_algorithm" not in repr(reg.users["carol"])
    with pytest.raises(ValueError, match="realm"):
        reg.set_user("dan", ha1_of("dan", "other", CAROL_PW))
    assert reg.remove_user("carol") and not reg.remove_user("carol")

    store = CallStore(f"sqlite:///{tmp_path / 'h.db'}")
    try:
        accounts = SipAccounts(store.engine, realm="bank-hq", key=KEY)
        for bad, rule in [("short-pw-1", "at least 12"), ("carol-is-my-name", "user name"), ("1" * 14, "digits")]:
            with pytest.raises(PasswordRejected, match=rule):
                accounts.set_password("carol", bad, by="ada")
        accounts.set_password("carol", CAROL_PW, by="ada")
        with store.engine.connect() as conn:
            row = conn.execute(sa.text("SELECT * FROM sip_accounts")).one()
        hashes = ha1_hashes("carol", "bank-hq", CAROL_PW)
        stored = " ".join(str(v) for v in row)
        assert CAROL_PW not in stored and hashes["MD5"] not in stored and row.ha1.startswith("aes:")
        got = accounts.get("carol")
        assert got is not None and got.ha1 == hashes and got.realm == "bank-hq" and hashes["MD5"] not in repr(got)
        with pytest.raises(SipAccountUnreadable, match="no key"):
            SipAccounts(store.engine, realm="bank-hq").get("carol")
        assert SipAccounts(store.engine, realm="bank-hq", key=os.urandom(32)).all() == []  # wrong key: skipped
        assert accounts.delete("carol") and accounts.get("carol") is None and not accounts.delete("carol")
    finally:
        store.close()


async def _heard(leg: CallLeg, seconds: float) -> bytes:
    heard = bytearray()
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        item = await asyncio.wait_for(leg.recv(), 2)
        if item is not None and hasattr(item, "pcm"):
            heard += item.pcm
    return loud_part(bytes(heard))


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.skipif(importlib.util.find_spec("pjsua2") is None, reason="pip install pjsua2-python")
async def test_console_made_account_registers_a_real_phone_which_is_rung_until_removed(rig: Rig,
                                                                                      tmp_path: Path) -> None:
    registrar = rig.endpoint.registrar
    assert registrar is not None
    assert (await login(rig.client, "ada")).status == 302
    carol = {"id": "carol", "name": "Carol", "uri": "sip:carol@127.0.0.1:9", "skills": "en:2", "queues": "general"}
    # the policy, and a password without the box ticked, are refused with a clear message; nothing stored
    r = await _post(rig, "/admin/agents", {**carol, "registers": "on", "sip_password": "too-short"})
    assert r.status == 400 and "at least 12 characters" in await r.text()
    r = await _post(rig, "/admin/agents", {**carol, "sip_password": CAROL_PW})
    assert r.status == 400 and "is not ticked" in await r.text()
    r = await _post(rig, "/admin/agents", {**carol, "registers": "on"})
    assert r.status == 400 and "needs a SIP password" in await r.text()
    assert rig.accounts.users() == [] and "carol" not in {a.id for a in rig.acd.agents()}

    r = await _post(rig, "/admin/agents", {**carol, "registers": "on", "sip_password": CAROL_PW})
    assert r.status == 302 and r.headers["Location"] == "/admin/agents?done=live"
    await rig.sync.settled()
    assert "carol" in registrar.users and rig.accounts.users() == ["carol"]
    [entry] = rig.users.audit_log(5, action="sip_account_set")
    assert (entry.user, entry.target) == ("ada", "carol")
    page = await (await rig.client.get("/admin/agents?edit=carol")).text()
    assert "desk phone account" in page and "Set new password" in page and CAROL_PW not in page
    for e in rig.users.audit_log(50):
        assert CAROL_PW not in e.detail
    with rig.store.engine.connect() as conn:
        assert CAROL_PW not in str(conn.execute(sa.text("SELECT * FROM sip_accounts")).one())

    # a real SIP phone (pjsua2) registers with digest (SHA-256 offered first) and is rung at its contact
    phone_port = free_udp_port()
    wav = tmp_path / "play.wav"
    _write_wav(wav, tone(1100, 8.0))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(PEER), "answer", "--port", str(phone_port), "--rtp-port", str(free_udp_port() // 2 * 2),
        "--play", str(wav), "--record", str(tmp_path / "rec.wav"), "--seconds", "8",
        "--register-to", f"sip:127.0.0.1:{rig.endpoint.port}", "--user", "carol", "--password", CAROL_PW,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        await until_true(lambda: registrar.lookup("carol") is not None, 6, "carol's phone to register")
        contact = registrar.lookup("carol")
        assert contact is not None and f":{phone_port}" in contact
        dial = agent_dialer(rig.endpoint, rig.settings, rig.acd)  # what the session does for agent carol
        leg = await dial("sip:carol@127.0.0.1:9", timeout=5)
        we_heard = await _heard(leg, 1.5)
        await leg.hangup()
        assert len(we_heard) > 16000 and abs(dominant_hz(we_heard) - 1100) < 20
    finally:
        proc.kill()
        out, _ = await proc.communicate()
    assert "REG 200" in out.decode(errors="replace")
    assert "SHA-256" in registrar.authenticated_with  # the stored SHA-256 HA1 proved the phone's answer

    async with AgentPhone() as phone:
        at = f"sip:127.0.0.1:{rig.endpoint.port}"
        with pytest.raises(CallFailed) as wrong:
            await phone.endpoint.register(at, "carol", "not-carols-password")
        assert wrong.value.status in (401, 403)
        # removing carol (added in the console) removes her desk-phone account: her bindings go, REGISTER fails
        r = await _post(rig, "/admin/agents/carol/reset", {})
        assert r.headers["Location"] == "/admin/agents?done=removed"
        await rig.sync.settled()
        assert "carol" not in registrar.users and registrar.lookup("carol") is None
        assert rig.accounts.users() == [] and "carol" not in {a.id for a in rig.acd.agents()}
        with pytest.raises(CallFailed) as gone:
            await phone.endpoint.register(at, "carol", CAROL_PW)
        assert gone.value.status in (401, 403)
    [removed] = rig.users.audit_log(5, action="sip_account_removed")
    assert removed.target == "carol"


def _write_wav(path: Path, pcm: bytes) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unticking_the_box_removes_the_account_on_every_registrar(rig: Rig,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    registrar = rig.endpoint.registrar
    assert registrar is not None
    assert (await login(rig.client, "ada")).status == 302
    anna = {"id": "anna", "uri": "sip:anna@127.0.0.1:9", "registers": "on", "sip_password": CAROL_PW}
    assert (await _post(rig, "/admin/agents", anna)).status == 302  # a YAML agent may get a desk phone too
    await rig.sync.settled()
    assert "anna" in registrar.users
    r = await _post(rig, "/admin/agents", {"id": "anna", "uri": "sip:anna@127.0.0.1:9", "registers": "on"})
    assert r.status == 302  # ticked, no password typed: the account stays as it is
    await rig.sync.settled()
    assert rig.accounts.users() == ["anna"] and "anna" in registrar.users
    r = await _post(rig, "/admin/agents", {"id": "anna", "uri": "sip:anna@127.0.0.1:9"})
    assert r.status == 302
    await rig.sync.settled()
    assert rig.accounts.users() == [] and "anna" not in registrar.users
    assert [e.action for e in rig.users.audit_log(10) if e.action.startswith("sip_")] == [
        "sip_account_removed", "sip_account_set"]
    # another worker's announcement of the same user is applied here too (re-read from the database)
    rig.accounts.set_password("anna", CAROL_PW, by="ada")
    assert await rig.sync.apply("sip", "anna", "w2") == "set" and "anna" in registrar.users
    rig.accounts.delete("anna")
    assert await rig.sync.apply("sip", "anna", "w2") == "removed" and "anna" not in registrar.users
    assert rig.sync.applied == [("sip", "anna", "set"), ("sip", "anna", "removed")]
    secrets = [CAROL_PW, *ha1_hashes("anna", "bank-hq", CAROL_PW).values()]
    assert "SIP account anna" in caplog.text and not any(s in caplog.text for s in secrets)  # no secret logged


async def test_a_console_account_wins_over_the_yaml_password_and_deleting_it_brings_that_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hotline.sip_edge import sip_endpoint
    from telephony.registrar import Ha1

    monkeypatch.setenv("TEST_PW_BO", "yaml-password-bo")
    s = Settings.model_validate({"sip": {"port": 0, "realm": "bank-hq"}, "queues": [{"name": "general", "agents": [
        {"name": "bo", "uri": "sip:bo@127.0.0.1:9", "register": True, "password_env": "TEST_PW_BO"}]}]})
    store = CallStore(f"sqlite:///{tmp_path / 'h.db'}")
    acd = CallDistributor([QueueConfig("general")])
    sync = RoutingSync(acd, RoutingBase.of(acd), RoutingOverrides(store.engine), EventBus(), "w1")
    try:
        SipAccounts(store.engine, realm="bank-hq", key=KEY).set_password("bo", CAROL_PW, by="ada")
        SipAccounts(store.engine, realm="old-realm", key=KEY).set_password("cy", CAROL_PW, by="ada")
        ep = sip_endpoint(s)
        attach_sip_accounts(ep, s, sync, store.engine, KEY)
        assert ep.registrar is not None and isinstance(ep.registrar.users["bo"], Ha1)
        assert "cy" not in ep.registrar.users  # made for another realm: logged and skipped
        SipAccounts(store.engine, realm="bank-hq", key=KEY).delete("bo")
        assert await sync.apply("sip", "bo", "w2") == "set" and ep.registrar.users["bo"] == "yaml-password-bo"
    finally:
        await sync.stop()
        store.close()
