"""The HTTP side of the wire client: auth, ``POST /v1/api/sql``, paged reads, job waits (PROTOCOL.md §1–§3, §7.2)."""

from __future__ import annotations

import base64
import functools
import json
import re
import secrets
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from kalammodel.errors import (
    AuthError,
    DeadlineExceeded,
    Divergence,
    RateLimited,
    TransportError,
    UsageError,
)

from ._ahead import Pending, RawConnections, send_sql_ahead
from ._results import QueryResult, SqlResponse, decode_cell
from ._wire import (
    HEALTH_PATH,
    KEEPALIVE_EXPIRY_S,
    LOGIN_PATH,
    REFRESH_PATH,
    SETUP_PATH,
    SQL_PATH,
    STATUS_PATH,
    body_json,
    error_parts,
    sql_error,
    sql_response,
    transport_error,
)

__all__ = ["KalamClient", "quote_literal", "validate_user_id"]

#: Job statuses after which a job never changes again (§7.2).
TERMINAL_JOB_STATUSES = frozenset({"completed", "skipped", "failed", "cancelled"})

#: Name of the dba user :meth:`KalamClient.bootstrap` creates when the server needs setup.
SETUP_DBA_USER = "kalammodel_dba"

_RATE_LIMIT_HINT = (
    "the server kept answering 429 Too Many Requests; it runs with KalamDB's default rate limits "
    "(100 queries/s per user, 20 auth requests/s per IP). Raise them in the server's [rate_limit] "
    "section as docs/kalamdb-test-server.toml does"
)
_ROLE_RE = re.compile(r"[A-Za-z_]+")


def validate_user_id(user_id: Any) -> str:
    """Return ``user_id`` if KalamDB accepts it as a user id (§4.2), else raise :class:`UsageError`."""
    if not isinstance(user_id, str):
        raise UsageError(f"user id must be a str, got {user_id!r} (a {type(user_id).__name__})")
    bad = [s for s in ("..", "/", "\\", "\0") if s in user_id]
    if not user_id or bad:
        why = "is empty" if not user_id else f"contains {bad[0]!r}"
        raise UsageError(
            f"user id {user_id!r} {why}; KalamDB rejects empty ids and ids containing '..', '/', '\\' "
            "or NUL (PROTOCOL.md §4.2). Pick another id."
        )
    return user_id


def quote_literal(text: str) -> str:
    """Render ``text`` as a single-quoted SQL string literal (quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


def _parse_rfc3339(text: Any) -> float | None:
    """Seconds since the epoch for an RFC 3339 time such as chrono's ``2026-05-05T10:00:00.123456789+00:00``."""
    if not isinstance(text, str):
        return None
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip())
    if not m:
        return None
    frac = (m.group(2) or "")[:6].ljust(6, "0")
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        return datetime.fromisoformat(f"{m.group(1)}.{frac}{tz}").timestamp()
    except ValueError:
        return None


