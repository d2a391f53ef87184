"""Live queries over the WebSocket ``GET /v1/ws`` (PROTOCOL.md §10).

A background reader thread owns the receiving side of the socket: it decodes text frames and gzip binary
frames, and puts each message on the queue of the subscription it names (``subscription_id``); messages
for ids nobody subscribed go to :attr:`LiveConnection.unrouted`. When the socket closes, for any reason, the
thread puts a sentinel on every queue, so each waiter raises :class:`ConnectionClosed` at once. Every wait
takes a deadline and raises :class:`DeadlineExceeded` when it passes.

The server never pings and closes connections silent for ``client_timeout_secs`` (10 s by default), so the
connection sends WebSocket pings every ``ping_interval`` seconds (3 s by default). Their payloads come from
``os.urandom``, not from the ``random`` module as websockets' own do: the keepalive thread must not change the
global random state, which Hypothesis checks around every draw of the main thread.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import queue
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from kalammodel.errors import (
    AuthError,
    ConnectionClosed,
    DeadlineExceeded,
    SqlError,
    TransportError,
    UsageError,
)

from ._results import Column, decode_live_row, parse_columns

__all__ = ["LiveConnection", "LiveMessage", "Subscription", "ws_url"]


class _Connection(ClientConnection):
    """websockets' client connection whose pings carry ``os.urandom`` payloads.

    websockets draws a ping's payload with ``random.getrandbits``; its keepalive thread pinging while the main
    thread draws a Hypothesis example changes the global random state mid-draw, which Hypothesis reports as a
    strategy using ``random`` (a HypothesisDeprecationWarning today, an error later).
    """

    def ping(self, data: Any = None, **kwargs: Any) -> threading.Event:
        while data is None or data in self.pending_pings:
            data = os.urandom(4)
        return super().ping(data, **kwargs)


WS_PATH = "/v1/ws"
GZIP_MAGIC = b"\x1f\x8b"
#: Subscription option keys the server knows (§10.3); ``from`` is an alias of ``from_seq_id``.
OPTION_KEYS = frozenset({"batch_size", "last_rows", "from_seq_id", "from"})

_CLOSED = object()  # sentinel put on every queue when the connection ends


def ws_url(base_url: str, compress: bool = True) -> str:
    """The live-query URL for a server's HTTP base URL: ``http://h:p`` → ``ws://h:p/v1/ws``."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise UsageError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
    path = parts.path.rstrip("/") + WS_PATH
    return urlunsplit((scheme, parts.netloc, path, "" if compress else "compress=false", ""))


def _decode_frame(frame: str | bytes) -> Any:
    """JSON of one frame: text, or binary (gzip-compressed when it starts with the gzip magic)."""
    if isinstance(frame, bytes):
        data = gzip.decompress(frame) if frame[:2] == GZIP_MAGIC else frame
        frame = data.decode("utf-8")
    return json.loads(frame)


@attrs.frozen
class LiveMessage:
    """One server message of a live connection (§10.4), with rows decoded per §2.4."""

    type: str
    subscription_id: str | None
    #: The JSON object as received.
    raw: dict[str, Any] = attrs.field(repr=False)
    #: ``rows`` of an initial_data_batch or change, decoded with the subscription's ack schema.
    rows: list[dict[str, Any]] | None = None
    old_values: list[dict[str, Any]] | None = None
    change_type: str | None = None
    batch_control: dict[str, Any] | None = None
    #: Columns of a subscription_ack.
    schema: list[Column] | None = None
    code: str | None = None
    message: str | None = None
    #: why ``rows``/``old_values`` could not be decoded with the subscription's schema (they are then None);
    #: e.g. a cell of a column whose type an ALTER TABLE changed after the subscription's ack
    decode_error: str | None = None

    @property
    def has_more(self) -> bool:
        return bool(self.batch_control and self.batch_control.get("has_more"))

    @property
    def last_seq_id(self) -> int | None:
        value = (self.batch_control or {}).get("last_seq_id")
        return int(value) if value is not None else None

    @classmethod
    def from_raw(cls, raw: dict[str, Any], columns: list[Column] | None = None) -> LiveMessage:
        """Build a message from its JSON; ``columns`` (the ack schema) decode the rows."""
        mtype = raw.get("type")
        schema = parse_columns(raw["schema"]) if mtype == "subscription_ack" and "schema" in raw else None

        def rows_of(key: str) -> list[dict[str, Any]] | None:
            value = raw.get(key)
            if value is None:
                return None
            if not isinstance(value, list):
                raise TransportError(f"{mtype} message has a {key!r} that is not an array: {value!r}")
            return [decode_live_row(r, columns) for r in value]

        return cls(
            type=str(mtype),
            subscription_id=raw.get("subscription_id"),
            raw=raw,
            rows=rows_of("rows"),
            old_values=rows_of("old_values"),
            change_type=raw.get("change_type"),
            batch_control=raw.get("batch_control"),
            schema=schema,
            code=raw.get("code"),
            message=raw.get("message"),
        )


