"""Statement splitting and classification: KalamDB's own statements by anchored regexes, standard SQL by sqlglot.

``parse_statement(text)`` returns a ``Stmt``: ``kind`` names the statement, ``args`` carries what the engine needs
(for standard SQL the sqlglot tree in ``args["tree"]``). Parse problems raise ``SqlFailure`` with code INVALID_SQL.
"""

from __future__ import annotations

import re
import threading
from typing import Any, cast

import attrs
import sqlglot
from sqlglot import exp

from ._values import SqlFailure

__all__ = ["Stmt", "parse_sql", "parse_statement", "split_statements", "substitute_params"]

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
#: a namespace, table or column name, bare or in double quotes (``"ns"."t"``); parse_statement unquotes it
_NAME = rf'(?:"{_IDENT}"|{_IDENT})'
_QUOTED_NAME = re.compile(rf'"({_IDENT})"')
_QNAME = rf"(?:({_NAME})\.)?({_NAME})"


@attrs.frozen
class Stmt:
    kind: str
    text: str
    args: dict[str, Any]
    execute_as: str | None = None


def split_statements(sql: str) -> list[str]:
    """Split on ``;`` outside quotes, parentheses-agnostic; drops empty pieces and ``--`` comments."""
    if ";" not in sql and "--" not in sql:
        return [sql.strip()] if sql.strip() else []
    out, buf, i, n = [], [], 0, len(sql)
    quote: str | None = None
    while i < n:
        c = sql[i]
        if quote:
            buf.append(c)
            if c == quote:
                if i + 1 < n and sql[i + 1] == quote:
                    buf.append(sql[i + 1])
                    i += 1
                else:
                    quote = None
        elif c in ("'", '"'):
            quote = c
            buf.append(c)
        elif c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
            continue
        elif c == ";":
            out.append("".join(buf).strip())
            buf = []
        else:
            buf.append(c)
        i += 1
    out.append("".join(buf).strip())
    return [s for s in out if s]


def _unquote(s: str | None) -> str | None:
    if s is None:
        return None
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1].replace(s[0] * 2, s[0])
    return s


def _unquote_name(group: str | None) -> str | None:
    """A name group of a KalamDB statement without its double quotes (names are lowercased at creation,
    PROTOCOL §4.2, so ``"t"`` and ``t`` name one table); every other group as it is."""
    m = _QUOTED_NAME.fullmatch(group) if group is not None else None
    return m.group(1) if m else group


