"""The distributor's own behaviour tests (test_distributor.py), run again over the SQL agent store.

Every rule (skills, priorities, ring handling, wrap-up, overflow, callbacks, statistics) must hold the
same when agents live in a database (SQLite here) instead of in memory.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from routing import AgentProfile, AgentState, CallDistributor, ManualClock, QueueConfig
from routing.sqlstore import SqlAgentStore


def _load(file: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"_parity_{file[:-3]}", Path(__file__).with_name(file))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_rules = _load("test_distributor.py")
Recorder = _load("conftest.py").Recorder
_call_skills = _load("test_call_skills.py")  # skills from the call: needs, relaxation, VIP order
for _module in (_rules, _call_skills):
    for _name in dir(_module):  # the rules that build their distributor through the make_acd fixture
        if _name.startswith("test_") and "make_acd" in inspect.signature(getattr(_module, _name)).parameters:
            globals()[_name] = getattr(_module, _name)


@pytest.fixture
def make_acd(clock: ManualClock, tmp_path: Path) -> Callable[..., Any]:
    def make(queues: Iterable[QueueConfig], agents: Iterable[tuple[str, dict[str, int]]] = (), *,
             idle_step: float = 1.0) -> tuple[CallDistributor, Any]:
        store = SqlAgentStore(f"sqlite:///{tmp_path / 'agents.db'}", node="w1", clock=clock, refresh_s=0)
        acd = CallDistributor(queues, clock=clock, directory=store, store=store)
        rec = Recorder()
        acd.subscribe(rec)
        for name, skills in agents:
            acd.add_agent(AgentProfile(name, f"sip:{name}@127.0.0.1", skills=skills), AgentState.AVAILABLE)
            clock.advance(idle_step)
        return acd, rec

    return make
