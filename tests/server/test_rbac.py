"""§6: role matrix, USER-table scope, EXECUTE AS USER, SHARED access levels; denials change nothing."""

from __future__ import annotations

from conftest import post_sql, unique, wait_refused


def _code(r):
    return r.status_code, r.json().get("error", {}).get("code")


def test_user_cannot_do_admin_ddl(server_url, token_for, sql, ns):
    """A user gets 403 PERMISSION_DENIED for namespace DDL, CREATE USER, SHARED tables, DROP TABLE, flush."""
    tok = token_for("rbac_u")
    sql(f"CREATE TABLE {ns}.sh (id INT PRIMARY KEY)")
    for stmt in (
        "CREATE NAMESPACE rbac_x",
        "CREATE USER 'zz' WITH PASSWORD 'x' ROLE user",
        f"CREATE SHARED TABLE {ns}.s2 (id INT PRIMARY KEY)",
        f"DROP TABLE {ns}.sh",
        f"STORAGE FLUSH TABLE {ns}.sh",
        "SELECT * FROM system.users",
    ):
        assert _code(post_sql(server_url, tok, stmt)) == (403, "PERMISSION_DENIED"), stmt
    assert sql.rows("SELECT COUNT(*) FROM system.namespaces WHERE name = 'rbac_x'") == [["0"]]
    tables = f"SELECT table_name FROM system.tables WHERE namespace_id = '{ns}' ORDER BY table_name"
    assert sql.rows(tables) == [["sh"]]


def test_user_tables_are_isolated(server_url, token_for, sql, ns):
    """Each user sees, updates and deletes only their own rows; root sees only root's rows."""
    sql(f"CREATE USER TABLE {ns}.notes (id INT PRIMARY KEY, body TEXT)")
    a, b = token_for("iso_a"), token_for("iso_b")
    post_sql(server_url, a, f"INSERT INTO {ns}.notes (id, body) VALUES (1, 'a1'), (2, 'a2')")
    post_sql(server_url, b, f"INSERT INTO {ns}.notes (id, body) VALUES (1, 'b1')")
    assert (
        post_sql(server_url, b, f"UPDATE {ns}.notes SET body = 'hack' WHERE id = 2").json()["results"][0][
            "row_count"
        ]
        == 0
    )
    assert (
        post_sql(server_url, b, f"DELETE FROM {ns}.notes WHERE id > 0").json()["results"][0]["row_count"] == 1
    )
    rows = post_sql(server_url, a, f"SELECT id, body FROM {ns}.notes").json()["results"][0]["rows"]
    assert rows == [[1, "a1"], [2, "a2"]]
    assert sql.rows(f"SELECT id FROM {ns}.notes") == []


def test_execute_as_user(server_url, token_for, sql, ns):
    """EXECUTE AS USER writes into the target's partition, also for unknown ids; as_user names the target."""
    sql(f"CREATE USER TABLE {ns}.notes (id INT PRIMARY KEY, body TEXT)")
    body = sql(f"EXECUTE AS USER 'ghost_42' (INSERT INTO {ns}.notes (id, body) VALUES (1, 'g'))")
    assert body["results"][0]["as_user"] == "ghost_42"
    res = sql(f"EXECUTE AS USER ghost_42 (SELECT id, body FROM {ns}.notes)")["results"][0]
    assert res["rows"] == [[1, "g"]] and res["as_user"] == "ghost_42"
    assert sql.rows(f"SELECT id FROM {ns}.notes") == []
    tok = token_for("exec_owner")
    sql(f"EXECUTE AS USER 'exec_owner' (INSERT INTO {ns}.notes (id, body) VALUES (7, 'mine'))")
    assert post_sql(server_url, tok, f"SELECT id FROM {ns}.notes").json()["results"][0]["rows"] == [[7]]


