"""A divergence names the invariant a KalamDB developer would look at: fixed programs on a server with a
planted partition leak (``user_select_leak``: a USER-table read with a range predicate returns every user's
matching rows) must be reported as ``isolation`` however the leak shows up."""

from __future__ import annotations

from typing import Any

import pytest
from _support import SilentPool, embedded_server

from kalammodel.checks.live import live_extension
from kalammodel.client import Pending
from kalammodel.errors import Divergence
from kalammodel.model import Cmp, Column, ColumnType, ExpectOk, Model, Outcome, TableSpec
from kalammodel.runner import Runner
from kalammodel.steps import (
    AlterAddColumn,
    AlterDropColumn,
    AwaitFlush,
    Count,
    CreateTable,
    Delete,
    Insert,
    Pause,
    ResubscribeFromSeq,
    Select,
    StartFlush,
    StreamInsert,
    StreamSelect,
    Subscribe,
    Update,
)

COLS = (Column("id", ColumnType.BIGINT, primary_key=True), Column("v", ColumnType.TEXT))
TYPES = (ColumnType.BIGINT, ColumnType.TEXT)
RANGE = Cmp("id", ColumnType.BIGINT, ">=", 0)


def _run_with(
    faults: tuple[str, ...], steps: list[Any], server_args: tuple[str, ...] = (), **runner: Any
) -> Any:
    """``steps`` run once on a fresh server with ``faults`` on (Runner options ``runner``); the RunResult."""
    with embedded_server(*faults, server_args=server_args) as (target, pool):
        return Runner(target, pool, **runner).run_steps(steps)


#: a pause long enough for a 1 s TTL row to be surely gone by the model
PAST_TTL_1S = 1 + Model().stream_slack + 0.25


@pytest.fixture(scope="module")
def leaky_runner():
    with embedded_server("user_select_leak") as (target, pool):
        yield Runner(target, pool, extensions=[live_extension])


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
        ],
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
        ],
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
        ],
    )
    assert result.divergence is not None, result
    assert result.divergence.invariant == "isolation", result.divergence
    assert "SQL read of subscription s1" in result.divergence.message


def test_same_programs_pass_on_a_correctembedded_server(kalamdb_target, actor_pool):
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


@pytest.fixture(scope="module")
def wrong_partition_runner():
    """A server whose EXECUTE AS USER writes land in the caller's own partition (``execute_as_wrong_partition``)."""
    with embedded_server("execute_as_wrong_partition") as (target, pool):
        yield Runner(target, pool, extensions=[live_extension])


def test_duplicate_key_from_a_write_in_the_wrong_partition_is_isolation(wrong_partition_runner):
    """svc owns id=5; svc EXECUTE AS user1 inserts id=5 and the server lands it in svc's own partition:
    "already exists" for a key only another owner holds is isolation."""
    result = wrong_partition_runner.run_steps(
        [
            table(),
            Insert("svc", "t0", ("id", "v"), TYPES, ((5, "svc's"),)),
            Insert("svc", "t0", ("id", "v"), TYPES, ((5, "user1's"),), "user1"),
        ],
    )
    assert result.divergence is not None, result
    assert result.divergence.step_index == 2
    assert result.divergence.invariant == "isolation", result.divergence


def test_another_users_row_in_a_snapshot_is_isolation(wrong_partition_runner):
    """dba EXECUTE AS syn_a writes a STREAM row (not read back: STREAM rows expire) that lands in dba's
    partition; dba's subscription snapshot then holds syn_a's row: isolation, not live_query."""
    spec = TableSpec(name="s0", kind="STREAM", columns=COLS[1:], ttl_seconds=60)
    result = wrong_partition_runner.run_steps(
        [
            CreateTable("dba", spec),
            StreamInsert("dba", "s0", ("v",), (ColumnType.TEXT,), (("syn_a's",),), "syn_a"),
            Subscribe("dba", "s0", "s1", None, None, True),
        ],
    )
    assert result.divergence is not None, result
    assert result.divergence.step_index == 2
    assert result.divergence.invariant == "isolation", result.divergence
    assert "snapshot row" in result.divergence.message


