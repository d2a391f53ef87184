"""The live-query row filter: a subscription's WHERE clause compiled once, evaluated on each row (§10.5).

The embedded server evaluates the WHERE grammar its SELECT path accepts, by SQL's rules, so that a live query
and a SELECT with the same WHERE agree on every row:

* ``= != <> < > <= >=``, ``IS [NOT] DISTINCT FROM``, with columns and literals on either side;
* ``[NOT] IN (list)``, ``[NOT] BETWEEN``, ``IS [NOT] NULL``, ``IS [NOT] TRUE/FALSE``, ``[NOT] LIKE / ILIKE
  [ESCAPE c]`` (backslash is the default escape, as in DataFusion);
* ``AND OR NOT`` and parentheses, boolean columns, ``TRUE FALSE NULL``, negated numbers, ``CAST(literal AS t)``
  / ``TIMESTAMP '...'``, and ``CURRENT_USER()`` (the subscriber's user id).

Literals take the type of the column they are compared with, as a SQL engine coerces them: ``ts_col >
'2023-11-14 22:13:20'`` compares timestamps, ``int_col = '7'`` integers. Everything follows SQL three-valued logic
(a comparison with NULL is UNKNOWN, ``x IN (..)`` is UNKNOWN for a NULL ``x`` or a non-matching list with a
NULL); a row matches only when the whole filter is TRUE.

What cannot be evaluated is refused when the filter is compiled, i.e. at subscribe time
(:class:`FilterError`, ``code`` = ``UNSUPPORTED`` or ``INVALID_SQL``): functions, arithmetic, subqueries,
comparisons between values of different kinds. A row that no longer fits the compiled filter (a column it names
was dropped, or re-added with another type) raises :class:`FilterError` at evaluation; the live layer then
tells the client and stops the subscription — it never skips a change in silence.

KalamDB's own evaluator (``live:helpers/filter_eval.rs``) lacks IN and BETWEEN and skips, after acknowledging
the subscription, every change it cannot evaluate; ``compile_filter(..., kalamdb_subset=True)`` imitates that
for the planted fault ``live_filter_silent_skip`` (``_live.py``).
"""

from __future__ import annotations

import decimal
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from sqlglot import exp

from ._values import SqlFailure, canonical, parse_type

__all__ = ["FilterError", "RowFilter", "compile_filter", "matches"]

_MAX_DEPTH = 64  # deeper filters are refused at subscribe time (KalamDB: filter_eval.rs MAX_EXPR_DEPTH)


class FilterError(Exception):
    """The filter cannot be compiled (``code`` UNSUPPORTED / INVALID_SQL) or cannot be evaluated on a row."""

    def __init__(self, message: str, code: str = "UNSUPPORTED"):
        super().__init__(message)
        self.code = code
        self.message = message


Row = Mapping[str, Any]
Reader = Callable[[Row], Any]

#: value families: what compares with what (a string literal takes the family of the other side)
_FAMILY = {
    "BigInt": "num",
    "Int": "num",
    "SmallInt": "num",
    "Double": "num",
    "Float": "num",
    "Text": "text",
    "Uuid": "text",
    "Json": "text",
    "Boolean": "bool",
    "Timestamp": "ts",
    "DateTime": "ts",
    "Date": "date",
    "Time": "time",
    "Bytes": "bytes",
}
_COMPARABLE = frozenset({"num", "text", "bool", "ts", "date", "time", "null"})
_STRLIT = "strlit"  # a string literal not yet coerced to a type
_OPS: dict[type[exp.Expression], Callable[[Any, Any], bool]] = {
    exp.EQ: operator.eq,
    exp.NEQ: operator.ne,
    exp.LT: operator.lt,
    exp.GT: operator.gt,
    exp.LTE: operator.le,
    exp.GTE: operator.ge,
}


def _family(data_type: Any) -> str:
    if isinstance(data_type, Mapping):
        return "num" if "Decimal" in data_type else "vector"
    return _FAMILY.get(str(data_type), "other")


@attrs.frozen
class _Operand:
    """A compiled expression: ``read(row)`` gives its value (None = NULL / UNKNOWN)."""

    read: Reader
    family: str
    text: str
    data_type: Any = None  # the SQL type when known (columns, casts)
    const: bool = False
    value: Any = None  # a constant's value


def _const(value: Any, family: str, text: str, data_type: Any = None) -> _Operand:
    return _Operand(lambda row: value, family, text, data_type, True, value)


class RowFilter:
    """A compiled WHERE clause (None: no WHERE, every row matches)."""

    def __init__(self, root: _Operand | None, sql: str = ""):
        self._root = root
        self.sql = sql

    def truth(self, row: Row) -> bool | None:
        """Three-valued truth on ``row``; raises FilterError when the row does not fit the filter."""
        return True if self._root is None else self._root.read(row)

    def matches(self, row: Row) -> bool:
        return self.truth(row) is True


