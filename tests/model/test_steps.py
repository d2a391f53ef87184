"""Steps render, apply to the model, describe themselves and survive step_to_data/step_from_data."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kalammodel.steps as steps_pkg
from kalammodel.errors import InternalError, UsageError
from kalammodel.model import (
    Cmp,
    Column,
    ColumnType,
    ExpectError,
    ExpectFlushDone,
    ExpectOk,
    ExpectPause,
    IsNull,
    Like,
    Model,
    Or,
    SetExpr,
    TableSpec,
)
from kalammodel.steps import (
    LIVE_STEPS,
    STEP_TYPES,
    AwaitFlush,
    CreateTable,
    Delete,
    Insert,
    Pause,
    Request,
    Select,
    SelectDeleted,
    StartFlush,
    Step,
    StepFamily,
    Update,
    register,
    render_value,
    step_from_data,
    step_to_data,
)

names = st.sampled_from(["t1", "t2", "s1"])
actors = st.sampled_from(["root", "dba", "svc", "user1", "user2"])
as_users = st.one_of(st.none(), st.sampled_from(["user1", "ghost_1"]))
col_names = st.sampled_from(["id", "name", "score", "extra"])
cells = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
predicates = st.one_of(
    st.none(),
    st.builds(
        Cmp, st.just("id"), st.just(ColumnType.BIGINT), st.sampled_from(["=", "<"]), st.integers(-5, 5)
    ),
    st.builds(IsNull, col_names, st.sampled_from(list(ColumnType))),
    st.builds(
        lambda p: Or([Like("name", p), Cmp("_deleted", ColumnType.BOOLEAN, "=", True)]),
        st.text("ab%_", max_size=3),
    ),
)
columns = st.builds(Column, col_names, st.sampled_from(list(ColumnType)), st.booleans(), st.booleans())
specs = st.builds(
    TableSpec,
    names,
    st.sampled_from(["USER", "SHARED", "STREAM"]),
    st.lists(columns, min_size=1, max_size=4),
    st.one_of(st.none(), st.integers(1, 100)),
    st.one_of(st.none(), st.sampled_from(["PUBLIC", "PRIVATE", "RESTRICTED", "DBA"])),
    st.one_of(st.none(), st.just("local")),
    st.one_of(st.none(), st.just("rows:10")),
)


@st.composite
def inserts(draw, cls):
    cols = draw(st.lists(col_names, min_size=1, max_size=3))
    types = draw(st.lists(st.sampled_from(list(ColumnType)), min_size=len(cols), max_size=len(cols)))
    rows = draw(st.lists(st.lists(cells, min_size=len(cols), max_size=len(cols)), min_size=1, max_size=3))
    return cls(draw(actors), draw(names), cols, types, rows, draw(as_users))


def strategy_for(cls) -> st.SearchStrategy:
    kind = cls.kind
    if kind in ("create_table", "probe_create_shared"):
        return st.builds(cls, actors, specs, as_users)
    if kind in ("insert", "insert_dropped_column", "stream_insert", "probe_shared_write"):
        return inserts(cls)
    if kind in ("update", "stream_update"):
        assignments = st.lists(
            st.tuples(col_names, st.sampled_from(list(ColumnType)), cells), min_size=1, max_size=2
        )
        return st.builds(cls, actors, names, assignments, predicates, as_users)
    if kind == "update_expr":
        exprs = st.lists(
            st.one_of(
                st.builds(SetExpr, col_names, st.sampled_from(["BIGINT", "INT"]), st.sampled_from(["+", "*"]),
                          st.integers(-3, 3)),
                st.builds(SetExpr, col_names, st.just("TEXT"), st.just("||"), st.text("ab'", max_size=3)),
            ),
            min_size=1,
            max_size=2,
        )
        assignments = st.lists(st.tuples(col_names, st.sampled_from(list(ColumnType)), cells), max_size=1)
        return st.builds(cls, actors, names, exprs, assignments, predicates, as_users)
    if kind == "delete":
        return st.builds(cls, actors, names, predicates, as_users)
    if kind in ("select", "stream_select", "probe_execute_as"):
        return st.builds(
            cls,
            actors,
            names,
            st.one_of(st.none(), st.lists(col_names, max_size=3)),
            predicates,
            st.lists(st.tuples(col_names, st.booleans()), max_size=2),
            st.one_of(st.none(), st.integers(0, 100)),
            st.one_of(st.none(), st.integers(0, 100)),
            as_users,
        )
    if kind == "select_deleted":
        return st.builds(cls, actors, names, st.one_of(st.none(), st.lists(col_names, max_size=2)), as_users)
    if kind == "count":
        return st.builds(cls, actors, names, predicates, as_users)
    if kind in ("flush", "start_flush"):
        return st.builds(cls, actors, names, as_users)
    if kind == "await_flush":
        return st.builds(cls, names, actors)
    if kind == "alter_add_column":
        return st.builds(cls, actors, names, columns, as_users)
    if kind == "alter_drop_column":
        return st.builds(cls, actors, names, col_names, as_users)
    if kind == "probe_system_read":
        return st.builds(cls, actors, st.sampled_from(["users", "jobs"]), as_users)
    if kind == "pause":
        return st.builds(cls, st.floats(0, 600))
    if kind == "restart":
        return st.builds(cls, st.booleans())
    sub_ids = st.sampled_from(["s1", "s2"])
    sizes = st.one_of(st.none(), st.integers(1, 50))
    if kind == "subscribe":
        cols = st.one_of(st.none(), st.lists(col_names, min_size=1, max_size=3))
        return st.builds(cls, actors, names, sub_ids, cols, predicates, st.booleans(), sizes, sizes)
    if kind in ("next_batch",):
        return st.builds(cls, sub_ids)
    if kind == "unsubscribe":
        return st.builds(cls, sub_ids, st.booleans())
    if kind == "resubscribe_from_seq":
        return st.builds(cls, sub_ids, sub_ids)
    raise AssertionError(f"no strategy for step kind {kind!r}: add one")


any_step = st.one_of([strategy_for(cls) for cls in STEP_TYPES.values()])


@settings(max_examples=300)
@given(step=any_step)
def test_every_step_round_trips_through_json(step):
    """step_to_data gives JSON that step_from_data turns back into an equal step."""
    data = json.loads(json.dumps(step_to_data(step)))
    assert data["kind"] == step.kind
    assert step_from_data(data) == step
    assert "\n" not in step.describe() and step.describe().startswith(step.kind + "(")


@settings(max_examples=200)
@given(step=any_step)
def test_every_step_renders_requests_or_is_a_runner_action(step):
    """Steps render qualified SQL requests, except AwaitFlush and Pause which render none."""
    try:
        requests = step.requests("ns1")
    except ValueError:
        return  # a cell that is not a value of the step's column type cannot be rendered
    if step.kind in ("await_flush", "pause", "restart", *(c.kind for c in LIVE_STEPS)):
        assert requests == []
    else:
        assert len(requests) == 1 and isinstance(requests[0], Request)
        assert requests[0].actor == step.actor and requests[0].as_user == step.as_user
        qualifier = "system." if step.kind == "probe_system_read" else "ns1."
        assert qualifier in requests[0].sql


def test_every_kind_is_covered_by_the_strategy():
    """The round-trip strategy knows every registered step kind."""
    for cls in STEP_TYPES.values():
        assert strategy_for(cls) is not None
    assert all(kind == cls.kind for kind, cls in STEP_TYPES.items())


@pytest.mark.parametrize(
    "data, message",
    [
        ({"kind": "nope"}, "unknown step kind 'nope'"),
        ("insert", "must be a dict"),
        ({"kind": "select", "actor": "root"}, "missing field"),
        ({"kind": "select", "actor": "root", "table": "t", "colour": 1}, "unknown field.*colour"),
        ({"kind": "select", "actor": "root", "table": "t", "limit": -1}, "field 'limit'"),
        ({"kind": "select", "actor": "", "table": "t"}, "field 'actor'"),
        ({"kind": "delete", "actor": "root", "table": "t", "where": {"pred": "zz"}}, "field 'where'"),
        (
            {
                "kind": "insert",
                "actor": "root",
                "table": "t",
                "columns": ["a"],
                "types": ["INT"],
                "rows": [[1, 2]],
            },
            "field 'rows'",
        ),
        (
            {
                "kind": "insert",
                "actor": "root",
                "table": "t",
                "columns": ["a"],
                "types": ["WAT"],
                "rows": [[1]],
            },
            "'types'",
        ),
        (
            {
                "kind": "insert",
                "actor": "root",
                "table": "t",
                "columns": ["a"],
                "types": ["INT"],
                "rows": [[[1]]],
            },
            "cells",
        ),
        ({"kind": "pause", "seconds": "5"}, "field 'seconds'"),
        ({"kind": "create_table", "actor": "root", "spec": {"name": "t"}}, "field 'spec'"),
        ({"kind": "select", "actor": "root", "table": "t", "order_by": [["a", "desc"]]}, "descending"),
    ],
)
def test_bad_step_data_is_a_usage_error_naming_the_problem(data, message):
    """step_from_data refuses bad data with a UsageError naming the kind or field."""
    with pytest.raises(UsageError, match=message):
        step_from_data(data)


def test_render_value_escapes_and_formats_each_type():
    """Literals: quotes doubled, timestamps as UTC text, booleans as words, JSON canonical."""
    assert render_value(ColumnType.TEXT, "it's") == "'it''s'"
    assert render_value(ColumnType.TIMESTAMP, 1_500_000) == "'1970-01-01 00:00:01.500000'"
    assert render_value(ColumnType.BOOLEAN, False) == "false"
    assert render_value(ColumnType.DOUBLE, 0.1) == "0.1"
    assert render_value(ColumnType.JSON, '{"a":1}') == "'{\"a\":1}'"
    assert render_value(ColumnType.INT, None) == "NULL"
    with pytest.raises(ValueError, match="not canonical"):
        render_value(ColumnType.JSON, '{"a": 1}')
    with pytest.raises(ValueError, match="outside"):
        render_value(ColumnType.SMALLINT, 2**15)


def test_a_small_program_applies_to_the_model():
    """A create/insert/update/delete/select/flush program yields the expectations of the contract."""
    m = Model()
    spec = TableSpec("t1", "USER", [Column("id", "BIGINT", primary_key=True), Column("name", "TEXT")])
    program = [
        CreateTable("user1", spec),
        Insert("user1", "t1", ["id", "name"], ["BIGINT", "TEXT"], [[1, "a"], [2, "b"]]),
        Update.by_pk("user1", "t1", "id", ColumnType.BIGINT, 1, [("name", "TEXT", "z")]),
        Delete.by_pk("user1", "t1", "id", ColumnType.BIGINT, 2),
        StartFlush("svc", "t1"),
        AwaitFlush("t1"),
        Pause(0.5),
    ]
    results = [step.apply(m)[0] for step in program]
    assert results[:4] == [ExpectOk(), ExpectOk(affected=2), ExpectOk(affected=1), ExpectOk(affected=1)]
    assert isinstance(results[5], ExpectFlushDone) and isinstance(results[6], ExpectPause)
    read = Select("user1", "t1", ["id", "name"]).apply(m)[0]
    assert read.rows == ((1, "z"),)
    assert SelectDeleted("user1", "t1", ["id"]).apply(m)[0].rows == ((2,),)
    denied = Select("user1", "t1", as_user="user2")
    assert isinstance(denied.apply(m)[0], ExpectError)
    assert str(denied.requests("ns")[0]) == "[user1] EXECUTE AS USER 'user2' (SELECT * FROM ns.t1)"


@settings(max_examples=200, deadline=None)
@given(program=st.lists(any_step, max_size=12))
def test_the_model_predicts_or_refuses_any_program(program):
    """Applying random steps either predicts an outcome or raises UsageError naming the stale step."""
    m = Model()
    m.clock = 100.0
    for step in program:
        try:
            expectations = step.apply(m)
        except UsageError:
            continue
        if step.kind == "restart":  # run by the restart extension; it predicts nothing itself
            assert expectations == []
            continue
        assert len(expectations) == 1


# ---------------------------------------------------------------------- families, registry and facade

#: every kind's family, as the runner and the corpus may rely on it (and the module each family lives in)
FAMILY_OF = {
    "insert": StepFamily.DML,
    "insert_dropped_column": StepFamily.DML,
    "stream_insert": StepFamily.DML,
    "update": StepFamily.DML,
    "stream_update": StepFamily.DML,
    "update_expr": StepFamily.DML,
    "delete": StepFamily.DML,
    "select": StepFamily.READ,
    "stream_select": StepFamily.READ,
    "select_deleted": StepFamily.READ,
    "count": StepFamily.READ,
    "create_table": StepFamily.DDL,
    "alter_add_column": StepFamily.DDL,
    "alter_drop_column": StepFamily.DDL,
    "flush": StepFamily.FLUSH,
    "start_flush": StepFamily.FLUSH,
    "await_flush": StepFamily.FLUSH,
    "subscribe": StepFamily.LIVE,
    "next_batch": StepFamily.LIVE,
    "unsubscribe": StepFamily.LIVE,
    "resubscribe_from_seq": StepFamily.LIVE,
    "probe_create_shared": StepFamily.PROBE,
    "probe_shared_write": StepFamily.PROBE,
    "probe_execute_as": StepFamily.PROBE,
    "probe_system_read": StepFamily.PROBE,
    "pause": StepFamily.ACTION,
    "restart": StepFamily.ACTION,
}
MODULE_OF = {
    StepFamily.DML: "dml",
    StepFamily.READ: "reads",
    StepFamily.DDL: "ddl",
    StepFamily.FLUSH: "flush",
    StepFamily.LIVE: "live",
    StepFamily.PROBE: "probes",
    StepFamily.ACTION: "actions",
}


def test_every_registered_step_declares_its_own_family():
    """Each registered class sets a StepFamily itself (not inherited), and it is the documented one."""
    for kind, cls in STEP_TYPES.items():
        assert isinstance(cls.__dict__.get("family"), StepFamily), kind
        assert cls.family is FAMILY_OF[kind], kind
    assert set(FAMILY_OF) == set(STEP_TYPES)


def test_the_families_partition_the_step_types():
    """Every family has steps, every step is in exactly one family, and it lives in that family's module."""
    by_family: dict[StepFamily, set[str]] = {family: set() for family in StepFamily}
    for kind, cls in STEP_TYPES.items():
        by_family[cls.family].add(kind)
        assert cls.__module__ == f"kalammodel.steps.{MODULE_OF[cls.family]}", kind
    assert all(by_family.values()), by_family
    assert sum(len(kinds) for kinds in by_family.values()) == len(STEP_TYPES)
    assert set().union(*by_family.values()) == set(STEP_TYPES)
    assert set(LIVE_STEPS) == {STEP_TYPES[kind] for kind in by_family[StepFamily.LIVE]}
    assert by_family[StepFamily.PROBE] == {kind for kind in STEP_TYPES if kind.startswith("probe")}


