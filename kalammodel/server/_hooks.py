"""The engine hooks ``_ws.py`` uses (docs/ARCHITECTURE.md "Engine hooks used by _ws.py"): token checks,
subscription plans (§10.5), the visible rows of a plan's scope, and change listeners."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import sqlglot
from sqlglot import exp

from ._catalog import Catalog
from ._live_filter import FilterError, compile_filter
from ._records import ADMIN, Column, Ctx, Table
from ._rows import Rows
from ._types import ChangeEvent, LiveError, LivePlan, Principal
from ._users import Accounts
from ._values import SqlFailure

__all__ = ["LiveHooks"]

_UNSUPPORTED = ("joins", "group", "having", "order", "limit", "offset", "distinct", "with", "laterals")


def _live_tree(sql: str) -> exp.Select:
    """The live query parsed and checked for shape: a plain SELECT without clauses live queries lack."""
    try:
        tree = sqlglot.parse_one(sql.strip().rstrip(";"), read="postgres")
    except sqlglot.errors.ParseError as e:
        raise LiveError("INVALID_SQL", f"Invalid SQL: {str(e).splitlines()[0]}") from None
    if not isinstance(tree, exp.Select):
        raise LiveError("INVALID_SQL", "Only SELECT queries can be subscribed to")
    for k in _UNSUPPORTED:
        if tree.args.get(k):
            raise LiveError(
                "UNSUPPORTED",
                f"Live queries do not support {k.upper()}: use SELECT <cols>|* FROM ns.table [WHERE ...]",
            )
    return tree


def _projection(tree: exp.Select, table: Table) -> list[Column]:
    cols: list[Column] = []
    for item in tree.expressions:
        if isinstance(item, exp.Star):
            cols.extend(table.columns)
        elif isinstance(item, exp.Column):
            if item.name.lower() in ("_seq", "_deleted"):
                raise LiveError("INVALID_SQL", f"Live queries cannot project system column '{item.name}'")
            c = table.col(item.name)
            if c is None:
                raise LiveError("INVALID_SQL", f"Column '{item.name}' not found in table {table.key}")
            cols.append(c)
        else:
            raise LiveError("UNSUPPORTED", f"Live queries project plain columns only (got {item.sql()})")
    return cols


class LiveHooks:
    """The hooks behind ``Engine.verify_token``, ``plan_subscription``, ``live_rows`` and the listeners."""

    def __init__(self, lock: threading.RLock, catalog: Catalog, rows: Rows, accounts: Accounts):
        self.lock = lock
        self.catalog = catalog
        self.rows = rows
        self.accounts = accounts

    def verify_token(self, token: str) -> Principal:
        return self.accounts.verify_token(token)

    def add_change_listener(self, callback: Callable[[ChangeEvent], None]) -> None:
        """Call ``callback(ChangeEvent)`` synchronously after each committed row change (one per row)."""
        with self.lock:
            self.rows.listeners.append(callback)

    def remove_change_listener(self, callback: Callable[[ChangeEvent], None]) -> None:
        with self.lock:
            if callback in self.rows.listeners:
                self.rows.listeners.remove(callback)

    def plan_subscription(self, principal: Principal, sql: str) -> LivePlan:
        """Validate a live query (§10.5); raises LiveError with a §10.4 code."""
        tree = _live_tree(sql)
        frm = tree.args.get("from") or tree.args.get("from_")
        if frm is None or not isinstance(frm.this, exp.Table):
            raise LiveError("INVALID_SQL", "Live query needs FROM ns.table")
        t = frm.this
        if not t.db:
            raise LiveError(
                "INVALID_SQL", f"Table '{t.name}' must be qualified with its namespace (ns.table)"
            )
        ns, name = t.db.lower(), t.name.lower()
        with self.lock:
            if ns == "system":
                if principal.role not in ADMIN:
                    raise LiveError("UNAUTHORIZED", "System tables require 'dba' or 'system' role")
                raise LiveError(
                    "UNSUPPORTED", "Subscriptions to system tables are not supported by this server"
                )
            table = self.catalog.tables.get(f"{ns}.{name}")
            if table is None:
                raise LiveError("NOT_FOUND", f"Table '{ns}.{name}' not found")
            if table.kind == "SHARED":
                ctx = Ctx(principal, principal.user_id, principal.role, principal.user_id, False, ns)
                try:
                    self.catalog.check_shared(table, ctx, write=False)
                except SqlFailure as f:
                    raise LiveError("UNAUTHORIZED", f.message) from None
            cols = _projection(tree, table)
            where = tree.args.get("where")
            w = where.this if where is not None else None
            if w is not None:
                for c in w.find_all(exp.Column):
                    if table.col(c.name) is None:
                        raise LiveError("INVALID_SQL", f"Column '{c.name}' not found in table {table.key}")
                try:  # refused now what the live filter cannot evaluate: never acknowledged, then skipped
                    compile_filter(w, {c.name: c.data_type for c in table.columns}, principal.user_id)
                except FilterError as e:
                    raise LiveError(e.code, e.message) from None
            return LivePlan(
                table.key,
                table.kind,
                None if table.kind == "SHARED" else principal.user_id,
                [c.field(i) for i, c in enumerate(cols)],
                [c.name for c in cols],
                w,
                sql,
            )

    def live_rows(self, plan: LivePlan) -> list[dict[str, Any]]:
        """Visible rows of the plan's scope (TTL applied, no tombstones), full dicts, ascending ``_seq``."""
        with self.lock:
            table = self.catalog.tables.get(plan.table_id)
            if table is None:
                return []
            return [self.rows.row_dict(table, v) for v in self.rows.visible(table, plan.owner or "")]
