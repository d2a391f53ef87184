"""KalamClient over httpx.MockTransport: envelopes, errors, retries, auth, paging (PROTOCOL.md §1–§3, §7.2)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from kalammodel.client import KalamClient
from kalammodel.errors import (
    AuthError,
    DeadlineExceeded,
    Divergence,
    KalamError,
    RateLimited,
    SqlError,
    TransportError,
    UsageError,
)

BASE = "http://kalam.test:8080"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.ACCESS-SECRET.sig"
REFRESH = "eyJhbGciOiJIUzI1NiJ9.REFRESH-SECRET.sig"

Handler = Callable[[httpx.Request], httpx.Response]


class FakeServer:
    """Routes requests by (method, path) to handlers and records every request."""

    def __init__(self, routes: dict[tuple[str, str], Handler] | None = None):
        self.routes = dict(routes or {})
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        handler = self.routes.get((request.method, request.url.path))
        if handler is None:
            return httpx.Response(404, text="not found")
        return handler(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def bodies(self, path: str) -> list[Any]:
        return [json.loads(r.content) for r in self.requests if r.url.path == path and r.content]

    def sqls(self) -> list[str]:
        return [b["sql"] for b in self.bodies("/v1/api/sql")]


def success(*results: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"status": "success", "results": list(results), "took": 1.5})


def error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={"status": "error", "results": [], "took": 0.2, "error": {"code": code, "message": message}},
    )


def rows_result(names_types: list[tuple[str, str]], rows: list[list[Any]]) -> dict[str, Any]:
    return {
        "schema": [{"name": n, "data_type": t, "index": i} for i, (n, t) in enumerate(names_types)],
        "rows": rows,
        "row_count": len(rows),
        "as_user": "root",
    }


def login_body(
    token: str = TOKEN, refresh: str = REFRESH, expires_at: str = "2099-01-01T00:00:00Z", user: str = "alice"
) -> dict:
    return {
        "user": {"id": user, "role": "user", "email": None, "created_at": "x", "updated_at": "x"},
        "admin_ui_access": False,
        "expires_at": expires_at,
        "access_token": token,
        "refresh_token": refresh,
        "refresh_expires_at": "2099-01-08T00:00:00Z",
    }


def client_for(server: FakeServer, **kwargs: Any) -> KalamClient:
    kwargs.setdefault("retry_backoff", 0.0)
    return KalamClient(BASE, token=TOKEN, transport=server.transport(), **kwargs)


# ---------------------------------------------------------------------------------------------- execute


def test_execute_sends_sql_params_namespace_and_bearer_token():
    """execute posts sql, params and namespace_id with the bearer token."""
    server = FakeServer(
        {("POST", "/v1/api/sql"): lambda r: success({"row_count": 1, "message": "Inserted 1 row(s)"})}
    )
    with client_for(server) as c:
        resp = c.execute("INSERT INTO t (id) VALUES ($1)", params=(42,), namespace="app")
    assert resp.result.message == "Inserted 1 row(s)" and resp.result.row_count == 1
    assert resp.took == 1.5
    (req,) = server.requests
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(req.content) == {
        "sql": "INSERT INTO t (id) VALUES ($1)",
        "params": [42],
        "namespace_id": "app",
    }


def test_execute_omits_params_and_namespace_when_not_given():
    """Without params or namespace the body carries only sql."""
    server = FakeServer({("POST", "/v1/api/sql"): lambda r: success()})
    with client_for(server) as c:
        c.execute("SELECT 1")
    assert server.bodies("/v1/api/sql") == [{"sql": "SELECT 1"}]


def test_execute_decodes_streamed_select():
    """A streamed SELECT (with "error": null) decodes into typed rows."""
    body = {
        "status": "success",
        "results": [rows_result([("id", "BigInt"), ("name", "Text")], [["1", "Widget"], ["2", None]])],
        "took": 3.2,
        "error": None,
    }
    server = FakeServer({("POST", "/v1/api/sql"): lambda r: httpx.Response(200, json=body)})
    with client_for(server) as c:
        assert c.execute("SELECT id, name FROM app.items").result.rows == [(1, "Widget"), (2, None)]


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (401, "MISSING_AUTHORIZATION", "Authentication required"),
        (401, "INVALID_CREDENTIALS", "Invalid credentials"),
        (400, "INVALID_SQL", "SQL statement is invalid or not allowed"),
        (400, "SQL_EXECUTION_ERROR", "Primary key violation: id=1 already exists"),
        (403, "PERMISSION_DENIED", "Admin privileges (DBA or System role) required for namespace operations"),
        (503, "NOT_LEADER", "not leader"),
        (500, "INTERNAL_ERROR", "serialization failed"),
    ],
)
def test_error_envelope_becomes_sql_error(status, code, message):
    """Each §2.5 error envelope raises SqlError carrying status, code, message and the SQL."""
    server = FakeServer({("POST", "/v1/api/sql"): lambda r: error(status, code, message)})
    with client_for(server) as c, pytest.raises(SqlError) as info:
        c.execute("SELECT * FROM app.t")
    err = info.value
    assert (err.status, err.code, err.message, err.sql) == (status, code, message, "SELECT * FROM app.t")
    assert not isinstance(err, RateLimited)


@pytest.mark.parametrize(
    ("status", "kind"), [(403, "IP_BANNED"), (503, "TOO_MANY_CONNECTIONS"), (413, "BODY_TOO_LARGE")]
)
def test_guard_shape_becomes_sql_error(status, kind):
    """The connection-guard shape {"error": kind, "message": ...} raises SqlError with that kind."""
    server = FakeServer(
        {("POST", "/v1/api/sql"): lambda r: httpx.Response(status, json={"error": kind, "message": "nope"})}
    )
    with client_for(server) as c, pytest.raises(SqlError) as info:
        c.execute("SELECT 1")
    assert (info.value.status, info.value.code, info.value.message) == (status, kind, "nope")


def test_non_json_body_is_reported_with_its_first_bytes():
    """A non-JSON body raises SqlError saying so and quoting the first 200 bytes."""
    html = "<html><body>502 Bad Gateway</body></html>" + "x" * 500
    server = FakeServer({("POST", "/v1/api/sql"): lambda r: httpx.Response(502, text=html)})
    with client_for(server) as c, pytest.raises(SqlError) as info:
        c.execute("SELECT 1")
    assert info.value.status == 502 and info.value.code == "NON_JSON_BODY"
    assert "not JSON" in info.value.message and "502 Bad Gateway" in info.value.message
    assert "x" * 300 not in info.value.message


def test_error_status_in_a_200_body_is_an_error():
    """A 200 answer whose body says status=error still raises SqlError."""
    server = FakeServer({("POST", "/v1/api/sql"): lambda r: error(200, "INVALID_SQL", "bad")})
    with client_for(server) as c, pytest.raises(SqlError, match="INVALID_SQL"):
        c.execute("SELEC 1")


# ---------------------------------------------------------------------------------------------- 429


def test_429_is_retried_then_succeeds():
    """A 429 followed by a success returns the success after one retry, honouring Retry-After."""
    answers = iter(
        [
            httpx.Response(
                429,
                headers={"Retry-After": "0"},
                json={
                    "status": "error",
                    "results": [],
                    "error": {"code": "RATE_LIMIT_EXCEEDED", "message": "slow"},
                },
            ),
            success({"row_count": 0, "message": "ok"}),
        ]
    )
    server = FakeServer({("POST", "/v1/api/sql"): lambda r: next(answers)})
    with client_for(server) as c:
        assert c.execute("SELECT 1").result.message == "ok"
    assert len(server.requests) == 2


def test_429_forever_raises_rate_limited_after_bounded_retries():
    """A server that always answers 429 gets at most 3 retries, then RateLimited saying to raise the limits."""
    server = FakeServer(
        {("POST", "/v1/api/sql"): lambda r: error(429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded")}
    )
    with client_for(server) as c, pytest.raises(RateLimited) as info:
        c.execute("SELECT 1")
    assert len(server.requests) == 4
    assert isinstance(info.value, SqlError) and info.value.status == 429
    assert info.value.code == "RATE_LIMIT_EXCEEDED"
    assert "rate_limit" in info.value.message and "Raise" in info.value.message


# ---------------------------------------------------------------------------------------------- transport


@pytest.mark.parametrize(
    ("exc", "phrase"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "is the server running"),
        (httpx.ReadTimeout("timed out"), "no answer within 10s"),
        (httpx.RemoteProtocolError("Server disconnected"), "reset or closed"),
        (httpx.ReadError("Connection reset by peer"), "reset or closed"),
    ],
)
def test_transport_failures_name_url_and_cause(exc, phrase):
    """Refused, timed-out and reset connections raise TransportError naming the URL and likely cause."""

    def boom(request: httpx.Request) -> httpx.Response:
        raise exc

    with KalamClient(BASE, token=TOKEN, transport=httpx.MockTransport(boom)) as c:
        with pytest.raises(TransportError) as info:
            c.execute("SELECT 1")
    assert f"{BASE}/v1/api/sql" in str(info.value)
    assert phrase in str(info.value)
    assert TOKEN not in str(info.value)


def test_every_request_has_a_timeout():
    """The client's timeout is applied to each request."""
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return success()

    with KalamClient(BASE, token=TOKEN, timeout=2.5, transport=httpx.MockTransport(handler)) as c:
        c.execute("SELECT 1")
    assert seen and all(t["read"] == 2.5 and t["connect"] == 2.5 for t in seen)


