"""Starlette routes and envelopes: health (§1.6), auth (§1.3–§1.5), ``/v1/api/sql`` (§2), WebSocket ``/v1/ws``.

Engine calls from HTTP routes run **on the event loop** whenever the engine lock is free, else on one dedicated
worker thread (``kalam-sql``). The engine serialises statements under its lock anyway, and handing a ~100 µs
statement to a thread and back costs more CPU than the statement itself (two wake-ups and a GIL hand-over per
request, measured ~150 µs). A long statement therefore delays other connections' frames by its own duration, which
the lock imposes on their statements anyway; WebSocket timeouts are seconds. ``POST /v1/api/sql`` bypasses
Starlette's routing and middleware (``_App``); every other route is ordinary Starlette.

The per-user query rate limit (§1.2 ``rate_limit.max_queries_per_sec``, HTTP 429 ``RATE_LIMIT_EXCEEDED``) is a
token bucket per token subject, as in KalamDB (``api:limiter/rate_limiter.rs``): capacity and refill = the limit
per second. The automatic flush scheduler (§7.4) starts and stops with the app's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import attrs
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from . import _faults
from ._auth import TokenError, issue_token
from ._engine import Engine
from ._records import rfc3339

__all__ = ["create_app"]

VERSION = "0.4.3-rc.4"
MAX_BODY = 10 * 1024 * 1024
MAX_SQL = 1024 * 1024
DEFAULT_MAX_QUERIES_PER_SEC = 100000  # docs/kalamdb-test-server.toml (KalamDB's own default is 100)
DEFAULT_FLUSH_CHECK_INTERVAL = 5.0  # docs/kalamdb-test-server.toml (KalamDB's own default is 60)
T = TypeVar("T")


class QueryRateLimiter:
    """Per-user token buckets: ``limit`` tokens, refilled continuously at ``limit`` per second."""

    def __init__(self, limit: int):
        self.limit = limit
        self._buckets: dict[str, tuple[float, float]] = {}  # user -> (tokens, last refill, monotonic)
        self._lock = threading.Lock()

    def allow(self, user_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(user_id, (float(self.limit), now))
            tokens = min(float(self.limit), tokens + (now - last) * self.limit)
            ok = tokens >= 1.0
            self._buckets[user_id] = (tokens - 1.0 if ok else tokens, now)
            return ok


def _took(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


@attrs.frozen
class ServerState:
    """What the routes read from ``app.state.server``: the engine, the rate limiter, the SQL worker thread and
    the automatic-flush period."""

    engine: Engine
    limiter: QueryRateLimiter
    worker: ThreadPoolExecutor
    flush_check_interval_seconds: float


def _server(app: Starlette) -> ServerState:
    return cast(ServerState, app.state.server)


def _engine(request: Request) -> Engine:
    return _server(request.app).engine


async def _run_engine(server: ServerState, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` inline when the engine lock is free, else on the SQL worker thread (never waits for the
    lock on the event loop: a flush job or a snapshot read may hold it)."""
    engine = server.engine
    if engine.lock.acquire(blocking=False):
        try:
            return fn(*args)
        finally:
            engine.lock.release()
    return await asyncio.get_running_loop().run_in_executor(server.worker, functools.partial(fn, *args))


# ------------------------------------------------------------------------------------------------ health, auth
async def health(request: Request) -> Response:
    return JSONResponse(
        {
            "status": "healthy",
            "version": VERSION,
            "api_version": "v1",
            "build_date": "kalammodel-embedded",
        }
    )


async def _read_json(request: Request) -> tuple[dict[str, Any] | None, Response | None]:
    body = await request.body()
    if len(body) > MAX_BODY:
        return None, JSONResponse(
            {
                "error": "BODY_TOO_LARGE",
                "message": f"Request body of {len(body)} bytes exceeds the {MAX_BODY} byte limit",
            },
            status_code=413,
        )
    try:
        data = json.loads(body or b"null")
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
    except ValueError as e:
        return None, JSONResponse(
            {"error": "bad_request", "message": f"Invalid JSON payload: {e}"}, status_code=400
        )
    return data, None


def _login_body(engine: Engine, u: dict[str, Any]) -> JSONResponse:
    access, exp = issue_token(engine.jwt_secret, u["user_id"], u["role"], u["email"], "access")
    refresh, rexp = issue_token(engine.jwt_secret, u["user_id"], u["role"], u["email"], "refresh")
    resp = JSONResponse(
        {
            "user": engine.user_json(u),
            "admin_ui_access": u["role"] in ("dba", "system"),
            "expires_at": rfc3339(exp * 1000),
            "access_token": access,
            "refresh_token": refresh,
            "refresh_expires_at": rfc3339(rexp * 1000),
        }
    )
    resp.set_cookie("kalamdb_auth", access, httponly=True, samesite="strict")
    resp.set_cookie("kalamdb_refresh", refresh, httponly=True, samesite="strict")
    return resp


