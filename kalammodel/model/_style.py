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
  lines of their own), ``tight`` (no spaces around comparison operators: ``c0>=5``) or ``tab`` (tabs);
* ``quote``: identifiers in double quotes (``"c0"``);
* ``negation``: ``prefix`` (``NOT (x IN (...))``) or ``infix`` (``x NOT IN (...)``, ``x NOT LIKE``,
  ``x NOT BETWEEN``, ``x IS NOT NULL``, and ``NOT x < 5`` as ``x >= 5``) — equal under three-valued logic:
  each side is UNKNOWN exactly when ``x`` is NULL;
* ``operands``: ``column_first`` (``c0 < 5``) or ``literal_first`` (``5 > c0``);
* ``booleans``: ``true`` or ``TRUE``;
* ``doubles``: ``shortest`` (``1000.0``, ``repr``) or ``exponent`` (``1e3``): the same decimal digits, so the same
  double; integer literals are always written exactly;
* ``semicolon``: a trailing ``;`` after the statement or none.

A style renders whole statements too (``render_select``, ``render_insert``, ``render_update``, ``render_delete``,
``render_create_table``, ``render_alter_add``, ``render_alter_drop``, ``render_flush``): every keyword in the
keyword case (``INSERT INTO``, ``ORDER BY``, ``COUNT``, the column types and the WITH option names), the space
before each clause (``single``: one space; ``wide``: two; ``newline``: a line per clause and list item; ``tab``:
tabs; ``tight``: no space after commas, around ``=`` or before a column list), namespace, table and column names
quoted when ``quote`` is set (``"ns"."t"``), literals in the style's forms, and the trailing semicolon.
String literals (TEXT, JSON, TIMESTAMP, option values) are never changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import attrs

from ._types import Column, ColumnType, TableSpec, render_value

if TYPE_CHECKING:
    from ._predicates import Predicate

__all__ = [
    "CANONICAL",
    "SqlStyle",
    "render_alter_add",
    "render_alter_drop",
    "render_column",
    "render_create_table",
    "render_delete",
    "render_flush",
    "render_insert",
    "render_predicate",
    "render_select",
    "render_update",
]

Keywords = Literal["upper", "lower", "title"]
Parens = Literal["canonical", "minimal", "extra"]
Space = Literal["single", "wide", "newline", "tight", "tab"]
Negation = Literal["prefix", "infix"]
Operands = Literal["column_first", "literal_first"]
Doubles = Literal["shortest", "exponent"]

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
    space: Space = attrs.field(
        default="single", validator=_one_of("single", "wide", "newline", "tight", "tab")
    )
    quote: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    negation: Negation = attrs.field(default="prefix", validator=_one_of("prefix", "infix"))
    operands: Operands = attrs.field(
        default="column_first", validator=_one_of("column_first", "literal_first")
    )
    booleans: Literal["lower", "upper"] = attrs.field(default="lower", validator=_one_of("lower", "upper"))
    doubles: Doubles = attrs.field(default="shortest", validator=_one_of("shortest", "exponent"))
    semicolon: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))

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
        return {"wide": "  ", "tab": "\t"}.get(self.space, " ")

    def op_gap(self) -> str:
        """The space around a comparison operator."""
        return {"tight": "", "wide": "  ", "tab": "\t"}.get(self.space, " ")

    def joiner(self, word: str) -> str:
        """What stands between two operands of AND / OR."""
        if self.space == "newline":
            return f"\n  {self.kw(word)} "
        return f"{self.gap()}{self.kw(word)}{self.gap()}"

    def literal(self, col_type: ColumnType, value: object) -> str:
        text = render_value(col_type, value)
        if col_type is ColumnType.BOOLEAN and self.booleans == "upper":
            return text.upper()
        if col_type is ColumnType.DOUBLE and self.doubles == "exponent" and isinstance(value, float):
            return _exponent(value, text)
        return text

    def cmp_op(self, op: str) -> str:
        return self.ne if op == "!=" else op

    # ------------------------------------------------------------------ statement tokens

    def kws(self, words: str) -> str:
        """A keyword of several words (``ORDER BY``), each in the keyword case, joined by :meth:`gap`."""
        return self.gap().join(self.kw(w) for w in words.split(" "))

    def qualified(self, ns: str, name: str) -> str:
        """``ns.name`` (``"ns"."name"`` when quoting)."""
        return f"{self.ident(ns)}.{self.ident(name)}"

    def clause(self) -> str:
        """What stands before a clause keyword (FROM, WHERE, ORDER BY, LIMIT, VALUES, SET, WITH, ADD)."""
        return {"wide": "  ", "newline": "\n", "tab": "\t"}.get(self.space, " ")

    def comma(self) -> str:
        """What separates the items of a list (columns, rows, values, assignments, options)."""
        return {"wide": ",  ", "newline": ",\n  ", "tab": ",\t", "tight": ","}.get(self.space, ", ")

    def equals(self) -> str:
        """The ``=`` of an assignment (SET, WITH options)."""
        return {"wide": "  =  ", "tab": "\t=\t", "tight": "="}.get(self.space, " = ")

    def paren(self) -> str:
        """The opening parenthesis of a column list, with the space before it."""
        return {"wide": "  (", "tab": "\t(", "tight": "("}.get(self.space, " (")

    def end(self) -> str:
        """What ends a statement: ``;`` or nothing."""
        return ";" if self.semicolon else ""

    def value(self, col_type: ColumnType, value: object) -> str:
        """A cell as a literal of a statement (``NULL`` in the keyword case)."""
        return self.kw("NULL") if value is None else self.literal(col_type, value)

    def describe(self) -> str:
        """The fields that differ from the canonical style, as ``name=value`` pairs (for step descriptions)."""
        return ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in self.to_data().items())


