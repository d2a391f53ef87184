"""The model's rules for the DML/DDL surface of issue 14: INSERT naming a subset of the columns (DEFAULT,
NOT NULL), UPDATE with expressions, STREAM DELETE, DROP COLUMN of the primary key, explicit transactions."""

from __future__ import annotations

from kalammodel.model import Cmp, Column, ColumnType, ExpectError, ExpectOk, Limits, Model, TableSpec

B, T, INT_ = ColumnType.BIGINT, ColumnType.TEXT, ColumnType.INT


def model_with(*columns: Column, kind: str = "USER", ttl: int | None = None) -> Model:
    m = Model(limits=Limits(1000, 100000))
    m.clock = 1000.0
    assert m.create_table("user1", TableSpec("t", kind, columns, ttl_seconds=ttl)) == ExpectOk()
    return m


def full(m: Model, owner: str = "user1") -> list[dict]:
    return m.visible_rows("t", owner)


def test_column_default_renders_and_round_trips():
    c = Column("v", T, nullable=False, default="x")
    assert c.render() == "v TEXT NOT NULL DEFAULT 'x'"
    assert Column.from_data(c.to_data()) == c
    assert "default" not in Column("w", T).to_data()  # old case files and new ones without DEFAULT agree


def test_insert_subset_fills_defaults_and_nulls():
    m = model_with(
        Column("id", B, primary_key=True),
        Column("n", T),
        Column("d", INT_, nullable=False, default=7),
        Column("e", T, default="z"),
    )
    assert m.insert("user1", "t", ["id"], [B], [(1,)]) == ExpectOk(affected=1)
    # an explicit NULL is not replaced by the DEFAULT
    assert m.insert("user1", "t", ["id", "e"], [B, T], [(2, None)]) == ExpectOk(affected=1)
    assert sorted(full(m), key=lambda r: r["id"]) == [
        {"id": 1, "n": None, "d": 7, "e": "z"},
        {"id": 2, "n": None, "d": 7, "e": None},
    ]


def test_insert_omitting_not_null_without_default_fails():
    m = model_with(Column("id", B, primary_key=True), Column("v", T, nullable=False), Column("n", INT_))
    result = m.insert("user1", "t", ["id", "n"], [B, INT_], [(1, 5)])
    assert isinstance(result, ExpectError)
    assert full(m) == []
    # the primary key omitted: NOT NULL too
    assert isinstance(m.insert("user1", "t", ["v"], [T], [("a",)]), ExpectError)
    # an explicit NULL into a NOT NULL column with a DEFAULT fails as well
    m2 = model_with(Column("id", B, primary_key=True), Column("v", T, nullable=False, default="q"))
    assert isinstance(m2.insert("user1", "t", ["id", "v"], [B, T], [(1, None)]), ExpectError)
    assert m2.insert("user1", "t", ["id"], [B], [(1,)]) == ExpectOk(affected=1)
    assert full(m2) == [{"id": 1, "v": "q"}]


def test_stream_insert_subset():
    m = model_with(Column("id", T), Column("k", T, nullable=False, default="p"), kind="STREAM", ttl=60)
    assert m.insert("user1", "t", ["id"], [T], [("a",)]) == ExpectOk(affected=1)
    assert full(m) == [{"id": "a", "k": "p"}]
    assert m.delete("user1", "t", Cmp("k", T, "=", "p")) == ExpectOk(affected=1)


def test_update_expressions_follow_sql():
    from kalammodel.model import SetExpr

    m = model_with(Column("id", B, primary_key=True), Column("n", B), Column("s", T), Column("v", INT_))
    rows = [(1, 5, "a", 0), (2, None, None, 0), (3, 0, "c", 0)]
    assert m.insert("user1", "t", ["id", "n", "s", "v"], [B, B, T, INT_], rows) == ExpectOk(affected=3)
    exprs = (SetExpr("n", B, "*", -2), SetExpr("s", T, "||", "x"))
    assert m.update("user1", "t", [("v", INT_, 1)], Cmp("id", B, ">=", 1), expressions=exprs) == ExpectOk(
        affected=3
    )
    assert sorted(full(m), key=lambda r: r["id"]) == [
        {"id": 1, "n": -10, "s": "ax", "v": 1},
        {"id": 2, "n": None, "s": None, "v": 1},
        {"id": 3, "n": 0, "s": "cx", "v": 1},
    ]
    # 0 * 3 = 0 and NULL * 3 = NULL change nothing
    times3 = (SetExpr("n", B, "*", 3),)
    assert m.update("user1", "t", [], Cmp("id", B, ">", 1), expressions=times3) == ExpectOk(affected=0)


def test_update_expression_overflow_is_an_error_and_changes_nothing():
    from kalammodel.model import SetExpr

    m = model_with(Column("id", B, primary_key=True), Column("n", B))
    m.insert("user1", "t", ["id", "n"], [B, B], [(1, 1), (2, 2**63 - 1)])
    plus = (SetExpr("n", B, "+", 1),)
    assert isinstance(m.update("user1", "t", [], Cmp("id", B, ">=", 1), expressions=plus), ExpectError)
    assert sorted(r["n"] for r in full(m)) == [1, 2**63 - 1]
    assert SetExpr("n", B, "*", -1).render() == "n = n * (-1)"


def test_dropping_the_primary_key_is_refused_and_changes_nothing():
    m = model_with(Column("id", B, primary_key=True), Column("v", T))
    assert isinstance(m.alter_drop_column("dba", "t", "id"), ExpectError)
    assert m.column_names("t") == ["id", "v"]
    assert m.tables["t"].schema_version == 1
