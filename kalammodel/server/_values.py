"""Column types (§2.4): SQL type names, canonical python values, Arrow types and JSON cells.

A value is held in its *canonical* form everywhere inside the server (hot tier JSON, memory, events): a JSON-native
python value — int for BigInt/Int/SmallInt/Timestamp (µs)/DateTime (µs)/Date (days)/Time (µs), float for
Double/Float, bool, str for Text/Json/Uuid/Decimal, hex str for Bytes, list of floats for Embedding, None.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import re
import struct
import uuid
from typing import Any

import pyarrow as pa

__all__ = [
    "SqlFailure",
    "arrow_type",
    "canonical",
    "cell",
    "data_type_for_arrow",
    "parse_type",
    "to_arrow_value",
]


class SqlFailure(Exception):
    """A statement failed: HTTP ``status``, error ``code`` (§2.5), ``message``; ``preserve`` keeps the text for
    non-admin callers (otherwise they see the generic redacted message); ``bare`` = rejected before the statement
    ran: no "Statement N failed:" prefix and no ``details``."""

    def __init__(
        self,
        message: str,
        code: str = "SQL_EXECUTION_ERROR",
        status: int = 400,
        preserve: bool = True,
        bare: bool = False,
    ):
        self.message = message
        self.code = code
        self.status = status
        self.preserve = preserve
        self.bare = bare
        super().__init__(message)


def denied(message: str) -> SqlFailure:
    return SqlFailure(message, "PERMISSION_DENIED", 403, True)


_ALIASES = {
    "BIGINT": "BigInt",
    "INT8": "BigInt",
    "BIGSERIAL": "BigInt",
    "SERIAL8": "BigInt",
    "INT": "Int",
    "INTEGER": "Int",
    "INT4": "Int",
    "SERIAL": "Int",
    "SERIAL4": "Int",
    "SMALLINT": "SmallInt",
    "INT2": "SmallInt",
    "SMALLSERIAL": "SmallInt",
    "SERIAL2": "SmallInt",
    "DOUBLE": "Double",
    "FLOAT8": "Double",
    "DOUBLE PRECISION": "Double",
    "FLOAT": "Float",
    "REAL": "Float",
    "FLOAT4": "Float",
    "BOOLEAN": "Boolean",
    "BOOL": "Boolean",
    "TEXT": "Text",
    "VARCHAR": "Text",
    "CHAR": "Text",
    "STRING": "Text",
    "CHARACTER VARYING": "Text",
    "TIMESTAMP": "Timestamp",
    "DATETIME": "DateTime",
    "DATE": "Date",
    "TIME": "Time",
    "JSON": "Json",
    "JSONB": "Json",
    "BYTES": "Bytes",
    "BYTEA": "Bytes",
    "BLOB": "Bytes",
    "BINARY": "Bytes",
    "VARBINARY": "Bytes",
    "UUID": "Uuid",
}
_SERIALS = {"BIGSERIAL", "SERIAL8", "SERIAL", "SERIAL4", "SMALLSERIAL", "SERIAL2"}


def parse_type(text: str) -> tuple[Any, bool]:
    """``'VARCHAR(20)'`` → (data_type, is_serial). data_type is a string (``"Text"``) or a dict for
    ``{"Decimal": {...}}`` / ``{"Embedding": n}``. Raises SqlFailure naming the type when unknown."""
    t = " ".join(text.strip().upper().split())
    m = re.fullmatch(r"(DECIMAL|NUMERIC)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?", t)
    if m:
        return {"Decimal": {"precision": int(m.group(2) or 38), "scale": int(m.group(3) or 0)}}, False
    m = re.fullmatch(r"EMBEDDING\s*\(\s*(\d+)\s*\)", t)
    if m:
        return {"Embedding": int(m.group(1))}, False
    base = re.sub(r"\s*\(.*\)$", "", t)
    base = re.sub(r"\s+(WITHOUT|WITH) TIME ZONE$", "", base)
    if base in _ALIASES:
        return _ALIASES[base], base in _SERIALS
    raise SqlFailure(
        f"Unsupported data type '{text.strip()}'. Use one of BIGINT, INT, SMALLINT, DOUBLE, FLOAT, "
        "BOOLEAN, TEXT, TIMESTAMP, DATETIME, DATE, TIME, JSON, BYTES, UUID, DECIMAL(p,s), EMBEDDING(n)"
    )


def arrow_type(dt: Any) -> pa.DataType:
    """The Arrow type the query engine sees for a KalamDB data type."""
    if isinstance(dt, dict):
        if "Decimal" in dt:
            return pa.decimal128(dt["Decimal"]["precision"], dt["Decimal"]["scale"])
        return pa.list_(pa.float32())
    return {
        "BigInt": pa.int64(),
        "Int": pa.int32(),
        "SmallInt": pa.int16(),
        "Double": pa.float64(),
        "Float": pa.float32(),
        "Boolean": pa.bool_(),
        "Text": pa.string(),
        "Timestamp": pa.timestamp("us"),
        "DateTime": pa.timestamp("us", tz="UTC"),
        "Date": pa.date32(),
        "Time": pa.time64("us"),
        "Json": pa.string(),
        "Bytes": pa.binary(),
        "Uuid": pa.string(),
    }[dt]


def data_type_for_arrow(t: pa.DataType) -> Any:
    """§2.4 data_type of an expression column, from its Arrow type."""
    if pa.types.is_int64(t) or pa.types.is_uint64(t):
        return "BigInt"
    if pa.types.is_int32(t):
        return "Int"
    if pa.types.is_int16(t) or pa.types.is_int8(t):
        return "SmallInt"
    if pa.types.is_float64(t):
        return "Double"
    if pa.types.is_float32(t):
        return "Float"
    if pa.types.is_boolean(t):
        return "Boolean"
    if pa.types.is_timestamp(t):
        return "Timestamp"
    if pa.types.is_date32(t):
        return "Date"
    if pa.types.is_time64(t):
        return "Time"
    if pa.types.is_decimal(t):
        return {"Decimal": {"precision": t.precision, "scale": t.scale}}
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "Bytes"
    return "Text"


_EPOCH = _dt.datetime(1970, 1, 1)


def _parse_timestamp(v: str) -> int:
    s = v.strip().replace("T", " ")
    tz = None
    if s.endswith("Z"):
        s, tz = s[:-1], _dt.timezone.utc
    try:
        d = _dt.datetime.fromisoformat(s)
    except ValueError:
        d = _dt.datetime.fromisoformat(s + (" 00:00:00" if len(s) == 10 else ""))
    if d.tzinfo is None and tz is not None:
        d = d.replace(tzinfo=tz)
    if d.tzinfo is not None:
        d = d.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    delta = d - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def canonical(dt: Any, v: Any, column: str) -> Any:
    """Coerce a python value (from a literal, a parameter or a query result) to the canonical form of ``dt``;
    raises SqlFailure naming the column and the value when it cannot be converted."""
    if v is None:
        return None
    try:
        if isinstance(dt, dict):
            if "Decimal" in dt:
                scale = dt["Decimal"]["scale"]
                d = decimal.Decimal(str(v)).quantize(decimal.Decimal(1).scaleb(-scale))
                return str(d)
            if isinstance(v, str):
                v = json.loads(v)
            return [float(x) for x in v]
        if dt in ("BigInt", "Int", "SmallInt"):
            if isinstance(v, bool):
                return int(v)
            if isinstance(v, float):
                if v != int(v):
                    raise ValueError("not an integer")
                return int(v)
            if isinstance(v, decimal.Decimal):
                return int(v)
            return int(str(v).strip())
        if dt in ("Double", "Float"):
            f = float(v)
            if dt == "Float":
                f = struct.unpack("f", struct.pack("f", f))[0]
            return f
        if dt == "Boolean":
            if isinstance(v, bool):
                return v
            if isinstance(v, (int, float)):
                return bool(v)
            s = str(v).strip().lower()
            if s in ("true", "t", "1", "yes"):
                return True
            if s in ("false", "f", "0", "no"):
                return False
            raise ValueError("not a boolean")
        if dt in ("Text", "Json"):
            if isinstance(v, (dict, list)):
                return json.dumps(v)
            if isinstance(v, bool):
                return "true" if v else "false"
            return str(v)
        if dt == "Uuid":
            return str(uuid.UUID(str(v)))
        if dt in ("Timestamp", "DateTime"):
            if isinstance(v, _dt.datetime):
                return _parse_timestamp(v.isoformat())
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return int(v)
            return _parse_timestamp(str(v))
        if dt == "Date":
            if isinstance(v, _dt.date):
                return (v - _dt.date(1970, 1, 1)).days
            if isinstance(v, int):
                return v
            return (_dt.date.fromisoformat(str(v).strip()[:10]) - _dt.date(1970, 1, 1)).days
        if dt == "Time":
            if isinstance(v, _dt.time):
                return ((v.hour * 60 + v.minute) * 60 + v.second) * 1_000_000 + v.microsecond
            if isinstance(v, int):
                return v
            t = _dt.time.fromisoformat(str(v).strip())
            return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond
        if dt == "Bytes":
            if isinstance(v, (bytes, bytearray)):
                return bytes(v).hex()
            if isinstance(v, list):
                return bytes(v).hex()
            return str(v).encode().hex()
    except (ValueError, TypeError, ArithmeticError) as e:
        raise SqlFailure(f"Invalid value {v!r} for column '{column}' of type {type_label(dt)}: {e}") from None
    raise SqlFailure(f"Unsupported data type {dt!r} for column '{column}'")


def type_label(dt: Any) -> str:
    if isinstance(dt, dict):
        return json.dumps(dt)
    return str(dt)


def to_arrow_value(dt: Any, v: Any) -> Any:
    """Canonical value → the python value pyarrow accepts for ``arrow_type(dt)``."""
    if v is None:
        return None
    if isinstance(dt, dict):
        return decimal.Decimal(v) if "Decimal" in dt else v
    if dt == "Bytes":
        return bytes.fromhex(v)
    if dt in ("Timestamp", "DateTime"):
        return v  # pyarrow takes int µs for timestamp('us')
    if dt == "Date":
        return _dt.date(1970, 1, 1) + _dt.timedelta(days=v)
    if dt == "Time":
        return _dt.time(v // 3_600_000_000, (v // 60_000_000) % 60, (v // 1_000_000) % 60, v % 1_000_000)
    return v


def cell(dt: Any, v: Any) -> Any:
    """A python value read from an Arrow result → its JSON cell (§2.4)."""
    if v is None:
        return None
    if isinstance(dt, dict):
        if "Decimal" in dt:
            return str(v)
        return [float(x) for x in v]
    if dt == "BigInt":
        return str(int(v))
    if dt in ("Timestamp", "DateTime"):
        if isinstance(v, _dt.datetime):
            if v.tzinfo is not None:
                v = v.astimezone(_dt.timezone.utc).replace(tzinfo=None)
            delta = v - _EPOCH
            return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
        return int(v)
    if dt == "Date":
        if isinstance(v, _dt.date):
            return (v - _dt.date(1970, 1, 1)).days
        return int(v)
    if dt == "Time":
        if isinstance(v, _dt.time):
            return ((v.hour * 60 + v.minute) * 60 + v.second) * 1_000_000 + v.microsecond
        return int(v)
    if dt == "Bytes":
        if isinstance(v, str):
            v = bytes.fromhex(v)
        return list(v)
    if dt in ("Int", "SmallInt"):
        return int(v)
    if dt in ("Double", "Float"):
        return float(v)
    if dt == "Boolean":
        return bool(v)
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return list(v)
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        return v.isoformat()
    return v if isinstance(v, (str, int, float, bool, list)) else str(v)
