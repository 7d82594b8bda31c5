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
from asr.bargein import BargeInDetector
from dialog import Conversation, DialogEngine, Hangup, Listen, Say, Transfer, Understood
from hotline.bus import EventBus
from hotline.events import (
    AgentAssigned,
    CallEnded,
    CallQueued,
    CallStarted,
    IntentRecognized,
    RecordingFailed,
    TranscriptAdded,
)
from hotline.knowledge_live import knowledge_dir
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
    recording_key: bytes | None = None  # recordings.encrypt: AES-GCM key (HOTLINE_RECORDING_KEY)


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

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the call --------------------------------------------------------------------------
    async def run(self) -> None:
        leg, deps = self.leg, self.deps
        log.info("call %s: answered (sip call-id %s) from %s to %s", self.call_id, leg.call_id, leg.caller, leg.called)
        try:
            rs = deps.settings.recordings
            self._recorder = StereoRecorder(deps.settings.recordings_dir / f"{self.call_id}.wav", call_id=self.call_id,
                                            compress=rs.compress, key=deps.recording_key)
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
        self._caller_leg_id = await self._db(
            deps.store.add_leg, self.call_id, "caller", sip_call_id=leg.call_id, peer=leg.caller, codec=leg.codec
        )
        if self._caller_leg_id:
            await self._db(deps.store.leg_answered, self._caller_leg_id)
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
            if self._agent_leg_id:
                await self._db(deps.store.end_leg, self._agent_leg_id, self._state.reason or "ended")
            if self._caller_leg_id:
                await self._db(deps.store.end_leg, self._caller_leg_id, leg.end_reason or self._state.reason)
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
        pcm = await self.deps.prompts.render(action.text, action.lang)
        self._state.barge_in = action.barge_in
        if self.leg.ended.is_set():
            raise _CallGone
        start = self._now() + self.leg.queued_ms / 1000  # it plays after what is already queued
        if not action.barge_in:  # e.g. a legal notice: caller speech does not stop it (keys still do)
            ends = time.monotonic() + self.leg.queued_ms / 1000 + len(pcm) / 16000
            self._state.protected_until = max(self._state.protected_until, ends)
        self._secret_entry(False)  # prompts are recorded; only the caller's secret entry is not
        self.leg.send_audio(pcm)
        await self._line("system", action.text, start, start + len(pcm) / 16000)

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
        barge = self._barge_in_detector(leg) if caller_side else None
        over_prompt = False  # the current utterance started while a prompt played
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
                if barge is not None and not self._state.transferring:
                    if any(isinstance(e, SpeechStarted) for e in events) and not was_speaking:
                        over_prompt = leg.playing
                for ev in events:
                    if isinstance(ev, SpeechStarted):
                        sink(_SpeechOnset(self._now()))
                    elif isinstance(ev, Utterance):
                        end = self._now()
                        if barge is not None and over_prompt and not barge.fired:
                            # Talk over a prompt that never amounted to barge-in (a backchannel, a cough,
                            # our own echo): not a turn.
                            log.info("call %s: %.1f s of sound over a prompt ignored", self.call_id, ev.duration_s)
                            sink(_Heard(Transcript("", 0.0, self._lang), end - ev.duration_s, end))
                        else:
                            self._spawn(self._recognize(ev, end - ev.duration_s, end, sink))
                        over_prompt = False
                if was_speaking and not endpointer.in_speech and not any(isinstance(e, Utterance) for e in events):
                    sink(_Heard(Transcript("", 0.0, self._lang), self._now(), self._now()))  # noise: no turn
                    over_prompt = False
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call %s: media reader failed", self.call_id)
            sink(_LegEnded())
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
        )

        def tap(direction: str, pcm: bytes) -> None:
            if direction == "out":
                barge.outbound(pcm)

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
            leg.clear_audio()
            now = self._now()
            onset = now - (barge.confirmed_s or 0.0) + (barge.onset_s or 0.0)
            log.info("call %s: barge-in: prompt stopped %.0f ms after the caller started", self.call_id,
                     (now - onset) * 1000)
            sink(_BargedIn(now, onset))

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
                loop.run_in_executor(
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
        await self._line("event", f"queued for {queue.name} ({action.reason})", self._now())
        await self._db(deps.store.update_call, self.call_id, queue=queue.name, queued_at=datetime.now(UTC))
        self._queue_entry = await self._db(deps.store.queue_entered, self.call_id, queue.name)
        await self._store_complaint(action.context)
        await self._finish_playing()
        if leg.ended.is_set():
            raise _CallGone

        # The caller's reader goes on while they wait: what they say on hold reaches the transcript.
        deadline = time.monotonic() + qs.max_wait_s
        while not leg.ended.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._state.outcome, self._state.reason = "abandoned", "max_wait"
                await self._leave_queue("abandoned", "timeout: max_wait_s reached")
                return
            agent = await self._wait_for_agent(queue, qs, remaining)
            if agent is None:
                continue
            try:
                connect = _fill(qs.connect_prompt, self._lang)
                if connect:
                    await self._say(Say(connect, self._lang, False))
                    await self._finish_playing(10)
                self._agent_leg_id = await self._db(deps.store.add_leg, self.call_id, "agent", peer=agent.uri)
                agent_leg = await self._ring_agent(agent.uri, qs.ring_timeout_s)
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
                await self._db(self.deps.store.add_dtmf, self.call_id, item.digit)

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
            if self._agent_leg_id:
                leg_id, self._agent_leg_id = self._agent_leg_id, None
                await self._db(deps.store.end_leg, leg_id, self._state.reason)
            await self._line("event", f"agent {agent_name} call ended", self._now())


def _no_tap(direction: str, pcm: bytes) -> None:
    pass


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