_RX: list[tuple[str, re.Pattern[str]]] = [
    ("begin", re.compile(r"(?:BEGIN|START\s+TRANSACTION)(?:\s+TRANSACTION|\s+WORK)?", re.I)),
    ("commit", re.compile(r"COMMIT(?:\s+TRANSACTION|\s+WORK)?", re.I)),
    ("rollback", re.compile(r"ROLLBACK(?:\s+TRANSACTION|\s+WORK)?", re.I)),
    (
        "create_namespace",
        re.compile(rf"CREATE\s+(?:NAMESPACE|SCHEMA)\s+(IF\s+NOT\s+EXISTS\s+)?({_NAME})", re.I),
    ),
    (
        "drop_namespace",
        re.compile(rf"DROP\s+(?:NAMESPACE|SCHEMA)\s+(IF\s+EXISTS\s+)?({_NAME})(?:\s+CASCADE)?", re.I),
    ),
    (
        "create_table",
        re.compile(
            rf"CREATE\s+(?:(USER|SHARED|STREAM)\s+)?TABLE\s+(IF\s+NOT\s+EXISTS\s+)?{_QNAME}\s*(\(.*?\))\s*"
            r"(?:WITH\s*\((.*)\))?",
            re.I | re.S,
        ),
    ),
    (
        "drop_table",
        re.compile(rf"DROP\s+(?:(?:USER|SHARED|STREAM)\s+)?TABLE\s+(IF\s+EXISTS\s+)?{_QNAME}", re.I),
    ),
    ("alter_add", re.compile(rf"ALTER\s+TABLE\s+{_QNAME}\s+ADD\s+(?:COLUMN\s+)?(.+)", re.I | re.S)),
    (
        "alter_drop",
        re.compile(rf"ALTER\s+TABLE\s+{_QNAME}\s+DROP\s+(?:COLUMN\s+)?(IF\s+EXISTS\s+)?({_NAME})", re.I),
    ),
    ("alter_access", re.compile(rf"ALTER\s+TABLE\s+{_QNAME}\s+SET\s+ACCESS\s+LEVEL\s+({_IDENT})", re.I)),
    (
        "create_user",
        re.compile(
            r"CREATE\s+USER\s+(IF\s+NOT\s+EXISTS\s+)?('(?:[^']|'')*'|\"[^\"]*\"|[^\s]+)\s+WITH\s+"
            r"(?:PASSWORD\s+('(?:[^']|'')*')|INTERNAL)\s+ROLE\s+('?\w+'?)(?:\s+EMAIL\s+('(?:[^']|'')*'))?",
            re.I,
        ),
    ),
    (
        "alter_user",
        re.compile(
            r"ALTER\s+USER\s+('(?:[^']|'')*'|\"[^\"]*\"|[^\s]+)\s+SET\s+(PASSWORD|ROLE|EMAIL)\s+('(?:[^']|'')*'|\w+)",
            re.I,
        ),
    ),
    ("drop_user", re.compile(r"DROP\s+USER\s+(IF\s+EXISTS\s+)?('(?:[^']|'')*'|\"[^\"]*\"|[^\s]+)", re.I)),
    ("flush_table", re.compile(rf"(?:STORAGE\s+)?FLUSH\s+TABLE\s+{_QNAME}", re.I)),
    (
        "flush_all",
        re.compile(
            rf"(?:STORAGE\s+)?FLUSH\s+ALL(?:\s+TABLES)?(?:\s+IN\s+(?:NAMESPACE\s+)?({_NAME}))?", re.I
        ),
    ),
    (
        "create_storage",
        re.compile(
            rf"CREATE\s+STORAGE\s+(IF\s+NOT\s+EXISTS\s+)?({_IDENT})\s+TYPE\s+'?(\w+)'?\s+(.*)", re.I | re.S
        ),
    ),
    ("drop_storage", re.compile(rf"DROP\s+STORAGE\s+(IF\s+EXISTS\s+)?({_IDENT})", re.I)),
]

_EXECUTE_AS = re.compile(
    r"EXECUTE\s+AS\s+USER\s+('(?:[^']|'')*'|\"[^\"]*\"|[^\s(]+)\s*\((.*)\)\s*", re.I | re.S
)


def parse_statement(text: str) -> Stmt:
    """Classify and parse one statement (without its trailing ``;``)."""
    text = text.strip().rstrip(";").strip()
    if not text:
        raise SqlFailure("Empty SQL statement", "INVALID_INPUT")
    if re.match(r"EXECUTE\s+AS\b", text, re.I):
        m = _EXECUTE_AS.fullmatch(text)
        if not m:
            raise SqlFailure(
                "Invalid EXECUTE AS USER syntax: expected EXECUTE AS USER 'name' (<statement>)",
                "INVALID_INPUT",
            )
        inner = m.group(2).strip().rstrip(";").strip()
        if not inner or len(split_statements(inner)) != 1:
            raise SqlFailure("EXECUTE AS USER must wrap exactly one SQL statement", "INVALID_INPUT")
        user = _unquote(m.group(1)) or ""
        st = parse_statement(inner)
        if st.execute_as is not None:
            raise SqlFailure("EXECUTE AS USER cannot be nested", "INVALID_INPUT")
        return attrs.evolve(st, execute_as=user)
    for kind, rx in _RX:
        m = rx.fullmatch(text)
        if m:
            return Stmt(kind, text, {"m": tuple(_unquote_name(g) for g in m.groups())})
    head = text.split(None, 1)[0].upper()
    if head in ("SELECT", "WITH", "INSERT", "UPDATE", "DELETE", "VALUES", "("):
        try:
            tree = parse_sql(text)
        except sqlglot.errors.ParseError as e:
            raise SqlFailure(f"SQL parse error: {str(e).splitlines()[0]}", "INVALID_SQL") from None
        if isinstance(tree, (exp.Select, exp.Union, exp.Intersect, exp.Except)) and head != "(":
            return Stmt("select", text, {"tree": tree})
        if isinstance(tree, exp.Insert):
            return Stmt("insert", text, {"tree": tree})
        if isinstance(tree, exp.Update):
            return Stmt("update", text, {"tree": tree})
        if isinstance(tree, exp.Delete):
            return Stmt("delete", text, {"tree": tree})
    if head in ("CREATE", "DROP", "ALTER", "STORAGE", "FLUSH"):
        raise SqlFailure(f"Invalid or unsupported statement: {text[:200]}", "INVALID_SQL")
    raise SqlFailure(f"Unsupported SQL statement: {text[:200]}", "INVALID_SQL")


