"""A divergence names the invariant a KalamDB developer would look at: fixed programs on a server with a
planted partition leak (``user_select_leak``: a USER-table read with a range predicate returns every user's
matching rows) must be reported as ``isolation`` however the leak shows up."""

from __future__ import annotations

import pytest

from kalammodel.live import live_extension
from kalammodel.model import Cmp, Column, ColumnType, TableSpec
from kalammodel.runner import Runner
from kalammodel.steps import Count, CreateTable, Insert, Select, Subscribe
from kalammodel.targets import DEFAULT_IDENTITIES, ActorPool, EmbeddedTarget

COLS = (Column("id", ColumnType.BIGINT, primary_key=True), Column("v", ColumnType.TEXT))
TYPES = (ColumnType.BIGINT, ColumnType.TEXT)
RANGE = Cmp("id", ColumnType.BIGINT, ">=", 0)


@pytest.fixture(scope="module")
def leaky_runner():
    target = EmbeddedTarget(("user_select_leak",))
    target.start()
    pool = ActorPool.for_target(target, DEFAULT_IDENTITIES)
    try:
        pool.open_all()
        yield Runner(target, pool, extensions=[live_extension])
    finally:
        pool.close()
        target.close()


def table() -> CreateTable:
    return CreateTable("dba", TableSpec(name="t0", kind="USER", columns=COLS))


def test_leaked_row_with_a_key_the_reader_also_has_is_isolation(leaky_runner):
    """Both users own id=0; the leaked row looks like a duplicate key, but it is user1's row: isolation."""
    result = leaky_runner.run_steps(
        [
            table(),
            Insert("user1", "t0", ("id", "v"), TYPES, ((0, "user1's"),)),
            Insert("user2", "t0", ("id", "v"), TYPES, ((0, "user2's"),)),
            Select("user2", "t0", None, RANGE, (("id", False),)),
        ]
    )
    assert result.divergence is not None, result
    assert result.divergence.invariant == "isolation", result.divergence
    assert result.divergence.step_index == 3


def test_count_that_includes_other_users_rows_is_isolation(leaky_runner):
    result = leaky_runner.run_steps(
        [
            table(),
            Insert("user1", "t0", ("id", "v"), TYPES, ((1, "a"), (2, "b"))),
            Count("user2", "t0", RANGE),
        ]
    )
    assert result.divergence is not None, result
    assert result.divergence.invariant == "isolation", result.divergence
    assert "n=0" in str(result.divergence.expected) and "2" in str(result.divergence.actual)


def test_leak_seen_through_a_subscriptions_sql_cross_check_is_isolation(leaky_runner):
    """The live extension reads the subscription's query over SQL; when that read (not the subscription) is
    wrong, the divergence is the read's: isolation, not live_query."""
    result = leaky_runner.run_steps(
        [
            table(),
            Insert("user1", "t0", ("id", "v"), TYPES, ((3, "c"),)),
            Subscribe("user2", "t0", "s1", ("id", "v"), RANGE, True),
        ]
    )
    assert result.divergence is not None, result
    assert result.divergence.invariant == "isolation", result.divergence
    assert "SQL read of subscription s1" in result.divergence.message


def test_same_programs_pass_on_a_correct_server(kalamdb_target, actor_pool):
    """The three programs above agree with the model when nothing leaks (no false alarm)."""
    runner = Runner(kalamdb_target, actor_pool, extensions=[live_extension])
    for steps in (
        [table(), Insert("user1", "t0", ("id", "v"), TYPES, ((0, "x"),)),
         Insert("user2", "t0", ("id", "v"), TYPES, ((0, "y"),)), Select("user2", "t0", None, RANGE, (("id", False),))],
        [table(), Insert("user1", "t0", ("id", "v"), TYPES, ((1, "a"),)), Count("user2", "t0", RANGE)],
        [table(), Insert("user1", "t0", ("id", "v"), TYPES, ((3, "c"),)),
         Subscribe("user2", "t0", "s1", ("id", "v"), RANGE, True)],
    ):  # fmt: skip
        result = runner.run_steps(steps)
        assert result.ok, result
