"""Issue 14 on the embedded server end to end: live filters of the full WHERE grammar, refusals at subscribe
time, and never a silent loss (a subscription the server cannot serve any more ends with an ``error``). The
planted twins of KalamDB's behaviour (``live_filter_silent_skip``, ``live_buffer_drops_oldest``,
``in_lists_folded_false``) show the difference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import ROOT_PASSWORD, Sql, login
from test_ws_server import as_user, live, recv, send, subscribe

from kalammodel.server._live import MAX_BUFFERED_PER_SUBSCRIPTION

pytestmark = pytest.mark.embedded_only(reason="the embedded server's live filter, buffer and planted faults")

FINDING_12 = (
    "SELECT * FROM {t} WHERE NOT (c0 = '2023-11-14 22:13:20' "
    "AND (c0 IN ('2023-11-14 22:13:20') AND c0 IN ('2023-11-14 22:13:21')))"
)


def _ids(messages: list[dict[str, Any]]) -> list[str]:
    return [m["rows"][0]["id"] for m in messages]


def test_ws_filters_of_the_full_grammar_deliver_by_three_valued_logic(
    server_url: str, sql: Sql, ns: str, token_for: Callable[..., str]
) -> None:
    """IN, NOT BETWEEN, IS NULL and timestamp comparisons on nullable columns admit exactly the TRUE rows."""
    token = token_for("ws_alice")
    sql(f"CREATE USER TABLE {ns}.t (id BIGINT PRIMARY KEY, n INT, ts TIMESTAMP)")
    with live(server_url, token) as ws:
        subscribe(ws, "in", f"SELECT * FROM {ns}.t WHERE n IN (1, 2) OR n IS NULL")
        subscribe(ws, "nb", f"SELECT * FROM {ns}.t WHERE n NOT BETWEEN 0 AND 3")
        subscribe(ws, "ts", f"SELECT * FROM {ns}.t WHERE '2023-11-14 22:13:20' < ts")
        as_user(
            sql,
            token,
            f"INSERT INTO {ns}.t (id, n, ts) VALUES (1, NULL, NULL), (2, 1, '2023-11-14 22:13:21'), "
            "(3, 5, '2023-11-14 22:13:20')",
        )
        got: dict[str, list[str]] = {"in": [], "nb": [], "ts": []}
        for _ in range(4):  # in: 1, 2; nb: 3; ts: 2
            message = recv(ws)
            assert message["type"] == "change", message
            got[message["subscription_id"]] += _ids([message])
        as_user(sql, token, f"INSERT INTO {ns}.t (id, n) VALUES (9, 9)")  # nb only: a marker
        marker = recv(ws)
    assert (marker["subscription_id"], _ids([marker])) == ("nb", ["9"])
    assert got == {"in": ["1", "2"], "nb": ["3"], "ts": ["2"]}


@pytest.mark.parametrize(
    ("where", "code"),
    [("UPPER(body) = 'X'", "UNSUPPORTED"), ("n + 1 = 2", "UNSUPPORTED"), ("body = 7", "INVALID_SQL")],
)
def test_ws_a_filter_it_cannot_evaluate_is_refused_at_subscribe(
    server_url: str, sql: Sql, ns: str, token_for: Callable[..., str], where: str, code: str
) -> None:
    """Never acknowledged and then skipped: the subscribe itself answers an error."""
    token = token_for("ws_alice")
    sql(f"CREATE USER TABLE {ns}.t (id BIGINT PRIMARY KEY, body TEXT, n INT)")
    with live(server_url, token) as ws:
        send(ws, {"type": "subscribe", "subscription": {"id": "s1", "sql": f"SELECT * FROM {ns}.t WHERE {where}"}})
        answer = recv(ws)
    assert (answer["type"], answer["subscription_id"], answer["code"]) == ("error", "s1", code), answer


def test_ws_dropping_a_filtered_column_ends_the_subscription_with_an_error(
    server_url: str, sql: Sql, ns: str, token_for: Callable[..., str]
) -> None:
    """A filter naming a dropped column cannot be evaluated: the client is told, the subscription ends."""
    token = token_for("ws_alice")
    sql(f"CREATE USER TABLE {ns}.t (id BIGINT PRIMARY KEY, n INT)")
    with live(server_url, token) as ws:
        subscribe(ws, "s1", f"SELECT * FROM {ns}.t WHERE n = 1")
        subscribe(ws, "all", f"SELECT * FROM {ns}.t")
        sql(f"ALTER TABLE {ns}.t DROP COLUMN n")
        as_user(sql, token, f"INSERT INTO {ns}.t (id) VALUES (1)")
        first, second = recv(ws), recv(ws)
        as_user(sql, token, f"INSERT INTO {ns}.t (id) VALUES (2)")
        third = recv(ws)
    assert (first["type"], first["subscription_id"], first["code"]) == ("error", "s1", "SUBSCRIPTION_FAILED")
    assert "no longer has" in first["message"]
    assert (second["subscription_id"], third["subscription_id"]) == ("all", "all")  # s1 sends nothing more


def test_ws_a_full_snapshot_buffer_ends_the_subscription_with_an_error(
    server_url: str, sql: Sql, ns: str, token_for: Callable[..., str]
) -> None:
    """More changes than the buffer holds while the snapshot loads: an error, never a silent drop."""
    token = token_for("ws_alice")
    sql(f"CREATE USER TABLE {ns}.t (id BIGINT PRIMARY KEY)")
    as_user(sql, token, f"INSERT INTO {ns}.t (id) VALUES (0), (1)")
    burst = ", ".join(f"({i})" for i in range(10, 11 + MAX_BUFFERED_PER_SUBSCRIPTION))
    with live(server_url, token) as ws:
        subscribe(ws, "s1", f"SELECT * FROM {ns}.t", {"batch_size": 1})
        first = recv(ws)
        assert first["batch_control"]["has_more"] is True
        as_user(sql, token, f"INSERT INTO {ns}.t (id) VALUES {burst}")
        error = recv(ws)
        send(ws, {"type": "next_batch", "subscription_id": "s1", "last_seq_id": first["batch_control"]["last_seq_id"]})
        after = recv(ws)
    assert (error["type"], error["subscription_id"], error["code"]) == ("error", "s1", "SUBSCRIPTION_FAILED")
    assert str(MAX_BUFFERED_PER_SUBSCRIPTION) in error["message"]
    assert (after["type"], after["code"]) == ("error", "BATCH_FETCH_FAILED")  # the subscription is gone


def test_the_select_path_answers_finding_12_by_sql(server_url: str, sql: Sql, ns: str) -> None:
    """The reproduction of docs/kalamdb-findings.md #12 selects no row (the NULL row's WHERE is UNKNOWN)."""
    sql(f"CREATE SHARED TABLE {ns}.t (id BIGINT PRIMARY KEY, c0 TIMESTAMP)")
    sql(f"INSERT INTO {ns}.t (id, c0) VALUES (1, NULL)")
    assert sql.rows(FINDING_12.format(t=f"{ns}.t")) == []
    where = FINDING_12.format(t=f"{ns}.t").split(" WHERE ", 1)[1]
    assert sql(f"DELETE FROM {ns}.t WHERE {where}")["results"][0]["row_count"] == 0


