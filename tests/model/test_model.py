"""The reference model predicts each rule of PROTOCOL §3–§9."""

from __future__ import annotations

import pytest

from kalammodel.errors import UsageError
from kalammodel.model import (
    Cmp,
    Column,
    ColumnType,
    ExpectCount,
    ExpectError,
    ExpectFlush,
    ExpectOk,
    ExpectRows,
    IsNotNull,
    Limits,
    Model,
    Outcome,
    TableSpec,
    compare_outcome,
    compare_rows,
)

B, T, D, INT_ = ColumnType.BIGINT, ColumnType.TEXT, ColumnType.DOUBLE, ColumnType.INT


def spec(name="t", kind="USER", **options):
    columns = [Column("id", B, primary_key=True), Column("name", T), Column("score", D, nullable=False)]
    return TableSpec(name, kind, columns, **options)


def model_with(kind="USER", **options) -> Model:
    m = Model(limits=Limits(1000, 100000))
    actor = "root" if kind == "SHARED" else "user1"
    assert m.create_table(actor, spec(kind=kind, **options)) == ExpectOk()
    return m


def ins(m, rows, actor="user1", table="t", as_user=None):
    return m.insert(actor, table, ["id", "name", "score"], [B, T, D], rows, as_user=as_user)


def pk(value):
    return Cmp("id", B, "=", value)


def rows_of(expect: ExpectRows):
    return sorted(expect.rows)


def is_error(expect, code):
    return isinstance(expect, ExpectError) and code in expect.codes


# ---------------------------------------------------------------- CREATE TABLE


def test_create_table_rules():
    """CREATE TABLE refuses duplicates, missing PKs, misplaced options and unknown storages."""
    m = Model()
    assert m.create_table("user1", spec()) == ExpectOk()
    assert is_error(m.create_table("user1", spec()), "SQL_EXECUTION_ERROR")
    no_pk = TableSpec("n", "USER", [Column("a", INT_)])
    assert isinstance(m.create_table("root", no_pk), ExpectError)
    assert isinstance(m.create_table("root", spec("s1", "STREAM")), ExpectError)  # STREAM without TTL
    assert isinstance(m.create_table("root", spec("s2", "USER", ttl_seconds=5)), ExpectError)
    assert isinstance(m.create_table("root", spec("s3", "USER", access_level="PUBLIC")), ExpectError)
    assert isinstance(m.create_table("root", spec("s4", "SHARED", storage_id="nope")), ExpectError)
    assert isinstance(m.create_table("root", spec("s5", "SHARED", flush_policy="rows:0")), ExpectError)
    assert m.create_table("root", spec("s6", "SHARED", flush_policy="rows:10,interval:60")) == ExpectOk()
    assert m.create_table("root", TableSpec("s7", "STREAM", [Column("a", INT_)], ttl_seconds=5)) == ExpectOk()
    assert sorted(m.tables) == ["s6", "s7", "t"]


def test_user_may_not_create_shared_table():
    """Role user creating a SHARED table is denied with 403 and nothing is created."""
    m = Model()
    expect = m.create_table("user1", spec(kind="SHARED"))
    assert expect.codes == ("PERMISSION_DENIED",) and expect.status == 403
    assert "t" not in m.tables
    assert m.create_table("svc", spec(kind="SHARED")) == ExpectOk()


# ---------------------------------------------------------------- INSERT


def test_duplicate_pk_against_hot_row_rejects_whole_statement():
    """A duplicate of a live hot PK fails the whole statement; no row of it is inserted."""
    m = model_with()
    assert ins(m, [(1, "a", 1.0)]) == ExpectOk(affected=1)
    assert is_error(ins(m, [(2, "b", 2.0), (1, "x", 3.0)]), "SQL_EXECUTION_ERROR")
    assert m.known_pks("t", "user1") == {1}


def test_duplicate_pk_within_one_statement_is_rejected():
    """The same PK twice in one INSERT fails and inserts nothing."""
    m = model_with()
    assert is_error(ins(m, [(5, "a", 1.0), (5, "b", 2.0)]), "SQL_EXECUTION_ERROR")
    assert m.known_pks("t", "user1") == set()


