"""JSON-safe data and short text: what the corpus stores of values that JSON cannot hold, and how it shows them."""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import json
import math
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

#: longest text kept for an expected/actual repr or shown in a report
MAX_TEXT = 4000


def jsonable(value: Any, _depth: int = 0) -> Any:  # Any: any value a model or server produced
    """``value`` as JSON-safe data: attrs records become dicts (with their class name under ``type``), tuples
    and sets lists, Decimal and non-finite floats strings; anything else its repr."""
    if _depth > 40:
        return repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, enum.Enum):
        return jsonable(value.value, _depth + 1)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return {"bytes_hex": bytes(value).hex()}
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, _depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(v, _depth + 1) for v in value), key=repr)
    if attrs.has(type(value)):
        data: dict[str, Any] = {}
        for field in attrs.fields(type(value)):
            data[field.name] = jsonable(getattr(value, field.name), _depth + 1)
        data.setdefault("type", type(value).__name__)
        return data
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return repr(value)


def text_of(value: Any) -> str | None:  # Any: as jsonable
    """The repr of a value that is not plain JSON data (an expectation record, an outcome), else None."""
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return None
    return clip(repr(value))


def clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def show(value: Any, limit: int = MAX_TEXT) -> str:  # Any: JSON data
    """JSON data as one line of text (a string as it is), clipped to ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return clip(text, limit)


def public_url(url: str | None) -> str | None:
    """``url`` without user info, query or fragment (a case file never carries credentials or tokens)."""
    if url is None:
        return None
    parts = urllib.parse.urlsplit(str(url))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "divergence"


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(path)


def now() -> str:
    """The current UTC time in RFC 3339, to the second: ``2026-05-04T10:50:03Z``."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
