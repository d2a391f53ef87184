"""The JSON codec of steps, both directions in one place.

From data: the attrs *converters* of step fields (each turns a JSON value — or the typed value itself — into
the field's type and raises ``ValueError("field 'x': ... (got <value>)")`` otherwise), and
:func:`step_from_data`, which checks the kind and the field names and turns every converter's ``ValueError``
into a :class:`~kalammodel.errors.UsageError` naming the kind, the field and the value.

The converters take ``Any`` on purpose: they receive whatever a case file or a caller hands them, and their
job is to check it. A cell stays ``Any`` too: a JSON scalar (None, bool, int, float or str), checked by
``_cell``.

To data: :func:`step_to_data`, which writes every attrs field of a registered step, predicates and table
specs through their ``*_to_data`` forms (``kalammodel.model``) and enums by value; a step's SQL ``style`` only when
it is not the canonical one (so case files written before styles existed re-save byte for byte).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import attrs

from ..errors import UsageError
from ..model import (
    CANONICAL_STYLE,
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
    SetExpr,
    SqlStyle,
    TableSpec,
    pred_from_data,
    pred_to_data,
)
from .base import STEP_TYPES, Step

_PRED_TYPES = (Cmp, IsNull, IsNotNull, In, Between, Like, And, Or, Not)
_SCALARS = (type(None), bool, int, float, str)


# ---------------------------------------------------------------------- the whole step


def _to_data(value: Any) -> Any:
    if isinstance(value, _PRED_TYPES):
        return pred_to_data(value)
    if isinstance(value, (TableSpec, Column, SetExpr)):
        return value.to_data()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_to_data(v) for v in value]
    return value


def step_to_data(step: Step) -> dict[str, Any]:
    """A JSON-able dict for ``step``: ``{"kind": ..., <fields>}``."""
    if type(step) not in STEP_TYPES.values():
        raise UsageError(f"{step!r} is not a registered step; known kinds: {sorted(STEP_TYPES)}")
    data: dict[str, Any] = {"kind": step.kind}
    for field in attrs.fields(type(step)):  # type: ignore[arg-type]  # register() checked it is attrs
        value = getattr(step, field.name)
        if isinstance(value, SqlStyle):
            if value != CANONICAL_STYLE:  # the canonical style is left out: old case files re-save unchanged
                data[field.name] = value.to_data()
            continue
        data[field.name] = _to_data(value)
    return data


def step_from_data(data: Any) -> Step:
    """The step a :func:`step_to_data` dict describes; raises UsageError naming the kind and field on bad data."""
    if not isinstance(data, dict):
        raise UsageError(f"a step must be a dict with a 'kind' key (got {data!r})")
    kind = data.get("kind")
    cls = STEP_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise UsageError(f"unknown step kind {kind!r}; known kinds: {sorted(STEP_TYPES)}")
    fields = {k: v for k, v in data.items() if k != "kind"}
    fields_of = attrs.fields(cls)  # type: ignore[arg-type]  # register() checked it is attrs
    names = [f.name for f in fields_of]
    unknown = sorted(set(fields) - set(names))
    if unknown:
        raise UsageError(f"step {kind!r}: unknown field(s) {unknown}; fields are {names}")
    missing = [f.name for f in fields_of if f.default is attrs.NOTHING and f.name not in fields]
    if missing:
        raise UsageError(f"step {kind!r}: missing field(s) {missing}")
    try:
        return cls(**fields)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"step {kind!r}: {exc}") from None


# ---------------------------------------------------------------------- field converters and validators


def _fail(field: str, message: str) -> ValueError:
    return ValueError(f"field {field!r}: {message}")


def _str(field: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise _fail(field, f"must be a non-empty str (got {value!r})")
        return value

    return convert


def _actor(value: Any) -> str:
    return _str("actor")(value)


def _table(value: Any) -> str:
    return _str("table")(value)


def _column_name(value: Any) -> str:
    return _str("column")(value)


def _sub_id(value: Any) -> str:
    return _str("sub_id")(value)


def _column_names(value: Any) -> tuple[str, ...]:
    return _names("columns")(value)


def _limit(value: Any) -> int | None:
    return _opt_count("limit")(value)


def _offset(value: Any) -> int | None:
    return _opt_count("offset")(value)


def _opt_str(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise _fail("as_user", f"must be None or a non-empty str (got {value!r})")
    return value


def _names(field: str) -> Callable[[Any], tuple[str, ...]]:
    def convert(value: Any) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise _fail(field, f"must be a list of column names (got {value!r})")
        for name in value:
            if not isinstance(name, str):
                raise _fail(field, f"column names must be str (got {name!r})")
        return tuple(value)

    return convert


def _opt_names(value: Any) -> tuple[str, ...] | None:
    return None if value is None else _names("columns")(value)


def _types(value: Any) -> tuple[ColumnType, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _fail("types", f"must be a list of column types (got {value!r})")
    try:
        return tuple(v if isinstance(v, ColumnType) else ColumnType(str(v).upper()) for v in value)
    except ValueError as exc:
        raise _fail("types", f"{exc}; known: {[t.value for t in ColumnType]}") from None


def _cell(field: str, value: Any) -> Any:
    if not isinstance(value, _SCALARS):
        raise _fail(field, f"cells must be None, bool, int, float or str (got {value!r})")
    return value


def _rows(value: Any) -> tuple[tuple[Any, ...], ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _fail("rows", f"must be a list of rows (got {value!r})")
    out = []
    for row in value:
        if isinstance(row, str) or not isinstance(row, (list, tuple)):
            raise _fail("rows", f"each row must be a list of cells (got {row!r})")
        out.append(tuple(_cell("rows", c) for c in row))
    return tuple(out)


def _assignments(value: Any) -> tuple[tuple[str, ColumnType, Any], ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _fail("assignments", f"must be a list of [column, type, value] (got {value!r})")
    out = []
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 3 or not isinstance(item[0], str):
            raise _fail("assignments", f"each assignment must be [column, type, value] (got {item!r})")
        try:
            col_type = item[1] if isinstance(item[1], ColumnType) else ColumnType(str(item[1]).upper())
        except ValueError:
            raise _fail("assignments", f"unknown column type {item[1]!r}") from None
        out.append((item[0], col_type, _cell("assignments", item[2])))
    return tuple(out)


def _expressions(value: Any) -> tuple[SetExpr, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _fail("expressions", f"must be a list of [column, type, op, operand] (got {value!r})")
    try:
        return tuple(SetExpr.from_data(item) for item in value)
    except (TypeError, ValueError) as exc:
        raise _fail("expressions", str(exc)) from None


def _where(value: Any) -> Predicate | None:
    if value is None or isinstance(value, _PRED_TYPES):
        return value
    try:
        return pred_from_data(value)
    except (ValueError, TypeError) as exc:
        raise _fail("where", str(exc)) from None


def _order_by(value: Any) -> tuple[tuple[str, bool], ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _fail("order_by", f"must be a list of [column, descending] (got {value!r})")
    out = []
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str):
            raise _fail("order_by", f"each key must be [column, descending] (got {item!r})")
        if not isinstance(item[1], bool):
            raise _fail("order_by", f"descending must be a bool (got {item[1]!r})")
        out.append((item[0], item[1]))
    return tuple(out)


def _opt_count(field: str) -> Callable[[Any], int | None]:
    def convert(value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(field, f"must be None or an int >= 0 (got {value!r})")
        return value

    return convert


def _opt_size(field: str) -> Callable[[Any], int | None]:
    def convert(value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _fail(field, f"must be None or an int >= 1 (got {value!r})")
        return value

    return convert


def _spec(value: Any) -> TableSpec:
    try:
        return TableSpec.from_data(value)
    except (TypeError, ValueError) as exc:
        raise _fail("spec", str(exc)) from None


def _column(value: Any) -> Column:
    try:
        return Column.from_data(value)
    except (TypeError, ValueError) as exc:
        raise _fail("column", str(exc)) from None


def _style(value: Any) -> SqlStyle:
    if isinstance(value, SqlStyle):
        return value
    try:
        return SqlStyle.from_data(value)
    except ValueError as exc:
        raise _fail("style", str(exc)) from None


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 600:
        raise _fail("seconds", f"must be a number of seconds in [0, 600] (got {value!r})")
    return float(value)
