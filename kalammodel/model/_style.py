"""How SQL text is written: equivalent spellings of one predicate, so a server parses what people write.

A :class:`SqlStyle` is data (it goes into case files with the step that uses it). Every style renders a
predicate to text that means the same under SQL three-valued logic; :data:`CANONICAL` renders exactly what
``Predicate.render()`` always did::

    >>> p = Not(Cmp("c0", ColumnType.BIGINT, "!=", 5))
    >>> render_predicate(p, CANONICAL)
    '(NOT c0 != 5)'
    >>> render_predicate(p, SqlStyle(keywords="lower", ne="<>", negation="infix", operands="literal_first"))
    '5 = c0'

What a style varies:

* ``keywords``: ``AND``/``and``/``And`` (every SQL keyword: AND OR NOT IS NULL IN BETWEEN LIKE TRUE FALSE);
* ``ne``: ``!=`` or ``<>``;
* ``parens``: ``canonical`` (every AND/OR/NOT wrapped, as before), ``minimal`` (only where precedence needs
  them: OR inside AND, AND/OR inside NOT) or ``extra`` (every comparison wrapped too);
* ``space``: ``single``, ``wide`` (two spaces around keywords and operators), ``newline`` (boolean operands on
  lines of their own) or ``tight`` (no spaces around comparison operators: ``c0>=5``);
* ``quote``: identifiers in double quotes (``"c0"``);
* ``negation``: ``prefix`` (``NOT (x IN (...))``) or ``infix`` (``x NOT IN (...)``, ``x NOT LIKE``,
  ``x NOT BETWEEN``, ``x IS NOT NULL``, and ``NOT x < 5`` as ``x >= 5``) — equal under three-valued logic:
  each side is UNKNOWN exactly when ``x`` is NULL;
* ``operands``: ``column_first`` (``c0 < 5``) or ``literal_first`` (``5 > c0``);
* ``booleans``: ``true`` or ``TRUE``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import attrs

from ._types import ColumnType, render_value

if TYPE_CHECKING:
    from ._predicates import Predicate

__all__ = ["CANONICAL", "SqlStyle", "render_predicate"]

Keywords = Literal["upper", "lower", "title"]
Parens = Literal["canonical", "minimal", "extra"]
Space = Literal["single", "wide", "newline", "tight"]
Negation = Literal["prefix", "infix"]
Operands = Literal["column_first", "literal_first"]

#: the comparison that means NOT (x op v), and the one that means (v op' x) for (x op v)
_NEGATED = {"=": "!=", "!=": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
_MIRRORED = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _one_of(*allowed: str) -> Callable[[Any, Any, Any], None]:
    return attrs.validators.in_(allowed)


@attrs.frozen
class SqlStyle:
    """One way of writing SQL; every field has the canonical spelling as its default."""

    keywords: Keywords = attrs.field(default="upper", validator=_one_of("upper", "lower", "title"))
    ne: Literal["!=", "<>"] = attrs.field(default="!=", validator=_one_of("!=", "<>"))
    parens: Parens = attrs.field(default="canonical", validator=_one_of("canonical", "minimal", "extra"))
    space: Space = attrs.field(default="single", validator=_one_of("single", "wide", "newline", "tight"))
    quote: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    negation: Negation = attrs.field(default="prefix", validator=_one_of("prefix", "infix"))
    operands: Operands = attrs.field(
        default="column_first", validator=_one_of("column_first", "literal_first")
    )
    booleans: Literal["lower", "upper"] = attrs.field(default="lower", validator=_one_of("lower", "upper"))

    def to_data(self) -> dict[str, object]:
        """The fields that differ from the canonical style (``{}`` for :data:`CANONICAL`)."""
        return {
            f.name: getattr(self, f.name)
            for f in attrs.fields(SqlStyle)
            if getattr(self, f.name) != f.default
        }

    @classmethod
    def from_data(cls, data: object) -> SqlStyle:
        """The style :meth:`to_data` wrote; ``ValueError`` naming the field and value otherwise."""
        if data is None:
            return CANONICAL
        if not isinstance(data, dict):
            raise ValueError(f"a SQL style must be a dict of fields (got {data!r})")
        names = {f.name for f in attrs.fields(SqlStyle)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown SQL style field(s) {unknown}; known: {sorted(names)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid SQL style {data!r}: {exc}") from None

    # ------------------------------------------------------------------ tokens

    def kw(self, words: str) -> str:
        if self.keywords == "lower":
            return words.lower()
        if self.keywords == "title":
            return " ".join(w.capitalize() for w in words.split(" "))
        return words

    def ident(self, name: str) -> str:
        return f'"{name}"' if self.quote else name

    def gap(self) -> str:
        """The space around a keyword."""
        return "  " if self.space == "wide" else " "

    def op_gap(self) -> str:
        """The space around a comparison operator."""
        return {"tight": "", "wide": "  "}.get(self.space, " ")

    def joiner(self, word: str) -> str:
        """What stands between two operands of AND / OR."""
        if self.space == "newline":
            return f"\n  {self.kw(word)} "
        return f"{self.gap()}{self.kw(word)}{self.gap()}"

    def literal(self, col_type: ColumnType, value: object) -> str:
        text = render_value(col_type, value)
        return text.upper() if col_type is ColumnType.BOOLEAN and self.booleans == "upper" else text

    def cmp_op(self, op: str) -> str:
        return self.ne if op == "!=" else op


CANONICAL = SqlStyle()


def render_predicate(pred: Predicate, style: SqlStyle = CANONICAL) -> str:
    """``pred`` as SQL text written in ``style``."""
    return _Renderer(style).node(pred, parent=None)


class _Renderer:
    def __init__(self, style: SqlStyle):
        self.s = style

    def node(self, pred: Predicate, parent: str | None) -> str:
        from ._predicates import And, Not, Or

        if isinstance(pred, (And, Or)):
            word = "AND" if isinstance(pred, And) else "OR"
            inner = self.s.joiner(word).join(self.node(i, parent=word) for i in pred.items)
            return self._wrap(inner, needed=parent in ("AND", "NOT") and word == "OR" or parent == "NOT")
        if isinstance(pred, Not):
            if self.s.negation == "infix":
                infix = self._infix_negation(pred.item)
                if infix is not None:
                    return self._leaf(infix)
            inner = f"{self.s.kw('NOT')}{self.s.gap()}{self.node(pred.item, parent='NOT')}"
            return self._wrap(inner, needed=False)
        return self._leaf(self._atom(pred, negated=False))

    def _wrap(self, text: str, *, needed: bool) -> str:
        if self.s.parens == "minimal" and not needed:
            return text
        return f"({text})"

    def _leaf(self, text: str) -> str:
        return f"({text})" if self.s.parens == "extra" else text

    def _infix_negation(self, item: Predicate) -> str | None:
        from ._predicates import And, Not, Or

        if isinstance(item, (And, Or, Not)):
            return None
        return self._atom(item, negated=True)

    def _atom(self, pred: Predicate, *, negated: bool) -> str:
        """A comparison-level predicate (negated: its infix negation, which means NOT pred)."""
        from ._predicates import Between, Cmp, In, IsNotNull, IsNull, Like

        s = self.s
        col = s.ident(pred.column)  # type: ignore[union-attr]  # every atom names a column
        not_ = f"{s.kw('NOT')}{s.gap()}" if negated else ""
        if isinstance(pred, Cmp):
            op = _NEGATED[pred.op] if negated else pred.op
            value = s.literal(pred.col_type, pred.value)
            if s.operands == "literal_first":
                return f"{value}{s.op_gap()}{s.cmp_op(_MIRRORED[op])}{s.op_gap()}{col}"
            return f"{col}{s.op_gap()}{s.cmp_op(op)}{s.op_gap()}{value}"
        if isinstance(pred, (IsNull, IsNotNull)):
            is_null = isinstance(pred, IsNull) != negated
            return f"{col}{s.gap()}{s.kw('IS NULL' if is_null else 'IS NOT NULL')}"
        if isinstance(pred, In):
            items = ", ".join(s.literal(pred.col_type, v) for v in pred.values)
            return f"{col}{s.gap()}{not_}{s.kw('IN')}{s.gap()}({items})"
        if isinstance(pred, Between):
            low = s.literal(pred.col_type, pred.low)
            high = s.literal(pred.col_type, pred.high)
            g = s.gap()
            return f"{col}{g}{not_}{s.kw('BETWEEN')}{g}{low}{g}{s.kw('AND')}{g}{high}"
        if isinstance(pred, Like):
            pattern = render_value(ColumnType.TEXT, pred.pattern)
            return f"{col}{s.gap()}{not_}{s.kw('LIKE')}{s.gap()}{pattern}"
        raise TypeError(f"not a predicate: {pred!r}")