def test_rows_of_an_execute_as_stream_insert_missing_from_the_target_are_isolation(wrong_partition_runner):
    """svc EXECUTE AS user1 inserts into a STREAM table with a 60 s TTL; the rows land in svc's partition, so
    user1's scope misses exactly the rows just written: isolation, not an expiry (stream_ttl)."""
    spec = TableSpec(name="s0", kind="STREAM", columns=COLS, ttl_seconds=60)
    result = wrong_partition_runner.run_steps(
        [
            CreateTable("user1", spec),
            StreamInsert("user1", "s0", ("id", "v"), TYPES, ((1, "own"),)),
            StreamInsert("svc", "s0", ("id", "v"), TYPES, ((2, "for user1"), (3, "too")), "user1"),
            StreamSelect("user1", "s0"),
        ],
    )
    assert result.divergence is not None, result
    assert result.divergence.invariant == "isolation", result.divergence


def test_old_values_in_the_read_back_of_an_execute_as_write_are_schema_evolution():
    """A re-added column showing its old value (planted ``readd_column_old_values``) in the read-back of an
    EXECUTE AS USER update: the right row came back with a wrong value, which is not a partition problem."""
    cols = (
        Column("id", ColumnType.INT, primary_key=True),
        Column("c0", ColumnType.BIGINT, nullable=False),
        Column("c3", ColumnType.INT),
    )
    kinds = tuple(c.type for c in cols)
    result = _run_with(
        ("readd_column_old_values",),
        [
            CreateTable("svc", TableSpec(name="t0", kind="USER", columns=cols)),
            Insert("dba", "t0", ("id", "c0", "c3"), kinds, ((10, 17, 8),), "user2"),
            AlterDropColumn("svc", "t0", "c3"),
            AlterAddColumn("root", "t0", Column("c3", ColumnType.TIMESTAMP)),
            Update.by_pk("dba", "t0", "id", ColumnType.INT, 10, (("c0", ColumnType.BIGINT, 18),), "user2"),
        ],
    )
    assert result.divergence is not None, result
    assert result.divergence.step_index == 4
    assert result.divergence.invariant == "schema_evolution", result.divergence


def test_an_alter_makes_every_owners_scope_due_for_a_full_comparison():
    """user1's scope was compared in full right after its insert; then dba drops and re-adds the column (planted
    ``readd_column_old_values``). No write follows, yet the final comparison must read user1's rows again."""
    result = _run_with(
        ("readd_column_old_values",),
        [
            table(),
            Insert("user1", "t0", ("id", "v"), TYPES, ((1, "old"),)),
            AlterDropColumn("dba", "t0", "v"),
            AlterAddColumn("dba", "t0", Column("v", ColumnType.TEXT)),
        ],
        check_every=1,
    )
    assert result.divergence is not None, result
    assert result.divergence.invariant == "schema_evolution", result.divergence
    assert "t0/user1" in result.divergence.message, result.divergence


def test_a_pause_makes_every_stream_scope_due_for_a_full_comparison():
    """user1's STREAM scope was compared right after the insert; rows never expire (planted
    ``stream_never_expires``). After a pause past the TTL the final comparison must read the scope again."""
    spec = TableSpec(name="s0", kind="STREAM", columns=COLS[1:], ttl_seconds=1)
    result = _run_with(
        ("stream_never_expires",),
        [
            CreateTable("dba", spec),
            StreamInsert("user1", "s0", ("v",), (ColumnType.TEXT,), (("gone soon",),)),
            Pause(PAST_TTL_1S),
        ],
        check_every=1,
    )
    assert result.divergence is not None, result
    assert result.divergence.invariant == "stream_ttl", result.divergence