def test_duplicate_pk_against_cold_row_is_rejected():
    """A PK that only exists in a flushed (cold) version is still a duplicate."""
    m = model_with()
    ins(m, [(1, "a", 1.0)])
    flush(m, "t")
    assert m.expected_cold_rows("t", "user1") == {1: {"id": 1, "name": "a", "score": 1.0}}
    assert is_error(ins(m, [(1, "b", 2.0)]), "SQL_EXECUTION_ERROR")


def test_reinsert_after_delete_is_allowed():
    """Once the newest version is a tombstone the PK is free again."""
    m = model_with()
    ins(m, [(1, "a", 1.0)])
    assert m.delete("user1", "t", pk(1)) == ExpectOk(affected=1)
    assert m.deleted_pks("t", "user1") == {1}
    assert ins(m, [(1, "b", 2.0)]) == ExpectOk(affected=1)
    assert m.visible_rows("t", "user1") == [{"id": 1, "name": "b", "score": 2.0}]
    assert len(m.known_versions("t", "user1", 1)) == 3


def test_not_null_violations_fail():
    """Omitting or nulling a NOT NULL column fails; the PK is NOT NULL too."""
    m = model_with()
    assert is_error(ins(m, [(1, "a", None)]), "SQL_EXECUTION_ERROR")
    assert is_error(m.insert("user1", "t", ["id", "name"], [B, T], [(1, "a")]), "SQL_EXECUTION_ERROR")
    assert is_error(m.insert("user1", "t", ["name", "score"], [T, D], [("a", 1.0)]), "SQL_EXECUTION_ERROR")
    assert m.known_pks("t", "user1") == set()


def test_user_table_pks_are_unique_per_user():
    """Two users may hold the same PK in a USER table; each reads only their own row."""
    m = model_with()
    assert ins(m, [(1, "mine", 1.0)]) == ExpectOk(affected=1)
    assert ins(m, [(1, "theirs", 2.0)], actor="user2") == ExpectOk(affected=1)
    assert rows_of(m.select("user1", "t", ["name"])) == [("mine",)]
    assert rows_of(m.select("user2", "t", ["name"])) == [("theirs",)]
    assert rows_of(m.select("root", "t", ["name"])) == []  # root sees only root's rows (§6.2)


def test_shared_table_pks_are_global():
    """SHARED rows are one scope: a second writer hits the same PK."""
    m = model_with("SHARED")
    assert ins(m, [(1, "a", 1.0)], actor="svc") == ExpectOk(affected=1)
    assert is_error(ins(m, [(1, "b", 1.0)], actor="dba"), "SQL_EXECUTION_ERROR")
    assert m.scopes("t") == [None]


def test_stale_step_values_are_a_usage_error():
    """A value of the wrong type for the model's column is the tool's misuse, not a prediction."""
    m = model_with()
    with pytest.raises(UsageError, match="DOUBLE"):
        m.insert("user1", "t", ["id", "name", "score"], [B, T, D], [(1, "a", "x")])
    with pytest.raises(UsageError, match="unknown actor"):
        ins(m, [(1, "a", 1.0)], actor="mallory")


# ---------------------------------------------------------------- UPDATE / DELETE


def test_update_counts_only_rows_that_change():
    """UPDATE's count is the rows whose values change; SET x = x counts 0."""
    m = model_with()
    ins(m, [(1, "a", 1.0), (2, "b", 2.0), (3, "c", 3.0)])
    assert m.update("user1", "t", [("score", D, 2.0)], IsNotNull("id", B)) == ExpectOk(affected=2)
    assert m.update("user1", "t", [("score", D, 2.0)], IsNotNull("id", B)) == ExpectOk(affected=0)
    assert m.update("user1", "t", [("name", T, "z")], pk(99)) == ExpectOk(affected=0)
    assert rows_of(m.select("user1", "t", ["id", "score"])) == [(1, 2.0), (2, 2.0), (3, 2.0)]


