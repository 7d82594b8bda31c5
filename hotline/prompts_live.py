"""The flow's prompts as the console's prompt pages edit them, live in `hotline serve`.

- `PromptStore`: the administrators' changes over the flow file, versioned like the knowledge base: one
  JSON file (`data_dir/prompts/prompts.json`: `{"version", "time", "overrides": {key: {lang: text}}}`,
  written whole to a temporary file and renamed) and an append-only `history.jsonl` (one line per change:
  version, time, user, action, key, language, old and new text). A file that cannot be read is never
  overwritten: saving refuses with the reason, calls keep the flow file's prompts.
- `LivePrompts`: the flow with the changes applied. A change rebuilds the engine new calls get through
  `LiveKnowledge` (the same swap a knowledge-base publish does, hotline/knowledge_live.py), so the next call
  hears the new text; calls in progress keep theirs; later publishes keep the changed prompts. Workers that
  share `dialog.prompts_dir` see each other's changes: the knowledge poller (`dialog.knowledge_poll_s`) runs
  `LivePrompts.refresh`, and a save first catches up with the file under a lock across processes, so two
  workers' consoles saving at once lose neither change.
- `PromptsAdmin`: `console.prompts.PromptAdmin` (plain dicts) over both, with the hotline's own prompt cache
  to render "listen" (normalisation, the synthesizer, 8 kHz: what a caller hears).

Keys: the `prompts:` section's names (`greeting`, `goodbye`, ...), list items numbered from 1 (`no_match.2`),
and `transfer.announcement`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import fcntl
import json
import logging
import os
import re
import string
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dialog.flow import Flow, Prompts, TransferSpec
from dialog.menus import Menus, apply_menus
from hotline.settings import Settings

log = logging.getLogger(__name__)

MAX_PROMPT = 1000  # characters of one prompt (a spoken prompt of a minute is about 900)
KEY = re.compile(r"^[a-z_]{1,40}(\.[a-z0-9_]{1,40})?$")
TRANSFER_KEY = "transfer.announcement"

Overrides = dict[str, dict[str, str]]


class PromptStoreError(OSError):
    """The overrides file cannot be read (damaged, or not ours): it is left as it is (the console says so)."""


def prompts_dir(s: Settings) -> Path:
    """`dialog.prompts_dir`, default data_dir/prompts."""
    raw = s.dialog.prompts_dir
    return Path(raw).resolve() if raw else Path(s.data_dir).resolve() / "prompts"


def base_prompts(flow: Flow) -> dict[str, dict[str, str]]:
    """Every editable prompt of the flow by key, in the flow file's order: `{key: {lang: text}}`."""
    out: dict[str, dict[str, str]] = {}
    for name in Prompts.model_fields:
        value = getattr(flow.config.prompts, name)
        if isinstance(value, list):
            for i, item in enumerate(value, 1):
                out[f"{name}.{i}"] = dict(item)
        else:
            out[name] = dict(value)
    out[TRANSFER_KEY] = dict(flow.config.transfer.announcement)
    return out


def apply_overrides(flow: Flow, overrides: Overrides) -> Flow:
    """The flow with these prompt texts instead of the file's (validated as the flow file is)."""
    prompts = flow.config.prompts.model_dump(mode="json")
    transfer = flow.config.transfer.model_dump(mode="json")
    for key, texts in overrides.items():
        if key == TRANSFER_KEY:
            transfer["announcement"].update(texts)
            continue
        name, _, index = key.partition(".")
        if name not in prompts:
            log.warning("prompt override %s: the flow has no such prompt (ignored)", key)
            continue
        target = prompts[name]
        if isinstance(target, list):
            if not index.isdigit() or not 1 <= int(index) <= len(target):
                log.warning("prompt override %s: the flow has no such prompt (ignored)", key)
                continue
            target = target[int(index) - 1]
        target.update(texts)
    config = flow.config.model_copy(update={"prompts": Prompts.model_validate(prompts),
                                            "transfer": TransferSpec.model_validate(transfer)})
    return dataclasses.replace(flow, config=config)


