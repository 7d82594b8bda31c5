"""SIP/RTP edge: answer calls, media frames in and out, DTMF, dial out, bridge legs."""