def test_update_of_zero_sign_is_a_range():
    """Changing 0.0 to -0.0 may or may not count as a change."""
    m = model_with()
    ins(m, [(1, "a", 0.0)])
    assert m.update("user1", "t", [("score", D, -0.0)], pk(1)) == ExpectOk(affected=0, affected_max=1)


def test_update_rejects_pk_change_missing_where_and_stream():
    """UPDATE may not touch the PK, needs a WHERE, and is refused on STREAM tables."""
    m = model_with()
    ins(m, [(1, "a", 1.0)])
    assert is_error(m.update("user1", "t", [("id", B, 2)], pk(1)), "SQL_EXECUTION_ERROR")
    assert isinstance(m.update("user1", "t", [("name", T, "x")], None), ExpectError)
    m.create_table("user1", TableSpec("s", "STREAM", [Column("k", T)], ttl_seconds=60))
    assert is_error(m.update("user1", "s", [("k", T, "x")], IsNotNull("k", T)), "SQL_EXECUTION_ERROR")


def test_update_setting_not_null_to_null_fails_only_when_rows_match():
    """NOT NULL is checked on the rows the UPDATE touches."""
    m = model_with()
    ins(m, [(1, "a", 1.0)])
    assert is_error(m.update("user1", "t", [("score", D, None)], pk(1)), "SQL_EXECUTION_ERROR")
    assert m.update("user1", "t", [("score", D, None)], pk(2)) == ExpectOk(affected=0)


def test_delete_counts_live_rows_and_writes_tombstones():
    """DELETE counts live rows matched; deleting again counts 0; tombstones show under _deleted = true."""
    m = model_with()
    ins(m, [(1, "a", 1.0), (2, "b", 2.0)])
    assert m.delete("user1", "t", Cmp("score", D, ">", 0.0)) == ExpectOk(affected=2)
    assert m.delete("user1", "t", Cmp("score", D, ">", 0.0)) == ExpectOk(affected=0)
    assert rows_of(m.select("user1", "t", ["id"])) == []
    deleted = m.select("user1", "t", ["id", "_deleted"], Cmp("_deleted", ColumnType.BOOLEAN, "=", True))
    assert rows_of(deleted) == [(1, True), (2, True)] and deleted.maybe_rows == ()


def test_delete_and_update_are_scoped_to_the_effective_user():
    """A user's DELETE never touches another user's rows."""
    m = model_with()
    ins(m, [(1, "a", 1.0)])
    ins(m, [(1, "a", 1.0)], actor="user2")
    assert m.delete("user2", "t", pk(1)) == ExpectOk(affected=1)
    assert m.known_pks("t", "user1") == {1}


# ---------------------------------------------------------------- SELECT


def test_select_star_orders_system_columns_and_added_columns():
    """SELECT * lists created columns, _seq, _deleted, then ALTER-added columns; sorted by PK."""
    m = model_with()
    ins(m, [(2, "b", 2.0), (1, "a", 1.0)])
    assert m.alter_add_column("user1", "t", Column("extra", INT_)) == ExpectOk()
    expect = m.select("user1", "t")
    assert expect.columns == ("id", "name", "score", "_seq", "_deleted", "extra")
    assert expect.sort_keys == ((0, False),)
    assert (
        compare_rows(expect, expect.columns, [(1, "a", 1.0, 7, False, None), (2, "b", 2.0, 8, False, None)])
        is None
    )
    problem = compare_rows(
        expect, expect.columns, [(2, "b", 2.0, 8, False, None), (1, "a", 1.0, 7, False, None)]
    )
    assert problem is not None and "sorted" in problem


