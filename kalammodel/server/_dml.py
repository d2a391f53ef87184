"""INSERT, UPDATE and DELETE (§5, §8): constants and defaults, PK checks, matching rows, new row versions.

A write appends a ``Version`` through ``Rows.put`` (soft delete = a tombstone version); a STREAM DELETE removes
the row's hot versions (``Rows.hard_delete``). Each changed row yields one ``ChangeEvent``.
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

from sqlglot import exp

from . import _faults
from ._catalog import Catalog
from ._records import Column, Ctx, Table, num, pk_key
from ._rows import Rows
from ._select import Frames
from ._sql import parse_sql
from ._storage import Version
from ._types import ChangeEvent
from ._values import SqlFailure, canonical, denied

__all__ = ["Writer"]


#: the zero value KalamDB's literal-INSERT path stores for an omitted NOT NULL column (fault
#: ``omitted_not_null_invented``, docs/kalamdb-findings.md 5)
_ZERO: dict[str, Any] = {
    "BigInt": 0, "Int": 0, "SmallInt": 0, "Double": 0.0, "Float": 0.0, "Boolean": False, "Text": "",
    "Timestamp": 0, "Json": "null",
}


#: integer column types and their ranges: an UPDATE result outside them fails (SQL "numeric value out of
#: range"; DataFusion wraps BIGINT arithmetic, so it is recomputed exactly below)
_INT_RANGE: dict[str, tuple[int, int]] = {
    "BigInt": (-(2**63), 2**63 - 1),
    "Int": (-(2**31), 2**31 - 1),
    "SmallInt": (-(2**15), 2**15 - 1),
}
_ARITH = (exp.Add, exp.Sub, exp.Mul)


def _exact_int(e: exp.Expression, row: dict[str, Any]) -> int | None:
    """The exact value of integer arithmetic over the row's cells (None: NULL); LookupError for anything else."""
    if isinstance(e, exp.Paren):
        return _exact_int(e.this, row)
    if isinstance(e, exp.Neg):
        v = _exact_int(e.this, row)
        return None if v is None else -v
    if isinstance(e, exp.Literal) and not e.is_string and e.name.isdigit():
        return int(e.name)
    if isinstance(e, exp.Null):
        return None
    if isinstance(e, exp.Column):
        v = row[e.name.lower()]  # KeyError is a LookupError
        if v is None or (isinstance(v, int) and not isinstance(v, bool)):
            return v
        raise LookupError(e.name)
    if isinstance(e, _ARITH):
        a, b = _exact_int(e.this, row), _exact_int(e.expression, row)
        if a is None or b is None:
            return None
        return a + b if isinstance(e, exp.Add) else a - b if isinstance(e, exp.Sub) else a * b
    raise LookupError(type(e).__name__)


def _in_range(c: Column, e: exp.Expression, computed: Any, row: dict[str, Any]) -> Any:
    """``computed`` (DataFusion's value of ``e``) checked against the integer range of ``c``'s type."""
    bounds = _INT_RANGE.get(c.data_type) if isinstance(c.data_type, str) else None
    if bounds is None:
        return computed
    if any(True for _ in e.find_all(*_ARITH)):
        try:
            computed = _exact_int(e, row)
        except LookupError:
            pass
    if isinstance(computed, int) and not bounds[0] <= computed <= bounds[1]:
        raise SqlFailure(f"Arithmetic overflow: {e.sql()} = {computed} is out of range for column '{c.name}'")
    return computed


def _is_const(e: exp.Expression) -> bool:
    return not any(True for _ in e.find_all(exp.Column))


