"""Requests sent ahead (``KalamClient.submit``): out now, answer read later, over real sockets.

A scripted HTTP server on a loopback port plays the SQL endpoint: each request takes the next scripted
action (answer, answer and then close the connection, swallow the request and close, never answer).
"""

from __future__ import annotations

import http.server
import json
import queue
import select
import socketserver
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kalammodel.client import KalamClient, Pending
from kalammodel.errors import SqlError, TransportError

ROWS = {
    "status": "success",
    "results": [
        {
            "schema": [{"name": "id", "data_type": "BigInt", "index": 0}],
            "rows": [["1"], ["2"]],
            "row_count": 2,
        }
    ],
    "took": 0.1,
}


def count_body(n: int) -> dict[str, Any]:
    return {
        "status": "success",
        "results": [{"schema": [{"name": "n", "data_type": "BigInt", "index": 0}], "rows": [[str(n)]], "row_count": 1}],
    }


def page_body(keys: list[int]) -> dict[str, Any]:
    return {
        "status": "success",
        "results": [
            {
                "schema": [{"name": "id", "data_type": "BigInt", "index": 0}],
                "rows": [[str(k)] for k in keys],
                "row_count": len(keys),
            }
        ],
    }


ERROR = {"status": "error", "error": {"code": "SQL_EXECUTION_ERROR", "message": "Table 'ns.nope' not found"}}


class Scripted(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.script: queue.Queue[tuple[str, int, Any]] = queue.Queue()
        self.by_sql: dict[str, tuple[str, int, Any]] = {}  # the action for a given SQL text, else script's next
        self.received: list[str] = []  # the SQL of every request, in arrival order
        self.arrived = threading.Condition()
        self.release = threading.Event()  # "hold" answers wait for it

    def wait_received(self, n: int, timeout: float = 5.0) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.received) >= n, timeout), self.received


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Scripted

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.arrived:
            self.server.received.append(body["sql"])
            self.server.arrived.notify_all()
        scripted = self.server.by_sql.get(body["sql"])
        action, status, answer = scripted or self.server.script.get(timeout=5)
        if action == "drop":  # read the request, then close without answering
            self.close_connection = True
            return
        if action == "hold":
            self.server.release.wait(10)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if action == "close_after":  # no Connection: close header: the client learns it only when reusing
            self.close_connection = True


@pytest.fixture
def server() -> Iterator[Scripted]:
    srv = Scripted()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()


def client_of(server: Scripted, timeout: float = 5.0) -> KalamClient:
    host, port = server.server_address[:2]
    return KalamClient(f"http://{host}:{port}", token="t0k", timeout=timeout, user="u1")


def test_the_request_is_out_before_its_answer_is_read(server):
    """submit() returns with the request at the server; result() then decodes what execute() would."""
    server.script.put(("hold", 200, ROWS))
    client = client_of(server)
    pending = client.submit("SELECT id FROM ns.t")
    server.wait_received(1)  # the server has the request while the caller still holds only a Pending
    assert not pending.settled
    server.release.set()
    assert pending.result().result.rows == [(1,), (2,)]
    assert pending.result().result.rows == [(1,), (2,)]  # read once, kept
    assert server.received == ["SELECT id FROM ns.t"]


def test_an_error_envelope_raises_what_execute_raises(server):
    server.script.put(("answer", 400, ERROR))
    server.script.put(("answer", 400, ERROR))
    client = client_of(server)
    with pytest.raises(SqlError) as ahead:
        client.submit("SELECT * FROM ns.nope").result()
    with pytest.raises(SqlError) as now:
        client.execute("SELECT * FROM ns.nope")
    assert (ahead.value.status, ahead.value.code, ahead.value.message) == (
        now.value.status,
        now.value.code,
        now.value.message,
    )


def test_connections_are_kept_alive_and_reused(server):
    for _ in range(3):
        server.script.put(("answer", 200, ROWS))
    client = client_of(server)
    for _ in range(3):
        client.submit("SELECT 1").result()
    assert client._raw.opened == 1


def test_two_pending_requests_use_two_connections(server):
    server.script.put(("answer", 200, ROWS))
    server.script.put(("answer", 200, count_body(7)))
    client = client_of(server)
    first, second = client.submit("SELECT a"), client.submit("SELECT b")
    assert second.result().result.rows == [(7,)]
    assert first.result().result.rows == [(1,), (2,)]
    assert client._raw.opened == 2


def test_a_connection_the_server_closed_while_idle_is_not_reused(server):
    """The server closes after answering, without saying so: the next request goes out on a new connection."""
    server.script.put(("close_after", 200, ROWS))
    server.script.put(("answer", 200, count_body(1)))
    client = client_of(server)
    client.submit("SELECT 1").result()
    server.wait_received(1)
    conn = client._raw._idle[0][0]
    readable, _, _ = select.select([conn.sock], [], [], 5.0)  # the server's close reaches the client
    assert readable, "the server's close never became visible"
    assert client.submit("SELECT 2", idempotent=False).result().result.rows == [(1,)]
    assert client._raw.opened == 2
    assert server.received == ["SELECT 1", "SELECT 2"]


