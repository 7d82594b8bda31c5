"""The keypad menus as the console's menu page edits them, live in `hotline serve`.

Menus are the flow's `dtmf:` section (the main menu: what each key does from the greeting on) and its
intents with `action: menu` (sub-menus: their words and their keys). An administrator changes which key
leads where and what a sub-menu says; the change is stored with the prompt changes (`prompts.json`'s
`"menus"`: `{menu: {"options": {key: target}, "say": {lang: text}}}`, one version counter and history for
both, hotline/prompts_live.py; applied by dialog/menus.py) and goes live the same way: the engine new
calls get is rebuilt, calls in progress keep theirs, other workers sharing `dialog.prompts_dir` follow
within `dialog.knowledge_poll_s`.

Checks before anything is stored (ValueError naming the key): keys from the keypad (0-9 * # A-D), targets
among the flow's intents and the live knowledge base's entries (`faq:<id>`), at least one key per menu, a
sub-menu's words in every offered language, at most 1,000 characters. Keys the menu's words do not mention
are reported as warnings, not refused (the words are the administrator's).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from dialog.flow import FAQ_PREFIX, Flow, MenuIntent
from dialog.menus import MAIN, apply_menus, menu_names, unmentioned
from hotline.prompts_live import LivePrompts

log = logging.getLogger(__name__)


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