def test_the_planted_twins_behave_as_kalamdb(spawn_server: Callable[..., Any]) -> None:
    """With the three faults on: IN filters are acknowledged and then skip changes, the snapshot buffer keeps
    only the newest two changes, and finding 12's NULL row is selected."""
    srv = spawn_server(
        "--fault", "live_filter_silent_skip", "--fault", "live_buffer_drops_oldest",
        "--fault", "in_lists_folded_false",
    )  # fmt: skip
    root = login(srv.url, "root", ROOT_PASSWORD)
    sql = Sql(srv.url, root)
    sql("CREATE NAMESPACE app")
    sql("CREATE SHARED TABLE app.t (id BIGINT PRIMARY KEY, n INT, c0 TIMESTAMP)")
    sql("INSERT INTO app.t (id, n, c0) VALUES (0, 0, NULL), (1, 1, NULL)")
    assert [r[0] for r in sql.rows(FINDING_12.format(t="app.t"))] == ["0", "1"]  # both NULL rows
    with live(srv.url, root) as ws:
        subscribe(ws, "skip", "SELECT * FROM app.t WHERE n IN (5)")
        subscribe(ws, "all", "SELECT * FROM app.t")
        sql("INSERT INTO app.t (id, n) VALUES (5, 5)")
        assert recv(ws)["subscription_id"] == "all"  # 'skip' was due first, and got nothing
        subscribe(ws, "buf", "SELECT * FROM app.t", {"batch_size": 2})
        first = recv(ws)
        sql("INSERT INTO app.t (id, n) VALUES (10, 0), (11, 0), (12, 0), (13, 0)")
        assert [recv(ws)["subscription_id"] for _ in range(4)] == ["all"] * 4
        send(ws, {"type": "next_batch", "subscription_id": "buf", "last_seq_id": first["batch_control"]["last_seq_id"]})
        last = recv(ws)
        assert last["type"] == "initial_data_batch" and last["batch_control"]["has_more"] is False
        buffered = [recv(ws), recv(ws)]
        sql("INSERT INTO app.t (id, n) VALUES (20, 0)")
        marker = recv(ws)
    assert [(m["subscription_id"], m["rows"][0]["id"]) for m in buffered] == [("buf", "12"), ("buf", "13")]
    assert marker["subscription_id"] in ("all", "buf")
