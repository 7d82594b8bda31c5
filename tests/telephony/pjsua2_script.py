"""A scriptable pjsua2 (PyPI pjsua2-python) peer for the interop matrix (tests/telephony/test_interop_matrix.py).

    python pjsua2_script.py --port P [--uri URI] [--auth USER:PASS] [--answer] STEP...

Without ``--answer`` it calls URI (answering a 401/407 with --auth), else it waits for one call and answers.
Then it runs the steps in order, on the first call:
    wait:S          poll events for S seconds
    dtmf:DIGITS     RFC 4733 (pjsua's default method)
    info:DIGITS     SIP INFO (application/dtmf-relay)
    hold            re-INVITE a=sendonly            unhold   re-INVITE a=sendrecv
    xfer:URI        REFER the peer to URI; waits up to 10 s for the final NOTIFY
    hangup          BYE                              waitend  wait up to 10 s for the peer's BYE
    rx              print the RTP packets received so far on the call ("RX n")
It prints "STATE <name>", "MEDIA <status>", "DTMF <digit> <method>", "XFER <code>", "XFERREQ <uri>",
"RX <packets>", "REPLACED" (an INVITE with Replaces took over the call), "CALLS <n>" and "DONE" lines.
``--linger S``: after the steps, wait up to S s for every call (e.g. a replacement, or the call a REFER made
pjsua dial: it plays the tone too) to end. Quirks as in
pjsua2_peer.py (null audio device, single-threaded polling, os._exit).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import pjsua2 as pj
from pjsua2_peer import start_endpoint  # this folder is sys.path[0]: the script runs as a file


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


MEDIA = {pj.PJSUA_CALL_MEDIA_NONE: "none", pj.PJSUA_CALL_MEDIA_ACTIVE: "active",
         pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "local_hold", pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "remote_hold",
         pj.PJSUA_CALL_MEDIA_ERROR: "error"}


class Call(pj.Call):  # type: ignore[misc]
    def __init__(self, acc: Any, peer: Peer, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(acc, call_id)
        self.peer = peer
        self.connected = False
        self.disconnected = False
        self.xfer_final = 0
        self.replacement = False

    def onCallState(self, prm: Any) -> None:
        ci = self.getInfo()
        say(f"STATE {ci.stateText}")
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.connected = True
            if self.replacement:  # its media came up before this object existed (onCallReplaced)
                for mi in ci.media:  # (self.onCallMediaState() from here did not reach the override)
                    if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                        self.peer.tone.startTransmit(self.getAudioMedia(mi.index))
                        say("MEDIA active")
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True

    def onCallMediaState(self, prm: Any) -> None:
        for mi in self.getInfo().media:
            if mi.type == pj.PJMEDIA_TYPE_AUDIO:
                say(f"MEDIA {MEDIA.get(mi.status, mi.status)}")
                if mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                    am = self.getAudioMedia(mi.index)
                    self.peer.tone.startTransmit(am)

    def onDtmfDigit(self, prm: Any) -> None:
        say(f"DTMF {prm.digit} {'info' if prm.method == pj.PJSUA_DTMF_METHOD_SIP_INFO else 'rfc4733'}")

    def onCallTransferRequest(self, prm: Any) -> None:  # REFER from the peer: accept (pjsua dials the target)
        say(f"XFERREQ {prm.dstUri}")  # pjsua dials it and NOTIFYs the result
        new = Call(self.peer.acc, self.peer)  # the call pjsua dials for the transfer: ours, so it plays the tone
        new.replacement = True  # (started once confirmed, as for a replacement)
        self.peer.calls.append(new)
        prm.newCall = new

    def onCallTransferStatus(self, prm: Any) -> None:
        say(f"XFER {prm.statusCode}" + (" final" if prm.finalNotify else ""))
        if prm.finalNotify:
            self.xfer_final = prm.statusCode or 1

    def onCallReplaced(self, prm: Any) -> None:  # an INVITE with Replaces took this call's place (RFC 3891)
        new = Call(self.peer.acc, self.peer, prm.newCallId)
        new.replacement = True
        self.peer.calls.append(new)
        prm.newCall = new
        say("REPLACED")

    def rx_packets(self) -> int:
        try:
            return int(self.getStreamStat(0).rtcp.rxStat.pkt)
        except pj.Error:
            return -1


class Account(pj.Account):  # type: ignore[misc]
    def __init__(self, peer: Peer) -> None:
        super().__init__()
        self.peer = peer

    def onIncomingCall(self, prm: Any) -> None:
        call = Call(self, self.peer, prm.callId)
        self.peer.calls.append(call)
        op = pj.CallOpParam()
        op.statusCode = 180 if self.peer.ring_s > 0 else 200  # --ring S: 180, the 200 comes S seconds later
        call.answer(op)


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.calls: list[Call] = []
        self.ring_s = args.ring
        self.ep = start_endpoint(args.port)
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:pj@127.0.0.1:{args.port}"
        if args.auth:
            user, password = args.auth.split(":", 1)
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
        acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        acfg.mediaConfig.transportConfig.port = args.rtp_port
        self.acc = Account(self)
        self.acc.create(acfg)
        self.tone = pj.ToneGenerator()
        self.tone.createToneGenerator(8000, 1)
        tones = pj.ToneDescVector()
        td = pj.ToneDesc()
        td.freq1, td.freq2, td.on_msec, td.off_msec, td.volume = 800, 0, 30000, 0, 0
        tones.append(td)
        self.tone.play(tones, True)

    def poll(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.ep.libHandleEvents(10)

    def poll_until(self, done: Any, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not done() and time.monotonic() < end:
            self.ep.libHandleEvents(10)


def run_step(peer: Peer, call: Call, step: str) -> None:
    name, _, arg = step.partition(":")
    if name == "wait":
        peer.poll(float(arg))
    elif name in ("dtmf", "info"):
        prm = pj.CallSendDtmfParam()
        prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO if name == "info" else pj.PJSUA_DTMF_METHOD_RFC2833
        prm.digits = arg
        call.sendDtmf(prm)
        peer.poll(0.2 * len(arg))
    elif name == "hold":
        call.setHold(pj.CallOpParam(True))
        peer.poll(0.3)
    elif name == "unhold":
        prm = pj.CallOpParam(True)
        prm.opt.flag = pj.PJSUA_CALL_UNHOLD
        call.reinvite(prm)
        peer.poll(0.3)
    elif name == "xfer":
        call.xfer(arg, pj.CallOpParam(True))
        peer.poll_until(lambda: call.xfer_final, 10)
    elif name == "hangup":
        call.hangup(pj.CallOpParam())
        peer.poll_until(lambda: call.disconnected, 3)
    elif name == "waitend":
        peer.poll_until(lambda: call.disconnected, 10)
    elif name == "rx":
        say(f"RX {call.rx_packets()}")
    else:
        raise SystemExit(f"unknown step {step!r}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rtp-port", type=int, default=46000)
    ap.add_argument("--uri", default="")
    ap.add_argument("--auth", default="")
    ap.add_argument("--answer", action="store_true")
    ap.add_argument("--ring", type=float, default=0.0, help="answer mode: ring this long before the 200")
    ap.add_argument("--cancel-after", type=float, default=0.0, help="call mode: hang up (CANCEL) while ringing")
    ap.add_argument("--linger", type=float, default=0.0,
                    help="after the steps, wait up to this long for every call (e.g. a replacement) to end")
    ap.add_argument("steps", nargs="*")  # (see the module docstring)
    args = ap.parse_args()
    peer = Peer(args)
    say("READY")
    if args.answer:
        if args.ring > 0:
            peer.poll_until(lambda: bool(peer.calls), 10)
            peer.poll_until(lambda: peer.calls[0].disconnected, args.ring)
            if peer.calls and not peer.calls[0].disconnected:
                op = pj.CallOpParam()
                op.statusCode = 200
                peer.calls[0].answer(op)
        peer.poll_until(lambda: any(c.connected or c.disconnected for c in peer.calls), 10)
        call = peer.calls[0] if peer.calls else None
    else:
        call = Call(peer.acc, peer)
        peer.calls.append(call)
        call.makeCall(args.uri, pj.CallOpParam(True))
        if args.cancel_after > 0:
            peer.poll(args.cancel_after)
            call.hangup(pj.CallOpParam())  # still ringing: pjsua sends CANCEL
        peer.poll_until(lambda: call is not None and (call.connected or call.disconnected), 8)
    if call is not None and call.connected:
        for step in args.steps:
            if call.disconnected:
                break
            run_step(peer, call, step)
    peer.poll(0.3)
    if args.linger > 0:
        peer.poll_until(lambda: all(c.disconnected for c in peer.calls), args.linger)
    say(f"CALLS {len(peer.calls)}")
    for c in peer.calls:
        if not c.disconnected:
            c.hangup(pj.CallOpParam())
    peer.poll(0.3)
    say("DONE")
    os._exit(0)  # skip SWIG destructors (see pjsua2_peer.py)


if __name__ == "__main__":
    raise SystemExit(main())