class Subscription:
    """The receiving end of one subscription: a FIFO of its messages, filled by the reader thread."""

    def __init__(
        self,
        conn: LiveConnection,
        sub_id: str | None,
        sql: str | None = None,
        options: Mapping[str, Any] | None = None,
    ):
        self.conn = conn
        self.id = sub_id
        self.sql = sql
        self.options = dict(options) if options is not None else None
        #: Columns of the ack, once the ack has been taken from the queue.
        self.schema: list[Column] | None = None
        self.ack: LiveMessage | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._backlog: deque[dict[str, Any]] = deque()  # raw messages put back by collect_snapshot

    def __repr__(self) -> str:
        return f"<Subscription {self.id!r} sql={self.sql!r} queued={self._queue.qsize()}>"

    def _put(self, item: Any) -> None:
        self._queue.put(item)

    def _closed_error(self) -> ConnectionClosed:
        return ConnectionClosed(self.conn.close_code, self.conn.close_reason)

    def _take(self, timeout: float | None) -> LiveMessage:
        """Next message; ``timeout`` None means do not wait. Raises queue.Empty or ConnectionClosed."""
        if self._backlog:
            item = self._backlog.popleft()
        else:
            item = self._queue.get(block=timeout is not None, timeout=timeout)
            if item is _CLOSED:
                self._queue.put(_CLOSED)  # keep the connection's end visible to every later wait
                raise self._closed_error()
        try:
            msg = LiveMessage.from_raw(item, self.schema)
        except TransportError as exc:
            if not isinstance(item, dict) or item.get("type") == "subscription_ack":
                raise
            # The message itself arrived; only its cells disagree with the ack schema. The caller decides
            # whether that matters (it does not for a subscription whose table was altered since).
            msg = LiveMessage(
                type=str(item.get("type")),
                subscription_id=item.get("subscription_id"),
                raw=item,
                change_type=item.get("change_type"),
                batch_control=item.get("batch_control"),
                decode_error=str(exc),
            )
        if msg.type == "subscription_ack" and msg.schema is not None:
            self.schema = msg.schema
            self.ack = msg
        return msg

    def get(self, timeout: float = 5.0) -> LiveMessage:
        """The next message of this subscription; :class:`DeadlineExceeded` after ``timeout`` seconds."""
        try:
            return self._take(max(0.0, timeout))
        except queue.Empty:
            raise DeadlineExceeded(
                f"no message for subscription {self.id!r} within {timeout:g}s ({self.sql!r})"
            ) from None

    def wait_for(self, predicate: Callable[[LiveMessage], bool], timeout: float = 5.0) -> list[LiveMessage]:
        """Messages up to and including the first one matching ``predicate``.

        On timeout raises :class:`DeadlineExceeded` whose ``.messages`` holds what arrived meanwhile.
        """
        deadline = time.monotonic() + timeout
        seen: list[LiveMessage] = []
        while True:
            remaining = deadline - time.monotonic()
            try:
                msg = self._take(max(0.0, remaining))
            except queue.Empty:
                exc = DeadlineExceeded(
                    f"no matching message for subscription {self.id!r} within {timeout:g}s; got "
                    f"{len(seen)} other(s): {[m.type for m in seen][:20]}"
                )
                exc.messages = seen  # type: ignore[attr-defined]
                raise exc from None
            except ConnectionClosed as exc:
                exc.messages = seen  # type: ignore[attr-defined]
                raise
            seen.append(msg)
            if predicate(msg):
                return seen

    def drain(self, quiet: float = 0.2, timeout: float = 5.0) -> list[LiveMessage]:
        """Messages until none arrives for ``quiet`` seconds.

        If messages keep arriving past ``timeout`` raises :class:`DeadlineExceeded` (with ``.messages``).
        """
        deadline = time.monotonic() + timeout
        seen: list[LiveMessage] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                exc = DeadlineExceeded(
                    f"subscription {self.id!r} never went quiet for {quiet:g}s within {timeout:g}s "
                    f"({len(seen)} messages)"
                )
                exc.messages = seen  # type: ignore[attr-defined]
                raise exc
            try:
                msg = self._take(min(quiet, remaining))
            except queue.Empty:
                if min(quiet, remaining) >= quiet:
                    return seen
                continue
            except ConnectionClosed as exc:
                exc.messages = seen  # type: ignore[attr-defined]
                raise
            seen.append(msg)

    def pending(self) -> list[LiveMessage]:
        """The messages already received, without waiting (a closed connection ends the list quietly)."""
        out: list[LiveMessage] = []
        while True:
            try:
                out.append(self._take(None))
            except (queue.Empty, ConnectionClosed):
                return out

    def collect_snapshot(self, timeout: float = 10.0) -> tuple[LiveMessage, list[LiveMessage]]:
        """Receive the ack and pull every initial_data_batch (§10.3); returns ``(ack, batches)``.

        While a batch says ``has_more``, sends ``next_batch`` with that batch's ``last_seq_id``. Without
        options the server sends no snapshot, so ``batches`` is empty. Other messages met on the way (there
        should be none: the server holds changes until the snapshot ends) stay queued for :meth:`get`.
        An ``error`` message raises :class:`SqlError` with status 0 and the server's code.
        """
        deadline = time.monotonic() + timeout
        held: list[dict[str, Any]] = []  # raw: decoded again on get(), once the ack schema is known

        def next_of(kind: str) -> LiveMessage:
            while True:
                remaining = deadline - time.monotonic()
                try:
                    msg = self._take(max(0.0, remaining))
                except queue.Empty:
                    self._backlog.extendleft(reversed(held))
                    raise DeadlineExceeded(
                        f"subscription {self.id!r}: no {kind} within {timeout:g}s "
                        f"(ack={'yes' if self.ack else 'no'}, batches so far={len(batches)})"
                    ) from None
                if msg.type == "error":
                    self._backlog.extendleft(reversed(held))
                    raise SqlError(None, msg.code or "UNKNOWN", msg.message or "", self.sql, msg.raw)
                if msg.type == kind:
                    return msg
                held.append(msg.raw)

        batches: list[LiveMessage] = []
        ack = next_of("subscription_ack")
        if self.options is not None:
            while True:
                batch = next_of("initial_data_batch")
                batches.append(batch)
                if not batch.has_more:
                    break
                if batch.last_seq_id is None:
                    raise TransportError(
                        f"subscription {self.id!r}: batch {batch.batch_control} has_more without last_seq_id"
                    )
                self.conn.next_batch(self.id, batch.last_seq_id)  # type: ignore[arg-type]
        self._backlog.extendleft(reversed(held))
        return ack, batches


