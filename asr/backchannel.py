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

import collections
import enum
import re
from collections.abc import Callable
from typing import Any

from .bargein import EchoGuard

__all__ = [
    "BACKCHANNELS", "BackchannelGate", "Decision", "DuckAwareEchoGuard", "could_be_backchannel", "is_backchannel",
]

# Words that acknowledge without taking the turn. "yes"/"no" and "是"/"不" answer questions: not here
# (but a repeated "yes yes" over a prompt is an acknowledgement).
BACKCHANNELS: dict[str, frozenset[str]] = {
    "en": frozenset({
        "uh huh", "uhhuh", "uh-huh", "mhm", "mm", "mmm", "mm hmm", "hmm", "hm", "um", "uh", "ah", "oh",
        "yeah", "yep", "yup", "ok", "okay", "o k", "right", "alright", "all right", "sure", "i see",
        "got it", "cool", "fine", "yeah yeah", "okay okay", "ok ok", "right right", "yes yes", "yes yes yes",
    }),
    "zh": frozenset({"嗯", "嗯嗯", "对", "对对", "对对对", "好", "好的", "好好", "哦", "噢", "喔", "啊", "行", "明白",
                     "嗯对", "嗯好", "是啊", "对啊", "好啊", "是的是的", "明白了", "知道了", "好嘞"}),
}
# Closing words that may follow an acknowledgement ("alright then", "okay then", "好的吧"), never alone.
CLOSERS: dict[str, frozenset[str]] = {"en": frozenset({"then"}), "zh": frozenset({"吧", "呀", "哈"})}
# More than this in one breath is not a backchannel ("okay okay okay okay okay"): words (en), characters (zh).
MAX_WORDS = {"en": 4, "zh": 6}
_PUNCT = re.compile(r"[\s\.,!?;:'\"()\[\]…。，！？；：、“”‘’（）～~-]+")
_HAN = re.compile(r"[\u3400-\u9fff]")


def _units(items: list[str], vocab: frozenset[str], closers: frozenset[str], sep: str) -> int | None:
    """The fewest acknowledgement units `items` (words, or Han characters) splits into, each a phrase
    of `vocab` (a closer may end the run, after at least one unit); None if it does not split that way."""
    n = len(items)
    best: list[int | None] = [0] + [None] * n
    longest = max(len(v.split(" ")) if sep else len(v) for v in vocab)
    for i in range(1, n + 1):
        for j in range(max(0, i - longest), i):
            prev = best[j]
            if prev is None:
                continue
            piece = sep.join(items[j:i])
            if piece in vocab or (i == n and j > 0 and piece in closers):
                if best[i] is None or prev + 1 < best[i]:  # type: ignore[operator]
                    best[i] = prev + 1
    return best[n]


def is_backchannel(text: str, lang: str) -> bool:
    """True if `text` (a recogniser's output) is only acknowledgements in `lang` (zh or en; other
    languages are checked against both lists): one ("yeah", "嗯") or a short run of them ("okay, sure",
    "alright then", "yes yes", "好的好的", "嗯嗯对"). Empty text is not a backchannel (it is nothing)."""
    langs = [lang] if lang in BACKCHANNELS else list(BACKCHANNELS)
    words = _PUNCT.sub(" ", text.lower()).split()
    if not words:
        return False
    for lg in langs:
        vocab, closers = BACKCHANNELS[lg], CLOSERS[lg]
        if " ".join(words) in vocab or "".join(words) in vocab:
            return True
        items = list("".join(words)) if lg == "zh" or _HAN.search(text) else words  # zh: no spaces
        sep = "" if items is not words else " "
        spoken = len(items) - (1 if items[-1] in closers else 0)
        if spoken <= MAX_WORDS[lg] and _units(items, vocab, closers, sep) is not None:
            return True
    return False


def could_be_backchannel(text: str, lang: str) -> bool:
    """For the text of speech still going on (`BackchannelGate.partial`): nothing yet, or only
    acknowledgements so far, the last word possibly cut off or the start of a longer one ("okay, su",
    "yes" of "yes yes", "好的好" of "好的好的")."""
    words = _PUNCT.sub(" ", text.lower()).split()
    if not words or is_backchannel(text, lang):
        return True
    langs = [lang] if lang in BACKCHANNELS else list(BACKCHANNELS)
    for lg in langs:
        han = lg == "zh" or bool(_HAN.search(text))
        items = list("".join(words)) if han else words
        head, last = items[:-1], items[-1]
        if head and not is_backchannel(("" if han else " ").join(head), lg):
            continue
        tokens = {t for phrase in BACKCHANNELS[lg] for t in (phrase if han else phrase.split())}
        if any(t.startswith(last) for t in tokens):
            return True
    return False