def test_bad_base_url_is_a_usage_error():
    """A base URL that is not http(s) is refused up front."""
    with pytest.raises(UsageError, match="base_url"):
        KalamClient("localhost:8080")


# ---------------------------------------------------------------------------------------------- auth


def test_login_stores_tokens_and_sends_credentials():
    """login posts user/password and uses the returned access token."""
    server = FakeServer(
        {
            ("POST", "/v1/api/auth/login"): lambda r: httpx.Response(200, json=login_body()),
            ("POST", "/v1/api/sql"): lambda r: success(),
        }
    )
    c = KalamClient.login(BASE, "alice", "Secret123!", transport=server.transport())
    with c:
        c.execute("SELECT 1")
        assert c.token == TOKEN and c.user == "alice"
    assert server.bodies("/v1/api/auth/login") == [{"user": "alice", "password": "Secret123!"}]
    assert server.requests[-1].headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("status", "kind", "hint"),
    [
        (401, "unauthorized", "check the user name and password"),
        (401, "account_locked", "lock"),
        (428, "setup_required", "bootstrap"),
        (403, "forbidden", "non-loopback"),
    ],
)
def test_login_refused_is_auth_error(status, kind, hint):
    """A refused login raises AuthError with status, kind and a hint."""
    server = FakeServer(
        {
            ("POST", "/v1/api/auth/login"): lambda r: httpx.Response(
                status, json={"error": kind, "message": "m"}
            )
        }
    )
    with pytest.raises(AuthError) as info:
        KalamClient.login(BASE, "alice", "wrong-password", transport=server.transport())
    assert (info.value.status, info.value.code) == (status, kind)
    assert hint in str(info.value) and "wrong-password" not in str(info.value)


