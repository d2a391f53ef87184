"""LiveConnection against a scripted local WebSocket server (PROTOCOL.md §10)."""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.sync.server import ServerConnection, serve

from kalammodel.client import LiveConnection, LiveMessage, ws_url
from kalammodel.errors import (
    AuthError,
    ConnectionClosed,
    DeadlineExceeded,
    SqlError,
    TransportError,
    UsageError,
)

TOKEN = "eyJhbGciOiJIUzI1NiJ9.WS-SECRET.sig"
AUTH_SUCCESS = {
    "type": "auth_success",
    "user": "alice",
    "role": "user",
    "protocol": {"serialization": "json", "compression": "gzip"},
}
SCHEMA = [
    {"name": "id", "data_type": "BigInt", "index": 0, "flags": ["pk", "nn", "uq"]},
    {"name": "done", "data_type": "Boolean", "index": 1},
    {"name": "_seq", "data_type": "BigInt", "index": 2, "flags": ["nn"]},
    {"name": "_deleted", "data_type": "Boolean", "index": 3, "flags": ["nn"]},
]


def ack(sub_id: str, has_more: bool = False, status: str = "ready", last_seq_id: int | None = None) -> dict:
    return {
        "type": "subscription_ack",
        "subscription_id": sub_id,
        "total_rows": 0,
        "batch_control": {"batch_num": 0, "has_more": has_more, "status": status, "last_seq_id": last_seq_id},
        "schema": SCHEMA,
    }


def batch(sub_id: str, num: int, ids: list[int], has_more: bool) -> dict:
    return {
        "type": "initial_data_batch",
        "subscription_id": sub_id,
        "rows": [{"id": str(i), "done": False, "_seq": str(1000 + i), "_deleted": False} for i in ids],
        "batch_control": {
            "batch_num": num,
            "has_more": has_more,
            "status": "loading" if num == 0 and has_more else ("loading_batch" if has_more else "ready"),
            "last_seq_id": 1000 + ids[-1] if ids else None,
        },
    }


def change(sub_id: str, i: int) -> dict:
    return {
        "type": "change",
        "subscription_id": sub_id,
        "change_type": "insert",
        "rows": [{"id": str(i), "done": False, "_seq": str(2000 + i), "_deleted": False}],
    }


class Script:
    """The server side of one connection: what it received and helpers to answer."""

    def __init__(self, ws: ServerConnection, server: WsServer):
        self.ws = ws
        self.server = server

    def recv(self, timeout: float = 5.0) -> dict:
        msg = json.loads(self.ws.recv(timeout=timeout))
        self.server.received.put(msg)
        return msg

    def send(self, msg: dict, binary_gzip: bool = False) -> None:
        data = json.dumps(msg)
        self.ws.send(gzip.compress(data.encode()) if binary_gzip else data)


class WsServer:
    """A websockets server on a free loopback port that runs ``script`` after message authentication."""

    def __init__(self, script: Callable[[Script], None] | None = None, auth: str = "accept"):
        self.script = script
        self.auth = auth
        self.received: queue.Queue[dict] = queue.Queue()
        self.paths: list[str] = []
        self.hello: list[dict] = []
        self.pings = threading.Event()
        self.release = threading.Event()
        logger = logging.getLogger(f"test-ws-server-{id(self)}")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.addHandler(_PingRecorder(self.pings))
        self._server = serve(
            self._handle, "127.0.0.1", 0, ping_interval=None, compression=None, logger=logger
        )
        self.base_url = f"http://127.0.0.1:{self._server.socket.getsockname()[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _handle(self, ws: ServerConnection) -> None:
        self.paths.append(ws.request.path)
        script = Script(ws, self)
        try:
            hello = json.loads(ws.recv(timeout=5))
            self.hello.append(hello)
            if self.auth == "reject":
                ws.send(json.dumps({"type": "auth_error", "message": "Invalid credentials"}))
                ws.close(1008, "auth failed")
                return
            if self.auth == "silent":
                self.release.wait(10)
                return
            if self.auth == "close":
                ws.close(1008, "Too many authentication attempts")
                return
            ws.send(json.dumps(AUTH_SUCCESS))
            if self.script is not None:
                self.script(script)
            while True:  # keep the connection open, recording what the client sends, until it leaves
                script.recv(timeout=30)
        except (WsConnectionClosed, TimeoutError):
            pass

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        for conn in list(self._server.connections):
            conn.close()
        self._thread.join(5)

    def next_received(self, timeout: float = 5.0) -> dict:
        return self.received.get(timeout=timeout)


