"""Fixtures for the conformance tests: a spawned embedded server per session, tokens, a tiny SQL helper.

``server_url`` / ``root_token`` / ``token_for`` / ``sql`` are shared with the WebSocket tests. ``spawn_server`` starts
an extra server (own data dir, optional faults) for tests that need one; every process is killed at teardown.

**Remote mode.** With ``KALAMDB_URL`` set, the same tests run against an already running server (a real
KalamDB): ``KALAMDB_ROOT_PASSWORD`` is root's password, ``KALAMDB_DATA_DIR`` (optional) its ``storage.data_path``
for the on-disk checks, ``KALAMDB_JWT_SECRET`` (optional) its ``auth.jwt_secret`` for minted tokens. Tests marked
``embedded_only`` (planted faults, engine internals, spawned processes, CLI flags) are skipped, as are tests
marked ``needs_data_dir`` / ``needs_jwt_secret`` when that variable is missing. User and namespace names a test
creates get a per-run suffix where a rerun against the same server would otherwise collide.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

REMOTE_URL = os.environ.get("KALAMDB_URL", "").rstrip("/") or None
REMOTE = REMOTE_URL is not None
ROOT_PASSWORD = (os.environ.get("KALAMDB_ROOT_PASSWORD") or "RootPass123!") if REMOTE else "RootPass123!"
_REMOTE_SECRET = os.environ.get("KALAMDB_JWT_SECRET") if REMOTE else None
JWT_SECRET = _REMOTE_SECRET or "kalammodel-test-secret-at-least-32-characters"
_REMOTE_DATA_DIR = os.environ.get("KALAMDB_DATA_DIR") if REMOTE else None
START_DEADLINE = 30.0
# A debug build of KalamDB is much slower than the embedded server: give jobs more time there.
JOB_DEADLINE = 120.0 if REMOTE else 30.0
# Unique per test run: names that outlive a test (users) must not collide with an earlier run on a real server.
RUN = uuid.uuid4().hex[:6]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "embedded_only(reason): needs the embedded server (faults, internals, spawned processes)"
    )
    config.addinivalue_line("markers", "needs_data_dir: reads the server's data directory")
    config.addinivalue_line("markers", "needs_jwt_secret: mints tokens with the server's JWT secret")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not REMOTE:
        return
    for item in items:
        mark = item.get_closest_marker("embedded_only")
        if mark is not None:
            why = mark.kwargs.get("reason") or (mark.args[0] if mark.args else "embedded server only")
            item.add_marker(pytest.mark.skip(reason=f"remote mode ({REMOTE_URL}): {why}"))
        elif item.get_closest_marker("needs_data_dir") and not _REMOTE_DATA_DIR:
            item.add_marker(
                pytest.mark.skip(reason="remote mode: set KALAMDB_DATA_DIR to check files on disk")
            )
        elif item.get_closest_marker("needs_jwt_secret") and not _REMOTE_SECRET:
            item.add_marker(pytest.mark.skip(reason="remote mode: set KALAMDB_JWT_SECRET to mint tokens"))


def created(kind: str, table: str) -> str:
    """KalamDB's answer to CREATE TABLE, also to IF NOT EXISTS on an existing table (handlers ddl/table/create.rs)."""
    return f"CREATE TABLE via Raft consensus: {kind} table {table} created successfully"


def remote_xfail(reason: str) -> pytest.MarkDecorator:
    """A strict xfail that applies only against a real server: the test asserts the correct behaviour."""
    return pytest.mark.xfail(REMOTE, reason=reason, strict=True)


def unique(name: str) -> str:
    """``name`` in embedded mode (fresh data dir per run); ``name_<run>`` against a long-lived real server."""
    return f"{name}_{RUN}" if REMOTE else name


