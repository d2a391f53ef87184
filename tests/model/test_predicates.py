"""Predicates agree with DataFusion (KalamDB's engine) and SQLite on random rows with NULLs."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import datafusion
import pyarrow as pa
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kalammodel.model import CANONICAL_STYLE as CANONICAL
from kalammodel.model import (
    And,
    Between,
    Cmp,
    ColumnType,
    In,
    IsNotNull,
    IsNull,
    Like,
    Not,
    Or,
    SqlStyle,
    pred_from_data,
    pred_to_data,
    render_timestamp,
)
from kalammodel.model._types import TIMESTAMP_MAX, TIMESTAMP_MIN
from kalammodel.server._select import expand_in_lists

COLUMNS = {
    "c_big": ColumnType.BIGINT,
    "c_int": ColumnType.INT,
    "c_small": ColumnType.SMALLINT,
    "c_dbl": ColumnType.DOUBLE,
    "c_bool": ColumnType.BOOLEAN,
    "c_text": ColumnType.TEXT,
    "c_ts": ColumnType.TIMESTAMP,
    "c_json": ColumnType.JSON,
}
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


def values(col_type: ColumnType) -> st.SearchStrategy:
    """Non-NULL values of a type, biased to collide so that comparisons hit equality."""
    if col_type is ColumnType.BIGINT:
        return st.one_of(st.integers(-5, 5), st.sampled_from([-(2**63), 2**63 - 1, 2**40]))
    if col_type is ColumnType.INT:
        return st.one_of(st.integers(-5, 5), st.sampled_from([-(2**31), 2**31 - 1]))
    if col_type is ColumnType.SMALLINT:
        return st.one_of(st.integers(-5, 5), st.sampled_from([-(2**15), 2**15 - 1]))
    if col_type is ColumnType.DOUBLE:
        return st.one_of(
            st.sampled_from([0.0, -0.0, 1.5, -2.25, 0.1, 1e16, 3.0]),
            st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
        )
    if col_type is ColumnType.BOOLEAN:
        return st.booleans()
    if col_type is ColumnType.TEXT:
        return st.text(alphabet="aAbB_%' xé", max_size=4)
    if col_type is ColumnType.TIMESTAMP:
        return st.one_of(
            st.sampled_from([0, 1, 1_700_000_000_000_000, -1_000_000]),
            st.integers(TIMESTAMP_MIN, TIMESTAMP_MAX),
        )
    return st.sampled_from(['{"a":1}', "[]", "null", '"x"'])


def nullable(col_type: ColumnType) -> st.SearchStrategy:
    return st.one_of(st.none(), values(col_type))


rows_strategy = st.lists(
    st.fixed_dictionaries({n: nullable(t) for n, t in COLUMNS.items()}), min_size=1, max_size=6
)

ORDERABLE = [n for n, t in COLUMNS.items() if t is not ColumnType.JSON]


@st.composite
def leaves(draw):
    name = draw(st.sampled_from(list(COLUMNS)))
    col_type = COLUMNS[name]
    if col_type is ColumnType.JSON:
        return draw(st.sampled_from([IsNull(name, col_type), IsNotNull(name, col_type)]))
    choice = draw(st.sampled_from(["cmp", "null", "notnull", "in", "between", "like"]))
    if choice == "cmp":
        return Cmp(
            name, col_type, draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="])), draw(values(col_type))
        )
    if choice == "null":
        return IsNull(name, col_type)
    if choice == "notnull":
        return IsNotNull(name, col_type)
    if choice == "in":
        return In(name, col_type, draw(st.lists(values(col_type), min_size=1, max_size=3)))
    if choice == "between":
        return Between(name, col_type, draw(values(col_type)), draw(values(col_type)))
    pattern = draw(st.text(alphabet="aAb%_' é", max_size=4))
    return Like("c_text", pattern)


predicates = st.recursive(
    leaves(),
    lambda children: st.one_of(
        st.lists(children, min_size=2, max_size=3).map(And),
        st.lists(children, min_size=2, max_size=3).map(Or),
        children.map(Not),
    ),
    max_leaves=6,
)


def datafusion_eval(rows: list[dict], pred, simplifier: bool = False, as_server: bool = True) -> list[bool | None]:
    """The predicate's value per row in DataFusion: by default as the embedded server runs it (no simplifier,
    IN lists as equalities: kalammodel.server._select); ``simplifier`` and ``as_server=False`` give stock
    DataFusion's quirks (findings 12 and 14)."""
    arrays = {}
    for name, col_type in COLUMNS.items():
        cells = [r[name] for r in rows]
        if col_type is ColumnType.TIMESTAMP:
            cells = [
                None if c is None else dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=c) for c in cells
            ]
        arrays[name] = pa.array(cells, ARROW[col_type])
    arrays["rid"] = pa.array(range(len(rows)), pa.int64())
    ctx = datafusion.SessionContext()
    if not simplifier:
        # as the embedded server configures DataFusion: its expression simplifier folds two IN lists on one
        # column to FALSE even for NULL (docs/kalamdb-findings.md #12)
        assert ctx.remove_optimizer_rule("simplify_expressions")
    ctx.register_record_batches("t", [pa.table(arrays).to_batches()])
    sql = f"SELECT rid, CASE WHEN {pred.render()} THEN 1 WHEN NOT ({pred.render()}) THEN 0 END AS v FROM t ORDER BY rid"
    if as_server:
        sql = expand_in_lists(sqlglot.parse_one(sql, read="postgres")).sql(dialect="postgres")
    out = ctx.sql(sql).to_pydict()
    return [None if v is None else bool(v) for v in out["v"]]