def test_an_expired_stream_row_equal_to_another_owners_row_is_stream_ttl():
    """user1's PK-less STREAM row outlives its TTL (planted ``stream_never_expires``) while user2 now holds an
    equal row: the reader's own expired row, so stream_ttl, not a leak of user2's row (isolation)."""
    spec = TableSpec(name="s0", kind="STREAM", columns=COLS[1:], ttl_seconds=1)
    result = _run_with(
        ("stream_never_expires",),
        [
            CreateTable("dba", spec),
            StreamInsert("user1", "s0", ("v",), (ColumnType.TEXT,), (("same",),)),
            Pause(PAST_TTL_1S),
            StreamInsert("user2", "s0", ("v",), (ColumnType.TEXT,), (("same",),)),
            StreamSelect("user1", "s0"),
        ],
    )
    assert result.divergence is not None, result
    assert result.divergence.invariant == "stream_ttl", result.divergence


def test_an_expired_stream_row_beside_a_new_row_with_its_key_is_stream_ttl():
    """user1's STREAM row id=1 outlives its TTL (planted ``stream_never_expires``) and user1 writes id=1 again:
    the read returns the key twice, but the older row is the reader's own expired one: stream_ttl, not
    uniqueness."""
    spec = TableSpec(name="s0", kind="STREAM", columns=COLS, ttl_seconds=2)  # a new row is sure for 0.5 s
    result = _run_with(
        ("stream_never_expires",),
        [
            CreateTable("dba", spec),
            StreamInsert("user1", "s0", ("id", "v"), TYPES, ((1, "old"),)),
            Pause(PAST_TTL_1S + 1),
            StreamInsert("user1", "s0", ("id", "v"), TYPES, ((1, "new"),)),
            StreamSelect("user1", "s0"),
        ],
    )
    assert result.divergence is not None, result
    assert result.divergence.invariant == "stream_ttl", result.divergence


def test_old_values_under_a_readded_name_of_a_stream_row_that_may_expire_are_schema_evolution():
    """A PK-less STREAM row near its TTL (a maybe-row) shows its old value under a re-added column name
    (planted ``readd_column_old_values``): compared without the re-added column it is allowed, so the
    difference is the schema's (schema_evolution), not an expiry (stream_ttl)."""
    d, ts = ColumnType.DOUBLE, ColumnType.TIMESTAMP
    cols = (Column("c0", d, nullable=False), Column("c1", ts, nullable=False), Column("c2", ColumnType.BIGINT))
    result = _run_with(
        ("readd_column_old_values",),
        [
            CreateTable("dba", TableSpec(name="s0", kind="STREAM", columns=cols, ttl_seconds=1)),
            StreamInsert("svc", "s0", ("c0", "c1"), (d, ts), ((-80.25, 1700020372000000),)),
            AlterDropColumn("svc", "s0", "c0"),
            AlterAddColumn("root", "s0", Column("c0", ColumnType.INT)),
        ],
    )
    assert result.divergence is not None, result
    assert result.divergence.invariant == "schema_evolution", result.divergence


def test_an_expired_stream_row_in_a_snapshot_is_stream_ttl():
    """A STREAM row past its TTL (planted ``stream_never_expires``) first seen in a subscription's snapshot is a
    TTL failure, not a live-query one."""
    spec = TableSpec(name="s0", kind="STREAM", columns=COLS[1:], ttl_seconds=1)
    result = _run_with(
        ("stream_never_expires",),
        [
            CreateTable("dba", spec),
            StreamInsert("user1", "s0", ("v",), (ColumnType.TEXT,), (("gone soon",),)),
            Pause(PAST_TTL_1S),
            Subscribe("user1", "s0", "s1", None, None, True),
        ],
        extensions=[live_extension],
    )
    assert result.divergence is not None, result
    assert result.divergence.step_index == 3, result.divergence
    assert result.divergence.invariant == "stream_ttl", result.divergence