def placeholders(text: str) -> set[str]:
    """The `{name}` fields of a text; ValueError for an unbalanced brace."""
    try:
        return {f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError:
        raise ValueError("text: an unbalanced { or } (write placeholders as {name})") from None


def check_text(raw: str, original: str) -> str:
    """The text tidied (one line); ValueError naming what is wrong: empty, too long, placeholders."""
    text = " ".join(str(raw).split())
    if not text:
        raise ValueError("text: required")
    if len(text) > MAX_PROMPT:
        raise ValueError(f"text: at most {MAX_PROMPT} characters (got {len(text)})")
    wanted, got = placeholders(original), placeholders(text)
    missing, unknown = sorted(wanted - got), sorted(got - wanted)
    takes = ", ".join("{" + p + "}" for p in sorted(wanted)) or "none"
    if missing:
        raise ValueError(f"text: missing placeholder {{{missing[0]}}} (this prompt takes {takes})")
    if unknown:
        raise ValueError(f"text: unknown placeholder {{{unknown[0]}}} (this prompt takes {takes})")
    return text


class PromptStore:
    """See the module docstring. Blocking; one writer at a time per process (`PromptsAdmin` locks)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "prompts.json"
        self.history_path = self.directory / "history.jsonl"

    def load(self) -> tuple[int, Overrides]:
        """(version, prompt overrides); (0, {}) when nothing was ever changed."""
        version, overrides, _menus = self.load_all()
        return version, overrides

    def load_all(self) -> tuple[int, Overrides, Menus]:
        """(version, prompt overrides, menu changes: hotline/menus_live.py); (0, {}, {}) when nothing changed."""
        if not self.path.exists():
            return 0, {}, {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            version = int(data["version"])
            overrides = {str(k): {str(lang): str(t) for lang, t in v.items()} for k, v in data["overrides"].items()}
            menus = {str(name): {str(part): {str(k): str(v) for k, v in values.items()} for part, values in m.items()}
                     for name, m in data.get("menus", {}).items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PromptStoreError(f"{self.path} is not readable ({exc}); fix or remove it") from exc
        return version, overrides, menus

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One writer at a time across processes (workers sharing `dialog.prompts_dir`): an exclusive `flock` on
        `.lock` beside the file, held while the caller reads, checks and saves."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / ".lock").open("a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def save(self, overrides: Overrides, change: dict[str, Any], menus: Menus | None = None) -> int:
        """Writes the new overrides (and menu changes; None: the stored ones stay) as the next version and
        appends `change` to the history. Another process may save too: call it inside `locked()` with
        overrides made from what `load_all()` gives there."""
        version, _, stored = self.load_all()  # a damaged file raises here: never overwritten
        version += 1
        menus = stored if menus is None else menus
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self.directory.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {"version": version, "time": now, "overrides": overrides}
        if menus:
            data["menus"] = menus
        payload = json.dumps(data, ensure_ascii=False, indent=1)
        fd, tmp = tempfile.mkstemp(prefix=".prompts-", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with self.history_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"version": version, "time": now, **change}, ensure_ascii=False) + "\n")
        return version


class LivePrompts:
    """The flow file's prompts with the stored changes, applied to the engine new calls get."""

    def __init__(self, live: Any, store: PromptStore) -> None:
        self.live = live  # hotline.knowledge_live.LiveKnowledge
        self.store = store
        self.base_flow: Flow = live.flow  # as loaded from the flow file: what "reset" goes back to
        self.version = 0
        self.overrides: Overrides = {}
        self.menus: Menus = {}  # hotline/menus_live.py: keypad menus changed in the console
        self.lock = threading.RLock()  # the poller's refresh and a console save, one at a time
        self._refused: int | None = None  # a stored version the flow refused: not retried every poll
        self._unreadable: str | None = None  # the last "not readable" error logged (logged once, not every poll)

    def base(self) -> dict[str, dict[str, str]]:
        return base_prompts(self.base_flow)

    def known_targets(self) -> set[str]:
        """What a key may lead to: the flow's intents and the entries of the knowledge base live now."""
        return self.base_flow.intent_names() | self.live.engine.flow.intent_names()

    def flow_with(self, overrides: Overrides, menus: Menus) -> Flow:
        """The flow file's flow with these prompt and menu changes (ValueError naming a bad prompt; a stored
        menu key whose target has gone since is left out with a warning, dialog/menus.py)."""
        return apply_menus(apply_overrides(self.base_flow, overrides), menus, self.known_targets(), strict=False)

    def apply(self, overrides: Overrides, version: int, menus: Menus | None = None) -> None:
        """Blocking (the engine is rebuilt): the next call hears these prompts and menus (None: the menus
        live now stay)."""
        live = self.live
        with self.lock:
            menus = self.menus if menus is None else menus
            flow = self.flow_with(overrides, menus)
            with live._lock:  # one rebuild at a time with knowledge-base publishes
                live.flow = flow  # later publishes build on the changed prompts
                engine = live.build(live.engine.flow.knowledge.entries)
                live.engine = engine
            self.overrides, self.menus, self.version = overrides, menus, version
            for fn in live.on_swap:
                fn(engine)
        log.info("prompts version %d is live (%d prompts, %d menus changed); calls in progress keep theirs", version,
                 len(overrides), len(self.menus))

    def refresh(self) -> bool:
        """Blocking: the stored changes go live if they are not the ones live now (at start-up; after
        another worker's console saved; the knowledge poller calls this). True if the engine was rebuilt.
        A file that cannot be read, or a version the flow refuses, is logged once and the prompts live now
        stay (at start-up: the flow file's)."""
        with self.lock:
            try:
                version, overrides, menus = self.store.load_all()
            except PromptStoreError as exc:
                if str(exc) != self._unreadable:
                    log.error("prompt changes not applied: %s; callers hear the prompts they heard before", exc)
                    self._unreadable = str(exc)
                return False
            self._unreadable = None
            if version in (self.version, self._refused):
                return False
            if overrides == self.overrides and menus == self.menus:  # e.g. every change reset: nothing to rebuild
                self.version = version
                return False
            try:
                self.apply(overrides, version, menus)
            except ValueError as exc:
                log.error("prompt changes version %d not applied (%s); callers hear the prompts they heard before",
                          version, exc)
                self._refused = version
                return False
            return True

    def start(self) -> None:
        """Blocking, at start-up: the stored changes (if any) go live; a damaged file costs the changes only."""
        self.refresh()


class PromptsAdmin:
    """`console.prompts.PromptAdmin` over `LivePrompts` and the hotline's prompt cache."""

    def __init__(self, prompts: LivePrompts, render: Callable[[str, str], Awaitable[bytes]],
                 sample_rate: int = 8000) -> None:
        self._prompts = prompts
        self._render = render
        self.sample_rate = sample_rate
        self._lock = threading.Lock()

    @property
    def languages(self) -> Sequence[str]:
        return self._prompts.base_flow.languages

    def prompts(self) -> list[dict[str, Any]]:
        overrides = self._prompts.overrides
        out = []
        for key, base in self._prompts.base().items():
            changed = overrides.get(key, {})
            out.append({"key": key, "text": {lang: changed.get(lang, base.get(lang, "")) for lang in self.languages},
                        "base": {lang: base.get(lang, "") for lang in self.languages},
                        "changed": {lang: lang in changed for lang in self.languages}})
        return out

    def prompt(self, key: str) -> dict[str, Any] | None:
        return next((p for p in self.prompts() if p["key"] == key), None)

    def _current(self, key: str, lang: str) -> dict[str, Any]:
        if lang not in self.languages:
            raise ValueError(f"lang: one of {', '.join(self.languages)}")
        current = self.prompt(key)
        if current is None:
            raise LookupError(key)
        return current

    def save(self, key: str, lang: str, text: str, user: str = "") -> tuple[str, str]:
        """(old text, new text) after checking it against the flow file's text for its placeholders."""
        with self._lock, self._prompts.lock, self._prompts.store.locked():
            self._prompts.refresh()  # another worker may have saved since the last poll
            current = self._current(key, lang)
            new = check_text(text, current["base"][lang] or current["text"][lang])
            old = current["text"][lang]
            overrides = {k: dict(v) for k, v in self._prompts.overrides.items()}
            overrides.setdefault(key, {})[lang] = new
            self._prompts.flow_with(overrides, self._prompts.menus)  # the flow's own checks, before anything is stored
            version = self._prompts.store.save(overrides, {"user": user, "action": "changed", "key": key,
                                                           "lang": lang, "old": old, "new": new})
            self._prompts.apply(overrides, version)
            return old, new

    def reset(self, key: str, lang: str, user: str = "") -> tuple[str, str] | None:
        """Back to the flow file's text: (old, new), or None when it was not changed."""
        with self._lock, self._prompts.lock, self._prompts.store.locked():
            self._prompts.refresh()
            current = self._current(key, lang)
            if not current["changed"][lang]:
                return None
            overrides = {k: dict(v) for k, v in self._prompts.overrides.items()}
            del overrides[key][lang]
            if not overrides[key]:
                del overrides[key]
            old, new = current["text"][lang], current["base"][lang]
            version = self._prompts.store.save(overrides, {"user": user, "action": "reset", "key": key, "lang": lang,
                                                           "old": old, "new": new})
            self._prompts.apply(overrides, version)
            return old, new

    async def render(self, text: str, lang: str) -> bytes:
        """PCM16 mono at `sample_rate`, as a caller hears `text` (the prompt cache; synthesis off the loop)."""
        if lang not in self.languages:
            raise ValueError(f"lang: one of {', '.join(self.languages)}")
        return await self._render(text, lang)


async def start_live_prompts(hotline: Any) -> LivePrompts | None:
    """For `Hotline.start()` right after the live knowledge base: stored prompt changes go live (the engine
    is rebuilt off the loop)."""
    if hotline.knowledge is None:
        return None
    prompts = LivePrompts(hotline.knowledge, PromptStore(prompts_dir(hotline.settings)))
    await asyncio.get_running_loop().run_in_executor(None, prompts.start)
    hotline.knowledge.on_poll.append(prompts.refresh)  # other workers' changes, every dialog.knowledge_poll_s
    return prompts


def prompts_admin(hotline: Any) -> PromptsAdmin | None:
    """The console's prompt pages over the hotline's live prompts and prompt cache (hotline/web.py)."""
    live = getattr(hotline, "prompts_live", None)
    if live is None or hotline.deps is None:
        return None
    cache = hotline.deps.prompts
    return PromptsAdmin(live, cache.render, cache.target_rate)
