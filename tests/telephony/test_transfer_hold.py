"""Blind transfer (REFER/NOTIFY, RFC 3515), hold/resume from either side, digest-authenticated INVITE:
our endpoint against itself over UDP on 127.0.0.1 (the interop matrix runs the same against other stacks)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import pytest
from support.endpoints import endpoint, uri

from telephony import AudioFrame, CallFailed, CallLeg, TransferRequest
from telephony.registrar import Registrar
from telephony.sdp import limit_direction
from telephony.sip_message import SipRequest, SipResponse, parse_message, parse_name_addr
from telephony.testcaller import dominant_hz, loud_part, tone
from telephony.transfer import transfer_partner

if TYPE_CHECKING:
    from conftest import RawSip, Server

pytestmark = pytest.mark.timeout(60)





async def frames_over(legs: tuple[CallLeg, CallLeg], seconds: float = 0.4) -> tuple[int, int]:
    """Audio frames each leg received during ``seconds`` (after 0.1 s for a change to take effect)."""
    await asyncio.sleep(0.1)
    before = [leg.frames_in for leg in legs]
    await asyncio.sleep(seconds)
    return legs[0].frames_in - before[0], legs[1].frames_in - before[1]


async def hold_forever(leg: CallLeg) -> None:
    await leg.ended.wait()


async def test_hold_and_resume_from_either_side() -> None:
    answered: asyncio.Queue[CallLeg] = asyncio.Queue()

    async def on_call(leg: CallLeg) -> None:
        answered.put_nowait(leg)
        await leg.ended.wait()

    async with endpoint(on_call) as hotline, endpoint() as phone:
        theirs = await phone.dial(uri(hotline), timeout=5)
        ours = await asyncio.wait_for(answered.get(), 5)
        legs = (ours, theirs)
        a, b = await frames_over(legs)
        assert a > 10 and b > 10, (a, b)  # 20 frames in 0.4 s both ways

        await ours.hold()  # sendonly from us: the phone stops sending, we may keep sending (music on hold)
        assert ours.local_hold == "sendonly" and theirs.on_hold
        a, b = await frames_over(legs)
        assert a == 0 and b > 10, (a, b)
        await theirs.resume()  # a refresh re-INVITE (sendrecv) from the held phone: we answer sendonly still
        a, b = await frames_over(legs)
        assert a == 0 and b > 10, (a, b)
        await ours.resume()
        assert not ours.local_hold and not theirs.on_hold
        a, b = await frames_over(legs)
        assert a > 10 and b > 10, (a, b)

        await theirs.hold("inactive")  # the phone holds us with inactive: nobody sends
        assert ours.on_hold and theirs.local_hold == "inactive"
        a, b = await frames_over(legs)
        assert a == 0 and b == 0, (a, b)
        await theirs.resume()
        a, b = await frames_over(legs)
        assert a > 10 and b > 10, (a, b)
        # DTMF still works after the re-INVITEs
        theirs.send_dtmf("5")
        for _ in range(50):
            if ours._in and any(not isinstance(i, AudioFrame) for i in ours._in):
                break
            await asyncio.sleep(0.05)
        assert [i.digit for i in ours._in if not isinstance(i, AudioFrame)] == ["5"]
        await theirs.hangup()
        await asyncio.wait_for(ours.ended.wait(), 3)
        assert ours.end_reason == "remote_bye"


def test_limit_direction() -> None:
    assert limit_direction("sendrecv", "") == "sendrecv"
    assert limit_direction("sendrecv", "sendonly") == "sendonly"
    assert limit_direction("recvonly", "sendonly") == "inactive"
    assert limit_direction("sendonly", "sendonly") == "sendonly"
    assert limit_direction("sendrecv", "inactive") == "inactive"


async def test_blind_transfer_of_an_agent_call() -> None:
    """caller -> hotline -> agent 1; agent 1 REFERs the hotline to agent 2; the caller ends up with agent 2."""
    agent1_legs: asyncio.Queue[CallLeg] = asyncio.Queue()
    agent2_legs: asyncio.Queue[CallLeg] = asyncio.Queue()
    bridged = asyncio.Event()

    async def agent1(leg: CallLeg) -> None:
        agent1_legs.put_nowait(leg)
        await leg.ended.wait()

    async def agent2(leg: CallLeg) -> None:
        leg.send_audio(tone(700, 3.0))
        agent2_legs.put_nowait(leg)
        await leg.ended.wait()

    async with endpoint(agent1) as a1, endpoint(agent2) as a2, endpoint() as caller_ep:
        connected: list[CallLeg] = []

        async def hotline_call(leg: CallLeg) -> None:
            agent = await hotline.dial(uri(a1, "agent1"), timeout=5)
            agent.on_transfer = transfer_partner(hotline, leg, timeout=5, on_connected=connected.append)
            bridged.set()
            with contextlib.suppress(asyncio.CancelledError):
                await leg.ended.wait()

        async with endpoint(hotline_call) as hotline:
            caller = await caller_ep.dial(uri(hotline), timeout=5)
            heard = bytearray()

            async def collect() -> None:
                while (item := await caller.recv()) is not None:
                    if isinstance(item, AudioFrame):
                        heard.extend(item.pcm)

            reader = asyncio.ensure_future(collect())
            await asyncio.wait_for(bridged.wait(), 5)
            a1_leg = await asyncio.wait_for(agent1_legs.get(), 5)
            status = await a1_leg.refer(uri(a2, "agent2"), timeout=10)
            assert status == 200
            a2_leg = await asyncio.wait_for(agent2_legs.get(), 5)
            assert len(connected) == 1 and connected[0].called == "agent2"
            # the transferor hangs up after the final NOTIFY (as phones do)
            await a1_leg.hangup()
            heard.clear()
            await asyncio.sleep(1.0)
            assert not caller.ended.is_set() and not a2_leg.ended.is_set()
            assert abs(dominant_hz(loud_part(bytes(heard))) - 700) < 30  # agent 2's voice reaches the caller
            await caller.hangup()
            await asyncio.wait_for(a2_leg.ended.wait(), 5)  # the bridge hangs up the survivor
            reader.cancel()


async def test_transfer_failures_are_reported() -> None:
    answered: asyncio.Queue[CallLeg] = asyncio.Queue()
    seen: list[TransferRequest] = []

    async def on_call(leg: CallLeg) -> None:
        answered.put_nowait(leg)
        await leg.ended.wait()

    async with endpoint(on_call) as hotline, endpoint() as phone, endpoint() as nobody:  # nobody: 480
        theirs = await phone.dial(uri(hotline), timeout=5)
        ours = await asyncio.wait_for(answered.get(), 5)
        # no handler on the leg: 603 Decline
        with pytest.raises(CallFailed) as err:
            await theirs.refer(uri(nobody), timeout=5)
        assert err.value.status == 603

        async def failing(req: TransferRequest) -> tuple[int, str] | None:
            seen.append(req)
            await hotline.dial(req.target, timeout=3)  # nobody has no on_call: 480, raised as CallFailed
            return None

        ours.on_transfer = failing
        assert await theirs.refer(uri(nobody), timeout=5) == 480
        assert seen[0].target == uri(nobody) and seen[0].status == 480
        assert "sip:" in seen[0].referred_by
        assert not ours.ended.is_set()  # a failed transfer leaves the call up
        # our side can REFER too: the phone has no handler -> 603
        with pytest.raises(CallFailed) as err:
            await ours.refer(uri(nobody), timeout=5)
        assert err.value.status == 603
        await theirs.hangup()


@pytest.mark.parametrize("algorithms", [("SHA-256", "MD5"), ("MD5",)])
async def test_digest_authenticated_invite(algorithms: tuple[str, ...]) -> None:
    async with (endpoint(hold_forever, allow=["10.0.0.0/8"],
                         invite_auth=Registrar({"trunk1": "s3cret"}, realm="bank", algorithms=algorithms)) as hotline,
                endpoint() as peer):
        with pytest.raises(CallFailed) as err:
            await peer.dial(uri(hotline), timeout=5)
        assert err.value.status == 407
        with pytest.raises(CallFailed) as err:
            await peer.dial(uri(hotline), timeout=5, auth=("trunk1", "wrong"))
        assert err.value.status == 407
        leg = await peer.dial(uri(hotline), timeout=5, auth=("trunk1", "s3cret"))
        assert hotline.invite_auth is not None
        assert hotline.invite_auth.authenticated_with == {algorithms[0]: 1}
        await leg.hangup()
    # a source on the allow-list is not challenged
    async with (endpoint(hold_forever, allow=["127.0.0.0/8"], invite_auth=Registrar({"trunk1": "s3cret"})) as hotline,
                endpoint() as peer):
        leg = await peer.dial(uri(hotline), timeout=5)
        await leg.hangup()


async def test_refer_and_notify_edge_cases_on_the_wire(server: Server, raw: RawSip, proxy: RawSip) -> None:
    """Hand-written requests: the 202 + NOTIFY sequence with sipfrag bodies, and the refusals."""
    port = server.ep.port
    server.behaviour = hold_forever
    raw.send(raw.request("INVITE", port, body=raw.sdp(proxy.port, "0 101")), port)
    ok = b""
    while not ok.startswith(b"SIP/2.0 200"):
        ok = await raw.expect()
    tag = parse_name_addr(parse_message(ok).get("To") or "").tag or ""
    raw.send(raw.request("ACK", port, cseq="1 ACK", to_tag=tag, branch="z9hG4bKack"), port)
    await asyncio.wait_for(server.answered.wait(), 2)
    leg = server.legs[0]

    def refer(cseq: int, extra: str, *, to_tag: str = tag, call_id: str = "raw-1") -> str:
        return raw.request("REFER", port, cseq=f"{cseq} REFER", to_tag=to_tag, call_id=call_id,
                           branch=f"z9hG4bKrefer{cseq}", extra=extra)

    raw.send(refer(2, "Refer-To: <sip:agent@127.0.0.1:9>\r\n"), port)  # no handler yet
    assert await raw.expect_status() == 603
    raw.send(refer(3, "Refer-To: <sip:agent@127.0.0.1:9>\r\n", to_tag="other"), port)
    assert await raw.expect_status() == 481
    leg.on_transfer = lambda req: _answer(req, (486, "Busy Here"))
    raw.send(refer(4, ""), port)  # no Refer-To
    assert await raw.expect_status() == 400
    raw.send(refer(5, "Refer-To: not a uri\r\n"), port)
    assert await raw.expect_status() == 400
    raw.send(refer(6, "Refer-To: <sip:agent@127.0.0.1:9?Replaces=abc>\r\nReferred-By: <sip:raw@127.0.0.1>\r\n"),
             port)
    got = [parse_message(await raw.expect()) for _ in range(3)]  # 202 and two NOTIFYs (any order on the wire)
    responses = [m for m in got if isinstance(m, SipResponse)]
    notifies = [m for m in got if isinstance(m, SipRequest)]
    assert [r.status for r in responses] == [202]
    assert [n.method for n in notifies] == ["NOTIFY", "NOTIFY"]
    for n in notifies:
        assert n.get("Event") == "refer" and n.get("Content-Type") == "message/sipfrag;version=2.0"
        raw.send(_ok(n), port)
    assert notifies[0].body == b"SIP/2.0 100 Trying\r\n"
    assert (notifies[0].get("Subscription-State") or "").startswith("active")
    assert notifies[1].body == b"SIP/2.0 486 Busy Here\r\n"
    assert (notifies[1].get("Subscription-State") or "").startswith("terminated")
    # NOTIFY for another event package: 489
    raw.send(raw.request("NOTIFY", port, cseq="7 NOTIFY", to_tag=tag, branch="z9hG4bKn7",
                         extra="Event: dialog\r\nSubscription-State: active\r\n"), port)
    assert await raw.expect_status() == 489
    assert not leg.ended.is_set()  # a failed transfer leaves the call up


async def _answer(req: TransferRequest, result: tuple[int, str]) -> tuple[int, str]:
    assert req.target == "sip:agent@127.0.0.1:9?Replaces=abc" and req.referred_by == "<sip:raw@127.0.0.1>"
    return result


def _ok(req: SipRequest) -> bytes:
    resp = SipResponse(status=200, reason="OK")
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for v in req.get_all(name):
            resp.add(name, v)
    return resp.to_bytes()
