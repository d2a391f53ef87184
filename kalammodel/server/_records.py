"""Records and small helpers shared by the engine's parts: columns, tables, scopes, who runs a statement.

``Table``/``Column`` are the catalog's schema records (persisted as documents in SQLite), ``Scope`` holds the row
versions of one table for one owner, ``Ctx`` is the effective principal of one statement.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from typing import Any

import attrs

from ._storage import Version
from ._types import Principal
from ._values import denied

__all__ = [
    "ADMIN",
    "DEL_COL",
    "EPOCH_MS",
    "SEQ_COL",
    "Column",
    "Ctx",
    "Scope",
    "Table",
    "now_ms",
    "num",
    "pk_key",
    "require_admin",
    "rfc3339",
    "unq",
]

EPOCH_MS = 1704067200000  # 2024-01-01T00:00:00Z, the snowflake epoch (§4.3)
ADMIN = ("dba", "system")


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
    data_type: Any  # a §2.4 type: a name ("BigInt") or a dict for parametrised types (Decimal, Embedding)
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


def unq(s: str | None) -> str | None:
    """``s`` without its surrounding quotes (doubled quotes inside undone)."""
    if s is None:
        return None
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1].replace(s[0] * 2, s[0])
    return s


def pk_key(v: Any) -> str:
    return json.dumps(v)


def num(s: str) -> int | float:
    try:
        return int(s)
    except ValueError:
        return float(s)


def require_admin(ctx: Ctx, what: str) -> None:
    if ctx.role not in ADMIN:
        raise denied(f"Admin privileges (DBA or System role) required for {what}")
