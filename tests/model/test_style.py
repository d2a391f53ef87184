"""Statements in a SQL style (kalammodel/model/_style.py): the canonical style sends exactly what the steps sent
before styles existed; a style is part of the step (case files, describe, the reducer)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kalammodel.generation import simplifications
from kalammodel.generation._styles import restyle, sql_styles, styled
from kalammodel.model import CANONICAL_STYLE, ColumnType, Predicate, SqlStyle, render_value
from kalammodel.model._style import _exponent
from kalammodel.steps import (
    AlterAddColumn,
    AlterDropColumn,
    Count,
    CreateTable,
    Delete,
    Flush,
    Insert,
    Pause,
    ProbeSystemRead,
    Select,
    SelectDeleted,
    StartFlush,
    Step,
    Subscribe,
    Update,
    UpdateExpr,
    step_from_data,
    step_to_data,
)

sys.path.insert(0, str(Path(__file__).parent))
from test_steps import any_step  # noqa: E402

# ---------------------------------------------------------------------- the renderers of before styles existed


def _where(where: Predicate | None) -> str:
    return "" if where is None else f" WHERE {where.render()}"


def _old_sql(step: Step, ns: str) -> str | None:  # noqa: C901  # one branch per statement kind, as it was
    """The SQL each step sent before styles existed (copied from the step modules of that time)."""
    if isinstance(step, UpdateExpr):
        sets = [e.render() for e in step.expressions]
        sets += [f"{c} = {render_value(t, v)}" for c, t, v in step.assignments]
        return f"UPDATE {ns}.{step.table} SET {', '.join(sets)}{_where(step.where)}"
    if isinstance(step, Insert):
        values = ", ".join(
            "(" + ", ".join(render_value(t, v) for t, v in zip(step.types, row)) + ")" for row in step.rows
        )
        return f"INSERT INTO {ns}.{step.table} ({', '.join(step.columns)}) VALUES {values}"
    if isinstance(step, Update):
        sets = ", ".join(f"{c} = {render_value(t, v)}" for c, t, v in step.assignments)
        return f"UPDATE {ns}.{step.table} SET {sets}{_where(step.where)}"
    if isinstance(step, Delete):
        return f"DELETE FROM {ns}.{step.table}{_where(step.where)}"
    if isinstance(step, SelectDeleted):
        return _old_sql(step._select(), ns)
    if isinstance(step, Select):
        cols = "*" if step.columns is None else ", ".join(step.columns)
        sql = f"SELECT {cols} FROM {ns}.{step.table}{_where(step.where)}"
        if step.order_by:
            sql += " ORDER BY " + ", ".join(f"{c} DESC" if d else f"{c} ASC" for c, d in step.order_by)
        if step.limit is not None:
            sql += f" LIMIT {step.limit}"
        if step.offset is not None:
            sql += f" OFFSET {step.offset}"
        return sql
    if isinstance(step, Count):
        return f"SELECT COUNT(*) AS n FROM {ns}.{step.table}{_where(step.where)}"
    if isinstance(step, CreateTable):
        return step.spec.render(ns)
    if isinstance(step, AlterAddColumn):
        return f"ALTER TABLE {ns}.{step.table} ADD COLUMN {step.column.render()}"
    if isinstance(step, AlterDropColumn):
        return f"ALTER TABLE {ns}.{step.table} DROP COLUMN {step.column}"
    if isinstance(step, Flush):
        return f"STORAGE FLUSH TABLE {ns}.{step.table}"
    if isinstance(step, ProbeSystemRead):
        return f"SELECT * FROM system.{step.table} LIMIT 1"
    if isinstance(step, Subscribe):
        cols = "*" if step.columns is None else ", ".join(step.columns)
        return f"SELECT {cols} FROM {ns}.{step.table}{_where(step.where)}"
    return None


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(step=any_step)
def test_the_canonical_style_sends_what_the_steps_always_sent(step):
    """Every step in the canonical style renders byte for byte the SQL of the renderers before styles."""
    try:
        old = _old_sql(step, "ns1")
    except ValueError:
        return  # a cell that is not a value of its column type renders nowhere
    if old is None:
        assert not styled(step) or isinstance(step, Subscribe) or step.requests("ns1") == []
        return
    new = step.sql("ns1") if isinstance(step, Subscribe) else step.requests("ns1")[0].sql
    assert new == old
    assert step_to_data(step) == {k: v for k, v in step_to_data(step).items() if k != "style"}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(step=any_step, style=sql_styles())
def test_a_style_survives_the_case_file_codec_and_shows_in_describe(step, style):
    """A step's style goes into its data only when not canonical, comes back equal, and describe() names it
    only when not canonical."""
    step = restyle(step, style)
    data = json.loads(json.dumps(step_to_data(step)))
    assert step_from_data(data) == step
    if not styled(step) or style == CANONICAL_STYLE:
        assert "style" not in data and "style=" not in step.describe()
    else:
        assert data["style"] == style.to_data()
        assert f"style=[{style.describe()}]" in step.describe() and "\n" not in step.describe()


_KEYWORDS = {"SELECT", "FROM", "WHERE", "ORDER", "BY", "LIMIT", "INSERT", "INTO", "VALUES", "UPDATE", "SET", "DELETE",
             "CREATE", "TABLE", "WITH", "ALTER", "ADD", "DROP", "COLUMN", "STORAGE", "FLUSH", "COUNT", "AS", "NULL",
             "AND", "OR", "NOT", "IN", "LIKE", "IS", "BETWEEN", "BIGINT", "TEXT", "PRIMARY", "KEY", "TTL_SECONDS"}  # fmt: skip


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(step=any_step, style=sql_styles())
def test_a_styled_step_renders_every_keyword_in_its_case(step, style):
    """Lower-case keywords leave no upper-case keyword, quoting quotes the namespace, a semicolon ends the
    statement unless the runner wraps it in EXECUTE AS USER."""
    step = restyle(step, style)
    try:
        requests = step.requests("ns1")
    except ValueError:
        return
    if not requests:
        return
    sql = requests[0].sql
    if style.keywords == "lower":
        words = set(re.findall(r"[A-Za-z_]+", re.sub(r"'(?:[^']|'')*'", "", sql)))
        assert not words & _KEYWORDS, sql
    if style.quote and not isinstance(step, ProbeSystemRead):
        assert '"ns1".' in sql
    assert sql.endswith(";") == (style.semicolon and step.as_user is None)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_exponent_doubles_parse_back_to_the_same_double(value):
    """The exponent form keeps the shortest round-trip digits: float() of it is the value itself."""
    text = _exponent(value, repr(value))
    assert float(text) == value and (value == 0.0 or "e" in text)
    assert SqlStyle(doubles="exponent").literal(ColumnType.DOUBLE, value) == text


def test_statement_forms_of_one_style():
    """Each field changes the statement text as documented."""
    sel = Select("root", "t", ("a", "b"), None, (("a", True),), 5, 1)
    assert sel.requests("ns")[0].sql == "SELECT a, b FROM ns.t ORDER BY a DESC LIMIT 5 OFFSET 1"
    lower = restyle(sel, SqlStyle(keywords="lower", quote=True, semicolon=True))
    assert lower.requests("ns")[0].sql == 'select "a", "b" from "ns"."t" order by "a" desc limit 5 offset 1;'
    tight = restyle(sel, SqlStyle(space="tight", keywords="title"))
    assert tight.requests("ns")[0].sql == "Select a,b From ns.t Order By a Desc Limit 5 Offset 1"
    assert "\nFROM ns.t\nORDER BY" in restyle(sel, SqlStyle(space="newline")).requests("ns")[0].sql
    assert "\t" in restyle(sel, SqlStyle(space="tab")).requests("ns")[0].sql
    ins = Insert("u1", "t", ("id", "v"), ("BIGINT", "DOUBLE"), ((1, 1000.0), (2, None)), as_user="syn_a")
    styled_ins = restyle(ins, SqlStyle(doubles="exponent", space="tight", semicolon=True))
    assert styled_ins.requests("ns")[0].sql == "INSERT INTO ns.t(id,v) VALUES (1,1e3),(2,NULL)"  # no ; inside
    upd = Update("root", "t", (("v", "DOUBLE", 0.15),), None)
    assert restyle(upd, SqlStyle(doubles="exponent", space="wide")).requests("ns")[0].sql == (
        "UPDATE  ns.t  SET  v  =  1.5e-1"
    )
    assert restyle(Flush("root", "t"), SqlStyle(keywords="lower", quote=True)).requests("ns")[0].sql == (
        'storage flush table "ns"."t"'
    )


def test_the_reducer_tries_the_canonical_style_first():
    """A styled step's first simplification is the same step in the canonical style; a canonical step has none."""
    style = SqlStyle(keywords="lower")
    sel = Select("root", "t", None, None, (("a", True),), style=style)
    variants = list(simplifications(sel))
    assert variants[0] == attrs.evolve(sel, style=CANONICAL_STYLE)
    assert all(v.style == style for v in variants[1:])
    assert list(simplifications(Flush("dba", "t0", style=style))) == [Flush("dba", "t0")]
    start = StartFlush("dba", "t0", style=style)
    assert list(simplifications(start)) == [Flush("dba", "t0", style=style), StartFlush("dba", "t0")]
    assert not styled(Pause(1.0)) and restyle(Pause(1.0), style) == Pause(1.0)


def test_a_column_default_is_rendered_in_every_style():
    """CREATE TABLE keeps a column's DEFAULT in every style (a styled renderer once dropped it, so an INSERT
    leaving the column out failed NOT NULL on the embedded server)."""
    from kalammodel.model import Column, TableSpec

    cols = (
        Column("id", ColumnType.BIGINT, primary_key=True),
        Column("c2", ColumnType.TEXT, nullable=False, default=""),
    )
    step = CreateTable("dba", TableSpec(name="t1", kind="USER", columns=cols))
    assert step.requests("ns")[0].sql == TableSpec(name="t1", kind="USER", columns=cols).render("ns")
    assert "DEFAULT ''" in step.requests("ns")[0].sql
    lower = restyle(step, SqlStyle(keywords="lower", quote=True))
    assert "default ''" in lower.requests("ns")[0].sql
