"""Records for SQL results and the decoding of KalamDB's JSON cells (PROTOCOL.md §2.3, §2.4, §10.4).

The server sends every cell as JSON and names its type in ``schema[].data_type``. Decoding turns the JSON
into the Python value a test compares against:

=====================  ======================  =====================================
``data_type``          JSON cell               Python value
=====================  ======================  =====================================
BigInt                 string ``"123"``        ``int`` (also ``_seq``, COUNT, SUM)
Int, SmallInt          number                  ``int``
Double, Float          number                  ``float`` (Float is f32 widened)
Boolean                bool                    ``bool``
Text                   string                  ``str`` (any other JSON passes as is)
Timestamp, DateTime    number (µs)             ``int``
Date                   number (days)           ``int``
Time                   number (µs)             ``int``
Json                   string (JSON text)      ``str``, exactly as sent
Uuid                   string                  ``str``
{"Decimal": {...}}     string ``"200.75"``     ``decimal.Decimal``
Bytes                  array of byte numbers   ``bytes``
{"Embedding": n}       array of numbers        ``list[float]``
File, unknown types    anything                as sent
any                    null                    ``None``
=====================  ======================  =====================================

Expression columns whose Arrow type has no KalamDB equivalent are labelled ``Text`` by the server while
the cell keeps its own JSON type (e.g. an ``Int8`` is a number), so ``Text`` lets any JSON value through.
A cell that does not fit its declared type raises :class:`~kalammodel.errors.TransportError` naming the
column, the type and the value.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from kalammodel.errors import TransportError

__all__ = [
    "Column",
    "QueryResult",
    "SqlResponse",
    "decode_cell",
    "decode_live_row",
    "decode_query_result",
    "decode_sql_response",
    "parse_columns",
]

#: Column names whose cells are always BigInt strings, even without a schema (live rows).
SEQ_COLUMN = "_seq"


@attrs.frozen
class Column:
    """One column of a result: ``schema[i]`` of a SQL result or of a subscription ack (§2.3)."""

    name: str
    #: ``"BigInt"``, ``"Text"``, ... or an object such as ``{"Decimal": {"precision": 10, "scale": 2}}``.
    data_type: Any
    index: int
    #: Subset of ``("pk", "nn", "uq")``.
    flags: tuple[str, ...] = attrs.field(default=(), converter=tuple)

    @property
    def type_name(self) -> str:
        """The type's name without parameters: ``"Decimal"`` for ``{"Decimal": {...}}``."""
        return _type_name(self.data_type)

    @property
    def is_primary_key(self) -> bool:
        return "pk" in self.flags


@attrs.frozen
class QueryResult:
    """One entry of ``results``: a row set (SELECT) or a statement outcome (DML, DDL)."""

    columns: list[Column] = attrs.field(factory=list)
    #: Decoded rows, each a tuple in ``columns`` order.
    rows: list[tuple[Any, ...]] = attrs.field(factory=list)
    row_count: int = 0
    message: str | None = None
    as_user: str | None = None
    raw: Any = attrs.field(default=None, repr=False, eq=False)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def dicts(self) -> list[dict[str, Any]]:
        """The rows as dicts keyed by column name."""
        names = self.column_names
        return [dict(zip(names, row, strict=True)) for row in self.rows]

    def column(self, name: str) -> list[Any]:
        """All values of the column ``name``."""
        try:
            i = self.column_names.index(name)
        except ValueError:
            raise KeyError(f"no column {name!r} in result; columns are {self.column_names}") from None
        return [row[i] for row in self.rows]


@attrs.frozen
class SqlResponse:
    """A successful answer of ``POST /v1/api/sql``."""

    results: list[QueryResult] = attrs.field(factory=list)
    #: Server-side time in milliseconds.
    took: float | None = None
    #: The JSON body as received.
    raw: Any = attrs.field(default=None, repr=False, eq=False)

    @property
    def result(self) -> QueryResult:
        """The only result; raises :class:`TransportError` when there is not exactly one."""
        if len(self.results) != 1:
            raise TransportError(
                f"expected exactly one result in the response, got {len(self.results)}: "
                f"{[r.message for r in self.results]!r}"
            )
        return self.results[0]


def _type_name(data_type: Any) -> str:
    if isinstance(data_type, str):
        return data_type
    if isinstance(data_type, Mapping) and len(data_type) == 1:
        return next(iter(data_type))
    return repr(data_type)


def _fail(column: str | None, data_type: Any, value: Any, expected: str) -> TransportError:
    where = f"column {column!r}" if column is not None else "a cell"
    return TransportError(
        f"cannot decode {where} of data_type {data_type!r}: expected {expected}, got {value!r} "
        f"(a {type(value).__name__}); the server's cell encoding differs from PROTOCOL.md §2.4"
    )


def _int(value: Any, column: str | None, data_type: Any, *, allow_str: bool) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if allow_str and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise _fail(column, data_type, value, "an integer string or number" if allow_str else "an integer")


