"""The known-bugs registry (kalammodel.verdicts): each finding of docs/kalamdb-findings.md is matched by the
divergence kalammodel raises for it and by nothing else; malformed data files are named errors; the ledger
counts matches and reports bugs that stayed silent while their trigger ran."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

import kalammodel.verdicts as verdicts
from kalammodel.errors import Divergence, Invariant, UsageError
from kalammodel.model import (
    And,
    Cmp,
    Column,
    ColumnType,
    In,
    IsNotNull,
    IsNull,
    Model,
    Not,
    Or,
    Outcome,
    TableSpec,
    compare_outcome,
)
from kalammodel.steps import (
    AlterAddColumn,
    AlterDropColumn,
    CreateTable,
    Delete,
    Flush,
    Insert,
    Select,
    StartFlush,
    Step,
    StreamInsert,
    StreamSelect,
    Subscribe,
    Update,
    step_from_data,
)
from kalammodel.verdicts import KnownBugLedger, Program, load_known_bugs, match, parse_known_bugs

ROOT = Path(__file__).resolve().parents[1]
BI, TX, INT = ColumnType.BIGINT, ColumnType.TEXT, ColumnType.INT
COLS = (Column("id", BI, primary_key=True), Column("v", TX))
NUMS = (Column("id", BI, primary_key=True), Column("v", BI))
BUGS = load_known_bugs()


def create(
    name: str = "t0", kind: str = "USER", columns: tuple[Column, ...] = COLS, ttl: int | None = None
) -> CreateTable:
    return CreateTable("dba", TableSpec(name=name, kind=kind, columns=columns, ttl_seconds=ttl))


def insert(
    rows: tuple[tuple[Any, ...], ...], table: str = "t0", actor: str = "user1", types: Any = (BI, TX)
) -> Insert:
    return Insert(actor, table, ("id", "v"), types, rows)


def div(
    invariant: str, message: str, steps: list[Step], request: str | None = None, index: int | None = None
) -> Divergence:
    """A divergence as the runner builds one: at ``index`` (default: the last step), describing that step."""
    at = len(steps) - 1 if index is None else index
    return Divergence(invariant, message, step_index=at, step=steps[at].describe(), request=request)


def problem(step: Step, before: list[Step], outcome: Outcome) -> str:
    """What compare_outcome says about ``outcome`` for ``step`` after ``before`` (the model's own message)."""
    model = Model()
    model.clock = 1000.0
    for earlier in before:
        earlier.apply(model)
        if earlier.kind == "flush":
            model.flush_started(earlier.table, "FL-1")  # type: ignore[attr-defined]
            model.flush_completed(earlier.table)  # type: ignore[attr-defined]
    (expectation,) = step.apply(model)
    found = compare_outcome(expectation, outcome)
    assert found is not None
    return found


@attrs.frozen
class Begin(Step):
    """A stand-in for the BEGIN step transactions will need (docs/kalamdb-findings.md #3)."""

    kind: ClassVar[str] = "begin"
    actor: str = "root"
    as_user: str | None = None


@attrs.frozen
class Rollback(Step):
    kind: ClassVar[str] = "rollback"
    actor: str = "root"
    as_user: str | None = None


# ---------------------------------------------------------------------- the divergences of each bug


def case_1_read() -> tuple[list[Step], Divergence]:
    """Finding 1's reproduction: the full read after the second flush shows the deleted row."""
    steps: list[Step] = [
        create(),
        insert(((1, "a"), (2, "b"), (3, "c"))),
        Flush("dba", "t0"),
        Delete.by_pk("user1", "t0", "id", BI, 1),
        Update.by_pk("user1", "t0", "id", BI, 2, (("v", TX, "B"),)),
        Flush("dba", "t0"),
    ]
    message = "full read of scope t0/user1: unexpected row (1, 'a', 7, False) (appears 1x, model allows 0x)"
    return steps, div("soft_delete", message, steps, "[user1] SELECT * FROM ns.t0 ORDER BY id")


def case_1_mid_flush() -> tuple[list[Step], Divergence]:
    """The stateful run's 7-step program: a read at the start of the next flush pages 1 row, COUNT(*) says 2."""
    steps: list[Step] = [
        create(kind="SHARED"),
        insert(((1, "a"),), actor="dba"),
        Flush("dba", "t0"),
        Delete.by_pk("dba", "t0", "id", BI, 1),
        insert(((2, "b"),), actor="dba"),
        StartFlush("dba", "t0"),
    ]
    message = "while a flush of t0 runs: paging ns.t0 returned 1 rows but COUNT(*) says 2"
    return steps, div("hot_cold_consistency", message, steps, "[root] SELECT * FROM ns.t0 ORDER BY id")


def case_1_periodic() -> tuple[list[Step], Divergence]:
    """A periodic full read of t0 diverges at a step on another table: the message names the table."""
    steps, _ = case_1_read()
    steps = [*steps, create("t1"), Select("user1", "t1")]
    message = "full read of scope t0/user1: unexpected row (1, 'a', 7, False) (appears 1x, model allows 0x)"
    return steps, div("soft_delete", message, steps, "[user1] SELECT * FROM ns.t0 ORDER BY id")


def case_1_snapshot() -> tuple[list[Step], Divergence]:
    steps, _ = case_1_read()
    steps = [*steps, Subscribe("user1", "t0", "s1")]
    message = (
        "subscription s1 (user1 on t0): snapshot row {'id': 1, 'v': 'a', '_seq': 7} is not a row the snapshot "
        "may hold (model candidates: [{'id': 2, 'v': 'B'}, {'id': 3, 'v': 'c'}])"
    )
    return steps, div("live_query", message, steps, "[ws s1] SELECT * FROM ns.t0 options={}")


REFUSED = Outcome(
    ok=False,
    status=400,
    code="SQL_EXECUTION_ERROR",
    message="Statement 1 failed: Execution error: Failed to insert batch: Already exists: Primary key violation: "
    "value '1' already exists in column 'id'",
)


def case_2() -> tuple[list[Step], Divergence]:
    """Finding 2's reproduction: the INSERT of the deleted key is refused (named soft_delete)."""
    before: list[Step] = [
        create(),
        insert(((1, "a"), (2, "b"))),
        Flush("dba", "t0"),
        Delete.by_pk("user1", "t0", "id", BI, 1),
    ]
    again = insert(((1, "new"),))
    steps = [*before, again]
    return steps, div("soft_delete", problem(again, before, REFUSED), steps, str(again.requests("ns")[0]))


def case_2_twin() -> tuple[list[Step], Divergence]:
    """The planted twin's shrunk program and divergence (deleted_key_blocked_after_flush, seed 2 of
    tests/detection/test_detection.py::test_finds_deleted_key_blocked_after_flush)."""
    cols = (Column("id", BI, primary_key=True), Column("c0", ColumnType.DOUBLE), Column("c1", ColumnType.JSON))
    steps: list[Step] = [
        CreateTable("root", TableSpec(name="t0", kind="USER", columns=cols)),
        Insert("dba", "t0", ("id",), (BI,), ((23,),)),
        Flush("svc", "t0"),
        Delete.by_pk("dba", "t0", "id", BI, 23),
        Insert("dba", "t0", ("id",), (BI,), ((23,),)),
    ]
    message = (
        "expected success (ExpectOk(affected=1)), got error HTTP 400 SQL_EXECUTION_ERROR: Statement 1 failed: "
        "Primary key violation: a row with id=23 already exists in ns.t0"
    )
    return steps, div("soft_delete", message, steps, "[dba] INSERT INTO ns.t0 (id) VALUES (23)")


def case_3() -> tuple[list[Step], Divergence]:
    """Finding 3 as it will surface: the STREAM row written inside BEGIN/ROLLBACK is still there."""
    steps: list[Step] = [
        create("ev", "STREAM", (Column("id", TX, primary_key=True), Column("kind", TX)), ttl=60),
        Begin(),
        StreamInsert("user1", "ev", ("id", "kind"), (TX, TX), (("9", "q"),)),
        Rollback(),
        StreamSelect("user1", "ev"),
    ]
    message = "unexpected row ('9', 'q', 5) (appears 1x, model allows 0x)"
    return steps, div("stream_ttl", message, steps, "[user1] SELECT * FROM ns.ev")


def case_4() -> tuple[list[Step], Divergence]:
    """Finding 4's reproduction: after DROP and ADD of ``v`` the old values are back (schema_evolution)."""
    steps: list[Step] = [
        create(),
        insert(((1, "cold"),)),
        Flush("dba", "t0"),
        insert(((2, "hot"),)),
        AlterDropColumn("dba", "t0", "v"),
        AlterAddColumn("dba", "t0", Column("v", TX)),
        Select("user1", "t0", ("id", "v")),
    ]
    message = "unexpected row (1, 'cold') (appears 1x, model allows 0x)"
    return steps, div("schema_evolution", message, steps, "[user1] SELECT id, v FROM ns.t0")


def case_4_snapshot() -> tuple[list[Step], Divergence]:
    """The stateful run's 5-step program: a snapshot row shows the old value of the re-added ``c1``."""
    cols = (*COLS, Column("c1", BI))
    steps: list[Step] = [
        create(columns=cols),
        Insert("dba", "t0", ("id", "c1"), (BI, BI), ((1, 9),), "user2"),
        AlterDropColumn("svc", "t0", "c1"),
        AlterAddColumn("svc", "t0", Column("c1", ColumnType.TIMESTAMP)),
        Subscribe("user2", "t0", "s1", None, None, True, 1),
    ]
    message = (
        "subscription s1 (user2 on t0): snapshot row {'id': 1, 'v': None, 'c1': 9, '_seq': 3} is not a row the "
        "snapshot may hold (model candidates: [{'id': 1, 'v': None, 'c1': None}])"
    )
    return steps, div("schema_evolution", message, steps, "[ws s1] SELECT * FROM ns.t0 options={}")


def case_4_stream_redacted() -> tuple[list[Step], Divergence]:
    """The 30-minute run against KalamDB 0.4.3-rc.4: a STREAM column re-added with another type makes the table
    unreadable, and a service account sees the redacted "SQL statement failed" instead of the cast error."""
    steps: list[Step] = [
        step_from_data(
            {
                "kind": "create_table",
                "actor": "dba",
                "spec": {
                    "name": "t0",
                    "kind": "STREAM",
                    "columns": [{"name": "c0", "type": "BOOLEAN"}, {"name": "c1", "type": "TEXT"}],
                    "ttl_seconds": 3,
                },
            }
        ),
        step_from_data(
            {"kind": "stream_insert", "actor": "svc", "table": "t0", "columns": ["c1"], "types": ["TEXT"],
             "rows": [["b"]]}
        ),  # fmt: skip
        AlterDropColumn("dba", "t0", "c1"),
        AlterAddColumn("svc", "t0", Column("c1", ColumnType.BOOLEAN)),
    ]
    message = (
        "full read of scope t0/svc: expected success (ExpectRows(columns=['c0', '_seq', '_deleted', 'c1'], "
        "rows=[(None, None, False, None)])), got error HTTP 400 SQL_EXECUTION_ERROR: SQL statement failed"
    )
    return steps, div("schema_evolution", message, steps, "[svc] SELECT * FROM ns.t0 ORDER BY _seq")


NOT_NULL = (
    Column("id", INT, primary_key=True),
    Column("v", TX, nullable=False),
    Column("n", INT, nullable=False),
)


def case_5() -> tuple[list[Step], Divergence]:
    """Finding 5's reproduction: INSERT leaving out NOT NULL ``v`` succeeds (the model expects an error)."""
    before: list[Step] = [create("a", columns=NOT_NULL)]
    step = Insert("user1", "a", ("id", "n"), (INT, INT), ((1, 5),))
    outcome = Outcome(ok=True, row_count=1, message="Inserted 1 row(s)")
    steps = [*before, step]
    return steps, div("outcome", problem(step, before, outcome), steps, str(step.requests("ns")[0]))


def case_5_detected() -> tuple[list[Step], Divergence]:
    """The program and divergence tests/detection finds for the twin ``omitted_not_null_invented``."""
    columns = (
        Column("id", INT, primary_key=True),
        Column("c0", BI),
        Column("c1", INT, default=1),
        Column("c2", INT, nullable=False),
    )
    steps: list[Step] = [
        CreateTable("svc", TableSpec(name="t0", kind="USER", columns=columns)),
        Insert("dba", "t0", ("id",), (INT,), ((13,),), "user2"),
    ]
    message = (
        "expected an error ExpectError(SQL_EXECUTION_ERROR HTTP 400) (NOT NULL column 'c2' gets NULL), but the "
        "request succeeded: ok row_count=1 message='Inserted 1 row(s)'"
    )
    return steps, div("outcome", message, steps, "[dba] EXECUTE AS USER 'user2' (INSERT INTO ns.t0 (id) VALUES (13))")


def case_6() -> tuple[list[Step], Divergence]:
    """Finding 6: DROP COLUMN of the primary key answers success."""
    steps: list[Step] = [create("p", columns=NUMS), AlterDropColumn("dba", "p", "id")]
    message = (
        "expected an error ExpectError(SQL_EXECUTION_ERROR HTTP 400) (the primary key cannot be dropped), but the "
        "request succeeded: ok row_count=0 message='Table ns.p altered successfully: DROP COLUMN id (version 2)'"
    )
    return steps, div("outcome", message, steps, "[dba] ALTER TABLE ns.p DROP COLUMN id")


def case_6_detected() -> tuple[list[Step], Divergence]:
    """The program and divergence tests/detection finds for the twin ``drop_pk_column_accepted``."""
    columns = (Column("id", BI, primary_key=True), Column("c0", TX), Column("c2", INT, nullable=False))
    steps: list[Step] = [
        CreateTable("user2", TableSpec(name="t0", kind="USER", columns=columns)),
        AlterDropColumn("svc", "t0", "id"),
    ]
    message = (
        "expected an error ExpectError(SQL_EXECUTION_ERROR HTTP 400) (the primary key 'id' cannot be dropped), but "
        "the request succeeded: ok row_count=0 message='Table ns.t0 altered successfully: DROP COLUMN id (version 2)'"
    )
    return steps, div("outcome", message, steps, "[svc] ALTER TABLE ns.t0 DROP COLUMN id")


def case_7() -> tuple[list[Step], Divergence]:
    """Finding 7's reproduction with a LIMIT: ORDER BY the unselected ``v`` DESC picks by key instead."""
    steps: list[Step] = [
        create("o", columns=NUMS),
        insert(((5, 5), (1, 9), (3, 7)), "o", types=(BI, BI)),
        Select("user1", "o", ("id",), None, (("v", True),), 2),
    ]
    message = "missing row (1,) (model expects it 1x, got 0x)"
    return steps, div("outcome", message, steps, "[user1] SELECT id FROM ns.o ORDER BY v DESC LIMIT 2")


def case_7_twin() -> tuple[list[Step], Divergence]:
    """The planted twin's shrunk program and divergence (order_by_unselected_uses_pk, seed 0 of
    tests/detection/test_detection.py::test_finds_order_by_unselected_uses_pk): ORDER BY the unselected key
    DESC comes back ascending (named hot_cold_consistency: the rows were flushed)."""
    cols = (
        Column("id", BI, primary_key=True),
        Column("c0", TS),
        Column("c1", BI),
        Column("c2", TX, nullable=False),
    )
    steps: list[Step] = [
        CreateTable("root", TableSpec(name="t0", kind="USER", columns=cols)),
        Insert("root", "t0", ("id", "c2"), (BI, TX), ((10, " _"), (26, "bbBa"), (18, ""), (27, "aBB")), "user1"),
        Flush("dba", "t0"),
        Select("root", "t0", ("c2",), None, (("id", True),), None, None, "user1"),
    ]
    message = "row order differs at #0: expected ('aBB'), got (' _')"
    request = "[root as user1] EXECUTE AS USER 'user1' (SELECT c2 FROM ns.t0 ORDER BY id DESC)"
    return steps, div("hot_cold_consistency", message, steps, request)


def case_7_detected() -> tuple[list[Step], Divergence]:
    """The detection test's divergence (order_by_unselected_uses_pk, dashboards workload, seed 0): ORDER BY the
    unselected c1 DESC comes back in key order."""
    cols = (
        Column("id", BI, primary_key=True),
        Column("c0", INT),
        Column("c1", BI, nullable=False),
        Column("c2", BI),
        Column("c3", INT),
        Column("c4", TS),
    )
    rows = ((9, 1087992, 1), (10, None, 20), (26, None, 120), (14, 5, 14))
    steps: list[Step] = [
        CreateTable("dba", TableSpec(name="t1", kind="SHARED", columns=cols, access_level="DBA")),
        Insert("root", "t1", ("id", "c0", "c1"), (BI, INT, BI), rows),
        Select("root", "t1", ("c0", "c3"), None, (("c1", True),)),
    ]
    message = "row order differs at #0: expected (None, None), got (1087992, None)"
    return steps, div("outcome", message, steps, "[root] SELECT c0, c3 FROM ns.t1 ORDER BY c1 DESC")


STREAM_NO_PK = (Column("id", TX), Column("kind", TX))
STREAM_PK = (Column("id", TX, primary_key=True), Column("kind", TX))


def case_8() -> tuple[list[Step], Divergence]:
    """Finding 8's reproduction: DELETE on a STREAM table without PRIMARY KEY deletes nothing."""
    before: list[Step] = [
        create("s", "STREAM", STREAM_NO_PK, ttl=60),
        StreamInsert("user1", "s", ("id", "kind"), (TX, TX), (("1", "x"), ("1", "y"))),
    ]
    step = Delete("user1", "s", Cmp("id", TX, "=", "1"))
    outcome = Outcome(ok=True, row_count=0, message="Deleted 0 row(s)")
    steps = [*before, step]
    return steps, div("stream_ttl", problem(step, before, outcome), steps, str(step.requests("ns")[0]))


def case_9() -> tuple[list[Step], Divergence]:
    """Finding 9's reproduction: DELETE of two rows with one key reports 1 row."""
    before: list[Step] = [
        create("e", "STREAM", STREAM_PK, ttl=60),
        StreamInsert("user1", "e", ("id", "kind"), (TX, TX), (("d", "p"), ("d", "q"))),
    ]
    step = Delete("user1", "e", Cmp("id", TX, "=", "d"))
    outcome = Outcome(ok=True, row_count=1, message="Deleted 1 row(s)")
    steps = [*before, step]
    return steps, div("stream_ttl", problem(step, before, outcome), steps, str(step.requests("ns")[0]))


def case_8_detected() -> tuple[list[Step], Divergence]:
    """The program and divergence tests/detection finds for the twin ``stream_delete_without_pk_noop``."""
    columns = (Column("c0", ColumnType.DOUBLE), Column("c1", ColumnType.DOUBLE, default=-45.25))
    steps: list[Step] = [
        CreateTable("svc", TableSpec(name="t1", kind="STREAM", columns=columns, ttl_seconds=5)),
        StreamInsert("user1", "t1", ("c0",), (ColumnType.DOUBLE,), ((96.5,),)),
        Delete("user1", "t1", Not(IsNull("c0", ColumnType.DOUBLE))),
    ]
    message = "expected 1 affected row(s), got row_count=0 ('Deleted 0 row(s)')"
    return steps, div("stream_ttl", message, steps, "[user1] DELETE FROM ns.t1 WHERE (NOT c0 IS NULL)")


def case_9_detected() -> tuple[list[Step], Divergence]:
    """The program and divergence tests/detection finds for the twin ``stream_delete_counts_distinct_pks``
    (keys 30, 29, 9, 1 and 4 inserted more than once in one statement)."""
    columns = (Column("id", INT, primary_key=True), Column("c0", INT), Column("c3", INT, nullable=False))
    keys = (30, 29, 27, 0, 9, 7, 3, 23, 15, 29, 4, 6, 9, 1, 30, 9, 26, 13, 16, 14, 30, 1, 4, 28)
    steps: list[Step] = [
        CreateTable("user2", TableSpec(name="t1", kind="STREAM", columns=columns, ttl_seconds=2)),
        StreamInsert("root", "t1", ("id", "c3"), (INT, INT), tuple((k, i) for i, k in enumerate(keys))),
        Delete("root", "t1", Or([And([Cmp("c3", INT, ">", -1), IsNotNull("c0", INT)]), IsNull("c0", INT)])),
    ]
    message = "expected 24 affected row(s), got row_count=17 ('Deleted 17 row(s)')"
    return steps, div("stream_ttl", message, steps, "[root] DELETE FROM ns.t1 WHERE ...")


def case_10_select() -> tuple[list[Step], Divergence]:
    """Finding 10's reproduction: ORDER BY v LIMIT 2 OFFSET 1 gives the right rows in key order."""
    steps: list[Step] = [
        create(columns=NUMS),
        insert(((0, 30), (2, 10), (3, 0), (1, 20)), types=(BI, BI)),
        Select("user1", "t0", ("id", "v"), None, (("v", False),), 2, 1),
    ]
    message = "rows not sorted by v: #0 (1, 20) before #1 (2, 10)"
    return steps, div(
        "outcome", message, steps, "[user1] SELECT id, v FROM ns.t0 ORDER BY v ASC LIMIT 2 OFFSET 1"
    )


def case_10_snapshot() -> tuple[list[Step], Divergence]:
    """Found by the stateful run: rows written out of key order arrive in key order in the snapshot."""
    steps: list[Step] = [
        create(columns=NUMS),
        insert(((0, 30), (2, 10), (3, 0), (1, 20)), types=(BI, BI)),
        Subscribe("user1", "t0", "s1", batch_size=10),
    ]
    message = "subscription s1 (user1 on t0): snapshot rows are not in ascending _seq order: [1, 4, 2, 3]"
    return steps, div("live_query", message, steps, "[ws s1] SELECT * FROM ns.t0 options={}")


def case_10_last_rows() -> tuple[list[Step], Divergence]:
    """Found by the stateful run: ``last_rows=1`` over rows a (older) and b (newer) sends a."""
    steps: list[Step] = [
        create(columns=(Column("id", TX, primary_key=True), Column("v", TX))),
        insert((("a", "x"),), types=(TX, TX)),
        insert((("b", "y"),), types=(TX, TX)),
        Subscribe("user1", "t0", "s1", last_rows=1),
    ]
    message = (
        "subscription s1 (user1 on t0): snapshot batch #0 misses row(s) [{'id': 'b', 'v': 'y'}] "
        "(got 1 rows, has_more=False)"
    )
    return steps, div("live_query", message, steps, "[ws s1] SELECT * FROM ns.t0 options={}")


def case_10_twin() -> tuple[list[Step], Divergence]:
    """The planted twin's shrunk program and divergence (order_limit_resorted_by_pk, seed 0 of
    tests/detection/test_detection.py::test_finds_order_limit_resorted_by_pk)."""
    cols = (
        Column("id", TX, primary_key=True),
        Column("c0", ColumnType.JSON),
        Column("c1", INT),
        Column("c2", TX),
    )
    steps: list[Step] = [
        CreateTable("svc", TableSpec(name="t0", kind="USER", columns=cols)),
        Insert("user1", "t0", ("id",), (TX,), (("zz",), ("c",))),
        Subscribe("user1", "t0", "s5", None, None, True),
    ]
    message = (
        "subscription s5 (user1 on t0): snapshot rows are not in ascending _seq order: "
        "[387328930442379265, 387328930442379264]"
    )
    request = "[ws s5] SELECT * FROM ns.t0 options=LiveOptions(snapshot=True, batch_size=None, last_rows=None)"
    return steps, div("live_query", message, steps, request)


def case_11() -> tuple[list[Step], Divergence]:
    """Finding 11: after ADD COLUMN an open subscription never gets the UPDATE's change (a filter without a
    negative number: finding 15 explains the reproduction's `c0 >= -2` on its own)."""
    cols = (
        Column("id", BI, primary_key=True),
        Column("c0", BI, nullable=False),
        Column("c1", ColumnType.BOOLEAN),
    )
    steps: list[Step] = [
        create(columns=cols),
        Insert("user1", "t0", ("id", "c0", "c1"), (BI, BI, ColumnType.BOOLEAN), ((1, 5, True),)),
        Subscribe("user1", "t0", "s1", None, Cmp("c0", BI, ">=", 2)),
        AlterAddColumn("dba", "t0", Column("a5", ColumnType.DOUBLE)),
        Update.by_pk("user1", "t0", "id", BI, 1, (("c1", ColumnType.BOOLEAN, False),)),
    ]
    message = (
        "subscription s1 (user1 on t0): expected change(s) did not arrive within 5 s: "
        "['update of key 1 (write #2, step #4)']"
    )
    return steps, div("live_query", message, steps, "[ws s1] SELECT * FROM ns.t0 WHERE c0 >= 2 options={}")


def case_11_twin() -> tuple[list[Step], Divergence]:
    """The planted twin's shrunk program and divergence (live_update_lost_after_add_column, ddl_while_active
    workload, seed 1, with the live model that predicts subscriptions across ALTER TABLE)."""
    cols = (Column("id", INT, primary_key=True), Column("c0", ColumnType.BOOLEAN), Column("c1", TX, nullable=False))
    steps: list[Step] = [
        CreateTable("svc", TableSpec(name="t0", kind="SHARED", columns=cols, access_level="PUBLIC")),
        Subscribe("root", "t0", "s1", None, None, True, 3),
        Insert("root", "t0", ("id", "c1"), (INT, TX), ((13, "c "),)),
        AlterAddColumn("dba", "t0", Column("a5", TX)),
        Update.by_pk("root", "t0", "id", INT, 13, (("a5", TX, "A"),)),
    ]
    message = (
        "subscription s1 (root on t0): expected change(s) did not arrive within 5 s: "
        "['update of key 13 (write #3, step #4)']"
    )
    request = "[ws s1] SELECT * FROM ns.t0 options=LiveOptions(snapshot=True, batch_size=3, last_rows=None)"
    return steps, div("live_query", message, steps, request)


TS = ColumnType.TIMESTAMP
TWO_INS = Not(
    And(
        (
            Cmp("c0", TS, "=", 1700000000000000),
            And((In("c0", TS, (1700000000000000,)), In("c0", TS, (1700000001000000,)))),
        )
    )
)


def case_12() -> tuple[list[Step], Divergence]:
    """Finding 12 as the fuzz run found it (named stream_ttl): the NULL row passes NOT (... IN ... AND ... IN ...)."""
    steps: list[Step] = [
        create("t", "STREAM", (Column("c0", TS), Column("c1", TX)), ttl=60),
        StreamInsert("user1", "t", ("c0", "c1"), (TS, TX), ((None, "x"),)),
        StreamSelect("user1", "t", None, TWO_INS),
    ]
    message = "unexpected row (None, 'x', 2) (appears 1x, model allows 0x)"
    return steps, div("stream_ttl", message, steps, str(steps[-1].requests("ns")[0]))


def case_13() -> tuple[list[Step], Divergence]:
    """The 30-minute run against KalamDB 0.4.3-rc.4 (2 steps): ``LIMIT 0`` on a PRIVATE SHARED table answers a
    user with an empty result and the column names instead of PERMISSION_DENIED."""
    steps: list[Step] = [
        CreateTable("dba", TableSpec(name="t0", kind="SHARED", columns=COLS, access_level="PRIVATE")),
        Select("user2", "t0", limit=0),
    ]
    message = (
        "expected an error ExpectError(PERMISSION_DENIED HTTP 403) (role user may not read a PRIVATE SHARED "
        "table), but the request succeeded: 0 row(s) ['id', 'v', '_seq', '_deleted']"
    )
    return steps, div("rbac", message, steps, "[user2] SELECT * FROM ns.t0 LIMIT 0")


def case_14() -> tuple[list[Step], Divergence]:
    """Finding 14 by hand on 0.4.3-rc.4: ``WHERE x = -0.0`` misses the row holding 0.0."""
    cols = (Column("id", BI, primary_key=True), Column("x", ColumnType.DOUBLE))
    steps: list[Step] = [
        CreateTable("dba", TableSpec(name="t0", kind="SHARED", columns=cols, access_level="PUBLIC")),
        Insert("dba", "t0", ("id", "x"), (BI, ColumnType.DOUBLE), ((1, 0.0),)),
        Select("dba", "t0", ("id",), Cmp("x", ColumnType.DOUBLE, "=", -0.0)),
    ]
    message = "missing row (1,) (appears 0x, model requires 1x)"
    return steps, div("outcome", message, steps, "[dba] SELECT id FROM ns.t0 WHERE x = -0.0")


def case_15() -> tuple[list[Step], Divergence]:
    """The third 30-minute run against KalamDB 0.4.3-rc.4 (3 steps): a filter with a negative number is
    acknowledged, and the insert it admits never arrives."""
    cols = (Column("id", INT, primary_key=True), Column("c0", INT, nullable=False))
    where = Not(Or((Cmp("c0", INT, "<", -2998), Cmp("c0", INT, "=", 11))))
    steps: list[Step] = [
        create(columns=cols),
        Subscribe("dba", "t0", "s1", None, where, True, 2),
        Insert("dba", "t0", ("id", "c0"), (INT, INT), ((5, 2585),)),
    ]
    message = (
        "subscription s1 (dba on t0): expected change(s) did not arrive within 5 s: "
        "['insert of key 5 (write #1, step #2)']"
    )
    request = "[ws s1] SELECT * FROM ns.t0 WHERE (NOT (c0 < -2998 OR c0 = 11)) options={}"
    return steps, div("live_query", message, steps, request)


def neg_limit_1_refused() -> tuple[list[Step], Divergence]:
    """A PRIVATE SHARED table read with LIMIT 1 that succeeds is a plain RBAC failure, not bug 13."""
    steps: list[Step] = [
        CreateTable("dba", TableSpec(name="t0", kind="SHARED", columns=COLS, access_level="PRIVATE")),
        Select("user2", "t0", limit=1),
    ]
    message = (
        "expected an error ExpectError(PERMISSION_DENIED HTTP 403) (role user may not read a PRIVATE SHARED "
        "table), but the request succeeded: 0 row(s) ['id', 'v', '_seq', '_deleted']"
    )
    return steps, div("rbac", message, steps, "[user2] SELECT * FROM ns.t0 LIMIT 1")


#: (case, the bug it is, the index of the signature it has)
POSITIVE = [
    (case_1_read, 1, 0),
    (case_1_mid_flush, 1, 0),
    (case_1_periodic, 1, 0),
    (case_1_snapshot, 1, 1),
    (case_2, 2, 0),
    (case_2_twin, 2, 0),
    (case_3, 3, 0),
    (case_4, 4, 0),
    (case_4_snapshot, 4, 0),
    (case_4_stream_redacted, 4, 0),
    (case_5, 5, 0),
    (case_5_detected, 5, 0),
    (case_6, 6, 0),
    (case_6_detected, 6, 0),
    (case_7, 7, 0),
    (case_7_twin, 7, 1),
    (case_7_detected, 7, 0),
    (case_8, 8, 0),
    (case_8_detected, 8, 0),
    (case_9, 9, 0),
    (case_9_detected, 9, 0),
    (case_10_select, 10, 0),
    (case_10_snapshot, 10, 1),
    (case_10_last_rows, 10, 2),
    (case_10_twin, 10, 1),
    (case_11, 11, 0),
    (case_11_twin, 11, 0),
    (case_12, 12, 0),
    (case_13, 13, 0),
    (case_14, 14, 0),
    (case_15, 15, 0),
]


@pytest.mark.parametrize(("case", "number", "signature"), POSITIVE, ids=[c.__name__ for c, _, _ in POSITIVE])
def test_each_bugs_divergence_is_matched_by_it_and_by_no_other(case, number, signature):
    """The divergence kalammodel raises for a finding is that finding, and no other entry matches it."""
    steps, divergence = case()
    found_bug = match(divergence, steps)
    assert found_bug is not None and found_bug.number == number, divergence
    assert [b.number for b in BUGS if b.matches(divergence, steps)] == [number]
    found = BUGS.get(number).matching_signature(divergence, Program(steps))
    assert found is BUGS.get(number).signatures[signature]


def test_every_entry_and_signature_has_a_positive_case():
    """Each signature of each entry in the data file is covered by a case above."""
    covered = {(number, signature) for _, number, signature in POSITIVE}
    assert covered == {(b.number, i) for b in BUGS for i in range(len(b.signatures))}


@pytest.mark.parametrize(("case", "number", "signature"), POSITIVE, ids=[c.__name__ for c, _, _ in POSITIVE])
def test_each_bugs_program_exercises_its_trigger(case, number, signature):
    """The program that led to a bug's divergence exercised that bug's trigger."""
    steps, _ = case()
    assert BUGS.get(number).trigger_exercised(steps)


def _same_program(case: Any, **changes: Any) -> tuple[list[Step], Divergence]:
    steps, divergence = case()
    return steps, divergence.evolve(**changes)


def neg_no_flush_before_delete() -> tuple[list[Step], Divergence]:
    """A deleted row back without any flush is a new bug, not finding 1."""
    steps: list[Step] = [
        create(),
        insert(((1, "a"),)),
        Delete.by_pk("user1", "t0", "id", BI, 1),
        Select("user1", "t0"),
    ]
    return steps, div("soft_delete", "unexpected row (1, 'a', 1, False) (appears 1x, model allows 0x)", steps)


def neg_refused_key_never_flushed() -> tuple[list[Step], Divergence]:
    """A deleted key refused on re-insert without a flush is a new bug, not finding 2."""
    before: list[Step] = [create(), insert(((1, "a"),)), Delete.by_pk("user1", "t0", "id", BI, 1)]
    again = insert(((1, "new"),))
    steps = [*before, again]
    return steps, div("soft_delete", problem(again, before, REFUSED), steps)


def neg_refused_other_key() -> tuple[list[Step], Divergence]:
    """After a flush and a delete of key 1, a refused insert of key 7 is not finding 2."""
    steps, _ = case_2()
    steps = [*steps[:-1], insert(((7, "x"),))]
    return steps, div("soft_delete", problem(steps[-1], steps[:-1], REFUSED), steps)


def neg_order_by_key() -> tuple[list[Step], Divergence]:
    """Rows out of order under ORDER BY the primary key with LIMIT: not finding 7 or 10."""
    steps: list[Step] = [
        create(),
        insert(((1, "a"), (2, "b"))),
        Select("user1", "t0", None, None, (("id", True),), 2),
    ]
    return steps, div("outcome", "rows not sorted by id DESC: #0 (1, 'a') before #1 (2, 'b')", steps)


def neg_unselected_key_ascending() -> tuple[list[Step], Divergence]:
    """Rows out of order under ORDER BY the unselected primary key ascending: the default PK order is that
    order, so it is not finding 7."""
    steps, divergence = case_7_twin()
    steps = [*steps[:-1], Select("root", "t0", ("c2",), None, (("id", False),), None, None, "user1")]
    return steps, divergence


def neg_drop_without_readd() -> tuple[list[Step], Divergence]:
    """A wrong row after a DROP COLUMN that was never added again: not finding 4."""
    steps: list[Step] = [
        create(),
        insert(((1, "a"),)),
        AlterDropColumn("dba", "t0", "v"),
        Select("user1", "t0"),
    ]
    return steps, div(
        "schema_evolution", "unexpected row (1, 'a', 1, False) (appears 1x, model allows 0x)", steps
    )


def neg_readded_column_never_written() -> tuple[list[Step], Divergence]:
    """Values under a re-added name that never held a value before the drop: not finding 4."""
    steps: list[Step] = [
        create(),
        Insert("user1", "t0", ("id",), (BI,), ((1,),)),
        AlterDropColumn("dba", "t0", "v"),
        AlterAddColumn("dba", "t0", Column("v", TX)),
        Select("user1", "t0"),
    ]
    return steps, div(
        "schema_evolution", "unexpected row (1, 'x', 1, False) (appears 1x, model allows 0x)", steps
    )


def neg_stream_delete_with_key_none_deleted() -> tuple[list[Step], Divergence]:
    """A STREAM DELETE deleting nothing on a table WITH a primary key: not finding 8 (nor 9)."""
    steps, divergence = case_9()
    return steps, divergence.evolve(
        message="expected 2 affected row(s), got row_count=0 ('Deleted 0 row(s)')"
    )


def neg_snapshot_in_key_order_written_in_key_order() -> tuple[list[Step], Divergence]:
    """An unsorted snapshot of rows written in key order and never updated: not finding 10."""
    steps: list[Step] = [create(), insert(((1, "a"), (2, "b"))), Subscribe("user1", "t0", "s1")]
    return steps, div(
        "live_query",
        "subscription s1 (user1 on t0): snapshot rows are not in ascending _seq order: [2, 1]",
        steps,
    )


def neg_change_missing_without_alter() -> tuple[list[Step], Divergence]:
    """A missing UPDATE change without any ADD COLUMN: not finding 11."""
    steps, divergence = case_11()
    return [*steps[:3], steps[4]], divergence.evolve(step_index=3)


def neg_one_in_list() -> tuple[list[Step], Divergence]:
    """A wrong row under a single IN list: not finding 12."""
    steps, divergence = case_12()
    where = Not(In("c0", TS, (1700000000000000,)))
    return [*steps[:2], StreamSelect("user1", "t", None, where)], divergence


def neg_isolation_leak() -> tuple[list[Step], Divergence]:
    """Another user's row in a plain SELECT: no known bug."""
    steps: list[Step] = [
        create(),
        insert(((0, "u1"),)),
        insert(((0, "u2"),), actor="user2"),
        Select("user2", "t0"),
    ]
    return steps, div("isolation", "unexpected row (0, 'u1', 1, False) (appears 1x, model allows 0x)", steps)


def neg_unknown_table() -> tuple[list[Step], Divergence]:
    """A divergence about a table the program never created matches nothing."""
    steps, _ = case_1_read()
    return steps, Divergence("soft_delete", "full read of scope zz/user1: unexpected row", step_index=5)


NEGATIVE = [
    neg_limit_1_refused,
    neg_no_flush_before_delete,
    neg_refused_key_never_flushed,
    neg_refused_other_key,
    neg_order_by_key,
    neg_unselected_key_ascending,
    neg_drop_without_readd,
    neg_readded_column_never_written,
    neg_stream_delete_with_key_none_deleted,
    neg_snapshot_in_key_order_written_in_key_order,
    neg_change_missing_without_alter,
    neg_one_in_list,
    neg_isolation_leak,
    neg_unknown_table,
    lambda: _same_program(case_2, invariant=Invariant.RBAC),  # the right program, another invariant
    lambda: _same_program(case_1_read, message="columns differ: expected ['id'], got ['id', 'v']"),
]


@pytest.mark.parametrize(
    "case", NEGATIVE, ids=[getattr(c, "__name__", "") or str(i) for i, c in enumerate(NEGATIVE)]
)
def test_unrelated_divergences_match_no_known_bug(case):
    """A divergence that lacks some part of every signature is not a known bug."""
    steps, divergence = case()
    assert match(divergence, steps) is None
    assert [b.number for b in BUGS if b.matches(divergence, steps)] == []


def test_no_divergence_without_steps_is_known():
    """Without the program nothing is known about a divergence."""
    _, divergence = case_1_read()
    assert match(divergence, []) is None


def test_an_unselected_order_with_limit_goes_to_the_lower_number_on_a_tie():
    """Rows in key order for ORDER BY an unselected column with LIMIT fit findings 7 and 10 equally: 7 wins."""
    steps, divergence = case_7()
    divergence = divergence.evolve(message="row order differs at #0: expected (1,), got (3,)")
    assert [b.number for b in BUGS if b.matches(divergence, steps)] == [7, 10]
    assert match(divergence, steps).number == 7  # type: ignore[union-attr]
    reversed_registry = verdicts.KnownBugs(tuple(reversed(BUGS.bugs)))
    assert reversed_registry.match(divergence, steps).number == 7  # type: ignore[union-attr]


# ---------------------------------------------------------------------- the data file


MINIMAL = """
format = 1

[[bug]]
number = 1
title = "a bug"
link = "docs/kalamdb-findings.md#1-a-bug"
severity = "high"
generated = true

[[bug.signature]]
invariants = ["outcome"]
step_kinds = ["select"]
table_kinds = ["USER"]
message = 'unexpected row'
triggers = []
"""


def test_the_minimal_file_loads():
    """The template the malformed cases change is itself valid."""
    (bug,) = parse_known_bugs(MINIMAL)
    assert (bug.number, bug.severity, bug.signatures[0].step_kinds) == (1, "high", frozenset({"select"}))


MALFORMED = [
    ("format = 1", "format = 2", ["field 'format'", "2"]),
    ("[[bug.signature]]", "[[bug.signature]] x", ["not valid TOML"]),
    ('invariants = ["outcome"]', 'invariants = ["outcom"]', ["bug 1", "signature[0].invariants", "'outcom'"]),
    ('step_kinds = ["select"]', 'step_kinds = ["selekt"]', ["bug 1", "signature[0].step_kinds", "'selekt'"]),
    ('table_kinds = ["USER"]', 'table_kinds = ["TEMP"]', ["bug 1", "signature[0].table_kinds", "'TEMP'"]),
    (
        "message = 'unexpected row'",
        "message = 'unexpected (row'",
        ["bug 1", "signature[0].message", "'unexpected (row'"],
    ),
    ("triggers = []", 'triggers = ["flushed_twice"]', ["bug 1", "signature[0].triggers", "'flushed_twice'"]),
    ('severity = "high"', 'severity = "critical"', ["bug 1", "'severity'", "'critical'"]),
    (
        'link = "docs/kalamdb-findings.md#1-a-bug"',
        'link = "findings.md#1"',
        ["bug 1", "'link'", "'findings.md#1'"],
    ),
    ('title = "a bug"\n', "", ["bug 1", "'title'", "is missing"]),
    ("number = 1", 'number = "one"', ["entry #1", "'number'", "'one'"]),
    ("generated = true", 'generated = "yes"', ["bug 1", "'generated'", "'yes'"]),
    ("generated = true", "generated = true\ncolour = 1", ["bug 1", "unknown field(s) ['colour']"]),
    ("triggers = []", "triggers = []\nwhen = 1", ["bug 1 signature[0]", "unknown field(s) ['when']"]),
    ('invariants = ["outcome"]', "invariants = []", ["bug 1", "signature[0].invariants", "[]"]),
]


@pytest.mark.parametrize(("old", "new", "said"), MALFORMED, ids=[m[1][:24] for m in MALFORMED])
def test_a_malformed_file_is_a_usage_error_naming_entry_field_and_value(old, new, said):
    """Each malformed entry is refused with a UsageError naming the entry, the field and the value."""
    assert old in MINIMAL
    with pytest.raises(UsageError) as raised:
        parse_known_bugs(MINIMAL.replace(old, new, 1), "bugs.toml")
    assert str(raised.value).startswith("bugs.toml: ")
    for text in said:
        assert text in str(raised.value), str(raised.value)


def test_a_number_used_twice_is_refused():
    """Two entries with one finding number are refused, naming the number."""
    twice = MINIMAL + MINIMAL.split("format = 1", 1)[1]
    with pytest.raises(UsageError, match=r"bug 1: field 'number': 1 is used twice"):
        parse_known_bugs(twice)


def test_a_bug_not_generated_yet_may_name_future_step_kinds(tmp_path):
    """generated = false lets a signature name step kinds kalammodel does not have yet (from a file path)."""
    text = MINIMAL.replace("generated = true", "generated = false").replace(
        '["select"]', '["begin", "select"]'
    )
    path = tmp_path / "bugs.toml"
    path.write_text(text, encoding="utf-8")
    (bug,) = load_known_bugs(path)
    assert bug.signatures[0].step_kinds == frozenset({"begin", "select"}) and not bug.generated


def test_a_missing_file_is_a_usage_error(tmp_path):
    """An unreadable path names the path."""
    with pytest.raises(UsageError, match="cannot read the known-bugs file .*nope.toml"):
        load_known_bugs(tmp_path / "nope.toml")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lowercase, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_there_is_one_entry_per_finding_linking_its_heading():
    """Every numbered finding in docs/kalamdb-findings.md has an entry whose link is its heading's anchor."""
    headings = {}
    for line in (ROOT / "docs" / "kalamdb-findings.md").read_text(encoding="utf-8").splitlines():
        found = re.match(r"### (\d+)\. (.*)", line)
        if found:
            headings[int(found.group(1))] = line[4:]
    assert sorted(headings) == [b.number for b in BUGS]
    for bug in BUGS:
        assert bug.link == f"docs/kalamdb-findings.md#{_anchor(headings[bug.number])}"
        assert f"severity: {bug.severity}" in headings[bug.number]


def test_the_data_file_is_package_data():
    """pyproject.toml ships known_bugs.toml with the kalammodel.verdicts package."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '[tool.setuptools.package-data]\n"kalammodel.verdicts" = ["known_bugs.toml"]' in text


# ---------------------------------------------------------------------- the ledger


def test_the_ledger_counts_matches_per_bug():
    """Each recorded known-bug divergence counts for its bug; an unknown one counts for none."""
    ledger = KnownBugLedger(BUGS)
    for case in (case_1_read, case_1_mid_flush, case_2, neg_isolation_leak):
        steps, divergence = case()
        ledger.record(divergence, steps)
    assert ledger.counts == {1: 2, 2: 1}
    report = ledger.report()
    assert [(bug.number, n) for bug, n in report.seen] == [(1, 2), (2, 1)]
    assert "known KalamDB bug 1 x2" in report.render()


def test_a_bug_whose_trigger_ran_without_a_match_is_possibly_fixed():
    """A bug whose trigger an observed program exercised, never matched, is reported possibly fixed; a matched
    one and one never exercised are not."""
    ledger = KnownBugLedger(BUGS)
    seven, _ = case_7()
    seven = [
        *seven[:-1],
        Select("user1", "o", ("id",), None, (("v", True),)),
    ]  # without LIMIT: not finding 10
    one, one_divergence = case_1_read()
    ledger.observe(seven)
    ledger.observe(one)
    ledger.record(one_divergence, one)
    assert {7, 1} <= ledger.exercised and 3 not in ledger.exercised
    assert [b.number for b in ledger.possibly_fixed()] == [7]
    assert "possibly fixed" in ledger.report().render() and "known KalamDB bug 7" in ledger.report().render()


def test_a_plain_program_exercises_no_known_bug():
    """Create, insert and read exercise no known bug's trigger; the report says so."""
    ledger = KnownBugLedger(BUGS)
    ledger.observe([create(), insert(((1, "a"), (2, "b"))), Select("user1", "t0"), Flush("dba", "t0")])
    assert ledger.exercised == frozenset()
    assert ledger.report().render() == "no known KalamDB bug seen or exercised"


def test_the_facade_exports_a_sorted_complete_all():
    """kalammodel.verdicts' __all__ is sorted and every name in it resolves."""
    assert verdicts.__all__ == sorted(verdicts.__all__)
    assert all(hasattr(verdicts, name) for name in verdicts.__all__)


def test_a_refused_key_that_another_user_deleted_is_not_finding_2():
    """Finding 2 needs the key written and deleted in the writer's own scope: user1's refused INSERT of an id
    that only user2 wrote and deleted after a flush is another bug; after user1's own it is finding 2."""
    again = insert(((1, "new"),))
    for owner, number in (("user2", None), ("user1", 2)):
        steps: list[Step] = [
            create(),
            insert(((1, "a"),), actor=owner),
            Flush("dba", "t0"),
            Delete.by_pk(owner, "t0", "id", BI, 1),
            again,
        ]
        found = match(div("isolation", problem(again, steps[:-1], REFUSED), steps), steps)
        assert (found and found.number) == number, owner