def test_select_without_limit_uses_the_default_limit_as_an_unordered_subset():
    """More rows than default_query_limit: any subset of that size (sorted by PK) is accepted."""
    m = Model(limits=Limits(default_query_limit=2, max_query_limit=5))
    m.create_table("user1", spec())
    ins(m, [(i, str(i), float(i)) for i in range(4)])
    expect = m.select("user1", "t", ["id"])
    assert expect.exact_size == 2 and expect.rows == () and len(expect.maybe_rows) == 4
    assert compare_rows(expect, ["id"], [(0,), (3,)]) is None
    assert compare_rows(expect, ["id"], [(0,), (1,), (2,)]) is not None
    capped = m.select("user1", "t", ["id"], order_by=[("id", False)], limit=50)
    assert capped.rows == ((0,), (1,), (2,), (3,))  # LIMIT capped at max_query_limit=5 > 4 rows


def test_order_by_with_limit_and_ties_makes_boundary_rows_maybe():
    """Rows tied at the LIMIT boundary may be any of the tied ones; rows inside are certain."""
    m = model_with()
    ins(m, [(1, "a", 1.0), (2, "b", 2.0), (3, "c", 2.0), (4, "d", 3.0)])
    expect = m.select("user1", "t", ["id", "score"], order_by=[("score", False)], limit=2)
    assert expect.rows == ((1, 1.0),)
    assert sorted(expect.maybe_rows) == [(2, 2.0), (3, 2.0)]
    assert expect.exact_size == 2
    assert compare_rows(expect, ["id", "score"], [(1, 1.0), (3, 2.0)]) is None
    assert compare_rows(expect, ["id", "score"], [(1, 1.0), (4, 3.0)]) is not None
    page = m.select("user1", "t", ["id"], order_by=[("id", True)], limit=2, offset=1)
    assert page.rows == ((3,), (2,)) and page.sort_keys == ((0, True),)


def test_order_by_nulls_last_ascending_first_descending():
    """NULLs sort last ascending and first descending, as in DataFusion."""
    m = model_with()
    ins(m, [(1, None, 1.0), (2, "b", 2.0)])
    asc = m.select("user1", "t", ["id", "name"], order_by=[("name", False)], limit=1)
    desc = m.select("user1", "t", ["id", "name"], order_by=[("name", True)], limit=1)
    assert asc.rows == ((2, "b"),) and desc.rows == ((1, None),)


def test_select_with_unknown_column_fails_and_count_is_exact():
    """Unknown columns fail; COUNT(*) is never capped."""
    m = Model(limits=Limits(default_query_limit=1, max_query_limit=1))
    m.create_table("user1", spec())
    ins(m, [(1, "a", 1.0), (2, "b", 2.0)])
    assert isinstance(m.select("user1", "t", ["nope"]), ExpectError)
    assert m.count("user1", "t") == ExpectCount(2, 2)
    assert m.count("user1", "t", Cmp("name", T, "=", "b")) == ExpectCount(1, 1)


# ---------------------------------------------------------------- ALTER


def test_alter_drop_and_readd_column():
    """A dropped column disappears, writes naming it fail, and a re-added one reads NULL for old rows."""
    m = model_with()
    ins(m, [(1, "a", 1.0)])
    assert m.alter_drop_column("user1", "t", "name") == ExpectOk()
    assert is_error(ins(m, [(2, "b", 2.0)]), "SQL_EXECUTION_ERROR")
    assert m.select("user1", "t").columns == ("id", "score", "_seq", "_deleted")
    assert isinstance(m.select("user1", "t", ["name"]), ExpectError)
    assert m.alter_add_column("user1", "t", Column("name", T)) == ExpectOk()
    assert rows_of(m.select("user1", "t", ["id", "name"])) == [(1, None)]
    assert m.tables["t"].schema_version == 3
    assert m.expected_cold_rows("t", "user1") is None  # name reused: cold files are ambiguous by name


def test_alter_errors_and_permissions():
    """Adding an existing column or dropping a missing one fails; role user may not alter SHARED tables."""
    m = model_with()
    assert is_error(m.alter_add_column("user1", "t", Column("name", T)), "SQL_EXECUTION_ERROR")
    assert is_error(m.alter_drop_column("user1", "t", "nope"), "SQL_EXECUTION_ERROR")
    m.create_table("svc", spec("sh", "SHARED"))
    assert is_error(m.alter_add_column("user1", "sh", Column("x", INT_)), "PERMISSION_DENIED")
    assert m.alter_add_column("svc", "sh", Column("x", INT_)) == ExpectOk()