def _float(value: Any, column: str | None, data_type: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise _fail(column, data_type, value, "a number")


def _str(value: Any, column: str | None, data_type: Any) -> str:
    if isinstance(value, str):
        return value
    raise _fail(column, data_type, value, "a string")


def _decimal(value: Any, column: str | None, data_type: Any) -> decimal.Decimal:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        try:
            return decimal.Decimal(str(value))
        except decimal.InvalidOperation:
            pass
    raise _fail(column, data_type, value, "a decimal string")


def _bytes(value: Any, column: str | None, data_type: Any) -> bytes:
    if isinstance(value, list):
        try:
            return bytes(value)
        except (TypeError, ValueError):
            pass
    raise _fail(column, data_type, value, "an array of byte numbers 0..255")


def _embedding(value: Any, column: str | None, data_type: Any) -> list[float]:
    if isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        dim = data_type.get("Embedding") if isinstance(data_type, Mapping) else None
        if isinstance(dim, int) and len(value) != dim:
            raise _fail(column, data_type, value, f"{dim} numbers")
        return [float(v) for v in value]
    raise _fail(column, data_type, value, "an array of numbers")


def decode_cell(value: Any, data_type: Any, column: str | None = None) -> Any:
    """Decode one JSON cell of the given ``data_type`` (see the module table).

    ``column`` only serves the error message.
    """
    if value is None:
        return None
    name = _type_name(data_type)
    if name == "BigInt":
        return _int(value, column, data_type, allow_str=True)
    if name in ("Int", "SmallInt"):
        return _int(value, column, data_type, allow_str=False)
    if name in ("Timestamp", "DateTime", "Date", "Time"):
        return _int(value, column, data_type, allow_str=True)
    if name in ("Double", "Float"):
        return _float(value, column, data_type)
    if name == "Boolean":
        if isinstance(value, bool):
            return value
        raise _fail(column, data_type, value, "true or false")
    if name == "Text":
        return value
    if name in ("Json", "Uuid"):
        return _str(value, column, data_type)
    if name == "Decimal":
        return _decimal(value, column, data_type)
    if name == "Bytes":
        return _bytes(value, column, data_type)
    if name == "Embedding":
        return _embedding(value, column, data_type)
    return value


def parse_columns(schema: Iterable[Mapping[str, Any]] | None) -> list[Column]:
    """Parse a ``schema`` array into columns sorted by ``index``; checks the indexes are 0..n-1."""
    if schema is None:
        return []
    columns: list[Column] = []
    for i, field in enumerate(schema):
        if not isinstance(field, Mapping) or "name" not in field or "data_type" not in field:
            raise TransportError(
                f"schema field #{i} is not a {{name, data_type, index}} object: {field!r} (PROTOCOL.md §2.3)"
            )
        flags = field.get("flags") or ()
        columns.append(Column(field["name"], field["data_type"], int(field.get("index", i)), flags))
    columns.sort(key=lambda c: c.index)
    if [c.index for c in columns] != list(range(len(columns))):
        raise TransportError(
            f"schema indexes are not 0..{len(columns) - 1}: {[(c.name, c.index) for c in columns]}"
        )
    return columns


def _decode_rows(columns: Sequence[Column], rows: Any) -> list[tuple[Any, ...]]:
    if rows is None:
        return []
    if not isinstance(rows, list):
        raise TransportError(f"'rows' is not an array: {rows!r}")
    out: list[tuple[Any, ...]] = []
    for n, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise TransportError(
                f"row #{n} has {len(row) if isinstance(row, list) else 'no'} cells but the schema has "
                f"{len(columns)} columns {[c.name for c in columns]}: {row!r}"
            )
        out.append(tuple(decode_cell(v, c.data_type, c.name) for v, c in zip(row, columns, strict=True)))
    return out


def decode_query_result(obj: Mapping[str, Any]) -> QueryResult:
    """Decode one element of a success envelope's ``results`` (§2.3)."""
    if not isinstance(obj, Mapping):
        raise TransportError(f"a result is not a JSON object: {obj!r}")
    columns = parse_columns(obj.get("schema"))
    rows = _decode_rows(columns, obj.get("rows"))
    row_count = obj.get("row_count", len(rows))
    if not isinstance(row_count, int) or isinstance(row_count, bool):
        raise TransportError(f"'row_count' is not an integer: {row_count!r}")
    return QueryResult(
        columns=columns,
        rows=rows,
        row_count=row_count,
        message=obj.get("message"),
        as_user=obj.get("as_user"),
        raw=obj,
    )


def decode_sql_response(body: Mapping[str, Any]) -> SqlResponse:
    """Decode a success envelope ``{"status":"success","results":[...],"took":...}`` (§2.3)."""
    results = body.get("results")
    if not isinstance(results, list):
        raise TransportError(f"success envelope without a 'results' array: {str(body)[:200]}")
    took = body.get("took")
    return SqlResponse(
        results=[decode_query_result(r) for r in results],
        took=float(took) if isinstance(took, (int, float)) and not isinstance(took, bool) else None,
        raw=body,
    )


def decode_live_row(row: Mapping[str, Any], columns: Sequence[Column] | None = None) -> dict[str, Any]:
    """Decode a live-query row (a JSON object keyed by column, §10.4).

    With the subscription ack's ``columns``, every known key is decoded by its type. Keys the schema does
    not list (or all keys, without a schema) pass as is, except ``_seq`` which is always a BigInt.
    Update rows are partial (only changed or non-null columns): absent keys stay absent.
    """
    if not isinstance(row, Mapping):
        raise TransportError(f"a live row is not a JSON object: {row!r}")
    by_name = {c.name: c for c in columns or ()}
    out: dict[str, Any] = {}
    for key, value in row.items():
        col = by_name.get(key)
        if col is not None:
            out[key] = decode_cell(value, col.data_type, key)
        elif key == SEQ_COLUMN:
            out[key] = decode_cell(value, "BigInt", key)
        else:
            out[key] = value
    return out
