"""The SIP edge as the hotline composes it (hotline/sip_edge.py): settings → endpoint with the agents'
registrar; a registered agent's phone is rung at its registered contact, not at its static URI."""

from __future__ import annotations

import asyncio

import pytest

from hotline.settings import ConfigError, Settings
from hotline.sip_edge import agent_dialer, registrar_for, sip_endpoint
from telephony import AgentPhone, CallFailed, SipEndpoint
from telephony.testcaller import dominant_hz, loud_part, tone


def settings(**sip: object) -> Settings:
    return Settings.model_validate({
        "sip": {"port": 0, "allow": ["127.0.0.0/8"], "invite_rate": 50, **sip},
        "queues": [{"name": "general", "agents": [
            {"name": "anna", "uri": "sip:anna@127.0.0.1:9", "register": True, "password_env": "TEST_PW_ANNA"},
            {"name": "bob", "uri": "sip:bob@127.0.0.1:9"},
        ]}],
    })


def test_settings_and_missing_password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_PW_ANNA", raising=False)
    with pytest.raises(ConfigError, match="TEST_PW_ANNA"):
        registrar_for(settings())
    with pytest.raises(ValueError, match="CIDR"):
        settings(allow=["10.0.0.0/99"])
    with pytest.raises(ValueError, match="password_env"):
        Settings.model_validate({"queues": [{"name": "q", "agents": [
            {"name": "a", "uri": "sip:a@127.0.0.1", "register": True}]}]})


async def test_registered_agent_is_rung_at_its_contact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PW_ANNA", "pw-anna")
    s = settings()
    ep = sip_endpoint(s)
    assert ep.registrar is not None and ep.invite_limiter.rate == 50 and ep.allow.allows("127.0.0.5")
    await ep.start()
    dial = agent_dialer(ep, s)
    try:
        async with AgentPhone(play_pcm=tone(1300, 2.0)) as phone:
            registrar = f"sip:127.0.0.1:{ep.port}"
            with pytest.raises(CallFailed) as ei:
                await phone.endpoint.register(registrar, "anna", "wrong")
            assert ei.value.status == 401
            # the static URI (port 9) is dead: before registering, ringing anna fails
            with pytest.raises(CallFailed):
                await dial("sip:anna@127.0.0.1:9", timeout=1.5)
            assert await phone.endpoint.register(registrar, "anna", "pw-anna", expires=600) == 600
            assert ep.registrar.lookup("anna") == f"sip:anna@127.0.0.1:{phone.port}"
            leg = await dial("sip:anna@127.0.0.1:9", timeout=5)  # what the session does for agent anna
            heard = bytearray()
            loop = asyncio.get_running_loop()
            end = loop.time() + 1.2
            while loop.time() < end:
                item = await asyncio.wait_for(leg.recv(), 2)
                if item is not None and hasattr(item, "pcm"):
                    heard += item.pcm
            await leg.hangup()
            assert abs(dominant_hz(loud_part(bytes(heard))) - 1300) < 20  # anna's phone answered and talks
            assert await phone.endpoint.register(registrar, "anna", "pw-anna", expires=0) == 0
            assert ep.registrar.lookup("anna") is None
    finally:
        await ep.stop()


async def test_register_client_against_our_registrar_sha256() -> None:
    from telephony.registrar import Registrar

    reg = Registrar({"bob": "pw"})
    ep = SipEndpoint("127.0.0.1", 0, registrar=reg)
    await ep.start()
    try:
        async with AgentPhone() as phone:
            assert await phone.endpoint.register(f"sip:127.0.0.1:{ep.port}", "bob", "pw", expires=120) == 120
        assert reg.authenticated_with == {"SHA-256": 1}
    finally:
        await ep.stop()
