from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import statuses

import paas
from paas._lifecycle import check_transition

S = paas.TaskStatus

LEGAL = {
    (S.PENDING, S.QUEUED),
    (S.PENDING, S.BLOCKED),
    (S.PENDING, S.COMPLETED),
    (S.PENDING, S.PERMANENT_FAILURE),
    (S.BLOCKED, S.PENDING),
    (S.BLOCKED, S.PERMANENT_FAILURE),
    (S.QUEUED, S.PROVING),
    (S.QUEUED, S.COMPLETED),
    (S.QUEUED, S.PERMANENT_FAILURE),
    (S.PROVING, S.COMPLETED),
    (S.PROVING, S.TRANSIENT_FAILURE),
    (S.PROVING, S.PERMANENT_FAILURE),
    (S.TRANSIENT_FAILURE, S.QUEUED),
}


def test_table_is_exactly_the_documented_lifecycle() -> None:
    table = {(a, b) for a, targets in paas.ALLOWED_TRANSITIONS.items() for b in targets}
    assert table == LEGAL


@pytest.mark.parametrize(("current", "new"), sorted(LEGAL, key=str))
def test_legal_transitions_pass(current: paas.TaskStatus, new: paas.TaskStatus) -> None:
    check_transition("t", current, new)


@given(statuses, statuses)
def test_illegal_transitions_raise(
    current: paas.TaskStatus, new: paas.TaskStatus
) -> None:
    if (current, new) in LEGAL:
        return
    with pytest.raises(paas.IllegalTransition) as info:
        check_transition("t1", current, new)
    assert info.value.current is current and info.value.requested is new
    assert f"{current} -> {new}" in str(info.value)


@pytest.mark.parametrize("status", list(S))
def test_terminal_statuses_have_no_exit(status: paas.TaskStatus) -> None:
    assert status.is_terminal == (not paas.ALLOWED_TRANSITIONS[status])


@given(st.lists(statuses, max_size=30))
def test_walks_through_the_table_end_only_in_reachable_states(
    path: list[paas.TaskStatus],
) -> None:
    current = S.PENDING
    for new in path:
        if (current, new) in LEGAL:
            check_transition("t", current, new)
            current = new
        else:
            with pytest.raises(paas.IllegalTransition):
                check_transition("t", current, new)
    assert current in paas.ALLOWED_TRANSITIONS
