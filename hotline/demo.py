"""`hotline demo`: one real, scripted call through the whole system, shown live in the terminal.

The hotline runs in this process on loopback; the caller and the agent's phone are separate SIP
endpoints with their own sockets, so every word crosses real SIP signalling and RTP media.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotline.bus import EventBus
from hotline.cli import _setup_logging, format_transcript
from hotline.events import (
    AgentAssigned,
    CallEnded,
    CallQueued,
    CallStarted,
    Event,
    IntentRecognized,
    TranscriptAdded,
)
from hotline.settings import load_settings

log = logging.getLogger(__name__)


@dataclass
class Step:
    name: str
    ok: bool
    detail: str


@dataclass
class LivePrinter:
    """Prints the call as it happens, from the bus."""

    out: Any = sys.stdout
    events: list[Event] = field(default_factory=list)

    def __call__(self, ev: Event) -> None:
        self.events.append(ev)
        if isinstance(ev, CallStarted):
            self._p(f"── call {ev.call_id} from {ev.caller or 'unknown'} answered")
        elif isinstance(ev, TranscriptAdded):
            if ev.speaker == "event":
                return
            conf = f"   (asr confidence {ev.confidence:.2f})" if ev.confidence is not None else ""
            who = {"system": "HOTLINE", "caller": "CALLER ", "agent": "AGENT  "}.get(ev.speaker, ev.speaker)
            self._p(f"[{ev.offset_s:6.1f}s] {who}: {ev.text}{conf}")
        elif isinstance(ev, IntentRecognized):
            slots = f" {ev.slots}" if ev.slots else ""
            self._p(f"{'':10}  ↳ intent {ev.intent} ({ev.confidence:.2f}){slots}")
        elif isinstance(ev, CallQueued):
            self._p(f"{'':10}  ↳ routed to queue '{ev.queue}' ({ev.reason}), position {ev.position}")
        elif isinstance(ev, AgentAssigned):
            said = len(ev.context.get("history", []))
            self._p(f"{'':10}  ↳ agent '{ev.agent}' answered; screen pop with {said} transcript lines")
        elif isinstance(ev, CallEnded):
            self._p(f"── call ended after {ev.duration_s:.1f}s: {ev.outcome} ({ev.reason})")

    def _p(self, text: str) -> None:
        print(text, file=self.out, flush=True)


async def run_demo(config: Path, *, verbose: bool = False) -> int:
    # Imported here so `hotline --help` stays quick.
    from asr import create_recognizer
    from hotline.server import Hotline
    from telephony import AgentPhone, TestCaller
    from tts import PromptCache, create_synthesizer

    base = load_settings(config)
    logfile = _logfile(base.data_dir)
    _setup_logging(verbose, logfile)
    say = _status
    say(f"demo: logs in {logfile}")

    synth = PromptCache(create_synthesizer("espeak"), target_rate=8000)
    agent_greeting = await synth.render("Hello, this is Anna at the customer service desk. How can I help you?", "en")
    agent = AgentPhone(host="127.0.0.1", port=0, play_pcm=agent_greeting)
    await agent.start()
    queue = base.queues[0].model_dump()
    queue["agents"] = [{"name": "anna", "uri": f"sip:anna@127.0.0.1:{agent.port}"}]
    settings = load_settings(config, sip={**base.sip.model_dump(), "port": 0}, queues=[queue])

    bus = EventBus()
    printer = LivePrinter()
    bus.subscribe(printer)
    ended = asyncio.Event()
    bus.subscribe(lambda ev: ended.set() if isinstance(ev, CallEnded) else None)

    say("demo: starting the hotline (loading the speech model, rendering prompts)…")
    hotline = Hotline(settings, bus)
    await hotline.start()
    ear = create_recognizer("whisper")  # the caller's own ears: checks what the caller really heard
    steps: list[Step] = []
    target = f"sip:95555@127.0.0.1:{hotline.port}"
    say(f"demo: hotline answering at {target}; agent phone at sip:anna@127.0.0.1:{agent.port}")
    say("demo: placing the call\n")
    try:
        async with TestCaller(host="127.0.0.1") as caller:
            leg = await caller.call(target, from_user="13800138000")
            steps += await _script(caller, leg, synth, ear, agent, printer)
            await leg.hangup()
        await asyncio.wait_for(ended.wait(), 15)
    except Exception as exc:
        log.exception("demo call failed")
        steps.append(Step("call", False, f"{type(exc).__name__}: {exc}"))
    finally:
        await hotline.stop()
        await agent.stop()

    call_id = next((ev.call_id for ev in printer.events if isinstance(ev, CallStarted)), None)
    print()
    if call_id is not None:
        from recordings import CallStore

        store = CallStore(settings.database_url)
        print("Stored record and transcript, read back from the database:")
        print(format_transcript(store, call_id))
        call = store.get_call(call_id)
        steps.append(Step("record closed", bool(call and call.ended_at and call.outcome == "transferred"),
                          f"outcome {call.outcome if call else None}"))
        print(f"\ndatabase:  {settings.database_url}")
        print(f"recording: {call.recording_path if call else '-'}")
    print("\nChecks:")
    for st in steps:
        print(f"  {'PASS' if st.ok else 'FAIL'}  {st.name}: {st.detail}")
    ok = bool(steps) and all(st.ok for st in steps)
    print(f"\ndemo {'succeeded' if ok else 'FAILED'}")
    return 0 if ok else 1


async def _script(caller: Any, leg: Any, synth: Any, ear: Any, agent: Any, printer: LivePrinter) -> list[Step]:
    steps: list[Step] = []

    async def heard(after: str) -> str:
        pcm = await caller.listen(leg, silence_s=1.5, timeout_s=40)
        text = await asyncio.to_thread(lambda: ear.transcribe(pcm, 8000, "en").text)
        log.info("caller heard after %s: %s", after, text)
        return text

    async def speak(text: str) -> None:
        pcm = await synth.render(text, "en")
        leg.send_audio(pcm)
        await leg.wait_played()

    def check(name: str, text: str, *words: str, who: str = "caller") -> None:
        low = text.lower()
        ok = any(w in low for w in words)
        steps.append(Step(name, ok, f"{who} heard: {text!r}"))

    check("greeting", await heard("answer"), "opening hours", "lost card")
    await speak("What are your opening hours?")
    check("FAQ by voice", await heard("question"), "monday", "open", "hour", "9")
    leg.send_dtmf("2")
    check("keypad menu", await heard("key 2"), "card", "lost", "stolen")
    await speak("I want to talk to a person.")
    # The caller hears the queue, then the agent's voice over the bridge.
    try:
        await agent.wait_for_call(timeout=60)
        bridged = True
    except TimeoutError:
        bridged = False
    steps.append(Step("routed to an agent", bridged, "agent phone answered" if bridged else "no agent answered"))
    if bridged:
        text = await heard("bridge")
        check("caller hears the agent", text, "customer service")
        await speak("Hello, I have a question about my credit card.")
        await asyncio.sleep(0.5)
        agent_heard = await asyncio.to_thread(lambda: ear.transcribe(agent.heard_pcm(), 8000, "en").text)
        log.info("agent heard: %s", agent_heard)
        check("agent hears the caller", agent_heard, "credit", "card", "question", who="agent")
    return steps


def _logfile(data_dir: str) -> Path:
    return Path(data_dir).resolve() / "demo.log"


def _status(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
