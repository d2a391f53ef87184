"""The catalog: namespaces, tables, storages, SHARED access levels, and the DDL that changes them (§4, §9, §7.3).

CREATE/DROP NAMESPACE, CREATE/DROP/ALTER TABLE, CREATE/DROP STORAGE. Definitions are documents in SQLite; a
dropped table's hot and cold rows are removed at once (its ``CL-`` cleanup job is recorded as completed).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import attrs
import sqlglot
from sqlglot import exp

from . import _faults
from ._jobs import JobLog
from ._records import ADMIN, DEL_COL, SEQ_COL, Column, Ctx, Table, now_ms, require_admin, unq
from ._rows import Rows
from ._storage import HotStore
from ._values import SqlFailure, denied, parse_type

__all__ = ["Catalog"]

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
KIND_WORD = {"USER": "User", "SHARED": "Shared", "STREAM": "Stream"}
TABLE_OPTIONS = {
    "TYPE",
    "STORAGE_ID",
    "USE_USER_STORAGE",
    "FLUSH_POLICY",
    "DELETED_RETENTION_HOURS",
    "TTL_SECONDS",
    "ACCESS_LEVEL",
}
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


def _ident_ok(name: str) -> bool:
    return bool(_IDENT_RX.fullmatch(name)) and name.lower() not in _SQL_KEYWORDS


def _bad_create(reason: str) -> SqlFailure:
    """A CREATE TABLE rejected by KalamDB's parser: INVALID_SQL, no statement prefix, no details."""
    return SqlFailure(f"Invalid CREATE TABLE statement: {reason}", "INVALID_SQL", preserve=False, bare=True)


def _created_message(kind: str, key: str) -> str:
    """CREATE TABLE's answer (handlers ddl/table/create.rs wraps the applier's message), also for IF NOT EXISTS."""
    return f"CREATE TABLE via Raft consensus: {kind.lower()} table {key} created successfully"


class Catalog:
    """Namespaces, tables and storages, their lookups and access rules, and the DDL statements."""

    def __init__(self, store: HotStore, rows: Rows, jobs: JobLog, data_dir: Path):
        self.store = store
        self.rows = rows
        self.jobs = jobs
        self.data_dir = data_dir
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.tables: dict[str, Table] = {}
        self.storages: dict[str, dict[str, Any]] = {}

    def load(self) -> None:
        """Definitions from SQLite; the ``default`` namespace and the ``local`` storage at first boot."""
        s = self.store
        for k, d in s.docs("namespace"):
            self.namespaces[k] = d
        for k, d in s.docs("table"):
            self.tables[k] = Table.from_doc(d)
        for k, d in s.docs("storage"):
            self.storages[k] = d
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

    # ------------------------------------------------------------------ lookups and access
    def table(self, name: str, namespace: str) -> Table:
        ns, _, t = name.rpartition(".")
        key = f"{(ns or namespace).lower()}.{t.lower()}"
        table = self.tables.get(key)
        if table is None:
            raise SqlFailure(f"Table '{key}' not found", preserve=False)
        return table

    def check_shared(self, table: Table, ctx: Ctx, write: bool) -> None:
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

    def owner_for(self, table: Table, ctx: Ctx) -> str:
        return "" if table.kind == "SHARED" else ctx.owner

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

    # ------------------------------------------------------------------ namespaces
    def create_namespace(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        require_admin(ctx, "namespace operations")
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

    def drop_namespace(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        require_admin(ctx, "namespace operations")
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

    # ------------------------------------------------------------------ CREATE TABLE
    def _parse_columns(self, text: str, table_label: str) -> list[exp.ColumnDef]:
        try:
            # postgres reads FLOAT as DOUBLE PRECISION; KalamDB's FLOAT is f32 (§2.4)
            text = re.sub(r'(?i)((?:\b[a-z_][a-z0-9_]*|"[^"]+")\s+)FLOAT\b(?!\s*\()', r"\1REAL", text)
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
            out[part[0].upper()] = unq(part[1].strip()) or ""
        return out

    def _table_kind(self, prefix: str | None, opts: dict[str, str]) -> str:
        """USER | SHARED | STREAM from ``CREATE <kind> TABLE`` and the TYPE option (parser-level checks)."""
        for k in opts:
            if k not in TABLE_OPTIONS:
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
        return kind

    def _table_columns(self, coltext: str, key: str, kind: str) -> list[Column]:
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
        return columns

    def _table_options(self, kind: str, opts: dict[str, str]) -> tuple[int | None, str | None, str, str | None]:
        """(ttl_seconds, access_level, storage_id, flush_policy) from the WITH options, checked for ``kind``."""
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
        return ttl, access, storage, policy

    def create_table(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        prefix, if_not, ns, name, coltext, withtext = m
        ns = (ns or ctx.namespace).lower()
        name = name.lower()
        opts = self._parse_with(withtext)
        kind = self._table_kind(prefix, opts)
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
        columns = self._table_columns(coltext, key, kind)
        ttl, access, storage, policy = self._table_options(kind, opts)
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

    # ------------------------------------------------------------------ DROP / ALTER TABLE
    def _drop_table(self, table: Table) -> None:
        scopes = self.rows.scopes
        for k in [k for k in scopes if k[0] == table.key]:
            del scopes[k]
        dirs = [d["dir"] for k, d in self.store.docs("scope") if k.startswith(table.key + "|")]
        self.store.delete_table(table.key)
        self.store.del_doc("table", table.key)
        del self.tables[table.key]
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)

    def drop_table(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
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
        job = self.jobs.new("cleanup", "CL", {"table_id": key})
        self.jobs.set(job, "completed", f"Dropped table {key}")
        return {"row_count": 0, "message": f"Table {key} dropped successfully. Cleanup job: {job['job_id']}"}

    def _alter_target(self, ctx: Ctx, ns: str | None, name: str) -> Table:
        table = self.table(f"{(ns or ctx.namespace).lower()}.{name}", ctx.namespace)
        if table.kind == "SHARED" and ctx.role == "user":
            raise denied(f"Insufficient privileges to alter SHARED table {table.key}")
        return table

    def _altered(self, table: Table, what: str) -> dict[str, Any]:
        table.schema_version += 1
        for (k, _), sc in self.rows.scopes.items():
            if k == table.key:
                sc.counter += 1
        self.store.put_doc("table", table.key, table.to_doc())
        return {
            "row_count": 0,
            "message": f"Table {table.key} altered successfully: {what} (version {table.schema_version})",
        }

    def alter_add(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
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

    def alter_drop(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
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
            if _faults.active("drop_pk_column_accepted"):  # finding 6: no guard, nothing applied
                return {
                    "row_count": 0,
                    "message": f"Table {table.key} altered successfully: DROP COLUMN {c.name} "
                    f"(version {table.schema_version + 1})",
                }
            raise SqlFailure(f"Cannot drop primary key column '{c.name}'")
        table.columns.remove(c)
        table.dropped[c.id] = c.name
        return self._altered(table, f"DROP COLUMN {c.name}")

    def alter_access(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
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

    # ------------------------------------------------------------------ storages
    def create_storage(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        require_admin(ctx, "storage operations")
        if_not, sid, stype, rest = m
        sid = sid.lower()
        if stype.lower() != "filesystem":
            raise SqlFailure(f"Unsupported storage type '{stype}': this server supports only filesystem")
        kv = {k.upper(): unq(v) for k, v in re.findall(r"(\w+)\s+('(?:[^']|'')*')", rest)}
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

    def drop_storage(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        require_admin(ctx, "storage operations")
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
