"""The step-level reducer (kalammodel.generation.reduce) against scripted replays: no server needed.

A scripted replay diverges when a given set of "culprit" steps is present, in order; the reducer must find
exactly them, keep the invariant, cut the program at the diverging step, and stay within its budgets.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kalammodel.errors import Divergence
from kalammodel.generation import reduce_steps, simplifications
from kalammodel.model import ColumnType
from kalammodel.runner import RunResult
from kalammodel.steps import Flush, Insert, Step


def insert(key: int, *more: int) -> Insert:
    return Insert("user1", "t0", ("id",), (ColumnType.BIGINT,), tuple((k,) for k in (key, *more)))


def program(n: int) -> list[Step]:
    return [insert(i) for i in range(n)]


class Script:
    """Diverges (``invariant``) at the last culprit when every culprit appears, in order; counts replays."""

    def __init__(self, culprits: Sequence[Step], invariant: str = "isolation"):
        self.culprits = list(culprits)
        self.invariant = invariant
        self.replays = 0

    def __call__(self, steps: Sequence[Step]) -> RunResult:
        self.replays += 1
        want = iter(self.culprits)
        target = next(want, None)
        for i, step in enumerate(steps):
            if step == target:
                target = next(want, None)
                if target is None:
                    div = Divergence(self.invariant, "scripted", step_index=i)
                    return RunResult(ok=False, divergence=div, steps_run=i + 1)
        return RunResult(ok=True, steps_run=len(steps))


def first_divergence(script: Script, steps: list[Step]) -> Divergence:
    result = script(steps)
    assert result.divergence is not None
    return result.divergence


@given(n=st.integers(3, 40), data=st.data())
def test_reduces_to_exactly_the_culprits(n, data):
    """Whatever the program length and wherever the culprits are, the result is the culprits, in order."""
    steps = program(n)
    idx = sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=3)))
    script = Script([steps[i] for i in idx])
    div = first_divergence(script, steps)
    result = reduce_steps(script, steps, div)
    assert result.reproduced
    assert result.steps == [steps[i] for i in idx]
    assert result.divergence.invariant == "isolation"
    assert result.replays == script.replays - 1  # the reducer counts its own replays only


def test_program_is_cut_at_the_diverging_step():
    """Steps after the divergence never ran; they go without costing a replay each."""
    steps = program(30)
    script = Script([steps[0], steps[1]])
    result = reduce_steps(script, steps, first_divergence(script, steps))
    assert result.steps == steps[:2]
    assert result.replays <= 8


def test_another_invariant_does_not_count():
    """A candidate that diverges on a different invariant is a different bug: not accepted."""
    steps = program(6)
    a = Script([steps[4]], invariant="uniqueness")

    def replay(candidate: Sequence[Step]) -> RunResult:
        # with step 1 present, the program fails on isolation at step 4; without it, on uniqueness
        if steps[1] in candidate and steps[4] in candidate:
            return RunResult(ok=False, divergence=Divergence("isolation", "x"), steps_run=candidate.index(steps[4]) + 1)
        return a(candidate)

    result = reduce_steps(replay, steps, Divergence("isolation", "x"))
    assert result.steps == [steps[1], steps[4]]


def test_multi_row_insert_is_simplified_to_the_row_that_matters():
    culprit = insert(7)
    steps = [insert(1), insert(5, 7, 9), Flush("dba", "t0")]

    def replay(candidate: Sequence[Step]) -> RunResult:
        rows = {r for s in candidate if isinstance(s, Insert) for r in s.rows}
        if (7,) in rows and any(isinstance(s, Flush) for s in candidate):
            return RunResult(ok=False, divergence=Divergence("soft_delete", "x"), steps_run=len(candidate))
        return RunResult(ok=True, steps_run=len(candidate))

    result = reduce_steps(replay, steps, Divergence("soft_delete", "x"))
    assert result.steps == [culprit, Flush("dba", "t0")]


def test_simplifications_of_single_row_and_rowless_steps():
    assert list(simplifications(insert(1))) == []
    assert list(simplifications(Flush("dba", "t0"))) == []
    assert list(simplifications(insert(1, 2))) == [insert(1), insert(2)]


def test_flaky_failure_is_left_as_it_was():
    """A program that no longer diverges on replay is not reduced, and says so."""
    steps = program(5)
    calls = []

    def never(candidate: Sequence[Step]) -> RunResult:
        calls.append(candidate)
        return RunResult(ok=True, steps_run=len(candidate))

    div = Divergence("hot_cold_consistency", "x")
    result = reduce_steps(never, steps, div)
    assert not result.reproduced and result.steps == steps and result.divergence is div and len(calls) == 1


@pytest.mark.parametrize("cap", [1, 5, 12])
def test_replay_budget_is_respected(cap):
    steps = program(40)
    script = Script([steps[3], steps[20], steps[39]])
    result = reduce_steps(script, steps, first_divergence(script, steps), max_replays=cap)
    assert result.replays <= cap
    assert script(result.steps).divergence is not None  # whatever it kept still fails


def test_simplifications_drop_clauses_and_insert_columns():
    """Each variant is one change away; a read loses its WHERE, ORDER BY, LIMIT/OFFSET or projection."""
    from kalammodel.model import Cmp
    from kalammodel.steps import Select

    where = Cmp("id", ColumnType.BIGINT, ">", 1)
    sel = Select("user1", "t0", ("id",), where, (("id", False),), 5, 2)
    variants = list(simplifications(sel))
    assert Select("user1", "t0", ("id",), None, (("id", False),), 5, 2) in variants
    assert Select("user1", "t0", ("id",), where, (), 5, 2) in variants
    assert Select("user1", "t0", ("id",), where, (("id", False),), 5, None) in variants
    assert Select("user1", "t0", None, where, (("id", False),), 5, 2) in variants
    assert all(v != sel for v in variants)
    wide = Insert("user1", "t0", ("id", "a", "b"), (ColumnType.BIGINT,) * 3, ((1, 2, 3),))
    assert list(simplifications(wide)) == [
        Insert("user1", "t0", ("id", "a"), (ColumnType.BIGINT,) * 2, ((1, 2),)),
        Insert("user1", "t0", ("id", "b"), (ColumnType.BIGINT,) * 2, ((1, 3),)),
    ]


def test_running_flushes_are_made_waited_when_the_failure_stays():
    """A program whose failure also shows with the flush waited for loses its timing dependence."""
    from kalammodel.steps import StartFlush

    steps = [insert(1), StartFlush("dba", "t0"), insert(2)]

    def replay(candidate: Sequence[Step]) -> RunResult:
        flushed = any(isinstance(s, Flush) for s in candidate)  # StartFlush is a Flush too
        if flushed and insert(2) in candidate:
            return RunResult(ok=False, divergence=Divergence("uniqueness", "x"), steps_run=len(candidate))
        return RunResult(ok=True, steps_run=len(candidate))

    result = reduce_steps(replay, steps, Divergence("uniqueness", "x"))
    assert result.steps == [Flush("dba", "t0"), insert(2)]
    assert type(result.steps[0]) is Flush and result.confirmed is True


def test_no_candidate_is_replayed_twice_except_the_confirmation():
    steps = program(24)
    seen: list[tuple[Step, ...]] = []
    script = Script([steps[2], steps[11], steps[17]])

    def replay(candidate: Sequence[Step]) -> RunResult:
        seen.append(tuple(candidate))
        return script(candidate)

    result = reduce_steps(replay, steps, first_divergence(script, steps))
    assert result.confirmed is True
    assert seen[-1] == tuple(result.steps)  # the confirmation replay
    assert len(set(seen[:-1])) == len(seen) - 1


def test_table_slice_keeps_the_failures_tables_and_the_steps_on_none():
    """One candidate drops every step on a table the failure is not about; pauses stay, and live steps go
    with their subscription's table; tables named in the message ("scope t1/...") are kept too."""
    from kalammodel.generation import table_slice
    from kalammodel.steps import NextBatch, Pause, Subscribe, Unsubscribe

    def on(table: str, key: int) -> Insert:
        return Insert("user1", table, ("id",), (ColumnType.BIGINT,), ((key,),))

    steps = [on("t0", 1), on("t1", 1), Subscribe("user1", "t1", "s1"), Pause(1.5), on("t2", 1),
             NextBatch("s1"), Subscribe("user1", "t0", "s2"), Unsubscribe("s2"), on("t0", 2)]  # fmt: skip
    div = Divergence("soft_delete", "missing row")
    assert table_slice(steps, div) == [on("t0", 1), Pause(1.5), Subscribe("user1", "t0", "s2"), Unsubscribe("s2"),
                                       on("t0", 2)]  # fmt: skip
    named = Divergence("isolation", "full read of scope t1/user1: unexpected row")
    assert table_slice(steps, named) == [s for s in steps if s != on("t2", 1)]
    assert table_slice([on("t0", 1), on("t0", 2)], div) is None  # nothing to drop: no replay spent


def test_the_slice_is_tried_first_and_saves_replays():
    """Culprits on one table among many steps on others: the slice finds them in far fewer replays."""

    def on(table: str, key: int) -> Insert:
        return Insert("user1", table, ("id",), (ColumnType.BIGINT,), ((key,),))

    steps = [on(f"t{1 + i % 3}", i) for i in range(30)]
    steps[4], steps[20], steps[29] = on("t0", 4), on("t0", 20), on("t0", 29)
    script = Script([steps[4], steps[20], steps[29]])
    result = reduce_steps(script, steps, first_divergence(script, steps))
    assert result.steps == [steps[4], steps[20], steps[29]]
    assert result.replays <= 12, result.replays
