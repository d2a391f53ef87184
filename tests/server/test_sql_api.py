"""§2: request shapes, envelopes, multi-statement semantics, params, errors and redaction."""

from __future__ import annotations

import httpx
from conftest import created, post_sql


def test_single_select_is_streamed_shape(sql, ns):
    """A single SELECT carries "error": null, schema with flags, BIGINT as strings and as_user."""
    sql(f"CREATE TABLE {ns}.items (id BIGINT PRIMARY KEY, name TEXT)")
    sql(f"INSERT INTO {ns}.items (id, name) VALUES (1, 'Widget')")
    body = sql(f"SELECT id, name FROM {ns}.items")
    assert body["error"] is None and body["status"] == "success" and isinstance(body["took"], float)
    res = body["results"][0]
    assert res["schema"] == [
        {"name": "id", "data_type": "BigInt", "index": 0, "flags": ["pk", "nn", "uq"]},
        {"name": "name", "data_type": "Text", "index": 1},
    ]
    assert res["rows"] == [["1", "Widget"]] and res["row_count"] == 1 and res["as_user"] == "root"


def test_dml_and_ddl_envelopes(sql, ns):
    """DML and DDL results have message and row_count, no error key."""
    body = sql(f"CREATE TABLE {ns}.t (id INT PRIMARY KEY)")
    assert body["results"] == [{"row_count": 0, "message": created("shared", f"{ns}.t"), "as_user": "root"}]
    assert "error" not in body
    body = sql(f"INSERT INTO {ns}.t (id) VALUES (1), (2), (3)")
    assert body["results"][0]["message"] == "Inserted 3 row(s)" and body["results"][0]["row_count"] == 3


def test_batch_aggregates_dml_and_omits_zero(sql, ns):
    """A batch sums DML counts at the end and omits zero totals; SELECT/DDL keep their place."""
    body = sql(
        f"CREATE TABLE {ns}.t (id INT PRIMARY KEY, v INT); INSERT INTO {ns}.t (id, v) VALUES (1, 1); "
        f"INSERT INTO {ns}.t (id, v) VALUES (2, 2); SELECT id FROM {ns}.t; "
        f"UPDATE {ns}.t SET v = 5 WHERE id = 99"
    )
    msgs = [r.get("message") for r in body["results"]]
    assert msgs == [created("shared", f"{ns}.t"), None, "Inserted 2 row(s)"]
    assert body["results"][1]["rows"] == [[1], [2]]


def test_batch_failure_keeps_earlier_statements(sql, ns):
    """The first failing statement is reported as 'Statement N failed' and earlier ones stay committed."""
    sql(f"CREATE TABLE {ns}.t (id INT PRIMARY KEY)")
    body = sql(f"INSERT INTO {ns}.t (id) VALUES (1); INSERT INTO {ns}.t (id) VALUES (1)", status=400)
    assert body["status"] == "error" and body["results"] == []
    assert body["error"]["code"] == "SQL_EXECUTION_ERROR"
    assert body["error"]["message"].startswith("Statement 2 failed:")
    assert sql.rows(f"SELECT id FROM {ns}.t") == [[1]]


def test_params(sql, ns):
    """$1..$n bind scalars; arrays are INVALID_PARAMETER; params with a batch are PARAMS_WITH_BATCH."""
    sql(f"CREATE TABLE {ns}.t (id BIGINT PRIMARY KEY, name TEXT)")
    sql(f"INSERT INTO {ns}.t (id, name) VALUES ($1, $2)", [7, "seven"])
    assert sql.rows(f"SELECT name FROM {ns}.t WHERE id = $1", params=[7]) == [["seven"]]
    assert (
        sql(f"SELECT 1 FROM {ns}.t WHERE id = $1", [[1]], status=400)["error"]["code"] == "INVALID_PARAMETER"
    )
    body = sql("SELECT 1; SELECT 2", [1], status=400)
    assert body["error"]["code"] == "PARAMS_WITH_BATCH"


