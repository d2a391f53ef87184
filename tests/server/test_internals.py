"""Engine internals behind the fast paths: the SQL shape cache, the token cache, STREAM deletes, automatic flush."""

from __future__ import annotations

import json
import re
import time

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st

from kalammodel.server import ChangeEvent, Principal
from kalammodel.server._auth import TokenError, issue_token
from kalammodel.server._engine import Engine
from kalammodel.server._sql import _SHAPES, _same, _shape, parse_sql

ROOT = Principal("root", "system")
pytestmark = pytest.mark.embedded_only(reason="tests the embedded engine's internals in-process")


@pytest.fixture
def engine(tmp_path):
    e = Engine(tmp_path, root_password="RootPass123!")
    yield e
    e.close()


def run(engine: Engine, sql: str, principal: Principal = ROOT) -> dict:
    status, body = engine.execute_request(principal, sql, [], None)
    assert status == 200, body
    return body


@pytest.mark.parametrize(
    "first, second",
    [
        ("INSERT INTO a.t (id, v) VALUES (1, 'x')", "INSERT INTO a.t (id, v) VALUES (22, 'it''s')"),
        (
            "SELECT id FROM a.t WHERE id = 1 AND v = 'a' LIMIT 5",
            "SELECT id FROM a.t WHERE id = 2 AND v = 'B' LIMIT 7",
        ),
        (
            "UPDATE a.t SET v = 'x', n = -1.5 WHERE id IN (1, 2)",
            "UPDATE a.t SET v = '', n = -2.25 WHERE id IN (3, 4)",
        ),
        ("DELETE FROM a.t WHERE v LIKE 'a%' OR n >= 10", "DELETE FROM a.t WHERE v LIKE '%b\\c' OR n >= 0"),
        (
            "SELECT COUNT(*) FROM a.t WHERE ts > '2024-01-01 00:00:00'",
            "SELECT COUNT(*) FROM a.t WHERE ts > '2025-01-01'",
        ),
        (
            "SELECT * FROM a.t WHERE v = 'x' ORDER BY id OFFSET 3",
            'SELECT * FROM a.t WHERE v = "y" ORDER BY id OFFSET 4',
        ),
    ],
)
def test_shape_cache_gives_the_direct_parse(first, second):
    """A statement parsed through a cached shape is exactly the tree sqlglot parses from its text."""
    for text in (first, second, first):
        assert _same(parse_sql(text), sqlglot.parse_one(text, read="postgres")), text


def test_shape_cache_refuses_unsafe_text_and_returns_fresh_trees():
    """Comments, $n parameters, INTERVAL and odd numbers bypass the cache; every call returns a new tree."""
    for text in (
        "SELECT 1 -- c",
        "SELECT * FROM a.t WHERE id = $1",
        "SELECT INTERVAL '1 day'",
        "SELECT 1e5",
        "SELECT 'a\\\\b'",
    ):
        assert _shape(text) is None, text
    a = parse_sql("SELECT id FROM a.t WHERE id = 1")
    a.set("where", None)
    b = parse_sql("SELECT id FROM a.t WHERE id = 1")
    assert b.args.get("where") is not None and a is not b


def test_token_cache_rechecks_role_user_and_expiry(engine):
    """A verified token is refused after a role change or user drop, and once it expires (60 s leeway)."""
    run(engine, "CREATE USER 'tc' WITH PASSWORD 'TcPass123!' ROLE user")
    tok, _ = issue_token(engine.jwt_secret, "tc", "user", None)
    assert engine.verify_token(tok) == Principal("tc", "user")
    run(engine, "ALTER USER 'tc' SET ROLE service")
    with pytest.raises(TokenError):
        engine.verify_token(tok)
    run(engine, "ALTER USER 'tc' SET ROLE user")
    assert engine.verify_token(tok) == Principal("tc", "user")
    run(engine, "DROP USER 'tc'")
    with pytest.raises(TokenError):
        engine.verify_token(tok)
    short, _ = issue_token(engine.jwt_secret, "root", "system", None, lifetime=-59)  # 1 s left in the leeway
    assert engine.verify_token(short) == ROOT
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            engine.verify_token(short)
        except TokenError as e:
            assert e.code == "TOKEN_EXPIRED"
            break
        time.sleep(0.05)
    else:
        pytest.fail("a cached token was still accepted 5 s after it expired")


