"""The wire of KalamDB's HTTP API below both request paths of the client (PROTOCOL.md §1–§2.5).

Paths, the keep-alive expiry, decoding an answer of ``POST /v1/api/sql`` into a :class:`SqlResponse` or the
:class:`SqlError` it carries, and the :class:`TransportError` of a request that got no answer. ``_http`` (the
``httpx`` path) and ``_ahead`` (requests sent ahead on raw ``http.client`` connections) both import this
module; it imports neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from kalammodel.errors import SqlError, TransportError

from ._results import SqlResponse, decode_sql_response

__all__ = [
    "HEALTH_PATH",
    "KEEPALIVE_EXPIRY_S",
    "LOGIN_PATH",
    "REFRESH_PATH",
    "SETUP_PATH",
    "SQL_PATH",
    "STATUS_PATH",
    "body_json",
    "error_parts",
    "sql_error",
    "sql_response",
    "transport_error",
]

SQL_PATH = "/v1/api/sql"
LOGIN_PATH = "/v1/api/auth/login"
REFRESH_PATH = "/v1/api/auth/refresh"
SETUP_PATH = "/v1/api/auth/setup"
STATUS_PATH = "/v1/api/auth/status"
HEALTH_PATH = "/health"


#: seconds an idle keep-alive connection is kept by the client (below the servers' 5 s)
KEEPALIVE_EXPIRY_S = 2.0


def error_parts(body: Any) -> tuple[str, str] | None:
    """(code, message) of an error envelope (§2.5) or of the ``{"error":kind,"message"}`` auth/guard shape."""
    if not isinstance(body, Mapping):
        return None
    err = body.get("error")
    if isinstance(err, Mapping):
        return str(err.get("code", "UNKNOWN")), str(err.get("message", ""))
    if isinstance(err, str):
        return err, str(body.get("message", ""))
    return None


def body_json(resp: httpx.Response) -> tuple[Any, bool]:
    try:
        return resp.json(), True
    except (ValueError, UnicodeDecodeError):
        return None, False


def sql_error(resp: httpx.Response, sql: str | None, cls: type[SqlError] = SqlError) -> SqlError:
    """The :class:`SqlError` describing a response that is not a success."""
    body, ok = body_json(resp)
    if not ok:
        head = resp.content[:200]
        return cls(
            resp.status_code,
            "NON_JSON_BODY",
            f"{resp.request.method} {resp.request.url} answered HTTP {resp.status_code} with a body that is "
            f"not JSON (first 200 bytes: {head!r}); is a proxy or another service on this port?",
            sql,
        )
    parts = error_parts(body)
    if parts is None:
        return cls(
            resp.status_code,
            "UNEXPECTED_BODY",
            f"{resp.request.method} {resp.request.url} answered HTTP {resp.status_code} with JSON that is "
            f"neither a success nor an error envelope: {str(body)[:200]}",
            sql,
            body,
        )
    code, message = parts
    return cls(resp.status_code, code, message, sql, body)


def sql_response(resp: httpx.Response, sql: str) -> SqlResponse:
    """The decoded answer of ``POST /v1/api/sql``; :class:`SqlError` unless it is a success envelope."""
    data, ok = body_json(resp)
    if resp.status_code != 200 or not ok or not isinstance(data, Mapping) or data.get("status") != "success":
        raise sql_error(resp, sql)
    return decode_sql_response(data)


def transport_error(kind: str, method: str, url: str, exc: BaseException, timeout: float) -> TransportError:
    """The :class:`TransportError` for a request that got no answer: ``kind`` is ``timeout`` (none within
    ``timeout``), ``connect`` (no connection) or ``reset`` (the connection closed under it)."""
    if kind == "timeout":
        return TransportError(
            f"{method} {url}: no answer within {timeout:g}s ({type(exc).__name__}); the server "
            "is overloaded, stuck, or the request is very slow — raise the client timeout if expected"
        )
    if kind == "connect":
        return TransportError(
            f"{method} {url}: cannot connect ({exc}); is the server running and listening there?"
        )
    return TransportError(
        f"{method} {url}: connection reset or closed by the server ({exc}); did it crash or restart?"
    )