def test_bootstrap_runs_setup_when_needed_then_logs_in_as_root():
    """bootstrap sets up a fresh server (root password + generated dba) and logs in as root."""
    server = FakeServer(
        {
            ("GET", "/v1/api/auth/status"): lambda r: httpx.Response(
                200, json={"needs_setup": True, "message": ""}
            ),
            ("POST", "/v1/api/auth/setup"): lambda r: httpx.Response(
                200,
                json={"user": {"id": "kalammodel_dba", "role": "dba"}, "message": "Server setup complete."},
            ),
            ("POST", "/v1/api/auth/login"): lambda r: httpx.Response(200, json=login_body()),
        }
    )
    with KalamClient.bootstrap(BASE, "RootPass123!", transport=server.transport()) as c:
        assert c.token == TOKEN
        (setup,) = server.bodies("/v1/api/auth/setup")
        assert setup["root_password"] == "RootPass123!" and setup["user"] == "kalammodel_dba"
        assert 8 <= len(setup["password"]) <= 72
        assert c.setup_credentials == ("kalammodel_dba", setup["password"])
        assert setup["password"] not in repr(c)
    assert server.bodies("/v1/api/auth/login") == [{"user": "root", "password": "RootPass123!"}]


def test_bootstrap_skips_setup_on_configured_server():
    """bootstrap only logs in when the server does not need setup."""
    server = FakeServer(
        {
            ("GET", "/v1/api/auth/status"): lambda r: httpx.Response(
                200, json={"needs_setup": False, "message": ""}
            ),
            ("POST", "/v1/api/auth/login"): lambda r: httpx.Response(200, json=login_body()),
        }
    )
    with KalamClient.bootstrap(BASE, "RootPass123!", transport=server.transport()) as c:
        assert c.token == TOKEN and c.setup_credentials is None
    assert [r.url.path for r in server.requests] == ["/v1/api/auth/status", "/v1/api/auth/login"]


