"""Helpers for text-level conversations with the SQL sample bank (tests/dialog): a seeded bank file made once
per module and copied per test, starting a conversation, keying digits, verifying, reading what was said."""

from __future__ import annotations

import shutil
from pathlib import Path

from dialog import Action, Conversation, DialogEngine, Say
from dialog.bank_cli import open_bank
from dialog.samplebank import SampleBank


def seeded_bank_file(folder: Path) -> Path:
    """The demo bank seeded once (hashing the four PINs is the slow part): copy it per test."""
    path = folder / "bank.db"
    open_bank(f"sqlite:///{path}").close()
    return path


def copied_bank(template: Path, folder: Path) -> SampleBank:
    path = folder / "bank.db"
    shutil.copy(template, path)
    return SampleBank(f"sqlite:///{path}")


def start(engine: DialogEngine, lang: str = "en", call_id: str = "bank-test") -> Conversation:
    conv = engine.new_conversation(call_id, caller="+8613800000001", lang=lang)
    conv.start()
    return conv


def keys(conv: Conversation, digits: str) -> list[Action]:
    actions: list[Action] = []
    for d in digits:
        actions = conv.handle_dtmf(d)
    return actions


def verify(conv: Conversation, number: str, pin: str) -> list[Action]:
    """The card or account number then "#", then the PIN: what the caller hears after the PIN."""
    keys(conv, number + "#")
    return keys(conv, pin)


def spoken(actions: list[Action]) -> str:
    return " ".join(a.text for a in actions if isinstance(a, Say))
