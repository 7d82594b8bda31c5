"""The call session: one per call, the only place that knows every stage of the pipeline.

Media frames → endpointer → recognizer → dialog → prompts → media frames, and on Transfer the
queue, the agent's leg and the bridge. Every transcript line is committed as it happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asr import Endpointer, Recognizer, SpeechStarted, Transcript, Utterance
from dialog import Conversation, DialogEngine, Hangup, Listen, Say, Transfer, Understood
from hotline.bus import EventBus
from hotline.events import (
    AgentAssigned,
    CallEnded,
    CallQueued,
    CallStarted,
    IntentRecognized,
    TranscriptAdded,
)
from hotline.settings import QueueSettings, Settings
from recordings import CallStore, StereoRecorder
from routing import QueueView
from telephony import AudioFrame, CallFailed, CallLeg, DtmfDigit, bridge
from tts import PromptCache

log = logging.getLogger(__name__)

Dial = Callable[..., Awaitable[CallLeg]]


@dataclass
class SessionDeps:
    """What a call session needs, built once per process by the server."""

    settings: Settings
    store: CallStore
    bus: EventBus
    engine: DialogEngine
    recognizer: Recognizer
    prompts: PromptCache
    queues: dict[str, QueueView]
    dial: Dial
    cpu_pool: Executor  # recognition and synthesis
    db_pool: Executor  # one thread: record writes stay in order and off the event loop
    endpointer_factory: Callable[[], Endpointer]


# What the media reader hands the dialog loop.
@dataclass(frozen=True)
class _Heard:
    transcript: Transcript
    start_s: float
    end_s: float


@dataclass(frozen=True)
class _Key:
    digit: str


@dataclass(frozen=True)
class _SpeechOnset:
    at_s: float


@dataclass(frozen=True)
class _LegEnded:
    pass


_Input = _Heard | _Key | _SpeechOnset | _LegEnded


@dataclass
class _State:
    outcome: str = "caller_hangup"
    reason: str = ""
    barge_in: bool = True
    speaking: bool = False


class CallSession:
    def __init__(self, leg: CallLeg, deps: SessionDeps) -> None:
        self.leg = leg
        self.deps = deps
        self.call_id = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"
        self._t0 = time.monotonic()
        self._inputs: asyncio.Queue[_Input] = asyncio.Queue()
        self._state = _State()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._recorder: StereoRecorder | None = None
        self._conv: Conversation | None = None
        self._lang = "en"

    # -- helpers ---------------------------------------------------------------------------
    def _now(self) -> float:
        return time.monotonic() - self._t0

    async def _db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Runs a store call on the writer thread; a failing database degrades, never ends, the call."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.deps.db_pool, lambda: fn(*args, **kwargs))
        except Exception:
            log.exception("call %s: record write failed (%s)", self.call_id, getattr(fn, "__name__", fn))
            return None

    async def _line(
        self,
        speaker: str,
        text: str,
        start_s: float,
        end_s: float | None = None,
        *,
        intent: str | None = None,
        confidence: float | None = None,
    ) -> None:
        log.info("call %s: %s: %s", self.call_id, speaker, text)
        self.deps.bus.publish(TranscriptAdded(self.call_id, speaker, text, round(start_s, 2), confidence))
        await self._db(
            self.deps.store.add_line,
            self.call_id,
            speaker,
            text,
            start_s,
            end_s,
            intent=intent,
            confidence=confidence,
            language=self._lang,
        )

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the call --------------------------------------------------------------------------
    async def run(self) -> None:
        leg, deps = self.leg, self.deps
        log.info("call %s: answered (sip call-id %s) from %s to %s", self.call_id, leg.call_id, leg.caller, leg.called)
        try:
            self._recorder = StereoRecorder(deps.settings.recordings_dir / f"{self.call_id}.wav")
            leg.add_tap(self._recorder.tap)
        except OSError:
            log.exception("call %s: recording unavailable; the call goes on without it", self.call_id)
        await self._db(
            deps.store.start_call,
            self.call_id,
            sip_call_id=leg.call_id,
            caller=leg.caller,
            called=leg.called,
            worker=deps.settings.node_name,
            recording_path=str(self._recorder.path) if self._recorder else None,
        )
        deps.bus.publish(CallStarted(self.call_id, leg.caller, leg.called))

        reader = asyncio.ensure_future(self._read_media(leg, self._inputs.put_nowait))
        try:
            self._conv = deps.engine.new_conversation(self.call_id, leg.caller)
            self._lang = self._conv.lang
            await self._run_dialog(self._conv.start())
        except _CallGone:
            pass
        except Exception:
            log.exception("call %s: session failed", self.call_id)
            self._state.outcome, self._state.reason = "failed", "internal_error"
        finally:
            reader.cancel()
            for task in list(self._tasks):
                task.cancel()
            if self._recorder is not None:
                self._recorder.close()
            if not leg.ended.is_set():
                await leg.hangup()
            if self._state.outcome == "caller_hangup":
                self._state.reason = leg.end_reason or "remote_bye"
            duration = self._now()
            await self._db(
                deps.store.end_call, self.call_id, outcome=self._state.outcome, end_reason=self._state.reason
            )
            deps.bus.publish(CallEnded(self.call_id, self._state.outcome, self._state.reason, round(duration, 2)))
            log.info("call %s: ended, outcome %s (%s)", self.call_id, self._state.outcome, self._state.reason)

    async def _run_dialog(self, actions: list[Any]) -> None:
        conv = self._conv
        assert conv is not None
        while True:
            follow_up: list[Any] | None = None
            for action in actions:
                self._lang = conv.lang
                if isinstance(action, Say):
                    await self._say(action)
                elif isinstance(action, Understood):
                    await self._understood(action)
                elif isinstance(action, Listen):
                    follow_up = await self._listen(action)
                    break
                elif isinstance(action, Transfer):
                    await self._transfer(action)
                    return
                elif isinstance(action, Hangup):
                    await self._finish_playing()
                    self._state.outcome = conv.outcome or "goodbye"
                    self._state.reason = action.reason
                    await self.leg.hangup()
                    return
            if follow_up is None:
                # A flow that says nothing more: let the last prompt finish, then end politely.
                await self._finish_playing()
                self._state.outcome, self._state.reason = conv.outcome or "completed", "flow_ended"
                return
            actions = follow_up

    async def _say(self, action: Say) -> None:
        pcm = await self.deps.prompts.render(action.text, action.lang)
        self._state.barge_in = action.barge_in
        if self.leg.ended.is_set():
            raise _CallGone
        start = self._now() + self.leg.queued_ms / 1000  # it plays after what is already queued
        self.leg.send_audio(pcm)
        await self._line("system", action.text, start, start + len(pcm) / 16000)

    async def _understood(self, action: Understood) -> None:
        log.info("call %s: intent %s (%.2f) slots %s", self.call_id, action.intent, action.confidence, action.slots)
        self.deps.bus.publish(IntentRecognized(self.call_id, action.intent, action.confidence, dict(action.slots)))
        await self._db(self.deps.store.update_call, self.call_id, last_intent=action.intent[:64], language=self._lang)

    async def _unless_hung_up(self, task: asyncio.Future[Any], timeout: float | None = None) -> bool:
        """Waits for `task`, the caller hanging up, or the timeout; True if the caller has hung up."""
        ended = asyncio.ensure_future(self.leg.ended.wait())
        try:
            await asyncio.wait({task, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        return self.leg.ended.is_set()

    async def _finish_playing(self, limit_s: float = 60.0) -> None:
        if self.leg.ended.is_set():
            return
        done = asyncio.ensure_future(self.leg.wait_played())
        try:
            await self._unless_hung_up(done, limit_s)
        finally:
            done.cancel()

    async def _listen(self, action: Listen) -> list[Any]:
        """Waits for the caller's next turn: speech, a key, or silence after the prompt ends."""
        conv = self._conv
        assert conv is not None
        no_input_s = action.timeout_s or self.deps.settings.endpointing.no_input_s
        silent_since: float | None = None
        while True:
            if self.leg.playing or self._state.speaking:
                silent_since = None
                wait: float | None = 0.1
            else:
                silent_since = silent_since if silent_since is not None else time.monotonic()
                wait = max(0.0, no_input_s - (time.monotonic() - silent_since))
            try:
                item = await asyncio.wait_for(self._inputs.get(), timeout=wait)
            except TimeoutError:
                if self.leg.ended.is_set():
                    raise _CallGone from None
                if silent_since is not None and time.monotonic() - silent_since >= no_input_s:
                    await self._line("event", "no input", self._now())
                    return conv.handle_no_input()
                continue
            if isinstance(item, _LegEnded):
                raise _CallGone
            if isinstance(item, _SpeechOnset):
                self._state.speaking = True
                if self.leg.playing and self._state.barge_in:
                    self.leg.clear_audio()
                    await self._line("event", "caller barged in; prompt stopped", item.at_s)
                continue
            if isinstance(item, _Key):
                self.leg.clear_audio()
                await self._line("caller", f"[key {item.digit}]", self._now())
                return conv.handle_dtmf(item.digit)
            if isinstance(item, _Heard):
                self._state.speaking = False
                text = item.transcript.text.strip()
                if not text:
                    silent_since = None  # noise, not a turn: keep listening
                    continue
                await self._line(
                    "caller", text, item.start_s, item.end_s, confidence=round(item.transcript.confidence, 3)
                )
                return conv.handle_text(text, item.transcript.confidence)

    # -- media -----------------------------------------------------------------------------
    async def _read_media(self, leg: CallLeg, sink: Callable[[_Input], None], *, caller_side: bool = True) -> None:
        """Reads one leg's frames: endpointing on the 20 ms path, recognition off it."""
        endpointer = self.deps.endpointer_factory()
        try:
            while True:
                item = await leg.recv()
                if item is None:
                    sink(_LegEnded())
                    return
                if isinstance(item, DtmfDigit):
                    endpointer.reset()
                    sink(_Key(item.digit))
                    continue
                if not isinstance(item, AudioFrame):
                    continue
                if caller_side and leg.playing and not self._state.barge_in:
                    endpointer.reset()  # a prompt that must play in full: speech over it is not a turn
                    continue
                for ev in endpointer.feed(item.pcm):
                    if isinstance(ev, SpeechStarted):
                        sink(_SpeechOnset(self._now()))
                    elif isinstance(ev, Utterance):
                        end = self._now()
                        self._spawn(self._recognize(ev, end - ev.duration_s, end, sink))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call %s: media reader failed", self.call_id)
            sink(_LegEnded())

    async def _recognize(self, utt: Utterance, start_s: float, end_s: float, sink: Callable[[_Input], None]) -> None:
        loop = asyncio.get_running_loop()
        t = time.monotonic()
        if self._lang not in self.deps.recognizer.languages:
            # No model for this language (Mandarin needs a bank-supplied one): keys still work.
            log.warning("call %s: no %s speech model (asr.model_path); speech ignored", self.call_id, self._lang)
            sink(_Heard(Transcript("", 0.0, self._lang), start_s, end_s))
            return
        try:
            tr = await loop.run_in_executor(
                self.deps.cpu_pool, self.deps.recognizer.transcribe, utt.pcm, utt.sample_rate, self._lang
            )
        except Exception:
            log.exception("call %s: recognition failed; treated as not understood", self.call_id)
            tr = Transcript("", 0.0, self._lang)
        took_ms = (time.monotonic() - t) * 1e3
        log.info("call %s: recognised %r (%.2f) in %.0f ms", self.call_id, tr.text, tr.confidence, took_ms)
        sink(_Heard(tr, start_s, end_s))

    # -- hand-off to a person --------------------------------------------------------------
    async def _transfer(self, action: Transfer) -> None:
        deps, leg = self.deps, self.leg
        queue = deps.queues.get(action.queue) or next(iter(deps.queues.values()))
        qs = _queue_settings(deps.settings, queue.name)
        self._state.outcome, self._state.reason = "abandoned", "hung_up_in_queue"
        position = queue.waiting + 1
        deps.bus.publish(CallQueued(self.call_id, queue.name, action.reason, position))
        await self._line("event", f"queued for {queue.name} ({action.reason})", self._now())
        await self._db(deps.store.update_call, self.call_id, queue=queue.name, queued_at=datetime.now(UTC))
        await self._finish_playing()
        if leg.ended.is_set():
            raise _CallGone

        # The caller's reader goes on while they wait: what they say on hold reaches the transcript.
        deadline = time.monotonic() + qs.max_wait_s
        while not leg.ended.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._state.outcome, self._state.reason = "abandoned", "max_wait"
                return
            agent = await self._wait_for_agent(queue, qs, remaining)
            if agent is None:
                continue
            try:
                connect = _fill(qs.connect_prompt, self._lang)
                if connect:
                    await self._say(Say(connect, self._lang, False))
                    await self._finish_playing(10)
                agent_leg = await self._ring_agent(agent.uri, qs.ring_timeout_s)
            except CallFailed as exc:
                # The agent goes "not ready"; the caller keeps their place and gets the next agent.
                log.warning("call %s: agent %s did not answer (%s)", self.call_id, agent.name, exc)
                queue.no_answer(agent)
                await self._line("event", f"agent {agent.name} did not answer", self._now())
                continue
            except BaseException:
                queue.release(agent)
                raise
            queue.answered(agent)
            try:
                if leg.ended.is_set():
                    await agent_leg.hangup()
                    raise _CallGone
                await self._bridge_agent(queue, agent.name, agent_leg, action)
            finally:
                queue.finished(agent)  # wrap-up, then available again
            return
        raise _CallGone

    async def _ring_agent(self, uri: str, ring_timeout_s: float) -> CallLeg:
        """Dials the agent; if the caller hangs up meanwhile, the agent's phone stops ringing (CANCEL)."""
        dial = asyncio.ensure_future(
            self.deps.dial(uri, from_user=self.leg.caller or "hotline", timeout=ring_timeout_s)
        )
        if await self._unless_hung_up(dial) and not dial.done():
            dial.cancel()
            with contextlib.suppress(asyncio.CancelledError, CallFailed):
                agent_leg = await dial
                await agent_leg.hangup()  # answered in the same instant: hang up at once
            raise _CallGone
        return dial.result()

    async def _wait_for_agent(self, queue: QueueView, qs: QueueSettings, remaining: float) -> Any:
        """Waits in the queue, with position announcements while nobody is free."""
        acquire = asyncio.ensure_future(queue.acquire(self.call_id, timeout=remaining))
        try:
            announce_every = 20.0
            first = True
            while not acquire.done():
                if not first or not queue.free_agents():
                    pos = queue.position(self.call_id) or 1
                    text = _fill(qs.hold_prompt, self._lang, position=pos, ahead=max(0, pos - 1))
                    if text and not self.leg.playing:
                        await self._say(Say(text, self._lang, False))
                first = False
                if await self._unless_hung_up(acquire, announce_every):
                    reserved = acquire.result() if acquire.done() and not acquire.cancelled() else None
                    if reserved is not None:
                        queue.release(reserved)  # reserved in the same instant: give it back
                    raise _CallGone
            return acquire.result()
        finally:
            if not acquire.done():
                acquire.cancel()

    async def _transcribe_bridged(self, speaker: str, inputs: asyncio.Queue[_Input]) -> None:
        """Writes what one side says while caller and agent talk; keys and onsets are just noted."""
        while True:
            item = await inputs.get()
            if isinstance(item, _LegEnded):
                return
            if isinstance(item, _Heard) and item.transcript.text.strip():
                conf = round(item.transcript.confidence, 3)
                await self._line(speaker, item.transcript.text.strip(), item.start_s, item.end_s, confidence=conf)
            elif isinstance(item, _Key):
                await self._line(speaker, f"[key {item.digit}]", self._now())

    async def _bridge_agent(self, queue: QueueView, agent_name: str, agent_leg: CallLeg, action: Transfer) -> None:
        deps, leg = self.deps, self.leg
        context = {
            **action.context,
            "call_id": self.call_id,
            "caller": leg.caller,
            "reason": action.reason,
        }
        deps.bus.publish(AgentAssigned(self.call_id, queue.name, agent_name, context))
        await self._db(
            deps.store.update_call, self.call_id, agent=agent_name, agent_answered_at=datetime.now(UTC)
        )
        leg.clear_audio()
        await self._line("event", f"connected to agent {agent_name}", self._now())
        self._state.outcome, self._state.reason = "transferred", "agent_call_ended"
        # Both sides keep being transcribed while they talk: the caller's reader goes on, the agent gets one.
        self._state.barge_in = True  # the agent's voice is not a prompt: the caller's speech counts over it
        agent_inputs: asyncio.Queue[_Input] = asyncio.Queue()
        writers = [
            asyncio.ensure_future(self._transcribe_bridged("caller", self._inputs)),
            asyncio.ensure_future(self._transcribe_bridged("agent", agent_inputs)),
            asyncio.ensure_future(self._read_media(agent_leg, agent_inputs.put_nowait, caller_side=False)),
        ]
        try:
            await bridge(leg, agent_leg)
        finally:
            for w in writers:
                w.cancel()
            if not agent_leg.ended.is_set():
                await agent_leg.hangup()
            if leg.ended.is_set() and self._state.reason == "agent_call_ended":
                self._state.reason = "caller_hung_up_with_agent"
            await self._line("event", f"agent {agent_name} call ended", self._now())


class _CallGone(Exception):
    """The caller hung up; unwinds the dialog to the session's clean-up."""


def _queue_settings(settings: Settings, name: str) -> QueueSettings:
    return next((q for q in settings.queues if q.name == name), settings.queues[0])


def _fill(prompts: dict[str, str], lang: str, **values: Any) -> str:
    text = prompts.get(lang) or prompts.get("en") or next(iter(prompts.values()), "")
    try:
        return text.format(**values)
    except (KeyError, IndexError, ValueError):
        return text
