"""Real calls between our own endpoints (and hand-written SIP) over UDP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

import pytest

from telephony import AgentPhone, AudioFrame, CallFailed, CallLeg, SipEndpoint, TestCaller, bridge
from telephony.sdp import parse_sdp
from telephony.sip_message import SipRequest, SipResponse, parse_message, parse_name_addr
from telephony.testcaller import dominant_hz, loud_part, tone

if TYPE_CHECKING:
    from conftest import RawSip, Server

pytestmark = pytest.mark.timeout(30)


def to_tag_of(data: bytes) -> str:
    msg = parse_message(data)
    return parse_name_addr(msg.get("To") or "").tag or ""


async def test_call_with_audio_both_ways(server: Server) -> None:
    server.play = tone(1000, 1.0)
    async with TestCaller() as tc:
        leg = await tc.call(server.uri, from_user="alice")
        assert leg.codec == "PCMU" and leg.sample_rate == 8000
        await tc.play(leg, tone(440, 1.0))
        await asyncio.sleep(0.3)
        srv_leg = server.legs[0]
        assert (srv_leg.caller, srv_leg.called, srv_leg.call_id) == ("alice", "hotline", leg.call_id)
        heard_by_caller = loud_part(tc.heard_pcm(leg))
        heard_by_server = loud_part(bytes(server.heard[leg.call_id]))
        assert len(heard_by_caller) >= 0.9 * 16000 and abs(dominant_hz(heard_by_caller) - 1000) < 20
        assert len(heard_by_server) >= 0.9 * 16000 and abs(dominant_hz(heard_by_server) - 440) < 20
        await leg.hangup()
        assert leg.end_reason == "local_hangup"
        await asyncio.wait_for(srv_leg.ended.wait(), 2)
        assert srv_leg.end_reason == "remote_bye"
        while (item := await srv_leg.recv()) is not None:  # drains what is buffered, then None
            assert isinstance(item, AudioFrame)
    assert server.ep.calls == []


async def test_taps_see_every_frame_both_directions(server: Server) -> None:
    seen = {"in": 0, "out": 0}

    async def behaviour(leg: CallLeg) -> None:
        leg.add_tap(lambda d, pcm: seen.__setitem__(d, seen[d] + (len(pcm) == 320)))
        await leg.ended.wait()

    server.behaviour = behaviour
    async with TestCaller() as tc:
        leg = await tc.call(server.uri)
        await asyncio.sleep(1.0)
        await leg.hangup()
    assert 40 <= seen["out"] <= 60 and 40 <= seen["in"] <= 60, seen


async def test_rfc4733_dtmf_both_ways(server: Server) -> None:
    async def behaviour(leg: CallLeg) -> None:
        leg.send_dtmf("9*")
        while (item := await leg.recv()) is not None:
            if not isinstance(item, AudioFrame):
                server.digits[leg.call_id].append(item)

    server.behaviour = behaviour
    async with TestCaller() as tc:
        leg = await tc.call(server.uri)
        leg.send_dtmf("123#")
        await asyncio.sleep(1.2)
        got = server.digits[leg.call_id]
        assert "".join(d.digit for d in got) == "123#"
        assert {d.method for d in got} == {"rfc4733"}
        assert tc.digits(leg) == ["9", "*"]


async def test_sip_info_dtmf_and_fallback(server: Server, raw: RawSip) -> None:
    port = server.ep.port
    raw.send(raw.request("INVITE", port, body=raw.sdp(raw.port + 1, "0")), port)  # no telephone-event
    assert await raw.expect_status() == 200
    await asyncio.wait_for(server.answered.wait(), 2)
    leg = server.legs[0]
    tag = leg.local_tag
    raw.send(raw.request("ACK", port, cseq="1 ACK", to_tag=tag, branch="z9hG4bKack"), port)
    raw.send(raw.request("INFO", port, cseq="2 INFO", to_tag=tag, branch="z9hG4bKinfo1",
                         body="Signal=5\r\nDuration=160\r\n", extra="Content-Type: application/dtmf-relay\r\n"), port)
    raw.send(raw.request("INFO", port, cseq="3 INFO", to_tag=tag, branch="z9hG4bKinfo2", body="#",
                         extra="Content-Type: application/dtmf\r\n"), port)
    statuses = []
    while len(statuses) < 2:
        data = await raw.expect()
        if data.startswith(b"SIP/2.0 2") and b"INFO" in data:
            statuses.append(200)
    await asyncio.sleep(0.1)
    assert [(d.digit, d.method) for d in server.digits[leg.call_id]] == [("5", "info"), ("#", "info")]
    # no telephone-event negotiated: our send_dtmf goes out as SIP INFO
    leg.send_dtmf("7")
    while True:
        data = await raw.expect()
        if data.startswith(b"INFO "):
            assert b"application/dtmf-relay" in data and b"Signal=7" in data
            break


async def test_cancel_before_answer() -> None:
    ringing = SipEndpoint("127.0.0.1", 0, answer_delay=5.0)
    called: list[CallLeg] = []

    async def on_call(leg: CallLeg) -> None:
        called.append(leg)

    ringing.on_call = on_call
    await ringing.start()
    try:
        async with TestCaller() as tc:
            with pytest.raises(CallFailed) as ei:
                await tc.call(f"sip:x@127.0.0.1:{ringing.port}", timeout=1.0)
            assert ei.value.status == 408
            await asyncio.sleep(0.3)
            assert called == [] and ringing.calls == [] and tc.endpoint.calls == []
            assert ringing._pending == 0
    finally:
        await ringing.stop()


async def test_dial_failure_statuses(server: Server, raw: RawSip) -> None:
    async with TestCaller() as tc:
        closed = SipEndpoint("127.0.0.1", 0)  # no on_call: 480
        await closed.start()
        try:
            with pytest.raises(CallFailed) as ei:
                await tc.call(f"sip:x@127.0.0.1:{closed.port}")
            assert ei.value.status == 480
        finally:
            await closed.stop()
        # nobody there at all: no response -> our own timeout, no CANCEL
        with pytest.raises(CallFailed) as ei:
            await tc.call(f"sip:x@127.0.0.1:{raw.port}", timeout=1.0)
        assert ei.value.status == 408
        assert tc.endpoint.calls == []


async def test_bye_from_the_hotline_side(server: Server) -> None:
    async def behaviour(leg: CallLeg) -> None:
        await asyncio.sleep(0.3)  # returning from on_call hangs up

    server.behaviour = behaviour
    async with TestCaller() as tc:
        leg = await tc.call(server.uri)
        await asyncio.wait_for(leg.ended.wait(), 3)
        assert leg.end_reason == "remote_bye"
        assert server.legs[0].end_reason == "local_hangup"


async def test_on_call_exception_is_logged_and_call_hung_up(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    async def behaviour(leg: CallLeg) -> None:
        raise RuntimeError("boom")

    server.behaviour = behaviour
    async with TestCaller() as tc:
        leg = await tc.call(server.uri)
        await asyncio.wait_for(leg.ended.wait(), 3)
    assert any("on_call raised" in r.getMessage() and leg.call_id in r.getMessage() for r in caplog.records)


async def test_503_over_max_calls() -> None:
    ep = SipEndpoint("127.0.0.1", 0, max_calls=1)

    async def on_call(leg: CallLeg) -> None:
        await leg.ended.wait()

    ep.on_call = on_call
    await ep.start()
    try:
        async with TestCaller() as tc:
            first = await tc.call(f"sip:a@127.0.0.1:{ep.port}")
            with pytest.raises(CallFailed) as ei:
                await tc.call(f"sip:a@127.0.0.1:{ep.port}")
            assert ei.value.status == 503
            await first.hangup()
            await asyncio.sleep(0.2)
            again = await tc.call(f"sip:a@127.0.0.1:{ep.port}")  # capacity is freed
            await again.hangup()
    finally:
        await ep.stop()


async def test_garbage_datagrams_do_not_break_a_live_call(server: Server, raw: RawSip) -> None:
    server.play = tone(1000, 3.0)
    async with TestCaller() as tc:
        leg = await tc.call(server.uri)
        srv_leg = server.legs[0]
        for junk in (b"\x00" * 50, b"\xff\xfe garbage", b"INVITE\r\n\r\n", bytes(range(256)) * 10, b"\r\n\r\n",
                     b"SIP/2.0 200 OK\r\n\r\n", b"BYE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKj\r\n\r\n"
):
            raw.send(junk, server.ep.port)
            raw.send(junk, srv_leg.rtp_port)  # and into the RTP socket
        # a request with a Via but a broken CSeq gets a 400
        assert await raw.expect_status() == 400
        await asyncio.sleep(1.0)
        assert not leg.ended.is_set() and not srv_leg.ended.is_set()
        before = len(tc.heard_pcm(leg))
        await asyncio.sleep(0.5)
        assert len(tc.heard_pcm(leg)) - before >= 0.4 * 16000
        assert abs(dominant_hz(loud_part(tc.heard_pcm(leg))) - 1000) < 20
        assert server.ep.stats["malformed"] >= 3


async def test_malformed_requests_get_4xx(server: Server, raw: RawSip) -> None:
    port = server.ep.port
    cases = [
        (raw.request("INVITE", port, call_id="bad-sdp", branch="z9hG4bK1", body="v=0\r\nm=audio x RTP/AVP 0\r\n"), 400),
        (raw.request("INVITE", port, call_id="no-codec", branch="z9hG4bK2", body=raw.sdp(4000, "9 18")), 488),
        (raw.request("INVITE", port, call_id="bad-cseq", branch="z9hG4bK3", cseq="x INVITE", body=raw.sdp(4000)), 400),
        (raw.request("INVITE", port, call_id="bad-from", branch="z9hG4bK4", body=raw.sdp(4000))
         .replace("From: <sip:raw@", "From: <sipraw@"), 400),
        (raw.request("OPTIONS", port, call_id="opt", branch="z9hG4bK5"), 200),
        (raw.request("REGISTER", port, call_id="reg", branch="z9hG4bK6"), 405),
        (raw.request("FOO", port, call_id="foo", branch="z9hG4bK7"), 501),
        (raw.request("BYE", port, call_id="nope", branch="z9hG4bK8", to_tag="zz"), 481),
        (raw.request("CANCEL", port, call_id="nope", branch="z9hG4bK9"), 481),
    ]
    for req, status in cases:
        raw.send(req, port)
        assert await raw.expect_status() == status, req.splitlines()[0] + " " + req.split("Call-ID: ")[1][:10]
    # non-2xx finals to INVITE are retransmitted until ACKed
    data = await raw.expect(timeout=1.5)
    assert data.startswith(b"SIP/2.0 4")
    assert server.legs == [] and server.ep.calls == []


@pytest.mark.slow
async def test_pcma_answer_and_2xx_retransmitted_until_ack(server: Server, raw: RawSip) -> None:
    port = server.ep.port
    invite = raw.request("INVITE", port, body=raw.sdp(raw.port + 2, "8 0 121").replace("rtpmap:101", "rtpmap:121"))
    raw.send(invite, port)
    oks: list[bytes] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + 1.8
    while loop.time() < end:
        try:
            data = await raw.expect(timeout=max(0.01, end - loop.time()))
        except TimeoutError:
            break
        if data.startswith(b"SIP/2.0 200"):
            oks.append(data)
    assert len(oks) >= 3  # 0, 0.5, 1.5 s
    msg = parse_message(oks[0])
    assert isinstance(msg, SipResponse)
    md = parse_sdp(msg.body)
    assert md.payload_types == [8, 121] and md.telephone_event_pt == 121
    assert server.legs[0].codec == "PCMA"
    raw.send(invite, port)  # a retransmitted INVITE gets the 200 again
    assert (await raw.expect()).startswith(b"SIP/2.0 200")
    raw.send(raw.request("ACK", port, cseq="1 ACK", to_tag=to_tag_of(oks[0]), branch="z9hG4bKack"), port)
    await asyncio.sleep(0.1)
    while not raw.queue.empty():
        raw.queue.get_nowait()
    await asyncio.sleep(2.2)
    assert all(not d.startswith(b"SIP/2.0 200") for d in list(raw.queue._queue))  # type: ignore[attr-defined]


async def test_route_sets_are_honoured(server: Server, raw: RawSip, proxy: RawSip) -> None:
    """UAS: our BYE follows the caller's Record-Route; UAC: our ACK/BYE follow the callee's."""
    if True:
        async def behaviour(leg: CallLeg) -> None:
            await asyncio.sleep(0.3)

        server.behaviour = behaviour
        port = server.ep.port
        rr = f"Record-Route: <sip:127.0.0.1:{proxy.port};lr>\r\n"
        raw.send(raw.request("INVITE", port, body=raw.sdp(raw.port + 2), extra=rr), port)
        ok = b""
        while not ok.startswith(b"SIP/2.0 200"):
            ok = await raw.expect()
        assert rr.strip().encode() in ok  # Record-Route copied into the 200
        raw.send(raw.request("ACK", port, cseq="1 ACK", to_tag=to_tag_of(ok), branch="z9hG4bKack"), port)
        bye = await proxy.expect(timeout=3)
        assert bye.startswith(f"BYE sip:raw@127.0.0.1:{raw.port} SIP/2.0".encode())
        assert f"Route: <sip:127.0.0.1:{proxy.port};lr>".encode() in bye

        # UAC side: we dial raw, raw answers with a Record-Route through "proxy"
        async with TestCaller() as tc:
            dial = asyncio.create_task(tc.call(f"sip:agent@127.0.0.1:{raw.port}"))
            inv = parse_message(await raw.expect())
            while not (isinstance(inv, SipRequest) and inv.method == "INVITE"):
                inv = parse_message(await raw.expect())
            resp = SipResponse(status=200, reason="OK")
            for h in ("Via", "From", "Call-ID", "CSeq"):
                resp.add(h, inv.get(h) or "")
            resp.add("To", (inv.get("To") or "") + ";tag=uastag")
            resp.add("Record-Route", f"<sip:127.0.0.1:{proxy.port};lr>")
            resp.add("Contact", f"<sip:agent@127.0.0.1:{raw.port}>")
            resp.add("Content-Type", "application/sdp")
            resp.body = raw.sdp(raw.port + 4).encode()
            via = re.search(r"127\.0\.0\.1:(\d+)", inv.get("Via") or "")
            assert via is not None
            raw.send(resp.to_bytes(), int(via.group(1)))
            leg = await asyncio.wait_for(dial, 3)
            ack = await proxy.expect()
            assert ack.startswith(f"ACK sip:agent@127.0.0.1:{raw.port} SIP/2.0".encode())
            assert f"Route: <sip:127.0.0.1:{proxy.port};lr>".encode() in ack
            raw.send(resp.to_bytes(), int(via.group(1)))  # retransmitted 2xx: ACKed again
            assert (await proxy.expect()).startswith(b"ACK ")
            hang = asyncio.create_task(leg.hangup())
            bye = await proxy.expect()
            assert bye.startswith(b"BYE sip:agent@") and b"tag=uastag" in bye
            hang.cancel()


async def test_rtp_timeout_ends_the_call(raw: RawSip) -> None:
    ep = SipEndpoint("127.0.0.1", 0, rtp_timeout=1.0)
    ended: list[CallLeg] = []

    async def on_call(leg: CallLeg) -> None:
        await leg.ended.wait()
        ended.append(leg)

    ep.on_call = on_call
    await ep.start()
    try:
        raw.send(raw.request("INVITE", ep.port, body=raw.sdp(raw.port + 2)), ep.port)
        ok = b""
        while not ok.startswith(b"SIP/2.0 200"):
            ok = await raw.expect()
        raw.send(raw.request("ACK", ep.port, cseq="1 ACK", to_tag=to_tag_of(ok), branch="z9hG4bKa"), ep.port)
        bye = b""
        while not bye.startswith(b"BYE "):
            bye = await raw.expect(timeout=4)
        await asyncio.sleep(0.05)
        assert ended and ended[0].end_reason == "rtp_timeout"
    finally:
        await ep.stop()


async def test_clear_audio_recv_bounds_and_wait_played(server: Server) -> None:
    result: dict[str, object] = {}

    async def behaviour(leg: CallLeg) -> None:
        leg.max_buffered_frames = 10
        leg.send_audio(tone(700, 5.0))
        assert leg.playing
        await asyncio.sleep(0.3)
        leg.clear_audio()
        await asyncio.wait_for(leg.wait_played(), 0.1)
        result["playing"] = leg.playing
        await asyncio.sleep(0.6)  # not reading: the receive buffer stays bounded, DTMF is kept
        result["buffered"] = len(leg._in)
        items = []
        while len(items) < 12:
            item = await leg.recv()
            items.append(item)
        result["dtmf"] = [i.digit for i in items if i is not None and not isinstance(i, AudioFrame)]
        leg.send_audio(tone(700, 0.2))
        await asyncio.wait_for(leg.wait_played(), 1.0)
        result["done"] = True

    server.behaviour = behaviour
    async with TestCaller() as tc:
        leg = await tc.call(server.uri)
        await asyncio.sleep(0.1)
        leg.send_dtmf("4")
        await asyncio.sleep(1.5)
        assert result.get("done"), result
        assert result["playing"] is False
        assert isinstance(result["buffered"], int) and result["buffered"] <= 11
        assert result["dtmf"] == ["4"]
        heard = loud_part(tc.heard_pcm(leg))
        assert len(heard) < 0.8 * 16000  # the 5 s prompt was cut off after ~0.3 s (+0.2 s)


@pytest.mark.slow
async def test_bridge_to_an_agent_phone(server: Server) -> None:
    agent = AgentPhone(play_pcm=tone(1500, 1.5))
    await agent.start()
    taps = {"in": 0, "out": 0}

    async def behaviour(leg: CallLeg) -> None:
        leg.add_tap(lambda d, pcm: taps.__setitem__(d, taps[d] + 1))
        async def reader() -> None:  # like the session's recogniser: keeps reading the caller's frames
            while await leg.recv() is not None:
                pass

        reading = asyncio.create_task(reader())
        agent_leg = await server.ep.dial(f"sip:anna@127.0.0.1:{agent.port}", from_user=leg.caller)
        await bridge(leg, agent_leg)
        await agent_leg.hangup()
        reading.cancel()

    server.behaviour = behaviour
    try:
        async with TestCaller() as tc:
            leg = await tc.call(server.uri)
            await asyncio.sleep(0.3)
            await tc.play(leg, tone(600, 1.0))
            leg.send_dtmf("5")
            await tc.listen(leg, silence_s=0.5, timeout_s=5)
            caller_heard = loud_part(tc.heard_pcm(leg))
            assert len(caller_heard) > 1.2 * 16000 and abs(dominant_hz(caller_heard) - 1500) < 20
            agent_heard = loud_part(agent.heard_pcm())
            assert len(agent_heard) > 0.8 * 16000 and abs(dominant_hz(agent_heard) - 600) < 20
            assert agent.digits() == ["5"]
            assert agent.legs[0].caller == "tester"
            await leg.hangup()
            await asyncio.wait_for(agent.legs[0].ended.wait(), 3)
        assert taps["in"] > 50 and taps["out"] > 50
    finally:
        await agent.stop()


async def test_stop_sends_bye_to_every_call(server: Server) -> None:
    async with TestCaller() as tc:
        legs = [await tc.call(server.uri) for _ in range(3)]
        await server.ep.stop()
        for leg in legs:
            await asyncio.wait_for(leg.ended.wait(), 3)
            assert leg.end_reason == "remote_bye"
    assert all(leg.end_reason == "local_hangup" for leg in server.legs)


async def test_testcaller_listen_and_wait_silence(server: Server) -> None:
    server.play = tone(500, 0.6) + bytes(16000) + tone(900, 0.4)
    async with TestCaller() as tc:
        leg = await tc.call(server.uri)
        first = await tc.listen(leg, silence_s=0.5, timeout_s=5)
        assert abs(dominant_hz(loud_part(first)) - 500) < 20
        assert len(loud_part(first)) >= 0.5 * 16000
        second = await tc.listen(leg, silence_s=0.5, timeout_s=5)
        assert abs(dominant_hz(loud_part(second)) - 900) < 20
        assert await tc.wait_silence(leg, silence_s=0.3, timeout_s=2)
        assert len(tc.heard_pcm(leg)) >= len(first) + len(second)


@pytest.mark.slow
async def test_hold_reinvite_and_late_offer(server: Server, raw: RawSip, proxy: RawSip) -> None:
    server.play = tone(800, 10.0)
    port = server.ep.port
    # late offer: INVITE without SDP, our offer in the 200, the answer in the ACK
    raw.send(raw.request("INVITE", port), port)
    ok = b""
    while not ok.startswith(b"SIP/2.0 200"):
        ok = await raw.expect()
    msg = parse_message(ok)
    assert parse_sdp(msg.body).payload_types == [0, 8, 101]
    tag = to_tag_of(ok)
    rtp, rtp_port = proxy, proxy.port  # a bare socket receiving our RTP
    if True:
        raw.send(raw.request("ACK", port, cseq="1 ACK", to_tag=tag, branch="z9hG4bKack", body=raw.sdp(rtp_port, "0")),
                 port)
        pkt = await rtp.expect(timeout=2)
        assert pkt[1] & 0x7F == 0 and len(pkt) == 12 + 160
        # hold: re-INVITE with sendonly; we answer recvonly and stop sending
        hold = raw.sdp(rtp_port, "0").replace("o=- 1 1", "o=- 1 2") + "a=sendonly\r\n"
        raw.send(raw.request("INVITE", port, cseq="2 INVITE", to_tag=tag, branch="z9hG4bKre1", body=hold), port)
        ok2 = b""
        while not ok2.startswith(b"SIP/2.0 200"):
            ok2 = await raw.expect()
        assert b"a=recvonly" in ok2
        raw.send(raw.request("ACK", port, cseq="2 ACK", to_tag=tag, branch="z9hG4bKack2"), port)
        await asyncio.sleep(0.1)
        while not rtp.queue.empty():
            rtp.queue.get_nowait()
        await asyncio.sleep(0.3)
        assert rtp.queue.qsize() <= 1
        # resume
        resume = raw.sdp(rtp_port, "0").replace("o=- 1 1", "o=- 1 3") + "a=sendrecv\r\n"
        raw.send(raw.request("INVITE", port, cseq="3 INVITE", to_tag=tag, branch="z9hG4bKre2", body=resume), port)
        ok3 = b""
        while not ok3.startswith(b"SIP/2.0 200"):
            ok3 = await raw.expect()
        assert b"a=sendrecv" in ok3
        raw.send(raw.request("ACK", port, cseq="3 ACK", to_tag=tag, branch="z9hG4bKack3"), port)
        await asyncio.sleep(0.3)
        assert rtp.queue.qsize() >= 10
        assert not server.legs[0].ended.is_set()


async def test_stop_refuses_calls_still_ringing() -> None:
    ringing = SipEndpoint("127.0.0.1", 0, answer_delay=5.0)

    async def on_call(leg: CallLeg) -> None:
        await leg.ended.wait()

    ringing.on_call = on_call
    await ringing.start()
    async with TestCaller() as tc:
        dial = asyncio.create_task(tc.call(f"sip:x@127.0.0.1:{ringing.port}", timeout=5))
        await asyncio.sleep(0.3)
        await ringing.stop()
        with pytest.raises(CallFailed) as ei:
            await asyncio.wait_for(dial, 3)
        assert ei.value.status == 503


async def test_late_offer_without_answer_in_ack_is_hung_up(server: Server, raw: RawSip) -> None:
    port = server.ep.port
    raw.send(raw.request("INVITE", port), port)
    ok = b""
    while not ok.startswith(b"SIP/2.0 200"):
        ok = await raw.expect()
    raw.send(raw.request("ACK", port, cseq="1 ACK", to_tag=to_tag_of(ok), branch="z9hG4bKack"), port)
    bye = b""
    while not bye.startswith(b"BYE "):
        bye = await raw.expect()
    assert server.legs[0].end_reason == "bad_sdp"


async def test_playout_queue_slices_lazily_and_pads_the_tail() -> None:
    leg = CallLeg(SipEndpoint("127.0.0.1", 0), call_id="unit", caller="a", called="b", is_uas=True)
    data = bytes(range(256)) * 10  # 2560 bytes = 8 frames
    for piece in (data[:100], data[100:740], data[740:742], data[742:]):
        leg.send_audio(piece)
    leg.send_audio(b"\x01\x02" * 50)  # 100 more bytes: a partial 9th frame
    assert leg.playing and leg.queued_ms == (2560 + 100) // 16
    frames = [leg._next_frame() for _ in range(9)]
    assert b"".join(frames[:8]) == data
    assert frames[8] == b"\x01\x02" * 50 + bytes(220)
    assert not leg.playing and leg.queued_ms == 0
    leg.send_audio(data)
    leg.clear_audio()
    assert not leg.playing and leg.queued_ms == 0


async def test_unanswered_request_leaves_no_unretrieved_exception() -> None:
    """A BYE nobody answers (the caller is gone) used to leave a task whose TransactionTimeout was never
    retrieved: asyncio logged 'Task exception was never retrieved' for each (~1 000 ERROR lines at 200 calls/s)."""
    import gc

    from telephony.sip_message import SipRequest

    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    ep = SipEndpoint("127.0.0.1", 0)
    await ep.start()
    try:
        req = SipRequest(method="OPTIONS", uri="sip:gone@127.0.0.1:9")
        for name, value in (("Via", f"SIP/2.0/UDP 127.0.0.1:{ep.port};branch=z9hG4bKgone"), ("From", "<sip:a@b>;tag=1"),
                            ("To", "<sip:gone@127.0.0.1>"), ("Call-ID", "gone-1"), ("CSeq", "1 OPTIONS")):
            req.add(name, value)
        tx = ep._start_client_tx(req, ("127.0.0.1", 9))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(tx.final()), 0.05)  # what _send_bye does
        tx._timeout()  # timer F: 64*T1 later in real life
        for _ in range(3):
            await asyncio.sleep(0)
            gc.collect()
        assert not errors, errors
    finally:
        await ep.stop()
        loop.set_exception_handler(None)
