"""Reads sent ahead: a SQL request goes out now, its answer is read later (``KalamClient.submit``).

The stateful runner verifies a step with reads (the written keys read back, full scope reads) whose answers
it needs only before the next step's first request. Sending them at the end of a step and reading the answers
at the start of the next one lets the server work on them while the tester draws and models the next step —
two processes on two cores instead of one waiting for the other. No threads: the request is written to its
own keep-alive connection (stdlib ``http.client``), and the answer waits in that socket until :meth:`result`.

Each pending request holds one connection; a client keeps the idle ones for at most
:data:`~kalammodel.client._wire.KEEPALIVE_EXPIRY_S` (below the servers' 5 s keep-alive). Every socket wait has
the client's timeout. Only reads go this way: an answer lost with a reused keep-alive connection (the server
closed it just as the request went out) is asked for again on the client's ordinary path.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import select
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, NoReturn, TypeVar
from urllib.parse import urlsplit

import httpx

from kalammodel.errors import TransportError

from ._results import SqlResponse
from ._wire import SQL_PATH, sql_response, transport_error

__all__ = ["Pending", "RawConnections"]

T = TypeVar("T")


class RawConnections:
    """Keep-alive ``http.client`` connections of one client, for requests whose answers are read later."""

    def __init__(self, base_url: str, timeout: float, expiry: float, context: ssl.SSLContext):
        parts = urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.https else 80)
        self.timeout = timeout
        self.expiry = expiry
        self.context = context
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []
        #: connections opened (for tests and benchmarks: reuse keeps this low)
        self.opened = 0

    def take(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection still inside its keep-alive time, else a new one; (connection, reused)."""
        now = time.monotonic()
        while self._idle:
            conn, since = self._idle.pop()
            if now - since < self.expiry and not _readable(conn):
                return conn, True
            conn.close()  # expired, or the server closed it (EOF waiting) or sent something unasked
        self.opened += 1
        if self.https:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self.context
            ), False
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout), False

    def give_back(self, conn: http.client.HTTPConnection) -> None:
        self._idle.append((conn, time.monotonic()))

    def close(self) -> None:
        while self._idle:
            self._idle.pop()[0].close()


def _readable(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection has something to read: the server closed it (or broke the protocol)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Pending(Generic[T]):
    """The answer of a request sent ahead; :meth:`result` reads it (once) and returns or raises as the
    synchronous call would have."""

    def __init__(self, finish: Callable[[], T], abort: Callable[[], None] | None = None):
        self._finish: Callable[[], T] | None = finish
        self._abort = abort
        self._value: Any = None
        self._error: BaseException | None = None

    @property
    def settled(self) -> bool:
        return self._finish is None

    def discard(self) -> None:
        """Give up on the answer (its connection is closed, not reused); :meth:`result` then raises."""
        if self._finish is None:
            return
        self._finish = None
        self._error = TransportError("the answer of this request was discarded before it was read")
        if self._abort is not None:
            self._abort()

    @classmethod
    def done(cls, call: Callable[[], T]) -> Pending[T]:
        """A pending answer computed now (a client with a custom transport cannot send ahead)."""
        pending = cls(call)
        with contextlib.suppress(Exception):  # kept, and raised again by result()
            pending.result()
        return pending

    def result(self) -> T:
        if self._finish is not None:
            finish, self._finish = self._finish, None
            try:
                self._value = finish()
            except Exception as exc:  # noqa: BLE001 - re-raised below and by later calls
                self._error = exc
        if self._error is not None:
            raise self._error
        return self._value


def send_sql_ahead(
    raw: RawConnections,
    base_url: str,
    sql: str,
    auth_headers: Mapping[str, str],
    timeout: float,
    fallback: Callable[[], SqlResponse],
    idempotent: bool = True,
) -> Pending[SqlResponse]:
    """Send ``POST /v1/api/sql`` for ``sql`` now on a connection of ``raw``; the pending decoded answer.

    ``fallback`` is the client's synchronous ``execute(sql)`` (its 429 retries and token refresh), used when the
    answer is 429 or 401 (the server did not run the statement). ``idempotent`` (a read): also when a reused
    keep-alive connection turns out closed before any answer, since asking twice is harmless; a write then
    fails with :class:`TransportError` instead, never sent twice.
    """
    body = json.dumps({"sql": sql}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json", **auth_headers}
    url = f"{base_url}{SQL_PATH}"
    conn, reused = raw.take()
    try:
        conn.request("POST", SQL_PATH, body=body, headers=headers)
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        if reused and idempotent:
            return Pending.done(fallback)
        return Pending.done(functools.partial(_raise_transport, url, exc, timeout))

    def finish() -> SqlResponse:
        try:
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            if reused and idempotent and not isinstance(exc, socket.timeout):
                return fallback()
            _raise_transport(url, exc, timeout)
        if resp.will_close:
            conn.close()
        else:
            raw.give_back(conn)
        if resp.status in (401, 429):
            return fallback()
        response = httpx.Response(
            resp.status,
            headers=resp.getheaders(),
            content=data,
            request=httpx.Request("POST", url),
        )
        return sql_response(response, sql)

    return Pending(finish, abort=conn.close)


def _raise_transport(url: str, exc: BaseException, timeout: float) -> NoReturn:
    kind = "reset"
    if isinstance(exc, socket.timeout):
        kind = "timeout"
    elif isinstance(exc, ConnectionRefusedError):
        kind = "connect"
    raise transport_error(kind, "POST", url, exc, timeout) from exc
