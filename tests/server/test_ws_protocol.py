"""The WebSocket live-query layer (`kalammodel.server._ws`) against a fake engine (PROTOCOL.md §10).

The fake engine implements the four hooks of docs/ARCHITECTURE.md with an in-memory table store and emits
change events from the test thread, so these tests isolate the WebSocket layer: auth, frames, snapshot
batches, change payloads, scope, filters, buffering, limits and the four live-query faults.

"Nothing was sent" is never waited for: a later event that *is* delivered on the same (table, owner) proves
it, since changes keep their order.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import sqlglot
import uvicorn
from sqlglot import exp
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from kalammodel.server import _faults
from kalammodel.server._types import ChangeEvent, LiveError, LivePlan, Principal
from kalammodel.server._ws import LivenessWebSocketProtocol, WsSettings, websocket_endpoint

pytestmark = pytest.mark.embedded_only(reason="runs the embedded WebSocket layer against a fake engine")

TIMEOUT = 5.0

# ---------------------------------------------------------------------------------------------------------------
# fake engine


@attrs.define
class FakeTable:
    kind: str
    columns: list[tuple[str, Any]]  # (name, data_type), user columns only
    pk: str | None


class FakeEngine:
    """Just enough of the engine for the WebSocket layer: tokens, tables, row versions, change events."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tables: dict[str, FakeTable] = {}
        self.rows: dict[str, dict[tuple[str | None, Any], dict[str, Any]]] = {}
        self.seq = 7_321_890_123_456_000
        self.listeners: list[Any] = []
        self.tokens = {f"tok-{u}": Principal(u, "user") for u in ("alice", "bob", "carol")}
        self.tokens["tok-root"] = Principal("root", "system")
        self.held: list[ChangeEvent] = []

    # -- the four hooks ------------------------------------------------------------------------------------------

    def verify_token(self, token: str) -> Principal:
        if token not in self.tokens:
            raise ValueError(f"unknown token {token!r}")
        return self.tokens[token]

    def plan_subscription(self, principal: Principal, sql: str) -> LivePlan:
        try:
            select = sqlglot.parse_one(sql)
        except sqlglot.errors.ParseError as exc:
            raise LiveError("INVALID_SQL", f"Invalid SQL: {exc}") from None
        if not isinstance(select, exp.Select):
            raise LiveError("INVALID_SQL", "Only SELECT queries can be subscribed")
        table = select.find(exp.Table)
        if table is None:
            raise LiveError("INVALID_SQL", "Query must name a table")
        if not table.db:
            raise LiveError("INVALID_SQL", "Query must use namespace.table format")
        table_id = f"{table.db}.{table.name}"
        if table_id not in self.tables:
            raise LiveError("NOT_FOUND", f"Table not found: {table_id}")
        spec = self.tables[table_id]
        all_fields = [*spec.columns, ("_seq", "BigInt"), ("_deleted", "Boolean")]
        if select.is_star:
            fields = all_fields
        else:
            names = [e.name for e in select.expressions]
            types = dict(all_fields)
            if any(n.startswith("_") for n in names):
                raise LiveError("INVALID_SQL", "System columns cannot be projected")
            fields = [(n, types[n]) for n in names]
        schema = []
        for i, (name, data_type) in enumerate(fields):
            field: dict[str, Any] = {"name": name, "data_type": data_type, "index": i}
            if name == spec.pk:
                field["flags"] = ["pk", "nn", "uq"]
            schema.append(field)
        where = select.args.get("where")
        return LivePlan(
            table_id=table_id,
            kind=spec.kind,
            owner=None if spec.kind == "SHARED" else principal.user_id,
            schema=schema,
            columns=[f["name"] for f in schema],
            where=where.this if where is not None else None,
            sql=sql,
        )

    def live_rows(self, plan: LivePlan) -> list[dict[str, Any]]:
        with self.lock:
            rows = [
                dict(r)
                for (owner, _pk), r in self.rows.get(plan.table_id, {}).items()
                if not r["_deleted"] and (plan.kind == "SHARED" or owner == plan.owner)
            ]
        return sorted(rows, key=lambda r: r["_seq"])

    def add_change_listener(self, callback: Any) -> None:
        self.listeners.append(callback)

    # -- writes (emit from the calling thread, like the engine after a commit) --------------------------------

    def create_table(
        self, table_id: str, kind: str = "USER", columns: Any = None, pk: str | None = "id"
    ) -> str:
        cols = columns or [("id", "BigInt"), ("body", "Text"), ("n", "Int")]
        self.tables[table_id] = FakeTable(kind, list(cols), pk)
        self.rows[table_id] = {}
        return table_id

    def _emit(self, event: ChangeEvent, hold: bool) -> None:
        if hold:
            self.held.append(event)
            return
        for listener in self.listeners:
            listener(event)

    def release_held(self) -> None:
        held, self.held = self.held, []
        for event in held:
            self._emit(event, False)

    def _owner(self, table_id: str, owner: str | None) -> str | None:
        return None if self.tables[table_id].kind == "SHARED" else owner

    def insert(self, table_id: str, owner: str | None, hold: bool = False, **values: Any) -> dict[str, Any]:
        spec = self.tables[table_id]
        owner = self._owner(table_id, owner)
        with self.lock:
            self.seq += 1
            row = {name: values.get(name) for name, _t in spec.columns}
            row.update(_seq=self.seq, _deleted=False)
            key = (owner, row[spec.pk] if spec.pk else self.seq)
            self.rows[table_id][key] = row
            event = ChangeEvent(table_id, owner, "insert", dict(row), None, self.seq)
        self._emit(event, hold)
        return row

    def update(self, table_id: str, owner: str | None, pk: Any, **values: Any) -> dict[str, Any]:
        owner = self._owner(table_id, owner)
        with self.lock:
            old = self.rows[table_id][(owner, pk)]
            self.seq += 1
            new = {**old, **values, "_seq": self.seq}
            self.rows[table_id][(owner, pk)] = new
            event = ChangeEvent(table_id, owner, "update", dict(new), dict(old), self.seq)
        self._emit(event, False)
        return new

    def delete(self, table_id: str, owner: str | None, pk: Any) -> dict[str, Any]:
        spec = self.tables[table_id]
        owner = self._owner(table_id, owner)
        with self.lock:
            old = self.rows[table_id][(owner, pk)]
            self.seq += 1
            if spec.kind == "STREAM":
                del self.rows[table_id][(owner, pk)]
                tomb = {**old, "_deleted": True}
            else:
                tomb = {**old, "_seq": self.seq, "_deleted": True}
                self.rows[table_id][(owner, pk)] = tomb
            event = ChangeEvent(table_id, owner, "delete", dict(tomb), dict(old), tomb["_seq"])
        self._emit(event, False)
        return tomb