def test_token_is_refreshed_shortly_before_expiry():
    """A token close to expires_at is refreshed with the refresh token before the next request."""
    now = [datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp()]
    expires = "2030-01-01T00:01:40.123456789+00:00"  # 100 s of lifetime, chrono-style nanoseconds
    server = FakeServer(
        {
            ("POST", "/v1/api/auth/login"): lambda r: httpx.Response(
                200, json=login_body(expires_at=expires)
            ),
            ("POST", "/v1/api/auth/refresh"): lambda r: httpx.Response(
                200,
                json=login_body(token="NEW-ACCESS", refresh="NEW-REFRESH", expires_at="2030-01-02T00:00:00Z"),
            ),
            ("POST", "/v1/api/sql"): lambda r: success(),
        }
    )
    c = KalamClient.login(BASE, "alice", "pw", transport=server.transport(), clock=lambda: now[0])
    with c:
        now[0] += 50
        c.execute("SELECT 1")
        assert not [r for r in server.requests if r.url.path == "/v1/api/auth/refresh"]
        now[0] += 45  # 5 s before expiry: inside the refresh margin (10% of lifetime)
        c.execute("SELECT 2")
    paths = [r.url.path for r in server.requests]
    assert paths == ["/v1/api/auth/login", "/v1/api/sql", "/v1/api/auth/refresh", "/v1/api/sql"]
    assert server.requests[2].headers["Authorization"] == f"Bearer {REFRESH}"
    assert server.requests[3].headers["Authorization"] == "Bearer NEW-ACCESS"


def test_token_expired_answer_triggers_one_refresh_and_retry():
    """A 401 TOKEN_EXPIRED is answered by refreshing once and resending the request."""
    answers = iter([error(401, "TOKEN_EXPIRED", "Token expired"), success({"row_count": 0, "message": "ok"})])
    server = FakeServer(
        {
            ("POST", "/v1/api/auth/login"): lambda r: httpx.Response(200, json=login_body()),
            ("POST", "/v1/api/auth/refresh"): lambda r: httpx.Response(
                200, json=login_body(token="NEW-ACCESS")
            ),
            ("POST", "/v1/api/sql"): lambda r: next(answers),
        }
    )
    with KalamClient.login(BASE, "alice", "pw", transport=server.transport()) as c:
        assert c.execute("SELECT 1").result.message == "ok"
    assert server.requests[-1].headers["Authorization"] == "Bearer NEW-ACCESS"


def test_tokens_never_appear_in_repr_or_errors():
    """Neither the access nor the refresh token shows in repr or in any raised message."""
    server = FakeServer(
        {
            ("POST", "/v1/api/auth/login"): lambda r: httpx.Response(200, json=login_body()),
            ("POST", "/v1/api/auth/refresh"): lambda r: httpx.Response(
                401, json={"error": "unauthorized", "message": "Refresh endpoint requires a refresh token"}
            ),
            ("POST", "/v1/api/sql"): lambda r: error(401, "TOKEN_EXPIRED", "Token expired"),
        }
    )
    c = KalamClient.login(BASE, "alice", "pw", transport=server.transport())
    with c, pytest.raises(AuthError) as info:
        c.execute("SELECT 1")
    for text in (repr(c), str(info.value), repr(info.value)):
        assert "SECRET" not in text
    assert "redacted" in repr(c)


def test_client_for_logs_in_another_user_on_the_same_server():
    """client_for returns a client logged in as the other user against the same base URL."""
    server = FakeServer(
        {
            ("POST", "/v1/api/auth/login"): lambda r: httpx.Response(
                200, json=login_body(token="TOKEN-bob", user=json.loads(r.content)["user"])
            )
        }
    )
    with client_for(server) as root, root.client_for("bob", "Secret123!") as bob:
        assert bob.token == "TOKEN-bob" and bob.base_url == BASE and bob.user == "bob"
    assert server.bodies("/v1/api/auth/login") == [{"user": "bob", "password": "Secret123!"}]


def test_health_returns_body():
    """health returns the /health JSON."""
    body = {"status": "healthy", "version": "0.4.3-rc.4", "api_version": "v1", "build_date": "x"}
    server = FakeServer({("GET", "/health"): lambda r: httpx.Response(200, json=body)})
    with client_for(server) as c:
        assert c.health() == body


# ---------------------------------------------------------------------------------------------- EXECUTE AS, users