# ---------------------------------------------------------------------------------------------- shape cache
# Parsing with sqlglot costs about as much as executing a small statement, and the tester sends thousands of
# statements that differ only in their literals. ``parse_sql`` therefore parses each *shape* once: every plain
# number and '...' string literal is replaced by a positional ``$k`` marker, the marked text is parsed, and the
# template is kept only if putting the original literals back yields exactly the tree a direct parse gives.
# Later statements of the same shape get a copy of the template with their own literals put in. Text the scanner
# cannot mark safely (comments, $ parameters, backslashes, INTERVAL, unterminated quotes) is parsed directly.

_SHAPE_TOKEN = re.compile(
    r"(?P<s>'(?:[^'\\]|'')*')"  # a string literal without backslashes
    r'|(?P<q>"(?:[^"]|"")*")'  # a quoted identifier: part of the shape
    r"|(?P<w>[A-Za-z_][A-Za-z0-9_]*)"  # a word: part of the shape
    r"|(?P<n>(?<![.\w])\d+(?:\.\d+)?(?![\w.]))"  # a plain number literal
    r"|(?P<bad>--|/\*|[$'\"\\]|\d)",  # comments, parameters, odd quoting, odd numbers: no cache
)
# Where a marked literal may sit for its shape to be cached: operands of comparisons, arithmetic, IN, LIKE,
# BETWEEN, VALUES tuples, LIMIT/OFFSET. Function arguments and casts are left out: sqlglot reads some of those by
# their content (date units, format strings), so one value's parse says nothing about another's.
_PLAIN_PARENTS = (
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Tuple,
    exp.In,
    exp.Like,
    exp.ILike,
    exp.Between,
    exp.Limit,
    exp.Offset,
    exp.Neg,
    exp.Paren,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
)
_SHAPES: dict[tuple[str, tuple[bool, ...]], exp.Expr | None] = {}
_SHAPES_MAX = 4096
_SHAPES_LOCK = threading.Lock()


def _shape(text: str) -> tuple[str, list[tuple[bool, str]]] | None:
    """(marked text, [(is_string, literal value)]) or None when the text cannot be marked safely."""
    out: list[str] = []
    lits: list[tuple[bool, str]] = []
    pos = 0
    for m in _SHAPE_TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "bad":
            return None
        if kind == "w" and m.group().upper() == "INTERVAL":
            return None  # the parser reads INTERVAL strings by their content
        if kind in ("s", "n"):
            out.append(text[pos : m.start()])
            lits.append((kind == "s", m.group()[1:-1].replace("''", "'") if kind == "s" else m.group()))
            out.append(f"${len(lits)}")
            pos = m.end()
    out.append(text[pos:])
    return "".join(out), lits