CANONICAL = SqlStyle()


def _exponent(value: float, shortest: str) -> str:
    """``value`` in scientific notation with exactly the digits of its shortest round-trip text (``1e3`` for
    1000.0, ``1.5e-1`` for 0.15): the same decimal number, so it parses to the same double. Zero stays as it is."""
    if value == 0.0:
        return shortest
    sign, digits, exp = Decimal(shortest).normalize().as_tuple()
    assert isinstance(exp, int)  # finite: ColumnType.check refused NaN and infinities
    text = "".join(map(str, digits))
    mantissa = text[0] + (f".{text[1:]}" if len(text) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{exp + len(text) - 1}"


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


# ---------------------------------------------------------------------- statements
# Each function renders one statement the steps send; in the canonical style it is byte for byte the text the
# steps always sent (tests/model/test_style.py checks it against the old renderers).


def _where(style: SqlStyle, where: Predicate | None) -> str:
    if where is None:
        return ""
    return f"{style.clause()}{style.kw('WHERE')}{style.gap()}{render_predicate(where, style)}"


def render_select(
    style: SqlStyle,
    source: str,
    columns: Sequence[str] | None = None,
    where: Predicate | None = None,
    order_by: Sequence[tuple[str, bool]] = (),
    limit: int | None = None,
    offset: int | None = None,
    *,
    count: bool = False,
    end: bool = True,
) -> str:
    """``SELECT cols|*|COUNT(*) AS n FROM source [WHERE] [ORDER BY] [LIMIT] [OFFSET]`` (``source`` qualified)."""
    s, g, c = style, style.gap(), style.clause()
    if count:
        cols = f"{s.kw('COUNT')}(*){g}{s.kw('AS')}{g}{s.ident('n')}"
    else:
        cols = "*" if columns is None else s.comma().join(s.ident(name) for name in columns)
    sql = f"{s.kw('SELECT')}{g}{cols}{c}{s.kw('FROM')}{g}{source}{_where(s, where)}"
    if order_by:
        keys = (f"{s.ident(col)}{g}{s.kw('DESC' if desc else 'ASC')}" for col, desc in order_by)
        sql += f"{c}{s.kws('ORDER BY')}{g}{s.comma().join(keys)}"
    if limit is not None:
        sql += f"{c}{s.kw('LIMIT')}{g}{limit}"
    if offset is not None:
        sql += f"{c}{s.kw('OFFSET')}{g}{offset}"
    return sql + (s.end() if end else "")


def render_insert(
    style: SqlStyle,
    target: str,
    columns: Sequence[str],
    types: Sequence[ColumnType],
    rows: Sequence[Sequence[object]],
) -> str:
    """``INSERT INTO target (columns) VALUES (...), ...``."""
    s = style
    tuples = s.comma().join(
        "(" + s.comma().join(s.value(t, v) for t, v in zip(types, row)) + ")" for row in rows
    )
    cols = s.comma().join(s.ident(name) for name in columns)
    return (
        f"{s.kws('INSERT INTO')}{s.gap()}{target}{s.paren()}{cols}){s.clause()}{s.kw('VALUES')}{s.gap()}"
        f"{tuples}{s.end()}"
    )


def render_update(
    style: SqlStyle,
    target: str,
    assignments: Sequence[tuple[str, ColumnType, object]],
    where: Predicate | None,
    computed: Sequence[str] = (),
) -> str:
    """``UPDATE target SET c = v, ... [WHERE]``; ``computed``: assignments already written (``c = c + 1``),
    set before the literal ones."""
    s = style
    literal = [f"{s.ident(c)}{s.equals()}{s.value(t, v)}" for c, t, v in assignments]
    sets = s.comma().join([*computed, *literal])
    return f"{s.kw('UPDATE')}{s.gap()}{target}{s.clause()}{s.kw('SET')}{s.gap()}{sets}{_where(s, where)}{s.end()}"


def render_delete(style: SqlStyle, target: str, where: Predicate | None) -> str:
    """``DELETE FROM target [WHERE]``."""
    return f"{style.kws('DELETE FROM')}{style.gap()}{target}{_where(style, where)}{style.end()}"


def render_column(style: SqlStyle, column: Column) -> str:
    """A column definition of CREATE TABLE / ADD COLUMN (canonical: :meth:`Column.render`)."""
    parts = [style.ident(column.name), style.kw(column.type.sql)]
    if column.primary_key:
        parts.append(style.kws("PRIMARY KEY"))
    elif not column.nullable:
        parts.append(style.kws("NOT NULL"))
    if column.default is not None:
        parts += [style.kw("DEFAULT"), style.value(column.type, column.default)]
    return style.gap().join(parts)


def render_create_table(style: SqlStyle, spec: TableSpec, ns: str) -> str:
    """``CREATE <kind> TABLE ns.t (columns) [WITH (options)]`` (canonical: :meth:`TableSpec.render`)."""
    s = style
    options = []
    if spec.ttl_seconds is not None:
        options.append(f"{s.kw('TTL_SECONDS')}{s.equals()}{spec.ttl_seconds}")
    if spec.access_level is not None:
        options.append(f"{s.kw('ACCESS_LEVEL')}{s.equals()}'{spec.access_level.value}'")
    if spec.storage_id is not None:
        options.append(f"{s.kw('STORAGE_ID')}{s.equals()}'{spec.storage_id}'")
    if spec.flush_policy is not None:
        options.append(f"{s.kw('FLUSH_POLICY')}{s.equals()}'{spec.flush_policy}'")
    with_clause = f"{s.clause()}{s.kw('WITH')}{s.paren()}{s.comma().join(options)})" if options else ""
    cols = s.comma().join(render_column(s, c) for c in spec.columns)
    head = s.kws(f"CREATE {spec.kind.value} TABLE")
    return f"{head}{s.gap()}{s.qualified(ns, spec.name)}{s.paren()}{cols}){with_clause}{s.end()}"


def render_alter_add(style: SqlStyle, target: str, column: Column) -> str:
    """``ALTER TABLE target ADD COLUMN definition``."""
    s = style
    return f"{s.kws('ALTER TABLE')}{s.gap()}{target}{s.clause()}{s.kws('ADD COLUMN')}{s.gap()}{render_column(s, column)}{s.end()}"


def render_alter_drop(style: SqlStyle, target: str, column: str) -> str:
    """``ALTER TABLE target DROP COLUMN c``."""
    s = style
    return f"{s.kws('ALTER TABLE')}{s.gap()}{target}{s.clause()}{s.kws('DROP COLUMN')}{s.gap()}{s.ident(column)}{s.end()}"


def render_flush(style: SqlStyle, target: str) -> str:
    """``STORAGE FLUSH TABLE target``."""
    return f"{style.kws('STORAGE FLUSH TABLE')}{style.gap()}{target}{style.end()}"