def test_a_read_lost_with_a_reused_connection_is_asked_again(server):
    server.script.put(("answer", 200, ROWS))
    server.script.put(("drop", 0, None))  # swallowed by the (reused) connection
    server.script.put(("answer", 200, count_body(5)))  # the second try, on the client's ordinary path
    client = client_of(server)
    client.submit("SELECT 1").result()
    assert client.submit("SELECT 2").result().result.rows == [(5,)]
    assert server.received == ["SELECT 1", "SELECT 2", "SELECT 2"]


def test_a_write_lost_with_a_reused_connection_is_never_sent_twice(server):
    server.script.put(("answer", 200, ROWS))
    server.script.put(("drop", 0, None))
    client = client_of(server)
    client.submit("SELECT 1").result()
    with pytest.raises(TransportError, match="connection reset or closed by the server"):
        client.submit("INSERT INTO ns.t (id) VALUES (1)", idempotent=False).result()
    assert server.received == ["SELECT 1", "INSERT INTO ns.t (id) VALUES (1)"]


def test_no_answer_within_the_timeout_is_a_transport_error(server):
    server.script.put(("hold", 200, ROWS))
    client = client_of(server, timeout=0.3)
    pending = client.submit("SELECT slow")
    with pytest.raises(TransportError, match=r"no answer within 0\.3s"):
        pending.result()


def test_a_server_that_is_gone_is_a_transport_error():
    srv = Scripted()
    host, port = srv.server_address[:2]
    srv.server_close()  # nothing listens there any more
    client = KalamClient(f"http://{host}:{port}", token="t", timeout=2.0)
    with pytest.raises(TransportError, match="cannot connect"):
        client.submit("SELECT 1").result()


def test_429_and_401_answers_go_through_executes_retries(server):
    server.script.put(("answer", 429, {"error": "rate_limited", "message": "slow down"}))
    server.script.put(("answer", 200, count_body(3)))
    client = client_of(server)
    assert client.submit("SELECT 1").result().result.rows == [(3,)]
    assert server.received == ["SELECT 1", "SELECT 1"]


def test_a_discarded_answer_closes_its_connection(server):
    server.script.put(("hold", 200, ROWS))
    client = client_of(server)
    pending = client.submit("SELECT 1")
    server.wait_received(1)
    pending.discard()
    with pytest.raises(TransportError, match="discarded"):
        pending.result()
    assert client._raw._idle == []  # not handed back with an unread answer in it


def test_execute_as_renders_the_impersonation(server):
    server.script.put(("answer", 200, ROWS))
    client = client_of(server)
    client.submit("SELECT 1;", as_user="user_a").result()
    assert server.received == ["EXECUTE AS USER 'user_a' (SELECT 1)"]


def test_submit_read_all_sends_the_first_page_and_count_at_once(server):
    server.by_sql["SELECT * FROM ns.t ORDER BY id LIMIT 2 OFFSET 0"] = ("hold", 200, page_body([1, 2]))
    server.by_sql["SELECT COUNT(*) AS n FROM ns.t"] = ("hold", 200, count_body(3))
    server.by_sql["SELECT * FROM ns.t ORDER BY id LIMIT 2 OFFSET 2"] = ("answer", 200, page_body([3]))
    client = client_of(server)
    pending = client.submit_read_all("ns.t", order_by="id", page_size=2)
    server.wait_received(2)  # page 1 and COUNT(*) are both at the server before anything is read
    assert sorted(server.received) == sorted(
        ["SELECT * FROM ns.t ORDER BY id LIMIT 2 OFFSET 0", "SELECT COUNT(*) AS n FROM ns.t"]
    )
    server.release.set()
    assert pending.result().rows == [(1,), (2,), (3,)]
    assert server.received[-1] == "SELECT * FROM ns.t ORDER BY id LIMIT 2 OFFSET 2"


def test_submit_read_all_still_checks_count(server):
    from kalammodel.errors import Divergence

    server.by_sql["SELECT * FROM ns.t ORDER BY id LIMIT 5 OFFSET 0"] = ("answer", 200, page_body([1]))
    server.by_sql["SELECT COUNT(*) AS n FROM ns.t"] = ("answer", 200, count_body(2))
    client = client_of(server)
    with pytest.raises(Divergence, match="COUNT"):
        client.submit_read_all("ns.t", order_by="id", page_size=5).result()


def test_done_pending_reraises_and_keeps_its_value():
    assert Pending.done(lambda: 5).result() == 5
    failing = Pending.done(lambda: 1 / 0)
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            failing.result()
