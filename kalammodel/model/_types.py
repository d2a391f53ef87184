"""Value types, columns, table specs, roles and limits of the reference model.

Values are held in the *decoded* Python form the wire client produces (ARCHITECTURE.md "Wire client"):

| type      | Python value                  | SQL literal rendered by :func:`render_value`            |
|-----------|-------------------------------|---------------------------------------------------------|
| BIGINT    | ``int`` (int64 range)         | ``42``                                                  |
| INT       | ``int`` (int32 range)         | ``42``                                                  |
| SMALLINT  | ``int`` (int16 range)         | ``42``                                                  |
| DOUBLE    | ``float`` (finite)            | ``repr(x)``: shortest round-trip text, e.g. ``0.1``     |
| BOOLEAN   | ``bool``                      | ``true`` / ``false``                                    |
| TEXT      | ``str`` (no NUL)              | ``'it''s'`` (quotes doubled, nothing else escaped)      |
| TIMESTAMP | ``int`` µs since the epoch    | ``'2024-05-01 12:00:00.000123'`` (UTC, always 6 digits) |
| JSON      | ``str`` of canonical JSON     | ``'{"a":1}'`` (compact, sorted keys)                    |

TIMESTAMP literals are strings: KalamDB (like DataFusion) coerces a string literal to the column's timestamp
type, the wire returns µs integers (PROTOCOL §2.4). The fixed six-digit fraction keeps every value exact.
Generated values stay within years 1900..2260 so that every engine renders and parses them the same way
(DataFusion overflows past 2262-04-11).

DOUBLE values are exact binary floats; ``repr`` is the shortest text that parses back to the same float, and
the server prints doubles the same way (shortest round trip), so DOUBLE cells are compared exactly
(``-0.0 == 0.0``). NaN and infinities are never generated: PROTOCOL §2.4 says they cannot be encoded.
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import math
from typing import Any

import attrs

__all__ = [
    "ACTOR_ROLES",
    "AccessLevel",
    "Column",
    "ColumnType",
    "Limits",
    "RESERVED_COLUMNS",
    "Role",
    "SYSTEM_COLUMNS",
    "TableKind",
    "TableSpec",
    "canonical_json",
    "render_timestamp",
    "render_value",
]

SYSTEM_COLUMNS = ("_seq", "_deleted")
# PROTOCOL §4.2: names a user column may not take.
RESERVED_COLUMNS = frozenset(
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

_EPOCH = _dt.datetime(1970, 1, 1)
TIMESTAMP_MIN = -2208988800_000000  # 1900-01-01 00:00:00
# DataFusion (KalamDB's engine) parses timestamp literals through nanoseconds since the epoch, which overflow
# after 2262-04-11: literals beyond that fail to compare. The model stays inside that range.
TIMESTAMP_MAX = 9183110400_000000 - 1  # 2260-12-31 23:59:59.999999


class ColumnType(str, enum.Enum):
    """A SQL column type the tester generates (PROTOCOL §2.4)."""

    BIGINT = "BIGINT"
    INT = "INT"
    SMALLINT = "SMALLINT"
    DOUBLE = "DOUBLE"
    BOOLEAN = "BOOLEAN"
    TEXT = "TEXT"
    TIMESTAMP = "TIMESTAMP"
    JSON = "JSON"

    def __repr__(self) -> str:
        return f"ColumnType.{self.name}"

    @property
    def sql(self) -> str:
        """The type as written in CREATE TABLE / ALTER TABLE."""
        return self.value

    @property
    def is_integer(self) -> bool:
        return self in (ColumnType.BIGINT, ColumnType.INT, ColumnType.SMALLINT)

    @property
    def orderable(self) -> bool:
        """Whether comparisons and ORDER BY on this type are predicted (JSON is compared by value only)."""
        return self is not ColumnType.JSON

    def check(self, value: Any) -> None:
        """Raise ``ValueError`` naming the value when it is not a valid non-NULL value of this type."""
        if value is None:
            raise ValueError(f"NULL is not a {self.value} value here")
        if self.is_integer or self is ColumnType.TIMESTAMP:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(
                    f"{self.value} value must be int (got {value!r} that is a {type(value).__name__})"
                )
            low, high = _INT_RANGES[self]
            if not low <= value <= high:
                raise ValueError(f"{self.value} value {value!r} is outside [{low}, {high}]")
        elif self is ColumnType.DOUBLE:
            if not isinstance(value, float):
                raise ValueError(
                    f"DOUBLE value must be float (got {value!r} that is a {type(value).__name__})"
                )
            if not math.isfinite(value):
                raise ValueError(f"DOUBLE value must be finite (got {value!r}); the wire cannot encode it")
        elif self is ColumnType.BOOLEAN:
            if not isinstance(value, bool):
                raise ValueError(
                    f"BOOLEAN value must be bool (got {value!r} that is a {type(value).__name__})"
                )
        elif self is ColumnType.TEXT:
            if not isinstance(value, str):
                raise ValueError(f"TEXT value must be str (got {value!r} that is a {type(value).__name__})")
            if "\x00" in value:
                raise ValueError(f"TEXT value {value!r} contains NUL, which SQL text cannot carry")
        elif self is ColumnType.JSON:
            if not isinstance(value, str):
                raise ValueError(f"JSON value must be str (got {value!r} that is a {type(value).__name__})")
            try:
                canon = canonical_json(value)
            except ValueError as exc:
                raise ValueError(f"JSON value {value!r} does not parse: {exc}") from None
            if canon != value:
                raise ValueError(f"JSON value {value!r} is not canonical; use canonical_json() -> {canon!r}")

    def normalise(self, value: Any) -> Any:
        """The comparable form of a decoded wire value of this type (NULL stays None)."""
        if value is None:
            return None
        if self is ColumnType.DOUBLE:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                f = float(value)
                return 0.0 if f == 0.0 else f
            return value
        if self is ColumnType.JSON:
            if isinstance(value, str):
                try:
                    return ("json", canonical_json(value))
                except ValueError:
                    return value
            return ("json", json.dumps(value, separators=(",", ":"), sort_keys=True))
        if (self.is_integer or self is ColumnType.TIMESTAMP) and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                return value
        return value


_INT_RANGES = {
    ColumnType.BIGINT: (-(2**63), 2**63 - 1),
    ColumnType.INT: (-(2**31), 2**31 - 1),
    ColumnType.SMALLINT: (-(2**15), 2**15 - 1),
    ColumnType.TIMESTAMP: (TIMESTAMP_MIN, TIMESTAMP_MAX),
}


def canonical_json(text: str) -> str:
    """The compact, key-sorted form of a JSON text (raises ``ValueError`` when it does not parse)."""
    return json.dumps(json.loads(text), separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def render_timestamp(micros: int) -> str:
    """``'YYYY-MM-DD HH:MM:SS.ffffff'`` (UTC) for µs since the epoch, unquoted."""
    moment = _EPOCH + _dt.timedelta(microseconds=micros)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f").rjust(26, "0")


def render_value(col_type: ColumnType, value: Any) -> str:
    """The SQL literal for ``value`` of ``col_type``; ``None`` renders ``NULL``.

    Raises ``ValueError`` naming the value when it is not a valid value of the type.
    """
    if value is None:
        return "NULL"
    col_type = ColumnType(col_type)
    col_type.check(value)
    if col_type.is_integer:
        return str(value)
    if col_type is ColumnType.DOUBLE:
        return repr(value)
    if col_type is ColumnType.BOOLEAN:
        return "true" if value else "false"
    if col_type is ColumnType.TIMESTAMP:
        return _quote(render_timestamp(value))
    return _quote(value)  # TEXT, JSON (already canonical)


class TableKind(str, enum.Enum):
    """USER tables are per user, SHARED global, STREAM per user with a TTL (PROTOCOL §4, §8)."""

    USER = "USER"
    SHARED = "SHARED"
    STREAM = "STREAM"

    def __repr__(self) -> str:
        return f"TableKind.{self.name}"


class AccessLevel(str, enum.Enum):
    """ACCESS_LEVEL of a SHARED table (PROTOCOL §6.5); PRIVATE is the default."""

    PUBLIC = "PUBLIC"
    PRIVATE = "PRIVATE"
    RESTRICTED = "RESTRICTED"
    DBA = "DBA"

    def __repr__(self) -> str:
        return f"AccessLevel.{self.name}"


class Role(str, enum.Enum):
    """KalamDB roles, lowest to highest (PROTOCOL §6.1)."""

    USER = "user"
    SERVICE = "service"
    DBA = "dba"
    SYSTEM = "system"

    def __repr__(self) -> str:
        return f"Role.{self.name}"

    @property
    def is_admin(self) -> bool:
        return self in (Role.DBA, Role.SYSTEM)


# The default pool of identities (pool name -> role). The runner's pool may be larger; pass it to Model.
ACTOR_ROLES: dict[str, Role] = {
    "root": Role.SYSTEM,
    "dba": Role.DBA,
    "svc": Role.SERVICE,
    "user1": Role.USER,
    "user2": Role.USER,
}


def _column_type(value: Any) -> ColumnType:
    return value if isinstance(value, ColumnType) else ColumnType(str(value).upper())


@attrs.frozen
class Column:
    """A user column: name (lowercase identifier), type, NOT NULL flag, PRIMARY KEY flag, and the literal
    ``DEFAULT`` value (a cell of the type, None: no DEFAULT) an INSERT that omits the column stores (§4.1)."""

    name: str = attrs.field(validator=attrs.validators.instance_of(str))
    type: ColumnType = attrs.field(converter=_column_type)
    nullable: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    primary_key: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    default: Any = attrs.field(default=None)

    @default.validator
    def _check_default(self, attribute: attrs.Attribute, value: Any) -> None:
        if value is None:
            return
        if self.primary_key:
            raise ValueError(f"column {self.name!r}: a DEFAULT on the PRIMARY KEY is not modelled")
        self.type.check(value)

    def render(self) -> str:
        """The column definition of CREATE TABLE / ADD COLUMN, in the canonical SQL style."""
        from ._style import CANONICAL, render_column  # _style builds on this module

        return render_column(CANONICAL, self)

    @property
    def not_null(self) -> bool:
        return self.primary_key or not self.nullable

    def to_data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type.value,
            "nullable": self.nullable,
            "primary_key": self.primary_key,
            **({} if self.default is None else {"default": self.default}),
        }

    @classmethod
    def from_data(cls, data: Any) -> Column:
        if isinstance(data, Column):
            return data
        if not isinstance(data, dict):
            raise TypeError(f"a column must be a dict with name/type/nullable/primary_key (got {data!r})")
        return cls(**data)


def _columns(value: Any) -> tuple[Column, ...]:
    return tuple(Column.from_data(c) for c in value)


def _opt_access_level(value: Any) -> AccessLevel | None:
    if value is None or isinstance(value, AccessLevel):
        return value
    return value if isinstance(value, AccessLevel) else AccessLevel(str(value).upper())


_opt_int = attrs.validators.optional(attrs.validators.instance_of(int))
_opt_text = attrs.validators.optional(attrs.validators.instance_of(str))


@attrs.frozen
class TableSpec:
    """What CREATE TABLE says: name, kind, columns and the WITH options (PROTOCOL §4.1).

    ``flush_policy`` is the FLUSH_POLICY text (``"rows:100"``, ``"interval:60"``, both joined by ``,``) or None.
    """

    name: str = attrs.field(validator=attrs.validators.instance_of(str))
    kind: TableKind = attrs.field(converter=lambda v: v if isinstance(v, TableKind) else TableKind(str(v).upper()))
    columns: tuple[Column, ...] = attrs.field(converter=_columns)
    ttl_seconds: int | None = attrs.field(default=None, validator=_opt_int)
    access_level: AccessLevel | None = attrs.field(default=None, converter=_opt_access_level)
    storage_id: str | None = attrs.field(default=None, validator=_opt_text)
    flush_policy: str | None = attrs.field(default=None, validator=_opt_text)

    @property
    def primary_key(self) -> Column | None:
        for column in self.columns:
            if column.primary_key:
                return column
        return None

    def render(self, ns: str) -> str:
        """The CREATE TABLE statement in namespace ``ns``, in the canonical SQL style."""
        from ._style import CANONICAL, render_create_table  # _style builds on this module

        return render_create_table(CANONICAL, self, ns)

    def to_data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "columns": [c.to_data() for c in self.columns],
            "ttl_seconds": self.ttl_seconds,
            "access_level": None if self.access_level is None else self.access_level.value,
            "storage_id": self.storage_id,
            "flush_policy": self.flush_policy,
        }

    @classmethod
    def from_data(cls, data: Any) -> TableSpec:
        if isinstance(data, TableSpec):
            return data
        if not isinstance(data, dict):
            raise TypeError(f"a table spec must be a dict (got {data!r})")
        return cls(**data)


@attrs.frozen
class Limits:
    """The server's result limits (PROTOCOL §3): SELECT without LIMIT returns at most ``default_query_limit``."""

    default_query_limit: int = 1000
    max_query_limit: int = 100000

    def effective(self, limit: int | None) -> int:
        """How many rows a SELECT with this LIMIT (None: none written) may return at most."""
        if limit is None:
            return min(self.default_query_limit, self.max_query_limit)
        return min(limit, self.max_query_limit)