def sqlite_eval(rows: list[dict], pred) -> list[bool | None]:
    """SQLite cross-check; timestamps are stored as the rendered text (fixed width, so ordering agrees)."""
    con = sqlite3.connect(":memory:")
    con.execute("PRAGMA case_sensitive_like = ON")
    con.execute("CREATE TABLE t (rid INTEGER, " + ", ".join(COLUMNS) + ")")
    for i, row in enumerate(rows):
        cells = [row[n] for n in COLUMNS]
        cells = [render_timestamp(c) if n == "c_ts" and c is not None else c for n, c in zip(COLUMNS, cells)]
        con.execute(f"INSERT INTO t VALUES (?, {', '.join('?' * len(COLUMNS))})", [i, *cells])
    sql = f"SELECT CASE WHEN {pred.render()} THEN 1 WHEN NOT ({pred.render()}) THEN 0 END FROM t ORDER BY rid"
    out = [r[0] for r in con.execute(sql)]
    con.close()
    return [None if v is None else bool(v) for v in out]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows_strategy, pred=predicates)
def test_predicates_agree_with_datafusion(rows, pred):
    """Three-valued evaluation matches DataFusion (without its expression simplifier) for random predicates,
    several IN lists on one column included, over rows with NULLs."""
    expected = [pred.evaluate(r) for r in rows]
    assert datafusion_eval(rows, pred) == expected, pred.render()


@settings(max_examples=150, deadline=None)
@given(rows=rows_strategy, pred=predicates)
def test_predicates_agree_with_sqlite(rows, pred):
    """Three-valued evaluation matches SQLite with case-sensitive LIKE."""
    expected = [pred.evaluate(r) for r in rows]
    assert sqlite_eval(rows, pred) == expected, pred.render()


@given(pred=predicates)
def test_predicate_data_round_trips_through_json(pred):
    """pred_to_data output survives JSON and rebuilds an equal predicate."""
    data = json.loads(json.dumps(pred_to_data(pred)))
    assert pred_from_data(data) == pred


def test_repeated_in_lists_on_one_column_are_unknown_for_null():
    """'a IN (0) AND NOT a IN (0)' is UNKNOWN for NULL a, and so is its negation: the model says so, and so does
    DataFusion without its simplifier; DataFusion's simplifier folds it to FALSE (finding 12, upstream: when this
    assertion fails, DataFusion fixed it, and docs/kalamdb-findings.md #12 should say so)."""
    a_in = In("c_big", ColumnType.BIGINT, [0])
    pred = Not(And([a_in, Not(a_in)]))
    assert pred.evaluate({"c_big": None}) is None
    null_row = [{n: None for n in COLUMNS}]
    assert datafusion_eval(null_row, pred) == [None]
    assert datafusion_eval(null_row, pred, simplifier=True, as_server=False) == [True]  # the upstream quirk


def test_zero_is_in_a_list_of_minus_zero():
    """0.0 = -0.0 in SQL (IEEE 754), so '0.0 IN (-0.0, ...)' is TRUE: the model says so and so does DataFusion as
    the embedded server runs it; stock DataFusion's IN list compares floats bit by bit and says FALSE, without its
    simplifier for any list, with it for a long one (finding 14, upstream: when these assertions fail, DataFusion
    fixed it, and docs/kalamdb-findings.md #14 should say so)."""
    short = In("c_dbl", ColumnType.DOUBLE, [-0.0])
    long = In("c_dbl", ColumnType.DOUBLE, [-0.0, *(float(i) for i in range(1, 25))])
    row = [{**{n: None for n in COLUMNS}, "c_dbl": 0.0}]
    for pred in (short, long):
        assert pred.evaluate(row[0]) is True
        assert datafusion_eval(row, pred) == [True]
    assert datafusion_eval(row, short, as_server=False) == [False]  # the upstream quirk itself
    assert datafusion_eval(row, long, simplifier=True, as_server=False) == [False]


def test_null_is_unknown_and_not_unknown_is_unknown():
    """A comparison with a NULL cell is UNKNOWN, and so is its negation."""
    pred = Cmp("c_int", ColumnType.INT, "=", 1)
    assert pred.evaluate({"c_int": None}) is None
    assert Not(pred).evaluate({"c_int": None}) is None
    assert Or([pred, IsNull("c_int", ColumnType.INT)]).evaluate({"c_int": None}) is True
    assert And([pred, IsNotNull("c_int", ColumnType.INT)]).evaluate({"c_int": None}) is False


