"""A pjsua2 (PyPI pjsua2-python) peer run as a subprocess by test_pjsua2.py.

    python pjsua2_peer.py call   --port P --uri URI --play in.wav --record out.wav --seconds S [--dtmf 12]
    python pjsua2_peer.py answer --port P           --play in.wav --record out.wav --seconds S

Prints "STATE <name>", "DTMF <digit>", "DONE" lines. Quirks handled (see /work/shared/FACTS.md): null audio
device, sndAutoCloseTime=-1, explicit bound address, G.711 codec priority, single-threaded event polling,
the process exits with os._exit instead of destroying objects.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import pjsua2 as pj


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def start_endpoint(port: int) -> Any:
    """A started pjsua2 library on 127.0.0.1:`port` (UDP), 8 kHz, no sound device, PCMU then PCMA only;
    polled from the main thread (``libHandleEvents``). Shared with pjsua2_script.py."""
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    cfg.medConfig.sndAutoCloseTime = -1
    cfg.medConfig.clockRate = 8000
    cfg.medConfig.sndClockRate = 8000
    cfg.medConfig.noVad = True
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = port
    tcfg.boundAddress = "127.0.0.1"
    tcfg.publicAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    for c in ep.codecEnum2():
        prio = 255 if c.codecId.startswith("PCMU/") else 254 if c.codecId.startswith("PCMA/") else 0
        ep.codecSetPriority(c.codecId, prio)
    return ep


class Call(pj.Call):  # type: ignore[misc]
    def __init__(self, acc: Any, peer: Peer, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(acc, call_id)
        self.peer = peer
        self.disconnected = False
        self.connected = False

    def onCallState(self, prm: Any) -> None:
        ci = self.getInfo()
        say(f"STATE {ci.stateText}")
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.connected = True
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True

    def onCallMediaState(self, prm: Any) -> None:
        ci = self.getInfo()
        for mi in ci.media:
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                am = self.getAudioMedia(mi.index)
                self.peer.player.startTransmit(am)
                am.startTransmit(self.peer.recorder)
                say("MEDIA active")

    def onDtmfDigit(self, prm: Any) -> None:
        say(f"DTMF {prm.digit}")


class Account(pj.Account):  # type: ignore[misc]
    def __init__(self, peer: Peer) -> None:
        super().__init__()
        self.peer = peer

    def onRegState(self, prm: Any) -> None:
        say(f"REG {prm.code}")

    def onIncomingCall(self, prm: Any) -> None:
        call = Call(self, self.peer, prm.callId)
        self.peer.calls.append(call)
        op = pj.CallOpParam()
        op.statusCode = 200
        call.answer(op)


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.calls: list[Call] = []
        self.ep = start_endpoint(args.port)
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:pj@127.0.0.1:{args.port}"
        if args.register_to:  # register with a registrar using digest auth (any algorithm PJSIP offers)
            acfg.idUri = f"sip:{args.user}@{args.register_to.split(':', 1)[1]}"
            acfg.regConfig.registrarUri = args.register_to
            acfg.regConfig.timeoutSec = 120
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", args.user, 0, args.password))
        acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        acfg.mediaConfig.transportConfig.port = args.rtp_port
        self.acc = Account(self)
        self.acc.create(acfg)
        self.player = pj.AudioMediaPlayer()
        self.player.createPlayer(args.play)
        self.recorder = pj.AudioMediaRecorder()
        self.recorder.createRecorder(args.record)

    def poll(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.ep.libHandleEvents(10)

    def close(self) -> None:
        for c in self.calls:
            if not c.disconnected:
                c.hangup(pj.CallOpParam())
        self.poll(0.5)
        del self.recorder  # finalises the WAV header
        del self.player
        # The process exits right after this (os._exit): deleting a disconnected pj.Call trips an assertion
        # in pjsua_call_set_user_data, and libDestroy with live Call objects is not safe either.


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["call", "answer"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rtp-port", type=int, default=46000)
    ap.add_argument("--uri", default="")
    ap.add_argument("--play", required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--dtmf", default="")
    ap.add_argument("--register-to", default="", help="registrar URI, e.g. sip:127.0.0.1:5080")
    ap.add_argument("--user", default="pj")
    ap.add_argument("--password", default="")
    args = ap.parse_args()
    peer = Peer(args)
    say("READY")
    if args.mode == "call":
        call = Call(peer.acc, peer)
        peer.calls.append(call)
        call.makeCall(args.uri, pj.CallOpParam(True))
        end = time.monotonic() + 5
        while not call.connected and not call.disconnected and time.monotonic() < end:
            peer.poll(0.05)
        if call.connected:
            peer.poll(0.5)
            if args.dtmf:
                call.dialDtmf(args.dtmf)
            peer.poll(args.seconds)
            call.hangup(pj.CallOpParam())
            peer.poll(0.5)
    else:
        end = time.monotonic() + args.seconds
        while time.monotonic() < end and not (peer.calls and all(c.disconnected for c in peer.calls)):
            peer.poll(0.05)
        peer.poll(0.3)
    peer.close()
    say("DONE")
    os._exit(0)  # skip SWIG destructors running after libDestroy


if __name__ == "__main__":
    raise SystemExit(main())
