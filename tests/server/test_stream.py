"""§8: STREAM tables: per-user rows, TTL at read time, no UPDATE, hard DELETE, no transactions."""

from __future__ import annotations

import time

from conftest import post_sql


def test_stream_rules(sql, ns, server_url, token_for):
    """Streams are per user, reject UPDATE, hard-delete and are refused inside transactions."""
    sql(f"CREATE STREAM TABLE {ns}.ev (id TEXT, kind TEXT) WITH (TTL_SECONDS = 60)")
    a, b = token_for("st_a"), token_for("st_b")
    post_sql(server_url, a, f"INSERT INTO {ns}.ev (id, kind) VALUES ('1', 'x'), ('1', 'y')")
    assert post_sql(server_url, b, f"SELECT COUNT(*) FROM {ns}.ev").json()["results"][0]["rows"] == [["0"]]
    assert post_sql(server_url, a, f"SELECT COUNT(*) FROM {ns}.ev").json()["results"][0]["rows"] == [["2"]]
    r = post_sql(server_url, a, f"UPDATE {ns}.ev SET kind = 'z' WHERE id = '1'")
    assert r.status_code == 400 and "UPDATE not supported for STREAM tables" in r.json()["error"]["message"]
    assert (
        post_sql(server_url, a, f"DELETE FROM {ns}.ev WHERE kind = 'x'").json()["results"][0]["row_count"]
        == 1
    )
    rows = post_sql(server_url, a, f"SELECT kind FROM {ns}.ev WHERE _deleted = true").json()["results"][0]
    assert rows["row_count"] == 0
    r = post_sql(server_url, a, f"BEGIN; INSERT INTO {ns}.ev (id, kind) VALUES ('2', 'q'); COMMIT")
    assert (
        r.status_code == 400
        and "stream tables are not supported inside explicit transactions" in r.json()["error"]["message"]
    )


def test_stream_ttl_expires_at_read_time(sql, ns):
    """Rows older than TTL_SECONDS disappear from SELECT."""
    sql(f"CREATE STREAM TABLE {ns}.ev (id TEXT) WITH (TTL_SECONDS = 1)")
    sql(f"INSERT INTO {ns}.ev (id) VALUES ('a')")
    assert sql.rows(f"SELECT id FROM {ns}.ev") == [["a"]]
    deadline = time.monotonic() + 5
    while sql.rows(f"SELECT id FROM {ns}.ev") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sql.rows(f"SELECT id FROM {ns}.ev") == []


def test_stream_delete_by_id_and_predicate_hard_deletes(sql, ns, server_url, token_for):
    """DELETE on a STREAM table removes every matching row of the caller (by its id column or any predicate)."""
    sql(f"CREATE STREAM TABLE {ns}.ev (id TEXT PRIMARY KEY, kind TEXT) WITH (TTL_SECONDS = 60)")
    a, b = token_for("st_del_a"), token_for("st_del_b")
    for tok in (a, b):
        post_sql(
            server_url, tok, f"INSERT INTO {ns}.ev (id, kind) VALUES ('e1', 'x'), ('e2', 'x'), ('e3', 'y')"
        )
    r = post_sql(server_url, a, f"DELETE FROM {ns}.ev WHERE id = 'e1'").json()["results"][0]
    assert (r["row_count"], r["message"]) == (1, "Deleted 1 row(s)")
    r = post_sql(server_url, a, f"DELETE FROM {ns}.ev WHERE kind = 'x' OR id = 'nope'").json()["results"][0]
    assert r["message"] == "Deleted 1 row(s)"
    rows = post_sql(server_url, a, f"SELECT id FROM {ns}.ev WHERE _deleted = true OR _deleted = false")
    assert rows.json()["results"][0]["rows"] == [["e3"]]
    assert (
        post_sql(server_url, a, f"DELETE FROM {ns}.ev WHERE id = 'e1'").json()["results"][0]["row_count"] == 0
    )
    other = post_sql(server_url, b, f"SELECT id FROM {ns}.ev ORDER BY id").json()["results"][0]["rows"]
    assert other == [["e1"], ["e2"], ["e3"]]
