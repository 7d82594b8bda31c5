"""The text chat channel: the phone's `Conversation` over text, so chat and phone give the same answers.

`Say` becomes a line of text, `Listen` means "your turn" (no timeouts: an empty message counts as
silence), `Transfer` hands the chat to an agent queue, `Hangup` ends it. Typed digits are keypad
presses: "1" in a menu, "6222...#" while a card number is asked for, so every keypad alternative
works in chat too. A web endpoint calls `ChatSession.send` (or `chat_turn`) per message.

    session = ChatSession(engine, "chat-42", lang="zh")
    reply = session.start()                # greeting
    reply = session.send("查余额")          # reply.texts, reply.ended, reply.transfer, reply.secret
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from dialog.actions import Action, Hangup, Listen, Say, Transfer
from dialog.engine import Conversation, DialogEngine

log = logging.getLogger(__name__)

KEYS = re.compile(r"^[0-9*#]+$")


@dataclass(frozen=True)
class ChatReply:
    """What the chat shows after one message."""

    texts: list[str]
    lang: str
    ended: bool = False
    transfer: Transfer | None = None  # the chat goes to an agent queue with this context
    secret: bool = False  # the next message is a PIN or card number: mask the input box
    intents: list[str] = field(default_factory=list)


class ChatSession:
    """One chat: a `Conversation` plus the digit handling a text channel needs."""

    def __init__(
        self, engine: DialogEngine, session_id: str | None = None, lang: str | None = None, user: str = ""
    ) -> None:
        self.session_id = session_id or f"chat-{uuid.uuid4().hex[:12]}"
        self.conversation: Conversation = engine.new_conversation(self.session_id, caller=user, lang=lang)

    @property
    def ended(self) -> bool:
        return self.conversation.ended

    def start(self) -> ChatReply:
        return self._reply(self.conversation.start())

    def send(self, text: str) -> ChatReply:
        """One message from the user: keys if it is only keypad characters, else words."""
        text = (text or "").strip()
        conv = self.conversation
        if not text:
            return self._reply(conv.handle_no_input())
        if conv.expects_digits and KEYS.match(re.sub(r"[\s-]", "", text)):
            text = re.sub(r"[\s-]", "", text)  # "6222 0210 0123 4567" as printed on the card
        if KEYS.match(text) and (conv.expects_digits or len(text) == 1):
            actions: list[Action] = []
            for key in text:
                if conv.ended:
                    break
                # keep what each key made the bot say; only the last Listen matters
                actions = [*_spoken(actions), *conv.handle_dtmf(key)]
            if conv.digits_pending and not conv.ended:
                # a chat message is the whole entry: no need to type "#" at the end
                actions = [*_spoken(actions), *conv.handle_no_input()]
            return self._reply(actions)
        return self._reply(conv.handle_text(text, 1.0))

    def _reply(self, actions: Iterable[Action]) -> ChatReply:
        texts: list[str] = []
        transfer: Transfer | None = None
        ended = False
        secret = False
        intents: list[str] = []
        for action in actions:
            if isinstance(action, Say):
                texts.append(action.text)
            elif isinstance(action, Transfer):
                transfer, ended = action, True
            elif isinstance(action, Hangup):
                ended = True
            elif isinstance(action, Listen):
                secret = action.secret
            elif hasattr(action, "intent"):
                intents.append(action.intent)
        return ChatReply(texts, self.conversation.lang, ended, transfer, secret, intents)


def _spoken(actions: list[Action]) -> list[Action]:
    return [a for a in actions if not isinstance(a, Listen)]


def chat_turn(
    engine: DialogEngine, sessions: dict[str, ChatSession], session_id: str, text: str | None, lang: str | None = None
) -> ChatReply:
    """For a web endpoint: `text=None` opens the chat `session_id` (greeting); ended chats are forgotten."""
    session = sessions.get(session_id)
    if session is None or text is None:
        session = sessions[session_id] = ChatSession(engine, session_id, lang)
        reply = session.start()
    else:
        reply = session.send(text)
    if reply.ended:
        sessions.pop(session_id, None)
    return reply


def run_terminal(engine: DialogEngine, lang: str | None, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """`hotline chat`: reads lines, prints replies (`bot: ...`); works piped. Returns 0 when the chat ended."""
    session = ChatSession(engine, lang=lang, user="terminal")
    interactive = stdin.isatty()

    def show(reply: ChatReply) -> None:
        for text in reply.texts:
            print(f"bot: {text}", file=stdout)
        if reply.transfer is not None:
            print(f"[handed to the {reply.transfer.queue} queue: {reply.transfer.reason}]", file=stdout)
        if interactive and not reply.ended:
            print("(secret: typed keys are not shown in the history) " if reply.secret else "", end="> ", file=stdout)
        stdout.flush()

    show(session.start())
    for line in stdin:
        if not interactive:
            shown = "*" * len(line.strip()) if session.conversation.expects_secret else line.strip()
            print(f"you: {shown}", file=stdout)
        show(session.send(line))
        if session.ended:
            return 0
    return 0


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], settings_of: Callable[[argparse.Namespace], Any]
) -> None:
    """Registers `hotline chat`; `settings_of(args)` gives the settings (flow_path, bank_url, bank.seed_demo)."""
    chat = sub.add_parser("chat", help="talk to the hotline in text (reads lines from standard input)")
    chat.add_argument("--lang", choices=["zh", "en"], help="language to start in (default: the flow's)")
    chat.add_argument("--no-bank", action="store_true", help="without the bank's records (answers only)")
    chat.set_defaults(run=lambda a: _chat(a, settings_of))


def _chat(args: argparse.Namespace, settings_of: Callable[[argparse.Namespace], Any]) -> int:
    from dialog.bank_cli import open_bank
    from dialog.flow import load_flow

    settings = settings_of(args)
    bank = None if args.no_bank else open_bank(settings.bank_url, seed_if_empty=settings.bank.seed_demo)
    try:
        return run_terminal(DialogEngine(load_flow(settings.flow_path), bank=bank), args.lang)
    finally:
        if bank is not None:
            bank.close()