# ---------------------------------------------------------------- flush


def flush(m, table, job="FL-1"):
    expect = m.flush("svc", table)
    assert isinstance(expect, ExpectFlush)
    m.flush_started(table, job)
    m.flush_completed(table)
    return expect


def test_flush_expectations_follow_pending_writes():
    """A never-written table skips; unflushed writes need a job; after a quiet flush either is fine."""
    m = model_with()
    assert m.flush("svc", "t").expect_job is False
    ins(m, [(1, "a", 1.0)])
    assert flush(m, "t").expect_job is True
    assert m.flush("svc", "t").expect_job is None
    assert is_error(m.flush("user1", "t"), "PERMISSION_DENIED")


def test_quiet_flush_gives_exact_cold_rows_and_keeps_reads():
    """After a quiet flush the cold rows are the newest live version per PK, and reads are unchanged."""
    m = model_with()
    ins(m, [(1, "a", 1.0), (2, "b", 2.0)])
    m.update("user1", "t", [("name", T, "a2")], pk(1))
    m.delete("user1", "t", pk(2))
    before = m.select("user1", "t")
    flush(m, "t")
    assert m.expected_cold_rows("t", "user1") == {1: {"id": 1, "name": "a2", "score": 1.0}}
    assert m.select("user1", "t") == before
    ins(m, [(2, "again", 5.0)])
    m.update("user1", "t", [("score", D, 9.0)], pk(1))
    flush(m, "t", "FL-2")
    assert m.expected_cold_rows("t", "user1") == {
        1: {"id": 1, "name": "a2", "score": 9.0},
        2: {"id": 2, "name": "again", "score": 5.0},
    }


def test_tombstones_may_vanish_from_deleted_reads_after_flush_but_never_from_normal_reads():
    """A flushed tombstone is a maybe-row for _deleted reads; normal reads stay exact."""
    m = model_with()
    ins(m, [(1, "a", 1.0), (2, "b", 2.0)])
    m.delete("user1", "t", pk(1))
    deleted = Cmp("_deleted", ColumnType.BOOLEAN, "=", True)
    assert m.select("user1", "t", ["id"], deleted).rows == ((1,),)
    flush(m, "t")
    after = m.select("user1", "t", ["id"], deleted)
    assert after.rows == () and after.maybe_rows == ((1,),)
    assert compare_rows(after, ["id"], []) is None and compare_rows(after, ["id"], [(1,)]) is None
    normal = m.select("user1", "t", ["id"])
    assert normal.rows == ((2,),) and normal.maybe_rows == ()
    assert m.count("user1", "t", deleted) == ExpectCount(0, 1)


def test_tombstones_in_a_running_flush_may_vanish_from_deleted_reads():
    """While a flush job runs, the tombstones it took may already be gone (found by the detection benchmark:
    insert, delete, start a flush, read _deleted rows). Tombstones written after the job began stay sure."""
    m = model_with()
    ins(m, [(1, "a", 1.0), (2, "b", 2.0)])
    m.delete("user1", "t", pk(1))
    m.flush("svc", "t", wait=False)
    m.flush_started("t", "FL-7")
    m.delete("user1", "t", pk(2))
    deleted = Cmp("_deleted", ColumnType.BOOLEAN, "=", True)
    during = m.select("user1", "t", ["id"], deleted)
    assert during.rows == ((2,),) and during.maybe_rows == ((1,),)


def test_non_quiet_flush_makes_cold_rows_unknown_only_for_touched_scopes():
    """Writes between a flush's start and completion make that scope's cold files inexact."""
    m = model_with()
    ins(m, [(1, "a", 1.0)])
    ins(m, [(1, "b", 1.0)], actor="user2")
    expect = m.flush("svc", "t", wait=False)
    assert expect.wait is False
    m.flush_started("t", "FL-9")
    assert m.expected_cold_rows("t", "user1") is None  # a flush is running
    ins(m, [(2, "c", 2.0)])
    assert m.flush("svc", "t").expect_job is None  # may be skipped as already running
    done = m.await_flush("t")
    assert done.job_id == "FL-9"
    m.flush_completed("t")
    assert m.expected_cold_rows("t", "user1") is None
    assert m.expected_cold_rows("t", "user2") == {1: {"id": 1, "name": "b", "score": 1.0}}
    assert m.flush("svc", "t").expect_job is None
    assert sorted(m.known_pks("t", "user1")) == [1, 2]


