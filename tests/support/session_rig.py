"""An in-process hotline for CallSession tests over real SIP on loopback: a SipEndpoint whose incoming legs
land in a queue, SQLite call records, espeak prompts, the real distributor's queue views, one-thread pools."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asr import Endpointer
from asr.vad import create_vad
from hotline.bus import EventBus
from hotline.session import SessionDeps
from hotline.settings import DEFAULT_CONFIG, load_settings
from recordings import CallStore
from routing import CallDistributor
from telephony import CallLeg, SipEndpoint
from tts import PromptCache, create_synthesizer


@dataclass
class Hotline:
    endpoint: SipEndpoint
    legs: asyncio.Queue[CallLeg]  # every call the endpoint answers
    deps: SessionDeps
    store: CallStore
    db: Path

    @property
    def uri(self) -> str:
        return f"sip:hotline@127.0.0.1:{self.endpoint.port}"


@asynccontextmanager
async def hotline_for_sessions(tmp_path: Path, queues: list[dict[str, Any]], acd: CallDistributor, bus: EventBus,
                               recognizer: Any) -> AsyncIterator[Hotline]:
    """`queues`: configs/server.yaml `queues` entries (prompts, timeouts); the sessions use `acd`'s views."""
    settings = load_settings(DEFAULT_CONFIG, data_dir=str(tmp_path), queues=queues)
    db = tmp_path / "hotline.db"
    store = CallStore(f"sqlite:///{db}")
    endpoint = SipEndpoint("127.0.0.1", 0)
    legs: asyncio.Queue[CallLeg] = asyncio.Queue()

    async def on_call(leg: CallLeg) -> None:
        legs.put_nowait(leg)
        await leg.ended.wait()

    endpoint.on_call = on_call
    await endpoint.start()
    db_pool, cpu_pool = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
    deps = SessionDeps(
        settings=settings, store=store, bus=bus, engine=None,  # type: ignore[arg-type]
        recognizer=recognizer,
        prompts=PromptCache(create_synthesizer("espeak"), target_rate=8000, executor=cpu_pool),
        queues={q: acd.view(q) for q in acd.queue_names}, dial=endpoint.dial, cpu_pool=cpu_pool,
        db_pool=db_pool, endpointer_factory=lambda: Endpointer(8000, vad=create_vad("webrtc", 8000)))
    try:
        yield Hotline(endpoint, legs, deps, store, db)
    finally:
        await endpoint.stop()
        db_pool.shutdown(wait=True)
        cpu_pool.shutdown(wait=False)
        store.close()