def _jwt_exp(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without verifying it (only to schedule a refresh)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp")
        return float(exp) if isinstance(exp, (int, float)) else None
    except (IndexError, ValueError, AttributeError):
        return None


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """One verifying TLS context for every client of the process.

    httpx builds a new context per client by default, loading the CA bundle each time (~17 ms of CPU); the
    tester makes a client per login, and logs every identity in again after each server restart.
    """
    return httpx.create_ssl_context()


class KalamClient:
    """A synchronous client of one KalamDB server, acting as one user.

    One keep-alive ``httpx.Client`` per instance. Every request has a timeout; HTTP 429 is retried at most
    ``max_retries`` times before :class:`RateLimited`; a token obtained by :meth:`login` is refreshed shortly
    before it expires. Tokens never appear in ``repr`` or in exception messages.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        *,
        refresh_token: str | None = None,
        expires_at: float | None = None,
        user: str | None = None,
        max_retries: int = 3,
        retry_backoff: float = 0.05,
        clock: Callable[[], float] = time.time,
    ):
        if not isinstance(base_url, str) or not re.match(r"https?://", base_url):
            raise UsageError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        if timeout is None or timeout <= 0:
            raise UsageError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.user = user
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        #: ``(user, password)`` of the dba user created by :meth:`bootstrap`, if it ran the setup.
        self.setup_credentials: tuple[str, str] | None = None
        self._transport = transport
        self._clock = clock
        self._token: str | None = None
        self._refresh_token: str | None = None
        self._expires_at: float | None = None
        self._refresh_margin = 0.0
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.timeout),
            transport=transport,
            trust_env=False,
            headers={"Accept": "application/json"},
            verify=_ssl_context(),
            # Idle connections are dropped before a server's usual 5 s keep-alive timeout (uvicorn's and
            # actix-web's default): at exactly 5 s on both sides a request could go out on a connection the
            # server was closing ("Server disconnected without sending a response"), e.g. after a pause step.
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S),
        )
        self._raw_connections: RawConnections | None = None  # for submit(), made on first use
        self._set_token(token, refresh_token, expires_at)

    # ------------------------------------------------------------------ construction

    @classmethod
    def login(
        cls,
        base_url: str,
        user: str,
        password: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        **kwargs: Any,
    ) -> KalamClient:
        """Log in with ``POST /v1/api/auth/login`` and return a client holding the user's tokens (§1.4)."""
        client = cls(base_url, timeout=timeout, transport=transport, user=user, **kwargs)
        try:
            client._login(user, password)
        except BaseException:
            client.close()
            raise
        return client

    @classmethod
    def bootstrap(
        cls,
        base_url: str,
        root_password: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        **kwargs: Any,
    ) -> KalamClient:
        """Set the server up if it needs setup (§1.3), then log in as ``root``.

        Setup sets root's password to ``root_password`` and creates a dba user with a generated password,
        kept in :attr:`setup_credentials` of the returned client.
        """
        client = cls(base_url, timeout=timeout, transport=transport, user="root", **kwargs)
        try:
            if client._needs_setup():
                client._setup(root_password)
            client._login("root", root_password)
        except BaseException:
            client.close()
            raise
        return client

    def client_for(self, user: str, password: str) -> KalamClient:
        """A new client logged in as ``user`` on the same server, with the same settings."""
        return type(self).login(
            self.base_url,
            user,
            password,
            timeout=self.timeout,
            transport=self._transport,
            max_retries=self.max_retries,
            retry_backoff=self.retry_backoff,
            clock=self._clock,
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def token(self) -> str | None:
        """The current access token (refreshed first if it is about to expire)."""
        self._ensure_fresh_token()
        return self._token

    def close(self) -> None:
        self._http.close()
        if self._raw_connections is not None:
            self._raw_connections.close()

    @property
    def _raw(self) -> RawConnections:
        if self._raw_connections is None:
            self._raw_connections = RawConnections(
                self.base_url, self.timeout, KEEPALIVE_EXPIRY_S, _ssl_context()
            )
        return self._raw_connections

    def __enter__(self) -> KalamClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        auth = "token=<redacted>" if self._token else "no token"
        return f"<KalamClient {self.base_url} user={self.user!r} {auth}>"

    # ------------------------------------------------------------------ transport

    def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        sql: str | None = None,
    ) -> httpx.Response:
        """One request with bounded 429 retries; transport failures become :class:`TransportError`."""
        url = f"{self.base_url}{path}"
        attempt = 0
        while True:
            try:
                resp = self._http.request(method, path, json=json_body, headers=headers)
            except httpx.TimeoutException as exc:
                raise transport_error("timeout", method, url, exc, self.timeout) from exc
            except httpx.ConnectError as exc:
                raise transport_error("connect", method, url, exc, self.timeout) from exc
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                raise transport_error("reset", method, url, exc, self.timeout) from exc
            except httpx.TransportError as exc:
                raise TransportError(
                    f"{method} {url}: transport failure ({type(exc).__name__}: {exc})"
                ) from exc
            if resp.status_code != 429:
                return resp
            if attempt >= self.max_retries:
                err = sql_error(resp, sql, RateLimited)
                raise RateLimited(
                    429,
                    err.code,
                    f"{err.message} — after {attempt + 1} attempts: {_RATE_LIMIT_HINT}",
                    sql,
                    err.body,
                )
            time.sleep(self._retry_delay(resp, attempt))
            attempt += 1

    def _retry_delay(self, resp: httpx.Response, attempt: int) -> float:
        backoff = self.retry_backoff * (2**attempt)
        retry_after = resp.headers.get("Retry-After")
        if retry_after is not None:
            try:
                backoff = float(retry_after)
            except ValueError:
                pass
        return max(0.0, min(backoff, 2.0))

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _authed(
        self, method: str, path: str, *, json_body: Any = None, sql: str | None = None
    ) -> httpx.Response:
        """A request with the access token; refreshes once and retries on ``TOKEN_EXPIRED``."""
        self._ensure_fresh_token()
        resp = self._send(method, path, json_body=json_body, headers=self._auth_headers(), sql=sql)
        if resp.status_code == 401 and self._refresh_token is not None:
            parts = error_parts(body_json(resp)[0])
            if parts is not None and parts[0] == "TOKEN_EXPIRED":
                self._refresh()
                resp = self._send(method, path, json_body=json_body, headers=self._auth_headers(), sql=sql)
        return resp

    # ------------------------------------------------------------------ auth

    def _set_token(self, token: str | None, refresh_token: str | None, expires_at: float | None) -> None:
        self._token = token
        self._refresh_token = refresh_token
        if expires_at is None and token is not None and refresh_token is not None:
            expires_at = _jwt_exp(token)
        self._expires_at = expires_at
        if expires_at is not None:
            lifetime = max(0.0, expires_at - self._clock())
            self._refresh_margin = min(60.0, lifetime / 10)

    def _accept_tokens(self, resp: httpx.Response, what: str) -> None:
        body, ok = body_json(resp)
        token = body.get("access_token") if ok and isinstance(body, Mapping) else None
        if not isinstance(token, str) or not token:
            raise AuthError(
                f"{what} answered HTTP {resp.status_code} without an access_token (body keys: "
                f"{sorted(body) if isinstance(body, Mapping) else 'not a JSON object'})",
                status=resp.status_code,
            )
        refresh = body.get("refresh_token")
        expires = _parse_rfc3339(body.get("expires_at"))
        if expires is None:
            expires = _jwt_exp(token)
        self._set_token(token, refresh if isinstance(refresh, str) else None, expires)
        user = body.get("user")
        if isinstance(user, Mapping) and isinstance(user.get("id"), str):
            self.user = user["id"]
        # The server also sets kalamdb_auth/kalamdb_refresh cookies; this client sends tokens explicitly.
        self._http.cookies.clear()

    def _auth_refused(self, resp: httpx.Response, what: str) -> AuthError:
        err = sql_error(resp, None)
        hint = {
            401: "check the user name and password (5 consecutive failures lock the account for 15 minutes)",
            403: "the server refuses this login from a non-loopback address",
            428: "the server needs initial setup: use KalamClient.bootstrap or set KALAMDB_ROOT_PASSWORD",
        }.get(resp.status_code, "see the server's log")
        return AuthError(
            f"{what} refused: HTTP {resp.status_code} {err.code}: {err.message} — {hint}",
            status=resp.status_code,
            code=err.code,
        )

    def _login(self, user: str, password: str) -> None:
        what = f"login as {user!r} at {self.base_url}"
        resp = self._send("POST", LOGIN_PATH, json_body={"user": user, "password": password})
        if resp.status_code != 200:
            raise self._auth_refused(resp, what)
        self.user = user
        self._accept_tokens(resp, what)

    def _refresh(self) -> None:
        if self._refresh_token is None:
            raise AuthError(f"the access token of {self.user!r} expired and there is no refresh token")
        what = f"token refresh for {self.user!r} at {self.base_url}"
        resp = self._send("POST", REFRESH_PATH, headers={"Authorization": f"Bearer {self._refresh_token}"})
        if resp.status_code != 200:
            raise self._auth_refused(resp, what)
        self._accept_tokens(resp, what)

    def _ensure_fresh_token(self) -> None:
        if self._refresh_token is None or self._expires_at is None:
            return
        if self._clock() >= self._expires_at - self._refresh_margin:
            self._refresh()

    def _needs_setup(self) -> bool:
        resp = self._send("GET", STATUS_PATH)
        if resp.status_code != 200:
            # 403 for remote callers, 404 on servers without the endpoint: fall through to login.
            return False
        body, ok = body_json(resp)
        return bool(ok and isinstance(body, Mapping) and body.get("needs_setup"))

    def _setup(self, root_password: str) -> None:
        dba_password = "Km-" + secrets.token_urlsafe(18) + "9a!"
        resp = self._send(
            "POST",
            SETUP_PATH,
            json_body={
                "user": SETUP_DBA_USER,
                "password": dba_password,
                "root_password": root_password,
                "email": None,
            },
        )
        if resp.status_code == 200:
            self.setup_credentials = (SETUP_DBA_USER, dba_password)
            return
        err = sql_error(resp, None)
        if resp.status_code == 409 and err.code == "already_configured":
            return  # someone else set it up meanwhile; login decides whether our password is right
        raise AuthError(
            f"initial setup of {self.base_url} refused: HTTP {resp.status_code} {err.code}: {err.message} "
            "(root password must be 8-72 characters and not a common password)",
            status=resp.status_code,
            code=err.code,
        )

    # ------------------------------------------------------------------ API

    def health(self) -> dict[str, Any]:
        """``GET /health``: ``{"status":"healthy","version":...}`` (§1.6)."""
        resp = self._send("GET", HEALTH_PATH)
        body, ok = body_json(resp)
        if resp.status_code != 200 or not ok or not isinstance(body, dict):
            raise sql_error(resp, None)
        return body

    def execute(
        self, sql: str, params: Sequence[Any] | None = None, namespace: str | None = None
    ) -> SqlResponse:
        """Run ``sql`` with ``POST /v1/api/sql``; raises :class:`SqlError` on an error envelope (§2)."""
        if not isinstance(sql, str):
            raise UsageError(f"sql must be a str, got {sql!r}")
        body: dict[str, Any] = {"sql": sql}
        if params is not None:
            if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
                raise UsageError(f"params must be a list of JSON scalars for $1..$n, got {params!r}")
            body["params"] = list(params)
        if namespace is not None:
            body["namespace_id"] = namespace
        resp = self._authed("POST", SQL_PATH, json_body=body, sql=sql)
        return sql_response(resp, sql)

    @staticmethod
    def render_execute_as(user_id: str, sql: str) -> str:
        """``EXECUTE AS USER '<user_id>' (<sql>)`` with the id quoted and a trailing ``;`` removed (§6.3)."""
        validate_user_id(user_id)
        inner = sql.strip().rstrip(";").rstrip()
        return f"EXECUTE AS USER {quote_literal(user_id)} ({inner})"

    def execute_as(
        self, user_id: str, sql: str, params: Sequence[Any] | None = None, namespace: str | None = None
    ) -> SqlResponse:
        """Run ``sql`` as ``user_id`` through ``EXECUTE AS USER`` (§6.3)."""
        return self.execute(self.render_execute_as(user_id, sql), params, namespace)

    def submit(
        self, sql: str, *, as_user: str | None = None, idempotent: bool = True
    ) -> Pending[SqlResponse]:
        """Send ``sql`` now and read its answer later: ``submit(sql).result()`` is ``execute(sql)``.

        The request goes out on a connection of its own, so the server answers it while the caller does
        other work; :meth:`Pending.result` then returns the :class:`SqlResponse` or raises what
        :meth:`execute` would. ``idempotent`` (a read): an answer lost with a reused keep-alive connection is
        asked for again; pass False for a write, which is then never sent twice. A client with a custom
        ``transport`` runs the request at once. ``as_user``: through ``EXECUTE AS USER`` (§6.3).
        """
        if not isinstance(sql, str):
            raise UsageError(f"sql must be a str, got {sql!r}")
        if as_user is not None:
            sql = self.render_execute_as(as_user, sql)
        if self._transport is not None:
            return Pending.done(lambda: self.execute(sql))
        self._ensure_fresh_token()
        return self._send_ahead(sql, idempotent)

    def _send_ahead(self, sql: str, idempotent: bool = True) -> Pending[SqlResponse]:
        return send_sql_ahead(
            self._raw,
            self.base_url,
            sql,
            self._auth_headers(),
            self.timeout,
            lambda: self.execute(sql),
            idempotent,
        )

    def submit_read_all(
        self,
        table: str,
        order_by: str,
        columns: str = "*",
        where: str | None = None,
        page_size: int = 1000,
        as_user: str | None = None,
    ) -> Pending[QueryResult]:
        """:meth:`read_all` with its first page and its ``COUNT(*)`` sent now, the rest when the result is read."""
        self._check_read_all(page_size, order_by)
        where_sql = f" WHERE {where}" if where else ""
        first = self.submit(
            self._page_sql(table, columns, where_sql, order_by, page_size, 0), as_user=as_user
        )
        count = self.submit(f"SELECT COUNT(*) AS n FROM {table}{where_sql}", as_user=as_user)

        def finish() -> QueryResult:
            answers: list[QueryResult] = []
            errors: list[Exception] = []
            for pending in (first, count):  # read both, so that no answer is left in a connection
                try:
                    answers.append(pending.result().result)
                except Exception as exc:  # noqa: BLE001 - the first one is raised below
                    errors.append(exc)
            if errors:
                raise errors[0]
            page, counted = answers
            return self._assemble_pages(
                table, columns, where_sql, order_by, page_size, as_user, page, lambda: counted
            )

        def abort() -> None:
            first.discard()
            count.discard()

        return Pending(finish, abort=abort)

    def _run(self, sql: str, as_user: str | None) -> QueryResult:
        resp = self.execute_as(as_user, sql) if as_user is not None else self.execute(sql)
        return resp.result

    def read_all(
        self,
        table: str,
        order_by: str,
        columns: str = "*",
        where: str | None = None,
        page_size: int = 1000,
        as_user: str | None = None,
    ) -> QueryResult:
        """Every row of ``table`` (optionally filtered), read in pages and checked against ``COUNT(*)``.

        KalamDB caps every SELECT (§3), so this pages ``ORDER BY <order_by> LIMIT k OFFSET n`` until a short
        page. The total is then compared with ``SELECT COUNT(*)`` under the same WHERE; if they disagree
        the read was not complete and :class:`Divergence` (invariant ``read_all_complete``) is raised.
        ``page_size`` must not exceed the server's ``max_query_limit`` (default 1000).
        """
        self._check_read_all(page_size, order_by)
        where_sql = f" WHERE {where}" if where else ""
        first = self._run(self._page_sql(table, columns, where_sql, order_by, page_size, 0), as_user)
        count_sql = f"SELECT COUNT(*) AS n FROM {table}{where_sql}"
        return self._assemble_pages(
            table,
            columns,
            where_sql,
            order_by,
            page_size,
            as_user,
            first,
            lambda: self._run(count_sql, as_user),
        )

    @staticmethod
    def _check_read_all(page_size: Any, order_by: str) -> None:
        if not isinstance(page_size, int) or page_size < 1:
            raise UsageError(f"page_size must be a positive int, got {page_size!r}")
        if not order_by or not order_by.strip():
            raise UsageError(
                "read_all needs an order_by (e.g. the primary key): pages are unstable without it"
            )

    @staticmethod
    def _page_sql(
        table: str, columns: str, where_sql: str, order_by: str, page_size: int, offset: int
    ) -> str:
        return (
            f"SELECT {columns} FROM {table}{where_sql} ORDER BY {order_by} LIMIT {page_size} OFFSET {offset}"
        )

    def _assemble_pages(
        self,
        table: str,
        columns: str,
        where_sql: str,
        order_by: str,
        page_size: int,
        as_user: str | None,
        first: QueryResult,
        count: Callable[[], QueryResult],
    ) -> QueryResult:
        """The rest of :meth:`read_all` once its first page is in: later pages, then the ``COUNT(*)`` check."""
        rows: list[tuple[Any, ...]] = []
        page = first
        offset = 0
        while True:
            sql = self._page_sql(table, columns, where_sql, order_by, page_size, offset)
            if page is not first and page.rows and first.rows and page.column_names != first.column_names:
                raise TransportError(
                    f"page at OFFSET {offset} of {table} has columns {page.column_names}, the first page had "
                    f"{first.column_names}; did the schema change during the read?"
                )
            if not first.columns and page.columns:
                first = page
            rows.extend(page.rows)
            if len(page.rows) > page_size:
                raise TransportError(
                    f"{sql!r} returned {len(page.rows)} rows, more than its LIMIT {page_size}"
                )
            if len(page.rows) < page_size:
                break
            offset += page_size
            page = self._run(self._page_sql(table, columns, where_sql, order_by, page_size, offset), as_user)
        count_sql = f"SELECT COUNT(*) AS n FROM {table}{where_sql}"
        count_result = count()
        if len(count_result.rows) != 1 or len(count_result.rows[0]) != 1:
            raise TransportError(f"{count_sql!r} did not return one cell: {count_result.rows!r}")
        n = decode_cell(count_result.rows[0][0], "BigInt", "n")
        if n != len(rows):
            raise Divergence(
                "read_all_complete",
                f"paging {table}{where_sql} ORDER BY {order_by} in pages of {page_size} returned {len(rows)} "
                f"rows but COUNT(*) says {n}: the paged read is "
                f"{'incomplete' if n > len(rows) else 'duplicating rows'}",
                request=count_sql,
                actor=as_user or self.user,
                expected=n,
                actual=len(rows),
            )
        return QueryResult(
            columns=list(first.columns),
            rows=rows,
            row_count=len(rows),
            message=first.message,
            as_user=first.as_user,
            raw=None,
        )

    def job_status(self, job_id: str) -> dict[str, Any] | None:
        """One read of ``system.jobs``: the job's ``{"status": ..., "message": ...}``, or None when it is not
        listed (§7.2; needs a dba or system token)."""
        sql = f"SELECT status, message FROM system.jobs WHERE job_id = {quote_literal(job_id)} LIMIT 1"
        rows = self.execute(sql).result.dicts()
        return rows[0] if rows else None

    def wait_for_job(self, job_id: str, timeout: float = 60.0, poll: float = 0.05) -> dict[str, Any]:
        """Poll ``system.jobs`` until the job reaches completed|skipped|failed|cancelled (§7.2).

        Returns the row ``{"status": ..., "message": ...}``; needs a dba or system token. Raises
        :class:`DeadlineExceeded` naming the last status seen if ``timeout`` passes first.
        """
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while True:
            row = self.job_status(job_id)
            if row is not None:
                last = row
                if last.get("status") in TERMINAL_JOB_STATUSES:
                    return last
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = (
                    f"last status {last.get('status')!r} ({last.get('message')!r})"
                    if last
                    else "it never appeared in system.jobs"
                )
                raise DeadlineExceeded(f"job {job_id!r} did not finish within {timeout:g}s: {seen}")
            time.sleep(min(poll, remaining))

    def create_user(self, user: str, password: str, role: str) -> SqlResponse:
        """``CREATE USER '<user>' WITH PASSWORD '<password>' ROLE <role>`` (§6.4; needs dba or system)."""
        validate_user_id(user)
        if not isinstance(role, str) or not _ROLE_RE.fullmatch(role):
            raise UsageError(f"role must be a role word such as user, service, dba, system; got {role!r}")
        return self.execute(
            f"CREATE USER {quote_literal(user)} WITH PASSWORD {quote_literal(password)} ROLE {role}"
        )
