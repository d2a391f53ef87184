"""SELECT (§3) on DataFusion over the merged hot+cold Arrow rows of each scope, and the PK lookup shortcut.

Every table a query names is registered as an Arrow table (``Frames``) under a fresh name, the query is rewritten
to those names and run by DataFusion; the default and maximum LIMIT apply, and results without ORDER BY are
sorted by primary key.
"""

from __future__ import annotations

from typing import Any

import datafusion
import pyarrow as pa
from sqlglot import exp

from . import _faults
from ._catalog import Catalog
from ._records import ADMIN, Column, Ctx, Table, num, pk_key
from ._rows import Rows
from ._system import Sources, system_table
from ._values import SqlFailure, canonical, cell, data_type_for_arrow, denied, to_arrow_value

__all__ = ["Frames", "Selector"]


def _mentions(tree: exp.Expression | None, column: str) -> bool:
    return tree is not None and any(c.name.lower() == column for c in tree.find_all(exp.Column))


def _has_range(tree: exp.Expression | None) -> bool:
    return tree is not None and any(
        True for _ in tree.find_all(exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between)
    )


#: DataFusion's logical rule that constant-folds and rewrites expressions. Its IN-list rewrite folds
#: ``c IN (a) AND c IN (b)`` (disjoint lists) and ``c IN (a) AND c NOT IN (a)`` to FALSE without regard to a
#: NULL ``c`` (SQL: UNKNOWN), so ``NOT (...)`` then admits rows it must not (docs/kalamdb-findings.md #12,
#: still present in datafusion 55). Without the rule every expression is evaluated as written, by SQL's
#: three-valued logic; the other rules (projection, filter pushdown, subquery decorrelation) stay.
SIMPLIFIER_RULE = "simplify_expressions"


def expand_in_lists(tree: exp.Expression) -> exp.Expression:
    """``tree`` with every ``x IN (v1, v2, ...)`` written as ``(x = v1 OR x = v2 ...)`` (a copy).

    The two mean the same under SQL's three-valued logic (TRUE if one equality holds, else UNKNOWN if one is
    UNKNOWN, else FALSE), but DataFusion evaluates a literal IN list with a hash set that compares floats bit by
    bit: ``0.0 IN (-0.0)`` is FALSE without the simplifier (which rewrites short lists to ORs), and so it is even
    with it once the list is long (docs/kalamdb-findings.md #14, upstream). Equalities compare by value.
    """

    def rewrite(node: exp.Expression) -> exp.Expression:
        values = node.args.get("expressions") if isinstance(node, exp.In) else None
        if not values or node.args.get("query") is not None or node.args.get("unnest") is not None:
            return node
        column = node.this
        chain: exp.Expression = exp.EQ(this=column.copy(), expression=values[0].copy())
        for value in values[1:]:
            chain = exp.Or(this=chain, expression=exp.EQ(this=column.copy(), expression=value.copy()))
        return exp.Paren(this=chain)

    return tree.copy().transform(rewrite)


class Frames:
    """One DataFusion session; Arrow tables are registered under ``__kalam_t<n>`` for the span of a query."""

    def __init__(self) -> None:
        self.df = datafusion.SessionContext()
        if not _faults.active("in_lists_folded_false"):  # planted: keep the simplifier, as KalamDB does
            if not self.df.remove_optimizer_rule(SIMPLIFIER_RULE):
                raise RuntimeError(f"DataFusion has no optimizer rule {SIMPLIFIER_RULE!r} to switch off")
        self._reg = 0

    def register(self, data: pa.Table) -> str:
        self._reg += 1
        reg = f"__kalam_t{self._reg}"
        self.df.register_record_batches(reg, [data.to_batches() or [pa.RecordBatch.from_pylist([], data.schema)]])
        return reg

    def deregister(self, reg: str) -> None:
        self.df.deregister_table(reg)

    def sql(self, text: str) -> pa.Table:
        return self.df.sql(text).to_arrow_table()

    def query(self, tree: exp.Expression) -> pa.Table:
        """Run a parsed statement; its IN lists become equalities first (:func:`expand_in_lists`) unless the
        planted fault ``in_lists_folded_false`` asks for DataFusion's own handling, as KalamDB has it."""
        if not _faults.active("in_lists_folded_false"):
            tree = expand_in_lists(tree)
        return self.sql(tree.sql(dialect="postgres"))


