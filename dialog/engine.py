"""The flow engine: one `Conversation` per call, turning caller input into actions.

What an intent does is data (its `action` in the flow file); each action kind has one small
handler below, registered in `_HANDLERS`. New kinds (forms with slots, ID&V) add a handler.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, cast

from dialog import entities
from dialog.actions import Action, Hangup, Listen, Say, Transfer, Understood
from dialog.bank_ops import OPERATIONS, OpContext, complaint_classifier, money, parse_period, spoken_period
from dialog.corebank import BankError, CoreBank, Customer
from dialog.flow import (
    FAQ_PREFIX,
    RECORD_SLOT_TYPES,
    BankIntent,
    Flow,
    GoBackIntent,
    HangupIntent,
    MenuIntent,
    RepeatIntent,
    SayIntent,
    SetLanguageIntent,
    SlotSpec,
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

    def __init__(
        self, flow: Flow, classifier: IntentClassifier | None = None, bank: CoreBank | None = None
    ) -> None:
        self.flow = flow
        self.bank = bank
        categories = flow.config.bank.complaint_categories if flow.config.bank else {}
        self.complaint_classifier = complaint_classifier(categories)
        cfg = flow.config.nlu
        self.nlu = Nlu(
            classifier or NearestExampleClassifier(flow.training_examples()),
            threshold=cfg.threshold,
            max_chars=cfg.max_text_chars,
        )

    def new_conversation(self, call_id: str, caller: str = "", lang: str | None = None) -> Conversation:
        return Conversation(self, call_id, caller, lang)


class Conversation:
    """One caller's dialog. Every `start`/`handle_*` returns actions ending in Listen, Transfer or Hangup."""

    def __init__(self, engine: DialogEngine, call_id: str, caller: str = "", lang: str | None = None) -> None:
        self.engine = engine
        self.flow = engine.flow
        self.call_id = call_id
        self.caller = caller
        offered = self.flow.config.languages.offered
        self.lang: str = lang if lang in offered else self.flow.config.languages.default
        self.customer: Customer | None = None  # set once the caller has verified
        self._form: _Form | None = None
        self._verifying: str | None = None  # "number" or "pin" while verification asks for it
        self._number = ""  # the card/account number keyed, only until the PIN is checked
        self._verify_failures = 0
        self._digits = ""  # keys collected so far for the current question
        self._menu: dict[str, str] | None = None
        self._hash_after_full_entry = False  # a "#" out of habit after the last digit is ignored
        self.outcome: str = "in_progress"
        self.history: list[dict[str, str]] = []
        self.last_intent: str | None = None
        self._no_input = 0
        self._no_match = 0
        self._last_prompts: list[Say] = []
        self._final: Transfer | Hangup | None = None
        self._log = _CallLog(log, {"call_id": call_id})
        self.today: date | None = None  # "last month" is counted from this day (None: the real today)
        self._said = ""  # the caller's words that started the current intent: they may already name a slot
        self._last_done: _Form | None = None  # the bank intent just answered, for "no, the savings one"
        self._asked: list[str] = []  # intents run, in order: the latest with product skills routes a transfer

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
        self._menu = None
        self._hash_after_full_entry = False
        if self._secret_now():
            # Whatever was said while a PIN or card number is asked for may hold it: never kept.
            self._record("caller", "[speech during secret entry]")
            return self._secret_speech(text)
        self._record("caller", text)
        self._follow_caller_language(text)
        if self._asking() is not None:
            return self._form_text(text, confidence)
        self._said = text
        if confidence < self.flow.config.nlu.min_asr_confidence:
            self._log.info("ASR confidence %.2f below minimum; not understood", confidence)
            return self._not_understood(confidence)
        result = self.engine.nlu.interpret(text)
        # What callers say can hold personal data: the text itself only at debug level.
        self._log.debug("nlu text: %r", text)
        self._log.info("nlu: %s (%.2f; best guess %s)", result.intent, result.confidence, result.best_guess)
        correction = self._correction(text, result.intent)
        if correction is not None:
            return correction
        if result.intent is not None:
            return self._run_intent(result.intent, result.confidence)
        return self._knowledge_fallback(text) or self._not_understood(result.confidence)

    def handle_dtmf(self, digit: str) -> list[Action]:
        if self._final is not None:
            return self._already_ended()
        digit = (digit or "").strip().upper()
        self._no_input = 0
        self._said = ""
        swallow, self._hash_after_full_entry = self._hash_after_full_entry, False
        if digit == "#" and swallow:
            return [self._listen()]  # "#" after a PIN that was already complete: nothing to do
        if self._asking() is not None:
            return self._form_key(digit)
        self._record("caller", f"[key {digit[:8]}]")
        menu, self._menu = self._menu, None
        if menu is not None and digit == "*":
            return self._go_back_to_menu()
        target = menu.get(digit) if menu is not None else None
        if target is None:
            target = self.flow.config.dtmf.get(digit) if digit in VALID_DTMF else None
        if target is None:
            self._log.info("unmapped key %r", digit[:8])
            return self._not_understood(0.0, self.flow.config.prompts.unknown_key)
        self._log.info("key %s -> %s", digit, target)
        return self._run_intent(target, 1.0)

    def handle_no_input(self) -> list[Action]:
        if self._final is not None:
            return self._already_ended()
        if self._digits and self._collects_digits():
            return self._digits_done()  # the caller stopped keying: what was keyed is the answer
        self._no_input += 1
        spec = self.flow.config.no_input
        self._log.info("no input (%d of %d re-prompts)", self._no_input, spec.max_reprompts)
        if self._no_input > spec.max_reprompts:
            return self._give_up(spec.then, spec.reason, "no_input")
        prompts = self.flow.config.prompts.no_input
        if self._asking() is not None:
            return self._speak_and_listen([self._say(prompts[min(self._no_input, len(prompts)) - 1]), self._question()])
        return self._speak_and_listen([self._say(prompts[min(self._no_input, len(prompts)) - 1])])

    @property
    def expects_digits(self) -> bool:
        """True while a number is being keyed (a chat client sends typed digits as keys then)."""
        return self._collects_digits()

    @property
    def digits_pending(self) -> bool:
        """Keys were pressed for the current question but the entry is not finished yet."""
        return bool(self._digits)

    @property
    def expects_secret(self) -> bool:
        return self._secret_now()

    # ---- intents ------------------------------------------------------------------------

    def _run_intent(self, name: str, confidence: float) -> list[Action]:
        self._no_match = 0
        self.last_intent = name
        self._asked = [*self._asked[-19:], name]
        self._last_done = None
        understood = Understood(name, round(confidence, 3), {})
        if name.startswith(FAQ_PREFIX):
            entry_id = name.removeprefix(FAQ_PREFIX)
            if not self.engine.flow.knowledge.in_force(entry_id):  # withdrawn, or not yet effective
                return self._not_understood(confidence)
            return [understood, *self._answer(entry_id)]
        spec = self.flow.config.intents[name]
        handler = _HANDLERS[type(spec)]
        return [understood, *handler(self, name, spec)]

    def _answer(self, entry_id: str) -> list[Action]:
        self.outcome = "answered"
        answer = self.engine.flow.knowledge.answer(entry_id, self.lang)
        follow_up = self.flow.config.follow_ups.get(FAQ_PREFIX + entry_id)
        if follow_up is not None:  # e.g. after the lost-card advice: "to block the card now, press 1"
            actions = self._speak_and_listen([Say(answer, self.lang), self._say(follow_up.say)])
            self._menu = dict(follow_up.options)
            return actions
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

    def _menu_intent(self, name: str, spec: MenuIntent) -> list[Action]:
        actions = self._speak_and_listen([self._say(spec.say)])
        self._menu = dict(spec.options)
        return actions

    def _go_back_intent(self, name: str, spec: GoBackIntent) -> list[Action]:
        return self._go_back_to_menu()

    def _bank_intent(self, name: str, spec: BankIntent) -> list[Action]:
        return self._start_form(name, spec, resume=None)

    # ---- forms: verification, slots, confirmation ---------------------------------------

    def _start_form(
        self,
        name: str,
        spec: BankIntent,
        resume: str | None,
        says: list[Say] | None = None,
        preset: dict[str, str] | None = None,
    ) -> list[Action]:
        self._form = _Form(name, spec, {}, resume=resume, hint=self._said, preset=preset)
        self._said = ""
        self._digits = ""
        if spec.verify and self.customer is None:
            self._verifying = "number"
            self._log.info("%s needs verification: asking for the card or account number", name)
        return self._ask(says or [])

    def _asking(self) -> SlotSpec | str | None:
        """What the next input answers: "number", "pin", "confirm", a slot, or None (no form)."""
        if self._verifying is not None:
            return self._verifying
        form = self._form
        if form is None:
            return None
        if form.confirming:
            return "confirm"
        return form.spec.slots[form.index] if form.index < len(form.spec.slots) else None

    def _collects_digits(self) -> bool:
        asking = self._asking()
        return asking in ("number", "pin") or (isinstance(asking, SlotSpec) and asking.type in ("digits", "amount"))

    def _secret_now(self) -> bool:
        asking = self._asking()
        return asking in ("number", "pin") or (isinstance(asking, SlotSpec) and asking.secret)

    def _digits_max(self) -> int:
        asking = self._asking()
        ver = self._verification()
        if asking == "number":
            return ver.max_number_digits
        if asking == "pin":
            return ver.pin_digits
        if isinstance(asking, SlotSpec) and asking.type == "digits":
            return asking.max_digits
        if isinstance(asking, SlotSpec) and asking.type == "amount":
            return 12
        return 1

    def _verification(self) -> Any:
        assert self.flow.config.bank is not None  # checked at load: bank intents need the bank section
        return self.flow.config.bank.verification

    def _question(self) -> Say:
        asking = self._asking()
        bank = self.flow.config.bank
        assert bank is not None and self._form is not None
        if asking == "number":
            return self._say(bank.verification.ask_number)
        if asking == "pin":
            return self._say(bank.verification.ask_pin)
        if asking == "confirm":
            assert self._form.spec.confirm is not None
            return self._say(self._form.spec.confirm, self._template_values())
        assert isinstance(asking, SlotSpec)
        if asking.type in ("card", "account") and asking.choice is not None:
            sep = "，" if self.lang == "zh" else ", "
            choices = sep.join(
                self._fill(asking.choice, {"key": str(i), "kind": self._label(o.kind), "last4": o.last4})
                for i, o in enumerate(self._form.choices, 1)
            )
            return self._say(asking.prompt, {"choices": choices})
        return self._say(asking.prompt)

    def _ask(self, says: list[Say]) -> list[Action]:
        """Asks the next question of the form, or confirms, or runs it when everything is known."""
        form = self._form
        assert form is not None
        if self._verifying is None:
            try:
                self._fill_record_slots(form)
            except BankError as exc:
                self._log.info("bank refused %s: %s (%s)", form.spec.operation, exc.code, exc)
                return self._bank_refused(exc, says)
            except Exception:
                self._log.exception("bank records for %s could not be read", form.intent)
                return self._bank_unavailable()
        if self._verifying is None and form.index >= len(form.spec.slots):
            if form.spec.confirm is not None and not form.confirming:
                form.confirming = True
            elif not form.confirming or form.confirmed:
                return self._run_form(says)
            else:
                form.confirming = True
        self._digits = ""
        return self._speak_and_listen([*says, self._question()])

    def _form_key(self, digit: str) -> list[Action]:
        asking = self._asking()
        if self._collects_digits():
            if digit.isdigit() and len(digit) == 1:
                self._digits += digit
                if len(self._digits) >= self._digits_max():
                    self._hash_after_full_entry = True
                    return self._digits_done()
                return [self._listen()]  # keep collecting, quietly
            if digit == "#":
                return self._digits_done() if self._digits else self._form_no_match()
            if digit == "*":
                self._record("caller", "[key *]")
                return self._go_back()
            self._record("caller", "[key]")
            return self._form_no_match()
        self._record("caller", f"[key {digit[:8]}]")
        if digit == "*":
            return self._go_back()
        if asking == "confirm" or (isinstance(asking, SlotSpec) and asking.type == "yes_no"):
            if digit in ("1", "2"):
                return self._accept("yes" if digit == "1" else "no")
        elif isinstance(asking, SlotSpec) and digit in asking.options:
            return self._accept(asking.options[digit].value)
        elif (
            isinstance(asking, SlotSpec)
            and asking.type in ("card", "account")
            and self._form is not None
            and digit in "123456789"
            and int(digit) <= len(self._form.choices)
        ):
            return self._accept(self._form.choices[int(digit) - 1].value)
        target = self.flow.config.dtmf.get("0") if digit == "0" else None
        if target is not None:  # 0 for a person works everywhere
            self._drop_form()
            return self._run_intent(target, 1.0)
        return self._form_no_match(self.flow.config.prompts.unknown_key)

    def _digits_done(self) -> list[Action]:
        keyed, self._digits = self._digits, ""
        asking = self._asking()
        if asking == "number":
            self._record("caller", "[card or account number entered]")
        elif asking == "pin":
            self._record("caller", "[PIN entered]")
        elif isinstance(asking, SlotSpec) and asking.secret:
            self._record("caller", f"[{asking.name} entered]")
        else:
            self._record("caller", f"[keys {_mask(keyed)}]")
        self._log.info("keypad entry complete (%d digits)", len(keyed))
        return self._accept(keyed)

    def _form_text(self, text: str, confidence: float) -> list[Action]:
        asking = self._asking()
        if asking == "confirm" and self._form is not None:
            fix = self._slot_correction(self._form, text)
            if fix is not None:  # "no, the credit card": change it and confirm again
                name, fixed = fix
                self._log.info("caller changes %s before confirming", name)
                self._form.values[name] = fixed
                self._form.auto.discard(name)
                return self._speak_and_listen([self._question()])
        escape = self._escape_intent(text, strict=isinstance(asking, SlotSpec) and asking.type == "text")
        if confidence < self.flow.config.nlu.min_asr_confidence:
            return self._form_no_match()
        value = self._spoken_value(asking, text)
        if value is not None and escape is None:
            return self._accept(value)
        if escape is not None:
            return self._run_escape(escape)
        return self._form_no_match()

    def _secret_speech(self, text: str) -> list[Action]:
        spoke_digits = _entity(text, self.lang, "digits") or _entity(text, self.lang, "number")
        escape = None if spoke_digits else self._escape_intent(text, strict=True)
        if escape is not None:
            return self._run_escape(escape)
        self._digits = ""
        return self._speak_and_listen([self._say(self._verification().keypad_only), self._question()])

    def _escape_intent(self, text: str, strict: bool) -> str | None:
        """An intent that leaves or steers the form (agent, goodbye, repeat, go back), if clearly meant."""
        result = self.engine.nlu.interpret(text)
        if result.intent is None or result.intent.startswith(FAQ_PREFIX):
            return None
        spec = self.flow.config.intents[result.intent]
        if not isinstance(spec, TransferIntent | HangupIntent | RepeatIntent | GoBackIntent):
            return None
        if isinstance(spec, HangupIntent) and self._asking() in ("confirm",):
            return None  # "no" at a confirmation is an answer, not a goodbye
        if strict and result.confidence < 0.6:
            return None
        return result.intent

    def _run_escape(self, name: str) -> list[Action]:
        spec = self.flow.config.intents[name]
        self._log.info("caller leaves the question: %s", name)
        if isinstance(spec, GoBackIntent):
            return [Understood(name, 1.0, {}), *self._go_back()]
        if isinstance(spec, RepeatIntent):
            return [Understood(name, 1.0, {}), *self._repeat(name, spec)]
        self._drop_form()
        return self._run_intent(name, 1.0)

    def _spoken_value(self, asking: SlotSpec | str | None, text: str) -> str | None:
        kind = "yes_no" if asking == "confirm" else asking.type if isinstance(asking, SlotSpec) else "digits"
        if kind == "text":
            return text.strip()
        if kind in ("card", "account") and self._form is not None:
            matches = _match_options(self._form.choices, text, self.lang, kind)
            return matches[0].value if matches is not None and len(matches) == 1 else None
        if kind == "period":
            found = entities.period(text, self.lang, self.today)
            return _period_value(found) if found is not None else None
        if kind == "choice":
            assert isinstance(asking, SlotSpec)
            said = normalize(text)
            for option in asking.options.values():
                for example in option.examples.get(self.lang, []) + [e for v in option.examples.values() for e in v]:
                    if normalize(example) and normalize(example) in said:
                        return option.value
            return None
        entity = _entity(text, self.lang, kind)
        if entity is None:
            return None
        if kind == "yes_no":
            return "yes" if entity.value else "no"
        if kind == "amount":
            value = entity.value[0] if isinstance(entity.value, tuple) else entity.value
            return str(value)
        return str(entity.value)

    def _accept(self, value: str) -> list[Action]:
        asking = self._asking()
        form = self._form
        assert form is not None
        if asking == "number":
            ver = self._verification()
            if not ver.min_number_digits <= len(value) <= ver.max_number_digits or not value.isdigit():
                return self._form_no_match(self._bank_text("invalid"))
            self._number, self._verifying = value, "pin"
            return self._ask([])
        if asking == "pin":
            return self._check_pin(value)
        if asking == "confirm":
            if value == "yes":
                form.confirmed = True
                return self._run_form([])
            if value == "no":
                self._log.info("caller cancelled %s at the confirmation", form.intent)
                self._drop_form()
                return self._speak_and_listen(
                    [self._say(self._bank_text("cancelled")), self._say(self.flow.config.prompts.anything_else)]
                )
            return self._form_no_match(self._bank_text("confirm_again"))
        assert isinstance(asking, SlotSpec)
        checked = _validate(asking, value)
        if checked is None:
            self._log.info("slot %s: value not accepted", asking.name)
            return self._form_no_match(self._bank_text("invalid"))
        form.values[asking.name] = checked
        form.index += 1
        self._no_match = 0
        return self._ask([])

    def _check_pin(self, pin: str) -> list[Action]:
        number, self._number = self._number, ""
        self._verifying = None
        ver = self._verification()
        bank = self.engine.bank
        if bank is None:
            return self._bank_unavailable()
        try:
            result = bank.verify(number, pin)
        except Exception:
            self._log.exception("verification failed in the bank adapter")
            return self._bank_unavailable()
        if result.ok and result.customer is not None:
            self.customer = result.customer
            self._verify_failures = 0
            self._log.info("caller verified as customer %d", result.customer.id)
            name = result.customer.name_zh if self.lang == "zh" else result.customer.name
            return self._ask([self._say(ver.verified, {"name": name})])
        self._verify_failures += 1
        self._log.info("verification failed (%d of %d)", self._verify_failures, ver.max_attempts)
        if result.locked or self._verify_failures >= ver.max_attempts:
            self._drop_form()
            self.outcome = "transferred"
            return self._transfer_to(None, ver.reason, "verification", ver.locked)
        self._verifying = "number"
        return self._ask([self._say(ver.wrong)])

    def _form_no_match(self, prompt: dict[str, str] | None = None) -> list[Action]:
        self._no_match += 1
        self._digits = ""
        spec = self.flow.config.no_match
        understood = Understood(NO_MATCH, 0.0, {})
        if self._no_match > spec.max_reprompts:
            self._drop_form()
            return [understood, *self._give_up(spec.then, spec.reason, "no_match")]
        prompts = self.flow.config.prompts.no_match
        text = prompt or prompts[min(self._no_match, len(prompts)) - 1]
        return [understood, *self._speak_and_listen([self._say(text), self._question()])]

    def _go_back(self) -> list[Action]:
        """One step back in the form; before its first question, back to the main menu."""
        form = self._form
        self._digits = ""
        if form is None:
            return self._go_back_to_menu()
        if self._verifying == "pin":
            self._verifying, self._number = "number", ""
            return self._ask([])
        if self._verifying == "number" or (form.index == 0 and not form.confirming):
            self._drop_form()
            return self._go_back_to_menu()
        form.confirming = False
        while True:
            form.index -= 1
            if form.index < 0:  # every earlier question was answered without asking: back to the menu
                self._drop_form()
                return self._go_back_to_menu()
            name = form.spec.slots[form.index].name
            form.values.pop(name, None)
            if name not in form.auto:
                break
            form.preset.pop(name, None)
            form.hint = ""
        self._log.info("going back to %s", form.spec.slots[form.index].name)
        return self._ask([])

    def _go_back_to_menu(self) -> list[Action]:
        self._menu = None
        spec = next((i for i in self.flow.config.intents.values() if isinstance(i, GoBackIntent)), None)
        text = spec.say if spec is not None else self.flow.config.prompts.anything_else
        return self._speak_and_listen([self._say(text)])

    def _drop_form(self) -> None:
        self._form, self._verifying, self._number, self._digits = None, None, "", ""

    def _run_form(self, says: list[Say]) -> list[Action]:
        form = self._form
        assert form is not None
        spec, bank = form.spec, self.engine.bank
        if bank is None:
            return self._bank_unavailable()
        ctx = OpContext(bank, self.customer, dict(form.values), self.lang, self._label,
                        self.engine.complaint_classifier)
        try:
            answer = OPERATIONS[spec.operation](ctx)
        except BankError as exc:
            self._log.info("bank refused %s: %s (%s)", spec.operation, exc.code, exc)
            if exc.code == "no_risk_level" and spec.first is not None:
                first = self.flow.config.intents[spec.first]
                assert isinstance(first, BankIntent)
                return self._start_form(spec.first, first, resume=form.intent, says=says)
            return self._bank_refused(exc, says)
        except Exception:
            self._log.exception("bank operation %s failed", spec.operation)
            return self._bank_unavailable()
        self.customer = ctx.customer
        self._drop_form()
        self.outcome = "answered"
        values = {**self._display_values(form), **answer.values}
        if self.customer is not None:
            values.setdefault("name", self.customer.name_zh if self.lang == "zh" else self.customer.name)
        if spec.item is not None:
            sep = "；" if self.lang == "zh" else "; "
            values["items"] = sep.join(self._fill(spec.item, item) for item in answer.items)
        out = [*says, self._say(spec.say, values)]
        if spec.empty is not None and spec.item is not None and not answer.items:
            out = [*says, self._say(spec.empty, values)]
        if spec.disclosure is not None:
            out.append(self._say(spec.disclosure, values))
        understood = Understood(form.intent, 1.0, {**_public_slots(spec, form.values), **answer.record})
        self._log.info("%s done", spec.operation)
        if form.resume is not None:
            resume = self.flow.config.intents[form.resume]
            assert isinstance(resume, BankIntent)
            return [understood, *self._start_form(form.resume, resume, resume=None, says=out)]
        self._last_done = form
        return [understood, *self._speak_and_listen([*out, self._say(self.flow.config.prompts.anything_else)])]

    def _bank_refused(self, exc: BankError, says: list[Say]) -> list[Action]:
        self._drop_form()
        errors = self._bank_errors()
        text = errors.get(exc.code) or errors["unavailable"]
        return self._speak_and_listen([*says, self._say(text), self._say(self.flow.config.prompts.anything_else)])

    # ---- slots from the bank's records: which card, which account, which period ----------

    def _fill_record_slots(self, form: _Form) -> None:
        """Fills card / account / period slots the caller already named, or that have one possible value."""
        form.choices = []
        while not form.confirming and form.index < len(form.spec.slots):
            slot = form.spec.slots[form.index]
            if slot.type not in RECORD_SLOT_TYPES:
                return
            value = self._resolve(slot, form)
            if value is None:
                return  # ask the caller
            self._log.info("slot %s filled from %s", slot.name, "what was said" if form.hint else "the records")
            form.values[slot.name] = value
            form.auto.add(slot.name)
            form.index += 1

    def _resolve(self, slot: SlotSpec, form: _Form) -> str | None:
        if slot.type != "period":  # kept for corrections, also when the value is already known
            form.options[slot.name] = self._record_options(slot)
        if slot.name in form.preset:
            return form.preset[slot.name]
        if slot.type == "period":
            found = entities.period(form.hint, self.lang, self.today) if form.hint else None
            if found is not None:
                return _period_value(found)
            return "" if not slot.required else None
        options = form.options[slot.name]
        matches = _match_options(options, form.hint, self.lang, slot.type) if form.hint else None
        if matches is not None and len(matches) == 1:
            return matches[0].value
        if not matches:
            if len(options) == 1:
                return options[0].value
            if matches is None and not slot.required:
                return ""  # named none: all of them
        form.choices = matches or options
        return None

    def _record_options(self, slot: SlotSpec) -> list[_Option]:
        bank, customer = self.engine.bank, self.customer
        if bank is None or customer is None:
            raise BankError("unavailable", f"slot {slot.name} needs a verified caller and the bank")
        if slot.type == "card":
            cards = [_Option(c.last4, c.kind) for c in bank.cards(customer.id) if c.status in slot.statuses]
            if not cards:  # activation (inactive cards only): "no new card waiting", not "no such card"
                code = "no_inactive_card" if set(slot.statuses) == {"inactive"} else "card_not_found"
                raise BankError(code, "no card of the caller's fits")
            return cards
        accounts = [_Option(a.last4, a.kind) for a in bank.accounts(customer.id)]
        if not accounts:
            raise BankError("not_found", "the caller has no account")
        return accounts

    def _slot_correction(self, form: _Form, text: str) -> tuple[str, str] | None:
        """A card, account or period the caller now names instead of the one the form holds."""
        for slot in form.spec.slots:
            if slot.type == "period":
                found = entities.period(text, self.lang, self.today)
                value = _period_value(found) if found else None
            elif slot.type in ("card", "account"):
                matches = _match_options(form.options.get(slot.name, []), text, self.lang, slot.type)
                value = matches[0].value if matches is not None and len(matches) == 1 else None
            else:
                continue
            if value is not None and value != form.values.get(slot.name):
                return slot.name, value
        return None

    def _correction(self, text: str, intent: str | None) -> list[Action] | None:
        """Right after a bank answer, "no, the savings one" / "上个月的呢" runs it again with that changed."""
        done = self._last_done
        if done is None:
            return None
        if intent is not None and intent != done.intent and not _FOLLOW_ON.search(text):
            return None  # another request ("block my credit card", "bye, see you tomorrow"), not a correction
        fix = self._slot_correction(done, text)
        if fix is None:
            return None
        name, value = fix
        self._log.info("caller corrects %s: %s", done.intent, name)
        self._no_match, self.last_intent, self._last_done = 0, done.intent, None
        preset = {**done.values, name: value}
        return [Understood(done.intent, 1.0, {}), *self._start_form(done.intent, done.spec, None, preset=preset)]

    def _bank_unavailable(self) -> list[Action]:
        self._drop_form()
        text = self._bank_errors().get("unavailable")
        return self._transfer_to(None, "bank records unavailable", self.last_intent or "bank", text)

    def _bank_errors(self) -> dict[str, dict[str, str]]:
        return self.flow.config.bank.errors if self.flow.config.bank else {}

    def _bank_text(self, name: str) -> dict[str, str]:
        assert self.flow.config.bank is not None
        text: dict[str, str] = getattr(self.flow.config.bank, name)
        return text

    def _label(self, value: str) -> str:
        labels = self.flow.config.bank.labels if self.flow.config.bank else {}
        text = labels.get(value)
        return (text.get(self.lang) or next(iter(text.values()))) if text else value

    def _template_values(self) -> dict[str, str]:
        form = self._form
        return self._display_values(form) if form is not None else {}

    def _display_values(self, form: _Form) -> dict[str, str]:
        out: dict[str, str] = {}
        for slot in form.spec.slots:
            value = form.values.get(slot.name)
            if value is None:
                continue
            if slot.secret:
                out[slot.name] = "****"
            elif slot.type == "digits":
                out[slot.name] = value[-4:]
            elif slot.type == "amount":
                out[slot.name] = money(Decimal(value), self.lang)
            elif slot.type in ("choice", "yes_no"):
                out[slot.name] = self._label(value)
            elif slot.type == "period":
                days = parse_period(value)
                out[slot.name] = spoken_period(*days, self.lang) if days else ""
            else:
                out[slot.name] = value
        return out

    def _fill(self, template: dict[str, str], values: dict[str, str]) -> str:
        text = template.get(self.lang) or next(iter(template.values()))
        return text.format_map(_Blank(values))

    # ---- helpers ------------------------------------------------------------------------

    def _knowledge_fallback(self, text: str) -> list[Action] | None:
        hits = self.flow.knowledge.search(text, lang=self.lang, k=1)
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
        announcement = self._say(say or cfg.announcement)
        self.outcome = "transferred"
        # The context is built after the announcement is recorded so the agent sees it too.
        self._record("bot", announcement.text)
        context: dict[str, Any] = {
            "call_id": self.call_id,
            "caller": self.caller,
            "intent": intent,
            "reason": reason,
            "language": self.lang,
            "history": [dict(line) for line in self.history],
        }
        needs, relax, priority = self._routing_hints()
        if not queue:
            topic = self._topic()
            queue = cfg.queue_by_intent.get(topic, cfg.queue) if topic else cfg.queue
        context["routing"] = {"needs": dict(needs), "priority": priority}
        self._log.info("transfer to %s: %s (intent %s; needs %s, priority %d)", queue, reason, intent,
                       ",".join(f"{k}:{v}" for k, v in needs.items()) or "none", priority)
        return self._end([announcement], Transfer(queue, reason, context, needs, relax, priority), record=False)

    def _topic(self) -> str | None:
        """The latest intent the caller asked for that the flow routes by (`transfer.skills`/`queue_by_intent`)."""
        cfg = self.flow.config.transfer
        return next((i for i in reversed(self._asked) if i in cfg.skills or i in cfg.queue_by_intent), None)

    def _routing_hints(self) -> tuple[dict[str, int], tuple[str, ...], int]:
        """Skills for this caller (product of the topic, then language) with the order to relax them, and the
        priority of the verified customer's segment."""
        cfg = self.flow.config.transfer
        topic = self._topic()
        product = dict(cfg.skills.get(topic, {})) if topic else {}
        needs = dict(product)
        relax = list(product)
        if cfg.language_skill:
            needs[self.lang] = max(needs.get(self.lang, 0), cfg.language_level)
            if self.lang not in relax:
                relax.append(self.lang)
        priority = cfg.priority_by_segment.get(self.customer.segment, 0) if self.customer is not None else 0
        return needs, tuple(relax), priority

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
        return [*says, self._listen()]

    def _listen(self) -> Listen:
        listen = self.flow.config.listen
        if self._collects_digits():
            return Listen(listen.timeout_s, self._digits_max(), secret=self._secret_now())
        return Listen(listen.timeout_s, listen.digits_max)

    def _say(self, text: dict[str, str], values: dict[str, str] | None = None) -> Say:
        lang = self.lang if self.lang in text else next(iter(text))
        if values is None:
            return Say(text[lang], lang)
        return Say(text[lang].format_map(_Blank(values)), lang)

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


