"""§1: health, login, tokens, lockout, setup flow."""

from __future__ import annotations

import httpx
import pytest
from conftest import ROOT_PASSWORD, mint_token, post_sql, unique, wait_refused


def test_health_reports_version(server_url):
    """/health and /v1/api/healthcheck answer the same healthy document without auth."""
    for path in ("/health", "/v1/api/healthcheck"):
        body = httpx.get(server_url + path, timeout=5).json()
        assert body["status"] == "healthy" and body["version"] == "0.4.3-rc.4" and body["api_version"] == "v1"


def test_login_returns_tokens_and_user(server_url):
    """Login answers the §1.4 body with access and refresh tokens and sets cookies."""
    r = httpx.post(f"{server_url}/v1/api/auth/login", json={"username": "root", "password": ROOT_PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert (
        body["user"]["id"] == "root" and body["user"]["role"] == "system" and body["admin_ui_access"] is True
    )
    assert {"access_token", "refresh_token", "expires_at", "refresh_expires_at"} <= set(body)
    assert "kalamdb_refresh" in r.cookies


def test_login_rejects_bad_password_and_unknown_fields(server_url):
    """A wrong password is 401 unauthorized; an unknown field is 400."""
    r = httpx.post(f"{server_url}/v1/api/auth/login", json={"user": "nobody", "password": "x"})
    assert r.status_code == 401 and r.json() == {"error": "unauthorized", "message": "Invalid credentials"}
    r = httpx.post(f"{server_url}/v1/api/auth/login", json={"user": "root", "password": "x", "extra": 1})
    assert r.status_code == 400


def test_lockout_after_five_failures(server_url, root_token):
    """Five bad passwords lock the account: even the right password is refused with account_locked."""
    user = unique("locky")
    post_sql(server_url, root_token, f"CREATE USER '{user}' WITH PASSWORD 'GoodPass1!' ROLE user")
    for _ in range(5):
        r = httpx.post(f"{server_url}/v1/api/auth/login", json={"user": user, "password": "bad"})
        assert r.status_code == 401
    r = httpx.post(f"{server_url}/v1/api/auth/login", json={"user": user, "password": "GoodPass1!"})
    assert r.status_code == 401 and r.json()["error"] == "account_locked"


@pytest.mark.needs_jwt_secret
def test_sql_auth_errors(server_url):
    """Missing, Basic, refresh, expired and role-mismatch tokens get the §1.5 codes."""
    r = post_sql(server_url, None, "SELECT 1")
    assert r.status_code == 401
    body = r.json()
    assert isinstance(body.pop("took"), float)
    assert body == {
        "status": "error",
        "error": {"code": "MISSING_AUTHORIZATION", "message": "Authentication required"},
        "results": [],
    }
    r = httpx.post(
        f"{server_url}/v1/api/sql", json={"sql": "SELECT 1"}, headers={"Authorization": "Basic cm9vdDp4"}
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "INVALID_CREDENTIALS"
    for tok in (
        mint_token("root", "system", token_type="refresh"),
        mint_token("root", "user"),
        mint_token("root", "system", secret="another-secret-another-secret-xx"),
    ):
        r = post_sql(server_url, tok, "SELECT 1")
        assert r.status_code == 401 and r.json()["error"]["code"] == "INVALID_CREDENTIALS"
    r = post_sql(server_url, mint_token("root", "system", lifetime=-3600), "SELECT 1")
    assert r.status_code == 401 and r.json()["error"]["code"] == "TOKEN_EXPIRED"


def test_role_change_kills_tokens(server_url, root_token, token_for):
    """A token minted before ALTER USER SET ROLE is refused afterwards (KalamDB: within its 5 s user cache)."""
    user = unique("rolechg")
    tok = token_for(user)
    assert post_sql(server_url, tok, "SELECT 1").status_code == 200
    post_sql(server_url, root_token, f"ALTER USER '{user}' SET ROLE service")
    r = wait_refused(server_url, tok)
    assert r.status_code == 401 and r.json()["error"]["code"] == "INVALID_CREDENTIALS"


def test_refresh_me_logout(server_url):
    """Refresh by bearer returns a new login body; /me names the user; logout clears cookies only."""
    body = httpx.post(
        f"{server_url}/v1/api/auth/login", json={"user": "root", "password": ROOT_PASSWORD}
    ).json()
    r = httpx.post(
        f"{server_url}/v1/api/auth/refresh", headers={"Authorization": f"Bearer {body['refresh_token']}"}
    )
    assert r.status_code == 200 and r.json()["user"]["id"] == "root"
    me = httpx.get(
        f"{server_url}/v1/api/auth/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"}
    )
    assert me.json()["user"]["id"] == "root"
    out = httpx.post(f"{server_url}/v1/api/auth/logout")
    assert out.json() == {"message": "Logged out successfully"}
    assert post_sql(server_url, body["access_token"], "SELECT 1").status_code == 200


@pytest.mark.embedded_only(reason="starts a server without a root password")
def test_setup_flow_without_root_password(spawn_server, monkeypatch):
    """With no root password the server needs setup; setup sets it and creates a dba user."""
    proc = spawn_server()
    # the fixture passes --root-password; start one without it
    proc.kill()
    import subprocess
    import sys

    from conftest import ServerProcess

    p = ServerProcess.__new__(ServerProcess)
    p.data_dir = proc.data_dir.parent / "nosetup"
    p.proc = subprocess.Popen(
        [sys.executable, "-m", "kalammodel.server", "--port", "0", "--data-dir", str(p.data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in __import__("os").environ.items() if k != "KALAMDB_ROOT_PASSWORD"},
    )
    try:
        url = p._wait_listening()
        assert httpx.get(f"{url}/v1/api/auth/status").json()["needs_setup"] is True
        r = httpx.post(f"{url}/v1/api/auth/login", json={"user": "root", "password": ""})
        assert r.status_code == 428 and r.json()["error"] == "setup_required"
        r = httpx.post(
            f"{url}/v1/api/auth/setup",
            json={"user": "admin", "password": "short", "root_password": "RootPass123!"},
        )
        assert r.status_code == 400 and r.json()["error"] == "weak_password"
        r = httpx.post(
            f"{url}/v1/api/auth/setup",
            json={
                "user": "admin",
                "password": "AdminPass123!",
                "root_password": "RootPass123!",
                "email": None,
            },
        )
        assert r.status_code == 200 and r.json()["user"]["role"] == "dba" and "access_token" not in r.json()
        r = httpx.post(
            f"{url}/v1/api/auth/setup",
            json={"user": "admin2", "password": "AdminPass123!", "root_password": "RootPass123!"},
        )
        assert r.status_code == 409 and r.json()["error"] == "already_configured"
        assert (
            httpx.post(
                f"{url}/v1/api/auth/login", json={"user": "root", "password": "RootPass123!"}
            ).status_code
            == 200
        )
    finally:
        p.kill()
