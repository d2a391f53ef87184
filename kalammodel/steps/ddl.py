"""DDL steps: ``CREATE TABLE`` and ``ALTER TABLE ... ADD|DROP COLUMN`` (family :attr:`StepFamily.DDL`)."""

from __future__ import annotations

import enum
from typing import ClassVar

import attrs

from ..model import (
    CANONICAL_STYLE,
    Column,
    Expectation,
    Model,
    SqlStyle,
    TableSpec,
    render_alter_add,
    render_alter_drop,
    render_create_table,
)
from .base import Request, Step, StepFamily, register
from .codec import _actor, _column, _column_name, _opt_str, _spec, _style, _table


@register
@attrs.frozen
class CreateTable(Step):
    """``CREATE <kind> TABLE`` from a generated :class:`TableSpec` (PROTOCOL §4.1)."""

    kind: ClassVar[str] = "create_table"
    family: ClassVar[StepFamily] = StepFamily.DDL
    actor: str = attrs.field(converter=_actor)
    spec: TableSpec = attrs.field(converter=_spec)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)
    style: SqlStyle = attrs.field(default=CANONICAL_STYLE, converter=_style, kw_only=True)

    def requests(self, ns: str) -> list[Request]:
        return self._request(render_create_table(self.style, self.spec, ns))

    def apply(self, model: Model) -> list[Expectation]:
        return [model.create_table(self.actor, self.spec, self.as_user)]

    def describe(self) -> str:
        spec = self.spec
        cols = ", ".join(c.render() for c in spec.columns)
        options = []
        for name in ("ttl_seconds", "access_level", "storage_id", "flush_policy"):
            value = getattr(spec, name)
            if value is not None:
                options.append(f"{name}={value.value if isinstance(value, enum.Enum) else value!r}")
        opts = f", {', '.join(options)}" if options else ""
        return f"{self.kind}({spec.name}, {spec.kind.value}, [{cols}]{opts}, {self._who()}{self._styled()})"


@register
@attrs.frozen
class AlterAddColumn(Step):
    """``ALTER TABLE t ADD COLUMN c TYPE``: old rows read NULL (PROTOCOL §9)."""

    kind: ClassVar[str] = "alter_add_column"
    family: ClassVar[StepFamily] = StepFamily.DDL
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    column: Column = attrs.field(converter=_column)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)
    style: SqlStyle = attrs.field(default=CANONICAL_STYLE, converter=_style, kw_only=True)

    def requests(self, ns: str) -> list[Request]:
        return self._request(render_alter_add(self.style, self.style.qualified(ns, self.table), self.column))

    def apply(self, model: Model) -> list[Expectation]:
        return [model.alter_add_column(self.actor, self.table, self.column, self.as_user)]

    def describe(self) -> str:
        return f"{self.kind}({self.table}, {self._who()}, {self.column.render()!r}{self._styled()})"


@register
@attrs.frozen
class AlterDropColumn(Step):
    """``ALTER TABLE t DROP COLUMN c``: gone from reads, never back with old values (PROTOCOL §9)."""

    kind: ClassVar[str] = "alter_drop_column"
    family: ClassVar[StepFamily] = StepFamily.DDL
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    column: str = attrs.field(converter=_column_name)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)
    style: SqlStyle = attrs.field(default=CANONICAL_STYLE, converter=_style, kw_only=True)

    def requests(self, ns: str) -> list[Request]:
        return self._request(render_alter_drop(self.style, self.style.qualified(ns, self.table), self.column))

    def apply(self, model: Model) -> list[Expectation]:
        return [model.alter_drop_column(self.actor, self.table, self.column, self.as_user)]

    def describe(self) -> str:
        return f"{self.kind}({self.table}, {self._who()}, {self.column!r}{self._styled()})"