def test_bad_json_and_big_body(server_url, root_token):
    """Malformed JSON is 400 INVALID_INPUT; a body over 10 MB is BODY_TOO_LARGE."""
    h = {"Authorization": f"Bearer {root_token}", "Content-Type": "application/json"}
    r = httpx.post(f"{server_url}/v1/api/sql", content=b"{nope", headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_INPUT"
    assert r.json()["error"]["message"].startswith("Invalid JSON payload")
    r = httpx.post(f"{server_url}/v1/api/sql", content=b" " * (10 * 1024 * 1024 + 10), headers=h, timeout=30)
    assert r.status_code == 413 and r.json()["error"] == "BODY_TOO_LARGE"


def test_parse_error_and_redaction(sql, ns, token_for, server_url):
    """Parse errors are INVALID_SQL without details; a user sees redacted texts, an admin texts and details."""
    body = sql("SELEC nonsense", status=400)
    assert body["error"]["code"] == "INVALID_SQL" and "details" not in body["error"]
    tok = token_for("redact_user")
    r = post_sql(server_url, tok, "SELEC nonsense")
    assert r.json()["error"] == {"code": "INVALID_SQL", "message": "SQL statement is invalid or not allowed"}
    r = post_sql(server_url, tok, f"SELECT * FROM {ns}.missing_table")
    assert r.status_code == 400
    assert r.json()["error"] == {"code": "SQL_EXECUTION_ERROR", "message": "SQL statement failed"}
    r = post_sql(server_url, tok, f"SELECT * FROM {ns}.missing_table").json()
    admin = sql(f"SELECT * FROM {ns}.missing_table", status=400)
    assert "not found" in admin["error"]["message"] and r["error"]["message"] == "SQL statement failed"
    assert admin["error"]["details"] == f"SELECT * FROM {ns}.missing_table"


def test_password_hash_is_redacted_for_users(sql, ns, token_for, server_url):
    """A column named password_hash shows *** to a user role."""
    sql(f"CREATE USER TABLE {ns}.creds (id INT PRIMARY KEY, password_hash TEXT)")
    tok = token_for("redact_pw")
    post_sql(server_url, tok, f"INSERT INTO {ns}.creds (id, password_hash) VALUES (1, 'secret')")
    rows = post_sql(server_url, tok, f"SELECT password_hash FROM {ns}.creds").json()["results"][0]["rows"]
    assert rows == [["***"]]


def test_transactions_commit_and_rollback(sql, ns):
    """BEGIN..ROLLBACK discards writes, BEGIN..COMMIT keeps them, an open transaction is rolled back."""
    sql(f"CREATE TABLE {ns}.t (id INT PRIMARY KEY)")
    body = sql(f"BEGIN; INSERT INTO {ns}.t (id) VALUES (1); ROLLBACK")
    assert body["results"][0]["message"].startswith("Transaction started (")
    assert sql.rows(f"SELECT id FROM {ns}.t") == []
    sql(f"BEGIN; INSERT INTO {ns}.t (id) VALUES (2); COMMIT")
    body = sql(f"BEGIN; INSERT INTO {ns}.t (id) VALUES (3)", status=400)
    assert "open explicit transaction" in body["error"]["message"]
    assert sql.rows(f"SELECT id FROM {ns}.t") == [[2]]


def test_type_encoding(sql, ns):
    """Cells follow §2.4: FLOAT widened f32, TIMESTAMP µs, JSON string, DECIMAL string, BOOLEAN bool."""
    sql(
        f"CREATE TABLE {ns}.ty (id INT PRIMARY KEY, f FLOAT, d DOUBLE, ts TIMESTAMP, j JSON, dec DECIMAL(10,2), "
        "b BOOLEAN, s SMALLINT)"
    )
    sql(
        f"INSERT INTO {ns}.ty (id, f, d, ts, j, dec, b, s) VALUES "
        "(1, 45.67, 1.5, '2023-01-01 12:00:00', '{\"a\":1}', 200.75, true, 3)"
    )
    res = sql(f"SELECT id, f, d, ts, j, dec, b, s FROM {ns}.ty")["results"][0]
    assert [f["data_type"] for f in res["schema"]] == [
        "Int",
        "Float",
        "Double",
        "Timestamp",
        "Json",
        {"Decimal": {"precision": 10, "scale": 2}},
        "Boolean",
        "SmallInt",
    ]
    assert res["rows"] == [[1, 45.66999816894531, 1.5, 1672574400000000, '{"a":1}', "200.75", True, 3]]


def test_parameter_limits(sql, ns):
    """More than 50 parameters, or one over 512 KiB (a string counts 24 bytes + its length), fail the statement."""
    sql(f"CREATE TABLE {ns}.t (id INT PRIMARY KEY, v TEXT)")
    err = sql(f"SELECT id FROM {ns}.t WHERE id = $1", list(range(51)), status=400)["error"]
    assert err["code"] == "SQL_EXECUTION_ERROR"
    assert (
        err["message"]
        == "Statement 1 failed: Parameter count exceeded: maximum 50 parameters allowed, got 51"
    )
    big = "x" * (512 * 1024 - 24 + 1)
    err = sql(f"INSERT INTO {ns}.t (id, v) VALUES ($1, $2)", [1, big], status=400)["error"]
    assert (
        "Parameter size exceeded: parameter at index 1 is 524289 bytes (max 524288 bytes)" in err["message"]
    )
    assert sql.rows(f"SELECT COUNT(*) FROM {ns}.t") == [["0"]]
    sql(f"INSERT INTO {ns}.t (id, v) VALUES ($1, $2)", [1, "x" * (512 * 1024 - 24)])
    assert sql.rows(f"SELECT COUNT(*) FROM {ns}.t") == [["1"]]


def test_system_cluster_answers_the_readiness_poll(sql, token_for, server_url):
    """SELECT is_self, is_leader FROM system.cluster gives one ready node to admins, 403 to users."""
    assert sql.rows("SELECT is_self, is_leader FROM system.cluster") == [[True, True]]
    from conftest import post_sql

    assert post_sql(server_url, token_for("cl_user"), "SELECT * FROM system.cluster").status_code == 403