class Writer:
    """The DML statements over the catalog's tables and the row versions."""

    def __init__(self, catalog: Catalog, rows: Rows, frames: Frames):
        self.catalog = catalog
        self.rows = rows
        self.frames = frames

    # ------------------------------------------------------------------ constants
    def const(self, e: exp.Expression, ctx: Ctx) -> Any:
        if isinstance(e, exp.Null):
            return None
        if isinstance(e, exp.Boolean):
            return bool(e.this)
        if isinstance(e, exp.Literal):
            return e.name if e.is_string else num(e.name)
        if isinstance(e, exp.Neg) and isinstance(e.this, exp.Literal) and not e.this.is_string:
            return -num(e.this.name)
        if isinstance(e, exp.Paren):
            return self.const(e.this, ctx)
        if isinstance(e, (exp.CurrentTimestamp, exp.CurrentDate)):
            return int(time.time() * 1_000_000)
        fname = (
            e.name.upper()
            if isinstance(e, exp.Anonymous)
            else (e.sql_name() if isinstance(e, exp.Func) else "")
        )
        if fname in ("NOW", "CURRENT_TIMESTAMP"):
            return int(time.time() * 1_000_000)
        if fname == "SNOWFLAKE_ID":
            return self.rows.next_seq()
        if fname in ("UUID_V7", "UUID", "GEN_RANDOM_UUID", "UUID_V4"):
            return str(uuid.uuid4())
        if fname == "ULID":
            return secrets.token_hex(13)[:26].upper()
        if fname in ("CURRENT_USER", "CURRENT_USER_ID"):
            return ctx.as_user
        if isinstance(e, exp.CurrentUser):
            return ctx.as_user
        if any(isinstance(x, exp.Column) for x in e.find_all(exp.Column)):
            raise SqlFailure(f"Column references are not allowed in VALUES: {e.sql()}")
        try:
            t = self.frames.sql(f"SELECT {e.sql(dialect='postgres')} AS v")
        except Exception as ex:
            raise SqlFailure(f"Cannot evaluate expression {e.sql()}: {str(ex).splitlines()[0]}") from None
        return t.column(0).to_pylist()[0]

    def _default(self, c: Column, ctx: Ctx) -> Any:
        if c.default is None:
            return None
        return self.const(parse_sql(c.default), ctx)

    # ------------------------------------------------------------------ INSERT
    def _write_table(self, ctx: Ctx, t: exp.Expression, in_tx: bool) -> Table:
        if not isinstance(t, exp.Table):
            raise SqlFailure("Expected a table name")
        ns = (t.db or ctx.namespace).lower()
        if ns == "system":
            raise denied(f"Access denied: system table 'system.{t.name.lower()}' is read-only")
        table = self.catalog.table(f"{ns}.{t.name}", ns)
        self.catalog.check_shared(table, ctx, write=True)
        if in_tx and table.kind == "STREAM":
            raise SqlFailure("stream tables are not supported inside explicit transactions")
        return table

    def _insert_columns(self, table: Table, names: list[str] | None) -> list[Column]:
        cols = [table.col(n) for n in names] if names is not None else table.user_columns()
        for n, c in zip(names or [], cols):
            if c is None:
                raise SqlFailure(f"Column '{n}' not found in table {table.key}")
            if c.system:
                raise SqlFailure(f"Cannot write system column '{n}'")
        if names is not None and len(set(names)) != len(names):
            raise SqlFailure("Duplicate column in INSERT column list")
        return [c for c in cols if c is not None]  # every name was found (checked above)

    def _row_values(self, ctx: Ctx, table: Table, cols: list[Column], tup: exp.Expression) -> dict[str, Any]:
        items = tup.expressions if isinstance(tup, exp.Tuple) else [tup]
        if len(items) != len(cols):
            raise SqlFailure(f"INSERT has {len(items)} value(s) but {len(cols)} column(s)")
        given = {c.id: canonical(c.data_type, self.const(e, ctx), c.name) for c, e in zip(cols, items)}
        vals: dict[str, Any] = {}
        for c in table.user_columns():
            if c.id in given:
                vals[c.id] = given[c.id]
            else:
                vals[c.id] = canonical(c.data_type, self._default(c, ctx), c.name)
                if vals[c.id] is None and (not c.nullable or c.pk) and _faults.active("omitted_not_null_invented"):
                    vals[c.id] = _ZERO.get(c.data_type)  # finding 5: the literal fast path's zero value
            if vals[c.id] is None and (not c.nullable or c.pk):
                raise SqlFailure(f"NOT NULL constraint violation: column '{c.name}' of {table.key} cannot be null")
        return vals

    def insert(self, ctx: Ctx, tree: exp.Insert, in_tx: bool) -> dict[str, Any]:
        target = tree.this
        names: list[str] | None = None
        if isinstance(target, exp.Schema):
            names = [i.name.lower() for i in target.expressions]
            target = target.this
        table = self._write_table(ctx, target, in_tx)
        values = tree.expression
        if not isinstance(values, exp.Values):
            raise SqlFailure("Only INSERT ... VALUES is supported")
        cols = self._insert_columns(table, names)
        owner = self.catalog.owner_for(table, ctx)
        pk = table.pk
        seen: set[str] = set()
        new: list[dict[str, Any]] = []
        for tup in values.expressions:
            vals = self._row_values(ctx, table, cols, tup)
            if pk is not None and table.kind != "STREAM":
                key = pk_key(vals[pk.id])
                if key in seen or self.rows.live_version(table, owner, key) is not None or self._cold_blocks(
                    table, owner, key
                ):
                    raise SqlFailure(
                        f"Primary key violation: a row with {pk.name}={vals[pk.id]!r} already exists "
                        f"in {table.key}"
                    )
                seen.add(key)
            new.append(vals)
        for vals in new:
            v = Version(self.rows.next_seq(), False, vals)
            key = pk_key(vals[pk.id]) if pk is not None and table.kind != "STREAM" else str(v.seq)
            self.rows.put(
                table,
                owner,
                key,
                v,
                ChangeEvent(table.key, owner or None, "insert", self.rows.row_dict(table, v), None, v.seq),
            )
        return {"row_count": len(new), "message": f"Inserted {len(new)} row(s)"}

    def _cold_blocks(self, table: Table, owner: str, key: str) -> bool:
        """Planted finding 2: the duplicate check consults the flushed version although a newer hot tombstone
        hides it (KalamDB's ``validate_insert_batch_rows`` then ``pk_exists_batch_in_cold``)."""
        if not _faults.active("deleted_key_blocked_after_flush"):
            return False
        sc = self.rows.scopes.get((table.key, owner))
        if sc is None:
            return False
        hot, cold = sc.hot.get(key), sc.cold.get(key)
        return hot is not None and hot.deleted and cold is not None and not cold.deleted and cold.seq < hot.seq

    # ------------------------------------------------------------------ UPDATE / DELETE
    def _pk_match(
        self, ctx: Ctx, table: Table, owner: str, where: exp.Expression, extra: list[exp.Expression]
    ) -> list[tuple[Version, list[Any]]] | None:
        """The PK lookup shortcut of ``_matches`` (None: not a ``pk = literal`` predicate); STREAM rows are
        stored under their _seq, so they always take the scan."""
        pk = table.pk
        eq = where
        if pk is None or table.kind == "STREAM" or not isinstance(eq, exp.EQ) or not all(map(_is_const, extra)):
            return None
        col, lit = (eq.this, eq.expression) if isinstance(eq.this, exp.Column) else (eq.expression, eq.this)
        if not (
            isinstance(col, exp.Column)
            and col.name.lower() == pk.name
            and isinstance(lit, exp.Literal)
            and not (lit.is_string and pk.data_type not in ("Text", "Uuid", "Json"))
        ):
            return None
        try:
            key = canonical(pk.data_type, lit.name if lit.is_string else num(lit.name), pk.name)
        except SqlFailure:
            key = None
        if key is None:
            return None
        v = self.rows.live_version(table, owner, pk_key(key))
        if v is None:
            return []
        return [(v, [self.const(x, ctx) for x in extra])]

    def _matches(
        self, ctx: Ctx, table: Table, owner: str, where: exp.Expression, extra: list[exp.Expression]
    ) -> list[tuple[Version, list[Any]]]:
        """Visible versions matching ``where`` and the values of ``extra`` expressions for each."""
        hit = self._pk_match(ctx, table, owner, where, extra)
        if hit is not None:
            return hit
        versions = self.rows.visible(table, owner)
        by_seq = {v.seq: v for v in versions}
        reg = self.frames.register(self.rows.arrow(table, versions))
        try:
            sel = (
                exp.select(
                    exp.column("_seq").as_("__seq"), *[x.copy().as_(f"__v{i}") for i, x in enumerate(extra)]
                )
                .from_(reg)
                .where(where.copy())
            )
            try:
                res = self.frames.query(sel)
            except Exception as e:
                msg = str(e).strip().split("\n")[0]
                raise SqlFailure(
                    msg, preserve="no field named" in msg.lower() or "not found" in msg.lower()
                ) from None
        finally:
            self.frames.deregister(reg)
        cols = [c.to_pylist() for c in res.columns]
        return [(by_seq[s], [c[i] for c in cols[1:]]) for i, s in enumerate(cols[0])]

    def _assignments(self, table: Table, tree: exp.Update, planning: str) -> list[tuple[Column, exp.Expression]]:
        sets: list[tuple[Column, exp.Expression]] = []
        for a in tree.expressions:
            name = a.this.name.lower()
            c = table.col(name)
            if c is None:
                raise SqlFailure(f"Column '{name}' not found in table {table.key}")
            if c.system:
                raise SqlFailure(f"Cannot update system column '{name}'")
            if c.pk:
                raise SqlFailure(f"UPDATE cannot modify primary key column '{name}'")
            if not (isinstance(a.expression, exp.Column) and a.expression.name.lower() == name):
                sets.append((c, a.expression))  # DataFusion plans `SET c = c` as no assignment at all
        if not sets:
            raise SqlFailure(planning + "UPDATE requires at least one assignment", preserve=False)
        return sets

    def update(self, ctx: Ctx, tree: exp.Update, in_tx: bool) -> dict[str, Any]:
        table = self._write_table(ctx, tree.this, in_tx)
        planning = (
            f"Execution error: UPDATE operation on table '{table.key}'\ncaused by\nError during planning: "
        )
        if table.kind == "STREAM":
            raise SqlFailure(planning + "UPDATE not supported for STREAM tables", preserve=False)
        where = tree.args.get("where")
        if where is None:
            raise SqlFailure(planning + "UPDATE requires a WHERE clause", preserve=False)
        sets = self._assignments(table, tree, planning)
        owner = self.catalog.owner_for(table, ctx)
        sc = self.rows.scope(table.key, owner)
        n = 0
        for old, newvals in self._matches(ctx, table, owner, where.this, [e for _, e in sets]):
            vals = dict(old.vals)
            before = self.rows.row_dict(table, old)
            for (c, e), nv in zip(sets, newvals):
                vals[c.id] = canonical(c.data_type, _in_range(c, e, nv, before), c.name)
                if vals[c.id] is None and not c.nullable:
                    raise SqlFailure(
                        f"NOT NULL constraint violation: column '{c.name}' of {table.key} cannot be null"
                    )
            if all(vals.get(c.id) == self.rows.value(table, old, c) for c, _ in sets):
                continue
            key = self.rows.pk_of(table, old)
            v = Version(self.rows.next_seq(), False, vals)
            cold_only = key not in sc.hot
            self.rows.put(
                table,
                owner,
                key,
                v,
                ChangeEvent(
                    table.key,
                    owner or None,
                    "update",
                    self.rows.row_dict(table, v),
                    self.rows.row_dict(table, old),
                    v.seq,
                ),
            )
            if cold_only and _faults.active("cold_update_lost"):
                sc.lost_seqs.add(v.seq)
            n += 1
        return {"row_count": n, "message": f"Updated {n} row(s)"}

    def delete(self, ctx: Ctx, tree: exp.Delete, in_tx: bool) -> dict[str, Any]:
        table = self._write_table(ctx, tree.this, in_tx)
        where = tree.args.get("where")
        if where is None:
            raise SqlFailure(
                f"Execution error: DELETE operation on table '{table.key}'\ncaused by\n"
                "Error during planning: DELETE requires a WHERE clause",
                preserve=False,
            )
        owner = self.catalog.owner_for(table, ctx)
        rows = self.rows
        n = 0
        stream = table.kind == "STREAM"
        if stream and table.pk is None and _faults.active("stream_delete_without_pk_noop"):
            return {"row_count": 0, "message": "Deleted 0 row(s)"}  # finding 8: looks for a `_seq` field
        distinct = stream and table.pk is not None and _faults.active("stream_delete_counts_distinct_pks")
        keys: set[str] = set()
        for old, _ in self._matches(ctx, table, owner, where.this, []):
            key = rows.pk_of(table, old)
            if distinct:
                assert table.pk is not None
                pk_value = pk_key(rows.value(table, old, table.pk))
                if pk_value in keys:
                    n -= 1  # finding 9: counted once per distinct key (n += 1 below)
                keys.add(pk_value)
            if stream:
                seq = rows.next_seq()
                event = ChangeEvent(
                    table.key,
                    owner or None,
                    "delete",
                    rows.row_dict(table, old, deleted=True),
                    rows.row_dict(table, old),
                    seq,
                )
                rows.hard_delete(table, owner, key, event)
            else:
                v = Version(rows.next_seq(), True, dict(old.vals))
                event = ChangeEvent(
                    table.key, owner or None, "delete", rows.row_dict(table, v), rows.row_dict(table, old), v.seq
                )
                rows.put(table, owner, key, v, event)
            n += 1
        return {"row_count": n, "message": f"Deleted {n} row(s)"}