class ServerProcess:
    """A spawned ``python -m kalammodel.server``; ``url`` once it printed its listening line."""

    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None):
        self.data_dir = data_dir
        cmd = [
            sys.executable,
            "-m",
            "kalammodel.server",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--root-password",
            ROOT_PASSWORD,
            "--jwt-secret",
            JWT_SECRET,
            *extra,
        ]
        full_env = {**os.environ, **(env or {})}
        if env is None or "KALAMMODEL_FAULTS" not in env:
            full_env.pop("KALAMMODEL_FAULTS", None)  # faults only when a test asks for them
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env
        )
        self.url = self._wait_listening()

    def _wait_listening(self) -> str:
        found: list[str] = []

        def reader() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if line.startswith("kalammodel-server listening on "):
                    found.append(line.split(" on ", 1)[1].strip())
                    return

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(START_DEADLINE)
        if not found:
            self.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(
                f"server did not print its listening line within {START_DEADLINE}s: {err[-2000:]}"
            )
        return found[0]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class RemoteServer:
    """The already running server named by ``KALAMDB_URL``; ``data_dir`` from ``KALAMDB_DATA_DIR`` (or None)."""

    def __init__(self, url: str, data_dir: Path | None):
        self.url = url
        self.data_dir = data_dir
        deadline = time.monotonic() + START_DEADLINE
        last = ""
        while True:
            try:
                r = httpx.get(f"{url}/health", timeout=5)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code} {r.text[:200]}"
            except httpx.HTTPError as e:
                last = repr(e)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"KALAMDB_URL={url} did not answer /health within {START_DEADLINE}s: {last}"
                )
            time.sleep(0.2)

    def kill(self) -> None:
        """Never stops a server this test run did not start."""


def mint_token(
    user_id: str,
    role: str,
    *,
    lifetime: int = 3600,
    token_type: str = "access",
    secret: str = JWT_SECRET,
    iat: int | None = None,
) -> str:
    """An HS256 token like the real server's (§1.4), signed with the test secret."""
    now = int(time.time()) if iat is None else iat
    return jwt.encode(
        {
            "sub": user_id,
            "iss": "kalamdb",
            "exp": now + lifetime,
            "iat": now,
            "email": None,
            "role": role,
            "token_type": token_type,
        },
        secret,
        algorithm="HS256",
    )


def post_sql(
    url: str, token: str | None, sql: str, params: list[Any] | None = None, namespace: str | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"sql": sql}
    if params is not None:
        body["params"] = params
    if namespace is not None:
        body["namespace_id"] = namespace
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/v1/api/sql", json=body, headers=headers, timeout=30.0)


class Sql:
    """``sql(text)`` → the JSON body, asserting HTTP 200 unless ``status`` says otherwise."""

    def __init__(self, url: str, token: str):
        self.url = url
        self.token = token

    def __call__(
        self,
        text: str,
        params: list[Any] | None = None,
        *,
        status: int = 200,
        token: str | None = None,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        r = post_sql(self.url, token or self.token, text, params, namespace)
        assert r.status_code == status, f"{text!r}: HTTP {r.status_code} {r.text}"
        return r.json()

    def rows(self, text: str, **kw: Any) -> list[list[Any]]:
        return self(text, **kw)["results"][0].get("rows", [])

    def dicts(self, text: str, **kw: Any) -> list[dict[str, Any]]:
        res = self(text, **kw)["results"][0]
        names = [f["name"] for f in res.get("schema", [])]
        return [dict(zip(names, r)) for r in res.get("rows", [])]

    def wait_job(self, message: str, timeout: float = JOB_DEADLINE) -> dict[str, Any]:
        """Wait for the job named in a 'Job ID: FL-...' message to finish; returns its system.jobs row."""
        job_id = message.rsplit(" ", 1)[-1]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.dicts(f"SELECT job_id, status, message FROM system.jobs WHERE job_id = '{job_id}'")
            if rows and rows[0]["status"] in ("completed", "failed", "skipped", "cancelled"):
                return rows[0]
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} did not finish within {timeout}s")

    def flush(self, table: str) -> dict[str, Any]:
        msg = self(f"STORAGE FLUSH TABLE {table}")["results"][0]["message"]
        assert msg.startswith("Storage flush started"), msg
        job = self.wait_job(msg)
        assert job["status"] == "completed", job
        return job


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess | RemoteServer]:
    if REMOTE_URL is not None:
        yield RemoteServer(REMOTE_URL, Path(_REMOTE_DATA_DIR) if _REMOTE_DATA_DIR else None)
        return
    proc = ServerProcess(tmp_path_factory.mktemp("kalam-data"))
    yield proc
    proc.kill()


