"""The engine: catalog, row versions (hot SQLite + cold Parquet), SQL execution, flush jobs, live-query hooks.

One ``Engine`` per data directory. Every request runs under ``Engine.lock`` (requests are serialised; the flush
worker takes the lock only to snapshot and to commit), so a reader never sees half a statement. Row versions are
kept in memory (hot: newest version per PK plus every hot ``_seq``; cold: newest flushed version per PK) and made
durable in SQLite before a statement is acknowledged. See ``_storage`` for the on-disk layout and for how this
server deliberately differs from KalamDB on tombstones at flush.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import datafusion
import pyarrow as pa
import sqlglot
from sqlglot import exp

from . import _faults
from ._auth import TokenError, check_password, decode_token, hash_password
from ._sql import Stmt, parse_sql, parse_statement, split_statements, substitute_params
from ._storage import HotStore, Version, read_scope_cold, write_segment
from ._types import ChangeEvent, LiveError, LivePlan, Principal
from ._values import (
    SqlFailure,
    arrow_type,
    canonical,
    cell,
    data_type_for_arrow,
    denied,
    parse_type,
    to_arrow_value,
)

__all__ = ["ChangeEvent", "Engine", "LiveError", "LivePlan", "Principal", "SqlFailure"]

log = logging.getLogger("kalammodel.server")

EPOCH_MS = 1704067200000  # 2024-01-01T00:00:00Z, the snowflake epoch (§4.3)
ADMIN = ("dba", "system")
RESERVED_NAMESPACES = {
    "system",
    "sys",
    "root",
    "kalamdb",
    "kalam",
    "main",
    "default",
    "sql",
    "admin",
    "internal",
    "information_schema",
    "pg_catalog",
    "datafusion",
}
RESERVED_COLUMNS = {
    "_seq",
    "_deleted",
    "_id",
    "_row_id",
    "_rowid",
    "_key",
    "_updated",
    "_created",
    "_timestamp",
    "_version",
    "_hash",
}
ROLE_WORDS = {
    "dba": "dba",
    "admin": "dba",
    "service": "service",
    "developer": "service",
    "analyst": "service",
    "user": "user",
    "viewer": "user",
    "readonly": "user",
    "system": "system",
}
KIND_WORD = {"USER": "User", "SHARED": "Shared", "STREAM": "Stream"}
_IDENT_RX = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_SQL_KEYWORDS = {
    "select",
    "from",
    "where",
    "table",
    "insert",
    "update",
    "delete",
    "create",
    "drop",
    "alter",
    "and",
    "or",
    "not",
    "null",
    "primary",
    "key",
    "order",
    "by",
    "group",
    "limit",
    "offset",
    "join",
    "on",
    "as",
    "in",
    "is",
    "values",
    "set",
    "into",
    "user",
    "with",
    "default",
    "index",
    "union",
    "all",
}
SYSTEM_TABLES = ("users", "jobs", "tables", "namespaces", "storages", "cluster")
MAX_PARAMS = 50  # core:sql/executor/parameter_binding.rs
MAX_PARAM_SIZE_BYTES = 512 * 1024


def now_ms() -> int:
    return int(time.time() * 1000)


def rfc3339(ms: int | None) -> str | None:
    if ms is None:
        return None
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).isoformat().replace("+00:00", "Z")


@attrs.define
class Column:
    id: str
    name: str
    data_type: Any
    nullable: bool = True
    pk: bool = False
    default: str | None = None  # SQL text of the DEFAULT expression
    system: bool = False

    def flags(self) -> list[str]:
        if self.pk:
            return ["pk", "nn", "uq"]
        return [] if self.nullable else ["nn"]

    def field(self, index: int) -> dict[str, Any]:
        f: dict[str, Any] = {"name": self.name, "data_type": self.data_type, "index": index}
        if self.flags():
            f["flags"] = self.flags()
        return f


SEQ_COL = Column("_seq", "_seq", "BigInt", nullable=False, system=True)
DEL_COL = Column("_deleted", "_deleted", "Boolean", nullable=False, system=True)


@attrs.define
class Table:
    namespace: str
    name: str
    kind: str  # USER | SHARED | STREAM
    columns: list[Column]  # in ordinal order, incl. _seq/_deleted
    next_column_id: int
    schema_version: int = 1
    access_level: str | None = None
    storage_id: str = "local"
    ttl_seconds: int | None = None
    flush_policy: str | None = None
    use_user_storage: bool = False
    types_by_id: dict[str, Any] = attrs.field(factory=dict)  # every column id ever (incl. dropped)
    dropped: dict[str, str] = attrs.field(factory=dict)  # dropped column id -> name
    created_at: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}.{self.name}"

    @property
    def pk(self) -> Column | None:
        return next((c for c in self.columns if c.pk), None)

    def col(self, name: str) -> Column | None:
        name = name.lower()
        return next((c for c in self.columns if c.name == name), None)

    def user_columns(self) -> list[Column]:
        return [c for c in self.columns if not c.system]

    def to_doc(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Table:
        d = dict(d)
        d["columns"] = [Column(**c) for c in d["columns"]]
        return cls(**d)


@attrs.define
class Scope:
    """The rows of one table for one owner ('' for SHARED)."""

    hot: dict[str, Version] = attrs.field(factory=dict)  # pk key -> newest hot version
    hot_seqs: dict[int, str] = attrs.field(factory=dict)  # every hot version's seq -> pk key
    cold: dict[str, Version] = attrs.field(factory=dict)  # pk key -> newest cold version
    flushing: set[str] = attrs.field(factory=set)  # pks being moved by a running flush
    lost_seqs: set[int] = attrs.field(factory=set)  # fault cold_update_lost
    counter: int = 0
    cache: Any = None  # (counter, schema_version, include_deleted, pa.Table)


@attrs.frozen
class Ctx:
    """Who runs a statement: the token's principal, the effective owner of USER rows and the effective role."""

    principal: Principal
    owner: str
    role: str
    as_user: str
    impersonated: bool
    namespace: str


def _ident_ok(name: str) -> bool:
    return bool(_IDENT_RX.fullmatch(name)) and name.lower() not in _SQL_KEYWORDS


def _unq(s: str | None) -> str | None:
    if s is None:
        return None
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1].replace(s[0] * 2, s[0])
    return s


def _pk_key(v: Any) -> str:
    return json.dumps(v)


def _mentions(tree: exp.Expression | None, column: str) -> bool:
    return tree is not None and any(c.name.lower() == column for c in tree.find_all(exp.Column))