def test_execute_as_quotes_the_user_id():
    """execute_as wraps the SQL in EXECUTE AS USER with the id quoted and a trailing ; removed."""
    server = FakeServer({("POST", "/v1/api/sql"): lambda r: success()})
    with client_for(server) as c:
        c.execute_as("o'brien", "SELECT * FROM app.notes;  ")
    assert server.sqls() == ["EXECUTE AS USER 'o''brien' (SELECT * FROM app.notes)"]


@pytest.mark.parametrize("bad", ["", "a/b", "..", "x..y", "a\\b", "a\0b", None])
def test_execute_as_rejects_ids_kalamdb_forbids(bad):
    """Ids that §4.2 forbids raise UsageError before anything is sent."""
    server = FakeServer()
    with client_for(server) as c, pytest.raises(UsageError, match="user id"):
        c.execute_as(bad, "SELECT 1")
    assert server.requests == []


def test_create_user_renders_quoted_statement():
    """create_user sends CREATE USER with quoted id and password and the role word."""
    server = FakeServer(
        {("POST", "/v1/api/sql"): lambda r: success({"row_count": 0, "message": "User 'bob' created"})}
    )
    with client_for(server) as c:
        c.create_user("bob", "it's-Secret1", "service")
        with pytest.raises(UsageError, match="role"):
            c.create_user("bob", "x", "dba; DROP")
    assert server.sqls() == ["CREATE USER 'bob' WITH PASSWORD 'it''s-Secret1' ROLE service"]


# ---------------------------------------------------------------------------------------------- read_all


class PagedTable:
    """A fake table answering the paged SELECTs and COUNT(*) of read_all, with optional misbehaviour."""

    def __init__(self, n: int, cap: int | None = None, count_offset: int = 0):
        self.ids = list(range(1, n + 1))
        self.cap = cap
        self.count_offset = count_offset

    def __call__(self, request: httpx.Request) -> httpx.Response:
        sql = json.loads(request.content)["sql"]
        m = re.fullmatch(r"(?:EXECUTE AS USER '\w+' \()?(.*?)\)?", sql)
        inner = m.group(1) if m else sql
        ids = self.ids
        if "WHERE id > 10" in inner:
            ids = [i for i in ids if i > 10]
        if inner.startswith("SELECT COUNT(*)"):
            count = len(ids) + self.count_offset
            return success(rows_result([("n", "BigInt")], [[str(count)]]))
        page = re.search(r"LIMIT (\d+) OFFSET (\d+)", inner)
        assert page, sql
        limit, offset = int(page.group(1)), int(page.group(2))
        if self.cap is not None:
            limit = min(limit, self.cap)
        chunk = ids[offset : offset + limit]
        return success(rows_result([("id", "BigInt"), ("v", "Text")], [[str(i), f"v{i}"] for i in chunk]))


def test_read_all_pages_until_a_short_page_and_checks_count():
    """read_all pages with ORDER BY/LIMIT/OFFSET until a short page, then cross-checks COUNT(*)."""
    server = FakeServer({("POST", "/v1/api/sql"): PagedTable(25)})
    with client_for(server) as c:
        result = c.read_all("app.t", order_by="id", page_size=10)
    assert [r[0] for r in result.rows] == list(range(1, 26))
    assert result.column_names == ["id", "v"] and result.row_count == 25
    assert server.sqls() == [
        "SELECT * FROM app.t ORDER BY id LIMIT 10 OFFSET 0",
        "SELECT * FROM app.t ORDER BY id LIMIT 10 OFFSET 10",
        "SELECT * FROM app.t ORDER BY id LIMIT 10 OFFSET 20",
        "SELECT COUNT(*) AS n FROM app.t",
    ]


def test_read_all_exact_multiple_reads_one_empty_page():
    """When the row count is a multiple of the page size, an empty page ends the read."""
    server = FakeServer({("POST", "/v1/api/sql"): PagedTable(20)})
    with client_for(server) as c:
        assert len(c.read_all("app.t", order_by="id", page_size=10).rows) == 20
    assert len(server.sqls()) == 4


