"""`hotline agents` / `hotline queues` read what the workers share in the database."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from hotline.cli import main
from routing import AgentProfile, AgentState, CallDistributor, QueueConfig
from routing.sqlstore import SqlAgentStore


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, str]:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    cfg = tmp_path / "server.yaml"
    cfg.write_text(yaml.safe_dump({
        "database": {"url": url}, "routing": {"store": "database"},
        "queues": [{"name": "general", "agents": [{"name": "anna", "uri": "sip:anna@127.0.0.1:5090"}]}],
        "dialog": {"flow": str(Path(__file__).resolve().parents[2] / "configs" / "flows" / "bank.yaml")},
    }))
    return cfg, url


def _worker(url: str, node: str) -> tuple[CallDistributor, SqlAgentStore]:
    store = SqlAgentStore(url, node=node, refresh_s=0)
    acd = CallDistributor([QueueConfig("general"), QueueConfig("cards")], directory=store, store=store)
    for name in ("anna", "bob"):
        acd.add_agent(AgentProfile(name, f"sip:{name}@127.0.0.1", skills={"en": 1}), AgentState.AVAILABLE)
    return acd, store


async def test_agents_and_queues_show_every_workers_state(setup: tuple[Path, str],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    cfg, url = setup
    (w1, s1), (w2, s2) = _worker(url, "w1"), _worker(url, "w2")
    agent = await w1.acquire("general", "call-77", timeout=1)
    assert agent is not None
    w1.answered(agent)
    w2.stats("general").offered = 4
    for w, s in ((w1, s1), (w2, s2)):
        s.publish_queue_snapshots(w.queue_snapshots())

    assert main(["--config", str(cfg), "agents"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert "on_call" in lines[agent.id] and "call-77" in lines[agent.id]
    other = ({"anna", "bob"} - {agent.id}).pop()
    assert "available" in lines[other]

    assert main(["--config", str(cfg), "queues"]) == 0
    out = capsys.readouterr().out
    general = next(line for line in out.splitlines() if line.startswith("general"))
    assert general.split()[5:7] == ["5", "1"]  # offered 1 (w1) + 4 (w2), answered 1
    assert re.search(r"workers: w1 \d s ago, w2 \d s ago\n", out), out

    assert main(["--config", str(cfg), "agents", "--watch", "0.05", "--times", "2"]) == 0
    assert capsys.readouterr().out.count("every 0.05 s") == 2


def test_set_state_by_hand_and_refusals(setup: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    cfg, url = setup
    w1, s1 = _worker(url, "w1")
    assert main(["--config", str(cfg), "agents", "--set", "bob=on_break"]) == 0
    assert "bob: available -> on_break" in capsys.readouterr().out
    assert w1.agent("bob").state is AgentState.ON_BREAK  # the worker sees it on its next read
    assert s1.try_reserve("anna", "call-1")  # w1 holds anna
    assert main(["--config", str(cfg), "agents", "--set", "anna=logged_out"]) == 1
    assert "anna is ringing on w1: cannot go to logged_out" in capsys.readouterr().err
    assert main(["--config", str(cfg), "agents", "--set", "bob=on_call"]) == 1
    assert "on_call comes from calls" in capsys.readouterr().err
    assert main(["--config", str(cfg), "agents", "--set", "nobody=available"]) == 1
    assert "no agent 'nobody'" in capsys.readouterr().err
    assert main(["--config", str(cfg), "agents", "--set", "garbage"]) == 2


def test_memory_store_and_unreachable_database_say_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "server.yaml"
    cfg.write_text(yaml.safe_dump({"database": {"url": f"sqlite:///{tmp_path / 'x.db'}"}}))
    assert main(["--config", str(cfg), "agents"]) == 0
    assert "routing.store is 'database'" in capsys.readouterr().out
    cfg.write_text(yaml.safe_dump({"database": {"url": "postgresql+psycopg://nobody:secret@127.0.0.1:1/none"}}))
    assert main(["--config", str(cfg), "queues"]) == 1
    err = capsys.readouterr().err
    assert "cannot read the database" in err and "secret" not in err