# ---------------------------------------------------------------------------------------------------------------
# server and client helpers


@attrs.define
class Live:
    url: str
    engine: FakeEngine
    app: Starlette
    tables: int = 0

    def table(self, kind: str = "USER", **kw: Any) -> str:
        self.tables += 1
        return self.engine.create_table(f"app.t{self.tables}", kind, **kw)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    engine = FakeEngine()
    app = Starlette(routes=[WebSocketRoute("/v1/ws", websocket_endpoint)])
    app.state.engine = engine
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, ws=LivenessWebSocketProtocol, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="ws-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test WebSocket server did not start within 10 s")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Live(f"ws://127.0.0.1:{port}/v1/ws", engine, app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def ws_settings(live: Live, **changes: Any) -> Iterator[None]:
    live.app.state.ws_settings = WsSettings(**changes)
    try:
        yield
    finally:
        del live.app.state.ws_settings


@contextlib.contextmanager
def faults(*names: str) -> Iterator[None]:
    _faults.configure(names)
    try:
        yield
    finally:
        _faults.configure([])


def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    data = ws.recv(timeout=timeout)
    if isinstance(data, bytes):
        data = gzip.decompress(data).decode()
    return json.loads(data)


def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    ws.send(json.dumps(message))


def auth_message(token: str) -> dict[str, Any]:
    return {
        "type": "authenticate",
        "method": "jwt",
        "token": token,
        "protocol": {"serialization": "json", "compression": "gzip"},
    }


@contextlib.contextmanager
def open_ws(live: Live, user: str | None = "alice", query: str = "", **kw: Any) -> Iterator[ClientConnection]:
    """A client connection, authenticated by message as ``user`` unless None."""
    with connect(live.url + query, open_timeout=TIMEOUT, close_timeout=2, **kw) as ws:
        if user is not None:
            send(ws, auth_message(f"tok-{user}"))
            assert recv(ws)["type"] == "auth_success"
        yield ws


def closed_with(ws: ClientConnection, timeout: float = TIMEOUT) -> tuple[int | None, str | None]:
    """Read until the server closes; the close code and reason it sent."""
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed):
        while True:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason


def subscribe(ws: ClientConnection, sub_id: str, sql: str, options: dict[str, Any] | None = None) -> dict:
    sub: dict[str, Any] = {"id": sub_id, "sql": sql}
    if options is not None:
        sub["options"] = options
    send(ws, {"type": "subscribe", "subscription": sub})
    return recv(ws)


