"""Knowledge-base answers prerendered into the prompt cache (hotline/kb_prerender.py): the live knowledge
base (hotline/knowledge_live.py) over a real KnowledgeStore, the bank flow's engine, a real espeak-ng
PromptCache. A published answer is in the cache under the key the session asks for (the dialog's own
`Say`); a changed and published answer replaces the old one; the work runs on a low-priority thread."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.waiting import until_true

from dialog import DialogEngine, Say, load_flow
from dialog.knowledge_store import KnowledgeStore
from hotline.kb_prerender import GROUP, KbPrerender, answer_prompts
from hotline.knowledge_live import LiveKnowledge, StoreAdmin
from hotline.settings import DEFAULT_CONFIG, ConfigError, load_settings
from tts import PromptCache, create_synthesizer

pytestmark = [pytest.mark.timeout(60)]


def _answer_says(engine: DialogEngine, key: str, lang: str) -> list[Say]:
    """What a caller hears after pressing `key` at the greeting (1: opening hours, from the knowledge base)."""
    conv = engine.new_conversation("c1", "2001", lang)
    conv.start()
    return [a for a in conv.handle_dtmf(key) if isinstance(a, Say)]


async def test_published_answers_are_prerendered_and_a_changed_answer_replaces_the_old_one(tmp_path: Path) -> None:
    settings = load_settings(DEFAULT_CONFIG, data_dir=str(tmp_path))
    flow = load_flow(settings.flow_path)
    store = KnowledgeStore(tmp_path / "knowledge", flow.languages)
    live = LiveKnowledge(flow, DialogEngine(flow), store, poll_s=0)
    await live.start()  # seeds the draft from the flow's entries
    admin = StoreAdmin(store, live)
    await asyncio.get_running_loop().run_in_executor(None, admin.publish)
    with ThreadPoolExecutor(2) as cpu:
        prompts = PromptCache(create_synthesizer("espeak"), target_rate=8000, executor=cpu)
        pre = KbPrerender(prompts, delay_s=0.0, pause_s=0.0)
        live.on_swap.append(pre.swapped)
        live.on_stop.append(pre.stop)
        pre.schedule(live.engine)
        await asyncio.wait_for(pre.done.wait(), 40)
        assert pre.last is not None and pre.last.rendered > 10 and pre.last.skipped == 0, pre.last
        for lang in flow.languages:
            says = _answer_says(live.engine, "1", lang)
            assert says and all(prompts.cached(s.text, s.lang) is not None for s in says), (lang, says)
        n_items = len(answer_prompts(live.engine))
        assert len(prompts.group(GROUP)) == n_items
        old = _answer_says(live.engine, "1", "en")[0].text
        misses = prompts.misses

        # An editor changes the answer and publishes: the new text is rendered, the old one dropped.
        new = "Our branches are open from 8 am to 8 pm every day, holidays included."
        store.edit("opening_hours", answer={"en": new})
        pre.done.clear()
        await asyncio.get_running_loop().run_in_executor(None, admin.publish)
        await until_true(lambda: pre.runs >= 2, 40, "the prerender after the publish")
        assert _answer_says(live.engine, "1", "en")[0].text == new
        assert prompts.cached(new, "en") is not None and prompts.cached(old, "en") is None
        assert pre.last is not None and (pre.last.rendered, pre.last.dropped) == (1, 1), pre.last
        assert len(prompts.group(GROUP)) == n_items
        hits = prompts.hits
        pcm = await prompts.render(new, "en")  # what the session does for the next caller: a cache hit
        assert prompts.hits == hits + 1 and prompts.misses == misses and pcm == prompts.group(GROUP)[(new, "en")]
        assert os.getpriority(os.PRIO_PROCESS, pre._pool._threads.pop().native_id) >= 10  # type: ignore[attr-defined]
        await live.stop()  # stops the prerender too


async def test_prerendering_is_bounded_by_the_settings(tmp_path: Path) -> None:
    settings = load_settings(DEFAULT_CONFIG, data_dir=str(tmp_path),
                             tts={"kb_prerender_max_entries": 3, "kb_prerender_max_mb": 1})
    assert settings.tts.kb_prerender and settings.tts.kb_prerender_delay_s == 2.0
    flow = load_flow(settings.flow_path)
    with ThreadPoolExecutor(1) as cpu:
        prompts = PromptCache(create_synthesizer("espeak"), target_rate=8000, executor=cpu)
        pre = KbPrerender(prompts, max_entries=settings.tts.kb_prerender_max_entries,
                          max_mb=settings.tts.kb_prerender_max_mb, delay_s=0.0)
        pre.schedule(DialogEngine(flow))
        await asyncio.wait_for(pre.done.wait(), 30)
        await pre.stop()
    assert len(prompts.group(GROUP)) == 3 and prompts.group_bytes(GROUP) <= 1024 * 1024
    with pytest.raises(ConfigError, match="kb_prerender_max_mb"):
        load_settings(DEFAULT_CONFIG, data_dir=str(tmp_path), tts={"kb_prerender_max_mb": -1})
