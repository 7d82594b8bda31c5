"""Digest-authenticated INVITEs as the hotline composes them: ``sip.trunk_accounts`` (hotline/sip_edge.py)."""

from __future__ import annotations

import pytest

from hotline.settings import ConfigError, Settings
from hotline.sip_edge import sip_endpoint, trunk_auth_for
from telephony import CallFailed, CallLeg, SipEndpoint


def settings(**sip: object) -> Settings:
    return Settings.model_validate({"sip": {"port": 0, "host": "127.0.0.1", **sip}})


def test_trunk_accounts_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert trunk_auth_for(settings()) is None  # default: no digest on INVITE, configs stay valid
    monkeypatch.delenv("TEST_TRUNK_PW", raising=False)
    with pytest.raises(ConfigError, match="TEST_TRUNK_PW"):
        trunk_auth_for(settings(trunk_accounts={"carrier": "TEST_TRUNK_PW"}))
    with pytest.raises(ValueError, match="pattern"):
        settings(trunk_accounts={"carrier": "not an env name"})


async def test_trunk_must_authenticate_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_TRUNK_PW", "trunk-pw")
    ep = sip_endpoint(settings(trunk_accounts={"carrier": "TEST_TRUNK_PW"}, allow=["192.0.2.0/24"],
                               digest_algorithms=["MD5"]))

    async def on_call(leg: CallLeg) -> None:
        return None

    ep.on_call = on_call
    await ep.start()
    peer = SipEndpoint("127.0.0.1", 0)
    await peer.start()
    try:
        with pytest.raises(CallFailed) as err:
            await peer.dial(f"sip:hotline@127.0.0.1:{ep.port}", timeout=3)
        assert err.value.status == 407
        leg = await peer.dial(f"sip:hotline@127.0.0.1:{ep.port}", timeout=3, auth=("carrier", "trunk-pw"))
        await leg.hangup()
        assert ep.invite_auth is not None and ep.invite_auth.authenticated_with == {"MD5": 1}
    finally:
        await peer.stop()
        await ep.stop()
