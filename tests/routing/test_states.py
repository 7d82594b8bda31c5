"""Agent states: only legal moves, each one kept with its time for statistics."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from routing import AgentState, AgentStatus, IllegalTransition
from routing.states import TRANSITIONS

S = AgentState
T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


def test_every_state_has_its_moves_listed() -> None:
    assert set(TRANSITIONS) == set(AgentState)


def test_a_normal_call_cycle_is_legal_and_recorded() -> None:
    st = AgentStatus("a", 0.0, T0)
    for i, to in enumerate([S.AVAILABLE, S.RINGING, S.ON_CALL, S.WRAP_UP, S.AVAILABLE, S.ON_BREAK, S.LOGGED_OUT]):
        st.transition(to, float(i + 1), T0, "step")
    assert [c.state for c in st.history][:3] == [S.LOGGED_OUT, S.AVAILABLE, S.RINGING]
    assert st.state is S.LOGGED_OUT and st.since == 7.0


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ([], S.ON_CALL),  # logged out straight onto a call
        ([S.AVAILABLE], S.ON_CALL),  # answered without ringing
        ([S.AVAILABLE, S.RINGING, S.ON_CALL], S.ON_BREAK),  # break in the middle of a call
        ([S.AVAILABLE, S.RINGING, S.ON_CALL], S.AVAILABLE),  # skipping wrap-up
        ([S.AVAILABLE, S.ON_BREAK], S.RINGING),  # ringing while on break
    ],
)
def test_illegal_moves_raise_a_clear_error(path: list[AgentState], bad: AgentState) -> None:
    st = AgentStatus("anna", 0.0, T0)
    for to in path:
        st.transition(to, 1.0, T0)
    with pytest.raises(IllegalTransition, match=f"agent anna: cannot go from {st.state} to {bad}"):
        st.transition(bad, 2.0, T0)
    assert st.state is (path[-1] if path else S.LOGGED_OUT)


def test_durations_and_occupancy_come_from_the_history() -> None:
    st = AgentStatus("a", 0.0, T0)
    st.transition(S.AVAILABLE, 0.0, T0)
    st.transition(S.RINGING, 30.0, T0)
    st.transition(S.ON_CALL, 40.0, T0)
    st.transition(S.WRAP_UP, 100.0, T0)
    st.transition(S.AVAILABLE, 120.0, T0)
    st.transition(S.ON_BREAK, 160.0, T0)
    d = st.durations(until=200.0)
    assert d[S.AVAILABLE] == 70 and d[S.RINGING] == 10 and d[S.ON_CALL] == 60 and d[S.WRAP_UP] == 20
    assert d[S.ON_BREAK] == 40
    assert st.occupancy(until=200.0) == pytest.approx(80 / 160)  # breaks do not count
    assert st.durations(until=200.0, since=110.0)[S.WRAP_UP] == 10
