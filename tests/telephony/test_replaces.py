"""Attended transfer / pick-up with the Replaces header (RFC 3891): the pure parser, and our endpoints over
UDP on 127.0.0.1 (an INVITE with Replaces taking over a bridged leg, the refusals 400/420/481/486/603, and
REFER with ``Refer-To: <...?Replaces=...>`` handled by transfer_partner). pjsua2 cells: test_interop_matrix."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import pytest
from support.endpoints import Handler, endpoint, uri
from support.heard import heard_hz

from telephony import CallFailed, CallLeg, ParseError, TransferRequest, bridge
from telephony.replaces import Replaces, replaces_for, split_uri_headers, uri_with_replaces
from telephony.sip_message import parse_message, parse_name_addr
from telephony.testcaller import tone
from telephony.transfer import _bridge_then_hang_up, replace_in_bridge, transfer_partner

if TYPE_CHECKING:
    from conftest import RawSip

pytestmark = pytest.mark.timeout(30)



# ------------------------------------------------------------------------------------------------ pure
def test_parse_replaces() -> None:
    r = Replaces.parse("abc123@10.0.0.1; to-tag = t1 ;from-tag=f1;early-only;x=y")
    assert r == Replaces("abc123@10.0.0.1", "t1", "f1", early_only=True)
    assert Replaces.parse(r.header()) == r
    assert Replaces.parse("c;FROM-TAG=f;To-Tag=t") == Replaces("c", "t", "f")
    for bad in ["", ";to-tag=a;from-tag=b", "c;to-tag=a", "c;from-tag=b", "c;to-tag=;from-tag=b",
                "c;to-tag=a;to-tag=b;from-tag=c", "c d;to-tag=a;from-tag=b", "c;to-tag=a b;from-tag=b",
                "c;;to-tag=a;from-tag=b", "c;to-tag=a;from-tag=b\r\nX: y", "c" * 600 + ";to-tag=a;from-tag=b"]:
        with pytest.raises(ParseError):
            Replaces.parse(bad)


def test_uri_headers_round_trip() -> None:
    rep = Replaces("a9f@127.0.0.1", "tt", "ff")
    uri = uri_with_replaces("sip:agent2@127.0.0.1:5090;transport=udp", rep)
    assert uri == "sip:agent2@127.0.0.1:5090;transport=udp?Replaces=a9f%40127.0.0.1%3Bto-tag%3Dtt%3Bfrom-tag%3Dff"
    base, headers = split_uri_headers(uri)
    assert base == "sip:agent2@127.0.0.1:5090;transport=udp"
    assert headers == [("Replaces", rep.header())]
    assert split_uri_headers("sip:a@b?subject=hi&replaces=x%3Bto-tag%3D1") == (
        "sip:a@b", [("Subject", "hi"), ("Replaces", "x;to-tag=1")])
    assert split_uri_headers("sip:a@b") == ("sip:a@b", [])
    for bad in ["sip:a@b?novalue", "sip:a@b?=v", "sip:a@b?Replaces=x%0D%0AVia%3A1", "sip:a@b?X=%ff"]:
        with pytest.raises(ParseError):
            split_uri_headers(bad)


# ------------------------------------------------------------------------------------------------ endpoints


def playing(freq: float, into: asyncio.Queue[CallLeg] | None = None) -> Handler:
    async def on_call(leg: CallLeg) -> None:
        leg.send_audio(tone(freq, 4.0))
        if into is not None:
            into.put_nowait(leg)
        await leg.ended.wait()
    return on_call


async def test_invite_with_replaces_takes_over_a_bridged_leg() -> None:
    """caller -> hotline -> agent A (bridged); phone N sends INVITE with Replaces naming the hotline's leg to A
    (a pick-up, or the last step of an attended transfer): the caller is bridged with N, A gets BYE."""
    agent_legs: asyncio.Queue[CallLeg] = asyncio.Queue()
    replaced: list[tuple[CallLeg, CallLeg]] = []

    async with endpoint(playing(500, agent_legs)) as agent, endpoint() as phone, endpoint() as caller_ep:
        async def hotline_call(leg: CallLeg) -> None:
            to_agent = await hotline.dial(uri(agent, "anna"), timeout=5)
            follow = replace_in_bridge(leg, on_connected=lambda new: replaced.append((to_agent, new)))
            to_agent.on_replaced = follow
            await _bridge_then_hang_up(leg, to_agent)
            with contextlib.suppress(asyncio.CancelledError):
                await leg.ended.wait()

        async with endpoint(hotline_call) as hotline:
            caller = await caller_ep.dial(uri(hotline), timeout=5)
            agent_side = await asyncio.wait_for(agent_legs.get(), 5)  # the agent's end of the hotline's dial
            assert abs(await heard_hz(caller) - 500) < 30  # the caller hears the agent
            rep = replaces_for(agent_side)  # the dialog as the hotline sees it: to-tag = the hotline's tag
            new = await phone.dial(uri(hotline, "anna"), headers=[("Replaces", rep.header())], timeout=5)
            await asyncio.wait_for(agent_side.ended.wait(), 5)
            assert agent_side.end_reason == "remote_bye"  # the replaced leg got BYE
            assert len(replaced) == 1 and replaced[0][0].end_reason == "replaced"
            assert replaced[0][1].call_id == new.call_id
            new.send_audio(tone(900, 3.0))
            assert abs(await heard_hz(caller) - 900) < 30  # the caller now hears N
            caller.send_audio(tone(300, 2.0))
            assert abs(await heard_hz(new) - 300) < 30  # and N hears the caller
            assert not caller.ended.is_set()
            await new.hangup()
            await asyncio.wait_for(caller.ended.wait(), 5)  # the bridge's survivor is hung up
            assert caller.end_reason == "remote_bye"


async def test_replaces_refusals() -> None:
    answered: asyncio.Queue[CallLeg] = asyncio.Queue()

    async def on_call(leg: CallLeg) -> None:
        answered.put_nowait(leg)
        await leg.ended.wait()

    async with endpoint(on_call) as hotline, endpoint() as caller_ep, endpoint() as phone:
        caller = await caller_ep.dial(uri(hotline), timeout=5)
        ours = await asyncio.wait_for(answered.get(), 5)
        rep = replaces_for(caller)

        async def status(header: str, **kw: object) -> int:
            with pytest.raises(CallFailed) as err:
                await phone.dial(uri(hotline), headers=[("Replaces", header)], timeout=3, **kw)  # type: ignore[arg-type]
            return err.value.status

        assert await status(rep.header()) == 603  # no on_replaced handler on the leg: declined
        ours.on_replaced = lambda new: None
        assert await status(f"nosuchcall;to-tag={rep.to_tag};from-tag={rep.from_tag}") == 481
        assert await status(f"{rep.call_id};to-tag={rep.from_tag};from-tag={rep.to_tag}") == 481  # tags swapped
        assert await status(f"{rep.call_id};to-tag=x;from-tag={rep.from_tag}") == 481
        assert await status(rep.header() + ";early-only") == 486  # the dialog is confirmed
        assert await status(f"{rep.call_id};to-tag={rep.to_tag}") == 400  # from-tag missing
        assert not ours.ended.is_set() and not caller.ended.is_set()  # nothing happened to the call
        for bad in [("Replaces", "x\r\nVia: evil"), ("X:Y", "1"), ("", "1")]:
            with pytest.raises(CallFailed) as err:  # refused before anything is sent
                await phone.dial(uri(hotline), headers=[bad], timeout=3)
            assert err.value.status == 400
        assert hotline.stats["calls_in"] == 1


async def test_replaces_with_raw_sip_headers(raw: RawSip) -> None:
    """Require: replaces is accepted; other option tags still get 420; two Replaces headers get 400; an early
    dialog we did not initiate (our 180 ringing) is not replaced (481) and keeps ringing."""
    answered: asyncio.Queue[CallLeg] = asyncio.Queue()

    async def on_call(leg: CallLeg) -> None:
        answered.put_nowait(leg)
        await leg.ended.wait()

    async with endpoint(on_call, answer_delay=1.5) as hotline, endpoint() as caller_ep:
        ringing = asyncio.ensure_future(caller_ep.dial(uri(hotline), timeout=5))
        for _ in range(40):
            if hotline._legs:
                break
            await asyncio.sleep(0.05)
        early = next(iter(hotline._legs.values()))
        rep = Replaces(early.call_id, early.local_tag, early.remote_tag)
        sdp = raw.sdp(40000)

        last: dict[int, bytes] = {}

        async def final(n: int, extra: str) -> int:
            raw.send(raw.request("INVITE", hotline.port, call_id=f"r{n}", branch=f"z9hG4bKr{n}", body=sdp,
                                 extra=extra), hotline.port)
            while True:  # (skip provisionals and retransmitted finals of earlier INVITEs: we do not ACK them)
                data = await raw.expect()
                status = int(data.split(b" ", 2)[1])
                if status >= 200 and f"Call-ID: r{n}\r\n".encode() in data:
                    last[n] = data
                    return status

        assert await final(1, f"Replaces: {rep.header()}\r\nRequire: replaces\r\n") == 481  # early, not ours
        assert await final(2, f"Replaces: {rep.header()}\r\nRequire: replaces, 100rel\r\n") == 420
        assert await final(3, "Require: replaces\r\n") == 420  # no Replaces header: nothing to support
        assert await final(4, f"Replaces: {rep.header()}\r\nReplaces: {rep.header()}\r\n") == 400
        leg = await ringing  # the early dialog went on to be answered
        ours = await asyncio.wait_for(answered.get(), 5)
        ours.on_replaced = lambda new: None
        assert await final(5, f"Replaces: {replaces_for(leg).header()}\r\nRequire: replaces\r\n") == 200
        to_tag = parse_name_addr(parse_message(last[5]).get("To") or "").tag or ""
        raw.send(raw.request("ACK", hotline.port, call_id="r5", branch="z9hG4bKr5a", cseq="1 ACK", to_tag=to_tag),
                 hotline.port)
        await asyncio.wait_for(leg.ended.wait(), 5)
        assert leg.end_reason == "remote_bye" and ours.end_reason == "replaced"
        raw.send(raw.request("BYE", hotline.port, call_id="r5", branch="z9hG4bKr5b", cseq="2 BYE", to_tag=to_tag),
                 hotline.port)
        for _ in range(40):
            if not hotline.calls:
                break
            await asyncio.sleep(0.05)
        assert hotline.calls == []  # the new leg took the old one's place and ended with the raw phone's BYE


async def test_refer_with_replaces_attended_transfer_by_agent() -> None:
    """caller -> hotline -> agent 1 (bridged); agent 1 also calls agent 2 (consultation), then REFERs the
    hotline with Refer-To: <agent2?Replaces=(agent1-agent2 dialog)>: the hotline's INVITE to agent 2 carries
    Replaces, agent 2 swaps agent 1 for the hotline, and the caller talks to agent 2."""
    a1_legs: asyncio.Queue[CallLeg] = asyncio.Queue()
    a2_legs: asyncio.Queue[CallLeg] = asyncio.Queue()
    a2_new: list[CallLeg] = []
    transfers: list[str] = []

    async def agent1(leg: CallLeg) -> None:
        a1_legs.put_nowait(leg)
        await leg.ended.wait()

    def take_over(new: CallLeg) -> None:
        a2_new.append(new)
        new.send_audio(tone(700, 4.0))

    async def agent2(leg: CallLeg) -> None:  # agent 2's phone: the consultation call can be replaced
        leg.on_replaced = take_over
        a2_legs.put_nowait(leg)
        await leg.ended.wait()

    async with endpoint(agent1) as a1, endpoint(agent2) as a2, endpoint() as caller_ep:
        async def hotline_call(leg: CallLeg) -> None:
            to_a1 = await hotline.dial(uri(a1, "agent1"), timeout=5)
            handler = transfer_partner(hotline, leg, timeout=5)

            async def on_transfer(req: TransferRequest) -> tuple[int, str] | None:
                transfers.append(req.target)
                return await handler(req)
            to_a1.on_transfer = on_transfer
            await bridge(leg, to_a1)  # until agent 1 leaves; transfer_partner bridges the caller anew
            with contextlib.suppress(asyncio.CancelledError):
                await leg.ended.wait()

        async with endpoint(hotline_call) as hotline:
            caller = await caller_ep.dial(uri(hotline), timeout=5)
            a1_hotline = await asyncio.wait_for(a1_legs.get(), 5)
            consult = await a1.dial(uri(a2, "agent2"), timeout=5)  # agent 1 -> agent 2
            a2_consult = await asyncio.wait_for(a2_legs.get(), 5)
            target = uri_with_replaces(uri(a2, "agent2"), replaces_for(consult))
            assert await a1_hotline.refer(target, timeout=10) == 200
            await a1_hotline.hangup()  # the transferor's part is done
            assert transfers == [target]
            await asyncio.wait_for(consult.ended.wait(), 5)
            assert consult.end_reason == "remote_bye" and a2_consult.end_reason == "replaced"
            assert len(a2_new) == 1 and a2_legs.empty()  # no new call rang at agent 2: it was a replacement
            assert abs(await heard_hz(caller) - 700) < 30  # the caller hears agent 2
            assert not caller.ended.is_set()
            await caller.hangup()
            await asyncio.wait_for(a2_new[0].ended.wait(), 5)


async def test_replaces_picks_up_our_ringing_dial() -> None:
    """The hotline dials agent A, whose phone rings (180, 2 s); phone B sends INVITE with Replaces naming that
    early dialog (call pick-up): we answer B, CANCEL A, and dial() returns B's leg (RFC 3891 section 3)."""
    async with endpoint(playing(600), answer_delay=2.0) as agent_a, endpoint() as phone_b, endpoint() as hotline:
        t0 = asyncio.get_running_loop().time()
        dialling = asyncio.ensure_future(hotline.dial(uri(agent_a, "anna"), timeout=10))
        for _ in range(40):
            if agent_a._legs:
                break
            await asyncio.sleep(0.05)
        ringing_at_a = next(iter(agent_a._legs.values()))  # A's end of the early dialog
        await asyncio.sleep(0.2)  # (A's 180 with its To-tag has reached the hotline)
        rep = replaces_for(ringing_at_a, early_only=True)  # only while it rings
        b_leg = await phone_b.dial(uri(hotline, "anna"), headers=[("Replaces", rep.header())], timeout=5)
        got = await asyncio.wait_for(dialling, 5)
        assert asyncio.get_running_loop().time() - t0 < 1.5  # before A would have answered
        assert got.call_id == b_leg.call_id and not got.ended.is_set()
        await asyncio.wait_for(ringing_at_a.ended.wait(), 5)
        assert ringing_at_a.end_reason == "cancelled" and agent_a.stats["calls_in"] == 0
        b_leg.send_audio(tone(450, 2.0))
        assert abs(await heard_hz(got) - 450) < 30  # the hotline's "agent leg" is B now
        await got.hangup()
        await asyncio.wait_for(b_leg.ended.wait(), 5)
        assert hotline.calls == []