def _fill(template: exp.Expr, lits: list[tuple[bool, str]]) -> exp.Expr:
    """A fresh copy of ``template`` with its ``$k`` markers replaced by the literals (faster than ``copy()``,
    which deep-copies every node's position metadata)."""

    def build(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Parameter) and isinstance(node.this, exp.Literal):
            is_string, value = lits[int(node.this.name) - 1]
            return exp.Literal(this=value, is_string=is_string)
        args: dict[str, Any] = {}
        for k, v in node.args.items():
            if isinstance(v, exp.Expr):
                args[k] = build(v)
            elif type(v) is list:
                args[k] = [build(x) if isinstance(x, exp.Expr) else x for x in v]
            else:
                args[k] = v
        return node.__class__(**args)

    return build(template)


def _same(a: Any, b: Any) -> bool:
    """Exact structural equality of two sqlglot trees (``==`` compares case-insensitive hashes)."""
    if isinstance(a, exp.Expr):
        if type(a) is not type(b):
            return False
        ka = {k: v for k, v in a.args.items() if v is not None and v is not False and v != []}
        kb = {k: v for k, v in b.args.items() if v is not None and v is not False and v != []}
        return ka.keys() == kb.keys() and all(_same(ka[k], kb[k]) for k in ka)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def parse_sql(text: str) -> exp.Expression:
    """``sqlglot.parse_one(text, read="postgres")`` through the shape cache; always a fresh tree."""
    shaped = _shape(text)
    if shaped is None:
        return cast(exp.Expression, sqlglot.parse_one(text, read="postgres"))
    marked, lits = shaped
    key = (marked, tuple(s for s, _ in lits))
    with _SHAPES_LOCK:
        template = _SHAPES.get(key, False)
    if template is None:
        return cast(
            exp.Expression, sqlglot.parse_one(text, read="postgres")
        )  # shape known not to survive marking
    if template is not False:
        return cast(exp.Expression, _fill(template, lits))  # type: ignore[arg-type]
    tree = sqlglot.parse_one(text, read="postgres")
    try:
        candidate: exp.Expr | None = sqlglot.parse_one(marked, read="postgres")
        markers = list(candidate.find_all(exp.Parameter))  # type: ignore[union-attr]
        if (
            len(markers) != len(lits)
            or not all(isinstance(m.parent, _PLAIN_PARENTS) for m in markers)
            or not _same(_fill(candidate, lits), tree)  # type: ignore[arg-type]
        ):
            candidate = None
    except sqlglot.errors.SqlglotError:
        candidate = None
    with _SHAPES_LOCK:
        if len(_SHAPES) >= _SHAPES_MAX:
            _SHAPES.pop(next(iter(_SHAPES)))
        _SHAPES[key] = candidate
    return cast(exp.Expression, tree)


def substitute_params(tree: exp.Expression, params: list[Any]) -> exp.Expression:
    """Replace ``$1..$n`` with literals (a copy); raises SqlFailure for a missing parameter."""
    if not params:
        return tree  # a leftover $n is then an unknown column, as on the real server

    def repl(node: exp.Expression) -> exp.Expression:
        name = None
        if isinstance(node, exp.Parameter):
            name = node.name
        elif isinstance(node, exp.Placeholder) and node.name:
            name = node.name.lstrip("$")
        elif isinstance(node, exp.Column) and not node.table and node.name.startswith("$"):
            name = node.name[1:]
        if name is None or not name.isdigit():
            return node
        i = int(name)
        if i < 1 or i > len(params):
            raise SqlFailure(
                f"Parameter ${i} is missing: {len(params)} parameter(s) given", "SQL_EXECUTION_ERROR"
            )
        return to_literal(params[i - 1])

    return tree.copy().transform(repl)


def to_literal(v: Any) -> exp.Expression:
    if v is None:
        return exp.Null()
    if isinstance(v, bool):
        return exp.Boolean(this=v)
    if isinstance(v, (int, float)):
        return exp.Literal.number(v) if v >= 0 else exp.Neg(this=exp.Literal.number(-v))
    return exp.Literal.string(str(v))