class _Form:
    """A bank intent in progress: the slots known so far, and where in it the caller is."""

    def __init__(
        self,
        intent: str,
        spec: BankIntent,
        values: dict[str, str],
        resume: str | None,
        hint: str = "",
        preset: dict[str, str] | None = None,
    ) -> None:
        self.intent = intent
        self.spec = spec
        self.values = values
        self.hint = hint  # what the caller said when asking for it ("block my credit card")
        self.preset = dict(preset or {})  # slot values known before asking (a correction)
        self.auto: set[str] = set()  # slots filled without a question
        self.options: dict[str, list[_Option]] = {}  # card/account slot -> the caller's cards/accounts
        self.choices: list[_Option] = []  # what the current card/account question offers
        self.index = 0
        self.confirming = False
        self.confirmed = False
        self.resume = resume  # intent to go on with once this one is done (recommendation after risk check)


def _period_value(found: entities.Entity) -> str:
    """A period entity as a period slot's value: "2026-11-01..2026-11-30"."""
    start, end = cast(tuple[date, date], found.value)
    return f"{start.isoformat()}..{end.isoformat()}"


@dataclass(frozen=True)
class _Option:
    """One of the caller's cards or accounts, offered for a card/account slot; `value` is its last four digits."""

    value: str
    kind: str  # debit, credit / current, savings, credit

    @property
    def last4(self) -> str:
        return self.value


