"""Starlette routes and envelopes: health (§1.6), auth (§1.3–§1.5), ``/v1/api/sql`` (§2), WebSocket ``/v1/ws``."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from . import _faults
from ._auth import TokenError, issue_token
from ._engine import Engine, rfc3339
from ._types import Principal

__all__ = ["create_app"]

VERSION = "0.4.3-rc.4"
MAX_BODY = 10 * 1024 * 1024
MAX_SQL = 1024 * 1024


def _took(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def _sql_error(status: int, code: str, message: str, start: float | None = None) -> JSONResponse:
    return JSONResponse(
        {
            "status": "error",
            "error": {"code": code, "message": message},
            "results": [],
            "took": 0.0 if start is None else _took(start),
        },
        status_code=status,
    )


def create_app(
    data_dir: str,
    root_password: str | None = None,
    faults: tuple[str, ...] | list[str] = (),
    flush_delay_ms: int = 0,
    jwt_secret: str = "kalammodel-test-secret-at-least-32-characters",
    default_query_limit: int = 1000,
    max_query_limit: int = 100000,
) -> Starlette:
    """The embedded server as an ASGI app; ``app.state.engine`` is the ``Engine`` (hooks for ``_ws.py``)."""
    _faults.configure(faults)
    engine = Engine(
        data_dir,
        root_password=root_password,
        jwt_secret=jwt_secret,
        flush_delay_ms=flush_delay_ms,
        default_query_limit=default_query_limit,
        max_query_limit=max_query_limit,
    )

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "healthy",
                "version": VERSION,
                "api_version": "v1",
                "build_date": "kalammodel-embedded",
            }
        )

    async def read_json(request: Request) -> tuple[dict[str, Any] | None, Response | None]:
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

    def login_body(u: dict[str, Any]) -> JSONResponse:
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

    def credentials(data: dict[str, Any], allowed: set[str]) -> tuple[str, str] | Response:
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
        data, err = await read_json(request)
        if err is not None:
            return err
        cred = credentials(data or {}, {"user", "username", "password"})
        if isinstance(cred, Response):
            return cred
        status, body, u = await run_in_threadpool(engine.login, *cred)
        if u is None:
            return JSONResponse(body, status_code=status)
        return login_body(u)

    async def refresh(request: Request) -> Response:
        token = request.cookies.get("kalamdb_refresh")
        if not token:
            h = request.headers.get("authorization", "")
            token = h[7:].strip() if h.lower().startswith("bearer ") else ""
        if not token:
            return JSONResponse(
                {"error": "unauthorized", "message": "Refresh token required"}, status_code=401
            )
        try:
            u = engine.verify_refresh(token)
        except TokenError as e:
            return JSONResponse({"error": "unauthorized", "message": e.message}, status_code=401)
        return login_body(u)

    async def logout(request: Request) -> Response:
        resp = JSONResponse({"message": "Logged out successfully"})
        resp.delete_cookie("kalamdb_auth")
        resp.delete_cookie("kalamdb_refresh")
        return resp

    def bearer(request: Request) -> Principal | Response:
        h = request.headers.get("authorization")
        if not h:
            return _sql_error(401, "MISSING_AUTHORIZATION", "Authentication required")
        if not h.lower().startswith("bearer "):
            return _sql_error(401, "INVALID_CREDENTIALS", "Invalid credentials")
        try:
            return engine.verify_token(h[7:].strip())
        except TokenError as e:
            return _sql_error(401, e.code, e.message)

    async def me(request: Request) -> Response:
        h = request.headers.get("authorization", "")
        token = h[7:].strip() if h.lower().startswith("bearer ") else request.cookies.get("kalamdb_auth", "")
        try:
            p = engine.verify_token(token)
        except TokenError as e:
            return JSONResponse({"error": "unauthorized", "message": e.message}, status_code=401)
        u = engine.users[p.user_id]
        return JSONResponse({"user": engine.user_json(u), "admin_ui_access": p.role in ("dba", "system")})

    async def status(request: Request) -> Response:
        needs = engine.needs_setup()
        return JSONResponse(
            {
                "needs_setup": needs,
                "message": "Server requires initial setup" if needs else "Server is configured",
            }
        )

    async def setup(request: Request) -> Response:
        data, err = await read_json(request)
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
        if not all(isinstance(data.get(k), str) for k in ("password", "root_password")) or not isinstance(
            user, str
        ):
            return JSONResponse(
                {
                    "error": "bad_request",
                    "message": "fields 'user', 'password' and 'root_password' are required strings",
                },
                status_code=400,
            )
        st, body = await run_in_threadpool(
            engine.setup, user, data["password"], data["root_password"], data.get("email")
        )
        return JSONResponse(body, status_code=st)

    async def sql(request: Request) -> Response:
        start = time.perf_counter()
        p = bearer(request)
        if isinstance(p, Response):
            return p
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse(
                {
                    "error": "BODY_TOO_LARGE",
                    "message": f"Request body of {len(body)} bytes exceeds the {MAX_BODY} byte limit",
                },
                status_code=413,
            )
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            text = data["sql"]
            if not isinstance(text, str):
                raise ValueError("field 'sql' must be a string")
        except (ValueError, KeyError) as e:
            return _sql_error(400, "INVALID_INPUT", f"Invalid JSON payload: {e}", start)
        if len(text.encode()) > MAX_SQL:
            return _sql_error(
                400,
                "INVALID_SQL",
                f"SQL query too long: {len(text.encode())} bytes (maximum {MAX_SQL} bytes)",
                start,
            )
        params = data.get("params") or []
        if not isinstance(params, list) or any(isinstance(x, (list, dict)) for x in params):
            return _sql_error(400, "INVALID_PARAMETER", "Parameters must be a JSON array of scalars", start)
        ns = data.get("namespace_id")
        st, out = await run_in_threadpool(
            engine.execute_request, p, text, params, ns if isinstance(ns, str) else None
        )
        out["took"] = _took(start)
        return JSONResponse(out, status_code=st)

    routes: list[Any] = [
        Route("/health", health),
        Route("/v1/api/healthcheck", health),
        Route("/v1/api/auth/status", status),
        Route("/v1/api/auth/setup", setup, methods=["POST"]),
        Route("/v1/api/auth/login", login, methods=["POST"]),
        Route("/v1/api/auth/refresh", refresh, methods=["POST"]),
        Route("/v1/api/auth/logout", logout, methods=["POST"]),
        Route("/v1/api/auth/me", me),
        Route("/v1/api/sql", sql, methods=["POST"]),
    ]
    try:
        from ._ws import websocket_endpoint  # written by the WebSocket helper
    except ImportError:
        websocket_endpoint = None
    if websocket_endpoint is not None:
        routes.append(WebSocketRoute("/v1/ws", websocket_endpoint))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(engine.close)

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.engine = engine
    return app
