"""SQL styles (kalammodel/model/_style.py): every statement the steps send, written in any style, gets from the server
the answer its canonical form gets — keyword case, spacing, quoted names, ``<>``, literal-first comparisons, infix
NOT, exponent doubles and a trailing semicolon are spellings, not meanings.

Each example runs one fixed program twice on a small fixed table: once canonically (table ``c<k>``), once in a
drawn style (table ``s<k>``), and compares the answers statement by statement (the table names and job ids in
messages normalised).
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import attrs
import httpx
import pytest
from conftest import JOB_DEADLINE, post_sql
from hypothesis import HealthCheck, Phase, given, settings

from kalammodel.generation._styles import STYLE_CHOICES, sql_styles
from kalammodel.generation.strategies import predicates
from kalammodel.model import (
    CANONICAL_STYLE,
    AccessLevel,
    Column,
    ColumnType,
    Predicate,
    SqlStyle,
    TableKind,
    TableSpec,
)
from kalammodel.steps import (
    AlterAddColumn,
    AlterDropColumn,
    Count,
    CreateTable,
    Delete,
    Flush,
    Insert,
    ProbeSystemRead,
    Request,
    Select,
    SelectDeleted,
    Step,
    Update,
)

COLUMNS = (
    Column("id", ColumnType.BIGINT, False, True),
    Column("v", ColumnType.DOUBLE, False, False),
    Column("b", ColumnType.BOOLEAN, True, False),
    Column("t", ColumnType.TEXT, True, False),
    Column("ts", ColumnType.TIMESTAMP, True, False),
    Column("n", ColumnType.INT, True, False),
)
NAMES = tuple(c.name for c in COLUMNS)
TYPES = tuple(c.type for c in COLUMNS)
ROWS = (
    (1, 1000.0, True, "it's", 0, 7),
    (2, -0.15, None, None, 1_700_000_000_123_456, None),
    (3, 2.5e-7, False, "b%", None, -3),
    (4, 0.0, True, "", -86_400_000_000, 0),
)
_ids = itertools.count()


def _program(table: str, where: Predicate, where2: Predicate) -> list[Step]:
    """Every statement kind the steps send, on ``table``."""
    spec = TableSpec(table, TableKind.USER, COLUMNS)
    extra = Column("extra", ColumnType.DOUBLE, True, False)
    return [
        CreateTable("root", spec),
        Insert("root", table, NAMES, TYPES, ROWS),
        Select("root", table, None, where, (("id", False),)),
        Count("root", table, where),
        Select("root", table, ("id", "v", "b"), None, (("v", True), ("id", False)), 3, 1),
        Update("root", table, (("v", ColumnType.DOUBLE, 1e3), ("t", ColumnType.TEXT, "x")), where),
        Update.by_pk("root", table, "id", ColumnType.BIGINT, 2, (("b", ColumnType.BOOLEAN, False),)),
        Select("root", table, None, None, (("id", False),)),
        Delete("root", table, where2),
        SelectDeleted("root", table, ("id", "v")),
        AlterAddColumn("root", table, extra),
        Insert(
            "root",
            table,
            ("id", "v", "extra"),
            (ColumnType.BIGINT, ColumnType.DOUBLE, ColumnType.DOUBLE),
            ((10, 1.5e300, -2.0e-300),),
        ),
        Select("root", table, ("id", "extra"), where2, (("id", False),)),
        AlterDropColumn("root", table, "extra"),
        Flush("root", table),
        Select("root", table, None, where, (("id", True),), 10),
        Count("root", table, None, "syn_a"),
        Insert("root", table, ("id", "v"), (ColumnType.BIGINT, ColumnType.DOUBLE), ((1, 1.0),), "syn_a"),
        Select("root", table, None, None, (("id", False),), as_user="syn_a"),
        ProbeSystemRead("root", "namespaces"),
        CreateTable(
            "root",
            TableSpec(
                f"{table}_sh",
                TableKind.SHARED,
                COLUMNS[:2],
                access_level=AccessLevel.PUBLIC,
                flush_policy="rows:100",
                storage_id="local",
            ),
        ),
        CreateTable("root", TableSpec(f"{table}_st", TableKind.STREAM, COLUMNS[:3], ttl_seconds=60)),
    ]


def _wire(request: Request) -> str:
    return request.sql if request.as_user is None else f"EXECUTE AS USER '{request.as_user}' ({request.sql})"


def _answer(url: str, token: str, step: Step, ns: str, table: str) -> Any:
    """The server's answer to the step, with what legitimately differs between the two tables normalised."""
    (request,) = step.requests(ns)
    r = post_sql(url, token, _wire(request))
    body = r.json()
    if isinstance(step, Flush) and r.status_code == 200:
        message = body["results"][0]["message"]
        _wait_job(url, token, message.rsplit(" ", 1)[-1])
    text = re.sub(rf"\b{table}", "T", r.text)
    text = re.sub(r"\b(FL|CL)-[A-Za-z0-9-]+", "JOB", text)
    answer = httpx.Response(r.status_code, content=text).json()
    answer.pop("took", None)
    (answer.get("error") or {}).pop("details", None)  # the statement as sent
    for result in answer.get("results", []):
        result.pop("took", None)
        if isinstance(step, ProbeSystemRead):
            result.pop("rows", None)  # the namespaces differ in creation times
        seq = [i for i, c in enumerate(result.get("schema", [])) if c["name"] == "_seq"]
        for row in result.get("rows", []):
            for i in seq:
                row[i] = "SEQ"  # each table's writes get their own _seq values
    return r.status_code, answer


