"""Interop matrix: independent SIP stacks x features against our endpoint on 127.0.0.1.

Peers: pjsua2 (PJSIP 2.15, tests/telephony/pjsua2_script.py in a subprocess), baresip 1.0.0, sipp 3.6.1
(XML scenarios in tests/telephony/sipp/). Each cell is one test id ``<peer>-<feature>``; a cell a peer
cannot do is left out here and marked in docs/TELEPHONY.md's matrix table (with why). Cells covered by
older tests (test_interop.py, test_pjsua2.py, test_register_interop.py) are named there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.heard import heard_hz

from telephony import CallFailed, CallLeg, DtmfDigit, SipEndpoint, TransferRequest
from telephony.registrar import Registrar
from telephony.replaces import replaces_for, uri_with_replaces
from telephony.transfer import transfer_partner

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(60)]

HERE = Path(__file__).parent
PJ_SCRIPT = HERE / "pjsua2_script.py"
SIPP_DIR = HERE / "sipp"
HAVE_PJSUA2 = importlib.util.find_spec("pjsua2") is not None
HAVE_BARESIP = shutil.which("baresip") is not None
HAVE_SIPP = shutil.which("sipp") is not None


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Hotline:
    """Our endpoint, recording per call: digits, whether it was ever on hold, frames heard."""

    ep: SipEndpoint
    legs: list[CallLeg] = field(default_factory=list)
    digits: list[DtmfDigit] = field(default_factory=list)
    held: bool = False
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    setup: Callable[[CallLeg], None] | None = None

    async def on_call(self, leg: CallLeg) -> None:
        self.legs.append(leg)
        if self.setup is not None:
            self.setup(leg)
        self.answered.set()
        reader = asyncio.ensure_future(self._read(leg))
        try:
            while not leg.ended.is_set():
                self.held = self.held or leg.on_hold
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(leg.ended.wait(), 0.05)
        finally:
            reader.cancel()

    async def _read(self, leg: CallLeg) -> None:
        while (item := await leg.recv()) is not None:
            if isinstance(item, DtmfDigit):
                self.digits.append(item)

    def uri(self, user: str = "hotline") -> str:
        return f"sip:{user}@127.0.0.1:{self.ep.port}"


@contextlib.asynccontextmanager
async def hotline(**kw: object) -> AsyncIterator[Hotline]:
    ep = SipEndpoint("127.0.0.1", 0, rtp_ports=(20000, 30000), **kw)  # type: ignore[arg-type]
    h = Hotline(ep)
    ep.on_call = h.on_call
    await ep.start()
    try:
        yield h
    finally:
        await ep.stop()


async def run(*cmd: str, timeout: float = 40.0, cwd: Path | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*cmd, stdin=asyncio.subprocess.DEVNULL, cwd=cwd,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        return -9, out.decode(errors="replace")
    return proc.returncode or 0, out.decode(errors="replace")


async def pjsua2(*args: str, timeout: float = 40.0) -> list[str]:
    rc, out = await run(sys.executable, str(PJ_SCRIPT), "--port", str(free_udp_port()), "--rtp-port",
                        str(free_udp_port() // 2 * 2), *args, timeout=timeout)
    lines = out.splitlines()
    assert rc == 0 and "DONE" in lines, out[-2000:]
    return lines


def rx_counts(lines: list[str]) -> list[int]:
    return [int(x.split()[1]) for x in lines if x.startswith("RX ")]


async def frames_over(leg: CallLeg, seconds: float = 0.5) -> int:
    await asyncio.sleep(0.15)
    before = leg.frames_in
    await asyncio.sleep(seconds)
    return leg.frames_in - before


# ---------------------------------------------------------------------------------------------------- pjsua2
PJ_CALLER_CELLS = ["call_dtmf_rfc4733_bye", "dtmf_info", "hold_resume_from_peer", "transfer_from_peer",
                   "digest_invite", "cancel_from_peer"]


@pytest.mark.skipif(not HAVE_PJSUA2, reason="pip install pjsua2-python")
@pytest.mark.parametrize("cell", PJ_CALLER_CELLS)
async def test_pjsua2_calls_us(cell: str) -> None:
    kw: dict[str, object] = {}
    if cell == "digest_invite":
        kw = {"allow": ["10.0.0.0/8"], "invite_auth": Registrar({"trunk1": "s3cret"}, realm="bank")}
    if cell == "cancel_from_peer":
        kw = {"answer_delay": 3.0}  # 180 Ringing for 3 s
    async with hotline(**kw) as h, hotline() as agent2:
        if cell == "call_dtmf_rfc4733_bye":
            lines = await pjsua2("--uri", h.uri(), "wait:0.6", "rx", "dtmf:19", "wait:0.4", "hangup")
            await asyncio.sleep(0.2)
            assert [(d.digit, d.method) for d in h.digits] == [("1", "rfc4733"), ("9", "rfc4733")]
            assert rx_counts(lines)[0] > 10  # our RTP reached it
            assert h.legs[0].frames_in > 10 and h.legs[0].end_reason == "remote_bye"
        elif cell == "dtmf_info":
            await pjsua2("--uri", h.uri(), "wait:0.3", "info:34#", "wait:0.3", "hangup")
            await asyncio.sleep(0.2)
            assert [(d.digit, d.method) for d in h.digits] == [("3", "info"), ("4", "info"), ("#", "info")]
        elif cell == "hold_resume_from_peer":
            lines = await pjsua2("--uri", h.uri(), "wait:0.5", "hold", "wait:0.3", "rx", "wait:0.6", "rx", "unhold",
                                 "wait:0.6", "rx", "hangup")
            held_a, held_b, resumed = rx_counts(lines)
            assert held_b - held_a <= 1, lines  # on hold: we stopped sending
            assert resumed - held_b >= 15, lines  # resumed: 30 packets in 0.6 s expected
            assert h.held  # our leg saw the hold (sendonly from pjsua)
        elif cell == "transfer_from_peer":
            h.setup = lambda leg: setattr(leg, "on_transfer", transfer_partner(h.ep, leg, timeout=5))
            target = agent2.uri("agent2")
            lines = await pjsua2("--uri", h.uri(), "wait:0.3", f"xfer:{target}", "hangup")
            assert "XFER 200 final" in lines, lines
            assert len(agent2.legs) == 1  # we dialled the Refer-To target
            await asyncio.wait_for(h.legs[0].ended.wait(), 5)
        elif cell == "cancel_from_peer":
            lines = await pjsua2("--uri", h.uri(), "--cancel-after", "0.8")
            assert "STATE EARLY" in lines and "STATE DISCONNECTED" in lines, lines
            assert h.legs == [] and h.ep.calls == []  # never answered, on_call never ran
            assert h.ep.stats["calls_in"] == 0
        elif cell == "digest_invite":
            lines = await pjsua2("--uri", h.uri(), "--auth", "trunk1:s3cret", "wait:0.3", "hangup")
            assert any(x.startswith("STATE CONFIRMED") for x in lines), lines
            assert h.ep.invite_auth is not None and sum(h.ep.invite_auth.authenticated_with.values()) == 1
            assert len(h.legs) == 1


PJ_ANSWER_CELLS = ["hold_resume_from_us", "transfer_from_us", "dtmf_rfc4733_from_us_bye_from_us", "cancel_from_us"]


@pytest.mark.skipif(not HAVE_PJSUA2, reason="pip install pjsua2-python")
@pytest.mark.parametrize("cell", PJ_ANSWER_CELLS)
async def test_pjsua2_answers_us(cell: str) -> None:
    port = free_udp_port()
    ring = ["--ring", "5"] if cell == "cancel_from_us" else []
    proc = asyncio.ensure_future(run(sys.executable, str(PJ_SCRIPT), "--port", str(port), "--rtp-port",
                                     str(free_udp_port() // 2 * 2), "--answer", *ring, "waitend", timeout=30))
    async with hotline() as h, hotline() as agent2:
        await asyncio.sleep(0.8)
        if cell == "cancel_from_us":
            with pytest.raises(CallFailed) as err:
                await h.ep.dial(f"sip:pj@127.0.0.1:{port}", timeout=1.5)
            assert err.value.status == 408  # our timeout: CANCEL, pjsua's 487 ACKed
            rc, out = await proc
            assert rc == 0 and "STATE EARLY" in out and "STATE DISCONNECTED" in out and "STATE CONFIRMED" not in out
            return
        leg = None
        for _ in range(10):  # the subprocess needs a moment to bind its port
            with contextlib.suppress(CallFailed):
                leg = await h.ep.dial(f"sip:pj@127.0.0.1:{port}", timeout=3)
                break
            await asyncio.sleep(0.3)
        assert leg is not None
        if cell == "hold_resume_from_us":
            assert await frames_over(leg) > 15
            await leg.hold()
            assert await frames_over(leg) <= 1  # pjsua answered recvonly: it stopped sending
            await leg.resume()
            assert await frames_over(leg) > 15
            await leg.hangup()
        elif cell == "transfer_from_us":
            assert await leg.refer(agent2.uri("agent2"), timeout=10) == 200
            assert len(agent2.legs) == 1
            await leg.hangup()
        else:
            await asyncio.sleep(0.3)
            leg.send_dtmf("47")
            await asyncio.sleep(0.6)
            await leg.hangup()
        rc, out = await proc
        assert rc == 0 and "DONE" in out, out[-2000:]
        if cell.startswith("dtmf"):
            assert "DTMF 4 rfc4733" in out and "DTMF 7 rfc4733" in out, out[-2000:]
            assert "STATE DISCONNECTED" in out
        if cell == "transfer_from_us":
            assert "XFERREQ <sip:agent2@" in out, out[-2000:]


async def dial_pjsua2(ep: SipEndpoint, port: int) -> CallLeg:
    for _ in range(10):  # the subprocess needs a moment to bind its port
        with contextlib.suppress(CallFailed):
            return await ep.dial(f"sip:pj@127.0.0.1:{port}", timeout=3)
        await asyncio.sleep(0.3)
    raise AssertionError("pjsua2 did not answer")


@pytest.mark.skipif(not HAVE_PJSUA2, reason="pip install pjsua2-python")
@pytest.mark.parametrize("cell", ["replaces_from_peer", "replaces_to_peer"])
async def test_pjsua2_attended_transfer(cell: str) -> None:
    """Attended transfer (RFC 3891). replaces_from_peer: our transferor T REFERs pjsua2 to the hotline with
    ``?Replaces=`` naming T's call with the hotline; pjsua2 sends INVITE with Replaces; the new leg takes the
    old one's place (on_replaced), the old leg gets BYE. replaces_to_peer: T REFERs the hotline to pjsua2 with
    ``?Replaces=`` naming T's call with pjsua2; transfer_partner dials pjsua2 with the Replaces header; pjsua2
    swaps T's call for ours and the caller hears pjsua2's 800 Hz tone."""
    port = free_udp_port()
    proc = asyncio.ensure_future(run(sys.executable, str(PJ_SCRIPT), "--port", str(port), "--rtp-port",
                                     str(free_udp_port() // 2 * 2), "--answer", "--linger", "5", "waitend",
                                     timeout=30))
    async with hotline() as h, hotline() as t, hotline() as c:
        await asyncio.sleep(0.8)
        t_p = await dial_pjsua2(t.ep, port)
        if cell == "replaces_from_peer":
            replaced: list[CallLeg] = []
            h.setup = lambda leg: setattr(leg, "on_replaced", replaced.append)
            t_h = await t.ep.dial(h.uri(), timeout=5)
            await asyncio.wait_for(h.answered.wait(), 5)
            h_t = h.legs[0]
            assert await t_p.refer(uri_with_replaces(h.uri(), replaces_for(t_h)), timeout=10) == 200
            await asyncio.wait_for(t_h.ended.wait(), 5)
            assert t_h.end_reason == "remote_bye" and h_t.end_reason == "replaced"
            assert len(replaced) == 1 and len(h.legs) == 1  # a replacement, not a new call (on_call not run)
            new = replaced[0]
            assert new.caller == "pj" and not new.ended.is_set()
            await t_p.hangup()  # the transferor is done
            await new.hangup()
            rc, out = await proc
            assert rc == 0 and "XFERREQ <sip:hotline@" in out and "Replaces=" in out, out[-2000:]
        else:
            c_h = await c.ep.dial(h.uri(), timeout=5)
            await asyncio.wait_for(h.answered.wait(), 5)
            h_c = h.legs[0]
            h_t = await h.ep.dial(t.uri("agent1"), timeout=5)
            await asyncio.wait_for(t.answered.wait(), 5)
            t_h = t.legs[0]
            h_t.on_transfer = transfer_partner(h.ep, h_c, timeout=5)
            target = uri_with_replaces(f"sip:pj@127.0.0.1:{port}", replaces_for(t_p))
            assert await t_h.refer(target, timeout=10) == 200  # 202, NOTIFY 100, NOTIFY 200 from the hotline
            await asyncio.wait_for(t_p.ended.wait(), 5)
            assert t_p.end_reason == "remote_bye"  # pjsua2 ended the replaced call
            await t_h.hangup()
            assert abs(await heard_hz(c_h) - 800) < 40  # the caller is bridged with pjsua2's new call
            await c_h.hangup()  # the bridge hangs up the leg to pjsua2: its replacement call ends
            rc, out = await proc
            assert rc == 0 and "REPLACED" in out and out.count("STATE DISCONNECTED") >= 2, out[-2000:]
            assert "CALLS 2" in out


# ---------------------------------------------------------------------------------------------------- baresip
def baresip_config(d: Path, sip_port: int, account: str) -> None:
    lo = 30000 + (free_udp_port() % 9000) // 2 * 2
    (d / "config").write_text(
        "poll_method epoll\n"
        f"sip_listen 127.0.0.1:{sip_port}\n"
        "audio_player aubridge,nil\naudio_source ausine,1200\naudio_alert aubridge,nil\n"
        "ausrc_srate 48000\nausrc_channels 2\nauplay_srate 48000\nauplay_channels 2\n"
        f"rtp_ports {lo}-{lo + 200}\n"
        "module_path /usr/lib/baresip/modules\n"
        "module stdio.so\nmodule g711.so\nmodule ausine.so\nmodule aubridge.so\n"
        "module_app account.so\nmodule_app menu.so\n"
    )
    (d / "accounts").write_text(account + "\n")


BARESIP_CELLS = ["hold_resume_from_us", "transfer_from_us", "cancel_from_us", "digest_invite"]


@pytest.mark.skipif(not HAVE_BARESIP, reason="baresip not installed")
@pytest.mark.parametrize("cell", BARESIP_CELLS)
async def test_baresip(cell: str, tmp_path: Path) -> None:
    port = free_udp_port()
    kw: dict[str, object] = {}
    if cell == "digest_invite":  # Debian's baresip 1.0 answers MD5 only
        kw = {"allow": ["10.0.0.0/8"], "invite_auth": Registrar({"trunk1": "s3cret"}, realm="bank",
                                                                algorithms=("MD5",))}
    async with hotline(**kw) as h, hotline() as agent2:
        if cell == "digest_invite":
            baresip_config(tmp_path, port, f"<sip:trunk1@127.0.0.1:{h.ep.port}>;auth_pass=s3cret;regint=0;"
                                           "audio_codecs=PCMU,PCMA")
            _rc, out = await run("baresip", "-f", str(tmp_path), "-n", "127.0.0.1", "-e", f"/dial {h.uri()}",
                                 "-t", "3", timeout=20)
            assert "Call established" in out, out[-2000:]
            assert h.ep.invite_auth is not None and h.ep.invite_auth.authenticated_with == {"MD5": 1}
            assert len(h.legs) == 1
            return
        mode = "" if cell == "cancel_from_us" else ";answermode=auto"
        baresip_config(tmp_path, port, f"<sip:bs@127.0.0.1:{port}>;regint=0{mode};audio_codecs=PCMU,PCMA")
        proc = asyncio.ensure_future(run("baresip", "-f", str(tmp_path), "-n", "127.0.0.1", "-t", "6", timeout=20))
        await asyncio.sleep(1.0)
        if cell == "cancel_from_us":
            with pytest.raises(CallFailed) as err:
                await h.ep.dial(f"sip:bs@127.0.0.1:{port}", timeout=1.0)
            assert err.value.status == 408  # our timeout: CANCEL sent, 487 ACKed
            _rc, out = await proc
            # libre reports a CANCELled incoming session as ECONNRESET
            assert "session closed: Connection reset by peer" in out, out[-2000:]
            return
        leg = await h.ep.dial(f"sip:bs@127.0.0.1:{port}", timeout=5)
        if cell == "hold_resume_from_us":
            assert await frames_over(leg) > 15
            await leg.hold()
            assert await frames_over(leg) <= 1
            await leg.resume()
            assert await frames_over(leg) > 15
        else:
            assert await leg.refer(agent2.uri("agent2"), timeout=10) == 200
            assert len(agent2.legs) == 1
        await leg.hangup()
        await proc


# ---------------------------------------------------------------------------------------------------- sipp
SIPP_CELLS = ["digest_invite", "cancel_from_peer", "info_hold_resume_bye_from_us", "dtmf_rfc4733_pcap",
              "refer_from_peer", "glare_491"]


@pytest.mark.skipif(not HAVE_SIPP, reason="sipp (Debian sip-tester) not installed")
@pytest.mark.parametrize("cell", SIPP_CELLS)
async def test_sipp(cell: str, tmp_path: Path) -> None:
    kw: dict[str, object] = {}
    extra: list[str] = []
    if cell == "digest_invite":  # sipp's [authentication] answers MD5
        kw = {"allow": ["10.0.0.0/8"], "invite_auth": Registrar({"trunk1": "s3cret"}, realm="bank",
                                                                algorithms=("MD5",))}
        extra = ["-au", "trunk1", "-ap", "s3cret"]
    if cell == "cancel_from_peer":
        kw = {"answer_delay": 3.0}
    if cell == "dtmf_rfc4733_pcap":  # sipp replays Debian's RFC 2833 pcaps (PT 101) from its media port
        extra = ["-mp", str(free_udp_port() // 2 * 2)]
    async with hotline(**kw) as h, hotline() as agent2:
        requests: list[TransferRequest] = []
        if cell == "refer_from_peer":
            async def dial_target(req: TransferRequest) -> None:
                requests.append(req)
                await h.ep.dial(req.target, timeout=5)

            h.setup = lambda leg: setattr(leg, "on_transfer", dial_target)
            extra = ["-key", "transfer_target", agent2.uri("agent2")]
        hang_up: Awaitable[None] | None = None
        if cell == "info_hold_resume_bye_from_us":
            async def bye_later() -> None:
                await asyncio.wait_for(h.answered.wait(), 10)
                leg = h.legs[0]
                for _ in range(100):  # after the resume: sipp then waits for our BYE
                    if leg.sdp_version >= 3:
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.3)
                await leg.hangup()
            hang_up = asyncio.ensure_future(bye_later())
        if cell == "glare_491":
            async def hold_after_ack() -> None:
                await asyncio.wait_for(h.answered.wait(), 10)
                await asyncio.wait_for(h.legs[0].acked.wait(), 5)
                await h.legs[0].hold()  # sipp answers 491 after its own re-INVITE got our 491; we retry
            hang_up = asyncio.ensure_future(hold_after_ack())
        rc, out = await run("sipp", "-sf", str(SIPP_DIR / f"{cell}.xml"), f"127.0.0.1:{h.ep.port}", "-i",
                            "127.0.0.1", "-p", str(free_udp_port()), "-m", "1", "-nostdin", "-timeout", "20s",
                            "-timeout_error", *extra, cwd=tmp_path, timeout=30)
        if hang_up is not None:
            await hang_up
        assert rc == 0, out[-2000:]
        if cell == "digest_invite":
            assert h.ep.invite_auth is not None and h.ep.invite_auth.authenticated_with == {"MD5": 1}
            assert len(h.legs) == 1
        elif cell == "cancel_from_peer":
            assert h.legs == [] and h.ep.calls == []
        elif cell == "dtmf_rfc4733_pcap":  # the scenario checked our answer kept its telephone-event PT 101
            await asyncio.wait_for(h.legs[0].ended.wait(), 5)
            assert [(d.digit, d.method) for d in h.digits] == [("1", "rfc4733"), ("9", "rfc4733"), ("#", "rfc4733")]
            assert h.legs[0].te_pt == 101 and h.legs[0].end_reason == "remote_bye"
        elif cell == "glare_491":  # the scenario checked our 491 and that the retry still says a=sendonly
            assert h.ep.stats["glare_retries"] == 1 and h.legs[0].end_reason == "remote_bye"
            assert h.legs[0].local_hold == "sendonly"
        elif cell == "refer_from_peer":  # the scenario checked 202 and both NOTIFYs (Event, sipfrag, terminated)
            assert [r.target for r in requests] == [agent2.uri("agent2")] and "sipp@" in requests[0].referred_by
            assert len(agent2.legs) == 1  # we dialled the Refer-To target
            await asyncio.wait_for(h.legs[0].ended.wait(), 5)
            assert h.legs[0].end_reason == "remote_bye"
        else:
            assert [(d.digit, d.method) for d in h.digits] == [("5", "info")]
            assert h.held and h.legs[0].end_reason == "local_hangup"



# ---------------------------------------------------------------------------------------------------- kamailio
async def test_kamailio_in_the_path_hold_and_transfer_both_ways() -> None:
    """caller -> Kamailio (Record-Route) -> hotline: every in-dialog request (re-INVITE, REFER, NOTIFY, BYE)
    from either side follows the route set through the proxy."""
    from support.kamailio import Kamailio

    answered: asyncio.Queue[CallLeg] = asyncio.Queue()

    async def on_call(leg: CallLeg) -> None:
        answered.put_nowait(leg)
        await leg.ended.wait()

    async with hotline() as h, hotline() as caller_ep, hotline() as agent2:
        h.ep.on_call = on_call
        kam = Kamailio([h.ep.port])
        try:
            await asyncio.to_thread(kam.start)
            theirs = await caller_ep.ep.dial(kam.uri, timeout=5)
            ours = await asyncio.wait_for(answered.get(), 5)
            assert ours.route_set and theirs.route_set  # Record-Route seen on both sides
            for held_side, other in ((ours, theirs), (theirs, ours)):
                await held_side.hold()
                assert other.on_hold
                assert await frames_over(held_side) <= 1  # the held party stopped sending
                await held_side.resume()
                assert not other.on_hold and await frames_over(held_side) > 15

            async def dial_target(req: TransferRequest) -> None:
                await h.ep.dial(req.target, timeout=5)

            ours.on_transfer = dial_target
            assert await theirs.refer(agent2.uri("agent2"), timeout=10) == 200  # REFER in, NOTIFYs out
            assert len(agent2.legs) == 1
            await theirs.hangup()
            await asyncio.wait_for(ours.ended.wait(), 5)
            assert ours.end_reason == "remote_bye"
            routed = kam.log()
            assert "ROUTE INVITE" in routed
        finally:
            await asyncio.to_thread(kam.close)


@pytest.mark.skipif(not HAVE_SIPP, reason="sipp (Debian sip-tester) not installed")
async def test_sipp_answers_us_hold_resume_and_transfer_from_us(tmp_path: Path) -> None:
    port = free_udp_port()
    proc = asyncio.ensure_future(run("sipp", "-sf", str(SIPP_DIR / "uas_hold_refer_from_us.xml"), "-i", "127.0.0.1",
                                     "-p", str(port), "-m", "1", "-nostdin", "-timeout", "20s", "-timeout_error",
                                     cwd=tmp_path, timeout=30))
    async with hotline() as h:
        await asyncio.sleep(0.5)
        leg = await h.ep.dial(f"sip:sipp@127.0.0.1:{port}", timeout=5)
        await leg.hold()  # sipp checks our a=sendonly and answers recvonly
        assert leg.local_hold == "sendonly" and not leg._muted  # we may keep sending (music on hold)
        await leg.resume()  # sipp checks a=sendrecv
        assert not leg.local_hold
        assert await leg.refer("sip:agent2@127.0.0.1:9", timeout=5) == 200  # 202, then NOTIFY "SIP/2.0 200 OK"
        await leg.hangup()
        rc, out = await proc
        assert rc == 0, out[-2000:]
