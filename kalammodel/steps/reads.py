"""Read steps: one SELECT of a user table (family :attr:`StepFamily.READ`, all ``reads_only``)."""

from __future__ import annotations

from typing import ClassVar

import attrs

from ..model import CANONICAL_STYLE, Cmp, ColumnType, Expectation, Model, Predicate, SqlStyle, render_select
from .base import Request, Step, StepFamily, _where_text, register
from .codec import _actor, _limit, _offset, _opt_names, _opt_str, _order_by, _style, _table, _where


@register
@attrs.frozen
class Select(Step):
    """``SELECT cols|* FROM t [WHERE] [ORDER BY] [LIMIT] [OFFSET]`` (``columns`` None means ``*``)."""

    kind: ClassVar[str] = "select"
    family: ClassVar[StepFamily] = StepFamily.READ
    reads_only: ClassVar[bool] = True
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    columns: tuple[str, ...] | None = attrs.field(default=None, converter=_opt_names)
    where: Predicate | None = attrs.field(default=None, converter=_where)
    order_by: tuple[tuple[str, bool], ...] = attrs.field(default=(), converter=_order_by)
    limit: int | None = attrs.field(default=None, converter=_limit)
    offset: int | None = attrs.field(default=None, converter=_offset)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)
    style: SqlStyle = attrs.field(default=CANONICAL_STYLE, converter=_style, kw_only=True)

    def requests(self, ns: str) -> list[Request]:
        s = self.style
        source = s.qualified(ns, self.table)
        return self._request(
            render_select(s, source, self.columns, self.where, self.order_by, self.limit, self.offset)
        )

    def apply(self, model: Model) -> list[Expectation]:
        return [
            model.select(
                self.actor,
                self.table,
                self.columns,
                self.where,
                self.order_by,
                self.limit,
                self.offset,
                self.as_user,
            )
        ]

    def describe(self) -> str:
        parts = [self.table, self._who()]
        if self.columns is not None:
            parts.append(f"columns=[{', '.join(self.columns)}]")
        if self.where is not None:
            parts.append(f"where={self.where.render()!r}")
        if self.order_by:
            parts.append(
                "order_by=[" + ", ".join(f"{c}{' DESC' if d else ''}" for c, d in self.order_by) + "]"
            )
        if self.limit is not None:
            parts.append(f"limit={self.limit}")
        if self.offset is not None:
            parts.append(f"offset={self.offset}")
        return f"{self.kind}({', '.join(parts)}{self._styled()})"


@register
@attrs.frozen
class StreamSelect(Select):
    """SELECT on a STREAM table: rows near their TTL may or may not appear."""

    kind: ClassVar[str] = "stream_select"
    family: ClassVar[StepFamily] = StepFamily.READ


_DELETED_TRUE = Cmp("_deleted", ColumnType.BOOLEAN, "=", True)


@register
@attrs.frozen
class SelectDeleted(Step):
    """``SELECT cols|* FROM t WHERE _deleted = true``: tombstones still hot (PROTOCOL §5.3)."""

    kind: ClassVar[str] = "select_deleted"
    family: ClassVar[StepFamily] = StepFamily.READ
    reads_only: ClassVar[bool] = True
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    columns: tuple[str, ...] | None = attrs.field(default=None, converter=_opt_names)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)
    style: SqlStyle = attrs.field(default=CANONICAL_STYLE, converter=_style, kw_only=True)

    def _select(self) -> Select:
        return Select(self.actor, self.table, self.columns, _DELETED_TRUE, as_user=self.as_user, style=self.style)

    def requests(self, ns: str) -> list[Request]:
        return self._select().requests(ns)

    def apply(self, model: Model) -> list[Expectation]:
        return self._select().apply(model)

    def describe(self) -> str:
        cols = "" if self.columns is None else f", columns=[{', '.join(self.columns)}]"
        return f"{self.kind}({self.table}, {self._who()}{cols}{self._styled()})"


@register
@attrs.frozen
class Count(Step):
    """``SELECT COUNT(*) AS n FROM t [WHERE]``: the true count, never capped."""

    kind: ClassVar[str] = "count"
    family: ClassVar[StepFamily] = StepFamily.READ
    reads_only: ClassVar[bool] = True
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    where: Predicate | None = attrs.field(default=None, converter=_where)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)
    style: SqlStyle = attrs.field(default=CANONICAL_STYLE, converter=_style, kw_only=True)

    def requests(self, ns: str) -> list[Request]:
        source = self.style.qualified(ns, self.table)
        return self._request(render_select(self.style, source, where=self.where, count=True))

    def apply(self, model: Model) -> list[Expectation]:
        return [model.count(self.actor, self.table, self.where, self.as_user)]

    def describe(self) -> str:
        return f"{self.kind}({self.table}, {self._who()}{_where_text(self.where)}{self._styled()})"
