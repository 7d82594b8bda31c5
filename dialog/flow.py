"""The flow file (configs/flows/*.yaml): its schema, its checks and `load_flow`."""

from __future__ import annotations

import logging
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
    knowledge_fallback_threshold: float = Field(default=0.6, gt=0.0, le=1.0)


class ListenSpec(_Strict):
    timeout_s: float = Field(default=6.0, gt=0.0, le=60.0)
    digits_max: int = Field(default=1, ge=1, le=32)


class RetrySpec(_Strict):
    max_reprompts: int = Field(ge=0, le=10)
    then: Literal["transfer", "hangup"] = "transfer"
    reason: str = Field(min_length=1)


class TransferSpec(_Strict):
    queue: str = Field(pattern=QUEUE_PATTERN)
    announcement: LangText


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


IntentSpec = Annotated[
    TransferIntent | HangupIntent | RepeatIntent | SetLanguageIntent | SayIntent,
    Field(discriminator="action"),
]


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
        say = getattr(intent, "say", None)
        if say is not None:
            problems += _lang_map_problems(doc, ("intents", name, "say"), say, offered)
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