def test_flush_policy_tables_never_have_exact_cold_rows():
    """A table with FLUSH_POLICY may auto-flush: cold rows unknown, tombstones maybe, job optional."""
    m = Model()
    m.create_table("root", spec("t", "SHARED", flush_policy="rows:5"))
    ins(m, [(1, "a", 1.0)], actor="root")
    m.delete("root", "t", pk(1))
    assert m.expected_cold_rows("t", None) is None
    assert m.flush("root", "t").expect_job is None
    deleted = m.select("root", "t", ["id"], Cmp("_deleted", ColumnType.BOOLEAN, "=", True))
    assert deleted.maybe_rows == ((1,),)


def test_waited_flush_completes_without_flush_started():
    """flush_completed right after a waited flush request applies the flush (flush_started is optional)."""
    m = model_with()
    ins(m, [(1, "a", 1.0)])
    m.delete("user1", "t", pk(1))
    ins(m, [(2, "b", 2.0)])
    assert m.flush("svc", "t").expect_job is True
    m.flush_completed("t")
    assert m.expected_cold_rows("t", "user1") == {2: {"id": 2, "name": "b", "score": 2.0}}
    assert m.select("user1", "t", ["id"], Cmp("_deleted", ColumnType.BOOLEAN, "=", True)).maybe_rows == (
        (1,),
    )
    m.flush_completed("t")  # no new request: nothing happens
    assert m.expected_cold_rows("t", "user1") == {2: {"id": 2, "name": "b", "score": 2.0}}


def test_flush_refuses_stream_tables():
    """STORAGE FLUSH on a STREAM table is an execution error."""
    m = Model()
    m.create_table("root", TableSpec("s", "STREAM", [Column("k", T)], ttl_seconds=10))
    assert is_error(m.flush("root", "s"), "SQL_EXECUTION_ERROR")


# ---------------------------------------------------------------- RBAC and EXECUTE AS


@pytest.mark.parametrize(
    "level, readers, writers",
    [
        ("PUBLIC", {"user1", "svc", "dba", "root"}, {"svc", "dba", "root"}),
        ("PRIVATE", {"svc", "dba", "root"}, {"svc", "dba", "root"}),
        ("RESTRICTED", {"svc", "dba", "root"}, {"svc", "dba", "root"}),
        ("DBA", {"dba", "root"}, {"dba", "root"}),
        (None, {"svc", "dba", "root"}, {"svc", "dba", "root"}),
    ],
)
def test_shared_access_level_matrix(level, readers, writers):
    """Each SHARED access level admits exactly the roles of PROTOCOL §6.5; denials change nothing."""
    m = Model()
    m.create_table("root", spec("sh", "SHARED", access_level=level))
    for i, actor in enumerate(["user1", "svc", "dba", "root"]):
        read = m.select(actor, "sh", ["id"])
        assert isinstance(read, ExpectRows) == (actor in readers), (actor, read)
        write = ins(m, [(i, "x", 1.0)], actor=actor, table="sh")
        if actor in writers:
            assert write == ExpectOk(affected=1)
        else:
            assert write.codes == ("PERMISSION_DENIED",) and write.status == 403
    assert m.known_pks("sh", None) == {
        i for i, a in enumerate(["user1", "svc", "dba", "root"]) if a in writers
    }


