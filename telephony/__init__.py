"""SIP/RTP edge: answer calls, media frames in and out, DTMF, dial out, bridge legs."""

from .bridge import bridge
from .endpoint import CallFailed, SipEndpoint
from .leg import AudioFrame, CallLeg, DtmfDigit, TransferRequest
from .sip_message import ParseError
from .testcaller import AgentPhone, TestCaller

__all__ = [
    "AgentPhone",
    "AudioFrame",
    "CallFailed",
    "CallLeg",
    "DtmfDigit",
    "ParseError",
    "SipEndpoint",
    "TestCaller",
    "TransferRequest",
    "bridge",
]