# entity account types -> the bank's kinds, for accounts and for cards (a savings card, 储蓄卡, is a debit card)
_ACCOUNT_KINDS = {"checking": "current", "savings": "savings", "credit": "credit", "debit": "current"}
_CARD_KINDS = {"checking": "debit", "savings": "debit", "credit": "credit", "debit": "debit"}
# "no, the savings one", "what about March", 信用卡的呢, 不是这张: about the answer just given
_FOLLOW_ON = re.compile(
    r"^\W*(?:no|nope|not|and|what about|how about|i meant?|i said|rather|only|just)\b|^\W*the\b.*\bone\b"
    r"|呢\W*$|^\W*(?:不是|不对|那|我是说|我说的是|只要|只查)",
    re.I,
)
_CURRENT = re.compile(r"\bcurrent\b|\bmain\s+account|活期|工资卡", re.I)


def _match_options(options: list[_Option], text: str, lang: str, slot_type: str) -> list[_Option] | None:
    """The options `text` names: by last digits ("ending 7788", 尾号7788), else by kind ("the credit
    one", 储蓄卡); None when it names neither."""
    if not text:
        return None
    found = entities.extract(text, lang)
    digits = {str(e.value)[-4:] for e in found if e.kind == "digits" and len(str(e.value)) >= 4}
    if digits:
        return [o for o in options if o.last4 in digits]
    table = _CARD_KINDS if slot_type == "card" else _ACCOUNT_KINDS
    kinds = {table[e.value] for e in found if e.kind == "account_type" and e.value in table}
    if _CURRENT.search(text):
        kinds.add("debit" if slot_type == "card" else "current")
    if kinds:
        return [o for o in options if o.kind in kinds]
    return None