def test_stream_delete_emits_one_event_per_row(engine):
    """A predicate DELETE on a STREAM table hard-deletes each matching row and emits one delete event each."""
    run(
        engine,
        "CREATE NAMESPACE app; CREATE STREAM TABLE app.ev (id TEXT, kind TEXT) WITH (TTL_SECONDS = 60)",
    )
    alice = Principal("alice", "user")
    run(engine, "INSERT INTO app.ev (id, kind) VALUES ('a', 'x'), ('b', 'x'), ('c', 'y')", alice)
    events: list[ChangeEvent] = []
    engine.add_change_listener(events.append)
    assert run(engine, "DELETE FROM app.ev WHERE kind = 'x'", alice)["results"][0]["row_count"] == 2
    assert [(e.change_type, e.owner, e.old_row["id"]) for e in events] == [
        ("delete", "alice", "a"),
        ("delete", "alice", "b"),
    ]
    assert engine.store.db.execute("SELECT COUNT(*) FROM hot WHERE tbl = 'app.ev'").fetchone() == (1,)


def test_auto_flush_follows_the_policy_rows(engine):
    """A pass flushes policy tables at >= rows; never below, never without a policy, interval-only at the default."""
    engine.flush_default_row_limit = 3
    run(
        engine,
        "CREATE NAMESPACE app;"
        "CREATE TABLE app.five (id INT PRIMARY KEY) WITH (FLUSH_POLICY = 'rows:5');"
        "CREATE TABLE app.none (id INT PRIMARY KEY);"
        "CREATE TABLE app.iv (id INT PRIMARY KEY) WITH (FLUSH_POLICY = 'interval:1');"
        "CREATE STREAM TABLE app.ev (id INT) WITH (TTL_SECONDS = 60)",
    )
    run(engine, "INSERT INTO app.five (id) VALUES (1), (2), (3), (4)")
    run(engine, "INSERT INTO app.none (id) VALUES (1), (2), (3), (4), (5), (6)")
    run(engine, "INSERT INTO app.iv (id) VALUES (1), (2)")
    run(engine, "INSERT INTO app.ev (id) VALUES (1), (2), (3), (4), (5), (6)")
    assert engine.auto_flush() == []
    run(engine, "INSERT INTO app.five (id) VALUES (5); INSERT INTO app.iv (id) VALUES (3)")
    ids = engine.auto_flush()
    engine.wait_idle()
    params = sorted(json.loads(engine.jobs[i]["parameters"])["table_id"] for i in ids)
    assert params == ["app.five", "app.iv"]
    assert {engine.jobs[i]["status"] for i in ids} == {"completed"}
    assert engine.hot_row_count(engine.tables["app.five"]) == 0
    assert engine.auto_flush() == []  # nothing hot any more


def test_shape_cache_skips_literals_read_by_content():
    """Literals inside function calls or casts are never templated: their parse may depend on their value."""
    for text in (
        "SELECT DATE_TRUNC('day', ts) FROM a.t",
        "SELECT CAST('5' AS INT)",
        "SELECT id FROM a.t WHERE ts > TO_TIMESTAMP('2024', 'YYYY')",
    ):
        parse_sql(text)
        shaped = _shape(text)
        assert shaped is not None and _SHAPES[(shaped[0], tuple(s for s, _ in shaped[1]))] is None, text
    text = "SELECT id FROM a.t WHERE id IN (1, 2) AND v LIKE 'a%' LIMIT 3"
    parse_sql(text)
    shaped = _shape(text)
    assert shaped is not None and _SHAPES[(shaped[0], (False, False, True, False))] is not None


_TEMPLATES = (
    "INSERT INTO a.t (id, v, n) VALUES ({n}, {s}, {n}), ({n}, {s}, -{n})",
    "SELECT id, v FROM a.t WHERE v = {s} AND n >= {n} ORDER BY id LIMIT {n}",
    "UPDATE a.t SET v = {s}, n = n + {n} WHERE id = {n} OR v LIKE {s}",
    "DELETE FROM a.t WHERE id IN ({n}, {n}) AND NOT v = {s}",
    "EXECUTE AS USER 'u1' (SELECT COUNT(*) FROM a.t WHERE n BETWEEN {n} AND {n})",
)
_numbers = st.one_of(
    st.integers(0, 2**63).map(str), st.decimals(0, 10**6, places=3, allow_nan=False).map(str)
)
_strings = st.text(max_size=12).map(lambda t: "'" + t.replace("'", "''") + "'")


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_TEMPLATES), st.data())
def test_shape_cache_agrees_with_sqlglot_on_random_literals(template, data):
    """Whatever the literals (quotes, unicode, backslashes, big numbers), the cached parse is the direct parse."""
    text = re.sub(r"\{([ns])\}", lambda m: data.draw(_numbers if m.group(1) == "n" else _strings), template)
    inner = text[text.index("(") + 1 : -1] if text.startswith("EXECUTE") else text
    expected = sqlglot.parse_one(inner, read="postgres")
    assert _same(parse_sql(inner), expected)
    assert _same(parse_sql(inner), expected)  # the second call is served from the cache when it is cacheable