def pull_snapshot(ws: ClientConnection, sub_id: str, first: dict[str, Any]) -> list[dict[str, Any]]:
    """All initial_data_batch messages, starting with ``first``, pulled with next_batch while has_more."""
    batches = [first]
    while batches[-1]["batch_control"]["has_more"]:
        last = batches[-1]["batch_control"]["last_seq_id"]
        send(ws, {"type": "next_batch", "subscription_id": sub_id, "last_seq_id": last})
        batches.append(recv(ws))
    return batches


# ---------------------------------------------------------------------------------------------------------------
# authentication


def test_header_auth_sends_auth_success_first(live: Live) -> None:
    """A Bearer header authenticates on upgrade and auth_success is the first message."""
    with connect(
        live.url, additional_headers={"Authorization": "Bearer tok-bob"}, open_timeout=TIMEOUT
    ) as ws:
        assert recv(ws) == {
            "type": "auth_success",
            "user": "bob",
            "role": "user",
            "protocol": {"serialization": "json", "compression": "gzip"},
        }


def test_message_auth_echoes_the_protocol(live: Live) -> None:
    """The authenticate message is answered with auth_success echoing the requested protocol."""
    with open_ws(live, user=None) as ws:
        message = auth_message("tok-root")
        message["protocol"]["compression"] = "none"
        send(ws, message)
        assert recv(ws) == {
            "type": "auth_success",
            "user": "root",
            "role": "system",
            "protocol": {"serialization": "json", "compression": "none"},
        }


def test_bad_token_gets_auth_error_and_close_1008(live: Live) -> None:
    """An unknown token gets auth_error 'Invalid credentials' and a 1008 close."""
    with open_ws(live, user=None) as ws:
        send(ws, auth_message("nope"))
        assert recv(ws) == {"type": "auth_error", "message": "Invalid credentials"}
        assert closed_with(ws)[0] == 1008


def test_bad_header_token_gets_auth_error_and_close_1008(live: Live) -> None:
    """A bad Bearer header is refused the same way as a bad authenticate message."""
    with connect(live.url, additional_headers={"Authorization": "Bearer nope"}, open_timeout=TIMEOUT) as ws:
        assert recv(ws) == {"type": "auth_error", "message": "Invalid credentials"}
        assert closed_with(ws)[0] == 1008


def test_auth_timeout_closes_1008(live: Live) -> None:
    """Without an auth message within the auth timeout, auth_error and a 1008 close follow."""
    with ws_settings(live, auth_timeout=0.3, check_interval=0.05), open_ws(live, user=None) as ws:
        assert recv(ws) == {
            "type": "auth_error",
            "message": "Authentication timeout - no auth message received within 3 seconds",
        }
        assert closed_with(ws)[0] == 1008


def test_repeat_authenticate_answers_auth_success_again(live: Live) -> None:
    """A second authenticate on an authenticated connection repeats auth_success for the first identity."""
    with open_ws(live, "alice") as ws:
        send(ws, auth_message("tok-bob"))
        again = recv(ws)
        assert again["type"] == "auth_success"
        assert again["user"] == "alice"


def test_subscribe_before_auth_is_auth_required(live: Live) -> None:
    """Subscribing before authenticating answers error AUTH_REQUIRED and keeps the connection."""
    table = live.table()
    with open_ws(live, user=None) as ws:
        reply = subscribe(ws, "s1", f"SELECT * FROM {table}", {})
        assert reply["type"] == "error"
        assert reply["code"] == "AUTH_REQUIRED"
        assert reply["subscription_id"] == "subscribe"
        send(ws, auth_message("tok-alice"))
        assert recv(ws)["type"] == "auth_success"


# ---------------------------------------------------------------------------------------------------------------
# snapshot


def test_options_absent_acks_ready_without_initial_data(live: Live) -> None:
    """Without options the ack says ready with no last_seq_id, and the next message is a live change."""
    table = live.table()
    live.engine.insert(table, "alice", id=1, body="before", n=1)
    with open_ws(live) as ws:
        ack = subscribe(ws, "s1", f"SELECT * FROM {table}")
        assert ack["type"] == "subscription_ack"
        assert ack["total_rows"] == 0
        assert ack["batch_control"] == {
            "batch_num": 0,
            "has_more": False,
            "status": "ready",
            "last_seq_id": None,
        }
        live.engine.insert(table, "alice", id=2, body="after", n=2)
        change = recv(ws)
        assert change["type"] == "change"
        assert change["rows"][0]["id"] == "2"


