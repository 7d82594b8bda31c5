"""What the dialog asks the call session to do next: small frozen dataclasses, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Say:
    """Speak `text` in `lang`; `barge_in` lets the caller interrupt it."""

    text: str
    lang: str
    barge_in: bool = True


@dataclass(frozen=True)
class Listen:
    """Wait for speech or up to `digits_max` keypad digits for `timeout_s` seconds.

    `secret`: what the caller keys now is a PIN or a card number: the session shows it masked in the
    transcript, puts no digits in events or logs, and pauses the recording until the next turn.
    """

    timeout_s: float
    digits_max: int = 1
    secret: bool = False


@dataclass(frozen=True)
class Understood:
    """What the dialog understood this turn (for records and analytics); no audible effect."""

    intent: str
    confidence: float
    slots: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Transfer:
    """Hand the caller to a human queue; `context` is what the agent's screen shows.

    Routing hints from the flow's `transfer` section: `needs` are the skills an agent should have for this
    caller (their language, the product they asked about), `relax` the order in which the distributor may
    drop them when nobody with them can take the call (product first, then language), and `priority` comes
    from the verified customer's segment (VIP first; unverified callers 0).
    """

    queue: str
    reason: str
    context: dict[str, Any] = field(default_factory=dict, hash=False)
    needs: dict[str, int] = field(default_factory=dict, hash=False)
    relax: tuple[str, ...] = ()
    priority: int = 0


@dataclass(frozen=True)
class Hangup:
    """End the call after what was said has been played."""

    reason: str


Action = Say | Listen | Understood | Transfer | Hangup
# A turn always ends with one of these, so the session knows what to do next.
FINAL_ACTIONS = (Listen, Transfer, Hangup)