class _PingRecorder(logging.Handler):
    """Sets an event when the server's protocol logs an incoming PING frame."""

    def __init__(self, event: threading.Event):
        super().__init__(logging.DEBUG)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("< PING"):
            self.event.set()


@contextlib.contextmanager
def live(
    script: Callable[[Script], None] | None = None, auth: str = "accept", **connect: Any
) -> Iterator[tuple[WsServer, LiveConnection]]:
    server = WsServer(script, auth)
    conn = None
    try:
        conn = LiveConnection.connect(server.base_url, TOKEN, **connect)
        yield server, conn
    finally:
        if conn is not None:
            conn.close()
        server.close()


def answer_subscribe(*replies: dict, gzip_frames: bool = False) -> Callable[[Script], None]:
    """A script that waits for one subscribe and sends ``replies``."""

    def script(s: Script) -> None:
        s.recv()
        for reply in replies:
            s.send(reply, binary_gzip=gzip_frames)

    return script


# ---------------------------------------------------------------------------------------------- connect/auth


def test_ws_url_derives_from_http_base_url():
    """The ws URL swaps the scheme, appends /v1/ws and adds compress=false only when asked."""
    assert ws_url("http://h:8080") == "ws://h:8080/v1/ws"
    assert ws_url("https://h/base/", compress=False) == "wss://h/base/v1/ws?compress=false"
    with pytest.raises(UsageError):
        ws_url("h:8080")


def test_connect_authenticates_by_message_with_protocol():
    """connect sends the authenticate message with the protocol object and keeps auth_success."""
    with live() as (server, conn):
        assert server.hello == [
            {
                "type": "authenticate",
                "method": "jwt",
                "token": TOKEN,
                "protocol": {"serialization": "json", "compression": "gzip"},
            }
        ]
        assert server.paths == ["/v1/ws"]
        assert conn.auth == AUTH_SUCCESS and not conn.closed
        assert TOKEN not in repr(conn)


def test_compress_false_goes_in_the_url():
    """compress=False asks the server for text frames with ?compress=false."""
    with live(compress=False) as (server, _conn):
        assert server.paths == ["/v1/ws?compress=false"]


def test_auth_error_raises_auth_error():
    """An auth_error reply raises AuthError carrying the server's message."""
    server = WsServer(auth="reject")
    try:
        with pytest.raises(AuthError, match="Invalid credentials") as info:
            LiveConnection.connect(server.base_url, TOKEN, timeout=5)
        assert TOKEN not in str(info.value)
    finally:
        server.close()


def test_close_during_auth_raises_auth_error_with_reason():
    """A close before any auth reply raises AuthError naming the close code and reason."""
    server = WsServer(auth="close")
    try:
        with pytest.raises(AuthError, match="1008.*Too many authentication attempts"):
            LiveConnection.connect(server.base_url, TOKEN, timeout=5)
    finally:
        server.close()


def test_auth_timeout_raises_deadline_exceeded_at_the_deadline():
    """A server that never answers authenticate makes connect fail at its deadline."""
    server = WsServer(auth="silent")
    try:
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="auth_success"):
            LiveConnection.connect(server.base_url, TOKEN, timeout=0.3)
        assert 0.25 <= time.monotonic() - start < 3
    finally:
        server.close()


