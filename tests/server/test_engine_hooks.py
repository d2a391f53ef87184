"""The engine hooks the WebSocket module uses: tokens, subscription plans, live rows, change events."""

from __future__ import annotations

import pytest

from kalammodel.server import ChangeEvent, LiveError, Principal
from kalammodel.server._auth import TokenError, issue_token
from kalammodel.server._engine import Engine

pytestmark = pytest.mark.embedded_only(reason="calls the embedded engine in-process")


@pytest.fixture
def engine(tmp_path):
    e = Engine(tmp_path, root_password="RootPass123!")
    root = Principal("root", "system")
    e.execute_request(
        root, "CREATE NAMESPACE app; CREATE USER TABLE app.n (id INT PRIMARY KEY, body TEXT)", [], None
    )
    e.execute_request(root, "CREATE TABLE app.cfg (id INT PRIMARY KEY)", [], None)
    yield e
    e.close()


def test_verify_token(engine):
    """A valid access token gives the principal; a refresh token is refused."""
    tok, _ = issue_token(engine.jwt_secret, "root", "system", None)
    assert engine.verify_token(tok) == Principal("root", "system")
    ref, _ = issue_token(engine.jwt_secret, "root", "system", None, "refresh")
    with pytest.raises(TokenError):
        engine.verify_token(ref)


def test_plan_subscription_rules(engine):
    """Plans name the scope; ORDER BY, missing namespace, _seq projection and unknown tables are refused."""
    alice = Principal("alice", "user")
    plan = engine.plan_subscription(alice, "SELECT * FROM app.n WHERE id > 1")
    assert (plan.table_id, plan.kind, plan.owner) == ("app.n", "USER", "alice")
    assert plan.columns == ["id", "body", "_seq", "_deleted"] and plan.where is not None
    for sql, code in [
        ("SELECT * FROM app.n ORDER BY id", "UNSUPPORTED"),
        ("SELECT * FROM n", "INVALID_SQL"),
        ("SELECT _seq FROM app.n", "INVALID_SQL"),
        ("SELECT * FROM app.none", "NOT_FOUND"),
        ("SELECT * FROM app.cfg", "UNAUTHORIZED"),
    ]:
        with pytest.raises(LiveError) as info:
            engine.plan_subscription(alice, sql)
        assert info.value.code == code, sql


def test_change_events_and_live_rows(engine):
    """Each committed row change calls listeners once; live_rows gives the owner's visible rows."""
    events: list[ChangeEvent] = []
    engine.add_change_listener(events.append)
    alice = Principal("alice", "user")
    engine.execute_request(alice, "INSERT INTO app.n (id, body) VALUES (1, 'a'), (2, 'b')", [], None)
    engine.execute_request(alice, "UPDATE app.n SET body = 'B' WHERE id = 2", [], None)
    engine.execute_request(alice, "DELETE FROM app.n WHERE id = 1", [], None)
    engine.execute_request(alice, "BEGIN; INSERT INTO app.n (id, body) VALUES (9, 'x'); ROLLBACK", [], None)
    assert [e.change_type for e in events] == ["insert", "insert", "update", "delete"]
    upd, dele = events[2], events[3]
    assert upd.old_row["body"] == "b" and upd.new_row["body"] == "B" and upd.seq == upd.new_row["_seq"]
    assert dele.new_row["_deleted"] is True and dele.owner == "alice" and dele.old_row["id"] == 1
    plan = engine.plan_subscription(alice, "SELECT * FROM app.n")
    assert [(r["id"], r["body"]) for r in engine.live_rows(plan)] == [(2, "B")]
    assert engine.live_rows(engine.plan_subscription(Principal("bob", "user"), "SELECT * FROM app.n")) == []
