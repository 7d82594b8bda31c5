"""The live knowledge base of `hotline serve`, the console's knowledge-base editor and its chat channel.

- `LiveKnowledge`: calls are answered from the newest *published* version in the knowledge-base
  store (`dialog.knowledge_dir`, default data_dir/knowledge), or from the flow's own knowledge file
  while nothing is published. A publish (from the console at once, from `hotline kb publish` or
  another worker within `dialog.knowledge_poll_s`) builds a new `DialogEngine` off the event loop and
  swaps the reference in `SessionDeps`: the next call hears the new answer, calls in progress keep
  the engine they started with.
- `StoreAdmin`: `console.kb.KnowledgeAdmin` over `dialog.knowledge_store.KnowledgeStore` (plain dicts).
- `chat_callable`: `console.chat.ChatTurn` over `dialog.chat.chat_turn`, always on the live engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import tempfile
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from dialog import DialogEngine
from dialog.flow import FAQ_PREFIX, Flow
from dialog.knowledge import KnowledgeBase, KnowledgeEntry
from dialog.knowledge_store import KnowledgeStore, KnowledgeStoreError, diff_entries
from dialog.nlu import NearestExampleClassifier
from hotline.settings import Settings

log = logging.getLogger(__name__)


def knowledge_dir(s: Settings) -> Path:
    """`dialog.knowledge_dir`, default data_dir/knowledge (where the sessions log unanswered questions)."""
    raw = s.dialog.knowledge_dir
    return Path(raw).resolve() if raw else Path(s.data_dir).resolve() / "knowledge"


def seed_draft(store: KnowledgeStore, flow: Flow) -> bool:
    """An empty store gets the flow's entries as its draft, so the editor starts from what callers hear."""
    if store.draft_path.exists() or store.versions():
        return False
    store.save_draft(flow.knowledge.entries)
    log.info("knowledge store %s: draft started from the flow's %d entries", store.directory,
             len(flow.knowledge.entries))
    return True


class LiveKnowledge:
    """Keeps the engine that new calls get answering from the newest published knowledge base."""

    def __init__(self, flow: Flow, engine: DialogEngine, store: KnowledgeStore, poll_s: float = 2.0) -> None:
        self.flow = flow  # as loaded from the flow file: its knowledge is the fallback
        self.base_engine = engine
        self.engine = engine  # what the next call or chat gets
        self.store = store
        self.poll_s = poll_s
        self.version: int | None = None  # the published version live now (None: the flow's own file)
        self.on_swap: list[Callable[[DialogEngine], None]] = []
        self.on_stop: list[Callable[[], Awaitable[None]]] = []  # e.g. hotline/kb_prerender.py
        self.on_poll: list[Callable[[], object]] = []  # blocking checks run off the loop each poll (prompts_live)
        self._lock = threading.Lock()  # one rebuild at a time (poller and console publish)
        self._task: asyncio.Task[None] | None = None
        self._refused: int | None = None  # a published version that could not be read

    # -- building ----------------------------------------------------------------------------
    def seed_draft(self) -> bool:
        return seed_draft(self.store, self.flow)

    def build(self, entries: Sequence[KnowledgeEntry]) -> DialogEngine:
        """A new engine over the same flow, bank and NLU with these entries (blocking: run it off the loop)."""
        kb = KnowledgeBase(entries)
        flow = dataclasses.replace(self.flow, knowledge=kb)
        missing = sorted(ref for ref in _faq_references(self.flow) if kb.get(ref) is None)
        if missing:
            log.warning("published knowledge base lacks entries the flow names (%s): those keys/intents now get "
                        "the no-match prompt", ", ".join(missing))
        base = self.base_engine
        # The default classifier is trained on the knowledge questions too: train it again on the new ones.
        own = base.nlu.classifier if not isinstance(base.nlu.classifier, NearestExampleClassifier) else None
        return DialogEngine(flow, classifier=own, bank=base.bank)

    def refresh(self) -> bool:
        """Blocking: if a newer version is published, build its engine and swap it in. True if swapped."""
        with self._lock:
            versions = self.store.versions()
            newest = versions[-1] if versions else None
            if newest is None or newest in (self.version, self._refused):
                return False
            try:
                engine = self.build(self.store.published(newest))
            except (KnowledgeStoreError, ValueError) as exc:  # a damaged file: keep answering from the current one
                log.error("knowledge base version %s not taken live: %s", newest, exc)
                self._refused = newest  # not retried every poll; the next publish is tried
                return False
            self.engine = engine
            self.version = newest
        for fn in self.on_swap:
            fn(engine)
        log.info("knowledge base version %d is live (%d entries); calls in progress keep the one they started with",
                 newest, len(engine.flow.knowledge))
        return True

    # -- running -----------------------------------------------------------------------------
    async def start(self) -> DialogEngine:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.seed_draft)
        await loop.run_in_executor(None, self.refresh)
        if self.version is None:
            log.info("knowledge: nothing published in %s; answering from the flow's knowledge file",
                     self.store.directory)
        if self.poll_s > 0:
            self._task = asyncio.ensure_future(self._poll())
        return self.engine

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await loop.run_in_executor(None, self.refresh)
            except Exception:  # a disk hiccup must not end the poller
                log.exception("knowledge: checking %s for a new version failed", self.store.published_dir)
            for check in list(self.on_poll):
                try:
                    await loop.run_in_executor(None, check)
                except Exception:
                    log.exception("knowledge poller: %r failed", check)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for fn in self.on_stop:
            await fn()