def test_only_read_and_probe_steps_are_reads_only():
    """reads_only (a single SELECT) holds of the READ family and of the probes that SELECT, nothing else."""
    readers = {kind for kind, cls in STEP_TYPES.items() if cls.reads_only}
    assert readers == {kind for kind, family in FAMILY_OF.items() if family is StepFamily.READ} | {
        "probe_execute_as",
        "probe_system_read",
    }


def test_register_refuses_a_step_without_its_own_kind_or_family():
    """register() raises InternalError for a missing kind or family, a non-attrs class or a kind taken twice."""

    @attrs.frozen
    class NoFamily(Insert):
        kind = "no_family"

    @attrs.frozen
    class NoKind(Step):
        family = StepFamily.ACTION

    class NotAttrs(Step):
        kind = "not_attrs"
        family = StepFamily.ACTION

    @attrs.frozen
    class Twice(Insert):
        kind = "insert"
        family = StepFamily.DML

    before = dict(STEP_TYPES)
    for cls, message in [
        (NoFamily, "NoFamily .'no_family'. declares no StepFamily"),
        (NoKind, "NoKind declares no 'kind'"),
        (NotAttrs, "not an attrs class"),
        (Twice, "step kind 'insert' registered twice"),
    ]:
        with pytest.raises(InternalError, match=message):
            register(cls)
    assert STEP_TYPES == before


@pytest.mark.parametrize("kind", [None, 3, ["insert"], {"k": 1}])
def test_a_kind_that_is_not_a_string_is_a_usage_error(kind):
    """step_from_data names a kind that is no string as unknown instead of failing on it."""
    with pytest.raises(UsageError, match="unknown step kind"):
        step_from_data({"kind": kind, "actor": "root"})


def test_the_steps_facade_exports_every_public_name_of_its_modules():
    """kalammodel.steps.__all__ is sorted, names only what exists, and lists every public class and function."""
    assert steps_pkg.__all__ == sorted(steps_pkg.__all__)
    missing = []
    for info in pkgutil.iter_modules(steps_pkg.__path__):
        module = importlib.import_module(f"kalammodel.steps.{info.name}")
        for name, value in vars(module).items():
            defined_here = getattr(value, "__module__", None) == module.__name__
            if (
                (inspect.isclass(value) or inspect.isfunction(value))
                and defined_here
                and not name.startswith("_")
            ):
                if name not in steps_pkg.__all__:
                    missing.append(f"{module.__name__}.{name}")
    assert not missing, f"public names missing from kalammodel.steps.__all__: {missing}"
    for name in steps_pkg.__all__:
        assert hasattr(steps_pkg, name), name
