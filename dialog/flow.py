"""The flow file (configs/flows/*.yaml): its schema, its checks and `load_flow`."""

from __future__ import annotations

import logging
import string
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from dialog.config_file import ConfigProblem, FlowConfigError, Loc, YamlDocument, read_yaml
from dialog.knowledge import ID_PATTERN, KnowledgeBase, KnowledgeEntry, load_knowledge
from dialog.nlu import TrainingExample
from dialog.text_features import normalize, tidy_spoken

log = logging.getLogger(__name__)

FAQ_PREFIX = "faq:"
DTMF_KEYS = frozenset("0123456789*#ABCD")
LANG_PATTERN = r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$"
QUEUE_PATTERN = r"^[a-z][a-z0-9_-]*$"

LangText = dict[str, Annotated[str, AfterValidator(tidy_spoken)]]
LangExamples = dict[str, list[str]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class LanguagesSpec(_Strict):
    offered: list[Annotated[str, Field(pattern=LANG_PATTERN)]] = Field(min_length=1)
    default: str
    # Answer in the caller's language when they speak one we offer (e.g. Chinese after an English greeting).
    follow_caller: bool = True


class NluSpec(_Strict):
    threshold: float = Field(default=0.35, gt=0.0, lt=1.0)
    max_text_chars: int = Field(default=300, ge=20, le=5000)
    # ASR results below this confidence are treated as not understood.
    min_asr_confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    # When no intent clears the threshold, answer from the knowledge base if a search scores this high.
    knowledge_fallback_threshold: float = Field(default=0.4, gt=0.0, le=1.0)


class ListenSpec(_Strict):
    timeout_s: float = Field(default=6.0, gt=0.0, le=60.0)
    digits_max: int = Field(default=1, ge=1, le=32)


class RetrySpec(_Strict):
    max_reprompts: int = Field(ge=0, le=10)
    then: Literal["transfer", "hangup"] = "transfer"
    reason: str = Field(min_length=1)


SKILL_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"  # as routing names skills (routing.distributor.check_name)
SkillLevels = dict[Annotated[str, Field(pattern=SKILL_PATTERN)], Annotated[int, Field(ge=1, le=10, strict=True)]]


class TransferSpec(_Strict):
    queue: str = Field(pattern=QUEUE_PATTERN)
    announcement: LangText
    # The caller's language (en, zh) is a skill the agent needs (`language_level`); dropped last when unstaffed.
    language_skill: bool = True
    language_level: int = Field(default=1, ge=1, le=10)
    # What the caller asked about (the latest such intent, e.g. block_card or faq:lost_card) -> product skills
    skills: dict[str, SkillLevels] = Field(default_factory=dict)
    # ... and which queue takes it (an intent's own `queue` wins); others go to `queue`
    queue_by_intent: dict[str, Annotated[str, Field(pattern=QUEUE_PATTERN)]] = Field(default_factory=dict)
    # The verified customer's segment (the bank's records) -> queue priority; unverified callers get 0
    priority_by_segment: dict[str, Annotated[int, Field(ge=-100, le=100, strict=True)]] = Field(default_factory=dict)


class Prompts(_Strict):
    greeting: LangText
    # Spoken in the *other* language(s) after the greeting, e.g. "中文服务请按9".
    language_offer: LangText = Field(default_factory=dict)
    language_switched: LangText
    anything_else: LangText
    no_input: list[LangText] = Field(min_length=1)
    no_match: list[LangText] = Field(min_length=1)
    unknown_key: LangText
    goodbye: LangText


class _IntentBase(_Strict):
    examples: LangExamples


class TransferIntent(_IntentBase):
    action: Literal["transfer"]
    reason: str = Field(min_length=1)
    queue: str | None = Field(default=None, pattern=QUEUE_PATTERN)
    say: LangText | None = None


class HangupIntent(_IntentBase):
    action: Literal["hangup"]
    reason: str = "goodbye"
    say: LangText | None = None


class RepeatIntent(_IntentBase):
    action: Literal["repeat"]


class SetLanguageIntent(_IntentBase):
    action: Literal["set_language"]
    language: str


class SayIntent(_IntentBase):
    action: Literal["say"]
    say: LangText


class MenuIntent(_IntentBase):
    """A keypad sub-menu: says `say`, then the next key is looked up in `options` (then in `dtmf`)."""

    action: Literal["menu"]
    say: LangText
    options: dict[str, str] = Field(min_length=1)

    @field_validator("options", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


class GoBackIntent(_IntentBase):
    """One step back: the previous question of a form, or from a sub-menu to the main menu (`say`)."""

    action: Literal["go_back"]
    say: LangText


SLOT_TYPES = ("digits", "amount", "choice", "yes_no", "text", "card", "account", "period")
# Slots whose possible values come from the bank's records (the caller's cards, accounts) or the calendar.
RECORD_SLOT_TYPES = ("card", "account", "period")


CardStatus = Literal["active", "inactive", "blocked"]
USABLE_CARD_STATUSES: tuple[CardStatus, ...] = ("active", "inactive")


class ChoiceOption(_Strict):
    value: str = Field(min_length=1)
    examples: LangExamples = Field(default_factory=dict)


class SlotSpec(_Strict):
    """One question of a form: what is asked, how it may be answered, and what is accepted."""

    name: str = Field(pattern=ID_PATTERN)
    type: Literal["digits", "amount", "choice", "yes_no", "text", "card", "account", "period"]
    prompt: LangText  # card / account: may use {choices}, the caller's cards or accounts as `choice` lists them
    reprompt: LangText | None = None
    min_digits: int = Field(default=1, ge=1, le=32)
    max_digits: int = Field(default=19, ge=1, le=32)
    min_amount: float = Field(default=0.01, gt=0)
    max_amount: float = Field(default=1_000_000_000, gt=0)
    # choice (and text, as its keypad alternative): key -> option
    options: dict[str, ChoiceOption] = Field(default_factory=dict)
    secret: bool = False  # keyed only, masked in transcripts and logs, recording paused
    # card / account / period: false = left empty when the caller named none (all accounts, the latest
    # transactions) instead of asking; a card or account is still asked when what was named fits several.
    required: bool = True
    # card / account: one of the caller's cards or accounts in {choices}: {key}, {kind}, {last4}
    choice: LangText | None = None
    # card: which cards may be chosen, by status (active, inactive, blocked)
    statuses: list[CardStatus] = Field(default_factory=lambda: list(USABLE_CARD_STATUSES))

    @field_validator("options", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


class BankIntent(_IntentBase):
    """Looks up or changes the bank's records: optional verification, slots, confirmation, then `say`."""

    action: Literal["bank"]
    operation: Literal[
        "balance",
        "transactions",
        "block_card",
        "report_lost",
        "activate_card",
        "transfer",
        "credit_card_bill",
        "repay",
        "risk_assessment",
        "recommend",
        "complaint",
        "complaint_status",
    ]
    verify: bool = True
    slots: list[SlotSpec] = Field(default_factory=list)
    confirm: LangText | None = None  # read back before acting; keys 1 = yes, 2 = no
    say: LangText  # the answer, with {fields} filled in from the bank's reply
    item: LangText | None = None  # one row of a list ({items} in `say`)
    disclosure: LangText | None = None  # said after the answer (e.g. the risk disclosure)
    empty: LangText | None = None  # said instead of `say` when a list answer has no rows (no transactions)
    first: str | None = None  # intent to run first when the bank says it is needed (risk assessment)


IntentSpec = Annotated[
    TransferIntent
    | HangupIntent
    | RepeatIntent
    | SetLanguageIntent
    | SayIntent
    | MenuIntent
    | GoBackIntent
    | BankIntent,
    Field(discriminator="action"),
]


class VerificationSpec(_Strict):
    """Caller verification: card or account number, then PIN, both on the keypad."""

    max_attempts: int = Field(default=3, ge=1, le=10)
    min_number_digits: int = Field(default=8, ge=4, le=19)
    max_number_digits: int = Field(default=19, ge=4, le=19)
    pin_digits: int = Field(default=6, ge=4, le=12)
    ask_number: LangText
    ask_pin: LangText
    wrong: LangText
    locked: LangText
    verified: LangText  # may use {name}
    keypad_only: LangText  # said when the caller speaks a secret instead of keying it
    reason: str = "verification failed"


class FollowUpSpec(_Strict):
    """Said after a knowledge answer instead of "anything else?", with keys that lead on."""

    say: LangText
    options: dict[str, str] = Field(min_length=1)

    @field_validator("options", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


class BankSpec(_Strict):
    """Texts for everything that talks to the bank's records."""

    verification: VerificationSpec
    confirm_again: LangText  # when the answer to a confirmation is neither yes nor no
    cancelled: LangText
    invalid: LangText  # a slot value that does not pass validation
    errors: dict[str, LangText]  # BankError code -> what the caller hears; "unavailable" is required
    labels: dict[str, LangText] = Field(default_factory=dict)  # values read out: account kinds, statuses
    complaint_categories: dict[str, LangExamples] = Field(default_factory=dict)


class FlowConfig(_Strict):
    version: int = Field(ge=1, le=1)
    name: str = Field(min_length=1)
    languages: LanguagesSpec
    knowledge: list[str] = Field(default_factory=list)
    nlu: NluSpec = NluSpec()
    listen: ListenSpec = ListenSpec()
    no_input: RetrySpec
    no_match: RetrySpec
    transfer: TransferSpec
    prompts: Prompts
    intents: dict[Annotated[str, Field(pattern=ID_PATTERN)], IntentSpec] = Field(min_length=1)
    dtmf: dict[str, str] = Field(default_factory=dict)
    bank: BankSpec | None = None
    follow_ups: dict[str, FollowUpSpec] = Field(default_factory=dict)  # faq:<id> -> what to offer next

    @field_validator("dtmf", mode="before")
    @classmethod
    def _digits_as_text(cls, value: Any) -> Any:
        # YAML reads an unquoted 1 as a number; a keypad key is a character either way.
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        return value


@dataclass(frozen=True)
class Flow:
    """A checked flow with its knowledge base loaded."""

    path: Path
    config: FlowConfig
    knowledge: KnowledgeBase

    @property
    def languages(self) -> list[str]:
        return list(self.config.languages.offered)

    def intent_names(self) -> set[str]:
        return set(self.config.intents) | {FAQ_PREFIX + e.id for e in self.knowledge.entries}

    def training_examples(self) -> list[TrainingExample]:
        """Flow intent examples plus every knowledge entry's question variants (as `faq:<id>`)."""
        out: list[TrainingExample] = []
        for name, intent in self.config.intents.items():
            for lang, texts in intent.examples.items():
                out.extend(TrainingExample(t, name, lang) for t in texts)
        for entry in self.knowledge.entries:
            for lang, texts in entry.questions.items():
                out.extend(TrainingExample(t, FAQ_PREFIX + entry.id, lang) for t in texts)
        return out


def load_flow(path: str | Path) -> Flow:
    """Read, validate and cross-check a flow file and the knowledge files it names."""
    doc = read_yaml(path)
    config = doc.validate(FlowConfig)
    problems = _check_languages(doc, config)
    if problems:  # every later check depends on the offered languages
        raise FlowConfigError(doc.path, problems)
    entries = _load_knowledge_files(doc, config)
    problems += _check_texts(doc, config)
    problems += _check_references(doc, config, entries)
    problems += _check_duplicate_examples(doc, config, entries)
    if problems:
        raise FlowConfigError(doc.path, problems)
    flow = Flow(path=doc.path, config=config, knowledge=KnowledgeBase(entries))
    log.info(
        "loaded flow %s: %d intents, %d knowledge entries, languages %s",
        doc.path,
        len(config.intents),
        len(entries),
        ",".join(flow.languages),
    )
    return flow


def check_queues(flow: Flow, known: Collection[str]) -> None:
    """The queues `transfer.queue_by_intent` names must be queues of the server's settings (the flow alone
    cannot know them): FlowConfigError naming the flow file, line and key otherwise."""
    unknown = {k: q for k, q in flow.config.transfer.queue_by_intent.items() if q not in known}
    if not unknown:
        return
    doc = read_yaml(flow.path)
    have = ", ".join(sorted(known)) or "none"
    raise FlowConfigError(doc.path, [doc.problem(("transfer", "queue_by_intent", k), f"unknown queue {q!r} "
                                                 f"(queues in the server settings: {have})")
                                     for k, q in unknown.items()])


def _check_languages(doc: YamlDocument, config: FlowConfig) -> list[ConfigProblem]:
    langs = config.languages
    problems = []
    if len(set(langs.offered)) != len(langs.offered):
        problems.append(doc.problem(("languages", "offered"), "a language is listed twice"))
    if langs.default not in langs.offered:
        problems.append(
            doc.problem(("languages", "default"), f"{langs.default!r} is not in languages.offered {langs.offered}")
        )
    return problems


def _load_knowledge_files(doc: YamlDocument, config: FlowConfig) -> list[KnowledgeEntry]:
    entries: list[KnowledgeEntry] = []
    for i, name in enumerate(config.knowledge):
        kb_path = (doc.path.parent / name).resolve()
        if not kb_path.is_file():
            raise doc.error(("knowledge", i), f"knowledge file not found: {kb_path}")
        entries.extend(load_knowledge(kb_path, config.languages.offered))
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise doc.error(("knowledge",), f"knowledge entry id {entry.id!r} appears in more than one file")
        seen.add(entry.id)
    return entries


def _lang_map_problems(
    doc: YamlDocument, loc: Loc, mapping: dict[str, Any], offered: list[str], *, all_required: bool = True
) -> list[ConfigProblem]:
    problems = []
    for lang, value in mapping.items():
        if lang not in offered:
            problems.append(doc.problem((*loc, lang), f"language {lang!r} is not offered ({', '.join(offered)})"))
        elif not value:
            problems.append(doc.problem((*loc, lang), "is empty"))
    if all_required:
        for lang in offered:
            if lang not in mapping:
                problems.append(doc.problem((*loc, lang), f"missing the {lang!r} text"))
    return problems


def _check_texts(doc: YamlDocument, config: FlowConfig) -> list[ConfigProblem]:
    offered = config.languages.offered
    problems = _lang_map_problems(doc, ("transfer", "announcement"), config.transfer.announcement, offered)
    for name in Prompts.model_fields:
        value = getattr(config.prompts, name)
        loc: tuple[str | int, ...] = ("prompts", name)
        if isinstance(value, list):
            for i, item in enumerate(value):
                problems += _lang_map_problems(doc, (*loc, i), item, offered)
        else:
            problems += _lang_map_problems(doc, loc, value, offered, all_required=name != "language_offer")
    for name, intent in config.intents.items():
        problems += _lang_map_problems(doc, ("intents", name, "examples"), intent.examples, offered)
        for lang, texts in intent.examples.items():
            for i, text in enumerate(texts):
                if not normalize(text):
                    problems.append(doc.problem(("intents", name, "examples", lang, i), "example has no words"))
        for field in ("say", "confirm", "item", "disclosure"):
            lang_text = getattr(intent, field, None)
            if lang_text is not None:
                problems += _lang_map_problems(doc, ("intents", name, field), lang_text, offered)
        if isinstance(intent, BankIntent):
            for i, slot in enumerate(intent.slots):
                loc = ("intents", name, "slots", i)
                problems += _lang_map_problems(doc, (*loc, "prompt"), slot.prompt, offered)
                if slot.reprompt is not None:
                    problems += _lang_map_problems(doc, (*loc, "reprompt"), slot.reprompt, offered)
                for key, option in slot.options.items():
                    problems += _lang_map_problems(
                        doc, (*loc, "options", key, "examples"), option.examples, offered, all_required=False
                    )
    for name, follow_up in config.follow_ups.items():
        problems += _lang_map_problems(doc, ("follow_ups", name, "say"), follow_up.say, offered)
    if config.bank is not None:
        bank = config.bank
        for field in ("confirm_again", "cancelled", "invalid"):
            problems += _lang_map_problems(doc, ("bank", field), getattr(bank, field), offered)
        for field in ("ask_number", "ask_pin", "wrong", "locked", "verified", "keypad_only"):
            text = getattr(bank.verification, field)
            problems += _lang_map_problems(doc, ("bank", "verification", field), text, offered)
        for section in ("errors", "labels"):
            for key, text in getattr(bank, section).items():
                problems += _lang_map_problems(doc, ("bank", section, key), text, offered)
        for key, examples in bank.complaint_categories.items():
            problems += _lang_map_problems(doc, ("bank", "complaint_categories", key), examples, offered)
    return problems


def _check_references(doc: YamlDocument, config: FlowConfig, entries: list[KnowledgeEntry]) -> list[ConfigProblem]:
    problems = []
    known = set(config.intents) | {FAQ_PREFIX + e.id for e in entries}
    for key, target in config.dtmf.items():
        if len(key) != 1 or key not in DTMF_KEYS:
            problems.append(doc.problem(("dtmf", key), "not a keypad key (use one of 0-9 * # A-D, quoted)"))
        if target not in known:
            hint = ", ".join(sorted(known))
            problems.append(doc.problem(("dtmf", key), f"unknown intent {target!r} (known: {hint})"))
    for name, intent in config.intents.items():
        if isinstance(intent, SetLanguageIntent) and intent.language not in config.languages.offered:
            problems.append(doc.problem(("intents", name, "language"), f"{intent.language!r} is not offered"))
        if isinstance(intent, MenuIntent):
            for key, target in intent.options.items():
                loc = ("intents", name, "options", key)
                if len(key) != 1 or key not in DTMF_KEYS:
                    problems.append(doc.problem(loc, "not a keypad key (use one of 0-9 * # A-D, quoted)"))
                if target not in known:
                    problems.append(doc.problem(loc, f"unknown intent {target!r}"))
        if isinstance(intent, BankIntent):
            problems += _check_bank_intent(doc, config, name, intent)
    for section in ("skills", "queue_by_intent"):
        for name in getattr(config.transfer, section):
            if name not in known:
                problems.append(doc.problem(("transfer", section, name), f"unknown intent {name!r}"))
    for name, follow_up in config.follow_ups.items():
        if name not in known:
            problems.append(doc.problem(("follow_ups", name), f"unknown intent {name!r}"))
        for key, target in follow_up.options.items():
            if len(key) != 1 or key not in DTMF_KEYS:
                problems.append(doc.problem(("follow_ups", name, "options", key), "not a keypad key"))
            if target not in known:
                problems.append(doc.problem(("follow_ups", name, "options", key), f"unknown intent {target!r}"))
    if config.bank is None and any(isinstance(i, BankIntent) for i in config.intents.values()):
        problems.append(doc.problem(("bank",), "required key is missing (the flow has intents with action: bank)"))
    if config.bank is not None:
        if "unavailable" not in config.bank.errors:
            problems.append(doc.problem(("bank", "errors", "unavailable"), "required key is missing"))
        ver = config.bank.verification
        if ver.min_number_digits > ver.max_number_digits:
            problems.append(doc.problem(("bank", "verification", "min_number_digits"), "is above max_number_digits"))
    return problems


# Fields each operation's answer may use in `say` / `item` (besides the slot names and {name}).
OPERATION_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "balance": ({"items", "count"}, {"kind", "last4", "balance", "available", "currency"}),
    "transactions": ({"items", "count", "period"}, {"date", "description", "amount", "direction", "last4"}),
    "block_card": ({"last4", "kind"}, set()),
    "report_lost": ({"last4", "kind", "new_last4"}, set()),
    "activate_card": ({"last4", "kind"}, set()),
    "transfer": ({"amount", "to_last4", "from_last4", "reference", "balance_after"}, set()),
    "credit_card_bill": ({"last4", "statement_balance", "minimum_payment", "due_date"}, set()),
    "repay": ({"amount", "to_last4", "from_last4", "reference", "balance_after"}, set()),
    "risk_assessment": ({"level", "level_name"}, set()),
    "recommend": ({"items", "count", "level", "level_name"}, {"product", "risk", "return_pct", "term", "minimum"}),
    "complaint": ({"ticket", "ticket_digits", "category"}, set()),
    "complaint_status": ({"ticket", "ticket_digits", "status", "category", "created"}, set()),
}


def template_fields(text: str) -> set[str]:
    return {field.split(".")[0].split("[")[0] for _, field, _, _ in string.Formatter().parse(text) if field}


def _check_bank_intent(doc: YamlDocument, config: FlowConfig, name: str, intent: BankIntent) -> list[ConfigProblem]:
    problems = []
    slot_names = [slot.name for slot in intent.slots]
    for i, slot in enumerate(intent.slots):
        loc = ("intents", name, "slots", i)
        if slot_names.count(slot.name) > 1:
            problems.append(doc.problem((*loc, "name"), f"slot {slot.name!r} appears twice"))
        if slot.type == "choice" and not slot.options:
            problems.append(doc.problem((*loc, "options"), "a choice slot needs options (key: {value: ...})"))
        if slot.type in ("card", "account") and slot.choice is None:
            problems.append(doc.problem((*loc, "choice"), f"a {slot.type} slot needs `choice` (how one is read out)"))
        for lang, text in (slot.choice or {}).items():
            unknown = template_fields(text) - {"key", "kind", "last4"}
            if unknown:
                problems.append(
                    doc.problem(
                        (*loc, "choice", lang), f"unknown placeholder {{{sorted(unknown)[0]}}} (key, kind, last4)"
                    )
                )
        if slot.min_digits > slot.max_digits:
            problems.append(doc.problem((*loc, "min_digits"), "is above max_digits"))
        if slot.min_amount > slot.max_amount:
            problems.append(doc.problem((*loc, "min_amount"), "is above max_amount"))
        for key in slot.options:
            if len(key) != 1 or key not in "0123456789":
                problems.append(doc.problem((*loc, "options", key), "option keys are single digits, quoted"))
    answer_fields, item_fields = OPERATION_FIELDS[intent.operation]
    allowed = answer_fields | set(slot_names) | {"name"}
    fields_by_text = (("say", allowed), ("confirm", allowed), ("item", item_fields), ("disclosure", allowed),
                      ("empty", allowed))
    for field, fields in fields_by_text:
        texts: dict[str, str] | None = getattr(intent, field)
        for lang, text in (texts or {}).items():
            try:
                unknown = template_fields(text) - fields
            except ValueError as exc:
                problems.append(doc.problem(("intents", name, field, lang), f"bad {{placeholder}}: {exc}"))
                continue
            if unknown:
                problems.append(
                    doc.problem(
                        ("intents", name, field, lang),
                        f"unknown placeholder {{{sorted(unknown)[0]}}} (this one may use: {', '.join(sorted(fields))})",
                    )
                )
    if intent.first is not None and intent.first not in config.intents:
        problems.append(doc.problem(("intents", name, "first"), f"unknown intent {intent.first!r}"))
    return problems


def _check_duplicate_examples(
    doc: YamlDocument, config: FlowConfig, entries: list[KnowledgeEntry]
) -> list[ConfigProblem]:
    """The same phrase under two intents makes the classifier guess; name both places."""
    owner: dict[str, str] = {}
    for entry in entries:
        for texts in entry.questions.values():
            for text in texts:
                owner.setdefault(normalize(text), f"knowledge entry {entry.id!r}")
    problems = []
    for name, intent in config.intents.items():
        for lang, texts in intent.examples.items():
            for i, text in enumerate(texts):
                key = normalize(text)
                first = owner.setdefault(key, f"intent {name!r}")
                if first != f"intent {name!r}":
                    problems.append(
                        doc.problem(("intents", name, "examples", lang, i), f"example {text!r} is also under {first}")
                    )
    return problems