def test_connection_refused_is_transport_error():
    """Connecting to a port nobody listens on raises TransportError naming the URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransportError, match=f"ws://127.0.0.1:{port}/v1/ws"):
        LiveConnection.connect(f"http://127.0.0.1:{port}", TOKEN, timeout=2)


# ---------------------------------------------------------------------------------------------- messages


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (None, {"id": "s1", "sql": "SELECT * FROM app.notes"}),
        ({}, {"id": "s1", "sql": "SELECT * FROM app.notes", "options": {}}),
        (
            {"batch_size": 2, "last_rows": 1, "from_seq_id": 7321890123456512},
            {
                "id": "s1",
                "sql": "SELECT * FROM app.notes",
                "options": {"batch_size": 2, "last_rows": 1, "from_seq_id": 7321890123456512},
            },
        ),
    ],
)
def test_subscribe_message_shape(options, expected):
    """options=None omits the key, {} sends an empty object, given keys pass through."""
    with live() as (server, conn):
        conn.subscribe("s1", "SELECT * FROM app.notes", options)
        assert server.next_received() == {"type": "subscribe", "subscription": expected}


def test_subscribe_rejects_unknown_options_and_duplicate_ids():
    """Unknown option keys and reused subscription ids are usage errors."""
    with live() as (_server, conn):
        with pytest.raises(UsageError, match="batchsize"):
            conn.subscribe("s1", "SELECT * FROM app.t", {"batchsize": 3})
        conn.subscribe("s1", "SELECT * FROM app.t")
        with pytest.raises(UsageError, match="already in use"):
            conn.subscribe("s1", "SELECT * FROM app.t")


def test_messages_are_routed_per_subscription():
    """Interleaved messages reach their own subscription's queue in order; unknown ids go to unrouted."""

    def script(s: Script) -> None:
        s.recv()
        s.recv()
        for msg in [ack("a"), ack("b"), change("a", 1), change("b", 2), change("zz", 9), change("a", 3)]:
            s.send(msg)

    with live(script) as (_server, conn):
        a = conn.subscribe("a", "SELECT * FROM app.t")
        b = conn.subscribe("b", "SELECT * FROM app.t")
        got_a = a.wait_for(lambda m: m.type == "change" and m.rows[0]["id"] == 3, timeout=5)
        assert [m.type for m in got_a] == ["subscription_ack", "change", "change"]
        assert [m.rows[0]["id"] for m in got_a[1:]] == [1, 3]
        got_b = b.wait_for(lambda m: m.type == "change", timeout=5)
        assert got_b[-1].rows == [{"id": 2, "done": False, "_seq": 2002, "_deleted": False}]
        stray = conn.unrouted.get(timeout=5)
        assert stray.subscription_id == "zz" and stray.rows[0]["_seq"] == 2009


def test_gzip_binary_and_text_frames_decode_alike():
    """gzip binary frames decode like text frames, and rows decode with the ack schema."""
    with live(answer_subscribe(ack("s1"), change("s1", 5), gzip_frames=True)) as (_server, conn):
        sub = conn.subscribe("s1", "SELECT * FROM app.t")
        first = sub.get(timeout=5)
        assert first.type == "subscription_ack" and [c.name for c in first.schema] == [
            "id",
            "done",
            "_seq",
            "_deleted",
        ]
        assert sub.get(timeout=5).rows == [{"id": 5, "done": False, "_seq": 2005, "_deleted": False}]


def test_uncompressed_binary_frame_is_decoded():
    """A binary frame without the gzip magic is read as UTF-8 JSON."""

    def script(s: Script) -> None:
        s.recv()
        s.ws.send(json.dumps(ack("s1")).encode())

    with live(script) as (_server, conn):
        assert conn.subscribe("s1", "SELECT * FROM app.t").get(timeout=5).type == "subscription_ack"


def test_undecodable_frame_goes_to_unrouted():
    """A frame that is not JSON is delivered on unrouted as invalid_frame instead of killing the reader."""

    def script(s: Script) -> None:
        s.ws.send("not json")
        s.send(change("zz", 1))

    with live(script) as (_server, conn):
        bad = conn.unrouted.get(timeout=5)
        assert bad.type == "invalid_frame" and "not json" in bad.raw["frame"]
        assert conn.unrouted.get(timeout=5).type == "change"


