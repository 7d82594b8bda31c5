"""`hotline`: the command line, the front door for people running the hotline."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hotline.settings import DEFAULT_CONFIG, ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from recordings import CallStore

log = logging.getLogger("hotline")

# Errors that mean "the set-up is wrong", raised by the stages while the server starts. Matched by name
# so that `hotline --help` does not have to import every stage.
_START_UP_ERRORS = {"FlowConfigError", "RecognizerUnavailable", "SynthesizerUnavailable", "Pjsua2Unavailable"}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"hotline: configuration error: {exc}", file=sys.stderr)
        print("hotline: fix the file and start again; nothing was started.", file=sys.stderr)
        return 2
    except Exception as exc:
        if type(exc).__name__ not in _START_UP_ERRORS:
            raise
        # A flow file, a speech model or a SIP port that is not usable: say which, start nothing.
        print(f"hotline: cannot start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hotline",
        description="Voice IVR and call center for banks: answers SIP calls, listens, answers or hands "
        "the caller to a person, and keeps every call's record, transcript and recording.",
    )
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="server settings (default: %(default)s)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="answer calls until stopped (Ctrl-C or SIGTERM)")
    serve.add_argument("--host", help="SIP address to listen on (overrides sip.host)")
    serve.add_argument("--port", type=int, help="SIP UDP port (overrides sip.port)")
    serve.set_defaults(run=_serve)

    demo = sub.add_parser("demo", help="place a scripted demonstration call through the whole system")
    demo.set_defaults(run=_demo)

    check = sub.add_parser("check-config", help="validate the settings and the dialog flow, then exit")
    check.set_defaults(run=_check_config)

    calls = sub.add_parser("calls", help="list the most recent calls")
    calls.add_argument("--limit", type=int, default=20)
    calls.set_defaults(run=_calls)

    tr = sub.add_parser("transcript", help="print one call's stored transcript")
    tr.add_argument("call_id")
    tr.set_defaults(run=_transcript)

    from hotline.speech_cli import add_commands as add_speech_commands

    add_speech_commands(sub)  # transcribe, say
    from dialog.nlu_cli import add_commands as add_nlu_commands

    add_nlu_commands(sub)  # nlu train, nlu predict
    from dialog.kb_cli import add_commands as add_kb_commands

    add_kb_commands(sub)  # kb import/export/list/show/edit/publish/versions/search/unanswered
    from dialog.bank_cli import add_commands as add_bank_commands
    from dialog.chat import add_commands as add_chat_commands

    add_bank_commands(sub, lambda a: _settings(a).bank_url)  # bank seed, bank unlock
    add_chat_commands(sub, _settings)  # chat --lang zh|en
    from hotline.records_cli import add_commands as add_records_commands

    add_records_commands(sub, calls)  # db upgrade/current, retention, report, calls search
    from hotline.agents_cli import add_commands as add_agents_commands

    add_agents_commands(sub)  # agents, queues (shared database state)
    from hotline.web import add_commands as add_web_commands

    add_web_commands(sub)  # console, users add/list/role/password/unlock/token
    return p


def _setup_logging(verbose: bool, logfile: Path | None = None) -> None:
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handlers: list[logging.Handler] = []
    if logfile is not None:
        logfile.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(logfile, encoding="utf-8"))
    else:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=fmt, handlers=handlers, force=True)


def _settings(args: argparse.Namespace, **overrides: object) -> Settings:
    return load_settings(args.config, **overrides)


def _serve(args: argparse.Namespace) -> int:
    base = _settings(args)
    sip = base.sip.model_dump()
    if args.host:
        sip["host"] = args.host
    if args.port is not None:
        sip["port"] = args.port
    settings = _settings(args, sip=sip)
    _setup_logging(args.verbose)
    from hotline.server import Hotline

    async def run() -> None:
        hotline = Hotline(settings)
        await hotline.start()
        stop = asyncio.Event()
        now = asyncio.Event()  # Ctrl-C, or a second SIGTERM while draining: hang up at once
        loop = asyncio.get_running_loop()

        def on_signal(sig: int) -> None:
            if sig == signal.SIGINT or stop.is_set():
                now.set()
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, on_signal, sig)
        print(
            f"hotline: answering on sip:hotline@{settings.sip.host}:{hotline.port} "
            f"(database {settings.database_url}); Ctrl-C to stop",
            file=sys.stderr,
        )
        await stop.wait()
        if not now.is_set():  # SIGTERM: new calls get 503, calls in progress finish (sip.drain_timeout_s)
            from hotline.sip_edge import drain

            await drain(hotline.endpoint, settings.sip.drain_timeout_s, now)
        log.info("stopping: hanging up calls in progress")
        await hotline.stop()

    asyncio.run(run())
    return 0


def _demo(args: argparse.Namespace) -> int:
    from hotline.demo import run_demo

    return asyncio.run(run_demo(args.config, verbose=args.verbose))


def _check_config(args: argparse.Namespace) -> int:
    from dialog import DialogEngine, load_flow
    from dialog.flow import check_queues

    settings = _settings(args)
    flow = load_flow(settings.flow_path)
    check_queues(flow, [q.name for q in settings.queues])  # transfer.queue_by_intent names real queues
    DialogEngine(flow)
    print(f"{args.config}: ok (flow {settings.flow_path}: ok)")
    return 0


def _calls(args: argparse.Namespace) -> int:
    from recordings import CallStore

    store = CallStore(_settings(args).database_url)
    for c in store.recent_calls(args.limit):
        print(
            f"{c.id}\t{c.started_at:%Y-%m-%d %H:%M:%S}\t{c.caller or '-'}\t{c.outcome or 'in progress'}"
            f"\t{c.last_intent or '-'}\t{c.agent or '-'}"
        )
    return 0


def _transcript(args: argparse.Namespace) -> int:
    from recordings import CallStore

    store = CallStore(_settings(args).database_url)
    call = store.get_call(args.call_id)
    if call is None:
        print(f"hotline: no call {args.call_id!r} (see `hotline calls`)", file=sys.stderr)
        return 1
    print(format_transcript(store, args.call_id))
    return 0


def format_transcript(store: CallStore, call_id: str) -> str:
    """The stored record and transcript of one call, as a supervisor would read it."""
    call = store.get_call(call_id)
    if call is None:
        return f"no call {call_id}"
    out = [
        f"call {call.id}  caller {call.caller or '-'}  started {call.started_at:%Y-%m-%d %H:%M:%S}",
        f"outcome {call.outcome}  ({call.end_reason})  intent {call.last_intent or '-'}  "
        f"queue {call.queue or '-'}  agent {call.agent or '-'}",
        f"recording {call.recording_path or '-'}",
    ]
    for line in store.get_transcript(call_id):
        conf = f"  ({line.confidence:.2f})" if line.confidence is not None else ""
        out.append(f"  [{line.start_s:6.1f}s] {line.speaker:>7}: {line.text}{conf}")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