def test_like_is_case_sensitive_and_escapes_regex_characters():
    """LIKE matches case-sensitively, with % and _ as the only wildcards."""
    assert Like("c_text", "a%").evaluate({"c_text": "abc"}) is True
    assert Like("c_text", "a%").evaluate({"c_text": "Abc"}) is False
    assert Like("c_text", "a_c").evaluate({"c_text": "a.c"}) is True
    assert Like("c_text", "a.c").evaluate({"c_text": "abc"}) is False
    assert Like("c_text", "a.c").render() == "c_text LIKE 'a.c'"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Cmp("c_int", ColumnType.INT, "==", 1), "operator"),
        (lambda: Cmp("c_int", ColumnType.INT, "=", None), "NULL"),
        (lambda: Cmp("c_small", ColumnType.SMALLINT, "=", 40000), "outside"),
        (lambda: Cmp("c_json", ColumnType.JSON, "=", "{}"), "JSON"),
        (lambda: Like("c_text", "a\\b"), "backslash"),
        (lambda: Like("c_int", "a", ColumnType.INT), "TEXT"),
        (lambda: In("c_int", ColumnType.INT, []), "at least one"),
        (lambda: And([IsNull("c_int", ColumnType.INT)]), "two operands"),
        (lambda: Cmp("Bad Name", ColumnType.INT, "=", 1), "identifier"),
    ],
)
def test_invalid_predicates_are_refused_with_the_reason(make, message):
    """Predicates no engine would agree on are refused, naming what is wrong."""
    with pytest.raises(ValueError, match=message):
        make()


def test_pred_from_data_names_unknown_kinds_and_fields():
    """Bad predicate data names the unknown predicate or field."""
    with pytest.raises(ValueError, match="unknown predicate 'xor'"):
        pred_from_data({"pred": "xor"})
    with pytest.raises(ValueError, match="unknown field"):
        pred_from_data({"pred": "is_null", "column": "a", "col_type": "INT", "extra": 1})


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


class _Styled:
    """A predicate that renders in one style (for the evaluators above, which call ``render()``)."""

    def __init__(self, pred, style):
        self.pred, self.style = pred, style

    def render(self):
        return self.pred.render(self.style)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows_strategy, pred=predicates, style=styles)
def test_every_style_means_the_same_to_datafusion(rows, pred, style):
    """A predicate written in any SQL style evaluates, in DataFusion, as the model evaluates it."""
    expected = [pred.evaluate(r) for r in rows]
    assert datafusion_eval(rows, _Styled(pred, style)) == expected, pred.render(style)


@settings(max_examples=200, deadline=None)
@given(rows=rows_strategy, pred=predicates, style=styles)
def test_every_style_means_the_same_to_sqlite(rows, pred, style):
    """A predicate written in any SQL style evaluates, in SQLite, as the model evaluates it."""
    expected = [pred.evaluate(r) for r in rows]
    assert sqlite_eval(rows, _Styled(pred, style)) == expected, pred.render(style)


def test_styles_spell_one_predicate_differently():
    """Each style field changes the text: keyword case, <>, parentheses, spacing, quoting, infix NOT, operand
    order; the canonical style renders what render() always did."""
    p = And((Not(Cmp("c0", ColumnType.BIGINT, "<", 5)), Or((IsNull("c1", ColumnType.TEXT), Like("c1", "a%")))))
    assert p.render() == p.render(CANONICAL) == "((NOT c0 < 5) AND (c1 IS NULL OR c1 LIKE 'a%'))"
    assert p.render(SqlStyle(keywords="lower", parens="minimal")) == "not c0 < 5 and (c1 is null or c1 like 'a%')"
    assert p.render(SqlStyle(negation="infix", operands="literal_first", parens="minimal")) == (
        "5 <= c0 AND (c1 IS NULL OR c1 LIKE 'a%')"
    )
    assert p.render(SqlStyle(quote=True, space="tight", parens="extra")) == (
        '((NOT ("c0"<5)) AND (("c1" IS NULL) OR ("c1" LIKE \'a%\')))'
    )
    assert Cmp("c0", ColumnType.BIGINT, "!=", 1).render(SqlStyle(ne="<>", space="wide")) == "c0  <>  1"
    assert "\n  OR " in p.render(SqlStyle(space="newline"))


def test_style_data_round_trips_and_names_bad_fields():
    """to_data keeps only what differs from the canonical style; from_data refuses unknown fields and values."""
    style = SqlStyle(keywords="lower", quote=True)
    assert style.to_data() == {"keywords": "lower", "quote": True}
    assert SqlStyle.from_data(style.to_data()) == style
    assert SqlStyle.from_data(None) is CANONICAL and CANONICAL.to_data() == {}
    with pytest.raises(ValueError, match="unknown SQL style field"):
        SqlStyle.from_data({"case": "lower"})
    with pytest.raises(ValueError, match="keywords"):
        SqlStyle.from_data({"keywords": "shouting"})
