"""The live-query row filter: a subscription's WHERE clause evaluated on one row (PROTOCOL.md §10.5).

KalamDB checks each change against the subscription's WHERE clause with its own small evaluator
(`live:helpers/filter_eval.rs`), independent of the SELECT path; this module is the embedded server's
counterpart and works on the sqlglot AST the engine hands over in ``LivePlan.where``.

Supported: ``= != <> < > <= >=``, ``AND OR NOT``, parentheses, ``[NOT] LIKE / ILIKE [ESCAPE c]``,
``IS [NOT] NULL``, string / number / boolean / NULL literals, negated numbers, columns (a table qualifier is
ignored, names match case-insensitively) and ``CURRENT_USER()`` (the subscriber's user id).

Comparisons follow SQL three-valued logic: a comparison with NULL is unknown, and a row matches only when
the whole filter is true. Numbers compare numerically across int / float / Decimal, strings by code point,
booleans only with booleans; comparing values of different kinds is false (KalamDB's evaluator does the
same for ``=``). Anything else (IN, BETWEEN, functions, arithmetic) or a column the row lacks raises
``FilterError``: KalamDB then logs the error and skips the subscription, and so does ``_ws.py``.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Mapping
from typing import Any

from sqlglot import exp

__all__ = ["FilterError", "matches"]

_MAX_DEPTH = 64  # KalamDB refuses deeper filter expressions (filter_eval.rs MAX_EXPR_DEPTH)


class FilterError(Exception):
    """The filter cannot be evaluated on this row (unsupported expression, missing column, bad pattern)."""


def matches(where: exp.Expression | None, row: Mapping[str, Any], current_user: str) -> bool:
    """True when ``row`` satisfies ``where`` (None matches everything); raises ``FilterError``."""
    if where is None:
        return True
    return _truth(where, row, current_user, 0) is True


_NUMBER = (int, float, decimal.Decimal)


def _truth(node: exp.Expression, row: Mapping[str, Any], user: str, depth: int) -> bool | None:
    """Three-valued truth of a boolean expression: True, False or None (unknown)."""
    if depth > _MAX_DEPTH:
        raise FilterError(f"filter expression nested deeper than {_MAX_DEPTH} levels")
    depth += 1
    if isinstance(node, exp.Paren):
        return _truth(node.this, row, user, depth)
    if isinstance(node, exp.And):
        left = _truth(node.this, row, user, depth)
        if left is False:
            return False
        right = _truth(node.expression, row, user, depth)
        if right is False:
            return False
        return True if left is True and right is True else None
    if isinstance(node, exp.Or):
        left = _truth(node.this, row, user, depth)
        if left is True:
            return True
        right = _truth(node.expression, row, user, depth)
        if right is True:
            return True
        return False if left is False and right is False else None
    if isinstance(node, exp.Not):
        inner = _truth(node.this, row, user, depth)
        return None if inner is None else not inner
    if isinstance(node, exp.Is):
        if not isinstance(node.expression, exp.Null):
            raise FilterError(f"unsupported IS operand in live filter: {node.sql()}")
        return _value(node.this, row, user) is None
    if isinstance(node, (exp.EQ, exp.NEQ, exp.LT, exp.GT, exp.LTE, exp.GTE)):
        return _compare(node, _value(node.this, row, user), _value(node.expression, row, user))
    if isinstance(node, exp.Escape) and isinstance(node.this, (exp.Like, exp.ILike)):
        escape = _value(node.expression, row, user)
        if not isinstance(escape, str) or len(escape) != 1:
            raise FilterError(f"LIKE ESCAPE must be a single character, got {escape!r}")
        return _like(node.this, row, user, escape)
    if isinstance(node, (exp.Like, exp.ILike)):
        return _like(node, row, user, None)
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Column):
        value = _value(node, row, user)
        if value is None or isinstance(value, bool):
            return value
        raise FilterError(f"column {node.name!r} is not boolean (got {value!r}); compare it with a value")
    raise FilterError(f"unsupported expression in live filter: {node.sql()}")


def _value(node: exp.Expression, row: Mapping[str, Any], user: str) -> Any:
    """The python value of an operand: a column of ``row`` or a literal."""
    if isinstance(node, exp.Paren):
        return _value(node.this, row, user)
    if isinstance(node, exp.Column):
        name = node.name
        for key in (name, name.lower(), name.upper()):
            if key in row:
                return row[key]
        raise FilterError(f"column not found in row data: {name}")
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        return _number(node.this)
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        return -_number(node.this.this)
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.CurrentUser) or (
        isinstance(node, exp.Anonymous) and str(node.this).upper() == "CURRENT_USER" and not node.expressions
    ):
        return user
    raise FilterError(f"unsupported value in live filter: {node.sql()}")


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise FilterError(f"invalid number literal {text!r}") from None


def _compare(node: exp.Expression, left: Any, right: Any) -> bool | None:
    if left is None or right is None:
        return None
    if isinstance(left, bool) or isinstance(right, bool):
        if not (isinstance(left, bool) and isinstance(right, bool)):
            return False if isinstance(node, exp.EQ) else (True if isinstance(node, exp.NEQ) else None)
    elif isinstance(left, _NUMBER) and isinstance(right, _NUMBER):
        left, right = _common_number(left, right)
    elif not (isinstance(left, str) and isinstance(right, str)):
        if type(left) is not type(right):
            # different kinds never compare equal (KalamDB's scalars_equal), and have no order
            if isinstance(node, exp.EQ):
                return False
            if isinstance(node, exp.NEQ):
                return True
            return None
    try:
        if isinstance(node, exp.EQ):
            return bool(left == right)
        if isinstance(node, exp.NEQ):
            return bool(left != right)
        if isinstance(node, exp.LT):
            return bool(left < right)
        if isinstance(node, exp.GT):
            return bool(left > right)
        if isinstance(node, exp.LTE):
            return bool(left <= right)
        return bool(left >= right)
    except TypeError:
        raise FilterError(f"cannot compare {left!r} with {right!r} in {node.sql()}") from None


def _common_number(left: Any, right: Any) -> tuple[Any, Any]:
    """Bring int / float / Decimal to one comparable kind."""
    if isinstance(left, decimal.Decimal) or isinstance(right, decimal.Decimal):
        if isinstance(left, float) or isinstance(right, float):
            return float(left), float(right)
        return decimal.Decimal(left), decimal.Decimal(right)
    return left, right


def _like(node: exp.Like | exp.ILike, row: Mapping[str, Any], user: str, escape: str | None) -> bool | None:
    value = _value(node.this, row, user)
    pattern = _value(node.expression, row, user)
    if value is None or pattern is None:
        return None
    if not isinstance(value, str):
        raise FilterError(f"cannot evaluate LIKE against non-string value {value!r}")
    if not isinstance(pattern, str):
        raise FilterError(f"LIKE pattern must be a string, got {pattern!r}")
    flags = re.DOTALL | (re.IGNORECASE if isinstance(node, exp.ILike) else 0)
    found = re.fullmatch(_like_regex(pattern, escape), value, flags) is not None
    return not found if node.args.get("negate") else found


def _like_regex(pattern: str, escape: str | None) -> str:
    out: list[str] = []
    escaped = False
    for ch in pattern:
        if escaped:
            out.append(re.escape(ch))
            escaped = False
        elif escape is not None and ch == escape:
            escaped = True
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    if escaped:
        raise FilterError(f"LIKE pattern {pattern!r} ends with a dangling escape character")
    return "".join(out)