def _credentials(data: dict[str, Any], allowed: set[str]) -> tuple[str, str] | Response:
    unknown = set(data) - allowed
    if unknown:
        return JSONResponse(
            {"error": "bad_request", "message": f"unknown field(s): {', '.join(sorted(unknown))}"},
            status_code=400,
        )
    user = data.get("user", data.get("username"))
    pw = data.get("password")
    if not isinstance(user, str) or not isinstance(pw, str):
        return JSONResponse(
            {"error": "bad_request", "message": "fields 'user' and 'password' are required strings"},
            status_code=400,
        )
    return user, pw


async def login(request: Request) -> Response:
    data, err = await _read_json(request)
    if err is not None:
        return err
    cred = _credentials(data or {}, {"user", "username", "password"})
    if isinstance(cred, Response):
        return cred
    server = _server(request.app)
    status, body, u = await _run_engine(server, server.engine.login, *cred)
    if u is None:
        return JSONResponse(body, status_code=status)
    return _login_body(server.engine, u)


async def refresh(request: Request) -> Response:
    engine = _engine(request)
    token = request.cookies.get("kalamdb_refresh")
    if not token:
        h = request.headers.get("authorization", "")
        token = h[7:].strip() if h.lower().startswith("bearer ") else ""
    if not token:
        return JSONResponse({"error": "unauthorized", "message": "Refresh token required"}, status_code=401)
    try:
        u = engine.verify_refresh(token)
    except TokenError as e:
        return JSONResponse({"error": "unauthorized", "message": e.message}, status_code=401)
    return _login_body(engine, u)


async def logout(request: Request) -> Response:
    resp = JSONResponse({"message": "Logged out successfully"})
    resp.delete_cookie("kalamdb_auth")
    resp.delete_cookie("kalamdb_refresh")
    return resp


async def me(request: Request) -> Response:
    engine = _engine(request)
    h = request.headers.get("authorization", "")
    token = h[7:].strip() if h.lower().startswith("bearer ") else request.cookies.get("kalamdb_auth", "")
    try:
        p = engine.verify_token(token)
    except TokenError as e:
        return JSONResponse({"error": "unauthorized", "message": e.message}, status_code=401)
    u = engine.users[p.user_id]
    return JSONResponse({"user": engine.user_json(u), "admin_ui_access": p.role in ("dba", "system")})


async def status(request: Request) -> Response:
    needs = _engine(request).needs_setup()
    return JSONResponse(
        {
            "needs_setup": needs,
            "message": "Server requires initial setup" if needs else "Server is configured",
        }
    )


async def setup(request: Request) -> Response:
    data, err = await _read_json(request)
    if err is not None:
        return err
    data = data or {}
    unknown = set(data) - {"user", "username", "password", "root_password", "email"}
    if unknown:
        return JSONResponse(
            {"error": "bad_request", "message": f"unknown field(s): {', '.join(sorted(unknown))}"},
            status_code=400,
        )
    user = data.get("user", data.get("username"))
    if not all(isinstance(data.get(k), str) for k in ("password", "root_password")) or not isinstance(user, str):
        return JSONResponse(
            {
                "error": "bad_request",
                "message": "fields 'user', 'password' and 'root_password' are required strings",
            },
            status_code=400,
        )
    server = _server(request.app)
    st, body = await _run_engine(
        server, server.engine.setup, user, data["password"], data["root_password"], data.get("email")
    )
    return JSONResponse(body, status_code=st)


# ------------------------------------------------------------------------------------------------ /v1/api/sql
def _sql_error(status: int, code: str, message: str, start: float) -> tuple[int, dict[str, Any]]:
    """An error envelope (§2.5); ``took`` is measured also for auth failures, as KalamDB does."""
    return status, {
        "status": "error",
        "error": {"code": code, "message": message},
        "results": [],
        "took": _took(start),
    }


async def _run_sql(
    server: ServerState, authorization: str | None, body: bytes, start: float
) -> tuple[int, dict[str, Any]]:
    """One ``/v1/api/sql`` request (§2): (HTTP status, JSON body)."""
    engine = server.engine
    if not authorization:
        return _sql_error(401, "MISSING_AUTHORIZATION", "Authentication required", start)
    if not authorization.lower().startswith("bearer "):
        return _sql_error(401, "INVALID_CREDENTIALS", "Invalid credentials", start)
    try:
        p = engine.verify_token(authorization[7:].strip())
    except TokenError as e:
        return _sql_error(401, e.code, e.message, start)
    if not server.limiter.allow(p.user_id):
        return _sql_error(429, "RATE_LIMIT_EXCEEDED", "Too many queries per second. Please slow down.", start)
    if len(body) > MAX_BODY:
        return 413, {
            "error": "BODY_TOO_LARGE",
            "message": f"Request body of {len(body)} bytes exceeds the {MAX_BODY} byte limit",
        }
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        text = data["sql"]
        if not isinstance(text, str):
            raise ValueError("field 'sql' must be a string")
    except (ValueError, KeyError) as e:
        return _sql_error(400, "INVALID_INPUT", f"Invalid JSON payload: {e}", start)
    size = len(text.encode())
    if size > MAX_SQL:
        return _sql_error(
            400, "INVALID_SQL", f"SQL query too long: {size} bytes (maximum {MAX_SQL} bytes)", start
        )
    params = data.get("params") or []
    if not isinstance(params, list) or any(isinstance(x, (list, dict)) for x in params):
        return _sql_error(400, "INVALID_PARAMETER", "Parameters must be a JSON array of scalars", start)
    ns = data.get("namespace_id")
    st, out = await _run_engine(
        server, engine.execute_request, p, text, params, ns if isinstance(ns, str) else None
    )
    out["took"] = _took(start)
    return st, out