def compile_filter(
    where: exp.Expression | None, types: Mapping[str, Any], user: str, *, kalamdb_subset: bool = False
) -> RowFilter:
    """Compile ``where`` over columns of ``types`` (name -> KalamDB data type); raises FilterError (refusal)."""
    if where is None:
        return RowFilter(None)
    root = _Compiler(types, user, kalamdb_subset).operand(where, 0)
    if root.family not in ("bool", "null"):
        raise FilterError(f"WHERE must be a boolean condition, got {root.text}", "INVALID_SQL")
    return RowFilter(root, where.sql())


def matches(
    where: exp.Expression | None, row: Row, current_user: str, types: Mapping[str, Any] | None = None
) -> bool:
    """True when ``row`` satisfies ``where``; column types default to what the row's values look like."""
    return compile_filter(where, types if types is not None else _guess_types(row), current_user).matches(row)


def _guess_types(row: Row) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, bool):
            out[name] = "Boolean"
        elif isinstance(value, int):
            out[name] = "BigInt"
        elif isinstance(value, float):
            out[name] = "Double"
        elif isinstance(value, decimal.Decimal):
            out[name] = {"Decimal": {"precision": 38, "scale": 10}}
        else:
            out[name] = "Text"
    return out


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise FilterError(f"invalid number literal {text!r}", "INVALID_SQL") from None


def _fits(family: str, value: Any) -> bool:
    if family == "num":
        return isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool)
    if family == "text":
        return isinstance(value, str)
    if family == "bool":
        return isinstance(value, bool)
    if family in ("ts", "date", "time"):
        return isinstance(value, int) and not isinstance(value, bool)
    return True


def _column_reader(name: str, family: str, decimal_column: bool) -> Reader:
    def read(row: Row) -> Any:
        try:
            value = row[name]
        except KeyError:
            raise FilterError(
                f"the live filter names column '{name}', which the table no longer has", "SUBSCRIPTION_FAILED"
            ) from None
        if value is None:
            return None
        if decimal_column and isinstance(value, str):
            value = decimal.Decimal(value)
        if not _fits(family, value):
            raise FilterError(
                f"column '{name}' now holds {value!r}, which the live filter cannot compare "
                "(its type changed since the subscription started)",
                "SUBSCRIPTION_FAILED",
            )
        return value

    return read


def _raiser(message: str) -> Reader:
    def read(row: Row) -> Any:
        raise FilterError(message, "UNSUPPORTED")

    return read


def _kleene_and(values: list[bool | None]) -> bool | None:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def _kleene_or(values: list[bool | None]) -> bool | None:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


