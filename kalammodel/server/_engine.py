"""The engine: one KalamDB-compatible database per data directory, composed of its parts, and statement dispatch.

Parts (each a private module with a concrete class): ``Catalog`` (namespaces, tables, storages, DDL),
``Rows`` (row versions, visibility, the request transaction), ``Writer`` (INSERT/UPDATE/DELETE), ``Selector``
(SELECT on DataFusion; system tables from ``_system``), ``Accounts`` (users, tokens, EXECUTE AS), ``JobLog`` and
``Flusher`` (``system.jobs``, flush jobs, the automatic-flush scheduler) and ``LiveHooks`` (the hooks ``_ws.py``
uses). The ``Engine`` runs ``/v1/api/sql`` requests: statements are parsed, dispatched by kind, and committed one
by one or as an explicit transaction.

Every request runs under ``Engine.lock`` (requests are serialised; the flush worker takes the lock only to
snapshot and to commit), so a reader never sees half a statement. Row versions are made durable in SQLite before
a statement is acknowledged. See ``_storage`` for the on-disk layout and for how this server deliberately differs
from KalamDB on tombstones at flush.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._catalog import Catalog
from ._dml import Writer
from ._hooks import LiveHooks
from ._jobs import Flusher, JobLog
from ._records import ADMIN, Ctx, Table
from ._rows import Rows
from ._select import Frames, Selector
from ._sql import Stmt, parse_statement, split_statements, substitute_params
from ._storage import HotStore, Version
from ._system import Sources
from ._types import ChangeEvent, LiveError, LivePlan, Principal
from ._users import Accounts
from ._values import SqlFailure

__all__ = ["ChangeEvent", "Engine", "LiveError", "LivePlan", "Principal", "SqlFailure"]

MAX_PARAMS = 50  # core:sql/executor/parameter_binding.rs
MAX_PARAM_SIZE_BYTES = 512 * 1024
# Texts a user/service sees instead of a redacted message, per code (api sql_response.rs public_message).
REDACTED = {
    "SQL_EXECUTION_ERROR": "SQL statement failed",
    "INVALID_SQL": "SQL statement is invalid or not allowed",
    "BATCH_PARSE_ERROR": "Failed to parse SQL batch",
    "INTERNAL_ERROR": "SQL request failed",
}
_DML_WORDS = (("insert", "Inserted"), ("update", "Updated"), ("delete", "Deleted"))

# a statement handler: (ctx, sqlglot tree of that kind, in_tx) or (ctx, regex groups)
_TreeHandler = Callable[[Ctx, Any, bool], dict[str, Any]]  # Any: the sqlglot node class differs per kind
_TextHandler = Callable[[Ctx, tuple[Any, ...]], dict[str, Any]]


def _err(code: str, message: str, sql: str | None, is_admin: bool) -> dict[str, Any]:
    e: dict[str, Any] = {"code": code, "message": message}
    if is_admin and sql:
        e["details"] = sql
    return {"status": "error", "results": [], "error": e}


def _check_params(params: list[Any]) -> None:
    if len(params) > MAX_PARAMS:
        raise SqlFailure(
            f"Parameter count exceeded: maximum {MAX_PARAMS} parameters allowed, got {len(params)}",
            preserve=False,
        )
    for i, v in enumerate(params):
        # kalamdb-commons estimate_scalar_value_size: a string costs 24 bytes + its length, NULL 1, scalars 8
        size = 24 + len(v.encode()) if isinstance(v, str) else 1 if v is None else 8
        if size > MAX_PARAM_SIZE_BYTES:
            raise SqlFailure(
                f"Parameter size exceeded: parameter at index {i} is {size} bytes "
                f"(max {MAX_PARAM_SIZE_BYTES} bytes)",
                preserve=False,
            )


class Engine:
    """The KalamDB-compatible database behind the HTTP and WebSocket routes."""

    def __init__(
        self,
        data_dir: str | Path,
        root_password: str | None = None,
        jwt_secret: str = "kalammodel-test-secret-at-least-32-characters",
        flush_delay_ms: int = 0,
        default_query_limit: int = 1000,
        max_query_limit: int = 100000,
        flush_default_row_limit: int = 10000,
    ):
        self.data_dir = Path(data_dir).absolute()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.jwt_secret = jwt_secret
        self.lock = threading.RLock()
        self.store = HotStore(self.data_dir / "kalammodel.sqlite3")
        self.rows = Rows(self.store)
        self.job_log = JobLog(self.store)
        self.catalog = Catalog(self.store, self.rows, self.job_log, self.data_dir)
        self.accounts = Accounts(self.store, self.lock, jwt_secret)
        self.flusher = Flusher(
            self.lock, self.catalog, self.rows, self.job_log, flush_delay_ms, flush_default_row_limit
        )
        frames = Frames()
        sources = Sources(self.catalog, self.accounts, self.job_log)
        self.selector = Selector(self.catalog, self.rows, frames, sources, default_query_limit, max_query_limit)
        self.writer = Writer(self.catalog, self.rows, frames)
        self.hooks = LiveHooks(self.lock, self.catalog, self.rows, self.accounts)
        # the parts' collections, under the names tests and routes read
        self.namespaces = self.catalog.namespaces
        self.tables = self.catalog.tables
        self.storages = self.catalog.storages
        self.users = self.accounts.users
        self.jobs = self.job_log.jobs
        self.scopes = self.rows.scopes
        self._tree_handlers: dict[str, _TreeHandler] = {
            "select": self.selector.select,
            "insert": self.writer.insert,
            "update": self.writer.update,
            "delete": self.writer.delete,
        }
        c, a, f = self.catalog, self.accounts, self.flusher
        self._text_handlers: dict[str, _TextHandler] = {
            "create_namespace": c.create_namespace,
            "drop_namespace": c.drop_namespace,
            "create_table": c.create_table,
            "drop_table": c.drop_table,
            "alter_add": c.alter_add,
            "alter_drop": c.alter_drop,
            "alter_access": c.alter_access,
            "create_storage": c.create_storage,
            "drop_storage": c.drop_storage,
            "create_user": a.create_user,
            "alter_user": a.alter_user,
            "drop_user": a.drop_user,
            "flush_table": f.flush_table,
            "flush_all": f.flush_all,
        }
        self.job_log.load()
        self.catalog.load()
        self.accounts.load(root_password)
        self.rows.load(self.tables)

    def close(self) -> None:
        self.flusher.close()
        with self.lock:
            self.store.close()

    # ------------------------------------------------------------------ settings of the parts
    @property
    def default_query_limit(self) -> int:
        return self.selector.default_query_limit

    @property
    def max_query_limit(self) -> int:
        return self.selector.max_query_limit

    @property
    def flush_default_row_limit(self) -> int:
        return self.flusher.flush_default_row_limit

    @flush_default_row_limit.setter
    def flush_default_row_limit(self, value: int) -> None:
        self.flusher.flush_default_row_limit = value

    @property
    def flush_delay_ms(self) -> int:
        return self.flusher.flush_delay_ms

    # ------------------------------------------------------------------ engine hooks (docs/ARCHITECTURE.md)
    def verify_token(self, token: str) -> Principal:
        """The principal of a bearer access token; raises TokenError (see ``Accounts.verify_token``)."""
        return self.hooks.verify_token(token)

    def plan_subscription(self, principal: Principal, sql: str) -> LivePlan:
        """Validate a live query (§10.5); raises LiveError with a §10.4 code."""
        return self.hooks.plan_subscription(principal, sql)

    def live_rows(self, plan: LivePlan) -> list[dict[str, Any]]:
        """Visible rows of the plan's scope (TTL applied, no tombstones), full dicts, ascending ``_seq``."""
        return self.hooks.live_rows(plan)

    def add_change_listener(self, callback: Callable[[ChangeEvent], None]) -> None:
        """Call ``callback(ChangeEvent)`` synchronously after each committed row change (one per row)."""
        self.hooks.add_change_listener(callback)

    def remove_change_listener(self, callback: Callable[[ChangeEvent], None]) -> None:
        self.hooks.remove_change_listener(callback)

    # ------------------------------------------------------------------ auth routes
    def verify_refresh(self, token: str) -> dict[str, Any]:
        return self.accounts.verify_refresh(token)

    def login(self, user: str, password: str) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
        """(status, error body or {}, user doc on success)."""
        return self.accounts.login(user, password)

    def needs_setup(self) -> bool:
        return self.accounts.needs_setup()

    def setup(
        self, user: str, password: str, root_password: str, email: str | None
    ) -> tuple[int, dict[str, Any]]:
        return self.accounts.setup(user, password, root_password, email)

    def user_json(self, u: dict[str, Any]) -> dict[str, Any]:
        return self.accounts.user_json(u)

    # ------------------------------------------------------------------ rows and flushing
    def next_seq(self) -> int:
        return self.rows.next_seq()

    def row_dict(self, table: Table, v: Version, deleted: bool | None = None) -> dict[str, Any]:
        return self.rows.row_dict(table, v, deleted)

    def scope_dir(self, table: Table, owner: str) -> Path:
        return self.catalog.scope_dir(table, owner)

    def flush_threshold(self, table: Table) -> int | None:
        """Hot rows that trigger an automatic flush of ``table``; None when it is never auto-flushed."""
        return self.flusher.flush_threshold(table)

    def hot_row_count(self, table: Table) -> int:
        """Hot row versions of ``table`` over all its scopes (what KalamDB's pre-validation counts)."""
        return self.flusher.hot_row_count(table)

    def auto_flush(self) -> list[str]:
        """One automatic-flush pass (§7.4); the new job ids (see ``Flusher.auto_flush``)."""
        return self.flusher.auto_flush()

    def start_flush_scheduler(self, interval_seconds: float) -> None:
        """Run ``auto_flush`` every ``interval_seconds`` on a daemon thread until ``close``."""
        self.flusher.start_scheduler(interval_seconds)

    def wait_idle(self, timeout: float = 30.0) -> None:
        self.flusher.wait_idle(timeout)

    # ------------------------------------------------------------------ request
    def execute_request(
        self, principal: Principal, sql: str, params: list[Any], namespace: str | None
    ) -> tuple[int, dict[str, Any]]:
        """Run one ``/v1/api/sql`` request; returns (HTTP status, body without ``took``)."""
        is_admin = principal.role in ADMIN
        stmts = self._parse(sql, params, is_admin)
        if isinstance(stmts, tuple):
            return stmts
        ns = (namespace or "default").lower()
        results: list[dict[str, Any]] = []
        counts = {"insert": 0, "update": 0, "delete": 0}
        with self.lock:
            failed = self._run_all(stmts, principal, ns, params, results, counts)
        if failed is not None:
            return failed
        batch = len(stmts) > 1
        for kind, word in _DML_WORDS:
            if batch and counts[kind]:
                results.append(
                    {
                        "row_count": counts[kind],
                        "message": f"{word} {counts[kind]} row(s)",
                        "as_user": principal.user_id,
                    }
                )
        body: dict[str, Any] = {"status": "success", "results": results}
        if len(stmts) == 1 and stmts[0].kind == "select":
            body["error"] = None
        return 200, body

    def _parse(self, sql: str, params: list[Any], is_admin: bool) -> list[Stmt] | tuple[int, dict[str, Any]]:
        """The request's statements, or the error answer when the batch cannot run at all."""
        texts = split_statements(sql)
        if not texts:
            return 400, _err("EMPTY_SQL", "No SQL statements provided", sql, is_admin)
        if params and len(texts) > 1:
            return 400, _err(
                "PARAMS_WITH_BATCH", "Parameters not supported with multi-statement batches", None, is_admin
            )
        stmts: list[Stmt] = []
        for t in texts:
            try:
                st = parse_statement(t)
            except SqlFailure as f:
                msg = (
                    f.message
                    if is_admin or f.code == "INVALID_INPUT"
                    else "SQL statement is invalid or not allowed"
                )
                return f.status, _err(f.code, msg, None, is_admin)  # KalamDB sends no details here
            stmts.append(st)
        return stmts

    def _run_all(
        self,
        stmts: list[Stmt],
        principal: Principal,
        ns: str,
        params: list[Any],
        results: list[dict[str, Any]],
        counts: dict[str, int],
    ) -> tuple[int, dict[str, Any]] | None:
        """Run the statements in order under the lock (results and DML counts collected); the error answer of
        the first failing statement, else None."""
        is_admin = principal.role in ADMIN
        batch = len(stmts) > 1
        in_tx = False
        tx_id = ""
        for i, st in enumerate(stmts, 1):
            try:
                if st.kind in ("begin", "commit", "rollback"):
                    in_tx, tx_id = self._tx_control(st.kind, in_tx, tx_id, principal, results)
                    continue
                if not in_tx:
                    self.rows.begin()
                res = self._run(st, principal, ns, params, in_tx)
                if not in_tx:
                    self.rows.commit()
            except SqlFailure as f:
                self.rows.rollback()
                msg = f.message if f.bare else f"Statement {i} failed: {f.message}"
                if not is_admin and not f.preserve:
                    msg = REDACTED.get(f.code, "SQL statement failed")
                return f.status, _err(f.code, msg, None if f.bare else st.text, is_admin)
            except Exception as e:  # an engine bug must still answer with an envelope
                self.rows.rollback()
                msg = f"Statement {i} failed: {type(e).__name__}: {e}" if is_admin else "SQL statement failed"
                return 400, _err("SQL_EXECUTION_ERROR", msg, st.text, is_admin)
            if batch and st.kind in counts:
                counts[st.kind] += res["row_count"]
            else:
                results.append(res)
        if in_tx:
            self.rows.rollback()
            return 400, _err(
                "SQL_EXECUTION_ERROR",
                "Request completed with an open explicit transaction; rolled back automatically",
                None,
                is_admin,
            )
        return None

    def _tx_control(
        self, kind: str, in_tx: bool, tx_id: str, principal: Principal, results: list[dict[str, Any]]
    ) -> tuple[bool, str]:
        """BEGIN, COMMIT or ROLLBACK of a request-scoped transaction; the new (in_tx, tx_id)."""
        if kind == "begin":
            if in_tx:
                raise SqlFailure("A transaction is already open in this request")
            tx_id = uuid.uuid4().hex[:16]
            self.rows.begin()
            results.append(
                {"row_count": 0, "message": f"Transaction started ({tx_id})", "as_user": principal.user_id}
            )
            return True, tx_id
        if not in_tx:
            raise SqlFailure(f"No open transaction to {kind.upper()}")
        if kind == "commit":
            self.rows.commit()
        else:
            self.rows.rollback()
        word = "committed" if kind == "commit" else "rolled back"
        results.append(
            {"row_count": 0, "message": f"Transaction {word} ({tx_id})", "as_user": principal.user_id}
        )
        return False, tx_id

    def _run(self, st: Stmt, principal: Principal, ns: str, params: list[Any], in_tx: bool) -> dict[str, Any]:
        ctx = Ctx(principal, principal.user_id, principal.role, principal.user_id, False, ns)
        if st.execute_as is not None:
            ctx = self.accounts.impersonate(principal, st.execute_as, ns)
        if in_tx and st.kind not in ("select", "insert", "update", "delete"):
            raise SqlFailure("DDL statements are not supported inside explicit transactions")
        _check_params(params)
        if "tree" in st.args:  # the parser gives a tree to SELECT/INSERT/UPDATE/DELETE only
            tree = substitute_params(st.args["tree"], params)
            res = self._tree_handlers[st.kind](ctx, tree, in_tx)
        else:
            if params:
                raise SqlFailure("Parameters are only supported for SELECT, INSERT, UPDATE and DELETE")
            res = self._text_handlers[st.kind](ctx, st.args["m"])
        res.setdefault("as_user", ctx.as_user)
        return res