def test_read_all_applies_where_and_as_user_to_pages_and_count():
    """The WHERE clause and EXECUTE AS wrapper apply to every page and to the COUNT."""
    server = FakeServer({("POST", "/v1/api/sql"): PagedTable(15)})
    with client_for(server) as c:
        result = c.read_all("app.t", "id", columns="id, v", where="id > 10", page_size=10, as_user="alice")
    assert [r[0] for r in result.rows] == [11, 12, 13, 14, 15]
    assert server.sqls() == [
        "EXECUTE AS USER 'alice' (SELECT id, v FROM app.t WHERE id > 10 ORDER BY id LIMIT 10 OFFSET 0)",
        "EXECUTE AS USER 'alice' (SELECT COUNT(*) AS n FROM app.t WHERE id > 10)",
    ]


def test_read_all_never_silently_truncates_a_capped_server():
    """A server capping pages below page_size makes read_all fail loudly against COUNT(*)."""
    server = FakeServer({("POST", "/v1/api/sql"): PagedTable(120, cap=50)})
    with client_for(server) as c, pytest.raises(Divergence) as info:
        c.read_all("app.t", order_by="id", page_size=100)
    assert info.value.invariant == "read_all_complete"
    assert (info.value.expected, info.value.actual) == (120, 50)
    assert "incomplete" in str(info.value)


def test_read_all_reports_count_disagreement():
    """A COUNT(*) smaller than the rows read is reported as duplication."""
    server = FakeServer({("POST", "/v1/api/sql"): PagedTable(7, count_offset=-2)})
    with client_for(server) as c, pytest.raises(Divergence, match="duplicating"):
        c.read_all("app.t", order_by="id")


def test_read_all_rejects_bad_page_size():
    """page_size must be a positive int."""
    with client_for(FakeServer()) as c, pytest.raises(UsageError, match="page_size"):
        c.read_all("app.t", "id", page_size=0)


# ---------------------------------------------------------------------------------------------- jobs


def job_answers(statuses: list[str]) -> Handler:
    it = iter(statuses)
    last = [statuses[-1]]

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(it, last[0])
        rows = [] if status == "" else [[status, f"msg-{status}"]]
        return success(rows_result([("status", "Text"), ("message", "Text")], rows))

    return handler


def test_wait_for_job_polls_until_terminal_status():
    """wait_for_job polls system.jobs until a terminal status and returns that row."""
    server = FakeServer({("POST", "/v1/api/sql"): job_answers(["", "queued", "running", "completed"])})
    with client_for(server) as c:
        row = c.wait_for_job("FL-1a2b3c4d5e6f", timeout=5.0, poll=0.001)
    assert row == {"status": "completed", "message": "msg-completed"}
    assert (
        server.sqls()[0] == "SELECT status, message FROM system.jobs WHERE job_id = 'FL-1a2b3c4d5e6f' LIMIT 1"
    )
    assert len(server.sqls()) == 4


@pytest.mark.parametrize("terminal", ["skipped", "failed", "cancelled"])
def test_wait_for_job_returns_failed_jobs_too(terminal):
    """failed, cancelled and skipped are terminal: the row is returned, not raised."""
    server = FakeServer({("POST", "/v1/api/sql"): job_answers([terminal])})
    with client_for(server) as c:
        assert c.wait_for_job("FL-x", timeout=5.0)["status"] == terminal


def test_wait_for_job_deadline_names_last_status():
    """A job stuck in running raises DeadlineExceeded naming its last status."""
    server = FakeServer({("POST", "/v1/api/sql"): job_answers(["running"])})
    with client_for(server) as c, pytest.raises(DeadlineExceeded, match="last status 'running'"):
        c.wait_for_job("FL-stuck", timeout=0.05, poll=0.01)


def test_client_errors_are_kalam_errors():
    """Everything the client raises for the server or network is a KalamError."""
    for cls in (SqlError, RateLimited, AuthError, TransportError, DeadlineExceeded):
        assert issubclass(cls, KalamError)


def test_idle_connections_are_dropped_before_the_servers_keep_alive_timeout():
    """uvicorn and actix-web close idle keep-alive connections after 5 s; a client keeping them as long races
    the close (a 15-minute fuzz run failed with "Server disconnected without sending a response" after a
    pause step). Every client's pool must drop them sooner, logged-in clients included."""
    from kalammodel.client._http import KEEPALIVE_EXPIRY_S

    client = KalamClient("http://127.0.0.1:9", token="t")
    pool = client._http._transport._pool  # httpx's connection pool (httpcore.ConnectionPool)
    assert KEEPALIVE_EXPIRY_S < 5.0
    assert pool._keepalive_expiry == KEEPALIVE_EXPIRY_S
    client.close()
