"""The flow engine: one `Conversation` per call, turning caller input into actions.

What an intent does is data (its `action` in the flow file); each action kind has one small
handler below, registered in `_HANDLERS`. New kinds (forms with slots, ID&V) add a handler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any

from dialog.actions import Action, Hangup, Listen, Say, Transfer, Understood
from dialog.flow import (
    FAQ_PREFIX,
    Flow,
    HangupIntent,
    RepeatIntent,
    SayIntent,
    SetLanguageIntent,
    TransferIntent,
)
from dialog.nlu import NO_MATCH, IntentClassifier, NearestExampleClassifier, Nlu
from dialog.text_features import cjk_count, cjk_ratio, normalize

log = logging.getLogger(__name__)

MAX_HISTORY_LINES = 100
VALID_DTMF = frozenset("0123456789*#ABCD")


class _CallLog(logging.LoggerAdapter[logging.Logger]):
    """Puts the call id on every line, as text and as `record.call_id`."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        call_id = self.extra["call_id"] if self.extra else "-"
        kwargs.setdefault("extra", {})["call_id"] = call_id
        return f"[call {call_id}] {msg}", kwargs


class DialogEngine:
    """Holds what every call shares: the flow and the trained NLU."""

    def __init__(self, flow: Flow, classifier: IntentClassifier | None = None) -> None:
        self.flow = flow
        cfg = flow.config.nlu
        self.nlu = Nlu(
            classifier or NearestExampleClassifier(flow.training_examples()),
            threshold=cfg.threshold,
            max_chars=cfg.max_text_chars,
        )

    def new_conversation(self, call_id: str, caller: str = "") -> Conversation:
        return Conversation(self, call_id, caller)