def _faq_references(flow: Flow) -> set[str]:
    """Knowledge entries the flow names (keys, follow-ups, menus)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str) and value.startswith(FAQ_PREFIX):
            found.add(value.removeprefix(FAQ_PREFIX))
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(k)
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)

    walk(flow.config.model_dump(mode="json"))
    return found


# -- the console's knowledge-base editor --------------------------------------------------------
def _entry_dict(e: KnowledgeEntry) -> dict[str, Any]:
    return {
        "id": e.id, "category": e.category, "questions": {k: list(v) for k, v in e.questions.items()},
        "answer": dict(e.answer), "keywords": {k: list(v) for k, v in e.keywords.items()},
        "effective_from": e.effective_from.isoformat() if e.effective_from else None,
        "effective_until": e.effective_until.isoformat() if e.effective_until else None,
        "version": e.version,
    }


class StoreAdmin:
    """`console.kb.KnowledgeAdmin` over a `KnowledgeStore`; a publish goes live at once through `live`."""

    def __init__(self, store: KnowledgeStore, live: LiveKnowledge | None = None) -> None:
        self.store = store
        self.live = live
        self._lock = threading.Lock()  # read-change-write of the draft, one editor at a time
        self._unanswered_lock = threading.Lock()
        self._unanswered_cache: tuple[Any, dict[str, Any]] | None = None

    @property
    def languages(self) -> Sequence[str]:
        return self.store.languages

    def entries(self) -> list[dict[str, Any]]:
        return [_entry_dict(e) for e in self.store.draft()]

    def entry(self, entry_id: str) -> dict[str, Any] | None:
        return next((_entry_dict(e) for e in self.store.draft() if e.id == entry_id), None)

    def create(self, data: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if any(e.id == data.get("id") for e in self.store.draft()):
                raise ValueError(f"id: {data.get('id')!r} is already in the draft")
            payload = {"version": 1, "entries": [{k: v for k, v in data.items() if v is not None}]}
            with tempfile.TemporaryDirectory(prefix="kb-add-") as tmp:
                path = Path(tmp) / "entry.json"
                path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
                report = self.store.import_file(path)  # the same checks as any import, one entry
            if report.problems:
                raise ValueError("; ".join(f"{p.column or 'entry'}: {p.problem}" for p in report.problems[:3]))
            return _entry_dict(self.store.get(str(data["id"])))

    def update(self, entry_id: str, data: dict[str, Any], expected_version: int | None = None) -> dict[str, Any]:
        from console.kb import KbConflict

        with self._lock:
            try:
                current = self.store.get(entry_id)
            except KnowledgeStoreError:
                raise LookupError(entry_id) from None
            if expected_version is not None and current.version != expected_version:
                raise KbConflict(f"{entry_id} was changed by someone else (now version {current.version}, you "
                                 f"edited version {expected_version}); your text is below: compare and save again")
            changes = {
                "category": data["category"], "questions": data["questions"], "answer": data["answer"],
                "effective_from": data.get("effective_from") or "",
                "effective_until": data.get("effective_until") or "",
            }
            return _entry_dict(self.store.edit(entry_id, **changes))

    def delete(self, entry_id: str) -> None:
        with self._lock:
            entries = self.store.draft()
            kept = [e for e in entries if e.id != entry_id]
            if len(kept) == len(entries):
                raise LookupError(entry_id)
            if not kept:
                raise ValueError("the draft cannot be left empty: add another entry first")
            self.store.save_draft(kept)

    def publish(self) -> int:
        with self._lock:
            version = self.store.publish()
        if self.live is not None:
            self.live.refresh()  # in this thread (the console's pool): the next call hears it
        return version

    def rollback(self, version: int) -> int:
        """`version`'s entries published again as the next version, live at once; LookupError for a version
        that does not exist, ValueError (KnowledgeStoreError) for the newest one or a damaged file."""
        with self._lock:
            if version not in self.store.versions():
                raise LookupError(f"no published version {version}")
            new = self.store.rollback(version)
        if self.live is not None:
            self.live.refresh()
        return new

    def changes(self, old: str | int, new: str | int) -> list[dict[str, Any]]:
        """What differs from `old` to `new` (version numbers, "published", "draft"): `[{"id", "kind", "fields",
        "old", "new"}]` with the entries as dicts (None where absent); LookupError for an unknown version."""
        known = self.store.versions()
        for side in (old, new):
            if isinstance(side, int) and side not in known:
                raise LookupError(f"no published version {side}")
        if "published" in (old, new) and not known:
            raise LookupError("nothing published yet")
        diff = diff_entries(self.store.entries_of(old), self.store.entries_of(new))
        return [{"id": ch.id, "kind": ch.kind, "fields": list(ch.fields),
                 "old": _entry_dict(ch.old) if ch.old else None, "new": _entry_dict(ch.new) if ch.new else None}
                for ch in diff]

    def versions(self) -> list[dict[str, Any]]:
        notes: dict[int, dict[str, Any]] = {}
        index = self.store.published_dir / "index.jsonl"
        if index.is_file():
            for line in index.read_text(encoding="utf-8", errors="replace").splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                    item = json.loads(line)
                    back = item.get("rollback_of")
                    notes[int(item["version"])] = {"time": str(item.get("time", "")),
                                                   "entries": int(item.get("entries", 0)),
                                                   "rollback_of": int(back) if back is not None else None}
        live = self.live.version if self.live is not None else None
        blank = {"time": "", "entries": 0, "rollback_of": None}
        return [{"version": v, **notes.get(v, blank), "live": v == live} for v in reversed(self.store.versions())]

    def unanswered(self) -> dict[str, Any]:
        """The unanswered-questions log clustered (hotline/unanswered.py): `{"clusters": [...], "questions",
        "unreadable"}`; recomputed only when the log changed."""
        from hotline.unanswered import MAX_ITEMS, Question, cluster_questions, default_encoder

        path = self.store.unanswered.path
        stat = path.stat() if path.is_file() else None
        key = (stat.st_mtime_ns, stat.st_size) if stat else None
        with self._unanswered_lock:
            cached = self._unanswered_cache
            if cached is not None and cached[0] == key:
                return cached[1]
            items, bad = self.store.unanswered.read(limit=MAX_ITEMS)
            questions = [Question(q.text, q.lang, q.call_id, q.time) for q in items]
            encoder = default_encoder() if any(q.lang == "en" for q in questions) else None
            result = {"clusters": [c.to_dict() for c in cluster_questions(questions, encoder)],
                      "questions": len(questions), "unreadable": bad}
            self._unanswered_cache = (key, result)
            return result


# -- the console's chat channel -----------------------------------------------------------------
def chat_callable(engine_of: Callable[[], DialogEngine]) -> Callable[..., dict[str, Any]]:
    """`console.chat.ChatTurn`: one message through dialog.chat on the engine new calls get."""
    from dialog.chat import chat_turn

    def turn(sessions: dict[str, Any], session_id: str, text: str | None, lang: str | None) -> dict[str, Any]:
        reply = chat_turn(engine_of(), sessions, session_id, text, lang)
        transfer = None
        if reply.transfer is not None:
            transfer = {"queue": reply.transfer.queue, "reason": reply.transfer.reason}
        return {"texts": list(reply.texts), "lang": reply.lang, "ended": reply.ended, "transfer": transfer,
                "secret": reply.secret}

    return turn


async def start_live_knowledge(hotline: Any, flow: Flow, engine: DialogEngine) -> LiveKnowledge:
    """For `Hotline.start()`: the live knowledge base, swapping `hotline.deps.engine` on each publish."""
    s: Settings = hotline.settings
    store = KnowledgeStore(knowledge_dir(s), flow.languages)
    live = LiveKnowledge(flow, engine, store, poll_s=s.dialog.knowledge_poll_s)

    def swap(new: DialogEngine) -> None:
        if hotline.deps is not None:
            hotline.deps.engine = new  # one reference: sessions read it once, when a call starts

    live.on_swap.append(swap)
    try:
        await live.start()
    except OSError as exc:  # an unwritable store costs the editor, never the calls
        log.error("knowledge store %s not usable (%s): answering from the flow's knowledge file", store.directory, exc)
    return live