def test_old_values_under_a_readded_name_of_a_stream_table_are_schema_evolution():
    """On a STREAM table without PRIMARY KEY, a re-added column showing the dropped one's value (planted
    ``readd_column_old_values``) is a schema-evolution failure, not a TTL one: the rows match otherwise."""
    cols = (Column("v", ColumnType.TEXT), Column("w", ColumnType.TEXT))
    spec = TableSpec(name="s0", kind="STREAM", columns=cols, ttl_seconds=60)
    result = _run_with(
        ("readd_column_old_values",),
        [
            CreateTable("dba", spec),
            StreamInsert("user1", "s0", ("v", "w"), (ColumnType.TEXT,) * 2, (("a", "old"),)),
            AlterDropColumn("dba", "s0", "w"),
            AlterAddColumn("dba", "s0", Column("w", ColumnType.TEXT)),
            StreamSelect("user1", "s0", None, None, (), None, None),
        ],
    )
    assert result.divergence is not None, result
    assert result.divergence.step_index == 4, result.divergence
    assert result.divergence.invariant == "schema_evolution", result.divergence


def test_resume_of_an_open_subscription_catches_a_replay():
    """With from_seq_replays planted, resuming a still-open subscription (no unsubscribe step before it) gets
    the change at from_seq_id again: a live_query divergence at the resume step."""
    steps = [
        CreateTable("user1", TableSpec(name="t0", kind="USER", columns=COLS)),
        Insert("user1", "t0", ("id", "v"), TYPES, ((1, "a"),)),
        Subscribe("user1", "t0", "s1"),
        ResubscribeFromSeq("s2", "s1"),
    ]
    result = _run_with(("from_seq_replays",), steps, extensions=[live_extension])
    assert result.divergence is not None, result
    assert (result.divergence.invariant, result.divergence.step_index) == ("live_query", 3), result.divergence


def _snapshot_during_a_slow_flush(steps: list[Any], delay_ms: int) -> Divergence:
    """The divergence of ``steps`` with flush_read_gap planted and flushes slowed to ``delay_ms``, live queries
    on and no read at the flush's start (so that the subscription's snapshot is the first read in the flush)."""
    result = _run_with(
        ("flush_read_gap",),
        steps,
        server_args=("--flush-delay-ms", str(delay_ms)),
        extensions=[live_extension],
        read_at_flush_start=False,
    )
    assert result.divergence is not None, result
    return result.divergence


def test_snapshot_missing_rows_during_a_running_flush_is_hot_cold():
    """With flush_read_gap planted (reads miss the rows a running flush moves), a subscription opened while the
    flush runs gets a snapshot short of them: the flush's failure (hot_cold_consistency), as a SELECT missing
    them is; live_query would split one bug in two, and the reducer keeps only candidates that fail alike."""
    steps = [
        CreateTable("user1", TableSpec(name="t0", kind="USER", columns=COLS)),
        Insert("user1", "t0", ("id", "v"), TYPES, ((1, "a"), (2, "b"))),
        StartFlush("dba", "t0"),
        Subscribe("user1", "t0", "s1", batch_size=5),
    ]
    divergence = _snapshot_during_a_slow_flush(steps, delay_ms=1500)
    assert (divergence.invariant, divergence.step_index) == ("hot_cold_consistency", 3), divergence


def test_a_full_snapshot_batch_missing_rows_of_a_running_flush_is_hot_cold():
    """Rows written after the flush began fill the batch, so it is full and says has_more=false, yet misses the
    rows the flush moves: the job is still running when the batch arrives, so the flush's failure."""
    steps = [
        CreateTable("user1", TableSpec(name="t0", kind="USER", columns=COLS)),
        Insert("user1", "t0", ("id", "v"), TYPES, ((1, "a"), (2, "b"))),
        StartFlush("dba", "t0"),
        Insert("user1", "t0", ("id", "v"), TYPES, ((3, "c"), (4, "d"))),
        Subscribe("user1", "t0", "s1", batch_size=2),
    ]
    divergence = _snapshot_during_a_slow_flush(steps, delay_ms=3000)
    assert (divergence.invariant, divergence.step_index) == ("hot_cold_consistency", 4), divergence