class Conversation:
    """One caller's dialog. Every `start`/`handle_*` returns actions ending in Listen, Transfer or Hangup."""

    def __init__(self, engine: DialogEngine, call_id: str, caller: str = "") -> None:
        self.engine = engine
        self.flow = engine.flow
        self.call_id = call_id
        self.caller = caller
        self.lang: str = self.flow.config.languages.default
        self.outcome: str = "in_progress"
        self.history: list[dict[str, str]] = []
        self.last_intent: str | None = None
        self._no_input = 0
        self._no_match = 0
        self._last_prompts: list[Say] = []
        self._final: Transfer | Hangup | None = None
        self._log = _CallLog(log, {"call_id": call_id})

    @property
    def ended(self) -> bool:
        return self._final is not None

    # ---- inputs -------------------------------------------------------------------------

    def start(self) -> list[Action]:
        prompts = self.flow.config.prompts
        says = [Say(prompts.greeting[self.lang], self.lang)]
        for lang, text in prompts.language_offer.items():
            if lang != self.lang:
                says.append(Say(text, lang))
        self._log.info("conversation started (language %s)", self.lang)
        return self._speak_and_listen(says)

    def handle_text(self, text: str, confidence: float = 1.0) -> list[Action]:
        if self._final is not None:
            return self._already_ended()
        text = text if isinstance(text, str) else ""  # a failed recogniser may hand over None
        max_chars = self.flow.config.nlu.max_text_chars
        if len(text) > max_chars:
            self._log.warning("caller text truncated from %d to %d characters", len(text), max_chars)
            text = text[:max_chars]
        if not normalize(text):
            return self.handle_no_input()
        self._no_input = 0
        self._record("caller", text)
        self._follow_caller_language(text)
        if confidence < self.flow.config.nlu.min_asr_confidence:
            self._log.info("ASR confidence %.2f below minimum; not understood", confidence)
            return self._not_understood(confidence)
        result = self.engine.nlu.interpret(text)
        # What callers say can hold personal data: the text itself only at debug level.
        self._log.debug("nlu text: %r", text)
        self._log.info("nlu: %s (%.2f; best guess %s)", result.intent, result.confidence, result.best_guess)
        if result.intent is not None:
            return self._run_intent(result.intent, result.confidence)
        return self._knowledge_fallback(text) or self._not_understood(result.confidence)

    def handle_dtmf(self, digit: str) -> list[Action]:
        if self._final is not None:
            return self._already_ended()
        digit = (digit or "").strip().upper()
        self._no_input = 0
        self._record("caller", f"[key {digit[:8]}]")
        target = self.flow.config.dtmf.get(digit) if digit in VALID_DTMF else None
        if target is None:
            self._log.info("unmapped key %r", digit[:8])
            return self._not_understood(0.0, self.flow.config.prompts.unknown_key)
        self._log.info("key %s -> %s", digit, target)
        return self._run_intent(target, 1.0)

    def handle_no_input(self) -> list[Action]:
        if self._final is not None:
            return self._already_ended()
        self._no_input += 1
        spec = self.flow.config.no_input
        self._log.info("no input (%d of %d re-prompts)", self._no_input, spec.max_reprompts)
        if self._no_input > spec.max_reprompts:
            return self._give_up(spec.then, spec.reason, "no_input")
        prompts = self.flow.config.prompts.no_input
        return self._speak_and_listen([self._say(prompts[min(self._no_input, len(prompts)) - 1])])

    # ---- intents ------------------------------------------------------------------------

    def _run_intent(self, name: str, confidence: float) -> list[Action]:
        self._no_match = 0
        self.last_intent = name
        understood = Understood(name, round(confidence, 3), {})
        if name.startswith(FAQ_PREFIX):
            return [understood, *self._answer(name.removeprefix(FAQ_PREFIX))]
        spec = self.flow.config.intents[name]
        handler = _HANDLERS[type(spec)]
        return [understood, *handler(self, name, spec)]

    def _answer(self, entry_id: str) -> list[Action]:
        self.outcome = "answered"
        answer = self.engine.flow.knowledge.answer(entry_id, self.lang)
        return self._speak_and_listen([Say(answer, self.lang), self._say(self.flow.config.prompts.anything_else)])

    def _transfer(self, name: str, spec: TransferIntent) -> list[Action]:
        return self._transfer_to(spec.queue, spec.reason, name, spec.say)

    def _hangup(self, name: str, spec: HangupIntent) -> list[Action]:
        say = self._say(spec.say or self.flow.config.prompts.goodbye)
        if self.outcome == "in_progress":
            self.outcome = "goodbye"
        return self._end([say], Hangup(spec.reason))

    def _repeat(self, name: str, spec: RepeatIntent) -> list[Action]:
        if not self._last_prompts:
            return self.start()
        return self._speak_and_listen(list(self._last_prompts), remember=False)

    def _set_language(self, name: str, spec: SetLanguageIntent) -> list[Action]:
        if spec.language != self.lang:
            self._log.info("language %s -> %s", self.lang, spec.language)
        self.lang = spec.language
        return self._speak_and_listen([self._say(self.flow.config.prompts.language_switched)])

    def _say_intent(self, name: str, spec: SayIntent) -> list[Action]:
        return self._speak_and_listen([self._say(spec.say)])

    # ---- helpers ------------------------------------------------------------------------

    def _knowledge_fallback(self, text: str) -> list[Action] | None:
        hits = self.flow.knowledge.search(text, k=1)
        threshold = self.flow.config.nlu.knowledge_fallback_threshold
        if hits and hits[0].score >= threshold:
            self._log.info("knowledge fallback: %s (%.2f)", hits[0].entry.id, hits[0].score)
            return self._run_intent(FAQ_PREFIX + hits[0].entry.id, hits[0].score)
        return None

    def _not_understood(self, confidence: float, prompt: dict[str, str] | None = None) -> list[Action]:
        self._no_match += 1
        spec = self.flow.config.no_match
        understood = Understood(NO_MATCH, round(confidence, 3), {})
        if self._no_match > spec.max_reprompts:
            return [understood, *self._give_up(spec.then, spec.reason, "no_match")]
        prompts = self.flow.config.prompts.no_match
        text = prompt or prompts[min(self._no_match, len(prompts)) - 1]
        return [understood, *self._speak_and_listen([self._say(text)])]

    def _give_up(self, then: str, reason: str, intent: str) -> list[Action]:
        if then == "transfer":
            return self._transfer_to(None, reason, intent, None)
        self.outcome = intent
        return self._end([self._say(self.flow.config.prompts.goodbye)], Hangup(reason))

    def _transfer_to(self, queue: str | None, reason: str, intent: str, say: dict[str, str] | None) -> list[Action]:
        cfg = self.flow.config.transfer
        queue = queue or cfg.queue
        announcement = self._say(say or cfg.announcement)
        self.outcome = "transferred"
        # The context is built after the announcement is recorded so the agent sees it too.
        self._record("bot", announcement.text)
        context = {
            "call_id": self.call_id,
            "caller": self.caller,
            "intent": intent,
            "reason": reason,
            "language": self.lang,
            "history": [dict(line) for line in self.history],
        }
        self._log.info("transfer to %s: %s (intent %s)", queue, reason, intent)
        return self._end([announcement], Transfer(queue, reason, context), record=False)

    def _end(self, says: list[Say], final: Transfer | Hangup, record: bool = True) -> list[Action]:
        if record:
            for say in says:
                self._record("bot", say.text)
        self._final = final
        self._log.info("conversation ended: %s", self.outcome)
        return [*says, final]

    def _already_ended(self) -> list[Action]:
        self._log.warning("input after the conversation ended; repeating its final action")
        assert self._final is not None
        return [self._final]

    def _speak_and_listen(self, says: list[Say], remember: bool = True) -> list[Action]:
        if remember:
            self._last_prompts = says
        for say in says:
            self._record("bot", say.text)
        listen = self.flow.config.listen
        return [*says, Listen(listen.timeout_s, listen.digits_max)]

    def _say(self, text: dict[str, str]) -> Say:
        lang = self.lang if self.lang in text else next(iter(text))
        return Say(text[lang], lang)

    def _record(self, speaker: str, text: str) -> None:
        self.history.append({"speaker": speaker, "text": text})
        del self.history[:-MAX_HISTORY_LINES]

    def _follow_caller_language(self, text: str) -> None:
        langs = self.flow.config.languages
        if not langs.follow_caller:
            return
        # A lone "ok" from a Chinese caller is no reason to switch; a sentence is.
        ratio = cjk_ratio(text)
        if ratio > 0.5 and cjk_count(text) >= 2:
            spoken = "zh"
        elif ratio == 0.0 and len(normalize(text).split()) >= 2:
            spoken = "en"
        else:
            return
        if spoken in langs.offered and spoken != self.lang:
            self._log.info("caller speaks %s; switching from %s", spoken, self.lang)
            self.lang = spoken


_Handler = Callable[[Conversation, str, Any], list[Action]]
_HANDLERS: dict[type, _Handler] = {
    TransferIntent: Conversation._transfer,
    HangupIntent: Conversation._hangup,
    RepeatIntent: Conversation._repeat,
    SetLanguageIntent: Conversation._set_language,
    SayIntent: Conversation._say_intent,
}