def test_update_and_delete_changes_decode():
    """Update rows/old_values and delete tombstones decode with the ack schema."""
    update = {
        "type": "change",
        "subscription_id": "s1",
        "change_type": "update",
        "rows": [{"id": "1", "done": True, "_seq": "3001"}],
        "old_values": [{"id": "1", "done": False, "_seq": "3000"}],
    }
    delete = {
        "type": "change",
        "subscription_id": "s1",
        "change_type": "delete",
        "old_values": [{"id": "1", "done": True, "_seq": "3002", "_deleted": True}],
    }
    with live(answer_subscribe(ack("s1"), update, delete)) as (_server, conn):
        sub = conn.subscribe("s1", "SELECT * FROM app.t")
        _, up, de = sub.wait_for(lambda m: m.change_type == "delete", timeout=5)
        assert up.change_type == "update" and up.rows == [{"id": 1, "done": True, "_seq": 3001}]
        assert up.old_values == [{"id": 1, "done": False, "_seq": 3000}]
        assert de.rows is None and de.old_values == [{"id": 1, "done": True, "_seq": 3002, "_deleted": True}]


def test_error_message_is_routed_with_code():
    """A subscription error message carries code and message."""
    err = {"type": "error", "subscription_id": "s1", "code": "UNAUTHORIZED", "message": "no access"}
    with live(answer_subscribe(err)) as (_server, conn):
        msg = conn.subscribe("s1", "SELECT * FROM system.users").get(timeout=5)
        assert (msg.type, msg.code, msg.message) == ("error", "UNAUTHORIZED", "no access")


# ---------------------------------------------------------------------------------------------- snapshot


def test_collect_snapshot_pulls_batches_with_last_seq_id():
    """collect_snapshot sends next_batch with the previous last_seq_id while has_more, then stops."""

    def script(s: Script) -> None:
        s.recv()
        s.send(ack("s1", has_more=True, status="loading", last_seq_id=1003), binary_gzip=True)
        s.send(batch("s1", 0, [1, 2], has_more=True))
        assert s.recv() == {"type": "next_batch", "subscription_id": "s1", "last_seq_id": 1002}
        s.send(batch("s1", 1, [3], has_more=True))
        assert s.recv() == {"type": "next_batch", "subscription_id": "s1", "last_seq_id": 1003}
        s.send(batch("s1", 2, [], has_more=False))
        s.send(change("s1", 4))

    with live(script) as (server, conn):
        sub = conn.subscribe("s1", "SELECT * FROM app.t", {"batch_size": 2})
        ack_msg, batches = sub.collect_snapshot(timeout=5)
        assert ack_msg.type == "subscription_ack" and sub.ack is ack_msg
        assert [[r["id"] for r in b.rows] for b in batches] == [[1, 2], [3], []]
        assert [b.has_more for b in batches] == [True, True, False]
        received = [server.next_received() for _ in range(3)]
        assert [m["type"] for m in received] == ["subscribe", "next_batch", "next_batch"]
        assert isinstance(received[1]["last_seq_id"], int)
        assert sub.get(timeout=5).type == "change"


def test_collect_snapshot_without_options_has_no_batches():
    """Without options the server sends only the ack; collect_snapshot returns no batches."""
    with live(answer_subscribe(ack("s1"))) as (_server, conn):
        ack_msg, batches = conn.subscribe("s1", "SELECT * FROM app.t").collect_snapshot(timeout=5)
        assert ack_msg.batch_control["status"] == "ready" and batches == []


def test_collect_snapshot_raises_on_subscription_error():
    """An error message instead of an ack raises SqlError with the server's code."""
    err = {"type": "error", "subscription_id": "s1", "code": "INVALID_SQL", "message": "bad"}
    with live(answer_subscribe(err)) as (_server, conn):
        with pytest.raises(SqlError) as info:
            conn.subscribe("s1", "SELECT _seq FROM app.t", {}).collect_snapshot(timeout=5)
        assert info.value.code == "INVALID_SQL" and info.value.sql == "SELECT _seq FROM app.t"


def test_collect_snapshot_keeps_stray_messages_for_get():
    """Messages arriving before the ack are not lost: they stay queued, in order."""
    with live(answer_subscribe(change("s1", 7), ack("s1"))) as (_server, conn):
        sub = conn.subscribe("s1", "SELECT * FROM app.t")
        ack_msg, _ = sub.collect_snapshot(timeout=5)
        assert ack_msg.type == "subscription_ack"
        assert sub.get(timeout=1).rows[0]["id"] == 7


