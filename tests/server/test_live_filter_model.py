"""The embedded server's live filter and its SELECT path agree with the model's evaluator (issue 14).

Two independent implementations of SQL three-valued logic: ``kalammodel.model`` predicates' ``evaluate`` and the
server's compiled live filter (``_live_filter``) / its DataFusion session (``_select.Frames``). Random
predicates of the generators' grammar (comparisons, IN, BETWEEN, LIKE, IS [NOT] NULL, AND/OR/NOT; nullable
columns, several IN lists on one column), written in random SQL styles, over rows with NULLs.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kalammodel.generation.strategies import predicates, row_values, values
from kalammodel.model import And, Column, ColumnType, In, Not, Or, Predicate, SqlStyle
from kalammodel.server._live_filter import compile_filter
from kalammodel.server._select import Frames

pytestmark = pytest.mark.embedded_only(reason="unit tests of the embedded server's evaluators")

COLUMNS = (
    Column("id", ColumnType.BIGINT, nullable=False, primary_key=True),
    Column("c_big", ColumnType.BIGINT),
    Column("c_int", ColumnType.INT),
    Column("c_small", ColumnType.SMALLINT, nullable=False),
    Column("c_dbl", ColumnType.DOUBLE),
    Column("c_bool", ColumnType.BOOLEAN),
    Column("c_text", ColumnType.TEXT),
    Column("c_ts", ColumnType.TIMESTAMP),
    Column("c_json", ColumnType.JSON),
)
SERVER_TYPE = {
    ColumnType.BIGINT: "BigInt",
    ColumnType.INT: "Int",
    ColumnType.SMALLINT: "SmallInt",
    ColumnType.DOUBLE: "Double",
    ColumnType.BOOLEAN: "Boolean",
    ColumnType.TEXT: "Text",
    ColumnType.TIMESTAMP: "Timestamp",
    ColumnType.JSON: "Json",
}
TYPES = {c.name: SERVER_TYPE[c.type] for c in COLUMNS}
ARROW = {
    ColumnType.BIGINT: pa.int64(),
    ColumnType.INT: pa.int32(),
    ColumnType.SMALLINT: pa.int16(),
    ColumnType.DOUBLE: pa.float64(),
    ColumnType.BOOLEAN: pa.bool_(),
    ColumnType.TEXT: pa.string(),
    ColumnType.TIMESTAMP: pa.timestamp("us"),
    ColumnType.JSON: pa.string(),
}

styles = st.builds(
    SqlStyle,
    keywords=st.sampled_from(["upper", "lower", "title"]),
    ne=st.sampled_from(["!=", "<>"]),
    parens=st.sampled_from(["canonical", "minimal", "extra"]),
    space=st.sampled_from(["single", "wide", "newline", "tight"]),
    quote=st.booleans(),
    negation=st.sampled_from(["prefix", "infix"]),
    operands=st.sampled_from(["column_first", "literal_first"]),
    booleans=st.sampled_from(["lower", "upper"]),
)


@st.composite
def rows(draw: st.DrawFn) -> list[dict]:
    drawn = draw(st.lists(row_values(COLUMNS), min_size=1, max_size=5))
    return [dict(zip((c.name for c in COLUMNS), r)) for r in drawn]


@st.composite
def in_lists_on_one_column(draw: st.DrawFn) -> Predicate:
    """Several IN lists on one column under AND/OR/NOT: the shape DataFusion's simplifier folds wrongly."""
    col = draw(st.sampled_from([c for c in COLUMNS if c.type is not ColumnType.JSON]))
    lists = draw(st.lists(st.lists(values(col.type), min_size=1, max_size=2), min_size=2, max_size=3))
    items: list[Predicate] = [In(col.name, col.type, tuple(v)) for v in lists]
    items = [draw(st.sampled_from([p, Not(p)])) for p in items]
    inner = draw(st.sampled_from([And, Or]))(items)
    return draw(st.sampled_from([inner, Not(inner)]))


any_predicate = st.one_of(predicates(COLUMNS, max_depth=3), in_lists_on_one_column())


def where(text: str) -> sqlglot.exp.Expression:
    return sqlglot.parse_one(f"SELECT * FROM ns.t WHERE {text}", read="postgres").args["where"].this


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=rows(), pred=any_predicate, style=styles)
def test_live_filter_agrees_with_the_model(table, pred, style):
    """TRUE, FALSE and UNKNOWN of the live filter are the model's on every row."""
    text = pred.render(style)
    compiled = compile_filter(where(text), TYPES, "user1")
    for row in table:
        assert compiled.truth(row) is pred.evaluate(row), (text, row)


def _arrow(table: list[dict]) -> pa.Table:
    arrays = {}
    for col in COLUMNS:
        cells = [r[col.name] for r in table]
        if col.type is ColumnType.TIMESTAMP:
            cells = [None if c is None else dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=c) for c in cells]
        arrays[col.name] = pa.array(cells, ARROW[col.type])
    arrays["rid"] = pa.array(range(len(table)), pa.int64())
    return pa.table(arrays)


def select_truth(frames: Frames, table: list[dict], text: str) -> list[bool | None]:
    reg = frames.register(_arrow(table))
    try:
        out = frames.sql(
            f"SELECT rid, CASE WHEN {text} THEN 1 WHEN NOT ({text}) THEN 0 END AS v FROM {reg} ORDER BY rid"
        )
    finally:
        frames.deregister(reg)
    return [None if v is None else bool(v) for v in out.column("v").to_pylist()]


FRAMES = Frames()  # the embedded server's DataFusion session, configured as the engine configures it


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=rows(), pred=any_predicate, style=styles)
def test_select_path_agrees_with_the_model(table, pred, style):
    """The SELECT path's DataFusion session evaluates every predicate as the model does (finding 12 fixed)."""
    text = pred.render(style)
    assert select_truth(FRAMES, table, text) == [pred.evaluate(r) for r in table], text


def test_finding_12_reproduction_on_the_select_session():
    """The reproduction of docs/kalamdb-findings.md #12: the NULL row is not selected."""
    ts = ColumnType.TIMESTAMP
    a, b = 1_700_000_000_000_000, 1_700_000_001_000_000
    from kalammodel.model import Cmp

    pred = Not(And([Cmp("c_ts", ts, "=", a), And([In("c_ts", ts, (a,)), In("c_ts", ts, (b,))])]))
    row = {c.name: None for c in COLUMNS} | {"id": 1, "c_small": 0}
    assert pred.evaluate(row) is None
    assert select_truth(FRAMES, [row], pred.render()) == [None]
