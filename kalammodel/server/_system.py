"""The system tables (``system.users``, ``jobs``, ``tables``, ``namespaces``, ``storages``, ``cluster``) as data.

Each ``SystemTable`` names its columns (Arrow types, KalamDB's column order) and a row producer over the engine's
catalog, users and job log. ``system_table(name, sources)`` builds the Arrow table a SELECT runs on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
import pyarrow as pa

from ._catalog import Catalog
from ._jobs import JobLog
from ._records import Table
from ._users import Accounts
from ._values import SqlFailure

__all__ = ["SYSTEM_TABLES", "Sources", "SystemTable", "system_table"]

_TS = pa.timestamp("us")
_STR = pa.string()


@attrs.frozen
class Sources:
    """What the row producers read."""

    catalog: Catalog
    accounts: Accounts
    jobs: JobLog


@attrs.frozen
class SystemTable:
    """One system table: its name (``system.<name>``), columns in order, and the rows it shows now."""

    name: str
    columns: tuple[tuple[str, pa.DataType], ...]
    rows: Callable[[Sources], list[dict[str, Any]]]

    def arrow(self, sources: Sources) -> pa.Table:
        return pa.Table.from_pylist(self.rows(sources), schema=pa.schema(list(self.columns)))


def _ms_us(ms: int | None) -> int | None:
    """A stored millisecond time as an Arrow microsecond timestamp (None and 0 stay empty)."""
    return ms * 1000 if ms else None


def _users(src: Sources) -> list[dict[str, Any]]:
    return [
        {
            "user_id": u["user_id"],
            "username": u["user_id"],
            "role": u["role"],
            "email": u["email"],
            "auth_type": u["auth_type"],
            "password_hash": u["password_hash"],
            "created_at": u["created_at"] * 1000,
            "updated_at": u["updated_at"] * 1000,
            "deleted_at": _ms_us(u["deleted_at"]),
            "failed_login_attempts": u.get("failed_login_attempts", 0),
            "locked_until": _ms_us(u.get("locked_until")),
        }
        for u in src.accounts.users.values()
    ]


def _jobs(src: Sources) -> list[dict[str, Any]]:
    recs = []
    for j in src.jobs.jobs.values():
        r = dict(j)
        for k in ("created_at", "updated_at", "started_at", "finished_at"):
            r[k] = _ms_us(r.get(k))
        recs.append(r)
    return recs


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


def _tables(src: Sources) -> list[dict[str, Any]]:
    return [
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
        for t in src.catalog.tables.values()
    ]


def _namespaces(src: Sources) -> list[dict[str, Any]]:
    tables = src.catalog.tables
    return [
        {
            "namespace_id": k,
            "name": k,
            "created_at": v["created_at"] * 1000,
            "table_count": sum(1 for t in tables.values() if t.namespace == k),
        }
        for k, v in src.catalog.namespaces.items()
    ]


_STORAGE_COLUMNS = (
    "storage_id",
    "storage_name",
    "storage_type",
    "base_directory",
    "shared_tables_template",
    "user_tables_template",
)


def _storages(src: Sources) -> list[dict[str, Any]]:
    return [{k: s[k] for k in _STORAGE_COLUMNS} for s in src.catalog.storages.values()]


def _cluster(src: Sources) -> list[dict[str, Any]]:
    # a single node that is its own leader (the §1.6 readiness poll: SELECT is_self, is_leader ...)
    return [
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


SYSTEM_TABLES: dict[str, SystemTable] = {
    t.name: t
    for t in (
        SystemTable(
            "users",
            (
                ("user_id", _STR),
                ("username", _STR),
                ("role", _STR),
                ("email", _STR),
                ("auth_type", _STR),
                ("password_hash", _STR),
                ("created_at", _TS),
                ("updated_at", _TS),
                ("deleted_at", _TS),
                ("failed_login_attempts", pa.int32()),
                ("locked_until", _TS),
            ),
            _users,
        ),
        SystemTable(
            "jobs",
            (
                ("job_id", _STR),
                ("job_type", _STR),
                ("status", _STR),
                ("leader_status", _STR),
                ("parameters", _STR),
                ("message", _STR),
                ("exception_trace", _STR),
                ("idempotency_key", _STR),
                ("queue", _STR),
                ("priority", pa.int32()),
                ("retry_count", pa.int32()),
                ("max_retries", pa.int32()),
                ("memory_used", pa.int64()),
                ("cpu_used", pa.int64()),
                ("created_at", _TS),
                ("updated_at", _TS),
                ("started_at", _TS),
                ("finished_at", _TS),
                ("node_id", _STR),
                ("leader_node_id", _STR),
            ),
            _jobs,
        ),
        SystemTable(
            "tables",
            (
                ("namespace_id", _STR),
                ("table_name", _STR),
                ("table_type", _STR),
                ("storage_id", _STR),
                ("version", pa.int64()),
                ("options", _STR),
                ("comment", _STR),
                ("updated_at", _TS),
                ("created_at", _TS),
            ),
            _tables,
        ),
        SystemTable(
            "namespaces",
            (("namespace_id", _STR), ("name", _STR), ("created_at", _TS), ("table_count", pa.int32())),
            _namespaces,
        ),
        SystemTable("storages", tuple((k, _STR) for k in _STORAGE_COLUMNS), _storages),
        SystemTable(
            "cluster",
            (
                ("cluster_id", _STR),
                ("node_id", pa.int64()),
                ("role", _STR),
                ("status", _STR),
                ("rpc_addr", _STR),
                ("api_addr", _STR),
                ("is_self", pa.bool_()),
                ("is_leader", pa.bool_()),
                ("groups_leading", pa.int32()),
                ("total_groups", pa.int32()),
                ("current_term", pa.int64()),
                ("version", _STR),
            ),
            _cluster,
        ),
    )
}


def system_table(name: str, sources: Sources) -> pa.Table:
    """``system.<name>`` as an Arrow table; an unknown name is "Table 'system.x' not found"."""
    table = SYSTEM_TABLES.get(name)
    if table is None:
        raise SqlFailure(f"Table 'system.{name}' not found", preserve=False)
    return table.arrow(sources)
