"""The model's O(written keys) paths agree with its O(scope) ones: by-PK lookups, read-back rows, row comparison."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kalammodel.errors import UsageError
from kalammodel.model import (
    Cmp,
    Column,
    ColumnType,
    ExpectOk,
    ExpectRows,
    In,
    Limits,
    Model,
    TableSpec,
    compare_rows,
)
from kalammodel.model._expect import _norm, _normaliser

B, T, D, INT_ = ColumnType.BIGINT, ColumnType.TEXT, ColumnType.DOUBLE, ColumnType.INT
COLUMNS = ["id", "name", "score"]


def new_model(pk_type: ColumnType = B, kind: str = "USER") -> Model:
    m = Model(limits=Limits(1000, 100000))
    spec = TableSpec(
        "t",
        kind,
        [Column("id", pk_type, primary_key=True), Column("name", T), Column("score", D, nullable=False)],
    )
    assert m.create_table("root", spec) == ExpectOk()
    return m


def insert(m: Model, rows, actor: str = "user1", pk_type: ColumnType = B):
    return m.insert(actor, "t", COLUMNS, [pk_type, T, D], rows)


def filtered_full_read(m: Model, owner: str, keys) -> list[tuple]:
    full = m.expect_full_read("t", owner)
    index = full.columns.index("id")
    return sorted(r for r in full.rows if r[index] in set(keys))


def test_rows_for_keys_returns_live_rows_of_the_keys_only():
    """rows_for_keys gives the newest live row of each key once, skipping deleted, unknown and others' keys."""
    m = new_model()
    insert(m, [(1, "a", 1.0), (2, "b", 2.0), (3, "c", 3.0)])
    insert(m, [(1, "other", 9.0)], actor="user2")
    m.update("user1", "t", [("name", T, "a2")], Cmp("id", B, "=", 1))
    m.delete("user1", "t", Cmp("id", B, "=", 2))
    got = m.rows_for_keys("t", "user1", [1, 2, 1, 7])
    assert isinstance(got, ExpectRows)
    assert got.columns == tuple(m.tables["t"].star_columns())
    assert [r[0] for r in got.rows] == [1]
    assert got.rows[0][1] == "a2"
    assert m.rows_for_keys("t", "user3", [1]).rows == ()
    assert [r[1] for r in m.rows_for_keys("t", "user2", [1]).rows] == ["other"]


def test_rows_for_keys_refuses_stream_tables():
    """A STREAM table has no reliable PK to look up: rows_for_keys says so."""
    m = Model()
    assert m.create_table("root", TableSpec("s", "STREAM", [Column("a", INT_)], ttl_seconds=5)) == ExpectOk()
    with pytest.raises(UsageError, match="STREAM"):
        m.rows_for_keys("s", "user1", [1])


def test_scope_size_counts_keys_with_tombstones():
    """scope_size counts every primary key a scope has held (deleted ones too) and nothing of other scopes."""
    m = new_model()
    assert m.scope_size("t", "user1") == 0
    insert(m, [(1, "a", 1.0), (2, "b", 2.0)])
    m.delete("user1", "t", Cmp("id", B, "=", 1))
    insert(m, [(5, "x", 0.5)], actor="user2")
    assert m.scope_size("t", "user1") == 2
    assert m.scope_size("t", "user2") == 1


_ops = st.lists(
    st.tuples(
        st.sampled_from(["insert", "update", "delete", "select", "count"]),
        st.integers(0, 6),
        st.sampled_from(["user1", "user2"]),
        st.sampled_from(["a", "b", None]),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(ops=_ops, text_pk=st.booleans())
def test_by_pk_steps_match_the_full_scan(ops, text_pk):
    """Steps with ``pk = v`` (looked up in O(1)) predict what ``pk IN (v)`` (a scan of the scope) predicts."""
    pk_type = T if text_pk else B
    fast, slow = new_model(pk_type), new_model(pk_type)
    for op, n, actor, name in ops:
        key = f"k{n}" if text_pk else n
        eq, scan = Cmp("id", pk_type, "=", key), In("id", pk_type, (key,))
        if op == "insert":
            a = insert(fast, [(key, name, float(n))], actor, pk_type)
            b = insert(slow, [(key, name, float(n))], actor, pk_type)
        elif op == "update":
            a = fast.update(actor, "t", [("name", T, name)], eq)
            b = slow.update(actor, "t", [("name", T, name)], scan)
        elif op == "delete":
            a, b = fast.delete(actor, "t", eq), slow.delete(actor, "t", scan)
        elif op == "select":
            a, b = fast.select(actor, "t", where=eq), slow.select(actor, "t", where=scan)
        else:
            a, b = fast.count(actor, "t", eq), slow.count(actor, "t", scan)
        assert a == b, (op, key)
    for owner in ("user1", "user2"):
        assert fast.expect_full_read("t", owner) == slow.expect_full_read("t", owner)
        keys = [f"k{n}" if text_pk else n for n in range(7)]
        assert sorted(fast.rows_for_keys("t", owner, keys).rows) == filtered_full_read(fast, owner, keys)


_cells = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.integers(-100, 100).map(str),
    st.sampled_from(['{"b":1,"a":2}', "[1, 2]", "not json", "-0.0"]),
)


@given(col_type=st.sampled_from([None, *ColumnType]), value=_cells)
def test_column_normaliser_equals_norm(col_type, value):
    """The per-column normaliser chosen once by compare_rows gives what _norm gives for every value."""
    assert _normaliser(col_type)(value) == _norm(value, col_type)


def test_compare_rows_still_checks_sort_order_and_bigint_strings():
    """compare_rows accepts BIGINTs sent as strings and still reports rows out of the PK order."""
    expected = ExpectRows(["id", "name"], [(1, "a"), (2, "b")], sort_keys=((0, False),), types=(B, T))
    assert compare_rows(expected, ["id", "name"], [("1", "a"), ("2", "b")]) is None
    problem = compare_rows(expected, ["id", "name"], [(2, "b"), (1, "a")])
    assert problem is not None and "not sorted by id" in problem


def test_a_flushed_tombstone_removes_the_key_from_the_expected_cold_rows() -> None:
    """After delete + flush, the deleted key's older cold version is no longer expected as newest cold."""
    from kalammodel.model import Cmp, Column, ColumnType, Model, TableSpec

    m = Model()
    cols = (Column("id", ColumnType.TEXT, nullable=False, primary_key=True), Column("v", ColumnType.BIGINT))
    m.create_table("dba", TableSpec(name="t", kind="SHARED", columns=cols))
    m.insert("dba", "t", ["id", "v"], [ColumnType.TEXT, ColumnType.BIGINT], [("zz", 15), ("a", 1)])
    m.flush("dba", "t")
    m.flush_completed("t")
    assert set(m.expected_cold_rows("t", None)) == {"zz", "a"}
    m.update("dba", "t", [("v", ColumnType.BIGINT, 1)], Cmp("id", ColumnType.TEXT, "=", "zz"))
    m.delete("dba", "t", Cmp("id", ColumnType.TEXT, "=", "zz"))
    m.flush("dba", "t")
    m.flush_completed("t")
    assert set(m.expected_cold_rows("t", None)) == {"a"}