def test_execute_as_rules():
    """EXECUTE AS: role order for known ids, unknown ids are role user, a user only as itself."""
    m = model_with()
    assert ins(m, [(1, "a", 1.0)], actor="svc", as_user="ghost") == ExpectOk(affected=1)
    assert m.known_pks("t", "ghost") == {1} and m.known_pks("t", "svc") == set()
    assert m.effective_user("svc", "ghost") == "ghost"
    assert is_error(ins(m, [(2, "a", 1.0)], actor="user1", as_user="user2"), "PERMISSION_DENIED")
    assert ins(m, [(2, "a", 1.0)], actor="user1", as_user="user1") == ExpectOk(affected=1)
    assert is_error(ins(m, [(3, "a", 1.0)], actor="svc", as_user="dba"), "PERMISSION_DENIED")
    assert ins(m, [(3, "a", 1.0)], actor="dba", as_user="svc") == ExpectOk(affected=1)
    assert ins(m, [(3, "a", 1.0)], actor="root", as_user="root") == ExpectOk(affected=1)
    assert m.known_pks("t", "user2") == set()


def test_execute_as_on_shared_tables_is_refused():
    """EXECUTE AS USER on a SHARED table is a 400 even for root."""
    m = model_with("SHARED")
    expect = ins(m, [(1, "a", 1.0)], actor="root", as_user="ghost")
    assert expect.codes == ("SQL_EXECUTION_ERROR",) and expect.status == 400
    assert m.known_pks("t", None) == set()


def test_system_tables_are_for_dba_and_system():
    """Only dba and system read system tables; EXECUTE AS runs as role user."""
    m = Model()
    assert is_error(m.read_system_table("user1", "users"), "PERMISSION_DENIED")
    assert is_error(m.read_system_table("svc", "users"), "PERMISSION_DENIED")
    assert m.read_system_table("dba", "users") == ExpectOk()
    assert is_error(m.read_system_table("root", "users", as_user="ghost"), "PERMISSION_DENIED")


# ---------------------------------------------------------------- STREAM TTL


def stream_model(ttl=10) -> Model:
    m = Model(stream_slack=1.0)
    m.clock = 1000.0
    m.create_table("user1", TableSpec("s", "STREAM", [Column("k", T), Column("v", INT_)], ttl_seconds=ttl))
    return m


def test_stream_rows_are_sure_then_maybe_then_gone():
    """A STREAM row is surely visible before TTL-slack, maybe around the TTL, surely gone after."""
    m = stream_model()
    assert m.insert("user1", "s", ["k", "v"], [T, INT_], [("a", 1), ("a", 1)]) == ExpectOk(affected=2)
    m.clock = 1000.5  # the request finished by now
    assert len(m.select("user1", "s", ["k"]).rows) == 2  # duplicates allowed: no uniqueness
    m.clock = 1009.2
    maybe = m.select("user1", "s", ["k"])
    assert maybe.rows == () and len(maybe.maybe_rows) == 2
    assert m.count("user1", "s") == ExpectCount(0, 2)
    assert compare_rows(maybe, ["k"], [("a",)]) is None
    m.clock = 1011.6
    assert m.select("user1", "s", ["k"]).maybe_rows == ()
    assert m.visible_rows("s", "user1") == [] and m.maybe_rows("s", "user1") == []


def test_stream_delete_is_hard_and_counts_a_range_near_ttl():
    """DELETE on STREAM removes rows; rows near their TTL make the count a range."""
    m = stream_model()
    m.insert("user1", "s", ["k", "v"], [T, INT_], [("a", 1)])
    m.clock = 1005.0
    m.insert("user1", "s", ["k", "v"], [T, INT_], [("b", 2)])
    m.clock = 1009.5
    assert m.delete("user1", "s", IsNotNull("k", T)) == ExpectOk(affected=1, affected_max=2)
    assert m.select("user1", "s", ["k"]).rows == ()
    assert isinstance(
        m.select("user1", "s", ["k"], Cmp("_deleted", ColumnType.BOOLEAN, "=", True)), ExpectRows
    )


def test_stream_rows_are_per_user():
    """STREAM rows belong to the inserting (or EXECUTE AS) user."""
    m = stream_model()
    m.insert("svc", "s", ["k", "v"], [T, INT_], [("a", 1)], as_user="ghost")
    assert m.select("user1", "s", ["k"]).rows == ()
    assert m.select("dba", "s", ["k"], as_user="ghost").rows == (("a",),)