class LiveConnection:
    """One authenticated WebSocket connection carrying any number of subscriptions."""

    def __init__(
        self, ws: ClientConnection, url: str, auth: dict[str, Any], stack: contextlib.ExitStack | None = None
    ):
        self.url = url
        self._stack = stack or contextlib.ExitStack()
        #: The ``auth_success`` message.
        self.auth = auth
        self.close_code: int | None = None
        self.close_reason: str = ""
        self._ws = ws
        self._subs: dict[str, Subscription] = {}
        self._retired: list[Subscription] = []  # unsubscribed: still told when the connection ends
        self._lock = threading.Lock()
        self._closed = threading.Event()
        #: Messages naming no known subscription (synthetic error ids, repeated auth replies, late events).
        self.unrouted = Subscription(self, None)
        self._reader = threading.Thread(target=self._read_loop, name=f"kalam-ws-reader {url}", daemon=True)
        self._reader.start()

    @classmethod
    def connect(
        cls,
        base_url: str,
        token: str,
        compress: bool = True,
        timeout: float = 5.0,
        *,
        ping_interval: float | None = 3.0,
        ping_timeout: float | None = 10.0,
    ) -> LiveConnection:
        """Open ``/v1/ws``, authenticate with ``token`` by message (§10.1) and start the reader.

        Raises :class:`AuthError` on ``auth_error``, :class:`DeadlineExceeded` when no reply comes within
        ``timeout``, :class:`TransportError` when the socket cannot be opened.
        """
        url = ws_url(base_url, compress)
        stack = contextlib.ExitStack()
        try:
            # Entered as a context manager (websockets >= 17.1 deprecates bare connect()); the stack owns it.
            ws = stack.enter_context(
                ws_connect(
                    url,
                    open_timeout=timeout,
                    ping_interval=ping_interval,
                    ping_timeout=ping_timeout,
                    close_timeout=min(timeout, 2.0),
                    max_size=None,
                    compression=None,
                    proxy=None,
                    create_connection=_Connection,
                )
            )
        except InvalidStatus as exc:
            raise TransportError(
                f"WebSocket upgrade to {url} refused with HTTP {exc.response.status_code} (an Origin not in "
                "security.cors.allowed_origins gives 403; a wrong base URL gives 404)"
            ) from exc
        except (InvalidURI, InvalidHandshake) as exc:
            raise TransportError(f"WebSocket handshake with {url} failed: {exc}") from exc
        except TimeoutError as exc:
            raise TransportError(f"WebSocket connection to {url} not open within {timeout:g}s") from exc
        except OSError as exc:
            raise TransportError(
                f"cannot connect to {url} ({exc}); is the server running and listening there?"
            ) from exc
        with stack:
            auth = cls._authenticate(ws, url, token, timeout)
            return cls(ws, url, auth, stack.pop_all())

    @staticmethod
    def _authenticate(ws: ClientConnection, url: str, token: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        hello = {
            "type": "authenticate",
            "method": "jwt",
            "token": token,
            "protocol": {"serialization": "json", "compression": "gzip"},
        }
        try:
            ws.send(json.dumps(hello))
            while True:
                frame = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
                msg = _decode_frame(frame)
                kind = msg.get("type") if isinstance(msg, dict) else None
                if kind == "auth_success":
                    return msg
                if kind == "auth_error":
                    raise AuthError(f"WebSocket authentication at {url} refused: {msg.get('message')!r}")
                # anything else before the auth reply is not the protocol; keep waiting for the reply
        except TimeoutError:
            raise DeadlineExceeded(f"no auth_success/auth_error from {url} within {timeout:g}s") from None
        except WsConnectionClosed as exc:
            code, reason = _close_info(exc)
            raise AuthError(
                f"WebSocket {url} closed during authentication (code={code}, reason={reason!r})",
                code=str(code),
            ) from None
        except (ValueError, UnicodeDecodeError, OSError, zlib.error) as exc:
            raise TransportError(f"unreadable reply to authentication from {url}: {exc}") from exc

    # ------------------------------------------------------------------ reader

    def _read_loop(self) -> None:
        code: int | None = None
        reason = ""
        try:
            while True:
                frame = self._ws.recv()
                try:
                    msg = _decode_frame(frame)
                except (ValueError, UnicodeDecodeError, OSError, EOFError, zlib.error) as exc:
                    head = frame[:200]
                    msg = {
                        "type": "invalid_frame",
                        "message": f"{type(exc).__name__}: {exc}",
                        "frame": repr(head),
                    }
                self._route(msg)
        except WsConnectionClosed as exc:
            code, reason = _close_info(exc)
        except BaseException as exc:  # noqa: BLE001 - the reader must always deliver the end
            code, reason = None, f"reader failed: {type(exc).__name__}: {exc}"
        finally:
            self._finish(code, reason)

    def _route(self, msg: Any) -> None:
        if not isinstance(msg, dict):
            msg = {
                "type": "invalid_frame",
                "message": "frame is JSON but not an object",
                "frame": repr(msg)[:200],
            }
        sub_id = msg.get("subscription_id")
        with self._lock:
            sub = self._subs.get(sub_id) if isinstance(sub_id, str) else None
        (sub or self.unrouted)._put(msg)

    def _finish(self, code: int | None, reason: str) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self.close_code = code
            self.close_reason = reason
            self._closed.set()
            subs = [*self._subs.values(), *self._retired]
        for sub in [*subs, self.unrouted]:
            sub._put(_CLOSED)

    # ------------------------------------------------------------------ API

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __repr__(self) -> str:
        state = f"closed code={self.close_code}" if self.closed else "open"
        return f"<LiveConnection {self.url} user={self.auth.get('user')!r} {state} subs={sorted(self._subs)}>"

    def _send(self, payload: dict[str, Any]) -> None:
        if self.closed:
            raise ConnectionClosed(self.close_code, self.close_reason)
        try:
            self._ws.send(json.dumps(payload))
        except WsConnectionClosed as exc:
            code, reason = _close_info(exc)
            raise ConnectionClosed(code, reason) from None

    def subscribe(self, sub_id: str, sql: str, options: Mapping[str, Any] | None = None) -> Subscription:
        """Send ``subscribe``; ``options=None`` omits the key (no snapshot), ``{}`` asks for a snapshot."""
        if not isinstance(sub_id, str) or not sub_id:
            raise UsageError(f"subscription id must be a non-empty str, got {sub_id!r}")
        if options is not None:
            unknown = set(options) - OPTION_KEYS
            if unknown:
                raise UsageError(
                    f"unknown subscription option(s) {sorted(unknown)}; the server knows {sorted(OPTION_KEYS)}"
                )
        sub = Subscription(self, sub_id, sql, options)
        with self._lock:
            if sub_id in self._subs:
                raise UsageError(f"subscription id {sub_id!r} is already in use on this connection")
            self._subs[sub_id] = sub
            if self._closed.is_set():
                sub._put(_CLOSED)
        request: dict[str, Any] = {"id": sub_id, "sql": sql}
        if options is not None:
            request["options"] = dict(options)
        try:
            self._send({"type": "subscribe", "subscription": request})
        except ConnectionClosed:
            with self._lock:
                self._subs.pop(sub_id, None)
            raise
        return sub

    def subscription(self, sub_id: str) -> Subscription:
        """The subscription registered under ``sub_id``."""
        with self._lock:
            try:
                return self._subs[sub_id]
            except KeyError:
                raise UsageError(f"no subscription {sub_id!r} on this connection") from None

    def next_batch(self, sub_id: str, last_seq_id: int | str | None) -> None:
        """Ask for the next snapshot batch after ``last_seq_id`` (sent as a JSON number)."""
        seq = int(last_seq_id) if last_seq_id is not None else None
        self._send({"type": "next_batch", "subscription_id": sub_id, "last_seq_id": seq})

    def unsubscribe(self, sub_id: str) -> None:
        """Send ``unsubscribe`` (the server does not reply); later messages for it go to :attr:`unrouted`."""
        self._send({"type": "unsubscribe", "subscription_id": sub_id})
        with self._lock:
            sub = self._subs.pop(sub_id, None)
            if sub is not None:
                self._retired.append(sub)

    def ping(self) -> None:
        """Send the application-level ``{"type":"ping"}`` (no reply; it only refreshes liveness)."""
        self._send({"type": "ping"})

    def close(self, timeout: float = 2.0) -> None:
        """Close the socket and wait (at most ``timeout``) for the reader to deliver the end."""
        try:
            self._ws.close()
            self._stack.close()
        except Exception:  # noqa: BLE001 - closing a broken socket must not raise
            pass
        self._reader.join(timeout)
        if not self.closed:
            self._finish(1000, "closed by client")

    def __enter__(self) -> LiveConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_info(exc: WsConnectionClosed) -> tuple[int | None, str]:
    """(code, reason) of a websockets ConnectionClosed: the peer's close frame, else ours, else 1006."""
    frame = exc.rcvd or exc.sent
    if frame is None:
        return 1006, "connection lost without a close frame"
    return frame.code, frame.reason
