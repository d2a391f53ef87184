"""WebSocket live queries end to end on the spawned embedded server (PROTOCOL.md §10).

Rows are written over HTTP SQL, events read over ``/v1/ws``: this checks the WebSocket layer together with
the real engine hooks, and that WebSocket cells use the same encoding as HTTP results (§2.4). Fixtures
(``server_url``, ``token_for``, ``sql``, ``ns``, ``spawn_server``) come from ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import ROOT_PASSWORD, Sql, login
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

TIMEOUT = 5.0


def ws_url(server_url: str) -> str:
    return server_url.replace("http://", "ws://", 1) + "/v1/ws"


def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    data = ws.recv(timeout=timeout)
    return json.loads(gzip.decompress(data) if isinstance(data, bytes) else data)


def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    ws.send(json.dumps(message))


@contextlib.contextmanager
def live(server_url: str, token: str) -> Iterator[ClientConnection]:
    """A connection authenticated with the authenticate message."""
    with connect(ws_url(server_url), open_timeout=TIMEOUT, close_timeout=2) as ws:
        send(
            ws,
            {
                "type": "authenticate",
                "method": "jwt",
                "token": token,
                "protocol": {"serialization": "json", "compression": "gzip"},
            },
        )
        assert recv(ws)["type"] == "auth_success"
        yield ws


def subscribe(ws: ClientConnection, sub_id: str, sql: str, options: dict[str, Any] | None = None) -> dict:
    sub: dict[str, Any] = {"id": sub_id, "sql": sql}
    if options is not None:
        sub["options"] = options
    send(ws, {"type": "subscribe", "subscription": sub})
    ack = recv(ws)
    assert ack["type"] == "subscription_ack", ack
    return ack


def as_user(sql: Sql, token: str, text: str) -> dict[str, Any]:
    return sql(text, token=token)


def test_ws_auth_with_real_tokens(server_url: str, root_token: str) -> None:
    """A login token authenticates by header; a forged one gets auth_error and close 1008."""
    with connect(ws_url(server_url), additional_headers={"Authorization": f"Bearer {root_token}"}) as ws:
        assert recv(ws)["user"] == "root"
    with connect(ws_url(server_url), additional_headers={"Authorization": "Bearer forged.token.x"}) as ws:
        assert recv(ws) == {"type": "auth_error", "message": "Invalid credentials"}
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1008


def test_ws_snapshot_batches_equal_the_sql_rows(
    server_url: str, sql: Sql, ns: str, token_for: Callable[..., str]
) -> None:
    """A 7-row snapshot in batches of 3 equals SELECT * ordered by _seq, cell for cell."""
    token = token_for("ws_alice")
    sql(f"CREATE USER TABLE {ns}.notes (id BIGINT PRIMARY KEY, body TEXT, n INT, price DECIMAL(6,2))")
    values = ", ".join(f"({i}, 'b{i}', {i * 10}, {i}.5)" for i in range(7))
    as_user(sql, token, f"INSERT INTO {ns}.notes (id, body, n, price) VALUES {values}")
    expected = sql.dicts(f"SELECT * FROM {ns}.notes ORDER BY _seq", token=token)
    with live(server_url, token) as ws:
        ack = subscribe(ws, "s1", f"SELECT * FROM {ns}.notes", {"batch_size": 3})
        batches = [recv(ws)]
        while batches[-1]["batch_control"]["has_more"]:
            last = batches[-1]["batch_control"]["last_seq_id"]
            send(ws, {"type": "next_batch", "subscription_id": "s1", "last_seq_id": last})
            batches.append(recv(ws))
    assert [f["name"] for f in ack["schema"]] == ["id", "body", "n", "price", "_seq", "_deleted"]
    assert [(b["batch_control"]["batch_num"], b["batch_control"]["status"]) for b in batches] == [
        (0, "loading"),
        (1, "loading_batch"),
        (2, "ready"),
    ]
    assert [r for b in batches for r in b["rows"]] == expected
    assert expected[0]["id"] == "0" and expected[0]["price"] == "0.50"


def test_ws_live_changes_have_the_contract_shapes(
    server_url: str, sql: Sql, ns: str, token_for: Callable[..., str]
) -> None:
    """SQL insert, update and delete arrive as full row, delta with old values, and tombstone."""
    token = token_for("ws_alice")
    sql(f"CREATE USER TABLE {ns}.notes (id BIGINT PRIMARY KEY, body TEXT, n INT)")
    with live(server_url, token) as ws:
        subscribe(ws, "s1", f"SELECT * FROM {ns}.notes")
        as_user(sql, token, f"INSERT INTO {ns}.notes (id, body, n) VALUES (1, 'hello', 5)")
        (row,) = sql.dicts(f"SELECT * FROM {ns}.notes", token=token)
        assert recv(ws) == {"type": "change", "subscription_id": "s1", "change_type": "insert", "rows": [row]}
        as_user(sql, token, f"UPDATE {ns}.notes SET n = 6 WHERE id = 1")
        (new,) = sql.dicts(f"SELECT * FROM {ns}.notes", token=token)
        update = recv(ws)
        assert update["rows"] == [{"_seq": new["_seq"], "id": "1", "body": "hello", "n": 6}]
        assert update["old_values"] == [{"_seq": row["_seq"], "id": "1", "n": 5}]
        as_user(sql, token, f"DELETE FROM {ns}.notes WHERE id = 1")
        delete = recv(ws)
    assert delete["change_type"] == "delete" and "rows" not in delete
    (tomb,) = delete["old_values"]
    assert {k: v for k, v in tomb.items() if k != "_seq"} == {
        "id": "1",
        "body": "hello",
        "n": 6,
        "_deleted": True,
    }
    assert int(tomb["_seq"]) > int(new["_seq"])


def test_ws_update_delta_names_the_pk_outside_the_projection(
    server_url: str, sql: Sql, ns: str, token_for: Callable[..., str]
) -> None:
    """An update on SELECT body still carries the PK, encoded as BIGINT (a string)."""
    token = token_for("ws_alice")
    sql(f"CREATE USER TABLE {ns}.notes (id BIGINT PRIMARY KEY, body TEXT, n INT)")
    as_user(sql, token, f"INSERT INTO {ns}.notes (id, body, n) VALUES (41, 'a', 1)")
    with live(server_url, token) as ws:
        subscribe(ws, "s1", f"SELECT body FROM {ns}.notes")
        as_user(sql, token, f"UPDATE {ns}.notes SET body = 'b', n = 2 WHERE id = 41")
        change = recv(ws)
    assert {k: v for k, v in change["rows"][0].items() if k != "_seq"} == {"id": "41", "body": "b"}
    assert {k: v for k, v in change["old_values"][0].items() if k != "_seq"} == {"id": "41", "body": "a"}


def test_ws_user_tables_isolate_subscribers(
    server_url: str, sql: Sql, ns: str, token_for: Callable[..., str]
) -> None:
    """Two users subscribed to one USER table each receive only their own rows."""
    alice, bob = token_for("ws_alice"), token_for("ws_bob")
    sql(f"CREATE USER TABLE {ns}.notes (id BIGINT PRIMARY KEY, body TEXT)")
    with live(server_url, alice) as a, live(server_url, bob) as b:
        subscribe(a, "a", f"SELECT * FROM {ns}.notes")
        subscribe(b, "b", f"SELECT * FROM {ns}.notes")
        as_user(sql, alice, f"INSERT INTO {ns}.notes (id, body) VALUES (1, 'alice')")
        as_user(sql, bob, f"INSERT INTO {ns}.notes (id, body) VALUES (1, 'bob')")
        assert recv(a)["rows"][0]["body"] == "alice"
        assert recv(b)["rows"][0]["body"] == "bob"


def test_ws_filter_drops_an_update_leaving_it(
    server_url: str, sql: Sql, ns: str, token_for: Callable[..., str]
) -> None:
    """With WHERE done = false, an update setting done = true sends nothing; later matches still arrive."""
    token = token_for("ws_alice")
    sql(f"CREATE USER TABLE {ns}.todo (id BIGINT PRIMARY KEY, title TEXT, done BOOLEAN)")
    as_user(sql, token, f"INSERT INTO {ns}.todo (id, title, done) VALUES (1, 'a', false)")
    with live(server_url, token) as ws:
        subscribe(ws, "s1", f"SELECT * FROM {ns}.todo WHERE done = false")
        as_user(sql, token, f"UPDATE {ns}.todo SET done = true WHERE id = 1")
        as_user(sql, token, f"INSERT INTO {ns}.todo (id, title, done) VALUES (2, 'b', false)")
        change = recv(ws)
    assert (change["change_type"], change["rows"][0]["id"]) == ("insert", "2")


def test_ws_stream_delete_is_a_row_id(
    server_url: str, sql: Sql, ns: str, token_for: Callable[..., str]
) -> None:
    """Deleting from a STREAM table sends old_values [{row_id: '<user>:<seq>'}]."""
    token = token_for("ws_alice")
    sql(f"CREATE STREAM TABLE {ns}.ev (id TEXT PRIMARY KEY, kind TEXT) WITH (TTL_SECONDS = 60)")
    with live(server_url, token) as ws:
        subscribe(ws, "s1", f"SELECT * FROM {ns}.ev")
        as_user(sql, token, f"INSERT INTO {ns}.ev (id, kind) VALUES ('e1', 'click')")
        insert = recv(ws)
        as_user(sql, token, f"DELETE FROM {ns}.ev WHERE id = 'e1'")
        delete = recv(ws)
    assert delete["old_values"] == [{"row_id": f"ws_alice:{insert['rows'][0]['_seq']}"}]


@pytest.mark.embedded_only(reason="planted faults exist only in the embedded server")
def test_ws_faults_switch_on_from_the_command_line(spawn_server: Callable[..., Any]) -> None:
    """With the four live faults on the command line, each changes what a subscriber observes."""
    srv = spawn_server(
        "--fault", "live_cross_user", "--fault", "live_delete_missing",
        "--fault", "snapshot_has_more_early", "--fault", "from_seq_replays",
    )  # fmt: skip
    root = login(srv.url, "root", ROOT_PASSWORD)
    sql = Sql(srv.url, root)
    sql("CREATE NAMESPACE app")
    sql("CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT)")
    for user in ("u1", "u2"):
        sql(f"CREATE USER '{user}' WITH PASSWORD 'Pw-{user}-1!' ROLE user")
    u1, u2 = login(srv.url, "u1", "Pw-u1-1!"), login(srv.url, "u2", "Pw-u2-1!")
    values = ", ".join(f"({i}, 'r{i}')" for i in range(6))
    sql(f"INSERT INTO app.notes (id, body) VALUES {values}", token=u1)
    seqs = [int(r["_seq"]) for r in sql.dicts("SELECT _seq FROM app.notes ORDER BY _seq", token=u1)]
    with live(srv.url, u1) as a, live(srv.url, u2) as b:
        subscribe(a, "early", "SELECT * FROM app.notes", {"batch_size": 4})
        early = recv(a)
        assert (len(early["rows"]), early["batch_control"]["has_more"]) == (4, False)  # 2 rows never offered
        subscribe(a, "resume", "SELECT * FROM app.notes", {"from_seq_id": seqs[2]})
        assert len(recv(a)["rows"]) == 6  # rows at and before the resume point come again
        subscribe(b, "leak", "SELECT * FROM app.notes")
        sql("DELETE FROM app.notes WHERE id = 0", token=u1)  # no delete event anywhere
        sql("INSERT INTO app.notes (id, body) VALUES (10, 'u1 only')", token=u1)
        leaked = recv(b)
    assert (leaked["change_type"], leaked["rows"][0]["body"]) == ("insert", "u1 only")


def test_ws_finding_twins_switch_on_from_the_command_line(spawn_server: Callable[..., Any]) -> None:
    """order_limit_resorted_by_pk sends snapshot batches in key order and the next batch starts after the last
    row's _seq, so a row comes twice (finding 10); live_update_lost_after_add_column drops the UPDATE changes of
    a subscription opened before an ADD COLUMN, not its inserts (finding 11)."""
    srv = spawn_server("--fault", "order_limit_resorted_by_pk", "--fault", "live_update_lost_after_add_column")
    sql = Sql(srv.url, login(srv.url, "root", ROOT_PASSWORD))
    sql("CREATE NAMESPACE app")
    sql("CREATE TABLE app.t (id BIGINT PRIMARY KEY, v BIGINT)")
    for i in (2, 0, 3, 1):  # written out of key order
        sql(f"INSERT INTO app.t (id, v) VALUES ({i}, {i})")
    with live(srv.url, sql.token) as ws:
        subscribe(ws, "s", "SELECT * FROM app.t", {"batch_size": 2})
        batches = [recv(ws)]
        while batches[-1]["batch_control"]["has_more"]:
            last = batches[-1]["batch_control"]["last_seq_id"]
            send(ws, {"type": "next_batch", "subscription_id": "s", "last_seq_id": last})
            batches.append(recv(ws))
        assert [[int(r["id"]) for r in b["rows"]] for b in batches] == [[0, 2], [0, 3], [1]]
        sql("ALTER TABLE app.t ADD COLUMN w INT")
        sql("UPDATE app.t SET v = 9 WHERE id = 1")
        sql("INSERT INTO app.t (id, v) VALUES (7, 7)")
        change = recv(ws)
    assert (change["change_type"], change["rows"][0]["id"]) == ("insert", "7")  # the update never came
