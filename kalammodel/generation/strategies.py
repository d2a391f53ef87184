"""Hypothesis strategies for the data inside steps: values, schemas, predicates, rows.

Value domains are chosen so that the wire round trip is exact (DOUBLE values are binary fractions, TIMESTAMP
values whole microseconds in a range every engine renders, JSON canonical) and so that collisions are likely:
primary keys come from a small domain, so inserts hit existing keys, predicates hit rows, and deletes hit
re-inserted keys.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st

from ..model import (
    AccessLevel,
    And,
    Between,
    Cmp,
    Column,
    ColumnType,
    In,
    IsNotNull,
    IsNull,
    Like,
    Not,
    Or,
    Predicate,
    TableKind,
    TableSpec,
    canonical_json,
)

if TYPE_CHECKING:
    from .workloads import Workload

__all__ = [
    "PK_TYPES",
    "SYNTHETIC_USERS",
    "column_type_strategy",
    "columns_strategy",
    "favour_absent",
    "live_predicates",
    "pk_values",
    "predicates",
    "row_values",
    "table_spec",
    "values",
    "weighted",
]

PK_TYPES = (ColumnType.BIGINT, ColumnType.INT, ColumnType.TEXT)

#: Synthetic user ids reached only through EXECUTE AS USER (they need no CREATE USER, PROTOCOL §6.3).
SYNTHETIC_USERS = ("syn_a", "syn_b")

_TS_BASE = 1_700_000_000_000_000  # 2023-11-14 in µs
_TEXT_ALPHABET = "abcAB _%'"


def favour_absent(
    weights: Sequence[tuple[str, float]], present: Iterable[object], factor: float = 4
) -> list[tuple[str, float]]:
    """``weights`` with every name not in ``present`` (compared upper-case) weighing ``factor`` times more.

    For the kinds and access levels of an example's tables: the first table follows the workload's weights,
    later ones lean towards what the example does not hold yet.
    """
    upper = {str(p).upper() for p in present}
    return [(name, w if name.upper() in upper else w * factor) for name, w in weights]


def weighted(weights: Sequence[tuple[str, float]]) -> st.SearchStrategy[str]:
    """Draw a name with probability proportional to its weight (weights > 0 only).

    The first name shrinks best, so callers list the cheapest operation first.
    """
    names: list[str] = []
    for name, weight in weights:
        if weight > 0:
            names.extend([name] * max(1, round(weight)))
    if not names:
        raise ValueError("weighted() needs at least one positive weight")
    return st.sampled_from(names)


def values(col_type: ColumnType, *, pk: bool = False) -> st.SearchStrategy[Any]:
    """Non-NULL values of ``col_type`` that survive the wire exactly (cached: strategies are immutable)."""
    return _values(ColumnType(col_type), pk)


@functools.lru_cache(maxsize=64)
def _values(col_type: ColumnType, pk: bool) -> st.SearchStrategy[Any]:
    """Non-NULL values of ``col_type`` that survive the wire exactly."""
    t = ColumnType(col_type)
    if pk:
        if t is ColumnType.TEXT:
            return st.sampled_from(["a", "b", "c", "d", "e", "f", "k1", "k2", "zz", "o'k"])
        return st.integers(0, 30)
    if t is ColumnType.BIGINT:
        return st.one_of(st.integers(-5, 20), st.integers(-(2**53), 2**53))
    if t is ColumnType.INT:
        return st.one_of(st.integers(-5, 20), st.integers(-(2**31), 2**31 - 1))
    if t is ColumnType.SMALLINT:
        return st.integers(-(2**15), 2**15 - 1)
    if t is ColumnType.DOUBLE:
        return st.integers(-400, 400).map(lambda k: k / 4.0)
    if t is ColumnType.BOOLEAN:
        return st.booleans()
    if t is ColumnType.TEXT:
        return st.text(alphabet=_TEXT_ALPHABET, max_size=5)
    if t is ColumnType.TIMESTAMP:
        return st.integers(0, 3_000_000).map(lambda k: _TS_BASE + k * 1_000_000)
    if t is ColumnType.JSON:
        scalars = st.one_of(st.integers(-3, 3), st.booleans(), st.sampled_from(["x", "y"]), st.none())
        doc = st.one_of(
            st.dictionaries(st.sampled_from(["a", "b", "c"]), scalars, max_size=3),
            st.lists(scalars, max_size=3),
        )
        return doc.map(lambda d: canonical_json(json.dumps(d)))
    raise ValueError(f"no value strategy for column type {col_type!r}")


def column_type_strategy(weights: Sequence[tuple[str, float]]) -> st.SearchStrategy[ColumnType]:
    known = {t.value.lower(): t for t in ColumnType}
    usable = [(name, w) for name, w in weights if name.lower() in known and w > 0]
    if not usable:
        usable = [("bigint", 1.0), ("text", 1.0)]
    return weighted(usable).map(lambda n: known[n.lower()])


@st.composite
def columns_strategy(
    draw: st.DrawFn,
    type_weights: Sequence[tuple[str, float]],
    min_columns: int,
    max_columns: int,
    with_pk: bool,
) -> tuple[Column, ...]:
    """A PK column (when ``with_pk``) plus ``min..max`` other columns of mixed types, nullable or NOT NULL,
    one in four with a literal DEFAULT (what an INSERT omitting the column stores, PROTOCOL §4.1)."""
    cols: list[Column] = []
    if with_pk:
        pk_type = draw(st.sampled_from(PK_TYPES))
        cols.append(Column("id", pk_type, nullable=False, primary_key=True))
    n = draw(st.integers(min_columns, max_columns))
    col_type = column_type_strategy(type_weights)
    for i in range(n):
        t = draw(col_type)
        nullable = draw(st.integers(0, 3).map(lambda x: x > 0))
        default = None
        if t is not ColumnType.JSON and draw(st.integers(0, 3)) == 3:  # shrinks towards no DEFAULT
            default = draw(values(t))
        cols.append(Column(f"c{i}", t, nullable=nullable, default=default))
    return tuple(cols)


@st.composite
def table_spec(
    draw: st.DrawFn,
    workload: Workload,
    name: str,
    kind: TableKind,
    present_levels: frozenset[str] = frozenset(),
) -> TableSpec:
    """A table of ``kind`` with a generated schema drawn from the workload's column weights.

    A SHARED table's access level is drawn from the workload's weights, a level in ``present_levels`` (those
    of the example's other SHARED tables) at a quarter of its weight: RBAC probes need both levels side by side.
    """
    with_pk = kind is not TableKind.STREAM or draw(st.booleans())
    low = max(1, workload.columns.min)
    high = max(low, workload.columns.max)
    columns = draw(columns_strategy(workload.column_types.items, low, high, with_pk))
    ttl = None
    access = None
    if kind is TableKind.STREAM:
        ttl = draw(st.integers(max(1, workload.ttl_seconds.min), max(1, workload.ttl_seconds.max)))
    if kind is TableKind.SHARED:
        levels = {lvl.value.lower(): lvl for lvl in AccessLevel}
        usable = favour_absent(
            [(n, w) for n, w in workload.access_levels.items if n.lower() in levels and w > 0], present_levels
        )
        if usable:
            access = levels[draw(weighted(usable)).lower()]
    return TableSpec(
        name=name,
        kind=kind.value,
        columns=columns,
        ttl_seconds=ttl,
        access_level=None if access is None else access.value,
    )


def pk_values(col_type: ColumnType) -> st.SearchStrategy[Any]:
    return values(col_type, pk=True)


@st.composite
def row_values(draw: st.DrawFn, columns: Sequence[Column], pk_value: Any = None) -> tuple[Any, ...]:
    """One row for ``columns``; NOT NULL columns always get a value, nullable ones NULL one time in four."""
    row = []
    for col in columns:
        if col.primary_key:
            row.append(pk_value if pk_value is not None else draw(pk_values(col.type)))
        elif not col.nullable or draw(st.integers(0, 3)) > 0:
            row.append(draw(values(col.type)))
        else:
            row.append(None)
    return tuple(row)


def _leaf(columns: Sequence[Column]) -> st.SearchStrategy[Predicate]:
    comparable = [c for c in columns if c.type is not ColumnType.JSON]
    options: list[st.SearchStrategy[Predicate]] = []
    if comparable:

        @st.composite
        def cmp(draw: st.DrawFn) -> Predicate:
            col = draw(st.sampled_from(comparable))
            op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
            return Cmp(col.name, col.type, op, draw(values(col.type, pk=col.primary_key)))

        @st.composite
        def in_list(draw: st.DrawFn) -> Predicate:
            col = draw(st.sampled_from(comparable))
            items = draw(st.lists(values(col.type, pk=col.primary_key), min_size=1, max_size=3))
            return In(col.name, col.type, tuple(items))

        @st.composite
        def between(draw: st.DrawFn) -> Predicate:
            col = draw(
                st.sampled_from([c for c in comparable if c.type is not ColumnType.BOOLEAN] or comparable)
            )
            a = draw(values(col.type, pk=col.primary_key))
            b = draw(values(col.type, pk=col.primary_key))
            low, high = (a, b) if _le(a, b) else (b, a)
            return Between(col.name, col.type, low, high)

        options += [cmp(), in_list(), between()]
        texts = [c for c in comparable if c.type is ColumnType.TEXT]
        if texts:

            @st.composite
            def like(draw: st.DrawFn) -> Predicate:
                col = draw(st.sampled_from(texts))
                pattern = draw(st.text(alphabet="ab%_", min_size=1, max_size=3))
                return Like(col.name, pattern, col.type)

            options.append(like())
    nullable = [c for c in columns if c.nullable and not c.primary_key]
    if nullable:
        options.append(st.sampled_from(nullable).map(lambda c: IsNull(c.name, c.type)))
        options.append(st.sampled_from(nullable).map(lambda c: IsNotNull(c.name, c.type)))
    if not options:
        raise ValueError("no column can carry a predicate")
    return st.one_of(options)


def _le(a: Any, b: Any) -> bool:
    try:
        return bool(a <= b)
    except TypeError:
        return True


def predicates(columns: Sequence[Column], max_depth: int = 2) -> st.SearchStrategy[Predicate]:
    """WHERE trees over ``columns``: comparisons, IN, BETWEEN, LIKE, IS [NOT] NULL, AND/OR/NOT.

    Cached per column tuple: building the recursive strategy costs ~10 ms, drawing from it far less. Every
    shape is drawn, also those an engine gets wrong (two IN lists on one column, which DataFusion folds to FALSE
    even for NULL: docs/kalamdb-findings.md #12): the model says what SQL says, the verdict knows known bugs.
    """
    return _predicates(tuple(columns), max_depth)


@functools.lru_cache(maxsize=256)
def _predicates(columns: tuple[Column, ...], max_depth: int) -> st.SearchStrategy[Predicate]:
    """WHERE trees over ``columns``: comparisons, IN, BETWEEN, LIKE, IS [NOT] NULL, AND/OR/NOT.

    A leaf is, one time in four, two conditions on one column under AND or OR (each maybe negated): where an
    engine's simplifier merges conditions on one column (IN lists, ranges) it forgets NULL (finding 12), and
    independent leaves rarely meet on one column."""
    leaf = _leaf(columns)
    pairs = _same_column_pairs(columns)
    if pairs is not None:
        leaf = st.one_of(leaf, leaf, leaf, pairs)
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.tuples(inner, inner).map(lambda ab: And(ab)),
            st.tuples(inner, inner).map(lambda ab: Or(ab)),
            inner.map(Not),
        ),
        max_leaves=max(1, 2**max_depth),
    )


def _in_lists(col: Column) -> st.SearchStrategy[Predicate]:
    def build(items: list[Any]) -> Predicate:
        return In(col.name, col.type, tuple(items))

    return st.lists(values(col.type, pk=col.primary_key), min_size=1, max_size=3).map(build)


def _same_column_pairs(columns: tuple[Column, ...]) -> st.SearchStrategy[Predicate] | None:
    """Two conditions on one column under AND / OR, each maybe negated, the whole maybe negated; None when no
    column has leaves. Leans to nullable columns, to two IN lists, and to a NOT above an AND: where a
    simplifier folds ``c IN (a) AND c IN (b)`` to FALSE without regard to NULL, the NOT shows it (finding 12)."""
    usable = [c for c in columns if c.type is not ColumnType.JSON]
    if not usable:
        return None
    per_column = {c.name: _leaf((c,)) for c in usable}
    in_lists = {c.name: _in_lists(c) for c in usable}
    nullable = sorted(c.name for c in usable if c.nullable)
    names = sorted(per_column)

    @st.composite
    def pair(draw: st.DrawFn) -> Predicate:
        pool = nullable if nullable and draw(st.integers(0, 3)) > 0 else names
        name = draw(st.sampled_from(pool))
        source = per_column[name] if draw(st.integers(0, 3)) == 0 else in_lists[name]
        items = [draw(source) for _ in range(2)]
        items = [Not(p) if draw(st.integers(0, 3)) == 0 else p for p in items]
        if draw(st.booleans()):
            return Or(tuple(items))
        both = And(tuple(items))
        return both if draw(st.integers(0, 3)) == 0 else Not(both)

    return pair()


def live_predicates(columns: Sequence[Column]) -> st.SearchStrategy[Predicate]:
    """Live filters: the same grammar as query predicates (:func:`predicates`), over every column, nullable
    ones included (IN, BETWEEN, IS NULL, LIKE, ...). The model evaluates them by SQL three-valued logic; a server
    may refuse a filter it cannot evaluate, but must never acknowledge it and then drop changes."""
    return predicates(columns)
