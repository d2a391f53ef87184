"""Workload models: what a test run draws, read from ``models/*.toml``.

A workload says which table kinds to create and how often, which column types, how many columns, which
identities act (and with which role), how often each operation is drawn, optional fixed table schemas, the
STREAM TTL range and batch sizes. The strategies turn it into Hypothesis strategies; nothing here draws.

```toml
description = "what this workload stresses"

[tables]
kinds = { user = 3, shared = 1, stream = 1 }      # weights
per_example = { min = 1, max = 3 }                 # tables created per example
columns = { min = 1, max = 4 }                     # user columns besides the primary key
access_levels = { public = 1, private = 1 }        # ACCESS_LEVEL weights of SHARED tables
storages = { local = 1 }                           # STORAGE_ID weights ("local" is the built-in one)

[column_types]                                     # weights per SQL type
bigint = 3
text = 3

[actors]                                           # identity -> role (user, service, dba, system)
dba = "dba"
user1 = "user"

[operations]                                       # weights; operations not listed have weight 0
insert = 10
select = 5

[batches]
insert_rows = { min = 1, max = 5 }                 # rows per INSERT
live_batch_size = { min = 1, max = 20 }            # batch_size of a subscription snapshot

[stream]
ttl_seconds = { min = 2, max = 30 }

[[schemas]]                                        # optional fixed tables, used besides generated ones
name = "messages"
kind = "user"
columns = [{ name = "id", type = "bigint", primary_key = true }, { name = "body", type = "text" }]
```

A section left out takes the default of ``DEFAULTS``. Every error names the file, the key and the bad value
(``UsageError``).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from ..errors import UsageError
from .operations import DEFAULT_WEIGHTS, OPERATIONS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "ACCESS_LEVELS",
    "COLUMN_TYPES",
    "DEFAULTS",
    "OPERATIONS",
    "ROLES",
    "TABLE_KINDS",
    "Actor",
    "ColumnSpec",
    "IntRange",
    "TableSchema",
    "Weights",
    "Workload",
    "list_workloads",
    "load_workload",
    "models_dir",
    "resolve_workload_path",
    "workload_from_dict",
]

TABLE_KINDS: tuple[str, ...] = ("user", "shared", "stream")
ROLES: tuple[str, ...] = ("user", "service", "dba", "system")
ACCESS_LEVELS: tuple[str, ...] = ("public", "private", "restricted", "dba")
# SQL types as written in CREATE TABLE (PROTOCOL §2.4); lowercase in workload files.
COLUMN_TYPES: tuple[str, ...] = (
    "bigint",
    "int",
    "smallint",
    "double",
    "float",
    "boolean",
    "text",
    "timestamp",
    "date",
    "time",
    "json",
    "uuid",
    "decimal",
    "bytes",
)

_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ACTOR = re.compile(r"^[a-z][a-z0-9_]{0,23}$")
# PROTOCOL §4.2: columns KalamDB reserves.
_RESERVED_COLUMNS = frozenset(
    {
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
)
_SQL_KEYWORDS = frozenset(
    {"select", "from", "where", "table", "insert", "update", "delete", "create", "drop", "alter", "user", "order",
     "group", "by", "limit", "offset", "and", "or", "not", "null", "true", "false", "values", "into", "set", "as",
     "join", "on", "in", "is", "like", "primary", "key", "default", "with", "namespace", "storage", "flush"}
)  # fmt: skip


@attrs.frozen
class IntRange:
    """An inclusive integer range ``min..max``."""

    min: int
    max: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.min <= value <= self.max


@attrs.frozen
class Weights:
    """Named non-negative weights, in file order. ``get`` of a name not listed is 0."""

    items: tuple[tuple[str, float], ...]

    @classmethod
    def of(cls, mapping: Mapping[str, float]) -> Weights:
        return cls(tuple((k, float(v)) for k, v in mapping.items()))

    def get(self, name: str) -> float:
        for key, weight in self.items:
            if key == name:
                return weight
        return 0.0

    def names(self) -> tuple[str, ...]:
        """Names with a positive weight, in file order."""
        return tuple(k for k, w in self.items if w > 0)

    def as_dict(self) -> dict[str, float]:
        return dict(self.items)

    def __iter__(self) -> Iterator[tuple[str, float]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@attrs.frozen
class Actor:
    """A pool identity and its role (``user``, ``service``, ``dba``, ``system``)."""

    name: str
    role: str


@attrs.frozen
class ColumnSpec:
    """One column of a fixed schema."""

    name: str
    type: str
    primary_key: bool = False
    not_null: bool = False


@attrs.frozen
class TableSchema:
    """A fixed table: its short name (inside the example's namespace), kind, columns and options."""

    name: str
    kind: str
    columns: tuple[ColumnSpec, ...]
    ttl_seconds: int | None = None
    access_level: str | None = None
    storage: str | None = None

    @property
    def primary_key(self) -> str | None:
        return next((c.name for c in self.columns if c.primary_key), None)


@attrs.frozen
class Workload:
    """A workload model. Build one with ``load_workload`` or ``workload_from_dict``."""

    name: str
    description: str
    source: str | None
    table_kinds: Weights
    tables_per_example: IntRange
    columns: IntRange
    access_levels: Weights
    storages: Weights
    column_types: Weights
    actors: tuple[Actor, ...]
    operations: Weights
    insert_rows: IntRange
    live_batch_size: IntRange
    ttl_seconds: IntRange
    schemas: tuple[TableSchema, ...] = ()

    def roles(self) -> dict[str, str]:
        """Identity name -> role, ``root`` (system) always included."""
        out = {"root": "system"}
        out.update({a.name: a.role for a in self.actors})
        return out

    def actors_with_role(self, role: str) -> tuple[str, ...]:
        return tuple(name for name, r in self.roles().items() if r == role)


DEFAULTS: dict[str, Any] = {
    "description": "",
    "tables": {
        "kinds": {"user": 3, "shared": 1, "stream": 1},
        "per_example": {"min": 1, "max": 3},
        "columns": {"min": 1, "max": 4},
        "access_levels": {"public": 1, "private": 1},
        "storages": {"local": 1},
    },
    "column_types": {"bigint": 3, "int": 2, "text": 3, "boolean": 1, "double": 1, "timestamp": 1, "json": 1},
    "actors": {"root": "system", "dba": "dba", "svc": "service", "user1": "user", "user2": "user"},
    "operations": dict(DEFAULT_WEIGHTS),  # one default weight per operation record (operations.py)
    "batches": {"insert_rows": {"min": 1, "max": 4}, "live_batch_size": {"min": 1, "max": 20}},
    "stream": {"ttl_seconds": {"min": 2, "max": 30}},
    "schemas": [],
}  # fmt: skip

_TOP_KEYS = (
    "name",
    "description",
    "tables",
    "column_types",
    "actors",
    "operations",
    "batches",
    "stream",
    "schemas",
)
_TABLE_KEYS = ("kinds", "per_example", "columns", "access_levels", "storages")
_BATCH_KEYS = ("insert_rows", "live_batch_size")
_STREAM_KEYS = ("ttl_seconds",)
_SCHEMA_KEYS = ("name", "kind", "columns", "ttl_seconds", "access_level", "storage")
_COLUMN_KEYS = ("name", "type", "primary_key", "not_null")


class _Reader:
    """Validates one workload document, naming the source and the key path in every error."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, problem: str, value: Any = attrs.NOTHING, hint: str = "") -> UsageError:
        got = "" if value is attrs.NOTHING else f" (got {value!r})"
        tip = f"; {hint}" if hint else ""
        return UsageError(f"workload {self.source}: [{key}] {problem}{got}{tip}")

    def table(self, data: Any, key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(key, "must be a table", data)
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise self.fail(
                f"{key}.{unknown[0]}" if key else unknown[0],
                "is not a known key",
                hint=f"valid keys here: {', '.join(allowed)}",
            )
        return data

    def weights(
        self, data: Any, key: str, valid: tuple[str, ...] | None, need_positive: bool = True
    ) -> Weights:
        if not isinstance(data, dict):
            raise self.fail(key, "must be a table of name = weight", data)
        out: dict[str, float] = {}
        for name, weight in data.items():
            if valid is not None and name not in valid:
                raise self.fail(
                    f"{key}.{name}", "is not a known name", hint=f"valid names: {', '.join(valid)}"
                )
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise self.fail(f"{key}.{name}", "weight must be a non-negative number", weight)
            if math.isnan(weight) or math.isinf(weight) or weight < 0:
                raise self.fail(f"{key}.{name}", "weight must be a non-negative finite number", weight)
            out[name] = weight
        if need_positive and not any(w > 0 for w in out.values()):
            raise self.fail(key, "needs at least one positive weight", data)
        return Weights.of(out)

    def int_range(self, data: Any, key: str, lowest: int) -> IntRange:
        data = self.table(data, key, ("min", "max"))
        if "min" not in data or "max" not in data:
            raise self.fail(key, "needs both min and max", data, hint="write e.g. { min = 1, max = 4 }")
        lo, hi = data["min"], data["max"]
        for bound, value in (("min", lo), ("max", hi)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(f"{key}.{bound}", "must be an integer", value)
        if lo < lowest:
            raise self.fail(f"{key}.min", f"must be at least {lowest}", lo)
        if hi < lo:
            raise self.fail(f"{key}.max", f"must be >= min ({lo})", hi)
        return IntRange(lo, hi)

    def identifier(self, value: Any, key: str, what: str) -> str:
        if not isinstance(value, str) or not _IDENT.match(value):
            raise self.fail(
                key, f"{what} must be 1-64 lowercase letters, digits or '_', starting with a letter", value
            )
        if value in _SQL_KEYWORDS:
            raise self.fail(key, f"{what} is a reserved SQL keyword", value, hint="choose another name")
        return value

    def actors(self, data: Any, key: str) -> tuple[Actor, ...]:
        if not isinstance(data, dict):
            raise self.fail(key, "must be a table of identity = role", data)
        out = []
        for name, role in data.items():
            if not _ACTOR.match(name):
                raise self.fail(
                    f"{key}.{name}", "identity names are 1-24 lowercase letters, digits or '_'", name
                )
            if role not in ROLES:
                raise self.fail(
                    f"{key}.{name}", "is not a role", role, hint=f"valid roles: {', '.join(ROLES)}"
                )
            if (name == "root") != (role == "system"):
                raise self.fail(
                    f"{key}.{name}",
                    "only 'root' has role 'system' (it is the server's own root user)",
                    role,
                )
            if name != "root":
                out.append(Actor(name, role))
        return tuple(out)

    def schema(self, data: Any, key: str) -> TableSchema:
        data = self.table(data, key, _SCHEMA_KEYS)
        for required in ("name", "kind", "columns"):
            if required not in data:
                raise self.fail(f"{key}.{required}", "is required")
        name = self.identifier(data["name"], f"{key}.name", "a table name")
        kind = data["kind"]
        if kind not in TABLE_KINDS:
            raise self.fail(
                f"{key}.kind", "is not a table kind", kind, hint=f"valid kinds: {', '.join(TABLE_KINDS)}"
            )
        cols_data = data["columns"]
        if not isinstance(cols_data, list) or not cols_data:
            raise self.fail(f"{key}.columns", "must be a non-empty list of column tables", cols_data)
        columns = []
        seen: set[str] = set()
        for i, col in enumerate(cols_data):
            ckey = f"{key}.columns[{i}]"
            col = self.table(col, ckey, _COLUMN_KEYS)
            if "name" not in col or "type" not in col:
                raise self.fail(ckey, "needs a name and a type", col)
            cname = col["name"]
            if cname in _RESERVED_COLUMNS:
                raise self.fail(f"{ckey}.name", "is a column KalamDB reserves", cname)
            cname = self.identifier(cname, f"{ckey}.name", "a column name")
            if cname in seen:
                raise self.fail(f"{ckey}.name", "appears twice in this table", cname)
            seen.add(cname)
            ctype = col["type"]
            if ctype not in COLUMN_TYPES:
                raise self.fail(
                    f"{ckey}.type",
                    "is not a column type",
                    ctype,
                    hint=f"valid types: {', '.join(COLUMN_TYPES)}",
                )
            flags = {}
            for flag in ("primary_key", "not_null"):
                value = col.get(flag, False)
                if not isinstance(value, bool):
                    raise self.fail(f"{ckey}.{flag}", "must be true or false", value)
                flags[flag] = value
            columns.append(ColumnSpec(cname, ctype, **flags))
        pks = [c.name for c in columns if c.primary_key]
        if len(pks) > 1:
            raise self.fail(f"{key}.columns", "has more than one primary_key column", pks)
        if kind in ("user", "shared") and not pks:
            raise self.fail(f"{key}.columns", f"a {kind.upper()} table needs one primary_key column")
        ttl = data.get("ttl_seconds")
        if kind == "stream":
            if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
                raise self.fail(f"{key}.ttl_seconds", "a STREAM table needs ttl_seconds >= 1", ttl)
        elif ttl is not None:
            raise self.fail(f"{key}.ttl_seconds", "only STREAM tables take ttl_seconds", ttl)
        level = data.get("access_level")
        if level is not None:
            if kind != "shared":
                raise self.fail(f"{key}.access_level", "only SHARED tables take an access_level", level)
            if level not in ACCESS_LEVELS:
                raise self.fail(
                    f"{key}.access_level",
                    "is not an access level",
                    level,
                    hint=f"valid: {', '.join(ACCESS_LEVELS)}",
                )
        storage = data.get("storage")
        if storage is not None:
            storage = self.identifier(storage, f"{key}.storage", "a storage id")
        return TableSchema(name, kind, tuple(columns), ttl, level, storage)


def workload_from_dict(data: Mapping[str, Any], name: str = "inline", source: str | None = None) -> Workload:
    """Validate a workload document (as parsed from TOML) and build the ``Workload``."""
    r = _Reader(source or f"<{name}>")
    doc = r.table(dict(data), "", _TOP_KEYS)
    tables = r.table(doc.get("tables", {}), "tables", _TABLE_KEYS)
    dt = DEFAULTS["tables"]
    batches = r.table(doc.get("batches", {}), "batches", _BATCH_KEYS)
    stream = r.table(doc.get("stream", {}), "stream", _STREAM_KEYS)
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise r.fail("description", "must be a string", description)
    wname = doc.get("name", name)
    if not isinstance(wname, str) or not wname:
        raise r.fail("name", "must be a non-empty string", wname)
    schemas_data = doc.get("schemas", [])
    if not isinstance(schemas_data, list):
        raise r.fail("schemas", "must be an array of tables ([[schemas]])", schemas_data)
    schemas = tuple(r.schema(s, f"schemas[{i}]") for i, s in enumerate(schemas_data))
    names = [s.name for s in schemas]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise r.fail("schemas", "two fixed schemas share a name", dup)
    storages = r.weights(tables.get("storages", dt["storages"]), "tables.storages", None)
    for sname, _ in storages:
        r.identifier(sname, f"tables.storages.{sname}", "a storage id")
    return Workload(
        name=wname,
        description=description,
        source=source,
        table_kinds=r.weights(tables.get("kinds", dt["kinds"]), "tables.kinds", TABLE_KINDS),
        tables_per_example=r.int_range(tables.get("per_example", dt["per_example"]), "tables.per_example", 1),
        columns=r.int_range(tables.get("columns", dt["columns"]), "tables.columns", 0),
        access_levels=r.weights(
            tables.get("access_levels", dt["access_levels"]), "tables.access_levels", ACCESS_LEVELS
        ),
        storages=storages,
        column_types=r.weights(
            doc.get("column_types", DEFAULTS["column_types"]), "column_types", COLUMN_TYPES
        ),
        actors=r.actors(doc.get("actors", DEFAULTS["actors"]), "actors"),
        operations=r.weights(doc.get("operations", DEFAULTS["operations"]), "operations", OPERATIONS),
        insert_rows=r.int_range(
            batches.get("insert_rows", DEFAULTS["batches"]["insert_rows"]), "batches.insert_rows", 1
        ),
        live_batch_size=r.int_range(
            batches.get("live_batch_size", DEFAULTS["batches"]["live_batch_size"]),
            "batches.live_batch_size",
            1,
        ),
        ttl_seconds=r.int_range(
            stream.get("ttl_seconds", DEFAULTS["stream"]["ttl_seconds"]), "stream.ttl_seconds", 1
        ),
        schemas=schemas,
    )


def models_dir() -> Path:
    """The ``models/`` directory shipped beside the package (a source checkout or editable install)."""
    return Path(__file__).resolve().parents[2] / "models"


def list_workloads(directory: Path | None = None) -> list[str]:
    """Names of the workload files in ``directory`` (default ``models_dir()``), sorted."""
    directory = directory or models_dir()
    return sorted(p.stem for p in directory.glob("*.toml"))


def resolve_workload_path(name_or_path: str | Path, search_dirs: tuple[Path, ...] = ()) -> Path:
    """A path as given if it exists, else ``<dir>/<name>.toml`` in ``search_dirs`` then ``models_dir()``."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.parent != Path("."):
        if candidate.is_file():
            return candidate
        raise UsageError(f"workload file {str(candidate)!r} does not exist; give a path to a .toml file or a name "
                         f"from {models_dir()} ({', '.join(list_workloads()) or 'none found'})")  # fmt: skip
    dirs = (*search_dirs, models_dir())
    for directory in dirs:
        path = Path(directory) / f"{name_or_path}.toml"
        if path.is_file():
            return path
    known = sorted({n for d in dirs if Path(d).is_dir() for n in list_workloads(Path(d))})
    raise UsageError(
        f"no workload named {str(name_or_path)!r} in {', '.join(str(d) for d in dirs)}; "
        f"known workloads: {', '.join(known) or 'none'}"
    )


def load_workload(name_or_path: str | Path = "default", search_dirs: tuple[Path, ...] = ()) -> Workload:
    """Load and validate a workload by name (a file in ``models/``) or by path."""
    path = resolve_workload_path(name_or_path, search_dirs)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"workload {path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise UsageError(f"workload {path}: cannot be read: {exc}") from exc
    return workload_from_dict(data, name=path.stem, source=str(path))
