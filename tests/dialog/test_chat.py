"""The text chat channel: same engine, same answers; typed digits are keypad presses; `hotline chat` piped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dialog import DialogEngine, Flow
from dialog.bank_cli import open_bank
from dialog.chat import ChatSession, chat_turn

REPO = Path(__file__).resolve().parents[2]


def test_chat_gives_the_phone_answers_and_takes_typed_keys(bank_flow: Flow, tmp_path: Path) -> None:
    bank = open_bank(f"sqlite:///{tmp_path / 'bank.db'}")
    engine = DialogEngine(bank_flow, bank=bank)
    chat = ChatSession(engine, "chat-1", lang="en")
    phone = engine.new_conversation("phone-1", lang="en")
    assert chat.start().texts[0] == phone.start()[0].text  # type: ignore[union-attr]
    reply = chat.send("1")  # the keypad alternative, typed
    assert "9 am to 5 pm" in " ".join(reply.texts) and reply.intents == ["faq:opening_hours"]
    ask = chat.send("what is my balance")
    assert ask.secret  # the client masks the next input
    pin_asked = chat.send("6222 0210 0123 4567")  # as printed on the card; no "#" needed in chat
    assert pin_asked.secret and "PIN" in " ".join(pin_asked.texts)
    done = chat.send("246810")
    assert "52,380.50 yuan" in " ".join(done.texts) and not done.secret
    assert "246810" not in str(chat.conversation.history)
    bye = chat.send("bye")
    assert bye.ended and bye.transfer is None
    bank.close()


def test_chat_turn_keeps_sessions_for_a_web_endpoint(bank_flow: Flow) -> None:
    engine = DialogEngine(bank_flow)
    sessions: dict[str, ChatSession] = {}
    hello = chat_turn(engine, sessions, "web-1", None, lang="zh")
    assert hello.lang == "zh" and "欢迎" in hello.texts[0]
    agent = chat_turn(engine, sessions, "web-1", "转人工")
    assert agent.ended and agent.transfer is not None and agent.transfer.queue == "general"
    assert "web-1" not in sessions


def test_hotline_chat_piped_in_chinese(tmp_path: Path) -> None:
    cfg = tmp_path / "server.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'var'}\ndialog:\n  flow: {REPO / 'configs' / 'flows' / 'bank.yaml'}\n")
    lines = "查余额\n6222021001234567#\n246810\n7\n1\n再见\n"
    out = subprocess.run(
        [sys.executable, "-m", "hotline.cli", "--config", str(cfg), "chat", "--lang", "zh"],
        input=lines,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "bot: 欢迎致电示例银行" in text
    assert "52380.50元" in text and "王芳" in text
    assert "上午9点到下午5点" in text  # 7 then 1: the information menu's opening hours
    assert text.rstrip().endswith("bot: 感谢您致电示例银行，再见。")
    for secret in ("6222021001234567", "246810"):
        assert secret not in text + out.stderr
