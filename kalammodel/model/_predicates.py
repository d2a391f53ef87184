"""WHERE-clause expression trees: render to SQL, evaluate with SQL three-valued logic.

A predicate is a tree of frozen records over typed columns and literals::

    And((Cmp("score", ColumnType.INT, ">", 3), Not(IsNull("name", ColumnType.TEXT))))

``render()`` gives the SQL text, ``evaluate(row)`` gives ``True``, ``False`` or ``None`` (SQL UNKNOWN) for a row
given as ``{column name: decoded value}``. Nothing here knows a SQL engine: the property tests check that
DataFusion (KalamDB's engine) agrees.

Rules kept so that every engine agrees:

* literals are never NULL (``x = NULL`` is always UNKNOWN; use :class:`IsNull`);
* literals have the column's type and range;
* JSON columns only take :class:`IsNull` / :class:`IsNotNull` (servers may re-serialise JSON text);
* LIKE only on TEXT, case-sensitive, ``%`` and ``_`` wildcards, no backslash in the pattern (no ESCAPE);
* the pseudo column ``_deleted`` (BOOLEAN) may be compared: PROTOCOL §5.3 says a WHERE naming it keeps tombstones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import attrs

from ._style import CANONICAL, SqlStyle, render_predicate
from ._types import ColumnType

__all__ = [
    "And",
    "Between",
    "Cmp",
    "In",
    "IsNotNull",
    "IsNull",
    "Like",
    "Not",
    "Or",
    "Predicate",
    "pred_from_data",
    "pred_to_data",
]

CMP_OPS = ("=", "!=", "<", "<=", ">", ">=")


def _col_type(value: Any) -> ColumnType:
    return value if isinstance(value, ColumnType) else ColumnType(str(value).upper())


def _check_literal(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    col_type: ColumnType = instance.col_type
    if not col_type.orderable:
        raise ValueError(
            f"{type(instance).__name__} on {instance.column!r}: JSON columns take only IS [NOT] NULL"
        )
    try:
        col_type.check(value)
    except ValueError as exc:
        raise ValueError(
            f"{type(instance).__name__} on {instance.column!r}, field {attribute.name!r}: {exc}"
        ) from None


def _check_values(instance: Any, attribute: attrs.Attribute, values: tuple[Any, ...]) -> None:
    if not values:
        raise ValueError(f"In on {instance.column!r} needs at least one value (got an empty list)")
    for value in values:
        _check_literal(instance, attribute, value)


def _check_op(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value not in CMP_OPS:
        raise ValueError(f"comparison operator must be one of {CMP_OPS} (got {value!r})")


def _check_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"[a-z_][a-z0-9_]*", value):
        raise ValueError(f"column must be a lowercase identifier (got {value!r})")


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "=":
        return left == right
    if op == "!=":
        return left != right
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def _value(row: Mapping[str, Any], column: str) -> Any:
    try:
        return row[column]
    except KeyError:
        raise KeyError(
            f"predicate names column {column!r} that the row does not have (row has {sorted(row)})"
        ) from None


class _Node:
    """Shared behaviour of predicate records."""

    op_name: ClassVar[str]

    def columns(self) -> frozenset[str]:
        """Every column name the predicate mentions."""
        raise NotImplementedError

    def render(self, style: SqlStyle = CANONICAL) -> str:
        """The SQL text of the predicate, written in ``style`` (:mod:`kalammodel.model._style`)."""
        return render_predicate(self, style)  # type: ignore[arg-type]  # every subclass is a Predicate

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.render()


@attrs.frozen
class Cmp(_Node):
    """``column <op> literal`` with op in ``= != < <= > >=``."""

    op_name: ClassVar[str] = "cmp"
    column: str = attrs.field(validator=_check_name)
    col_type: ColumnType = attrs.field(converter=_col_type)
    op: str = attrs.field(validator=_check_op)
    value: Any = attrs.field(validator=_check_literal)

    def columns(self) -> frozenset[str]:
        return frozenset({self.column})

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        left = _value(row, self.column)
        if left is None:
            return None
        return _compare(self.op, left, self.value)


@attrs.frozen
class IsNull(_Node):
    """``column IS NULL``."""

    op_name: ClassVar[str] = "is_null"
    column: str = attrs.field(validator=_check_name)
    col_type: ColumnType = attrs.field(converter=_col_type)

    def columns(self) -> frozenset[str]:
        return frozenset({self.column})

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        return _value(row, self.column) is None


@attrs.frozen
class IsNotNull(_Node):
    """``column IS NOT NULL``."""

    op_name: ClassVar[str] = "is_not_null"
    column: str = attrs.field(validator=_check_name)
    col_type: ColumnType = attrs.field(converter=_col_type)

    def columns(self) -> frozenset[str]:
        return frozenset({self.column})

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        return _value(row, self.column) is not None


@attrs.frozen
class In(_Node):
    """``column IN (v1, v2, ...)`` (non-NULL literals)."""

    op_name: ClassVar[str] = "in"
    column: str = attrs.field(validator=_check_name)
    col_type: ColumnType = attrs.field(converter=_col_type)
    values: tuple[Any, ...] = attrs.field(converter=tuple, validator=_check_values)

    def columns(self) -> frozenset[str]:
        return frozenset({self.column})

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        left = _value(row, self.column)
        if left is None:
            return None
        return any(left == v for v in self.values)


@attrs.frozen
class Between(_Node):
    """``column BETWEEN low AND high`` (inclusive; empty when low > high)."""

    op_name: ClassVar[str] = "between"
    column: str = attrs.field(validator=_check_name)
    col_type: ColumnType = attrs.field(converter=_col_type)
    low: Any = attrs.field(validator=_check_literal)
    high: Any = attrs.field(validator=_check_literal)

    def columns(self) -> frozenset[str]:
        return frozenset({self.column})

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        left = _value(row, self.column)
        if left is None:
            return None
        return self.low <= left <= self.high


def _check_like(instance: Like, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"LIKE pattern must be str (got {value!r})")
    if "\\" in value or "\x00" in value:
        raise ValueError(
            f"LIKE pattern {value!r} must not contain a backslash or NUL (no ESCAPE is rendered)"
        )


def _check_text(instance: Like, attribute: attrs.Attribute, value: ColumnType) -> None:
    if value is not ColumnType.TEXT:
        raise ValueError(f"LIKE on {instance.column!r} needs a TEXT column (got {value.value})")


@attrs.frozen
class Like(_Node):
    """``column LIKE 'pattern'``: case-sensitive, ``%`` any run, ``_`` one character."""

    op_name: ClassVar[str] = "like"
    column: str = attrs.field(validator=_check_name)
    pattern: str = attrs.field(validator=_check_like)
    col_type: ColumnType = attrs.field(default=ColumnType.TEXT, converter=_col_type, validator=_check_text)

    def columns(self) -> frozenset[str]:
        return frozenset({self.column})

    def regex(self) -> re.Pattern[str]:
        parts = []
        for char in self.pattern:
            if char == "%":
                parts.append(".*")
            elif char == "_":
                parts.append(".")
            else:
                parts.append(re.escape(char))
        return re.compile("".join(parts), re.DOTALL)

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        left = _value(row, self.column)
        if left is None:
            return None
        return self.regex().fullmatch(left) is not None


def _check_items(instance: Any, attribute: attrs.Attribute, items: tuple[Any, ...]) -> None:
    if len(items) < 2:
        raise ValueError(f"{type(instance).__name__} needs at least two operands (got {len(items)})")
    for item in items:
        if not isinstance(item, _Node):
            raise ValueError(f"{type(instance).__name__} operand must be a predicate (got {item!r})")


def _items(value: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(pred_from_data(v) if isinstance(v, dict) else v for v in value)


@attrs.frozen
class And(_Node):
    """Conjunction with Kleene logic: FALSE wins, then UNKNOWN."""

    op_name: ClassVar[str] = "and"
    items: tuple[Predicate, ...] = attrs.field(converter=_items, validator=_check_items)

    def columns(self) -> frozenset[str]:
        return frozenset().union(*(i.columns() for i in self.items))

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        results = [i.evaluate(row) for i in self.items]
        if any(r is False for r in results):
            return False
        if any(r is None for r in results):
            return None
        return True


@attrs.frozen
class Or(_Node):
    """Disjunction with Kleene logic: TRUE wins, then UNKNOWN."""

    op_name: ClassVar[str] = "or"
    items: tuple[Predicate, ...] = attrs.field(converter=_items, validator=_check_items)

    def columns(self) -> frozenset[str]:
        return frozenset().union(*(i.columns() for i in self.items))

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        results = [i.evaluate(row) for i in self.items]
        if any(r is True for r in results):
            return True
        if any(r is None for r in results):
            return None
        return False


def _one(value: Any) -> Any:
    return pred_from_data(value) if isinstance(value, dict) else value


def _check_node(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, _Node):
        raise ValueError(f"Not operand must be a predicate (got {value!r})")


@attrs.frozen
class Not(_Node):
    """Negation: NOT UNKNOWN is UNKNOWN."""

    op_name: ClassVar[str] = "not"
    item: Predicate = attrs.field(converter=_one, validator=_check_node)

    def columns(self) -> frozenset[str]:
        return self.item.columns()

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        result = self.item.evaluate(row)
        return None if result is None else not result


Predicate = Cmp | IsNull | IsNotNull | In | Between | Like | And | Or | Not

_NODES: dict[str, type[_Node]] = {
    cls.op_name: cls for cls in (Cmp, IsNull, IsNotNull, In, Between, Like, And, Or, Not)
}


def pred_to_data(pred: Predicate | None) -> dict[str, Any] | None:
    """A JSON-able dict for a predicate: ``{"pred": "cmp", "column": ..., "op": ">", ...}`` (None stays None)."""
    if pred is None:
        return None
    data: dict[str, Any] = {"pred": pred.op_name}
    for field in attrs.fields(type(pred)):
        value = getattr(pred, field.name)
        if isinstance(value, ColumnType):
            value = value.value
        elif field.name == "items":
            value = [pred_to_data(i) for i in value]
        elif field.name == "item":
            value = pred_to_data(value)
        elif isinstance(value, tuple):
            value = list(value)
        data[field.name] = value
    return data


def pred_from_data(data: Any) -> Predicate | None:
    """The predicate a :func:`pred_to_data` dict describes; raises ``ValueError`` naming what is wrong."""
    if data is None or isinstance(data, _Node):
        return data  # type: ignore[return-value]
    if not isinstance(data, dict):
        raise ValueError(f"a predicate must be a dict with a 'pred' key (got {data!r})")
    fields = dict(data)
    op = fields.pop("pred", None)
    cls = _NODES.get(op)
    if cls is None:
        raise ValueError(f"unknown predicate {op!r} (key 'pred'); known: {sorted(_NODES)}")
    names = {f.name for f in attrs.fields(cls)}  # type: ignore[arg-type]
    unknown = set(fields) - names
    if unknown:
        raise ValueError(f"predicate {op!r} has unknown field(s) {sorted(unknown)}; fields: {sorted(names)}")
    try:
        return cls(**fields)  # type: ignore[return-value]
    except TypeError as exc:
        raise ValueError(f"predicate {op!r}: {exc}") from None
