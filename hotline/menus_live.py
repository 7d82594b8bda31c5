"""The keypad menus as the console's menu page edits them, live in `hotline serve`.

Menus are the flow's `dtmf:` section (the main menu: what each key does from the greeting on) and its
intents with `action: menu` (sub-menus: their words and their keys). An administrator changes which key
leads where and what a sub-menu says; the change is stored with the prompt changes (`prompts.json`'s
`"menus"`: `{menu: {"options": {key: target}, "say": {lang: text}}}`, one version counter and history for
both, hotline/prompts_live.py) and goes live the same way: the engine new calls get is rebuilt, calls in
progress keep theirs, other workers sharing `dialog.prompts_dir` follow within `dialog.knowledge_poll_s`.

Checks before anything is stored (ValueError naming the key): keys from the keypad (0-9 * # A-D), targets
among the flow's intents and the live knowledge base's entries (`faq:<id>`), at least one key per menu, a
sub-menu's words in every offered language, at most 1,000 characters. Keys the menu's words do not mention
are reported as warnings, not refused (the words are the administrator's).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from dialog.flow import DTMF_KEYS, FAQ_PREFIX, Flow, MenuIntent
from hotline.prompts_live import MAX_PROMPT, LivePrompts, Menus

log = logging.getLogger(__name__)

MAIN = "dtmf"  # the main menu's name: the flow's dtmf section
KEY_ORDER = "123456789*0#ABCD"  # as on a phone's keypad
TARGET = re.compile(r"^(faq:)?[a-z][a-z0-9_]{0,63}$")
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
                if len(text) > MAX_PROMPT:
                    raise ValueError(f"{name}: the words in {lang}: at most {MAX_PROMPT} characters (got {len(text)})")
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


class MenusAdmin:
    """`console.menus.MenuAdmin` over `LivePrompts` (plain dicts; blocking, the console's thread pool)."""

    def __init__(self, prompts: LivePrompts) -> None:
        self._prompts = prompts
        self._lock = threading.Lock()

    @property
    def languages(self) -> Sequence[str]:
        return self._prompts.base_flow.languages

    def targets(self) -> list[dict[str, str]]:
        """What a key may lead to: `{"value", "label", "kind": "menu" | "intent" | "faq"}`, menus first."""
        flow = self._prompts.live.engine.flow
        menus = set(menu_names(flow)) - {MAIN}
        out = [{"value": name, "label": name, "kind": "menu"} for name in menu_names(flow) if name in menus]
        out += [{"value": name, "label": name, "kind": "intent"} for name in sorted(flow.config.intents)
                if name not in menus]
        for entry in sorted(flow.knowledge.entries, key=lambda e: e.id):
            question = next(iter(entry.questions.get("en") or entry.questions.get("zh") or [""]))
            out.append({"value": FAQ_PREFIX + entry.id, "label": f"{FAQ_PREFIX}{entry.id} ({question})", "kind": "faq"})
        return out

    def menus(self) -> list[dict[str, Any]]:
        """`[{"name", "options": {key: target}, "base_options", "say": {lang: text} | None, "base_say",
        "changed": bool, "warnings": [str]}]`: the main menu first (its words: the unknown_key prompt)."""
        live = self._prompts.live.engine.flow.config
        base = self._prompts.base_flow.config
        out = []
        for name in menu_names(self._prompts.base_flow):
            if name == MAIN:
                options, base_options = dict(live.dtmf), dict(base.dtmf)
                say, base_say = None, None
                words = dict(live.prompts.unknown_key)
            else:
                now, was = live.intents[name], base.intents[name]
                assert isinstance(now, MenuIntent) and isinstance(was, MenuIntent)
                options, base_options = dict(now.options), dict(was.options)
                say, base_say = dict(now.say), dict(was.say)
                words = say
            out.append({"name": name, "options": options, "base_options": base_options, "say": say,
                        "base_say": base_say, "changed": name in self._prompts.menus,
                        "warnings": unmentioned(options, words)})
        return out

    def menu(self, name: str) -> dict[str, Any] | None:
        return next((m for m in self.menus() if m["name"] == name), None)

    def save(self, name: str, options: dict[str, str], say: dict[str, str] | None, user: str = "") -> list[str]:
        """Stores and applies a menu's keys (and a sub-menu's words); returns the warnings. ValueError naming
        what is wrong (nothing stored), LookupError for an unknown menu."""
        prompts = self._prompts
        with self._lock, prompts.lock, prompts.store.locked():
            prompts.refresh()  # another worker may have saved since the last poll
            current = self.menu(name)
            if current is None:
                raise LookupError(name)
            change: dict[str, dict[str, str]] = {"options": dict(options)}
            if name != MAIN and say is not None:
                change["say"] = {lang: text for lang, text in say.items() if lang in self.languages}
            elif name != MAIN and "say" in prompts.menus.get(name, {}):
                change["say"] = dict(prompts.menus[name]["say"])  # keys only: the changed words stay
            menus = {**prompts.menus, name: change}
            apply_menus(prompts.base_flow, {name: change}, prompts.known_targets())  # this menu: every check
            flow = prompts.flow_with(prompts.overrides, menus)  # other menus' stale keys stay left out
            stored = menus[name]
            stored["options"] = dict(flow.config.dtmf) if name == MAIN else dict(_menu(flow, name).options)
            if "say" in stored:
                stored["say"] = dict(_menu(flow, name).say)
            if stored.get("options") == current["base_options"] and stored.get("say", current["base_say"]) == \
                    current["base_say"]:
                menus.pop(name)  # back to the flow file's menu: nothing to keep
            record = {"user": user, "action": "menu_changed", "key": name,
                      "old": {"options": current["options"], "say": current["say"]},
                      "new": {"options": stored["options"], "say": stored.get("say", current["say"])}}
            version = prompts.store.save(prompts.overrides, record, menus=menus)
            prompts.apply(prompts.overrides, version, menus)
            words = stored.get("say") or (current["say"] if name != MAIN else dict(flow.config.prompts.unknown_key))
            return unmentioned(stored["options"], words or {})

    def reset(self, name: str, user: str = "") -> bool:
        """Back to the flow file's menu; False when it was not changed."""
        prompts = self._prompts
        with self._lock, prompts.lock, prompts.store.locked():
            prompts.refresh()
            current = self.menu(name)
            if current is None:
                raise LookupError(name)
            if name not in prompts.menus:
                return False
            menus = {k: v for k, v in prompts.menus.items() if k != name}
            record = {"user": user, "action": "menu_reset", "key": name,
                      "old": {"options": current["options"], "say": current["say"]},
                      "new": {"options": current["base_options"], "say": current["base_say"]}}
            version = prompts.store.save(prompts.overrides, record, menus=menus)
            prompts.apply(prompts.overrides, version, menus)
            return True


def _menu(flow: Flow, name: str) -> MenuIntent:
    intent = flow.config.intents[name]
    assert isinstance(intent, MenuIntent)
    return intent


def menus_admin(hotline: Any) -> MenusAdmin | None:
    """The console's menu page over the hotline's live prompts (hotline/web.py)."""
    live = getattr(hotline, "prompts_live", None)
    return None if live is None else MenusAdmin(live)