def test_a_full_batch_ending_early_after_the_flush_finished_is_live_query():
    """has_more=false one batch early (planted ``snapshot_has_more_early``) while the model still holds a flush
    as not awaited, but its job has finished: the batching's failure (live_query), not the flush's."""
    with embedded_server("snapshot_has_more_early") as (target, pool):
        session = Runner(target, pool, extensions=[live_extension]).session()
        try:
            session.run(CreateTable("user1", TableSpec(name="t0", kind="USER", columns=COLS)))
            session.run(Insert("user1", "t0", ("id", "v"), TYPES, ((1, "a"), (2, "b"), (3, "c"))))
            session.run(StartFlush("dba", "t0"))
            job = session.model.tables["t0"].flush.running_job
            assert job is not None and pool.root.wait_for_job(job, timeout=30)["status"] == "completed"
            with pytest.raises(Divergence) as caught:
                session.run(Subscribe("user1", "t0", "s1", batch_size=2))
            assert caught.value.invariant == "live_query", caught.value
        finally:
            session.close()


def test_every_scope_is_read_right_after_a_flush_starts():
    """With flush_read_gap planted, a read while the flush runs misses its rows. The runner reads every scope of
    the table right after a flush starts, so the gap is seen at the start_flush step even when no read step
    follows before the flush is awaited (before, the periodic check had to land there by chance: reductions
    of such failures stalled at 12 steps)."""
    steps = [
        CreateTable("user1", TableSpec(name="t0", kind="USER", columns=COLS)),
        Insert("user1", "t0", ("id", "v"), TYPES, ((1, "a"),)),
        Insert("user2", "t0", ("id", "v"), TYPES, ((1, "b"),)),
        StartFlush("dba", "t0"),
        AwaitFlush("t0"),
    ]
    result = _run_with(("flush_read_gap",), steps, server_args=("--flush-delay-ms", "1500"))
    assert result.divergence is not None, result
    assert (result.divergence.invariant, result.divergence.step_index) == ("hot_cold_consistency", 3), (
        result.divergence
    )


def test_a_read_of_a_stream_table_failing_after_a_readd_is_schema_evolution():
    """The old BIGINT values under a column name re-added as TEXT (planted ``readd_column_old_values``) make the
    read fail: an expiry never fails a statement, so schema_evolution, not stream_ttl."""
    cols = (Column("id", ColumnType.TEXT, primary_key=True), Column("c0", ColumnType.BIGINT))
    result = _run_with(
        ("readd_column_old_values",),
        [
            CreateTable("dba", TableSpec(name="s0", kind="STREAM", columns=cols, ttl_seconds=60)),
            StreamInsert("user1", "s0", ("id", "c0"), (ColumnType.TEXT, ColumnType.BIGINT), (("k", 5),)),
            AlterDropColumn("dba", "s0", "c0"),
            AlterAddColumn("dba", "s0", Column("c0", ColumnType.TEXT)),
            StreamSelect("user1", "s0"),
        ],
    )
    assert result.divergence is not None, result
    assert result.divergence.invariant == "schema_evolution", result.divergence


# ---------------------------------------------------------------------- a deleted key refused on re-insert

#: KalamDB 0.4.3's answer to an INSERT of a key deleted after a flush (docs/kalamdb-findings.md #2)
ALREADY_EXISTS = Outcome(
    ok=False,
    status=400,
    code="SQL_EXECUTION_ERROR",
    message="Statement 1 failed: Execution error: Failed to insert batch: Already exists: Primary key violation: "
    "value '1' already exists in column 'id'",
)


def _classify_refused_insert(earlier: list[Any]) -> str:
    """The invariant of dba's INSERT of id=1, which the model accepts after ``earlier``, refused as a duplicate."""
    session = Runner(object(), SilentPool()).session("ns")
    for step in [table(), *earlier]:
        step.apply(session.model)
    insert = Insert("dba", "t0", ("id", "v"), TYPES, ((1, "again"),))
    (expectation,) = insert.apply(session.model)
    assert isinstance(expectation, ExpectOk)
    return session._classify(insert, expectation, ALREADY_EXISTS, False, "dba")