def test_snapshot_arrives_in_pulled_batches(live: Live) -> None:
    """25 rows with batch_size 10 come as batches 0..2 with correct status, has_more and last_seq_id."""
    table = live.table()
    inserted = [live.engine.insert(table, "alice", id=i, body=f"b{i}", n=i) for i in range(25)]
    live.engine.insert(table, "bob", id=99, body="not yours", n=0)
    with open_ws(live) as ws:
        ack = subscribe(ws, "s1", f"SELECT * FROM {table}", {"batch_size": 10})
        assert ack["type"] == "subscription_ack"
        assert [f["name"] for f in ack["schema"]] == ["id", "body", "n", "_seq", "_deleted"]
        first = recv(ws)
        assert first["type"] == "initial_data_batch"
        assert ack["batch_control"] == first["batch_control"]
        batches = pull_snapshot(ws, "s1", first)
    controls = [b["batch_control"] for b in batches]
    assert [(c["batch_num"], c["has_more"], c["status"]) for c in controls] == [
        (0, True, "loading"),
        (1, True, "loading_batch"),
        (2, False, "ready"),
    ]
    rows = [r for b in batches for r in b["rows"]]
    assert [len(b["rows"]) for b in batches] == [10, 10, 5]
    for batch in batches:
        assert batch["batch_control"]["last_seq_id"] == int(batch["rows"][-1]["_seq"])
    seqs = [int(r["_seq"]) for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == 25
    assert rows == [
        {"id": str(r["id"]), "body": r["body"], "n": r["n"], "_seq": str(r["_seq"]), "_deleted": False}
        for r in inserted
    ]


def test_empty_snapshot_is_one_ready_batch(live: Live) -> None:
    """A snapshot of an empty table is an ack and one empty ready batch with last_seq_id null."""
    table = live.table()
    with open_ws(live) as ws:
        ack = subscribe(ws, "s1", f"SELECT * FROM {table}", {})
        assert ack["batch_control"] == {
            "batch_num": 0,
            "has_more": False,
            "status": "ready",
            "last_seq_id": None,
        }
        batch = recv(ws)
        assert batch["type"] == "initial_data_batch"
        assert batch["rows"] == []


def test_last_rows_gives_the_newest_rows_ascending(live: Live) -> None:
    """last_rows=3 returns the three newest rows in ascending _seq, in one ready batch."""
    table = live.table()
    for i in range(8):
        live.engine.insert(table, "alice", id=i, body="x", n=i)
    with open_ws(live) as ws:
        ack = subscribe(ws, "s1", f"SELECT id FROM {table}", {"last_rows": 3})
        assert ack["batch_control"]["status"] == "ready"
        batch = recv(ws)
    assert [r["id"] for r in batch["rows"]] == ["5", "6", "7"]
    assert batch["batch_control"]["has_more"] is False


def test_last_rows_above_batch_size_is_unsupported(live: Live) -> None:
    """last_rows larger than batch_size is refused with UNSUPPORTED."""
    table = live.table()
    with open_ws(live) as ws:
        reply = subscribe(ws, "s1", f"SELECT * FROM {table}", {"last_rows": 11, "batch_size": 10})
    assert reply["type"] == "error"
    assert reply["code"] == "UNSUPPORTED"
    assert "last_rows (11) cannot exceed batch_size (10)" in reply["message"]


def test_from_seq_id_resumes_after_the_given_seq(live: Live) -> None:
    """from_seq_id returns only rows with _seq above it, and then live changes."""
    table = live.table()
    rows = [live.engine.insert(table, "alice", id=i, body="x", n=i) for i in range(10)]
    with open_ws(live) as ws:
        subscribe(ws, "s1", f"SELECT * FROM {table}", {"from_seq_id": rows[4]["_seq"]})
        batch = recv(ws)
        assert [r["id"] for r in batch["rows"]] == ["5", "6", "7", "8", "9"]
        live.engine.insert(table, "alice", id=10, body="x", n=10)
        assert recv(ws)["rows"][0]["id"] == "10"


def test_next_batch_for_an_unknown_subscription_fails(live: Live) -> None:
    """next_batch naming no subscription answers BATCH_FETCH_FAILED."""
    with open_ws(live) as ws:
        send(ws, {"type": "next_batch", "subscription_id": "ghost", "last_seq_id": 1})
        reply = recv(ws)
    assert reply == {
        "type": "error",
        "subscription_id": "ghost",
        "code": "BATCH_FETCH_FAILED",
        "message": "Subscription not found: ghost",
    }


def test_changes_during_the_snapshot_are_buffered_and_sorted(live: Live) -> None:
    """Changes made while batches are pulled arrive after the last batch, sorted by _seq."""
    table = live.table()
    for i in range(5):
        live.engine.insert(table, "alice", id=i, body="x", n=i)
    with open_ws(live) as ws:
        subscribe(ws, "s1", f"SELECT * FROM {table}", {"batch_size": 2})
        first = recv(ws)
        new = live.engine.insert(table, "alice", id=100, body="new", n=0)
        updated = live.engine.update(table, "alice", 4, body="changed")  # row 4 is in the last batch
        batches = pull_snapshot(ws, "s1", first)
        after = [recv(ws), recv(ws)]
    snapshot_ids = [r["id"] for b in batches for r in b["rows"]]
    assert snapshot_ids == ["0", "1", "2", "3"]  # row 4 moved past the boundary when it was updated
    assert [m["type"] for m in after] == ["change", "change"]
    assert [m["change_type"] for m in after] == ["insert", "update"]
    assert [m["rows"][0]["_seq"] for m in after] == [str(new["_seq"]), str(updated["_seq"])]


def test_changes_at_or_below_the_boundary_are_not_sent_again(live: Live) -> None:
    """A change already contained in the snapshot (seq <= boundary) is dropped, later ones are kept."""
    table = live.table()
    live.engine.insert(table, "alice", id=1, body="x", n=1)
    live.engine.insert(table, "alice", id=2, body="late event", n=2, hold=True)
    with open_ws(live) as ws:
        subscribe(ws, "s1", f"SELECT * FROM {table}", {"batch_size": 1})
        first = recv(ws)
        live.engine.release_held()  # the insert of row 2 reaches the hub after the subscription started
        batches = pull_snapshot(ws, "s1", first)
        assert [r["id"] for b in batches for r in b["rows"]] == ["1", "2"]
        live.engine.insert(table, "alice", id=3, body="x", n=3)
        assert recv(ws)["rows"][0]["id"] == "3"


# ---------------------------------------------------------------------------------------------------------------
# changes


def test_insert_update_delete_payloads(live: Live) -> None:
    """Insert sends the full row, update a delta with old values, delete the tombstone."""
    table = live.table()
    with open_ws(live) as ws:
        subscribe(ws, "s1", f"SELECT * FROM {table}")
        row = live.engine.insert(table, "alice", id=7, body="hello", n=1)
        assert recv(ws) == {
            "type": "change",
            "subscription_id": "s1",
            "change_type": "insert",
            "rows": [{"id": "7", "body": "hello", "n": 1, "_seq": str(row["_seq"]), "_deleted": False}],
        }
        new = live.engine.update(table, "alice", 7, n=2, body=None)
        assert recv(ws) == {
            "type": "change",
            "subscription_id": "s1",
            "change_type": "update",
            "rows": [{"_seq": str(new["_seq"]), "id": "7", "n": 2}],
            "old_values": [{"_seq": str(row["_seq"]), "id": "7", "n": 1, "body": "hello"}],
        }
        tomb = live.engine.delete(table, "alice", 7)
        assert recv(ws) == {
            "type": "change",
            "subscription_id": "s1",
            "change_type": "delete",
            "old_values": [{"id": "7", "body": None, "n": 2, "_seq": str(tomb["_seq"]), "_deleted": True}],
        }


def test_projection_limits_change_payloads(live: Live) -> None:
    """With listed columns, inserts carry those columns plus _seq, updates the listed changed ones."""
    table = live.table()
    with open_ws(live) as ws:
        ack = subscribe(ws, "s1", f"SELECT id, n FROM {table}")
        assert [f["name"] for f in ack["schema"]] == ["id", "n"]
        row = live.engine.insert(table, "alice", id=1, body="hidden", n=5)
        assert recv(ws)["rows"] == [{"id": "1", "n": 5, "_seq": str(row["_seq"])}]
        new = live.engine.update(table, "alice", 1, body="still hidden", n=6)
        change = recv(ws)
        assert change["rows"] == [{"_seq": str(new["_seq"]), "id": "1", "n": 6}]
        assert change["old_values"] == [{"_seq": str(row["_seq"]), "id": "1", "n": 5}]


def test_stream_delete_is_a_hard_delete_row_id(live: Live) -> None:
    """A STREAM-table delete arrives as old_values [{row_id: '<owner>:<seq>'}]."""
    table = live.table("STREAM")
    with open_ws(live) as ws:
        subscribe(ws, "s1", f"SELECT * FROM {table}")
        row = live.engine.insert(table, "alice", id=1, body="ev", n=0)
        assert recv(ws)["change_type"] == "insert"
        live.engine.delete(table, "alice", 1)
        change = recv(ws)
    assert change["change_type"] == "delete"
    assert change["old_values"] == [{"row_id": f"alice:{row['_seq']}"}]
    assert "rows" not in change


def test_user_table_changes_reach_only_the_owner(live: Live) -> None:
    """Two users on one USER table each see only their own changes."""
    table = live.table()
    with open_ws(live, "alice") as alice, open_ws(live, "bob") as bob:
        subscribe(alice, "a", f"SELECT * FROM {table}")
        subscribe(bob, "b", f"SELECT * FROM {table}")
        live.engine.insert(table, "alice", id=1, body="alice's", n=0)
        live.engine.insert(table, "bob", id=1, body="bob's", n=0)
        assert recv(alice)["rows"][0]["body"] == "alice's"
        assert recv(bob)["rows"][0]["body"] == "bob's"


def test_shared_table_changes_reach_everyone(live: Live) -> None:
    """A change on a SHARED table reaches every subscriber."""
    table = live.table("SHARED")
    with open_ws(live, "alice") as alice, open_ws(live, "bob") as bob:
        subscribe(alice, "a", f"SELECT * FROM {table}")
        subscribe(bob, "b", f"SELECT * FROM {table}")
        live.engine.insert(table, None, id=1, body="for all", n=0)
        assert recv(alice)["rows"][0]["body"] == "for all"
        assert recv(bob)["rows"][0]["body"] == "for all"


def test_filter_applies_to_the_new_row(live: Live) -> None:
    """An update leaving the filter sends nothing; inserts and deletes are checked on the new row/tombstone."""
    table = live.table()
    live.engine.insert(table, "alice", id=1, body="in", n=10)
    live.engine.insert(table, "alice", id=2, body="in", n=10)
    with open_ws(live) as ws:
        subscribe(ws, "s1", f"SELECT * FROM {table} WHERE n >= 5 AND body LIKE 'i%'")
        live.engine.insert(table, "alice", id=3, body="in", n=1)  # filtered out
        live.engine.update(table, "alice", 1, n=0)  # leaves the filter: nothing
        live.engine.delete(table, "alice", 1)  # tombstone has n=0: nothing
        live.engine.delete(table, "alice", 2)  # tombstone matches: delete event
        change = recv(ws)
        assert (change["change_type"], change["old_values"][0]["id"]) == ("delete", "2")
        live.engine.insert(table, "alice", id=4, body="inside", n=7)
        assert recv(ws)["rows"][0]["id"] == "4"


def test_current_user_in_filter_is_the_subscriber(live: Live) -> None:
    """CURRENT_USER() in the WHERE clause stands for the subscriber's user id."""
    table = live.table("SHARED")
    with open_ws(live, "bob") as ws:
        subscribe(ws, "s1", f"SELECT * FROM {table} WHERE body = CURRENT_USER()")
        live.engine.insert(table, None, id=1, body="alice", n=0)
        live.engine.insert(table, None, id=2, body="bob", n=0)
        assert recv(ws)["rows"][0]["id"] == "2"


def test_unsubscribe_stops_changes(live: Live) -> None:
    """After unsubscribe, changes go only to the remaining subscription."""
    table = live.table()
    with open_ws(live) as ws:
        subscribe(ws, "s1", f"SELECT * FROM {table}")
        subscribe(ws, "s2", f"SELECT * FROM {table}")
        send(ws, {"type": "unsubscribe", "subscription_id": "s1"})
        send(ws, {"type": "ping"})
        subscribe(ws, "s3", f"SELECT * FROM {table}")  # its ack proves the unsubscribe was handled
        live.engine.insert(table, "alice", id=1, body="x", n=0)
        got = {recv(ws)["subscription_id"], recv(ws)["subscription_id"]}
    assert got == {"s2", "s3"}


def test_duplicate_subscription_id_replaces_the_old_one(live: Live) -> None:
    """Subscribing again under the same id replaces the subscription (KalamDB sends no error)."""
    table = live.table()
    with open_ws(live) as ws:
        subscribe(ws, "s1", f"SELECT * FROM {table} WHERE n = 1")
        ack = subscribe(ws, "s1", f"SELECT * FROM {table} WHERE n = 2")
        assert ack["type"] == "subscription_ack"
        live.engine.insert(table, "alice", id=1, body="x", n=1)
        live.engine.insert(table, "alice", id=2, body="x", n=2)
        assert recv(ws)["rows"][0]["id"] == "2"


def test_plan_errors_are_forwarded_with_their_code(live: Live) -> None:
    """A subscription the engine refuses comes back as an error with the engine's code."""
    with open_ws(live) as ws:
        reply = subscribe(ws, "s1", "SELECT * FROM app.missing", {})
    assert reply["type"] == "error"
    assert reply["code"] == "NOT_FOUND"
    assert reply["subscription_id"] == "s1"


def test_changes_from_concurrent_threads_keep_per_owner_order(live: Live) -> None:
    """Writers in several threads: every change arrives once, each writer's in commit order."""
    table = live.table("SHARED")
    with open_ws(live) as ws:
        subscribe(ws, "s1", f"SELECT id, body FROM {table}")

        def write(prefix: int) -> None:
            for i in range(50):
                live.engine.insert(table, None, id=prefix * 1000 + i, body=str(prefix), n=i)

        threads = [threading.Thread(target=write, args=(p,)) for p in (1, 2, 3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = [recv(ws)["rows"][0] for _ in range(150)]
    assert len({r["_seq"] for r in got}) == 150
    for p in (1, 2, 3):
        assert [int(r["id"]) for r in got if r["body"] == str(p)] == [p * 1000 + i for i in range(50)]


# ---------------------------------------------------------------------------------------------------------------
# frames and bad messages


def test_large_messages_are_gzip_binary_frames(live: Live) -> None:
    """A server message of 512 bytes or more arrives as a gzip binary frame; small ones as text."""
    table = live.table()
    live.engine.insert(table, "alice", id=1, body="x" * 2000, n=0)
    with open_ws(live) as ws:
        send(ws, {"type": "subscribe", "subscription": {"id": "s", "sql": f"SELECT id FROM {table}"}})
        small = ws.recv(timeout=TIMEOUT)
        assert isinstance(small, str) and json.loads(small)["type"] == "subscription_ack"
        subscribe(ws, "big", f"SELECT * FROM {table}", {})
        frame = ws.recv(timeout=TIMEOUT)
    assert isinstance(frame, bytes) and frame[:2] == b"\x1f\x8b"
    assert json.loads(gzip.decompress(frame))["rows"][0]["body"] == "x" * 2000


def test_compress_false_keeps_text_frames(live: Live) -> None:
    """With ?compress=false large messages stay text frames."""
    table = live.table()
    live.engine.insert(table, "alice", id=1, body="x" * 2000, n=0)
    with open_ws(live, query="?compress=false") as ws:
        subscribe(ws, "big", f"SELECT * FROM {table}", {})
        frame = ws.recv(timeout=TIMEOUT)
    assert isinstance(frame, str)
    assert json.loads(frame)["rows"][0]["body"] == "x" * 2000


def test_client_binary_frame_is_unsupported_data(live: Live) -> None:
    """A binary frame from the client is answered with UNSUPPORTED_DATA and the connection stays."""
    with open_ws(live) as ws:
        ws.send(b"\x00\x01")
        assert recv(ws) == {
            "type": "error",
            "subscription_id": "protocol",
            "code": "UNSUPPORTED_DATA",
            "message": "Binary not supported",
        }
        send(ws, auth_message("tok-alice"))
        assert recv(ws)["type"] == "auth_success"


@pytest.mark.parametrize(
    ("text", "reason_part"),
    [("{not json", "Invalid message: "), ('{"type":"dance"}', "unknown variant `dance`")],
)
def test_bad_text_closes_1011(live: Live, text: str, reason_part: str) -> None:
    """Unparseable text or an unknown message type closes the connection with 1011 'Invalid message'."""
    with open_ws(live) as ws:
        ws.send(text)
        code, reason = closed_with(ws)
    assert code == 1011
    assert reason is not None and reason.startswith("Invalid message: ") and reason_part in reason


def test_text_over_one_megabyte_is_message_too_large(live: Live) -> None:
    """A text frame above 1 MB is answered with MESSAGE_TOO_LARGE."""
    with open_ws(live) as ws:
        ws.send(json.dumps({"type": "ping", "pad": "x" * (1024 * 1024)}))
        reply = recv(ws)
    assert (reply["code"], reply["subscription_id"]) == ("MESSAGE_TOO_LARGE", "protocol")


# ---------------------------------------------------------------------------------------------------------------
# limits and keepalive


def test_message_rate_limit(live: Live) -> None:
    """Messages above max_messages_per_sec are discarded with RATE_LIMIT_EXCEEDED."""
    with ws_settings(live, max_messages_per_sec=3), open_ws(live) as ws:
        for _ in range(10):
            send(ws, {"type": "ping"})
        reply = recv(ws)
    assert reply == {
        "type": "error",
        "subscription_id": "rate_limit",
        "code": "RATE_LIMIT_EXCEEDED",
        "message": "Too many messages",
    }


def test_subscriptions_per_user_limit(live: Live) -> None:
    """The per-user limit counts subscriptions across connections: SUBSCRIPTION_LIMIT_EXCEEDED."""
    table = live.table()
    with (
        ws_settings(live, max_subscriptions_per_user=2),
        open_ws(live, "carol") as a,
        open_ws(live, "carol") as b,
    ):
        assert subscribe(a, "s1", f"SELECT * FROM {table}")["type"] == "subscription_ack"
        assert subscribe(b, "s2", f"SELECT * FROM {table}")["type"] == "subscription_ack"
        reply = subscribe(b, "s3", f"SELECT * FROM {table}")
        assert (reply["type"], reply["code"]) == ("error", "SUBSCRIPTION_LIMIT_EXCEEDED")
        send(a, {"type": "unsubscribe", "subscription_id": "s1"})
        assert subscribe(a, "s4", f"SELECT * FROM {table}")["type"] == "subscription_ack"


def test_subscriptions_per_connection_limit(live: Live) -> None:
    """Above the per-connection limit a subscribe is refused with UNSUPPORTED."""
    table = live.table()
    with ws_settings(live, max_subscriptions_per_connection=2), open_ws(live) as ws:
        subscribe(ws, "s1", f"SELECT * FROM {table}")
        subscribe(ws, "s2", f"SELECT * FROM {table}")
        reply = subscribe(ws, "s3", f"SELECT * FROM {table}")
    assert (reply["code"], reply["message"]) == (
        "UNSUPPORTED",
        "Maximum subscriptions (2) per connection exceeded",
    )


def test_heartbeat_timeout_closes_1000_and_pings_keep_alive(live: Live) -> None:
    """WebSocket pings keep a silent connection open; without them it closes 1000 'Heartbeat timeout'."""
    with ws_settings(live, client_timeout=0.6, check_interval=0.05), open_ws(live, ping_interval=None) as ws:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # 1.5 s of pings only: longer than the 0.6 s timeout
            ws.ping().wait(TIMEOUT)
            last_ping = time.monotonic()
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.2)  # the connection stays open and quiet while pinged
        code, reason = closed_with(ws)
    assert (code, reason) == (1000, "Heartbeat timeout")
    assert time.monotonic() - last_ping >= 0.5


# ---------------------------------------------------------------------------------------------------------------
# planted faults


def test_finds_live_cross_user(live: Live) -> None:
    """With live_cross_user, bob's subscription receives alice's change on a USER table."""
    table = live.table()
    with open_ws(live, "bob") as bob:
        subscribe(bob, "b", f"SELECT * FROM {table}")
        live.engine.insert(table, "alice", id=1, body="alice only", n=0)
        live.engine.insert(table, "bob", id=2, body="bob's", n=0)
        assert recv(bob)["rows"][0]["body"] == "bob's"  # without the fault
        with faults("live_cross_user"):
            live.engine.insert(table, "alice", id=3, body="leaked", n=0)
            assert recv(bob)["rows"][0]["body"] == "leaked"


def test_finds_snapshot_has_more_early(live: Live) -> None:
    """With snapshot_has_more_early, a two-batch snapshot says has_more=false after the first batch."""
    table = live.table()
    for i in range(15):
        live.engine.insert(table, "alice", id=i, body="x", n=i)
    with open_ws(live) as ws:
        subscribe(ws, "ok", f"SELECT * FROM {table}", {"batch_size": 10})
        assert recv(ws)["batch_control"]["has_more"] is True
        with faults("snapshot_has_more_early"):
            subscribe(ws, "bad", f"SELECT * FROM {table}", {"batch_size": 10})
            batch = recv(ws)
    assert batch["batch_control"]["has_more"] is False
    assert len(batch["rows"]) == 10


def test_finds_live_delete_missing(live: Live) -> None:
    """With live_delete_missing, a delete sends no change event."""
    table = live.table()
    live.engine.insert(table, "alice", id=1, body="x", n=0)
    with open_ws(live) as ws, faults("live_delete_missing"):
        subscribe(ws, "s1", f"SELECT * FROM {table}")
        live.engine.delete(table, "alice", 1)
        live.engine.insert(table, "alice", id=2, body="x", n=0)
        assert recv(ws)["change_type"] == "insert"


def test_finds_from_seq_replays(live: Live) -> None:
    """With from_seq_replays, resuming from a row's _seq sends that row and the earlier ones again."""
    table = live.table()
    rows = [live.engine.insert(table, "alice", id=i, body="x", n=i) for i in range(4)]
    with open_ws(live) as ws, faults("from_seq_replays"):
        subscribe(ws, "s1", f"SELECT * FROM {table}", {"from_seq_id": rows[1]["_seq"]})
        batch = recv(ws)
    assert [r["id"] for r in batch["rows"]] == ["0", "1", "2", "3"]