def test_limit_over_stream_maybe_rows_gives_a_size_range():
    """LIMIT over rows near their TTL bounds only the size."""
    m = stream_model()
    m.insert("user1", "s", ["k", "v"], [T, INT_], [("a", 1), ("b", 2), ("c", 3)])
    m.clock = 1009.5
    m.insert("user1", "s", ["k", "v"], [T, INT_], [("d", 4)])
    m.clock = 1009.6
    expect = m.select("user1", "s", ["k"], order_by=[("k", False)], limit=2)
    assert expect.size_range == (1, 2) and expect.rows == ()


# ---------------------------------------------------------------- comparison helpers


def test_compare_rows_normalises_floats_json_and_bigints():
    """DOUBLE -0.0 equals 0.0, JSON compares by parsed value, BIGINT strings compare as ints."""
    expect = ExpectRows(
        ["a", "j", "b"], [(0.0, '{"x":1,"y":[1,2]}', 5)], types=(D, ColumnType.JSON, B), sort_keys=()
    )
    assert compare_rows(expect, ["a", "j", "b"], [(-0.0, '{ "y": [1, 2], "x": 1 }', "5")]) is None
    assert "unexpected" in compare_rows(expect, ["a", "j", "b"], [(0.5, '{"x":1,"y":[1,2]}', 5)])
    assert "columns differ" in compare_rows(expect, ["a", "b"], [])


def test_compare_rows_reports_missing_and_duplicated_rows():
    """A missing row and a duplicated row are each named."""
    expect = ExpectRows(["id"], [(1,), (2,)])
    assert "missing row (2)" in compare_rows(expect, ["id"], [(1,)])
    assert "duplicated" in compare_rows(expect, ["id"], [(1,), (2,), (2,)])


def test_compare_outcome_covers_each_expectation():
    """compare_outcome accepts the right outcome and names the wrong one."""
    assert compare_outcome(ExpectOk(affected=2), Outcome(ok=True, row_count=2)) is None
    assert "affected" in compare_outcome(ExpectOk(affected=2), Outcome(ok=True, row_count=3))
    assert compare_outcome(ExpectOk(1, 3), Outcome(ok=True, row_count=3)) is None
    denied = ExpectError(("PERMISSION_DENIED",), 403)
    assert compare_outcome(denied, Outcome(ok=False, status=403, code="PERMISSION_DENIED")) is None
    assert "succeeded" in compare_outcome(denied, Outcome(ok=True, row_count=1))
    assert "SQL_EXECUTION_ERROR" in compare_outcome(
        denied, Outcome(ok=False, status=400, code="SQL_EXECUTION_ERROR")
    )
    assert compare_outcome(ExpectCount(2, 2), Outcome(ok=True, columns=("n",), rows=(("2",),))) is None
    assert compare_outcome(ExpectCount(2, 2), Outcome(ok=True, columns=("n",), rows=((3,),))) is not None
    started = Outcome(ok=True, message="Storage flush started for table 'a.t'. Job ID: FL-1a2b3c4d5e6f")
    skipped = Outcome(ok=True, message="Storage flush skipped: no pending writes for table 'a.t'")
    assert compare_outcome(ExpectFlush("t", expect_job=True), started) is None
    assert "expected a flush job" in compare_outcome(ExpectFlush("t", expect_job=True), skipped)
    assert compare_outcome(ExpectFlush("t", expect_job=None), skipped) is None


def test_expectations_have_readable_reprs():
    """Expectation reprs say what is expected in a few words."""
    assert repr(ExpectOk(affected=1)) == "ExpectOk(affected=1)"
    assert repr(ExpectCount(1, 3)) == "ExpectCount(n in [1, 3])"
    assert "PERMISSION_DENIED HTTP 403" in repr(ExpectError(("PERMISSION_DENIED",), 403))
    assert "sorted by id" in repr(ExpectRows(["id"], [(1,)], sort_keys=((0, False),)))