def _encode(status: int, out: dict[str, Any], start: float) -> tuple[int, bytes]:
    try:
        return status, json.dumps(out, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except ValueError as e:  # NaN / infinity have no JSON form (§2.5: serialization → 500)
        return _encode(*_sql_error(500, "INTERNAL_ERROR", f"Serialization error: {e}", start), start)


async def sql(request: Request) -> Response:
    start = time.perf_counter()
    server = _server(request.app)
    st, data = _encode(
        *await _run_sql(server, request.headers.get("authorization"), await request.body(), start), start
    )
    return Response(data, status_code=st, media_type="application/json")


_Scope = MutableMapping[str, Any]  # the ASGI scope, receive and send (values are ASGI messages of any shape)
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def sql_direct(app: Starlette, scope: _Scope, receive: _Receive, send: _Send) -> None:
    """``POST /v1/api/sql`` straight from ASGI: the same handler without Starlette's routing and middleware
    layers (a measurable share of a single-row statement's cost)."""
    start = time.perf_counter()
    authorization = None
    for k, v in scope["headers"]:
        if k == b"authorization":
            authorization = v.decode("latin-1")
            break
    chunks = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    try:
        st, data = _encode(*await _run_sql(_server(app), authorization, b"".join(chunks), start), start)
    except Exception as e:  # an engine bug still answers with an envelope
        st, data = _encode(*_sql_error(500, "INTERNAL_ERROR", f"{type(e).__name__}: {e}", start), start)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": st, "headers": headers})
    await send({"type": "http.response.body", "body": data})


# ------------------------------------------------------------------------------------------------ the app
@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    server = _server(app)
    server.engine.start_flush_scheduler(server.flush_check_interval_seconds)
    try:
        yield
    finally:
        server.worker.shutdown(wait=True)
        await run_in_threadpool(server.engine.close)


def create_app(
    data_dir: str,
    root_password: str | None = None,
    faults: tuple[str, ...] | list[str] = (),
    flush_delay_ms: int = 0,
    jwt_secret: str = "kalammodel-test-secret-at-least-32-characters",
    default_query_limit: int = 1000,
    max_query_limit: int = 100000,
    max_queries_per_sec: int = DEFAULT_MAX_QUERIES_PER_SEC,
    flush_check_interval_seconds: float = DEFAULT_FLUSH_CHECK_INTERVAL,
) -> Starlette:
    """The embedded server as an ASGI app; ``app.state.engine`` is the ``Engine`` (hooks for ``_ws.py``).

    ``flush_check_interval_seconds`` is the automatic-flush period (§7.4; 0 = off); the scheduler and the SQL
    worker thread start with the app's lifespan."""
    from ._ws import websocket_endpoint

    _faults.configure(faults)
    engine = Engine(
        data_dir,
        root_password=root_password,
        jwt_secret=jwt_secret,
        flush_delay_ms=flush_delay_ms,
        default_query_limit=default_query_limit,
        max_query_limit=max_query_limit,
    )
    routes: list[Route | WebSocketRoute] = [
        Route("/health", health),
        Route("/v1/api/healthcheck", health),
        Route("/v1/api/auth/status", status),
        Route("/v1/api/auth/setup", setup, methods=["POST"]),
        Route("/v1/api/auth/login", login, methods=["POST"]),
        Route("/v1/api/auth/refresh", refresh, methods=["POST"]),
        Route("/v1/api/auth/logout", logout, methods=["POST"]),
        Route("/v1/api/auth/me", me),
        Route("/v1/api/sql", sql, methods=["POST"]),
        WebSocketRoute("/v1/ws", websocket_endpoint),
    ]
    app = _App(routes=routes, lifespan=_lifespan)
    app.state.server = ServerState(
        engine,
        QueryRateLimiter(max_queries_per_sec),
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="kalam-sql"),
        flush_check_interval_seconds,
    )
    app.state.engine = engine
    return app


class _App(Starlette):
    """Starlette with a direct lane for ``POST /v1/api/sql`` (``sql_direct``); everything else is routed as usual."""

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/api/sql" and scope["method"] == "POST":
            await sql_direct(self, scope, receive, send)
            return
        await super().__call__(scope, receive, send)
