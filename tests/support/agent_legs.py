"""Small helpers for end-to-end tests with agents' phones (tests/e2e/test_callback.py, test_transfer.py)."""

from __future__ import annotations

import asyncio
import time

from telephony import AgentPhone, CallLeg


async def leg_from(phone: AgentPhone, caller: str, timeout: float) -> CallLeg:
    """The latest leg `phone` answered from `caller`; fails naming both after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        legs = [leg for leg in phone.legs if leg.caller == caller]
        if legs:
            return legs[-1]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no call from {caller} on port {phone.port} within {timeout} s")


def words(text: str) -> str:
    """Lower-case words only, for checking what a recogniser heard."""
    return " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split())