class _Blank(dict[str, str]):
    """format_map values: a placeholder without a value reads as nothing rather than failing mid-call."""

    def __missing__(self, key: str) -> str:
        return ""


def _mask(digits: str) -> str:
    """Long digit strings (account numbers) keep only their last four in transcripts."""
    return digits if len(digits) < 8 else "*" * (len(digits) - 4) + digits[-4:]


def _validate(slot: SlotSpec, value: str) -> str | None:
    if slot.type == "digits":
        value = "".join(value.split())
        return value if value.isdigit() and slot.min_digits <= len(value) <= slot.max_digits else None
    if slot.type == "amount":
        try:
            amount = Decimal(value)
        except ArithmeticError:
            return None
        if not amount.is_finite() or not slot.min_amount <= amount <= slot.max_amount:
            return None
        return str(amount.quantize(Decimal("0.01")))
    if slot.type == "yes_no":
        return value if value in ("yes", "no") else None
    if slot.type in ("card", "account"):
        return value if value == "" or (value.isdigit() and len(value) == 4) else None
    if slot.type == "period":
        return value if value == "" or parse_period(value) is not None else None
    if slot.type == "choice":
        return value if value in {o.value for o in slot.options.values()} else None
    return value[:2000] if value.strip() else None


def _public_slots(spec: BankIntent, values: dict[str, str]) -> dict[str, str]:
    """Slots for records and events: never a secret, long numbers masked."""
    out = {}
    for slot in spec.slots:
        if slot.secret or slot.name not in values:
            continue
        value = values[slot.name]
        out[slot.name] = _mask(value) if slot.type == "digits" else value[:200]
    return out


def _entity(text: str, lang: str, kind: str) -> Any:
    """`dialog.entities.first` when that module is there; else ASCII digits and a few yes/no words."""
    try:
        from dialog import entities
    except ImportError:
        entities = None  # type: ignore[assignment]
    if entities is not None:
        return entities.first(text, lang, kind)
    said = normalize(text)
    if kind == "yes_no":
        for word, value in (("yes", True), ("no", False), ("是", True), ("不", False), ("对", True)):
            if word in said.split() or (lang == "zh" and said.startswith(word)):
                return _Found(value)
        return None
    digits = "".join(ch for ch in said if ch.isdigit())
    return _Found(digits) if digits else None


class _Found:
    def __init__(self, value: Any) -> None:
        self.value = value


_Handler = Callable[[Conversation, str, Any], list[Action]]
_HANDLERS: dict[type, _Handler] = {
    MenuIntent: Conversation._menu_intent,
    GoBackIntent: Conversation._go_back_intent,
    BankIntent: Conversation._bank_intent,
    TransferIntent: Conversation._transfer,
    HangupIntent: Conversation._hangup,
    RepeatIntent: Conversation._repeat,
    SetLanguageIntent: Conversation._set_language,
    SayIntent: Conversation._say_intent,
}
