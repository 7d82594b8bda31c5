"""Keypad menus of a flow: the main menu (the flow's `dtmf:` section, what each key does from the greeting on)
and the sub-menus (intents with `action: menu`). `apply_menus` gives the flow with changed keys and words
(the console's menu page stores them: hotline/menus_live.py), checked as the flow file is: keys from the
keypad, targets the flow or the live knowledge base has, words in every offered language. `unmentioned`
lists keys a menu's words do not name (warnings for the administrator, not refusals).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from dialog.flow import DTMF_KEYS, Flow, MenuIntent

log = logging.getLogger(__name__)

MAX_WORDS = 1000  # characters of a menu's words per language (as a prompt's)
Menus = dict[str, dict[str, dict[str, str]]]  # menu name -> {"options": {key: target}, "say": {lang: text}}
MAIN = "dtmf"  # the main menu's name: the flow's dtmf section
KEY_ORDER = "123456789*0#ABCD"  # as on a phone's keypad
# How each key may be named in a menu's words (beside the character itself)
KEY_WORDS = {"*": ("star", "星号", "星键", "*"), "#": ("hash", "pound", "井号", "#")}


def menu_names(flow: Flow) -> list[str]:
    """The main menu, then the sub-menus in the flow file's order."""
    return [MAIN] + [name for name, intent in flow.config.intents.items() if isinstance(intent, MenuIntent)]


def _checked_options(name: str, options: Mapping[str, str], known: set[str], strict: bool,
                     fallback: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, target in options.items():
        if len(key) != 1 or key not in DTMF_KEYS:
            if strict:
                raise ValueError(f"{name}: {key!r} is not a keypad key (0-9 * # A-D)")
            log.warning("menu %s: %r is not a keypad key: left out", name, key)
            continue
        if target not in known:
            if strict:
                raise ValueError(f"{name}: key {key}: unknown target {target!r}")
            log.warning("menu %s: key %s leads to %r, which neither the flow nor the live knowledge base has now: "
                        "key left out (change it on the menus page)", name, key, target)
            continue
        out[key] = target
    if not out:
        if strict:
            raise ValueError(f"{name}: a menu needs at least one key")
        log.warning("menu %s: no changed key is usable now: the configuration file's keys are used", name)
        return dict(fallback)
    return dict(sorted(out.items(), key=lambda kv: KEY_ORDER.index(kv[0])))


def apply_menus(flow: Flow, menus: Menus, known: set[str] | None = None, *, strict: bool = True) -> Flow:
    """The flow with these menu changes (ValueError naming the menu and key); `known`: the targets a key may
    lead to (default: the flow's intents and its own knowledge entries). Changes to a menu the flow no longer
    has are ignored with a warning (the flow file changed under them). Not `strict` (stored changes going
    live): a key whose target is gone since it was saved (a knowledge-base publish without that entry) is left
    out with a warning instead of refusing every stored change."""
    if not menus:
        return flow
    known = flow.intent_names() if known is None else known
    intents = dict(flow.config.intents)
    dtmf = dict(flow.config.dtmf)
    for name, change in menus.items():
        options = change.get("options")
        if name == MAIN:
            if change.get("say"):
                raise ValueError("dtmf: the main menu's words are the greeting and unknown_key prompts")
            if options is not None:
                dtmf = _checked_options(name, options, known, strict, flow.config.dtmf)
            continue
        intent = intents.get(name)
        if not isinstance(intent, MenuIntent):
            log.warning("menu change %s: the flow has no such menu (ignored)", name)
            continue
        data = intent.model_dump()
        if options is not None:
            data["options"] = _checked_options(name, options, known, strict, intent.options)
        say = change.get("say")
        if say:
            texts = {**intent.say, **say}
            for lang in flow.languages:
                text = " ".join(str(texts.get(lang, "")).split())
                if not text:
                    raise ValueError(f"{name}: the words in {lang} are required")
                if len(text) > MAX_WORDS:
                    raise ValueError(f"{name}: the words in {lang}: at most {MAX_WORDS} characters (got {len(text)})")
                texts[lang] = text
            data["say"] = texts
        intents[name] = MenuIntent.model_validate(data)
    config = flow.config.model_copy(update={"intents": intents, "dtmf": dtmf})
    return dataclasses.replace(flow, config=config)


def unmentioned(options: Mapping[str, str], words: Mapping[str, str]) -> list[str]:
    """Warnings: keys a menu's words (per language) do not name, e.g. `en: key 6 is not mentioned`."""
    out = []
    for lang, text in words.items():
        lower = text.lower()
        for key in options:
            names = KEY_WORDS.get(key, (key,))
            if not any(n in lower for n in names):
                out.append(f"{lang}: key {key} is not mentioned")
    return out
