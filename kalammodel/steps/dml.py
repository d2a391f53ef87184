"""DML steps: ``INSERT``, ``UPDATE``, ``DELETE`` (family :attr:`StepFamily.DML`).

Also the writes the model expects to be refused: an INSERT naming a dropped column, an UPDATE of a STREAM table.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from ..model import (
    CANONICAL_STYLE,
    Cmp,
    ColumnType,
    Expectation,
    Model,
    Predicate,
    SetExpr,
    SqlStyle,
    render_delete,
    render_insert,
    render_update,
)
from .base import Request, Step, StepFamily, _row_text, _show, _where_text, register
from .codec import (
    _actor,
    _assignments,
    _column_names,
    _expressions,
    _fail,
    _opt_str,
    _rows,
    _style,
    _table,
    _types,
    _where,
)


@register
@attrs.frozen
class Insert(Step):
    """``INSERT INTO t (columns) VALUES (...), ...`` — may carry duplicate or existing PKs on purpose."""

    kind: ClassVar[str] = "insert"
    family: ClassVar[StepFamily] = StepFamily.DML
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    columns: tuple[str, ...] = attrs.field(converter=_column_names)
    types: tuple[ColumnType, ...] = attrs.field(converter=_types)
    rows: tuple[tuple[Any, ...], ...] = attrs.field(converter=_rows)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)
    style: SqlStyle = attrs.field(default=CANONICAL_STYLE, converter=_style, kw_only=True)

    @types.validator
    def _check_shape(self, attribute: attrs.Attribute, value: tuple[ColumnType, ...]) -> None:
        if len(value) != len(self.columns):
            raise _fail("types", f"has {len(value)} type(s) for {len(self.columns)} column(s)")

    @rows.validator
    def _check_rows(self, attribute: attrs.Attribute, value: tuple[tuple[Any, ...], ...]) -> None:
        if not value:
            raise _fail("rows", "needs at least one row")
        for row in value:
            if len(row) != len(self.columns):
                raise _fail("rows", f"row {row!r} has {len(row)} value(s) for {len(self.columns)} column(s)")

    def requests(self, ns: str) -> list[Request]:
        target = self.style.qualified(ns, self.table)
        return self._request(render_insert(self.style, target, self.columns, self.types, self.rows))

    def apply(self, model: Model) -> list[Expectation]:
        return [model.insert(self.actor, self.table, self.columns, self.types, self.rows, self.as_user)]

    def describe(self) -> str:
        rows = ", ".join(_row_text(r) for r in self.rows)
        cols = ", ".join(self.columns)
        return f"{self.kind}({self.table}, {self._who()}, ({cols}) VALUES {rows}{self._styled()})"


@register
@attrs.frozen
class InsertNamingDroppedColumn(Insert):
    """An INSERT whose column list names a dropped column: must fail with SQL_EXECUTION_ERROR (PROTOCOL §9)."""

    kind: ClassVar[str] = "insert_dropped_column"
    family: ClassVar[StepFamily] = StepFamily.DML


@register
@attrs.frozen
class StreamInsert(Insert):
    """INSERT into a STREAM table (rows expire after the TTL)."""

    kind: ClassVar[str] = "stream_insert"
    family: ClassVar[StepFamily] = StepFamily.DML


@register
@attrs.frozen
class Update(Step):
    """``UPDATE t SET ... WHERE ...`` by PK or by any predicate (PROTOCOL §5.2)."""

    kind: ClassVar[str] = "update"
    family: ClassVar[StepFamily] = StepFamily.DML
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    assignments: tuple[tuple[str, ColumnType, Any], ...] = attrs.field(converter=_assignments)
    where: Predicate | None = attrs.field(default=None, converter=_where)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)
    style: SqlStyle = attrs.field(default=CANONICAL_STYLE, converter=_style, kw_only=True)

    @assignments.validator
    def _check_assignments(self, attribute: attrs.Attribute, value: tuple[Any, ...]) -> None:
        if not value:
            raise _fail("assignments", "needs at least one assignment")

    @classmethod
    def by_pk(
        cls,
        actor: str,
        table: str,
        pk: str,
        pk_type: ColumnType,
        pk_value: Any,
        assignments: Any,
        as_user: str | None = None,
    ) -> Update:
        """An UPDATE of the row with primary key ``pk = pk_value``.

        ``pk_value`` is a cell and ``assignments`` anything the ``assignments`` converter accepts (``Any``: the
        converter checks them).
        """
        return cls(actor, table, assignments, Cmp(pk, pk_type, "=", pk_value), as_user)

    def requests(self, ns: str) -> list[Request]:
        target = self.style.qualified(ns, self.table)
        return self._request(render_update(self.style, target, self.assignments, self.where))

    def apply(self, model: Model) -> list[Expectation]:
        return [model.update(self.actor, self.table, self.assignments, self.where, self.as_user)]

    def describe(self) -> str:
        sets = ", ".join(f"{c}={_show(v)}" for c, _, v in self.assignments)
        return f"{self.kind}({self.table}, {self._who()}, set=[{sets}]{_where_text(self.where)}{self._styled()})"


@register
@attrs.frozen
class StreamUpdate(Update):
    """UPDATE on a STREAM table: always rejected (PROTOCOL §8)."""

    kind: ClassVar[str] = "stream_update"
    family: ClassVar[StepFamily] = StepFamily.DML


@register
@attrs.frozen
class UpdateExpr(Step):
    """``UPDATE t SET c = c + 1, t = t || 'x', v = <literal> WHERE ...``: assignments computed from the row
    (:class:`~kalammodel.model.SetExpr`: SQL NULL semantics, out-of-range integers fail) beside literal ones."""

    kind: ClassVar[str] = "update_expr"
    family: ClassVar[StepFamily] = StepFamily.DML
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    expressions: tuple[SetExpr, ...] = attrs.field(converter=_expressions)
    assignments: tuple[tuple[str, ColumnType, Any], ...] = attrs.field(default=(), converter=_assignments)
    where: Predicate | None = attrs.field(default=None, converter=_where)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)
    style: SqlStyle = attrs.field(default=CANONICAL_STYLE, converter=_style, kw_only=True)

    @expressions.validator
    def _check_expressions(self, attribute: attrs.Attribute, value: tuple[SetExpr, ...]) -> None:
        if not value:
            raise _fail("expressions", "needs at least one expression (a literal-only UPDATE is an update step)")

    def requests(self, ns: str) -> list[Request]:
        target = self.style.qualified(ns, self.table)
        computed = [e.render() for e in self.expressions]
        return self._request(render_update(self.style, target, self.assignments, self.where, computed))

    def apply(self, model: Model) -> list[Expectation]:
        return [
            model.update(self.actor, self.table, self.assignments, self.where, self.as_user, self.expressions)
        ]

    def describe(self) -> str:
        sets = [e.describe() for e in self.expressions] + [f"{c}={_show(v)}" for c, _, v in self.assignments]
        return f"{self.kind}({self.table}, {self._who()}, set=[{', '.join(sets)}]{_where_text(self.where)}{self._styled()})"


@register
@attrs.frozen
class Delete(Step):
    """``DELETE FROM t WHERE ...``: a tombstone per live row matched (STREAM: hard delete)."""

    kind: ClassVar[str] = "delete"
    family: ClassVar[StepFamily] = StepFamily.DML
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    where: Predicate | None = attrs.field(default=None, converter=_where)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)
    style: SqlStyle = attrs.field(default=CANONICAL_STYLE, converter=_style, kw_only=True)

    @classmethod
    def by_pk(
        cls, actor: str, table: str, pk: str, pk_type: ColumnType, pk_value: Any, as_user: str | None = None
    ) -> Delete:
        """A DELETE of the row with primary key ``pk = pk_value``."""
        return cls(actor, table, Cmp(pk, pk_type, "=", pk_value), as_user)

    def requests(self, ns: str) -> list[Request]:
        return self._request(render_delete(self.style, self.style.qualified(ns, self.table), self.where))

    def apply(self, model: Model) -> list[Expectation]:
        return [model.delete(self.actor, self.table, self.where, self.as_user)]

    def describe(self) -> str:
        return f"{self.kind}({self.table}, {self._who()}{_where_text(self.where)}{self._styled()})"