# ---------------------------------------------------------------------------------------------- waits, close


def test_server_disconnect_wakes_waiters_with_connection_closed():
    """A close by the server mid-wait raises ConnectionClosed in every waiter at once, not at the deadline."""

    def script(s: Script) -> None:
        s.recv()
        s.recv()
        s.send(ack("s1"))
        s.server.release.wait(10)
        s.ws.close(1011, "Invalid message: boom")

    with live(script) as (server, conn):
        sub = conn.subscribe("s1", "SELECT * FROM app.t")
        other = conn.subscribe("s2", "SELECT * FROM app.u")
        assert sub.get(timeout=5).type == "subscription_ack"
        errors: list[BaseException] = []

        def wait_other() -> None:
            try:
                other.get(timeout=30)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        waiter = threading.Thread(target=wait_other)
        waiter.start()
        start = time.monotonic()
        server.release.set()
        with pytest.raises(ConnectionClosed) as info:
            sub.get(timeout=30)
        waiter.join(10)
        assert time.monotonic() - start < 5
        assert (info.value.code, info.value.reason) == (1011, "Invalid message: boom")
        assert len(errors) == 1 and isinstance(errors[0], ConnectionClosed)
        assert conn.closed and conn.close_code == 1011
        with pytest.raises(ConnectionClosed):
            sub.get(timeout=30)
        with pytest.raises(ConnectionClosed):
            conn.unrouted.get(timeout=30)
        with pytest.raises(ConnectionClosed):
            conn.subscribe("s3", "SELECT * FROM app.t")


def test_messages_before_close_are_still_delivered():
    """Messages queued before a close come out first; then ConnectionClosed."""

    def script(s: Script) -> None:
        s.recv()
        s.send(ack("s1"))
        s.send(change("s1", 1))
        s.ws.close(1000, "Heartbeat timeout")

    with live(script) as (_server, conn):
        sub = conn.subscribe("s1", "SELECT * FROM app.t")
        with pytest.raises(ConnectionClosed, match="Heartbeat timeout") as info:
            sub.wait_for(lambda m: False, timeout=5)
        assert [m.type for m in info.value.messages] == ["subscription_ack", "change"]


def test_silent_server_raises_deadline_exceeded_at_the_deadline():
    """get on a silent subscription raises DeadlineExceeded once its timeout passes."""
    with live() as (_server, conn):
        sub = conn.subscribe("s1", "SELECT * FROM app.t")
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="'s1'"):
            sub.get(timeout=0.2)
        assert 0.19 <= time.monotonic() - start < 2
        with pytest.raises(DeadlineExceeded) as info:
            sub.wait_for(lambda m: True, timeout=0.05)
        assert info.value.messages == []


def test_drain_returns_after_quiet_period():
    """drain collects the burst and returns once nothing arrives for `quiet` seconds."""
    with live(answer_subscribe(ack("s1"), change("s1", 1), change("s1", 2))) as (_server, conn):
        msgs = conn.subscribe("s1", "SELECT * FROM app.t").drain(quiet=0.2, timeout=5)
        assert [m.type for m in msgs] == ["subscription_ack", "change", "change"]


def test_drain_raises_when_never_quiet():
    """A stream that never goes quiet makes drain raise at its timeout rather than truncate silently."""

    def script(s: Script) -> None:
        s.recv()
        for i in range(400):
            s.send(change("s1", i))
            if s.server.release.wait(0.01):
                return

    with live(script) as (server, conn):
        sub = conn.subscribe("s1", "SELECT * FROM app.t")
        with pytest.raises(DeadlineExceeded, match="never went quiet") as info:
            sub.drain(quiet=0.5, timeout=0.6)
        server.release.set()
        assert len(info.value.messages) > 0


def test_pending_takes_what_is_queued_without_waiting():
    """pending returns already received messages and never blocks."""
    with live(answer_subscribe(ack("s1"), change("s1", 1))) as (_server, conn):
        sub = conn.subscribe("s1", "SELECT * FROM app.t")
        sub.wait_for(lambda m: m.type == "subscription_ack", timeout=5)
        deadline = time.monotonic() + 5
        got: list[LiveMessage] = []
        while not got and time.monotonic() < deadline:
            got = sub.pending()
        assert [m.type for m in got] == ["change"]
        assert sub.pending() == []