class Selector:
    """Runs SELECT statements for a ``Ctx``: access checks, scopes, system tables, limits, result envelopes."""

    def __init__(
        self,
        catalog: Catalog,
        rows: Rows,
        frames: Frames,
        sources: Sources,
        default_query_limit: int,
        max_query_limit: int,
    ):
        self.catalog = catalog
        self.rows = rows
        self.frames = frames
        self.sources = sources
        self.default_query_limit = default_query_limit
        self.max_query_limit = max_query_limit

    def select(self, ctx: Ctx, tree: exp.Expression, in_tx: bool = False) -> dict[str, Any]:
        fast = self._fast_select(ctx, tree)
        if fast is not None:
            return fast
        tree = tree.copy()
        regs: list[str] = []
        try:
            main, system = self._register(ctx, tree, regs)
            pk_resort = self._planted_pk_order(tree, main, system)
            if isinstance(tree, exp.Select):
                self._limit(tree)
            try:
                result = self.frames.query(tree)
            except Exception as e:
                msg = str(e).strip()
                low = msg.lower()
                keep = any(k in low for k in ("no field named", "not found", "primary key", "already exists"))
                raise SqlFailure(msg.split("\n")[0], preserve=keep) from None
        finally:
            for r in regs:
                self.frames.deregister(r)
        names = result.column_names
        cols_out = [r.to_pylist() for r in result.columns]
        rows = [list(x) for x in zip(*cols_out)] if cols_out else []
        schema = []
        for i, f in enumerate(result.schema):
            c = main.col(f.name) if main is not None and not system else None
            if c is not None:
                schema.append(c.field(i))
            else:
                schema.append({"name": f.name, "data_type": data_type_for_arrow(f.type), "index": i})
        if pk_resort:  # the hidden last column holds the primary key: sort by it, then drop it
            rows.sort(key=lambda r: (r[-1] is None, r[-1] if r[-1] is not None else 0))
            rows = [r[:-1] for r in rows]
            schema = schema[:-1]
        elif (
            isinstance(tree, exp.Select)
            and not tree.args.get("order")
            and main is not None
            and not system
            and main.pk is not None
            and main.pk.name in names
        ):
            j = names.index(main.pk.name)
            rows.sort(key=lambda r: (r[j] is None, r[j] if r[j] is not None else 0))
        return self.result(ctx, schema, rows)

    def _planted_pk_order(self, tree: exp.Expression, main: Table | None, system: bool) -> bool:
        """Planted findings 7 and 10: KalamDB's default ordering (``default_ordering.rs``) looks only at the
        plan's root node, so an ORDER BY under a Projection (a sort column that is not selected) or under a
        Limit (an explicit LIMIT) gets a primary-key sort wrapped around it. When one applies, the key is
        appended as a hidden last column and True returned (``select`` sorts by it and drops it)."""
        if not isinstance(tree, exp.Select) or main is None or system or main.pk is None:
            return False
        order = tree.args.get("order")
        if order is None or any(tree.args.get(k) for k in ("group", "distinct", "joins", "having")):
            return False
        if any(True for _ in tree.find_all(exp.AggFunc)):
            return False
        keys = [o.this.name.lower() for o in order.expressions if isinstance(o.this, exp.Column)]
        selected: set[str] = set()
        for e in tree.expressions:
            if isinstance(e, exp.Star):
                selected.update(c.name for c in main.columns)
            else:
                selected.add(e.alias_or_name.lower())
        unselected = _faults.active("order_by_unselected_uses_pk") and any(k not in selected for k in keys)
        limited = (
            _faults.active("order_limit_resorted_by_pk")
            and tree.args.get("limit") is not None
            and any(k != main.pk.name for k in keys)
        )
        if not (unselected or limited):
            return False
        tree.select(exp.alias_(exp.column(main.pk.name), "__kalam_pk"), copy=False)
        return True

    def _register(self, ctx: Ctx, tree: exp.Expression, regs: list[str]) -> tuple[Table | None, bool]:
        """Replace every table of ``tree`` by a registered Arrow table (names appended to ``regs``); returns the
        first user table and whether a system table was read."""
        ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
        main: Table | None = None
        system = False
        where = tree.args.get("where") if isinstance(tree, exp.Select) else None
        for t in list(tree.find_all(exp.Table)):
            if not t.db and t.name.lower() in ctes:
                continue
            ns = (t.db or ctx.namespace).lower()
            name = t.name.lower()
            if ns == "system":
                if ctx.role not in ADMIN:
                    raise denied(
                        f"Access denied: Role '{ctx.role.capitalize()}' cannot access table "
                        f"'system.{name}'. System tables require 'dba' or 'system' role."
                    )
                data = system_table(name, self.sources)
                system = True
            else:
                table = self.catalog.table(f"{ns}.{name}", ns)
                self.catalog.check_shared(table, ctx, write=False)
                main = main or table
                include = _mentions(where, "_deleted")
                owner = self.catalog.owner_for(table, ctx)
                owners = [owner]
                if table.kind == "USER" and _faults.active("user_select_leak") and _has_range(where):
                    owners = sorted({o for (k, o) in self.rows.scopes if k == table.key} | {owner})
                data = self.rows.scope_arrow(table, owners, include)
            reg = self.frames.register(data)
            regs.append(reg)
            alias = t.args.get("alias") or exp.TableAlias(this=exp.to_identifier(name))
            t.replace(exp.Table(this=exp.to_identifier(reg), alias=alias))
        return main, system

    def _limit(self, tree: exp.Select) -> None:
        """The default LIMIT when there is none; a LIMIT above the maximum is lowered to it."""
        lim = tree.args.get("limit")
        if lim is None:
            tree.set(
                "limit",
                exp.Limit(expression=exp.Literal.number(min(self.default_query_limit, self.max_query_limit))),
            )
        else:
            try:
                n = int(lim.expression.name)
                if n > self.max_query_limit:
                    lim.set("expression", exp.Literal.number(self.max_query_limit))
            except (AttributeError, ValueError):
                pass

    def result(self, ctx: Ctx, schema: list[dict[str, Any]], rows: list[list[Any]]) -> dict[str, Any]:
        if rows and _faults.active("random_flaky_select") and _faults.rng.random() < 0.5:
            rows = rows[:-1]
        redact = ctx.principal.role not in ADMIN
        out = []
        for r in rows:
            line = []
            for f, v in zip(schema, r):
                if redact and f["name"].lower() in ("password_hash", "credentials") and v is not None:
                    line.append("***")
                else:
                    line.append(cell(f["data_type"], v))
            out.append(line)
        res: dict[str, Any] = {}
        if schema:
            res["schema"] = schema
        if out:
            res["rows"] = out
        res["row_count"] = len(out)
        res["as_user"] = ctx.as_user
        return res

    def _fast_select(self, ctx: Ctx, tree: exp.Expression) -> dict[str, Any] | None:
        """``SELECT cols|* FROM ns.t WHERE pk = literal`` without touching DataFusion (same result)."""
        if not isinstance(tree, exp.Select) or _faults.enabled():
            return None
        a = tree.args
        if any(
            a.get(k) for k in ("joins", "group", "having", "order", "distinct", "with", "offset", "laterals")
        ):
            return None
        frm = a.get("from") or a.get("from_")
        where = a.get("where")
        if (
            frm is None
            or where is None
            or not isinstance(frm.this, exp.Table)
            or not isinstance(where.this, exp.EQ)
        ):
            return None
        t = frm.this
        if not t.db or t.db.lower() == "system" or t.args.get("alias"):
            return None
        lim = a.get("limit")
        if lim is not None and not (
            isinstance(lim.expression, exp.Literal) and lim.expression.name.isdigit()
        ):
            return None
        table = self.catalog.tables.get(f"{t.db.lower()}.{t.name.lower()}")
        if table is None or table.pk is None or table.kind == "STREAM":
            return None
        eq = where.this
        col, lit = (eq.this, eq.expression) if isinstance(eq.this, exp.Column) else (eq.expression, eq.this)
        if not isinstance(col, exp.Column) or col.table or col.name.lower() != table.pk.name:
            return None
        if not isinstance(lit, exp.Literal):
            return None
        try:
            if lit.is_string and table.pk.data_type not in ("Text", "Uuid", "Json"):
                return None
            key = canonical(table.pk.data_type, lit.name if lit.is_string else num(lit.name), table.pk.name)
        except SqlFailure:
            return None
        cols: list[Column] = []
        for e in tree.expressions:
            c = table.col(e.name) if isinstance(e, exp.Column) and not e.table else None
            if isinstance(e, exp.Star):
                cols.extend(table.columns)
            elif c is not None:
                cols.append(c)
            else:
                return None
        self.catalog.check_shared(table, ctx, write=False)
        v = self.rows.live_version(table, self.catalog.owner_for(table, ctx), pk_key(key))
        rows = []
        if v is not None and (lim is None or int(lim.expression.name) > 0):
            rows = [[to_arrow_value(c.data_type, self.rows.value(table, v, c)) for c in cols]]
        schema = [c.field(i) for i, c in enumerate(cols)]
        return self.result(ctx, schema, rows)
