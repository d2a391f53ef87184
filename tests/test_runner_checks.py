"""The runner's full-check policy: when each touched scope is compared in full (no server needed)."""

from __future__ import annotations

import pytest
from _support import SilentPool

from kalammodel.errors import UsageError
from kalammodel.model import Column, ColumnType, TableSpec
from kalammodel.runner import Runner

B, T = ColumnType.BIGINT, ColumnType.TEXT


def session_with_scopes(sizes: dict[str, int], **options):
    """A session whose model holds one USER table with ``sizes[user]`` rows per user, all touched."""
    runner = Runner(object(), SilentPool(), **options)
    session = runner.session("ns")
    spec = TableSpec("t", "USER", [Column("id", B, primary_key=True), Column("v", T)])
    session.model.create_table("root", spec)
    for user, rows in sizes.items():
        session.model.insert(user, "t", ["id", "v"], [B, T], [(k, "x") for k in range(rows)])
        session._dirty.add(("t", user))
    checked: list[tuple[int, str]] = []
    session._check_scope = lambda table, owner: (  # type: ignore[method-assign]
        checked.append((session.step_index, owner)),
        session._dirty.discard((table, owner)),
        session._compared_at.__setitem__((table, owner), session.step_index),
    )
    return session, checked


def run_periodic(session, steps: int) -> None:
    """Advance ``steps`` steps, touching every scope each step, with the runner's periodic check."""
    for _ in range(steps):
        session.step_index += 1
        for owner in ("user1", "user2"):
            session._dirty.add(("t", owner))
        if (session.step_index + 1) % session.runner.check_every == 0:
            session.check_all(due_only=True)


def test_small_scopes_are_compared_every_check_every_steps():
    """A scope within check_every * check_rows_per_step rows is compared at every periodic check."""
    session, checked = session_with_scopes({"user1": 100, "user2": 3})
    run_periodic(session, 40)
    assert [i for i, o in checked if o == "user1"] == [9, 19, 29, 39]
    assert [i for i, o in checked if o == "user2"] == [9, 19, 29, 39]


def test_large_scopes_are_compared_every_rows_over_budget_steps():
    """A 5,000-row scope waits 5000 / check_rows_per_step steps; teardown still compares it."""
    session, checked = session_with_scopes({"user1": 5000, "user2": 3}, check_rows_per_step=25)
    run_periodic(session, 420)
    assert [i for i, o in checked if o == "user1"] == [199, 399]
    assert len([i for i, o in checked if o == "user2"]) == 42
    session.step_index += 1
    session._dirty.add(("t", "user1"))
    session.check_all()
    assert checked[-1] == (420, "user1")
    assert not session._dirty


def test_no_scope_waits_longer_than_its_interval():
    """Between two full comparisons of a touched scope there are never more than its interval's steps."""
    session, checked = session_with_scopes(
        {"user1": 777, "user2": 260}, check_every=7, check_rows_per_step=30
    )
    run_periodic(session, 500)
    for owner, interval in (("user1", 26), ("user2", 9)):
        times = [-1] + [i for i, o in checked if o == owner]
        assert max(b - a for a, b in zip(times, times[1:])) <= interval, owner


def test_check_rows_per_step_must_be_positive():
    """A zero rows-per-step budget is refused with a hint."""
    with pytest.raises(UsageError, match="check_rows_per_step"):
        Runner(object(), SilentPool(), check_rows_per_step=0)