def test_unsubscribe_and_ping_send_messages_and_reroute():
    """unsubscribe and ping send their messages; later events of the id go to unrouted."""

    def script(s: Script) -> None:
        s.recv()
        s.recv()
        s.recv()
        s.send(change("s1", 1))

    with live(script) as (server, conn):
        conn.subscribe("s1", "SELECT * FROM app.t")
        conn.ping()
        conn.unsubscribe("s1")
        assert [server.next_received() for _ in range(3)][1:] == [
            {"type": "ping"},
            {"type": "unsubscribe", "subscription_id": "s1"},
        ]
        assert conn.unrouted.get(timeout=5).subscription_id == "s1"


def test_keepalive_pings_reach_the_server():
    """The connection sends WebSocket pings on its own, so the server sees traffic from an idle client."""
    with live(ping_interval=0.05) as (server, _conn):
        assert server.pings.wait(5)


def test_pings_leave_the_global_random_state_alone():
    """A keepalive ping during a Hypothesis draw must not change ``random``'s state (Hypothesis checks it)."""
    import random

    with live(ping_interval=None) as (server, conn):
        before = random.getstate()
        assert conn._ws.ping().wait(5)  # a ping as the keepalive thread sends it (no payload given), answered
        assert random.getstate() == before
        assert server.pings.wait(5)


def test_close_is_reported_and_send_after_close_fails():
    """After close(), the connection reports closed and sends raise ConnectionClosed."""
    with live() as (_server, conn):
        sub = conn.subscribe("s1", "SELECT * FROM app.t")
        conn.close()
        assert conn.closed and conn.close_code == 1000
        with pytest.raises(ConnectionClosed):
            conn.ping()
        with pytest.raises(ConnectionClosed):
            sub.get(timeout=5)


def test_dropped_socket_is_reported_as_1006():
    """A TCP drop without a close frame ends waits with ConnectionClosed code 1006."""

    def script(s: Script) -> None:
        s.recv()
        s.send(ack("s1"))
        s.ws.socket.shutdown(socket.SHUT_RDWR)

    with live(script) as (_server, conn):
        sub = conn.subscribe("s1", "SELECT * FROM app.t")
        assert sub.get(timeout=5).type == "subscription_ack"
        with pytest.raises(ConnectionClosed) as info:
            sub.get(timeout=30)
        assert info.value.code == 1006


def test_close_stops_the_reader_thread():
    """close() ends the background reader thread."""
    with live() as (_server, conn):
        conn.close()
        assert not conn._reader.is_alive()


def test_cells_that_do_not_match_the_ack_schema_are_reported_not_raised():
    """After an ALTER TABLE a change may carry a cell of the column's new type (a DOUBLE where the ack said
    Json). The message is still delivered, with ``decode_error`` set and no rows, so that the caller decides:
    the live extension ignores it for a subscription the model gave up, and reports it otherwise."""
    from kalammodel.client._results import Column
    from kalammodel.client._ws import Subscription

    class _Conn:
        close_code = None
        close_reason = None

    sub = Subscription(_Conn(), "s1")  # type: ignore[arg-type]
    sub.schema = [Column("id", "BigInt", 0, ("pk",)), Column("c2", "Json", 1)]
    bad = {"type": "change", "subscription_id": "s1", "change_type": "insert", "rows": [{"id": "1", "c2": 52.0}]}
    good = {"type": "change", "subscription_id": "s1", "change_type": "insert", "rows": [{"id": "2", "c2": "[1]"}]}
    sub._put(bad)
    sub._put(good)
    first = sub.get(1.0)
    assert first.decode_error is not None and "'c2'" in first.decode_error and "52.0" in first.decode_error
    assert first.rows is None and first.change_type == "insert" and first.raw == bad
    second = sub.get(1.0)
    assert second.decode_error is None and second.rows == [{"id": 2, "c2": "[1]"}]
    sub._put({"type": "subscription_ack", "subscription_id": "s1", "schema": "not a list"})
    with pytest.raises(TransportError):
        sub.get(1.0)
