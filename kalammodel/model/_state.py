"""The records of the reference model's state (tables, scopes, row versions, flush state) and the
role rules of PROTOCOL §6 that the model's checks share."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ._expect import (
    ExpectError,
)
from ._types import (
    AccessLevel,
    Column,
    ColumnType,
    Role,
    TableKind,
    TableSpec,
)

__all__ = ["ColumnState", "FlushState", "Scope", "StreamRow", "TableState", "Version"]


PERMISSION_DENIED = "PERMISSION_DENIED"
SQL_EXECUTION_ERROR = "SQL_EXECUTION_ERROR"
INVALID_SQL = "INVALID_SQL"
#: expired STREAM rows a scope remembers (for attribution only)
EXPIRED_KEPT = 500

_IDENT = re.compile(r"[a-z][a-z0-9_]{0,63}")
_PK_TYPES = (ColumnType.BIGINT, ColumnType.INT, ColumnType.SMALLINT, ColumnType.TEXT, ColumnType.TIMESTAMP)
_FLUSH_POLICY = re.compile(r"(rows:(\d+)|interval:(\d+))(,(rows:(\d+)|interval:(\d+)))?")


@attrs.frozen
class _Ctx:
    """Who a request runs as."""

    actor: str
    actor_role: Role
    user_id: str  # the scope of USER/STREAM tables
    role: Role  # effective role (EXECUTE AS runs with role user, PROTOCOL §6.3)
    as_user: str | None
    denied: bool  # EXECUTE AS not authorized


@attrs.define
class ColumnState:
    """A column of a table: ids are never reused (PROTOCOL §9)."""

    column_id: int
    column: Column
    added: bool = False  # added by ALTER: placed after _seq/_deleted in SELECT *


@attrs.define(eq=False)
class Version:
    """One version of a USER/SHARED row."""

    write_no: int
    values: dict[int, Any]  # column id -> value; absent means NULL
    deleted: bool
    flushed: bool = False
    maybe_flushed: bool = False


@attrs.define(eq=False)
class StreamRow:
    """One STREAM row and the clock window of its INSERT."""

    write_no: int
    values: dict[int, Any]
    inserted_from: float
    inserted_until: float | None = None


@attrs.define
class Scope:
    """The rows of one owner (None for SHARED)."""

    owner: str | None
    versions: dict[Any, list[Version]] = attrs.Factory(dict)
    stream_rows: list[StreamRow] = attrs.Factory(list)
    #: STREAM rows surely past their TTL, newest last (at most EXPIRED_KEPT): a read that still returns one
    #: is an expiry failure, not another owner's row that happens to look the same
    expired: list[StreamRow] = attrs.Factory(list)
    cold: dict[Any, dict[str, Any]] = attrs.Factory(dict)  # newest cold row per PK, by column name at flush
    cold_exact: bool = True


@attrs.define
class FlushState:
    """Flush bookkeeping of one table."""

    any_write: bool = False  # anything ever written (a flush of a never-written table is skipped)
    unflushed: bool = False  # writes surely not yet flushed
    maybe_unflushed: bool = False  # writes whose flush state is unknown
    running_job: str | None = None  # a job started by StartFlush, not yet awaited
    started_at: int | None = None  # model write number when that flush was requested
    requested_at: int | None = None  # write number at the last flush request (job id still to come)


@attrs.define
class TableState:
    """A table in the example's namespace."""

    spec: TableSpec
    columns: list[ColumnState]
    next_column_id: int
    schema_version: int = 1
    dropped: list[ColumnState] = attrs.Factory(list)
    reused_names: bool = False  # a dropped column name was added again
    schema_changes: list[int] = attrs.Factory(list)  # write numbers of ALTERs
    scopes: dict[str | None, Scope] = attrs.Factory(dict)
    flush: FlushState = attrs.Factory(FlushState)

    @property
    def kind(self) -> TableKind:
        return self.spec.kind

    @property
    def pk(self) -> ColumnState | None:
        for state in self.columns:
            if state.column.primary_key:
                return state
        return None

    @property
    def auto_flush(self) -> bool:
        return self.spec.flush_policy is not None

    def column(self, name: str) -> ColumnState | None:
        for state in self.columns:
            if state.column.name == name:
                return state
        return None

    def star_columns(self) -> list[str]:
        """``SELECT *`` order: created columns, ``_seq``, ``_deleted``, then ALTER-added columns (§4.3, §9)."""
        names = [s.column.name for s in self.columns if not s.added]
        names += ["_seq", "_deleted"]
        names += [s.column.name for s in self.columns if s.added]
        return names

    def column_type(self, name: str) -> ColumnType | None:
        if name == "_seq":
            return ColumnType.BIGINT
        if name == "_deleted":
            return ColumnType.BOOLEAN
        state = self.column(name)
        return None if state is None else state.column.type


def _error(reasons: list[tuple[str, str]]) -> ExpectError:
    codes: list[str] = []
    for code, _ in reasons:
        for c in code.split("|"):
            if c not in codes:
                codes.append(c)
    statuses = {_STATUS[c] for c in codes}
    status = statuses.pop() if len(statuses) == 1 else None
    return ExpectError(tuple(codes), status, "; ".join(r for _, r in reasons))


_STATUS = {PERMISSION_DENIED: 403, SQL_EXECUTION_ERROR: 400, INVALID_SQL: 400}
_BAD_QUERY = f"{SQL_EXECUTION_ERROR}|{INVALID_SQL}"


def _can_create(role: Role, kind: TableKind) -> bool:
    return role is not Role.USER or kind is not TableKind.SHARED


def _can_alter(role: Role, kind: TableKind) -> bool:
    return role is not Role.USER or kind is not TableKind.SHARED


def _can_read_shared(level: AccessLevel, role: Role) -> bool:
    if level is AccessLevel.PUBLIC:
        return True
    if level is AccessLevel.DBA:
        return role.is_admin
    return role is not Role.USER


def _can_write_shared(level: AccessLevel, role: Role) -> bool:
    if level is AccessLevel.DBA:
        return role.is_admin
    return role is not Role.USER


def _can_impersonate(actor_role: Role, target_role: Role) -> bool:
    order = [Role.USER, Role.SERVICE, Role.DBA, Role.SYSTEM]
    if actor_role is Role.USER:
        return False
    return order.index(target_role) <= order.index(actor_role)


def _same(a: Any, b: Any) -> bool | None:
    """Whether two values of one column are the same for UPDATE's change count; None when it is unclear."""
    if isinstance(a, float) and isinstance(b, float) and a == b == 0.0 and str(a) != str(b):
        return None  # -0.0 vs 0.0: equal in SQL, different bits
    return type(a) is type(b) and a == b if a is not None and b is not None else a is b


def _sort_cmp(keys: Sequence[tuple[str, bool]]):
    def cmp(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
        for name, descending in keys:
            x, y = a[name], b[name]
            if x == y or (x is None and y is None):
                continue
            if x is None:  # NULLS LAST ascending, FIRST descending
                return -1 if descending else 1
            if y is None:
                return 1 if descending else -1
            result = -1 if x < y else 1
            return -result if descending else result
        return 0

    return cmp


def _clamp(n: int, high: int) -> int:
    return max(0, min(n, high))