def _wait_job(url: str, token: str, job_id: str) -> None:
    import time

    deadline = time.monotonic() + JOB_DEADLINE
    while time.monotonic() < deadline:
        r = post_sql(url, token, f"SELECT status FROM system.jobs WHERE job_id = '{job_id}'")
        rows = r.json()["results"][0].get("rows", [])
        if rows and rows[0][0] in ("completed", "failed", "skipped", "cancelled"):
            return
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish within {JOB_DEADLINE}s")


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # an example is ~45 requests: report it unshrunk
)
@given(style=sql_styles(), where=predicates(COLUMNS), where2=predicates(COLUMNS))
def test_every_statement_in_any_style_gets_the_canonical_answer(
    server_url, root_token, ns, style, where, where2
):
    """Each statement kind in a drawn style answers exactly as its canonical form does."""
    k = next(_ids)
    canonical, styled = f"c{k}", f"s{k}"
    for plain, fancy in zip(_program(canonical, where, where2), _program(styled, where, where2)):
        fancy = attrs.evolve(fancy, style=style)
        expected = _answer(server_url, root_token, plain, ns, canonical)
        actual = _answer(server_url, root_token, fancy, ns, styled)
        assert actual == expected, (
            f"{fancy.requests(ns)[0].sql!r} answered {actual}\n{plain.requests(ns)[0].sql!r} answered {expected}"
        )


def test_the_style_strategy_lists_every_field_canonical_first():
    """STYLE_CHOICES names every SqlStyle field, its first value is the canonical one, and every value is valid."""
    assert list(STYLE_CHOICES) == [f.name for f in attrs.fields(SqlStyle)]
    for name, choices in STYLE_CHOICES.items():
        assert choices[0] == getattr(CANONICAL_STYLE, name), name
        for value in choices:
            SqlStyle(**{name: value})


@pytest.mark.parametrize(
    "text",
    [
        'STORAGE FLUSH TABLE "{ns}"."t";',
        "storage\tflush\ttable {ns}.t",
        'Storage  Flush  Table  "{ns}".t',
        'ALTER TABLE "{ns}"."t" ADD COLUMN "extra" TEXT;',
        'alter table {ns}."t"\ndrop column "extra"',
        'Create User Table "{ns}"."u" ("id" Bigint Primary Key, "f" FLOAT);',
        "create shared table {ns}.s(\"id\" bigint primary key)\twith(access_level='PUBLIC',flush_policy='rows:5');",
    ],
)
def test_kalamdb_statements_accept_quoted_names_any_case_and_spacing(sql, ns, text):
    """KalamDB's own statements (parsed by hand, not by sqlglot) accept quoted names, keyword case, tabs, newlines
    and a trailing semicolon like the standard ones."""
    sql(f"CREATE TABLE {ns}.t (id BIGINT PRIMARY KEY, v TEXT)")
    if "drop column" in text:
        sql(f"ALTER TABLE {ns}.t ADD COLUMN extra TEXT")
    body = sql(text.format(ns=ns))
    assert body["status"] == "success", body


def test_a_quoted_float_column_is_float(sql, ns):
    """``"f" FLOAT`` is KalamDB's FLOAT (f32), as ``g FLOAT`` is."""
    sql(f'CREATE TABLE {ns}.u ("id" BIGINT PRIMARY KEY, "f" FLOAT, g FLOAT)')
    schema = sql(f"SELECT f, g FROM {ns}.u")["results"][0]["schema"]
    assert [c["data_type"] for c in schema] == ["Float", "Float"], schema