@pytest.fixture(scope="session")
def data_dir(server: ServerProcess | RemoteServer) -> Path:
    """The server's data directory (``storage.data_path``); tests using it are marked ``needs_data_dir``."""
    assert server.data_dir is not None, "mark the test needs_data_dir"
    return server.data_dir


@pytest.fixture(scope="session")
def server_url(server: ServerProcess) -> str:
    return server.url


@pytest.fixture(scope="session")
def root_token(server_url: str) -> str:
    r = httpx.post(
        f"{server_url}/v1/api/auth/login", json={"user": "root", "password": ROOT_PASSWORD}, timeout=10
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


@pytest.fixture(scope="session")
def token_for(server_url: str, root_token: str) -> Callable[..., str]:
    """``token_for(user_id, role="user")`` creates the user (once) and logs in; returns an access token."""
    made: dict[str, str] = {}

    def make(user_id: str, role: str = "user") -> str:
        if user_id not in made:
            password = f"Pw-{user_id}-1!"
            r = post_sql(
                server_url, root_token, f"CREATE USER '{user_id}' WITH PASSWORD '{password}' ROLE {role}"
            )
            if REMOTE and r.status_code != 200:  # left by an earlier run against the same server: reset it
                post_sql(server_url, root_token, f"ALTER USER '{user_id}' SET ROLE {role}")
                post_sql(server_url, root_token, f"ALTER USER '{user_id}' SET PASSWORD '{password}'")
            r = httpx.post(
                f"{server_url}/v1/api/auth/login",
                json={"user": user_id, "password": f"Pw-{user_id}-1!"},
                timeout=10,
            )
            assert r.status_code == 200, r.text
            made[user_id] = r.json()["access_token"]
        return made[user_id]

    return make


@pytest.fixture
def sql(server_url: str, root_token: str) -> Sql:
    return Sql(server_url, root_token)


@pytest.fixture
def ns(sql: Sql) -> Iterator[str]:
    """A fresh namespace, dropped at teardown."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    sql(f"CREATE NAMESPACE {name}")
    yield name
    sql(f"DROP NAMESPACE IF EXISTS {name}")


@pytest.fixture
def spawn_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    if REMOTE:
        pytest.skip("remote mode: spawning an embedded server is embedded_only")
    procs: list[ServerProcess] = []

    def spawn(*extra: str, data_dir: Path | None = None, env: dict[str, str] | None = None) -> ServerProcess:
        p = ServerProcess(data_dir or tmp_path / f"data{len(procs)}", *extra, env=env)
        procs.append(p)
        return p

    yield spawn
    for p in procs:
        p.kill()


def wait_refused(url: str, token: str, timeout: float = 15.0) -> httpx.Response:
    """Poll ``SELECT 1`` with ``token`` until it is refused and return that answer.

    KalamDB caches user records for 5 s (kalamdb-auth ``CachedUsersRepo``), so a role change or DROP USER takes
    up to 5 s to reach tokens; the embedded server refuses at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        r = post_sql(url, token, "SELECT 1")
        if r.status_code != 200:
            return r
        assert time.monotonic() < deadline, f"the token was still accepted {timeout}s later"
        time.sleep(0.1)


def login(url: str, user: str, password: str) -> str:
    r = httpx.post(f"{url}/v1/api/auth/login", json={"user": user, "password": password}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]