def test_execute_as_denials(server_url, token_for, sql, ns):
    """A user may not impersonate others; a service may not impersonate a dba; DML on SHARED tables is refused."""
    sql(f"CREATE USER TABLE {ns}.notes (id INT PRIMARY KEY)")
    sql(f"CREATE TABLE {ns}.sh (id INT PRIMARY KEY)")
    u, svc = token_for("ea_user"), token_for("ea_svc", "service")
    token_for("ea_dba", "dba")
    r = post_sql(server_url, u, f"EXECUTE AS USER 'someone' (INSERT INTO {ns}.notes (id) VALUES (1))")
    assert _code(r) == (403, "PERMISSION_DENIED")
    assert "EXECUTE AS USER is not authorized" in r.json()["error"]["message"]
    assert _code(post_sql(server_url, svc, f"EXECUTE AS USER 'ea_dba' (SELECT * FROM {ns}.notes)")) == (
        403,
        "PERMISSION_DENIED",
    )
    r = post_sql(server_url, u, f"EXECUTE AS USER 'ea_user' (INSERT INTO {ns}.notes (id) VALUES (3))")
    assert r.status_code == 200
    r = sql(f"EXECUTE AS USER 'x1' (INSERT INTO {ns}.sh (id) VALUES (1))", status=400)
    assert r["error"] == {
        "code": "SQL_EXECUTION_ERROR",
        "message": f"EXECUTE AS USER is not allowed on SHARED tables (table '{ns}:sh'). "
        "AS USER impersonation is only supported for USER and STREAM tables.",
    }
    r = post_sql(server_url, u, f"EXECUTE AS USER 'ea_user' (INSERT INTO {ns}.sh (id) VALUES (1))")
    assert (r.status_code, r.json()["error"]["message"]) == (400, "SQL statement failed")
    # an impersonated SELECT runs with role user: a PRIVATE shared table is denied, a PUBLIC one is readable
    assert (
        sql(f"EXECUTE AS USER 'x1' (SELECT * FROM {ns}.sh)", status=403)["error"]["code"]
        == "PERMISSION_DENIED"
    )
    sql(f"ALTER TABLE {ns}.sh SET ACCESS LEVEL public")
    assert sql(f"EXECUTE AS USER 'x1' (SELECT id FROM {ns}.sh)")["results"][0]["row_count"] == 0
    assert sql(f"EXECUTE AS USER 'someone' (SELECT id FROM {ns}.notes)")["results"][0]["row_count"] == 0


def test_shared_access_levels(server_url, token_for, sql, ns):
    """PRIVATE: users can neither read nor write; PUBLIC: users read only; service writes."""
    sql(f"CREATE TABLE {ns}.cfg (id INT PRIMARY KEY, v TEXT)")
    sql(f"INSERT INTO {ns}.cfg (id, v) VALUES (1, 'x')")
    u, svc = token_for("sh_user"), token_for("sh_svc", "service")
    assert _code(post_sql(server_url, u, f"SELECT * FROM {ns}.cfg")) == (403, "PERMISSION_DENIED")
    assert _code(post_sql(server_url, u, f"INSERT INTO {ns}.cfg (id, v) VALUES (2, 'u')")) == (
        403,
        "PERMISSION_DENIED",
    )
    assert post_sql(server_url, svc, f"INSERT INTO {ns}.cfg (id, v) VALUES (3, 's')").status_code == 200
    msg = sql(f"ALTER TABLE {ns}.cfg SET ACCESS LEVEL public")["results"][0]["message"]
    assert msg.startswith(f"Table {ns}.cfg altered successfully")
    assert post_sql(server_url, u, f"SELECT id FROM {ns}.cfg").json()["results"][0]["rows"] == [[1], [3]]
    assert _code(post_sql(server_url, u, f"DELETE FROM {ns}.cfg WHERE id = 1")) == (403, "PERMISSION_DENIED")
    assert sql.rows(f"SELECT id FROM {ns}.cfg") == [[1], [3]]


def test_user_management(sql, server_url):
    """CREATE/ALTER/DROP USER messages; a dropped user's token dies; duplicates are rejected."""
    import httpx

    um = unique("um1")
    assert (
        sql(f"CREATE USER '{um}' WITH PASSWORD 'Secret123!' ROLE viewer")["results"][0]["message"]
        == f"User '{um}' created"
    )
    assert (
        "already exists"
        in sql(f"CREATE USER '{um}' WITH PASSWORD 'x' ROLE user", status=400)["error"]["message"]
    )
    tok = httpx.post(f"{server_url}/v1/api/auth/login", json={"user": um, "password": "Secret123!"}).json()[
        "access_token"
    ]
    assert sql.rows(f"SELECT role FROM system.users WHERE user_id = '{um}'") == [["user"]]
    assert sql(f"ALTER USER '{um}' SET EMAIL 'a@b.c'")["results"][0]["message"] == f"User '{um}' updated"
    assert sql(f"DROP USER '{um}'")["results"][0]["message"] == f"User '{um}' dropped (soft delete)"
    assert wait_refused(server_url, tok).status_code == 401