class Decision(enum.Enum):
    PENDING = "pending"
    BACKCHANNEL = "backchannel"  # keep playing at full volume; the sound is not a turn
    BARGE_IN = "barge_in"  # stop the prompt; the caller's speech is a turn


class BackchannelGate:
    """One per call. `start` when the barge-in detector fires over a prompt; feed the endpointer's
    speech so far (`speech`, with the frame heard, every frame), and the recognised text at a pause
    (`heard`).

    Long backchannels ("okay, sure", "alright then", "yes yes", "好的好的", "嗯嗯对") run past
    ``max_speech_ms``. With ``max_backchannel_ms`` > ``max_speech_ms`` and the frames given to `speech`,
    the gate asks for the text so far (`wants_text`: the caller decodes `take_audio()` and hands the
    text to `partial`) ``peek_ms`` before ``max_speech_ms``, so the decode runs while the caller talks:
    other words stop the prompt at once (real speech keeps its fast stop); acknowledgements so far keep
    it ducked past ``max_speech_ms`` until the pause (`heard` decides) or ``max_backchannel_ms`` of
    speech (barge-in), asking again every ``again_ms`` of speech (at most ``max_peeks`` decodes).
    Empty text (a word cut off) is asked again ``retry_ms`` later; nothing recognisable after that is
    barge-in at ``max_speech_ms``. Without acknowledgements heard by ``max_speech_ms`` + ``wait_ms``
    (default 0: a decode too slow for it, on a busy CPU, leaves the stop exactly as fast as without
    long backchannels), it is barge-in then. Decision table (tests/asr/test_backchannel_long.py):

    =======================================  ====================================  ===================
    speech over the prompt                   text                                  decision
    =======================================  ====================================  ===================
    pause before max_speech_ms               acknowledgements or nothing (pause)   BACKCHANNEL
    pause before max_speech_ms               other words (pause)                   BARGE_IN
    a pause inside the utterance             the start of one ("Yes." of yes yes)  at the utterance's end
    from max_speech_ms - peek_ms             text so far not acknowledgements      BARGE_IN at once
    past max_speech_ms, then a pause         acknowledgements (pause)              BACKCHANNEL
    past max_speech_ms, then a pause         other words (pause)                   BARGE_IN
    max_speech_ms                            nothing recognisable so far, twice    BARGE_IN
    max_speech_ms + wait_ms                  no acknowledgements heard yet         BARGE_IN
    max_backchannel_ms                       (any)                                 BARGE_IN
    max_speech_ms, no frames / long off      (none)                                BARGE_IN
    =======================================  ====================================  ===================
    """

    def __init__(self, max_speech_ms: int = 600, max_backchannel_ms: int = 1500, *, frame_ms: int = 20,
                 pre_ms: int = 400, peek_ms: int = 250, wait_ms: int = 0, again_ms: int = 300,
                 retry_ms: int = 120, max_peeks: int = 3) -> None:
        if max_speech_ms <= 0:
            raise ValueError("max_speech_ms must be positive")
        if max_backchannel_ms < 0:
            raise ValueError("max_backchannel_ms must not be negative")
        self.max_speech_ms = max_speech_ms
        self.max_backchannel_ms = max_backchannel_ms  # <= max_speech_ms: no long backchannels
        self.peek_at_ms = max(frame_ms, max_speech_ms - peek_ms)
        self.wait_ms = wait_ms  # past max_speech_ms, how long a running decode of the text so far is awaited
        self.again_ms = again_ms
        self.retry_ms = retry_ms  # after an empty text so far
        self.max_peeks = max_peeks
        self.decision: Decision | None = None  # None: not deciding (no onset over a prompt)
        self.kept = False  # the last decision let the prompt go on: its utterance is not a turn
        self._ring: collections.deque[bytes] = collections.deque(maxlen=max(1, pre_ms // frame_ms))
        self._clear()

    def _clear(self) -> None:
        self._audio: list[bytes] = []  # frames since (just before) the onset, while pending
        self._speech_ms = 0
        self._next_peek: int | None = self.peek_at_ms  # speech at which the text is asked for; None: no more
        self._asked = False  # a decode of the text so far is running
        self._peeks = 0
        self._text_ok = False  # the text so far was acknowledgements

    @property
    def pending(self) -> bool:
        return self.decision is Decision.PENDING

    @property
    def long_backchannels(self) -> bool:
        return self.max_backchannel_ms > self.max_speech_ms

    def start(self) -> None:
        """The detector fired over a prompt: decide from now on."""
        self.decision = Decision.PENDING
        self.kept = False
        self._clear()
        self._audio = list(self._ring)  # the onset, a little before the detector confirmed it

    def speech(self, speech_ms: int, pcm: bytes | None = None) -> Decision | None:
        """Every frame (with the frame heard, `pcm`, for long backchannels), with the endpointer's speech
        in this utterance so far: more than a backchannel holds → BARGE_IN."""
        if pcm is not None:
            if self.decision is Decision.PENDING:
                self._audio.append(pcm)
            self._ring.append(pcm)
        if self.decision is not Decision.PENDING:
            return None
        self._speech_ms = speech_ms
        if not self.long_backchannels or not self._audio:
            return self._decide(Decision.BARGE_IN) if speech_ms >= self.max_speech_ms else None
        if speech_ms >= self.max_backchannel_ms:
            return self._decide(Decision.BARGE_IN)
        if speech_ms >= self.max_speech_ms and not self._text_ok and (
            speech_ms >= self.max_speech_ms + self.wait_ms or (not self._asked and self._next_peek is None)
        ):
            return self._decide(Decision.BARGE_IN)  # no words of assent (in time): real speech keeps its fast stop
        return None

    @property
    def wants_text(self) -> bool:
        """Time to ask for the text so far: decode `take_audio()` and give its text to `partial`."""
        return (self.pending and self.long_backchannels and bool(self._audio) and not self._asked
                and self._next_peek is not None and self._speech_ms >= self._next_peek)

    def take_audio(self) -> bytes:
        """The speech over the prompt so far, from just before the onset (a decode is now running)."""
        self._asked = True
        self._peeks += 1
        return b"".join(self._audio)

    def partial(self, text: str, lang: str) -> Decision | None:
        """The text of the speech so far (still going on): anything but acknowledgements → BARGE_IN;
        acknowledgements → still pending (the pause or ``max_backchannel_ms`` decides)."""
        if self.decision is not Decision.PENDING:
            return None
        self._asked = False
        more = self._peeks < self.max_peeks
        if not text.strip():  # a word cut off, or a hum: once more a little later, then barge-in
            self._next_peek = self._speech_ms + self.retry_ms if more and self._peeks < 2 else None
            if self._next_peek is None and not self._text_ok and self._speech_ms >= self.max_speech_ms:
                return self._decide(Decision.BARGE_IN)
            return None
        if not could_be_backchannel(text, lang):
            return self._decide(Decision.BARGE_IN)
        self._text_ok = True
        self._next_peek = self._speech_ms + self.again_ms if more else None  # "okay, I lost ..." is caught
        return None

    def heard(self, text: str, lang: str, *, final: bool = True) -> Decision | None:
        """The recogniser's text for the speech up to a pause: a backchannel (or nothing) keeps the prompt.
        At a pause inside the utterance (``final`` False, long backchannels on), text that may be the start
        of a longer acknowledgement ("Yes." of "yes, yes") leaves the decision to the utterance's end."""
        if self.decision is not Decision.PENDING:
            return None
        keep = not text.strip() or is_backchannel(text, lang)
        if not keep and not final and self.long_backchannels and self._audio and could_be_backchannel(text, lang):
            return None
        return self._decide(Decision.BACKCHANNEL if keep else Decision.BARGE_IN)

    def barge_in(self) -> Decision | None:
        """Nothing to judge by (no recogniser result): the speech is taken as barge-in."""
        return self._decide(Decision.BARGE_IN) if self.decision is Decision.PENDING else None

    def _decide(self, d: Decision) -> Decision:
        self.decision = d
        self.kept = d is Decision.BACKCHANNEL
        self._clear()
        return d

    def reset(self) -> None:
        self.decision = None
        self.kept = False
        self._clear()


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
