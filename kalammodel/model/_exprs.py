"""Assignments of UPDATE that compute from the row: ``SET c = c + k``, ``c = c * k``, ``t = t || 's'``.

The model evaluates them exactly with SQL semantics: NULL in, NULL out; an integer result outside the column
type's range is an error (SQL: "numeric value out of range"; DataFusion wraps BIGINT arithmetic, a server must
not). Only operators the model evaluates exactly are modelled: no floating point.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._types import _INT_RANGES, ColumnType, render_value

__all__ = ["EXPR_OPS", "OVERFLOW", "SetExpr"]

#: the operators per column kind: integers add and multiply, text concatenates
EXPR_OPS: dict[str, tuple[str, ...]] = {"integer": ("+", "*"), "text": ("||",)}


class _Overflow:
    def __repr__(self) -> str:
        return "OVERFLOW"


#: what :meth:`SetExpr.apply` returns when the result does not fit the column's type
OVERFLOW: Any = _Overflow()


def _op(value: Any) -> str:
    if value not in ("+", "*", "||"):
        raise ValueError(f"operator must be one of +, *, || (got {value!r})")
    return str(value)


@attrs.frozen
class SetExpr:
    """``column = column <op> operand``; ``operand`` is a non-NULL cell of ``type``."""

    column: str = attrs.field(validator=attrs.validators.instance_of(str))
    type: ColumnType = attrs.field(converter=lambda t: t if isinstance(t, ColumnType) else ColumnType(str(t).upper()))
    op: str = attrs.field(converter=_op)
    operand: Any = attrs.field()

    @operand.validator
    def _check(self, attribute: attrs.Attribute, value: Any) -> None:
        if self.op == "||":
            if self.type is not ColumnType.TEXT:
                raise ValueError(f"|| applies to TEXT columns, not {self.type.value}")
        elif not self.type.is_integer:
            raise ValueError(f"{self.op} applies to integer columns, not {self.type.value}")
        self.type.check(value)

    def render(self) -> str:
        """The SET item: ``c = c + 5``, ``c = c * (-1)``, ``t = t || 'x'``."""
        operand = render_value(self.type, self.operand)
        if operand.startswith("-"):
            operand = f"({operand})"
        return f"{self.column} = {self.column} {self.op} {operand}"

    def describe(self) -> str:
        return f"{self.column}={self.column}{self.op}{self.operand!r}"

    def apply(self, old: Any) -> Any:
        """The new value for the old one (None: NULL); :data:`OVERFLOW` when it leaves the type's range."""
        if old is None:
            return None
        if self.op == "||":
            return f"{old}{self.operand}"
        result = old + self.operand if self.op == "+" else old * self.operand
        low, high = _INT_RANGES[self.type]
        return result if low <= result <= high else OVERFLOW

    def to_data(self) -> list[Any]:
        return [self.column, self.type.value, self.op, self.operand]

    @classmethod
    def from_data(cls, data: Any) -> SetExpr:
        if isinstance(data, SetExpr):
            return data
        if not isinstance(data, (list, tuple)) or len(data) != 4:
            raise ValueError(f"an expression must be [column, type, op, operand] (got {data!r})")
        return cls(*data)