def test_a_deleted_key_refused_on_reinsert_is_soft_delete_even_when_another_owner_holds_it():
    """Found on the real server: dba's own id=1 deleted (after a flush), user2 holding id=1 too; "already exists"
    is the tombstone not freeing the key (soft_delete), not a write in the wrong partition (isolation)."""
    own_then_deleted = [
        Insert("dba", "t0", ("id", "v"), TYPES, ((1, "user2's"),), "user2"),
        Insert("dba", "t0", ("id", "v"), TYPES, ((1, "dba's"),)),
        Delete.by_pk("dba", "t0", "id", ColumnType.BIGINT, 1),
    ]
    assert _classify_refused_insert(own_then_deleted) == "soft_delete"
    assert _classify_refused_insert(own_then_deleted[1:]) == "soft_delete"


def test_a_key_only_another_owner_ever_held_stays_isolation():
    assert _classify_refused_insert([Insert("dba", "t0", ("id", "v"), TYPES, ((1, "user2's"),), "user2")]) == (
        "isolation"
    )


# ---------------------------------------------------------------------- a paged read and COUNT(*) disagreeing


class _CountMismatch:
    """A client whose every full read ends like KalamClient.read_all when COUNT(*) says more rows."""

    def submit_read_all(self, table: str, **kwargs: Any) -> Pending[Any]:
        def fail() -> Any:
            raise Divergence("read_all_complete", f"paging {table} returned 1 rows but COUNT(*) says 2")

        return Pending.done(fail)


def _full_read_divergence(flushing: bool) -> Divergence:
    pool = SilentPool()
    pool.client = lambda name: _CountMismatch()  # type: ignore[attr-defined]
    session = Runner(object(), pool).session("ns")
    table().apply(session.model)
    Insert("user1", "t0", ("id", "v"), TYPES, ((1, "a"),)).apply(session.model)
    if flushing:
        StartFlush("dba", "t0").apply(session.model)
        session.model.flush_started("t0", "FL-1")
    session._check_scope("t0", "user1")
    with pytest.raises(Divergence) as raised:
        session.settle()
    return raised.value


def test_a_count_mismatch_during_a_flush_is_hot_cold_consistency():
    """On the real server a read at a flush's start paged 1 row while COUNT(*) counted a deleted row the flush
    had put back: the two reads saw the moving rows differently — hot_cold_consistency, not a paging bug."""
    during = _full_read_divergence(flushing=True)
    assert during.invariant == "hot_cold_consistency"
    assert "while a flush of t0 runs" in during.message
    assert _full_read_divergence(flushing=False).invariant == "read_all_complete"


def test_old_values_of_a_readded_column_in_a_snapshot_are_schema_evolution():
    """Found on the real server (docs/kalamdb-findings.md #4): after DROP COLUMN c1 and ADD COLUMN c1, a snapshot
    row shows the old c1. Named as a SELECT showing it would be: schema_evolution, not live_query."""
    cols = (*COLS, Column("c1", ColumnType.BIGINT))
    program = [
        CreateTable("dba", TableSpec(name="t0", kind="USER", columns=cols)),
        Insert("dba", "t0", ("id", "c1"), (ColumnType.BIGINT, ColumnType.BIGINT), ((1, 9),), "user2"),
        AlterDropColumn("svc", "t0", "c1"),
        AlterAddColumn("svc", "t0", Column("c1", ColumnType.TIMESTAMP)),
        Subscribe("user2", "t0", "s1", None, None, True, 1),
    ]
    result = _run_with(("readd_column_old_values",), program, extensions=[live_extension])
    assert result.divergence is not None, result
    assert result.divergence.step_index == 4
    assert "snapshot row" in result.divergence.message
    assert result.divergence.invariant == "schema_evolution", result.divergence