def _has_range(tree: exp.Expression | None) -> bool:
    return tree is not None and any(
        True for _ in tree.find_all(exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between)
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
        self.flush_delay_ms = flush_delay_ms
        self.default_query_limit = default_query_limit
        self.max_query_limit = max_query_limit
        self.flush_default_row_limit = flush_default_row_limit
        self.lock = threading.RLock()
        self.store = HotStore(self.data_dir / "kalammodel.sqlite3")
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.tables: dict[str, Table] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.storages: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.scopes: dict[tuple[str, str], Scope] = {}
        self.listeners: list[Callable[[ChangeEvent], None]] = []
        self._last_seq = 0
        self._undo: list[Callable[[], None]] | None = None
        self._events: list[ChangeEvent] = []
        self._df = datafusion.SessionContext()
        self._reg = 0
        self._threads: list[threading.Thread] = []
        self._tokens: dict[str, tuple[str, Any, float]] = {}  # verified access token -> (sub, role, exp)
        self._stop = threading.Event()
        self._scheduler: threading.Thread | None = None
        self._load(root_password)

    # ------------------------------------------------------------------ boot
    def _load(self, root_password: str | None) -> None:
        s = self.store
        for k, d in s.docs("namespace"):
            self.namespaces[k] = d
        for k, d in s.docs("table"):
            self.tables[k] = Table.from_doc(d)
        for k, d in s.docs("user"):
            self.users[k] = d
        for k, d in s.docs("storage"):
            self.storages[k] = d
        for k, d in s.docs("job"):
            if d["status"] in ("new", "queued", "running"):
                d.update(
                    status="failed",
                    message="Server restarted while the job was pending; hot rows kept",
                    finished_at=now_ms(),
                    updated_at=now_ms(),
                )
                s.put_doc("job", k, d)
            self.jobs[k] = d
        t = now_ms()
        if "default" not in self.namespaces:
            self.namespaces["default"] = {"created_at": t}
            s.put_doc("namespace", "default", self.namespaces["default"])
        if "local" not in self.storages:
            self.storages["local"] = {
                "storage_id": "local",
                "storage_name": "Local Storage",
                "storage_type": "filesystem",
                "base_directory": str(self.data_dir / "storage"),
                "shared_tables_template": "{namespace}/{tableName}",
                "user_tables_template": "{namespace}/{tableName}/{userId}",
                "created_at": t,
            }
            s.put_doc("storage", "local", self.storages["local"])
        if "root" not in self.users:
            self.users["root"] = self._user_doc("root", "system", root_password or "", None)
            s.put_doc("user", "root", self.users["root"])
        for tbl, owner, pk, v in s.versions():
            sc = self._scope(tbl, owner)
            sc.hot[pk] = v
            sc.hot_seqs[v.seq] = pk
            self._last_seq = max(self._last_seq, v.seq)
        for key, d in s.docs("scope"):
            tkey, owner = key.split("|", 1)
            table = self.tables.get(tkey)
            if table is None:
                continue
            sc = self._scope(tkey, owner)
            for v in read_scope_cold(Path(d["dir"]), table.types_by_id).values():
                pk = self._pk_of(table, v)
                if pk not in sc.cold or sc.cold[pk].seq < v.seq:
                    sc.cold[pk] = v
                self._last_seq = max(self._last_seq, v.seq)

    def _user_doc(self, uid: str, role: str, password: str | None, email: str | None) -> dict[str, Any]:
        t = now_ms()
        return {
            "user_id": uid,
            "role": role,
            "email": email,
            "auth_type": "password" if password else "internal",
            "password_hash": hash_password(password) if password else None,
            "created_at": t,
            "updated_at": t,
            "deleted_at": None,
            "failed_login_attempts": 0,
            "locked_until": None,
            "last_login_at": None,
        }

    def close(self) -> None:
        self._stop.set()
        if self._scheduler is not None:
            self._scheduler.join(timeout=10)
        for t in self._threads:
            t.join(timeout=10)
        with self.lock:
            self.store.close()

    # ------------------------------------------------------------------ helpers
    def _scope(self, tkey: str, owner: str) -> Scope:
        sc = self.scopes.get((tkey, owner))
        if sc is None:
            sc = self.scopes[(tkey, owner)] = Scope()
        return sc

    def _pk_of(self, table: Table, v: Version) -> str:
        pk = table.pk
        return _pk_key(v.vals.get(pk.id)) if pk is not None and table.kind != "STREAM" else str(v.seq)

    def next_seq(self) -> int:
        s = (now_ms() - EPOCH_MS) << 22
        if s <= self._last_seq:
            s = self._last_seq + 1
        self._last_seq = s
        return s

    def _value(self, table: Table, v: Version, c: Column) -> Any:
        if c.id == "_seq":
            return v.seq
        if c.id == "_deleted":
            return v.deleted
        val = v.vals.get(c.id)
        if val is None and table.dropped and _faults.active("readd_column_old_values"):
            for old_id, old_name in table.dropped.items():
                if old_name == c.name and v.vals.get(old_id) is not None:
                    return v.vals[old_id]
        return val

    def row_dict(self, table: Table, v: Version, deleted: bool | None = None) -> dict[str, Any]:
        d = {c.name: self._value(table, v, c) for c in table.columns}
        if deleted is not None:
            d["_deleted"] = deleted
        return d

    def _table(self, name: str, namespace: str) -> Table:
        ns, _, t = name.rpartition(".")
        key = f"{(ns or namespace).lower()}.{t.lower()}"
        table = self.tables.get(key)
        if table is None:
            raise SqlFailure(f"Table '{key}' not found", preserve=False)
        return table

    def _check_shared(self, table: Table, ctx: Ctx, write: bool) -> None:
        if table.kind != "SHARED":
            return
        if ctx.impersonated and write:
            # api:http/sql/execution_paths.rs checks this before the statement runs: no "Statement N failed:"
            # prefix, no details, redacted for non-admins; an impersonated SELECT runs with role user instead.
            raise SqlFailure(
                f"EXECUTE AS USER is not allowed on SHARED tables (table '{table.namespace}:{table.name}'). "
                "AS USER impersonation is only supported for USER and STREAM tables.",
                preserve=False,
                bare=True,
            )
        level = (table.access_level or "private").lower()
        role = ctx.role
        if level == "public":
            ok = True if not write else role in ("service", "dba", "system")
        elif level == "dba":
            ok = role in ADMIN
        else:
            ok = role in ("service", "dba", "system")
            if write and role == "user" and _faults.active("user_writes_private_shared"):
                ok = True
        if not ok:
            raise denied(
                f"Access denied: Role '{role.capitalize()}' cannot access table '{table.key}'. "
                f"Shared table access denied (access_level={level.capitalize()})"
            )

    def _owner_for(self, table: Table, ctx: Ctx) -> str:
        return "" if table.kind == "SHARED" else ctx.owner

    # ------------------------------------------------------------------ visible rows
    def _visible(self, table: Table, owner: str, include_deleted: bool = False) -> list[Version]:
        sc = self.scopes.get((table.key, owner))
        if sc is None:
            return []
        keeps_hot = _faults.active("flush_keeps_hot")
        gap = _faults.active("flush_read_gap") and bool(sc.flushing)
        out: list[Version] = []
        for pk, v in sc.cold.items():
            h = sc.hot.get(pk)
            if h is not None and h.seq > v.seq:
                continue
            if keeps_hot and h is not None and h.seq == v.seq:
                out.append(v)  # the duplicate of the planted defect
                continue
            if h is not None and h.seq == v.seq:
                continue
            if not v.deleted:
                out.append(v)
        for pk, v in sc.hot.items():
            c = sc.cold.get(pk)
            if c is not None and c.seq > v.seq:
                continue
            if gap and pk in sc.flushing:
                continue
            if v.deleted and not include_deleted:
                continue
            out.append(v)
        if table.kind == "STREAM" and table.ttl_seconds and not _faults.active("stream_never_expires"):
            limit = now_ms() - EPOCH_MS - table.ttl_seconds * 1000
            out = [v for v in out if (v.seq >> 22) > limit]
        out.sort(key=lambda v: v.seq)
        return out

    def _live_version(self, table: Table, owner: str, pk: str) -> Version | None:
        sc = self.scopes.get((table.key, owner))
        if sc is None:
            return None
        h, c = sc.hot.get(pk), sc.cold.get(pk)
        v = h if c is None or (h is not None and h.seq > c.seq) else c
        if v is None or v.deleted:
            return None
        if table.kind == "STREAM" and table.ttl_seconds and not _faults.active("stream_never_expires"):
            if (v.seq >> 22) <= now_ms() - EPOCH_MS - table.ttl_seconds * 1000:
                return None
        return v

    def _arrow(self, table: Table, versions: list[Version]) -> pa.Table:
        arrays, fields = [], []
        for c in table.columns:
            at = arrow_type(c.data_type)
            fields.append(pa.field(c.name, at))
            arrays.append(
                pa.array([to_arrow_value(c.data_type, self._value(table, v, c)) for v in versions], at)
            )
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

    def _scope_arrow(self, table: Table, owners: list[str], include_deleted: bool) -> pa.Table:
        if len(owners) == 1 and table.kind != "STREAM" and not _faults.enabled():
            sc = self._scope(table.key, owners[0])
            key = (sc.counter, table.schema_version, include_deleted)
            if sc.cache is not None and sc.cache[0] == key:
                return sc.cache[1]
            t = self._arrow(table, self._visible(table, owners[0], include_deleted))
            sc.cache = (key, t)
            return t
        versions: list[Version] = []
        for o in owners:
            versions.extend(self._visible(table, o, include_deleted))
        return self._arrow(table, versions)

    # ------------------------------------------------------------------ writes
    def _put(self, table: Table, owner: str, pk: str, v: Version, event: ChangeEvent | None) -> None:
        sc = self._scope(table.key, owner)
        prev = sc.hot.get(pk)
        self.store.put_version(table.key, owner, pk, v)
        sc.hot[pk] = v
        sc.hot_seqs[v.seq] = pk
        sc.counter += 1

        def undo() -> None:
            sc.hot_seqs.pop(v.seq, None)
            if prev is None:
                sc.hot.pop(pk, None)
            else:
                sc.hot[pk] = prev
            sc.lost_seqs.discard(v.seq)
            sc.counter += 1

        if self._undo is not None:
            self._undo.append(undo)
        if event is not None:
            self._events.append(event)

    def _hard_delete(self, table: Table, owner: str, pk: str, event: ChangeEvent) -> None:
        sc = self._scope(table.key, owner)
        seqs = [s for s, p in sc.hot_seqs.items() if p == pk]
        self.store.delete_versions(seqs)
        prev = sc.hot.pop(pk, None)
        for s in seqs:
            sc.hot_seqs.pop(s, None)
        sc.counter += 1

        def undo() -> None:
            for s in seqs:
                sc.hot_seqs[s] = pk
            if prev is not None:
                sc.hot[pk] = prev
            sc.counter += 1

        if self._undo is not None:
            self._undo.append(undo)
        self._events.append(event)

    def _emit(self, events: list[ChangeEvent]) -> None:
        for e in events:
            for cb in list(self.listeners):
                try:
                    cb(e)
                except Exception:  # a broken listener must not fail the write
                    pass

    # ------------------------------------------------------------------ auth
    def verify_token(self, token: str) -> Principal:
        """The principal of a bearer access token; raises TokenError (code INVALID_CREDENTIALS/TOKEN_EXPIRED).

        A token whose signature was verified once is remembered until it expires (decoding costs as much as a
        small statement); the user's existence and current role are checked on every call. Runs without the
        engine lock (single dict reads), so the event loop never waits for a running statement."""
        hit = self._tokens.get(token)
        if hit is not None and time.time() <= hit[2] + 60:  # the same 60 s leeway as decode_token
            sub, role = hit[0], hit[1]
        else:
            claims = decode_token(self.jwt_secret, token, "access")
            sub, role = str(claims["sub"]), claims.get("role")
            if len(self._tokens) >= 10000:
                self._tokens.clear()
            self._tokens[token] = (sub, role, float(claims["exp"]))
        u = self.users.get(sub)
        if u is None or u["deleted_at"] is not None or role != u["role"]:
            raise TokenError("INVALID_CREDENTIALS", "Invalid credentials")
        return Principal(u["user_id"], u["role"])

    def verify_refresh(self, token: str) -> dict[str, Any]:
        claims = decode_token(self.jwt_secret, token, "refresh")
        with self.lock:
            u = self.users.get(str(claims["sub"]))
            if u is None or u["deleted_at"] is not None or claims.get("role") != u["role"]:
                raise TokenError("INVALID_CREDENTIALS", "Invalid credentials")
            return u

    def login(self, user: str, password: str) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
        """(status, error body or {}, user doc on success)."""
        with self.lock:
            u = self.users.get(user)
            if u is None or u["deleted_at"] is not None:
                return 401, {"error": "unauthorized", "message": "Invalid credentials"}, None
            t = now_ms()
            if u.get("locked_until") and u["locked_until"] > t:
                return (
                    401,
                    {
                        "error": "account_locked",
                        "message": "Account is locked due to too many failed "
                        "login attempts. Try again later.",
                    },
                    None,
                )
            if u["user_id"] == "root" and not u["password_hash"] and password == "":
                return (
                    428,
                    {
                        "error": "setup_required",
                        "message": "Server requires initial setup. Root password is not configured.",
                    },
                    None,
                )
            if not check_password(password, u["password_hash"]):
                u["failed_login_attempts"] = u.get("failed_login_attempts", 0) + 1
                if u["failed_login_attempts"] >= 5:
                    u["locked_until"] = t + 15 * 60 * 1000
                    u["failed_login_attempts"] = 0
                self.store.put_doc("user", user, u)
                return 401, {"error": "unauthorized", "message": "Invalid credentials"}, None
            u["failed_login_attempts"] = 0
            u["locked_until"] = None
            u["last_login_at"] = t
            self.store.put_doc("user", user, u)
            return 200, {}, u

    def needs_setup(self) -> bool:
        with self.lock:
            return not self.users["root"]["password_hash"]

    def setup(
        self, user: str, password: str, root_password: str, email: str | None
    ) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if not self.needs_setup():
                return 409, {"error": "already_configured", "message": "Server is already configured"}
            for p in (password, root_password):
                if not 8 <= len(p) <= 72 or p.lower() in ("password", "12345678", "password123", "qwerty123"):
                    return 400, {
                        "error": "weak_password",
                        "message": "Password must be 8-72 characters and not a common password",
                    }
            if not user or user == "root" or any(x in user for x in ("..", "/", "\\", "\0")):
                return 400, {"error": "invalid_user", "message": f"Invalid user name '{user}'"}
            if user in self.users:
                return 409, {"error": "user_exists", "message": f"User '{user}' already exists"}
            root = self.users["root"]
            root["password_hash"] = hash_password(root_password)
            root["auth_type"] = "password"
            root["updated_at"] = now_ms()
            self.store.put_doc("user", "root", root)
            self.users[user] = self._user_doc(user, "dba", password, email)
            self.store.put_doc("user", user, self.users[user])
            return 200, {
                "user": self.user_json(self.users[user]),
                "message": "Server setup complete. Root password set and DBA user created. Please log in.",
            }

    def user_json(self, u: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": u["user_id"],
            "role": u["role"],
            "email": u["email"],
            "created_at": rfc3339(u["created_at"]),
            "updated_at": rfc3339(u["updated_at"]),
        }

    # ------------------------------------------------------------------ request
    def execute_request(
        self, principal: Principal, sql: str, params: list[Any], namespace: str | None
    ) -> tuple[int, dict[str, Any]]:
        """Run one ``/v1/api/sql`` request; returns (HTTP status, body without ``took``)."""
        is_admin = principal.role in ADMIN
        texts = split_statements(sql)
        if not texts:
            return 400, self._err("EMPTY_SQL", "No SQL statements provided", sql, is_admin)
        if params and len(texts) > 1:
            return 400, self._err(
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
                return f.status, self._err(f.code, msg, None, is_admin)  # KalamDB sends no details here
            stmts.append(st)
        ns = (namespace or "default").lower()
        results: list[dict[str, Any]] = []
        counts = {"insert": 0, "update": 0, "delete": 0}
        batch = len(stmts) > 1
        with self.lock:
            in_tx = False
            tx_id = ""
            for i, st in enumerate(stmts, 1):
                try:
                    if st.kind == "begin":
                        if in_tx:
                            raise SqlFailure("A transaction is already open in this request")
                        in_tx, tx_id = True, uuid.uuid4().hex[:16]
                        self.store.begin()
                        self._undo, self._events = [], []
                        results.append(
                            {
                                "row_count": 0,
                                "message": f"Transaction started ({tx_id})",
                                "as_user": principal.user_id,
                            }
                        )
                        continue
                    if st.kind in ("commit", "rollback"):
                        if not in_tx:
                            raise SqlFailure(f"No open transaction to {st.kind.upper()}")
                        if st.kind == "commit":
                            self._commit()
                        else:
                            self._rollback()
                        in_tx = False
                        word = "committed" if st.kind == "commit" else "rolled back"
                        results.append(
                            {
                                "row_count": 0,
                                "message": f"Transaction {word} ({tx_id})",
                                "as_user": principal.user_id,
                            }
                        )
                        continue
                    if not in_tx:
                        self.store.begin()
                        self._undo, self._events = [], []
                    res = self._run(st, principal, ns, params, in_tx)
                    if not in_tx:
                        self._commit()
                except SqlFailure as f:
                    self._rollback()
                    msg = f.message if f.bare else f"Statement {i} failed: {f.message}"
                    if not is_admin and not f.preserve:
                        msg = REDACTED.get(f.code, "SQL statement failed")
                    return f.status, self._err(f.code, msg, None if f.bare else st.text, is_admin)
                except Exception as e:  # an engine bug must still answer with an envelope
                    self._rollback()
                    msg = (
                        f"Statement {i} failed: {type(e).__name__}: {e}"
                        if is_admin
                        else "SQL statement failed"
                    )
                    return 400, self._err("SQL_EXECUTION_ERROR", msg, st.text, is_admin)
                if batch and st.kind in counts:
                    counts[st.kind] += res["row_count"]
                else:
                    results.append(res)
            if in_tx:
                self._rollback()
                return 400, self._err(
                    "SQL_EXECUTION_ERROR",
                    "Request completed with an open explicit transaction; rolled back automatically",
                    None,
                    is_admin,
                )
        for kind, word in (("insert", "Inserted"), ("update", "Updated"), ("delete", "Deleted")):
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

    def _commit(self) -> None:
        self.store.commit()
        events, self._events, self._undo = self._events, [], None
        self._emit(events)

    def _rollback(self) -> None:
        self.store.rollback()
        if self._undo:
            for u in reversed(self._undo):
                u()
        self._undo, self._events = None, []

    @staticmethod
    def _err(code: str, message: str, sql: str | None, is_admin: bool) -> dict[str, Any]:
        e: dict[str, Any] = {"code": code, "message": message}
        if is_admin and sql:
            e["details"] = sql
        return {"status": "error", "results": [], "error": e}

    def _run(self, st: Stmt, principal: Principal, ns: str, params: list[Any], in_tx: bool) -> dict[str, Any]:
        ctx = Ctx(principal, principal.user_id, principal.role, principal.user_id, False, ns)
        if st.execute_as is not None:
            ctx = self._impersonate(principal, st.execute_as, ns)
        if in_tx and st.kind not in ("select", "insert", "update", "delete"):
            raise SqlFailure("DDL statements are not supported inside explicit transactions")
        handler = getattr(self, f"_do_{st.kind}")
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
        if "tree" in st.args:
            tree = substitute_params(st.args["tree"], params)
            res = handler(ctx, tree, in_tx)
        else:
            if params:
                raise SqlFailure("Parameters are only supported for SELECT, INSERT, UPDATE and DELETE")
            res = handler(ctx, st.args["m"])
        res.setdefault("as_user", ctx.as_user)
        return res

    def _impersonate(self, principal: Principal, target: str, ns: str) -> Ctx:
        if not target or any(x in target for x in ("..", "/", "\\", "\0")):
            raise SqlFailure(f"Invalid user id '{target}' in EXECUTE AS USER", "INVALID_INPUT")
        u = self.users.get(target)
        trole = u["role"] if u is not None and u["deleted_at"] is None else "user"
        allowed = {
            "system": ("system", "dba", "service", "user"),
            "dba": ("dba", "service", "user"),
            "service": ("service", "user"),
            "user": (),
        }[principal.role]
        if not (trole in allowed or target == principal.user_id):
            raise denied(
                f"EXECUTE AS USER is not authorized: role '{principal.role}' cannot act as '{target}' "
                f"(role '{trole}')"
            )
        owner = principal.user_id if _faults.active("execute_as_wrong_partition") else target
        return Ctx(principal, owner, "user", target, True, ns)

    # ------------------------------------------------------------------ SELECT
    def _do_select(self, ctx: Ctx, tree: exp.Expression, in_tx: bool = False) -> dict[str, Any]:
        fast = self._fast_select(ctx, tree)
        if fast is not None:
            return fast
        tree = tree.copy()
        ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
        main: Table | None = None
        system = False
        regs: list[str] = []
        where = tree.args.get("where") if isinstance(tree, exp.Select) else None
        try:
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
                    data = self._system_table(name)
                    system = True
                else:
                    table = self._table(f"{ns}.{name}", ns)
                    self._check_shared(table, ctx, write=False)
                    main = main or table
                    include = _mentions(where, "_deleted")
                    owner = self._owner_for(table, ctx)
                    owners = [owner]
                    if table.kind == "USER" and _faults.active("user_select_leak") and _has_range(where):
                        owners = sorted({o for (k, o) in self.scopes if k == table.key} | {owner})
                    data = self._scope_arrow(table, owners, include)
                self._reg += 1
                reg = f"__kalam_t{self._reg}"
                self._df.register_record_batches(
                    reg, [data.to_batches() or [pa.RecordBatch.from_pylist([], data.schema)]]
                )
                regs.append(reg)
                alias = t.args.get("alias") or exp.TableAlias(this=exp.to_identifier(name))
                t.replace(exp.Table(this=exp.to_identifier(reg), alias=alias))
            if isinstance(tree, exp.Select):
                lim = tree.args.get("limit")
                if lim is None:
                    tree.set(
                        "limit",
                        exp.Limit(
                            expression=exp.Literal.number(min(self.default_query_limit, self.max_query_limit))
                        ),
                    )
                else:
                    try:
                        n = int(lim.expression.name)
                        if n > self.max_query_limit:
                            lim.set("expression", exp.Literal.number(self.max_query_limit))
                    except (AttributeError, ValueError):
                        pass
            try:
                result = self._df.sql(tree.sql(dialect="postgres")).to_arrow_table()
            except Exception as e:
                msg = str(e).strip()
                low = msg.lower()
                keep = any(k in low for k in ("no field named", "not found", "primary key", "already exists"))
                raise SqlFailure(msg.split("\n")[0], preserve=keep) from None
        finally:
            for r in regs:
                self._df.deregister_table(r)
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
        if (
            isinstance(tree, exp.Select)
            and not tree.args.get("order")
            and main is not None
            and not system
            and main.pk is not None
            and main.pk.name in names
        ):
            j = names.index(main.pk.name)
            rows.sort(key=lambda r: (r[j] is None, r[j] if r[j] is not None else 0))
        return self._result(ctx, schema, rows)

    def _result(self, ctx: Ctx, schema: list[dict[str, Any]], rows: list[list[Any]]) -> dict[str, Any]:
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
        table = self.tables.get(f"{t.db.lower()}.{t.name.lower()}")
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
            key = canonical(table.pk.data_type, lit.name if lit.is_string else _num(lit.name), table.pk.name)
        except SqlFailure:
            return None
        cols: list[Column] = []
        for e in tree.expressions:
            if isinstance(e, exp.Star):
                cols.extend(table.columns)
            elif isinstance(e, exp.Column) and not e.table and table.col(e.name) is not None:
                cols.append(table.col(e.name))  # type: ignore[arg-type]
            else:
                return None
        self._check_shared(table, ctx, write=False)
        v = self._live_version(table, self._owner_for(table, ctx), _pk_key(key))
        rows = []
        if v is not None and (lim is None or int(lim.expression.name) > 0):
            rows = [[to_arrow_value(c.data_type, self._value(table, v, c)) for c in cols]]
        schema = [c.field(i) for i, c in enumerate(cols)]
        return self._result(ctx, schema, rows)

    def _system_table(self, name: str) -> pa.Table:
        ts = pa.timestamp("us")
        if name == "users":
            recs = [
                {
                    "user_id": u["user_id"],
                    "username": u["user_id"],
                    "role": u["role"],
                    "email": u["email"],
                    "auth_type": u["auth_type"],
                    "password_hash": u["password_hash"],
                    "created_at": u["created_at"] * 1000,
                    "updated_at": u["updated_at"] * 1000,
                    "deleted_at": u["deleted_at"] * 1000 if u["deleted_at"] else None,
                    "failed_login_attempts": u.get("failed_login_attempts", 0),
                    "locked_until": u["locked_until"] * 1000 if u.get("locked_until") else None,
                }
                for u in self.users.values()
            ]
            schema = pa.schema(
                [
                    ("user_id", pa.string()),
                    ("username", pa.string()),
                    ("role", pa.string()),
                    ("email", pa.string()),
                    ("auth_type", pa.string()),
                    ("password_hash", pa.string()),
                    ("created_at", ts),
                    ("updated_at", ts),
                    ("deleted_at", ts),
                    ("failed_login_attempts", pa.int32()),
                    ("locked_until", ts),
                ]
            )
        elif name == "jobs":
            recs = []
            for j in self.jobs.values():
                r = dict(j)
                for k in ("created_at", "updated_at", "started_at", "finished_at"):
                    r[k] = r[k] * 1000 if r.get(k) else None
                recs.append(r)
            schema = pa.schema(
                [
                    ("job_id", pa.string()),
                    ("job_type", pa.string()),
                    ("status", pa.string()),
                    ("leader_status", pa.string()),
                    ("parameters", pa.string()),
                    ("message", pa.string()),
                    ("exception_trace", pa.string()),
                    ("idempotency_key", pa.string()),
                    ("queue", pa.string()),
                    ("priority", pa.int32()),
                    ("retry_count", pa.int32()),
                    ("max_retries", pa.int32()),
                    ("memory_used", pa.int64()),
                    ("cpu_used", pa.int64()),
                    ("created_at", ts),
                    ("updated_at", ts),
                    ("started_at", ts),
                    ("finished_at", ts),
                    ("node_id", pa.string()),
                    ("leader_node_id", pa.string()),
                ]
            )
        elif name == "tables":
            recs = [
                {
                    "namespace_id": t.namespace,
                    "table_name": t.name,
                    "table_type": t.kind.lower(),
                    "storage_id": None if t.kind == "STREAM" else t.storage_id,
                    "version": t.schema_version,
                    "options": json.dumps(_table_options(t), separators=(",", ":")),
                    "comment": None,
                    "updated_at": t.created_at * 1000,
                    "created_at": t.created_at * 1000,
                }
                for t in self.tables.values()
            ]
            schema = pa.schema(
                [
                    ("namespace_id", pa.string()),
                    ("table_name", pa.string()),
                    ("table_type", pa.string()),
                    ("storage_id", pa.string()),
                    ("version", pa.int64()),
                    ("options", pa.string()),
                    ("comment", pa.string()),
                    ("updated_at", ts),
                    ("created_at", ts),
                ]
            )
        elif name == "namespaces":
            recs = [
                {
                    "namespace_id": k,
                    "name": k,
                    "created_at": v["created_at"] * 1000,
                    "table_count": sum(1 for t in self.tables.values() if t.namespace == k),
                }
                for k, v in self.namespaces.items()
            ]
            schema = pa.schema(
                [
                    ("namespace_id", pa.string()),
                    ("name", pa.string()),
                    ("created_at", ts),
                    ("table_count", pa.int32()),
                ]
            )
        elif name == "storages":
            recs = [
                {
                    k: s[k]
                    for k in (
                        "storage_id",
                        "storage_name",
                        "storage_type",
                        "base_directory",
                        "shared_tables_template",
                        "user_tables_template",
                    )
                }
                for s in self.storages.values()
            ]
            schema = pa.schema(
                [
                    (k, pa.string())
                    for k in (
                        "storage_id",
                        "storage_name",
                        "storage_type",
                        "base_directory",
                        "shared_tables_template",
                        "user_tables_template",
                    )
                ]
            )
        elif name == "cluster":
            # a single node that is its own leader (the §1.6 readiness poll: SELECT is_self, is_leader ...)
            recs = [
                {
                    "cluster_id": "kalammodel-embedded",
                    "node_id": 1,
                    "role": "leader",
                    "status": "active",
                    "rpc_addr": "",
                    "api_addr": "",
                    "is_self": True,
                    "is_leader": True,
                    "groups_leading": 1,
                    "total_groups": 1,
                    "current_term": 1,
                    "version": "0.4.3-rc.4",
                }
            ]
            schema = pa.schema(
                [
                    ("cluster_id", pa.string()),
                    ("node_id", pa.int64()),
                    ("role", pa.string()),
                    ("status", pa.string()),
                    ("rpc_addr", pa.string()),
                    ("api_addr", pa.string()),
                    ("is_self", pa.bool_()),
                    ("is_leader", pa.bool_()),
                    ("groups_leading", pa.int32()),
                    ("total_groups", pa.int32()),
                    ("current_term", pa.int64()),
                    ("version", pa.string()),
                ]
            )
        else:
            raise SqlFailure(f"Table 'system.{name}' not found", preserve=False)
        return pa.Table.from_pylist(recs, schema=schema)

    # ------------------------------------------------------------------ constants
    def _const(self, e: exp.Expression, ctx: Ctx) -> Any:
        if isinstance(e, exp.Null):
            return None
        if isinstance(e, exp.Boolean):
            return bool(e.this)
        if isinstance(e, exp.Literal):
            return e.name if e.is_string else _num(e.name)
        if isinstance(e, exp.Neg) and isinstance(e.this, exp.Literal) and not e.this.is_string:
            return -_num(e.this.name)
        if isinstance(e, exp.Paren):
            return self._const(e.this, ctx)
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
            return self.next_seq()
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
            t = self._df.sql(f"SELECT {e.sql(dialect='postgres')} AS v").to_arrow_table()
        except Exception as ex:
            raise SqlFailure(f"Cannot evaluate expression {e.sql()}: {str(ex).splitlines()[0]}") from None
        return t.column(0).to_pylist()[0]

    def _default(self, c: Column, ctx: Ctx) -> Any:
        if c.default is None:
            return None
        return self._const(parse_sql(c.default), ctx)

    # ------------------------------------------------------------------ INSERT
    def _write_table(self, ctx: Ctx, t: exp.Expression, in_tx: bool) -> Table:
        if not isinstance(t, exp.Table):
            raise SqlFailure("Expected a table name")
        ns = (t.db or ctx.namespace).lower()
        if ns == "system":
            raise denied(f"Access denied: system table 'system.{t.name.lower()}' is read-only")
        table = self._table(f"{ns}.{t.name}", ns)
        self._check_shared(table, ctx, write=True)
        if in_tx and table.kind == "STREAM":
            raise SqlFailure("stream tables are not supported inside explicit transactions")
        return table

    def _do_insert(self, ctx: Ctx, tree: exp.Insert, in_tx: bool) -> dict[str, Any]:
        target = tree.this
        names: list[str] | None = None
        if isinstance(target, exp.Schema):
            names = [i.name.lower() for i in target.expressions]
            target = target.this
        table = self._write_table(ctx, target, in_tx)
        values = tree.expression
        if not isinstance(values, exp.Values):
            raise SqlFailure("Only INSERT ... VALUES is supported")
        cols = [table.col(n) for n in names] if names is not None else table.user_columns()
        for n, c in zip(names or [], cols):
            if c is None:
                raise SqlFailure(f"Column '{n}' not found in table {table.key}")
            if c.system:
                raise SqlFailure(f"Cannot write system column '{n}'")
        if names is not None and len(set(names)) != len(names):
            raise SqlFailure("Duplicate column in INSERT column list")
        owner = self._owner_for(table, ctx)
        pk = table.pk
        seen: set[str] = set()
        new: list[tuple[str, dict[str, Any]]] = []
        for tup in values.expressions:
            items = tup.expressions if isinstance(tup, exp.Tuple) else [tup]
            if len(items) != len(cols):
                raise SqlFailure(f"INSERT has {len(items)} value(s) but {len(cols)} column(s)")
            given = {c.id: canonical(c.data_type, self._const(e, ctx), c.name) for c, e in zip(cols, items)}  # type: ignore[union-attr]
            vals: dict[str, Any] = {}
            for c in table.user_columns():
                if c.id in given:
                    vals[c.id] = given[c.id]
                else:
                    vals[c.id] = canonical(c.data_type, self._default(c, ctx), c.name)
                if vals[c.id] is None and (not c.nullable or c.pk):
                    raise SqlFailure(
                        f"NOT NULL constraint violation: column '{c.name}' of {table.key} cannot be null"
                    )
            if pk is not None and table.kind != "STREAM":
                key = _pk_key(vals[pk.id])
                if key in seen or self._live_version(table, owner, key) is not None:
                    raise SqlFailure(
                        f"Primary key violation: a row with {pk.name}={vals[pk.id]!r} already exists "
                        f"in {table.key}"
                    )
                seen.add(key)
            new.append(("", vals))
        for _, vals in new:
            v = Version(self.next_seq(), False, vals)
            key = _pk_key(vals[pk.id]) if pk is not None and table.kind != "STREAM" else str(v.seq)
            self._put(
                table,
                owner,
                key,
                v,
                ChangeEvent(table.key, owner or None, "insert", self.row_dict(table, v), None, v.seq),
            )
        return {"row_count": len(new), "message": f"Inserted {len(new)} row(s)"}

    # ------------------------------------------------------------------ UPDATE / DELETE
    def _matches(
        self, ctx: Ctx, table: Table, owner: str, where: exp.Expression, extra: list[exp.Expression]
    ) -> list[tuple[Version, list[Any]]]:
        """Visible versions matching ``where`` and the values of ``extra`` expressions for each."""
        pk = table.pk
        eq = where
        # PK lookup shortcut; STREAM rows are stored under their _seq, so they always take the scan below
        if (
            pk is not None
            and table.kind != "STREAM"
            and isinstance(eq, exp.EQ)
            and all(_is_const(x) for x in extra)
        ):
            col, lit = (
                (eq.this, eq.expression) if isinstance(eq.this, exp.Column) else (eq.expression, eq.this)
            )
            if (
                isinstance(col, exp.Column)
                and col.name.lower() == pk.name
                and isinstance(lit, exp.Literal)
                and not (lit.is_string and pk.data_type not in ("Text", "Uuid", "Json"))
            ):
                try:
                    key = canonical(pk.data_type, lit.name if lit.is_string else _num(lit.name), pk.name)
                except SqlFailure:
                    key = None
                if key is not None:
                    v = self._live_version(table, owner, _pk_key(key))
                    if v is None:
                        return []
                    return [(v, [self._const(x, ctx) for x in extra])]
        versions = self._visible(table, owner)
        by_seq = {v.seq: v for v in versions}
        self._reg += 1
        reg = f"__kalam_t{self._reg}"
        data = self._arrow(table, versions)
        self._df.register_record_batches(
            reg, [data.to_batches() or [pa.RecordBatch.from_pylist([], data.schema)]]
        )
        try:
            sel = (
                exp.select(
                    exp.column("_seq").as_("__seq"), *[x.copy().as_(f"__v{i}") for i, x in enumerate(extra)]
                )
                .from_(reg)
                .where(where.copy())
            )
            try:
                res = self._df.sql(sel.sql(dialect="postgres")).to_arrow_table()
            except Exception as e:
                msg = str(e).strip().split("\n")[0]
                raise SqlFailure(
                    msg, preserve="no field named" in msg.lower() or "not found" in msg.lower()
                ) from None
        finally:
            self._df.deregister_table(reg)
        cols = [c.to_pylist() for c in res.columns]
        return [(by_seq[s], [c[i] for c in cols[1:]]) for i, s in enumerate(cols[0])]

    def _do_update(self, ctx: Ctx, tree: exp.Update, in_tx: bool) -> dict[str, Any]:
        table = self._write_table(ctx, tree.this, in_tx)
        planning = (
            f"Execution error: UPDATE operation on table '{table.key}'\ncaused by\nError during planning: "
        )
        if table.kind == "STREAM":
            raise SqlFailure(planning + "UPDATE not supported for STREAM tables", preserve=False)
        where = tree.args.get("where")
        if where is None:
            raise SqlFailure(planning + "UPDATE requires a WHERE clause", preserve=False)
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
        owner = self._owner_for(table, ctx)
        sc = self._scope(table.key, owner)
        n = 0
        for old, newvals in self._matches(ctx, table, owner, where.this, [e for _, e in sets]):
            vals = dict(old.vals)
            for (c, _), nv in zip(sets, newvals):
                vals[c.id] = canonical(c.data_type, nv, c.name)
                if vals[c.id] is None and not c.nullable:
                    raise SqlFailure(
                        f"NOT NULL constraint violation: column '{c.name}' of {table.key} cannot be null"
                    )
            if all(vals.get(c.id) == self._value(table, old, c) for c, _ in sets):
                continue
            key = self._pk_of(table, old)
            v = Version(self.next_seq(), False, vals)
            cold_only = key not in sc.hot
            self._put(
                table,
                owner,
                key,
                v,
                ChangeEvent(
                    table.key,
                    owner or None,
                    "update",
                    self.row_dict(table, v),
                    self.row_dict(table, old),
                    v.seq,
                ),
            )
            if cold_only and _faults.active("cold_update_lost"):
                sc.lost_seqs.add(v.seq)
            n += 1
        return {"row_count": n, "message": f"Updated {n} row(s)"}

    def _do_delete(self, ctx: Ctx, tree: exp.Delete, in_tx: bool) -> dict[str, Any]:
        table = self._write_table(ctx, tree.this, in_tx)
        where = tree.args.get("where")
        if where is None:
            raise SqlFailure(
                f"Execution error: DELETE operation on table '{table.key}'\ncaused by\n"
                "Error during planning: DELETE requires a WHERE clause",
                preserve=False,
            )
        owner = self._owner_for(table, ctx)
        n = 0
        for old, _ in self._matches(ctx, table, owner, where.this, []):
            key = self._pk_of(table, old)
            if table.kind == "STREAM":
                seq = self.next_seq()
                self._hard_delete(
                    table,
                    owner,
                    key,
                    ChangeEvent(
                        table.key,
                        owner or None,
                        "delete",
                        self.row_dict(table, old, deleted=True),
                        self.row_dict(table, old),
                        seq,
                    ),
                )
            else:
                v = Version(self.next_seq(), True, dict(old.vals))
                self._put(
                    table,
                    owner,
                    key,
                    v,
                    ChangeEvent(
                        table.key,
                        owner or None,
                        "delete",
                        self.row_dict(table, v),
                        self.row_dict(table, old),
                        v.seq,
                    ),
                )
            n += 1
        return {"row_count": n, "message": f"Deleted {n} row(s)"}

    # ------------------------------------------------------------------ DDL
    def _require_admin(self, ctx: Ctx, what: str) -> None:
        if ctx.role not in ADMIN:
            raise denied(f"Admin privileges (DBA or System role) required for {what}")

    def _do_create_namespace(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        self._require_admin(ctx, "namespace operations")
        if_not, name = m[0], m[1].lower()
        if name in RESERVED_NAMESPACES:
            raise SqlFailure(f"Namespace name '{name}' is reserved")
        if not _ident_ok(name):
            raise SqlFailure(
                f"Invalid namespace name '{name}': use 1-64 letters, digits or '_', starting with a letter"
            )
        if name in self.namespaces:
            if if_not:
                return {"row_count": 0, "message": f"Namespace '{name}' already exists"}
            raise SqlFailure(f"Namespace '{name}' already exists")
        self.namespaces[name] = {"created_at": now_ms()}
        self.store.put_doc("namespace", name, self.namespaces[name])
        return {"row_count": 0, "message": f"Namespace '{name}' created successfully"}

    def _do_drop_namespace(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        self._require_admin(ctx, "namespace operations")
        if_exists, name = m[0], m[1].lower()
        if name not in self.namespaces:
            if if_exists:
                return {"row_count": 0, "message": f"Namespace '{name}' does not exist"}
            raise SqlFailure(f"Namespace '{name}' not found")
        if name == "default":
            raise SqlFailure("Namespace 'default' cannot be dropped")
        for t in [t for t in self.tables.values() if t.namespace == name]:
            self._drop_table(t)
        del self.namespaces[name]
        self.store.del_doc("namespace", name)
        return {"row_count": 0, "message": f"Namespace '{name}' dropped successfully"}

    def _parse_columns(self, text: str, table_label: str) -> list[exp.ColumnDef]:
        try:
            # postgres reads FLOAT as DOUBLE PRECISION; KalamDB's FLOAT is f32 (§2.4)
            text = re.sub(r"(?i)(\b[a-z_][a-z0-9_]*\s+)FLOAT\b(?!\s*\()", r"\1REAL", text)
            tree = sqlglot.parse_one(f"CREATE TABLE __x {text}", read="postgres")
        except sqlglot.errors.ParseError as e:
            raise SqlFailure(
                f"Invalid column definitions for {table_label}: {str(e).splitlines()[0]}", "INVALID_SQL"
            ) from None
        defs = [c for c in tree.this.expressions if isinstance(c, exp.ColumnDef)]
        if not defs:
            raise SqlFailure(f"Table {table_label} needs at least one column")
        return defs

    def _column(self, d: exp.ColumnDef, cid: str) -> tuple[Column, bool]:
        name = d.name.lower()
        if name in RESERVED_COLUMNS:
            raise SqlFailure(f"Column name '{name}' is reserved for system columns")
        if not _ident_ok(name):
            raise SqlFailure(f"Invalid column name '{name}'")
        if d.args.get("kind") is None:
            raise SqlFailure(f"Column '{name}' needs a data type")
        dt, serial = parse_type(d.args["kind"].sql(dialect="postgres"))
        c = Column(cid, name, dt)
        pk = False
        for k in d.constraints:
            kind = k.args.get("kind")
            if isinstance(kind, exp.PrimaryKeyColumnConstraint):
                pk = True
            elif isinstance(kind, exp.NotNullColumnConstraint):
                c.nullable = bool(kind.args.get("allow_null"))
            elif isinstance(kind, exp.DefaultColumnConstraint):
                c.default = kind.this.sql(dialect="postgres")
            elif isinstance(
                kind, (exp.AutoIncrementColumnConstraint, exp.GeneratedAsIdentityColumnConstraint)
            ):
                serial = True
        if serial:
            c.default = "SNOWFLAKE_ID()"
        return c, pk

    def _parse_with(self, text: str | None) -> dict[str, str]:
        out: dict[str, str] = {}
        if not text:
            return out
        for part in re.findall(r"\s*(\w+)\s*=\s*('(?:[^']|'')*'|[^,]+)\s*(?:,|$)", text):
            out[part[0].upper()] = _unq(part[1].strip()) or ""
        return out

    def _do_create_table(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        prefix, if_not, ns, name, coltext, withtext = m
        ns = (ns or ctx.namespace).lower()
        name = name.lower()
        opts = self._parse_with(withtext)
        known = {
            "TYPE",
            "STORAGE_ID",
            "USE_USER_STORAGE",
            "FLUSH_POLICY",
            "DELETED_RETENTION_HOURS",
            "TTL_SECONDS",
            "ACCESS_LEVEL",
        }
        for k in opts:
            if k not in known:
                raise _bad_create(f"Unknown table option '{k}'")
        kind = (prefix or "").upper() or None
        if "TYPE" in opts:
            tkind = opts["TYPE"].upper()
            if tkind not in KIND_WORD:
                raise _bad_create(f"Invalid table TYPE '{opts['TYPE']}': use USER, SHARED or STREAM")
            if kind and kind != tkind:
                raise _bad_create(
                    f"Conflicting table type definitions: CREATE {KIND_WORD[kind]} TABLE vs TYPE option "
                    f"{KIND_WORD[tkind]}"
                )
            kind = tkind
        kind = kind or "SHARED"
        if kind == "STREAM" and "TTL_SECONDS" not in opts:
            raise _bad_create("STREAM tables must specify 'TTL_SECONDS'")
        if ctx.role == "user" and kind == "SHARED":
            raise denied(
                "Insufficient privileges to create SHARED tables: requires service, dba or system role"
            )
        if ns not in self.namespaces:
            raise SqlFailure(f"Namespace '{ns}' does not exist. Create it first with CREATE NAMESPACE {ns}")
        key = f"{ns}.{name}"
        if not _ident_ok(name):
            raise SqlFailure(f"Invalid table name '{name}'")
        if key in self.tables:
            if if_not:  # KalamDB re-registers the existing definition and reports it as created
                return {"row_count": 0, "message": _created_message(kind, key)}
            raise SqlFailure(f"Already exists: Table {key} already exists")
        columns: list[Column] = []
        pkcount = 0
        for i, d in enumerate(self._parse_columns(coltext, key), 1):
            c, pk = self._column(d, str(i))
            if any(x.name == c.name for x in columns):
                raise SqlFailure(f"Duplicate column '{c.name}' in table {key}")
            if pk:
                pkcount += 1
                c.pk, c.nullable = True, False
            columns.append(c)
        if pkcount > 1:
            raise SqlFailure("Only a single-column PRIMARY KEY is supported")
        if pkcount == 0 and kind != "STREAM":
            raise SqlFailure(f"Invalid operation: {KIND_WORD[kind]} tables require a PRIMARY KEY column")
        ttl = None
        if "TTL_SECONDS" in opts:
            if kind != "STREAM":
                raise _bad_create("TTL_SECONDS is only valid for STREAM tables")
            try:
                ttl = int(opts["TTL_SECONDS"])
                assert ttl > 0
            except (ValueError, AssertionError):
                raise SqlFailure(
                    f"Invalid TTL_SECONDS '{opts['TTL_SECONDS']}': use a positive integer"
                ) from None
        access = None
        if "ACCESS_LEVEL" in opts:
            if kind != "SHARED":
                raise SqlFailure("ACCESS_LEVEL is only valid for SHARED tables")
            access = opts["ACCESS_LEVEL"].lower()
            if access not in ("public", "private", "restricted", "dba"):
                raise SqlFailure(
                    f"Invalid ACCESS_LEVEL '{opts['ACCESS_LEVEL']}': use PUBLIC, PRIVATE, RESTRICTED or DBA"
                )
        elif kind == "SHARED":
            access = "private"
        if "USE_USER_STORAGE" in opts and kind != "USER":
            raise SqlFailure("USE_USER_STORAGE is only valid for USER tables")
        storage = opts.get("STORAGE_ID", "local").lower()
        if storage not in self.storages:
            raise SqlFailure(f"Storage '{storage}' not found")
        policy = opts.get("FLUSH_POLICY")
        if policy is not None:
            for part in policy.split(","):
                mm = re.fullmatch(r"\s*(rows|interval)\s*:\s*(\d+)\s*", part)
                hi = 999999 if mm and mm.group(1) == "rows" else 86399
                if not mm or not 1 <= int(mm.group(2)) <= hi:
                    raise SqlFailure(
                        f"Invalid FLUSH_POLICY '{policy}': use 'rows:N' (1..999999), 'interval:S' "
                        "(1..86399) or both"
                    )
        columns += [attrs.evolve(SEQ_COL), attrs.evolve(DEL_COL)]
        table = Table(
            ns,
            name,
            kind,
            columns,
            len(columns) - 1,
            1,
            access,
            storage,
            ttl,
            policy,
            opts.get("USE_USER_STORAGE", "").lower() == "true",
            {c.id: c.data_type for c in columns if not c.system},
            {},
            now_ms(),
        )
        self.tables[key] = table
        self.store.put_doc("table", key, table.to_doc())
        return {"row_count": 0, "message": _created_message(kind, key)}

    def _drop_table(self, table: Table) -> None:
        for k in [k for k in self.scopes if k[0] == table.key]:
            del self.scopes[k]
        dirs = [d["dir"] for k, d in self.store.docs("scope") if k.startswith(table.key + "|")]
        self.store.delete_table(table.key)
        self.store.del_doc("table", table.key)
        del self.tables[table.key]
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)

    def _do_drop_table(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        if_exists, ns, name = m
        key = f"{(ns or ctx.namespace).lower()}.{name.lower()}"
        if ctx.role not in ADMIN:
            raise denied("Admin privileges (DBA or System role) required to drop tables")
        table = self.tables.get(key)
        if table is None:
            if if_exists:
                return {"row_count": 0, "message": f"Table {key} does not exist (IF EXISTS)"}
            raise SqlFailure(f"Table '{key}' not found", preserve=False)
        self._drop_table(table)
        job = self._new_job("cleanup", "CL", {"table_id": key})
        self._set_job(job, "completed", f"Dropped table {key}")
        return {"row_count": 0, "message": f"Table {key} dropped successfully. Cleanup job: {job['job_id']}"}

    def _alter_target(self, ctx: Ctx, ns: str | None, name: str) -> Table:
        table = self._table(f"{(ns or ctx.namespace).lower()}.{name}", ctx.namespace)
        if table.kind == "SHARED" and ctx.role == "user":
            raise denied(f"Insufficient privileges to alter SHARED table {table.key}")
        return table

    def _altered(self, table: Table, what: str) -> dict[str, Any]:
        table.schema_version += 1
        for (k, _), sc in self.scopes.items():
            if k == table.key:
                sc.counter += 1
        self.store.put_doc("table", table.key, table.to_doc())
        return {
            "row_count": 0,
            "message": f"Table {table.key} altered successfully: {what} (version {table.schema_version})",
        }

    def _do_alter_add(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        ns, name, text = m
        table = self._alter_target(ctx, ns, name)
        defs = self._parse_columns(f"({text})", table.key)
        if len(defs) != 1:
            raise SqlFailure("ADD COLUMN takes exactly one column definition")
        table.next_column_id += 1
        c, pk = self._column(defs[0], str(table.next_column_id))
        if pk:
            raise SqlFailure("Cannot add a PRIMARY KEY column")
        if table.col(c.name) is not None:
            table.next_column_id -= 1
            raise SqlFailure(f"Column '{c.name}' already exists in table {table.key}")
        table.columns.append(c)
        table.types_by_id[c.id] = c.data_type
        ty = defs[0].args["kind"].sql(dialect="postgres")
        return self._altered(table, f"ADD COLUMN {c.name} {ty}")

    def _do_alter_drop(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        ns, name, if_exists, cname = m
        table = self._alter_target(ctx, ns, name)
        c = table.col(cname)
        if c is not None and c.system:  # checked first, as in handlers ddl/table/alter.rs
            raise SqlFailure(
                f"Invalid operation: Cannot drop column '{c.name}': system column cannot be modified"
            )
        if c is None:
            if if_exists:
                return {
                    "row_count": 0,
                    "message": f"Table {table.key} unchanged: column '{cname}' does not exist",
                }
            raise SqlFailure(f"Invalid operation: Column '{cname.lower()}' does not exist")
        if c.pk:
            raise SqlFailure(f"Cannot drop primary key column '{c.name}'")
        table.columns.remove(c)
        table.dropped[c.id] = c.name
        return self._altered(table, f"DROP COLUMN {c.name}")

    def _do_alter_access(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        ns, name, level = m
        table = self._alter_target(ctx, ns, name)
        if ctx.role == "user":
            raise denied("Insufficient privileges to change the access level")
        if table.kind != "SHARED":
            raise SqlFailure("ACCESS LEVEL can only be set on SHARED tables")
        level = level.lower()
        if level not in ("public", "private", "restricted", "dba"):
            raise SqlFailure(f"Invalid access level '{level}': use PUBLIC, PRIVATE, RESTRICTED or DBA")
        if table.access_level == level:
            return {
                "row_count": 0,
                "message": f"Table {table.key} unchanged: access level is already {level}",
            }
        table.access_level = level
        return self._altered(table, f"SET ACCESS LEVEL {level}")

    # ------------------------------------------------------------------ users
    def _do_create_user(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        self._require_admin(ctx, "user management")
        if_not, uid, pw, role, email = m
        uid = _unq(uid) or ""
        role_word = (_unq(role) or "").lower()
        if role_word not in ROLE_WORDS:
            raise SqlFailure(f"Invalid role '{role_word}': use user, service, dba or system")
        if not uid or any(x in uid for x in ("..", "/", "\\", "\0")):
            raise SqlFailure(f"Invalid user id '{uid}'")
        if uid in self.users:
            if if_not:
                return {"row_count": 0, "message": f"User '{uid}' already exists"}
            raise SqlFailure(f"User '{uid}' already exists")
        if ROLE_WORDS[role_word] == "system" and ctx.role != "system":
            raise denied("Only the system role can create system users")
        self.users[uid] = self._user_doc(uid, ROLE_WORDS[role_word], _unq(pw), _unq(email))
        self.store.put_doc("user", uid, self.users[uid])
        return {"row_count": 0, "message": f"User '{uid}' created"}

    def _do_alter_user(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        uid, what, value = _unq(m[0]) or "", m[1].upper(), _unq(m[2]) or ""
        if not (ctx.role in ADMIN or (uid == ctx.principal.user_id and what == "PASSWORD")):
            raise denied("Admin privileges (DBA or System role) required for user management")
        u = self.users.get(uid)
        if u is None or u["deleted_at"] is not None:
            raise SqlFailure(f"User '{uid}' not found")
        if what == "PASSWORD":
            u["password_hash"] = hash_password(value)
            u["auth_type"] = "password"
        elif what == "ROLE":
            if value.lower() not in ROLE_WORDS:
                raise SqlFailure(f"Invalid role '{value}': use user, service, dba or system")
            u["role"] = ROLE_WORDS[value.lower()]
        else:
            u["email"] = value
        u["updated_at"] = now_ms()
        self.store.put_doc("user", uid, u)
        return {"row_count": 0, "message": f"User '{uid}' updated"}

    def _do_drop_user(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        self._require_admin(ctx, "user management")
        if_exists, uid = m[0], _unq(m[1]) or ""
        u = self.users.get(uid)
        if u is None or u["deleted_at"] is not None:
            if if_exists:
                return {"row_count": 0, "message": f"User '{uid}' does not exist"}
            raise SqlFailure(f"User '{uid}' not found")
        if uid == "root":
            raise SqlFailure("Cannot drop the root user")
        u["deleted_at"] = now_ms()
        self.store.put_doc("user", uid, u)
        return {"row_count": 0, "message": f"User '{uid}' dropped (soft delete)"}

    # ------------------------------------------------------------------ storages
    def _do_create_storage(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        self._require_admin(ctx, "storage operations")
        if_not, sid, stype, rest = m
        sid = sid.lower()
        if stype.lower() != "filesystem":
            raise SqlFailure(f"Unsupported storage type '{stype}': this server supports only filesystem")
        kv = {k.upper(): _unq(v) for k, v in re.findall(r"(\w+)\s+('(?:[^']|'')*')", rest)}
        path = kv.get("PATH") or kv.get("BASE_DIRECTORY")
        if not path:
            raise SqlFailure("CREATE STORAGE needs PATH '<directory>'")
        user_t = kv.get("USER_TABLES_TEMPLATE") or "{namespace}/{tableName}/{userId}"
        if "{userId}" not in user_t and "{user_id}" not in user_t:
            raise SqlFailure("USER_TABLES_TEMPLATE must contain {userId}")
        if sid in self.storages:
            if if_not:
                return {"row_count": 0, "message": f"Storage '{sid}' already exists"}
            raise SqlFailure(f"Storage '{sid}' already exists")
        self.storages[sid] = {
            "storage_id": sid,
            "storage_name": kv.get("NAME") or sid,
            "storage_type": "filesystem",
            "base_directory": path,
            "shared_tables_template": kv.get("SHARED_TABLES_TEMPLATE") or "{namespace}/{tableName}",
            "user_tables_template": user_t,
            "created_at": now_ms(),
        }
        self.store.put_doc("storage", sid, self.storages[sid])
        return {"row_count": 0, "message": f"Storage '{sid}' created successfully"}

    def _do_drop_storage(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        self._require_admin(ctx, "storage operations")
        if_exists, sid = m[0], m[1].lower()
        if sid not in self.storages:
            if if_exists:
                return {"row_count": 0, "message": f"Storage '{sid}' does not exist"}
            raise SqlFailure(f"Storage '{sid}' not found")
        if sid == "local":
            raise SqlFailure("Storage 'local' cannot be dropped")
        users = [t.key for t in self.tables.values() if t.storage_id == sid]
        if users:
            raise SqlFailure(f"Cannot drop storage '{sid}': {len(users)} table(s) still using it")
        del self.storages[sid]
        self.store.del_doc("storage", sid)
        return {"row_count": 0, "message": f"Storage '{sid}' dropped successfully"}

    def scope_dir(self, table: Table, owner: str) -> Path:
        st = self.storages[table.storage_id]
        tpl = st["user_tables_template"] if table.kind != "SHARED" else st["shared_tables_template"]
        rel = (
            tpl.replace("{namespace_id}", "{namespace}")
            .replace("{table_name}", "{tableName}")
            .replace("{user_id}", "{userId}")
            .replace("{namespace}", table.namespace)
            .replace("{tableName}", table.name)
            .replace("{userId}", owner)
        )
        return Path(st["base_directory"]) / rel

    # ------------------------------------------------------------------ flush
    def _new_job(self, job_type: str, prefix: str, params: dict[str, Any]) -> dict[str, Any]:
        t = now_ms()
        job: dict[str, Any] = {
            "job_id": f"{prefix}-{secrets.token_hex(6)}",
            "job_type": job_type,
            "status": "new",
            "leader_status": None,
            "parameters": json.dumps(params),
            "message": None,
            "exception_trace": None,
            "idempotency_key": f"{job_type}:{params.get('table_id', '')}",
            "queue": None,
            "priority": 0,
            "retry_count": 0,
            "max_retries": 3,
            "memory_used": None,
            "cpu_used": None,
            "created_at": t,
            "updated_at": t,
            "started_at": None,
            "finished_at": None,
            "node_id": "1",
            "leader_node_id": "1",
        }
        self.jobs[job["job_id"]] = job
        self.store.put_doc("job", job["job_id"], job)
        return job

    def _set_job(
        self, job: dict[str, Any], status: str, message: str | None = None, trace: str | None = None
    ) -> None:
        t = now_ms()
        job.update(status=status, updated_at=t)
        if status == "running":
            job["started_at"] = t
        if status in ("completed", "failed", "skipped", "cancelled"):
            job["finished_at"] = t
        if message is not None:
            job["message"] = message
        if trace is not None:
            job["exception_trace"] = trace
        self.store.put_doc("job", job["job_id"], job)

    def _flushable(self, ctx: Ctx, ns: str | None, name: str) -> Table:
        if ctx.role == "user":
            raise denied("Insufficient privileges for STORAGE FLUSH: requires service, dba or system role")
        table = self._table(f"{(ns or ctx.namespace).lower()}.{name}", ctx.namespace)
        if table.kind == "STREAM":
            raise SqlFailure(f"Cannot flush STREAM table {table.key}: stream tables are not flushable")
        return table

    def _pending(self, table: Table) -> bool:
        return any(sc.hot_seqs for (k, _), sc in self.scopes.items() if k == table.key)

    def _busy(self, table: Table) -> bool:
        return any(
            j["job_type"] == "flush"
            and j["status"] in ("new", "queued", "running")
            and json.loads(j["parameters"]).get("table_id") == table.key
            for j in self.jobs.values()
        )

    def _start_flush(self, table: Table, threshold: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "table_id": table.key,
            "namespace_id": table.namespace,
            "table_name": table.name,
        }
        if threshold is not None:
            params["flush_threshold"] = threshold
        job = self._new_job("flush", "FL", params)
        self._set_job(job, "queued")
        th = threading.Thread(
            target=self._flush_job, args=(table.key, job), daemon=True, name=f"flush-{job['job_id']}"
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [th]
        th.start()
        return job

    def _do_flush_table(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        table = self._flushable(ctx, m[0], m[1])
        if self._busy(table):
            return {
                "row_count": 0,
                "message": f"Storage flush skipped: a flush is already queued or running for table '{table.key}'",
            }
        if not self._pending(table):
            return {
                "row_count": 0,
                "message": f"Storage flush skipped: no pending writes for table '{table.key}'",
            }
        job = self._start_flush(table)
        return {
            "row_count": 0,
            "message": f"Storage flush started for table '{table.key}'. Job ID: {job['job_id']}",
        }

    def _do_flush_all(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        if ctx.role == "user":
            raise denied("Insufficient privileges for STORAGE FLUSH: requires service, dba or system role")
        ns = (m[0] or ctx.namespace).lower()
        if ns not in self.namespaces:
            raise SqlFailure(f"Namespace '{ns}' does not exist")
        tables = [
            t for t in self.tables.values() if t.namespace == ns and t.kind != "STREAM" and self._pending(t)
        ]
        for t in tables:
            if self._busy(t):
                raise SqlFailure(
                    f"Idempotent conflict: a flush is already queued or running for table '{t.key}'"
                )
        ids = [self._start_flush(t)["job_id"] for t in tables]
        return {
            "row_count": 0,
            "message": f"Storage flush started for {len(ids)} table(s) in namespace '{ns}'. "
            f"Job IDs: [{', '.join(ids)}]",
        }

    # ------------------------------------------------------------------ automatic flush (§7.4)
    def flush_threshold(self, table: Table) -> int | None:
        """Hot rows that trigger an automatic flush of ``table``; None when it is never auto-flushed."""
        if table.flush_policy is None or table.kind == "STREAM":
            return None
        m = re.search(r"rows\s*:\s*(\d+)", table.flush_policy)
        return int(m.group(1)) if m else self.flush_default_row_limit  # interval-only: the default limit

    def hot_row_count(self, table: Table) -> int:
        """Hot row versions of ``table`` over all its scopes (what KalamDB's pre-validation counts)."""
        return sum(len(sc.hot_seqs) for (k, _), sc in self.scopes.items() if k == table.key)

    def auto_flush(self) -> list[str]:
        """One scheduler pass (§7.4): a flush job for every table WITH a FLUSH_POLICY whose hot rows reach the
        policy's ``rows`` (interval-only policies: ``flush_default_row_limit``); the ``interval`` part is not
        consulted, tables without a policy are never auto-flushed. Returns the new job ids."""
        ids = []
        with self.lock:
            for table in list(self.tables.values()):
                limit = self.flush_threshold(table)
                if limit is None or self._busy(table) or self.hot_row_count(table) < limit:
                    continue
                ids.append(self._start_flush(table, limit)["job_id"])
        return ids

    def start_flush_scheduler(self, interval_seconds: float) -> None:
        """Run ``auto_flush`` every ``interval_seconds`` on a daemon thread until ``close``."""
        if interval_seconds <= 0 or self._scheduler is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_seconds):
                try:
                    self.auto_flush()
                except Exception:  # noqa: BLE001 - a failed pass must not stop the scheduler
                    log.exception("automatic flush pass failed")

        self._scheduler = threading.Thread(target=loop, daemon=True, name="kalam-flush-scheduler")
        self._scheduler.start()

    def _flush_job(self, tkey: str, job: dict[str, Any]) -> None:
        try:
            with self.lock:
                self._set_job(job, "running")
                table = self.tables.get(tkey)
                if table is None:
                    self._set_job(job, "failed", f"Table {tkey} no longer exists")
                    return
                snaps = []
                for (k, owner), sc in self.scopes.items():
                    if k != tkey or not sc.hot_seqs:
                        continue
                    seqs = list(sc.hot_seqs)
                    latest = dict(sc.hot)
                    sc.flushing = set(latest)
                    sc.counter += 1
                    snaps.append((owner, sc, seqs, latest))
                columns = [(c.id, c.name, c.data_type) for c in table.user_columns()]
                schema_version = table.schema_version
            if self.flush_delay_ms:
                time.sleep(self.flush_delay_ms / 1000)
            total = 0
            for owner, sc, seqs, latest in snaps:
                keep = [v for v in latest.values() if v.seq not in sc.lost_seqs]
                if _faults.active("delete_resurrects_after_flush"):
                    keep = [v for v in keep if not v.deleted]
                keep.sort(key=lambda v: v.seq)
                directory = self.scope_dir(table, owner)
                if keep:
                    write_segment(
                        directory,
                        tkey,
                        owner or None,
                        columns,
                        keep,
                        schema_version,
                        missing_file=_faults.active("manifest_missing_file"),
                    )
                with self.lock:
                    if self.tables.get(tkey) is not table:
                        continue
                    if not _faults.active("flush_keeps_hot"):
                        self.store.begin()
                        self.store.delete_versions(seqs)
                        self.store.put_doc("scope", f"{tkey}|{owner}", {"dir": str(directory)})
                        self.store.commit()
                        for s in seqs:
                            sc.hot_seqs.pop(s, None)
                        for pk, v in latest.items():
                            if sc.hot.get(pk) is v:
                                del sc.hot[pk]
                    else:
                        self.store.put_doc("scope", f"{tkey}|{owner}", {"dir": str(directory)})
                    for v in keep:
                        pk = self._pk_of(table, v)
                        if pk not in sc.cold or sc.cold[pk].seq < v.seq:
                            sc.cold[pk] = v
                    if _faults.active("delete_resurrects_after_flush"):
                        pass  # the tombstones are simply gone: older cold versions show again
                    sc.lost_seqs.difference_update(seqs)
                    sc.flushing = set()
                    sc.counter += 1
                    total += len(keep)
            with self.lock:
                self._set_job(
                    job, "completed", f"Flushed {total} row(s) from {len(snaps)} scope(s) of {tkey}"
                )
        except Exception as e:  # a failed job is reported in system.jobs; hot rows stay
            with self.lock:
                for _, sc, _, _ in locals().get("snaps", []):
                    sc.flushing = set()
                self._set_job(job, "failed", f"Flush failed: {e}", trace=repr(e))

    def wait_idle(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for t in list(self._threads):
            t.join(timeout=max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ live-query hooks
    def add_change_listener(self, callback: Callable[[ChangeEvent], None]) -> None:
        """Call ``callback(ChangeEvent)`` synchronously after each committed row change (one per row)."""
        with self.lock:
            self.listeners.append(callback)

    def remove_change_listener(self, callback: Callable[[ChangeEvent], None]) -> None:
        with self.lock:
            if callback in self.listeners:
                self.listeners.remove(callback)

    def plan_subscription(self, principal: Principal, sql: str) -> LivePlan:
        """Validate a live query (§10.5); raises LiveError with a §10.4 code."""
        try:
            tree = sqlglot.parse_one(sql.strip().rstrip(";"), read="postgres")
        except sqlglot.errors.ParseError as e:
            raise LiveError("INVALID_SQL", f"Invalid SQL: {str(e).splitlines()[0]}") from None
        if not isinstance(tree, exp.Select):
            raise LiveError("INVALID_SQL", "Only SELECT queries can be subscribed to")
        a = tree.args
        for k in ("joins", "group", "having", "order", "limit", "offset", "distinct", "with", "laterals"):
            if a.get(k):
                raise LiveError(
                    "UNSUPPORTED",
                    f"Live queries do not support {k.upper()}: use SELECT <cols>|* FROM ns.table [WHERE ...]",
                )
        frm = a.get("from") or a.get("from_")
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
            table = self.tables.get(f"{ns}.{name}")
            if table is None:
                raise LiveError("NOT_FOUND", f"Table '{ns}.{name}' not found")
            if table.kind == "SHARED":
                ctx = Ctx(principal, principal.user_id, principal.role, principal.user_id, False, ns)
                try:
                    self._check_shared(table, ctx, write=False)
                except SqlFailure as f:
                    raise LiveError("UNAUTHORIZED", f.message) from None
            cols: list[Column] = []
            for item in tree.expressions:
                if isinstance(item, exp.Star):
                    cols.extend(table.columns)
                elif isinstance(item, exp.Column):
                    if item.name.lower() in ("_seq", "_deleted"):
                        raise LiveError(
                            "INVALID_SQL", f"Live queries cannot project system column '{item.name}'"
                        )
                    c = table.col(item.name)
                    if c is None:
                        raise LiveError("INVALID_SQL", f"Column '{item.name}' not found in table {table.key}")
                    cols.append(c)
                else:
                    raise LiveError(
                        "UNSUPPORTED", f"Live queries project plain columns only (got {item.sql()})"
                    )
            where = a.get("where")
            w = where.this if where is not None else None
            if w is not None:
                for c in w.find_all(exp.Column):
                    if table.col(c.name) is None:
                        raise LiveError("INVALID_SQL", f"Column '{c.name}' not found in table {table.key}")
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
            table = self.tables.get(plan.table_id)
            if table is None:
                return []
            return [self.row_dict(table, v) for v in self._visible(table, plan.owner or "")]


def _table_options(t: Table) -> dict[str, Any]:
    """system.tables ``options`` as KalamDB serialises its TableOptions (keys in its order)."""
    if t.kind == "STREAM":
        return {
            "table_type": "STREAM",
            "ttl_seconds": t.ttl_seconds,
            "eviction_strategy": "time_based",
            "max_stream_size_bytes": 0,
            "compression": "snappy",
        }
    policy: dict[str, Any] | None = None
    if t.flush_policy:
        parts = dict(p.split(":", 1) for p in t.flush_policy.replace(" ", "").lower().split(","))
        rows, interval = parts.get("rows"), parts.get("interval")
        if rows and interval:
            policy = {"type": "combined", "row_limit": int(rows), "interval_seconds": int(interval)}
        elif rows:
            policy = {"type": "row_limit", "row_limit": int(rows)}
        elif interval:
            policy = {"type": "interval", "interval_seconds": int(interval)}
    out: dict[str, Any] = {"table_type": t.kind, "storage_id": t.storage_id}
    if t.kind == "SHARED":
        out["access_level"] = (t.access_level or "private").capitalize()
    else:
        out["use_user_storage"] = t.use_user_storage
    out["flush_policy"] = policy
    out["compression"] = "snappy"
    return out


def _bad_create(reason: str) -> SqlFailure:
    """A CREATE TABLE rejected by KalamDB's parser: INVALID_SQL, no statement prefix, no details."""
    return SqlFailure(f"Invalid CREATE TABLE statement: {reason}", "INVALID_SQL", preserve=False, bare=True)


def _created_message(kind: str, key: str) -> str:
    """CREATE TABLE's answer (handlers ddl/table/create.rs wraps the applier's message), also for IF NOT EXISTS."""
    return f"CREATE TABLE via Raft consensus: {kind.lower()} table {key} created successfully"


# Texts a user/service sees instead of a redacted message, per code (api sql_response.rs public_message).
REDACTED = {
    "SQL_EXECUTION_ERROR": "SQL statement failed",
    "INVALID_SQL": "SQL statement is invalid or not allowed",
    "BATCH_PARSE_ERROR": "Failed to parse SQL batch",
    "INTERNAL_ERROR": "SQL request failed",
}


def _num(s: str) -> int | float:
    try:
        return int(s)
    except ValueError:
        return float(s)


def _is_const(e: exp.Expression) -> bool:
    return not any(True for _ in e.find_all(exp.Column))