class _Compiler:
    def __init__(self, types: Mapping[str, Any], user: str, kalamdb_subset: bool):
        self.types = types
        self.user = user
        self.kalamdb_subset = kalamdb_subset

    # -- expressions ----------------------------------------------------------------------------------------

    def operand(self, node: exp.Expression, depth: int) -> _Operand:
        if depth > _MAX_DEPTH:
            raise FilterError(f"filter expression nested deeper than {_MAX_DEPTH} levels")
        depth += 1
        if isinstance(node, exp.Paren):
            return self.operand(node.this, depth)
        if isinstance(node, (exp.And, exp.Or)):
            return self._connective(node, depth)
        if isinstance(node, exp.Not):
            return self._not(node, depth)
        if type(node) in _OPS:
            left, right = self.operand(node.this, depth), self.operand(node.expression, depth)
            return self._compare(_OPS[type(node)], left, right, node.sql())
        if isinstance(node, (exp.NullSafeEQ, exp.NullSafeNEQ)):
            return self._distinct(node, depth)
        if isinstance(node, exp.Is):
            return self._is(node, depth)
        if isinstance(node, exp.In):
            return self._in(node, depth)
        if isinstance(node, exp.Between):
            return self._between(node, depth)
        if isinstance(node, exp.Escape) and isinstance(node.this, (exp.Like, exp.ILike)):
            escape = self.operand(node.expression, depth)
            if not (escape.const and isinstance(escape.value, str) and len(escape.value) == 1):
                raise FilterError(f"LIKE ESCAPE must be a single character: {node.sql()}", "INVALID_SQL")
            return self._like(node.this, depth, escape.value)
        if isinstance(node, (exp.Like, exp.ILike)):
            return self._like(node, depth, "\\")
        return self._value(node, depth)

    def _value(self, node: exp.Expression, depth: int) -> _Operand:
        if isinstance(node, exp.Column):
            return self._column(node)
        if isinstance(node, exp.Literal):
            if node.is_string:
                return _const(node.this, _STRLIT, node.sql())
            return _const(_number(node.this), "num", node.sql())
        if isinstance(node, exp.Neg):
            inner = self.operand(node.this, depth)
            if inner.const and inner.family == "num":
                return _const(-inner.value, "num", node.sql())
        if isinstance(node, exp.Boolean):
            return _const(bool(node.this), "bool", node.sql(), "Boolean")
        if isinstance(node, exp.Null):
            return _const(None, "null", "NULL")
        if isinstance(node, exp.Cast):
            return self._cast(node, depth)
        if isinstance(node, exp.CurrentUser) or (
            isinstance(node, exp.Anonymous) and str(node.this).upper() == "CURRENT_USER" and not node.expressions
        ):
            return _const(self.user, "text", "CURRENT_USER()", "Text")
        raise FilterError(
            f"live filters do not support {node.key.upper()} expressions ({node.sql()}); "
            "use comparisons, IN, BETWEEN, LIKE, IS NULL, AND/OR/NOT on columns and literals"
        )

    def _column(self, node: exp.Column) -> _Operand:
        name = node.name
        for key in (name, name.lower(), name.upper()):
            if key in self.types:
                data_type = self.types[key]
                family = _family(data_type)
                is_decimal = isinstance(data_type, Mapping) and "Decimal" in data_type
                return _Operand(_column_reader(key, family, is_decimal), family, key, data_type)
        raise FilterError(f"Column '{name}' not found in the subscribed table", "INVALID_SQL")

    def _cast(self, node: exp.Cast, depth: int) -> _Operand:
        inner = self.operand(node.this, depth)
        if not inner.const:
            raise FilterError(f"live filters cast literals only ({node.sql()})")
        try:
            data_type, _serial = parse_type(node.to.sql())
            value = canonical(data_type, inner.value, "CAST")
        except SqlFailure as f:
            raise FilterError(f.message, "INVALID_SQL") from None
        family = _family(data_type)
        if family == "num" and isinstance(value, str):
            value = decimal.Decimal(value)
        return _const(value, family, node.sql(), data_type)

    # -- typing ---------------------------------------------------------------------------------------------

    def _coerce(self, literal: _Operand, other: _Operand) -> _Operand:
        """A string literal typed like ``other`` (the SQL engine's implicit cast of the literal)."""
        family = other.family
        if family in ("text", _STRLIT, "null"):
            return attrs.evolve(literal, family="text")
        if family not in _COMPARABLE:
            return literal
        data_type = other.data_type
        if data_type is None:  # a typed constant without SQL type: a number or a boolean
            data_type = "Boolean" if family == "bool" else "Double"
            if family == "num":
                return _const(_number(literal.value), "num", literal.text)
        try:
            value = canonical(data_type, literal.value, other.text)
        except SqlFailure as f:
            raise FilterError(f"cannot compare {other.text} with {literal.text}: {f.message}", "INVALID_SQL") from None
        if family == "num" and isinstance(value, str):
            value = decimal.Decimal(value)
        return _const(value, family, literal.text, data_type)

    def _unify(self, left: _Operand, right: _Operand, text: str) -> tuple[_Operand, _Operand]:
        if left.family == _STRLIT:
            left = self._coerce(left, right)
        if right.family == _STRLIT:
            right = self._coerce(right, left)
        for side in (left, right):
            if side.family not in _COMPARABLE:
                raise FilterError(f"live filters cannot compare {side.text} ({side.family} values): {text}")
        if "null" not in (left.family, right.family) and left.family != right.family:
            raise FilterError(
                f"cannot compare {left.text} ({left.family}) with {right.text} ({right.family}): {text}",
                "INVALID_SQL",
            )
        return left, right

    # -- predicates -----------------------------------------------------------------------------------------

    def _bool(self, node: exp.Expression, depth: int) -> _Operand:
        op = self.operand(node, depth)
        if op.family not in ("bool", "null"):
            raise FilterError(f"{op.text} is not a boolean condition", "INVALID_SQL")
        return op

    def _connective(self, node: exp.And | exp.Or, depth: int) -> _Operand:
        left, right = self._bool(node.this, depth), self._bool(node.expression, depth)
        combine = _kleene_and if isinstance(node, exp.And) else _kleene_or
        lr, rr = left.read, right.read
        return _Operand(lambda row: combine([lr(row), rr(row)]), "bool", node.sql())

    def _not(self, node: exp.Not, depth: int) -> _Operand:
        inner = self._bool(node.this, depth).read

        def read(row: Row) -> bool | None:
            value = inner(row)
            return None if value is None else not value

        return _Operand(read, "bool", node.sql())

    def _compare(self, op: Callable[[Any, Any], bool], left: _Operand, right: _Operand, text: str) -> _Operand:
        left, right = self._unify(left, right, text)
        lr, rr = left.read, right.read

        def read(row: Row) -> bool | None:
            a, b = lr(row), rr(row)
            if a is None or b is None:
                return None
            return bool(op(a, b))

        return _Operand(read, "bool", text)

    def _distinct(self, node: exp.NullSafeEQ | exp.NullSafeNEQ, depth: int) -> _Operand:
        left, right = self._unify(self.operand(node.this, depth), self.operand(node.expression, depth), node.sql())
        lr, rr = left.read, right.read
        same = isinstance(node, exp.NullSafeEQ)

        def read(row: Row) -> bool:
            a, b = lr(row), rr(row)
            equal = (a is None and b is None) or (a is not None and b is not None and a == b)
            return equal is same

        return _Operand(read, "bool", node.sql())

    def _is(self, node: exp.Is, depth: int) -> _Operand:
        inner = self.operand(node.this, depth)
        target = node.expression
        negate = bool(node.args.get("negate"))  # IS NOT NULL
        ir = inner.read
        if isinstance(target, exp.Null):
            return _Operand(lambda row: (ir(row) is None) != negate, "bool", node.sql())
        if isinstance(target, exp.Boolean):
            if inner.family not in ("bool", "null"):
                raise FilterError(f"IS TRUE/FALSE needs a boolean operand: {node.sql()}", "INVALID_SQL")
            want = bool(target.this)
            return _Operand(lambda row: (ir(row) is want) != negate, "bool", node.sql())
        raise FilterError(f"unsupported IS operand in live filter: {node.sql()}")

    def _in(self, node: exp.In, depth: int) -> _Operand:
        if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
            raise FilterError(f"live filters support IN with a list of values only: {node.sql()}")
        if self.kalamdb_subset:
            return _Operand(_raiser(f"unsupported expression in live filter: {node.sql()}"), "bool", node.sql())
        this = self.operand(node.this, depth)
        pairs = [self._unify(this, self.operand(item, depth), node.sql()) for item in node.expressions]
        if not pairs:
            raise FilterError(f"IN needs at least one value: {node.sql()}", "INVALID_SQL")
        readers = [(left.read, right.read) for left, right in pairs]

        def read(row: Row) -> bool | None:
            results: list[bool | None] = []
            for lr, rr in readers:
                a, b = lr(row), rr(row)
                results.append(None if a is None or b is None else a == b)
            return _kleene_or(results)

        return _Operand(read, "bool", node.sql())

    def _between(self, node: exp.Between, depth: int) -> _Operand:
        if node.args.get("symmetric"):
            raise FilterError(f"BETWEEN SYMMETRIC is not supported in live filters: {node.sql()}")
        if self.kalamdb_subset:
            return _Operand(_raiser(f"unsupported expression in live filter: {node.sql()}"), "bool", node.sql())
        this = self.operand(node.this, depth)
        low = self._compare(operator.ge, this, self.operand(node.args["low"], depth), node.sql())
        high = self._compare(operator.le, this, self.operand(node.args["high"], depth), node.sql())
        lo, hi = low.read, high.read
        return _Operand(lambda row: _kleene_and([lo(row), hi(row)]), "bool", node.sql())

    def _like(self, node: exp.Like | exp.ILike, depth: int, escape: str) -> _Operand:
        value = self.operand(node.this, depth)
        pattern = self.operand(node.expression, depth)
        if value.family == _STRLIT:
            value = attrs.evolve(value, family="text")
        if value.family not in ("text", "null"):
            raise FilterError(f"LIKE needs a text operand: {node.sql()}", "INVALID_SQL")
        if not pattern.const or pattern.family not in (_STRLIT, "text", "null"):
            raise FilterError(f"LIKE patterns must be string literals in live filters: {node.sql()}")
        negate = bool(node.args.get("negate"))
        if pattern.value is None:
            return _const(None, "null", node.sql())
        flags = re.DOTALL | (re.IGNORECASE if isinstance(node, exp.ILike) else 0)
        regex = re.compile(_like_regex(pattern.value, escape), flags)
        vr = value.read

        def read(row: Row) -> bool | None:
            text = vr(row)
            if text is None:
                return None
            return (regex.fullmatch(text) is not None) != negate

        return _Operand(read, "bool", node.sql())


def _like_regex(pattern: str, escape: str) -> str:
    out: list[str] = []
    escaped = False
    for ch in pattern:
        if escaped:
            out.append(re.escape(ch))
            escaped = False
        elif ch == escape:
            escaped = True
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    if escaped:
        raise FilterError(f"LIKE pattern {pattern!r} ends with a dangling escape character", "INVALID_SQL")
    return "".join(out)
