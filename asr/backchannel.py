"""Backchannels over a prompt: "uh-huh", "yeah", "ok", "嗯", "对" keep the prompt playing; real speech
("no, I want to block my card") stops it.

The barge-in detector (asr/bargein.py) fires on any articulated onset, backchannels with a vowel
included. With a `BackchannelGate`, the session does not stop the prompt at that moment: the prompt
keeps playing while it decides:

- the caller keeps talking: ``max_speech_ms`` of speech since the onset (longer than a backchannel)
  → barge-in, the prompt stops;
- the caller pauses (the endpointer's ``SpeechPaused``, ``tail_ms`` = 300 ms of silence) and the
  recogniser's text for what was said (the speculative decode, asr/speculative.py) is a backchannel
  in either language, or nothing → the prompt goes on at full volume, and the sound is not a turn;
  any other text → barge-in.

Real speech over a prompt stops it at the decision (about ``max_speech_ms`` after the onset, or at the
caller's first pause), not when the detector fires (~100 ms); so the session ducks the prompt
(`CallLeg.duck`, -24 dB) at the onset, and a backchannel brings it back to full volume: the caller hears
the prompt go quiet as fast as a stop. `is_backchannel` is the bilingual list. `DuckAwareEchoGuard`
keeps the barge-in detector's echo estimate through a duck (the prompt's level steps by 24 dB while the
echo still carries the old level for a frame or two, which would otherwise be learnt as a weaker line).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Any

from .bargein import EchoGuard

__all__ = ["BACKCHANNELS", "BackchannelGate", "Decision", "DuckAwareEchoGuard", "is_backchannel"]

# Words that acknowledge without taking the turn. "yes"/"no" and "是"/"不" answer questions: not here.
BACKCHANNELS: dict[str, frozenset[str]] = {
    "en": frozenset({
        "uh huh", "uhhuh", "uh-huh", "mhm", "mm", "mmm", "mm hmm", "hmm", "hm", "um", "uh", "ah", "oh",
        "yeah", "yep", "yup", "ok", "okay", "o k", "right", "alright", "all right", "sure", "i see",
        "got it", "cool", "fine", "yeah yeah", "okay okay", "ok ok", "right right",
    }),
    "zh": frozenset({"嗯", "嗯嗯", "对", "对对", "对对对", "好", "好的", "好好", "哦", "噢", "喔", "啊", "行", "明白",
                     "嗯对", "嗯好", "是啊", "对啊", "好啊"}),
}
_PUNCT = re.compile(r"[\s\.,!?;:'\"()\[\]…。，！？；：、“”‘’（）～~-]+")


def is_backchannel(text: str, lang: str) -> bool:
    """True if `text` (a recogniser's output) is only an acknowledgement in `lang` (zh or en; other
    languages are checked against both lists). Empty text is not a backchannel (it is nothing)."""
    lists = [BACKCHANNELS[lang]] if lang in BACKCHANNELS else list(BACKCHANNELS.values())
    words = _PUNCT.sub(" ", text.lower()).split()
    if not words:
        return False
    joined = " ".join(words)
    compact = "".join(words)
    if any(joined in bc or compact in bc for bc in lists):
        return True
    # A repeated or mixed run of acknowledgements: "yeah okay", "嗯 对", "ok, ok, sure".
    return all(any(w in bc for bc in lists) for w in words) and len(words) <= 4


class Decision(enum.Enum):
    PENDING = "pending"
    BACKCHANNEL = "backchannel"  # keep playing at full volume; the sound is not a turn
    BARGE_IN = "barge_in"  # stop the prompt; the caller's speech is a turn


class BackchannelGate:
    """One per call. `start` when the barge-in detector fires over a prompt; feed the endpointer's
    speech so far (`speech`) every frame, and the recognised text at a pause (`heard`)."""

    def __init__(self, max_speech_ms: int = 600) -> None:
        if max_speech_ms <= 0:
            raise ValueError("max_speech_ms must be positive")
        self.max_speech_ms = max_speech_ms
        self.decision: Decision | None = None  # None: not deciding (no onset over a prompt)
        self.kept = False  # the last decision let the prompt go on: its utterance is not a turn

    @property
    def pending(self) -> bool:
        return self.decision is Decision.PENDING

    def start(self) -> None:
        """The detector fired over a prompt: decide from now on."""
        self.decision = Decision.PENDING
        self.kept = False

    def speech(self, speech_ms: int) -> Decision | None:
        """Every frame while pending, with the endpointer's speech in this utterance so far: more than a
        backchannel holds → BARGE_IN."""
        if self.decision is Decision.PENDING and speech_ms >= self.max_speech_ms:
            return self._decide(Decision.BARGE_IN)
        return None

    def heard(self, text: str, lang: str) -> Decision | None:
        """The recogniser's text for the speech up to a pause: a backchannel (or nothing) keeps the prompt."""
        if self.decision is not Decision.PENDING:
            return None
        keep = not text.strip() or is_backchannel(text, lang)
        return self._decide(Decision.BACKCHANNEL if keep else Decision.BARGE_IN)

    def barge_in(self) -> Decision | None:
        """Nothing to judge by (no recogniser result): the speech is taken as barge-in."""
        return self._decide(Decision.BARGE_IN) if self.decision is Decision.PENDING else None

    def _decide(self, d: Decision) -> Decision:
        self.decision = d
        self.kept = d is Decision.BACKCHANNEL
        return d

    def reset(self) -> None:
        self.decision = None
        self.kept = False


class DuckAwareEchoGuard(EchoGuard):
    """An `EchoGuard` that does not re-learn the echo path while the prompt is ducked, nor until the
    duck has left its learning window (``window_ms`` + ``max_delay_ms``, ~1.9 s) after it ends: a
    prompt whose level steps by -24 dB and back is not the line changing. ``ducked`` is asked once per
    received frame (e.g. ``lambda: leg.ducked``). The estimate from before the duck is used meanwhile."""

    def __init__(self, ducked: Callable[[], bool], frame_ms: int = 20, **options: Any) -> None:
        super().__init__(frame_ms, **options)
        self._ducked = ducked
        self._hold = 0  # received frames left before learning again

    def expected_echo(self, in_energy: float) -> float:
        if self._ducked():
            self._hold = self.window + self.max_lag + 1
        elif self._hold:
            self._hold -= 1
        return super().expected_echo(in_energy)

    @property
    def holding(self) -> bool:
        """The echo estimate is frozen (a duck is in, or recently left, the learning window)."""
        return self._hold > 0

    def _estimate(self) -> None:
        if self._hold:
            return
        super()._estimate()
