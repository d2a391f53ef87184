"""WebSocket live queries at ``GET /v1/ws`` (PROTOCOL.md §10), over the engine hooks of docs/ARCHITECTURE.md.

One connection = three tasks: a reader (client frames, handled one at a time, as KalamDB does), a writer
(every server frame goes through one queue, so replies and change events keep their order) and a watchdog
(auth timeout, heartbeat timeout). Subscriptions, their snapshot batches, change payloads and the ``LiveHub``
that routes the engine's changes to them are ``_live.py``; this module owns connections and client messages.

Faults (``_faults.py``) implemented here: ``from_seq_replays`` (the others of the live layer are in ``_live.py``).

Serve it with uvicorn's ``ws=LivenessWebSocketProtocol`` so that ping frames count as liveness; without it the
heartbeat timeout is not enforced (ASGI does not show pings to the application). Limits come from
``app.state.ws_settings`` (a ``WsSettings``) when set.
"""

from __future__ import annotations

import asyncio
import decimal
import gzip
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from starlette.websockets import WebSocket

from ._live import LiveHub, Subscription, hub_for, table_fields
from ._live_filter import FilterError
from ._types import LiveEngine, Principal

try:  # written by the engine's author; every fault is off when it is missing
    from ._faults import active as _fault_active
except ImportError:  # pragma: no cover

    def _fault_active(name: str) -> bool:
        return False


try:  # uvicorn's default WebSocket protocol, subclassed to see ping frames (see LivenessWebSocketProtocol)
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # pragma: no cover
    WebSocketsSansIOProtocol = None  # type: ignore[assignment,misc]

__all__ = [
    "DEFAULT_SETTINGS",
    "LIVENESS_SCOPE_KEY",
    "LivenessWebSocketProtocol",
    "WsSettings",
    "websocket_endpoint",
]

log = logging.getLogger("kalammodel.server.ws")

AUTH_TIMEOUT_MESSAGE = "Authentication timeout - no auth message received within 3 seconds"
MAX_ROWS_PER_BATCH = 1000  # default batch_size (commons:websocket.rs)
LIVENESS_SCOPE_KEY = "kalammodel.ws_liveness"
_CLOSE_REASON_LIMIT = 123  # bytes a WebSocket close reason may hold


@attrs.frozen
class WsSettings:
    """Limits and timeouts of the WebSocket endpoint (defaults = docs/kalamdb-test-server.toml).

    Put one on ``app.state.ws_settings`` to override; it is read when a connection opens.
    """

    auth_timeout: float = 3.0  # websocket.auth_timeout_secs
    client_timeout: float = 30.0  # websocket.client_timeout_secs (KalamDB default 10; raised for testing)
    check_interval: float = 0.5  # how often the watchdog looks (KalamDB: heartbeat_interval_secs = 5)
    max_message_size: int = 1024 * 1024  # security.max_ws_message_size
    max_messages_per_sec: int = 10_000  # rate_limit.max_messages_per_sec (KalamDB default 50)
    max_subscriptions_per_user: int = 100  # rate_limit.max_subscriptions_per_user (KalamDB default 10)
    max_subscriptions_per_connection: int = 100  # MAX_SUBSCRIPTIONS_PER_CONNECTION (fixed in KalamDB)
    compression_threshold: int = 512  # ws/compression.rs COMPRESSION_THRESHOLD


DEFAULT_SETTINGS = WsSettings()


def _settings_for(app: Any) -> WsSettings:
    settings = getattr(app.state, "ws_settings", None)
    return settings if isinstance(settings, WsSettings) else DEFAULT_SETTINGS



# ---------------------------------------------------------------------------------------------------------------
# Connection


class _InvalidMessage(Exception):
    """A text frame that is not a client message; the connection closes with 1011 ``Invalid message: ...``."""


@attrs.frozen
class _Close:
    code: int
    reason: str


class _TokenBucket:
    def __init__(self, per_second: int):
        self.capacity = float(max(per_second, 1))
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.capacity)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class _Liveness:
    """When the transport last received a frame (set by ``LivenessWebSocketProtocol``)."""

    def __init__(self) -> None:
        self.last_frame = time.monotonic()


class _Connection:
    def __init__(self, websocket: WebSocket, settings: WsSettings, hub: LiveHub, compress: bool):
        self.websocket = websocket
        self.settings = settings
        self.hub = hub
        self.compress = compress
        self.out: asyncio.Queue[str | bytes | _Close] = asyncio.Queue()
        self.principal: Principal | None = None
        self.protocol: dict[str, str] = {"serialization": "json", "compression": "gzip"}
        self.auth_started = False
        self.subs: dict[str, Subscription] = {}
        self.connected_at = time.monotonic()
        self.last_activity = self.connected_at
        self.liveness: _Liveness | None = websocket.scope.get(LIVENESS_SCOPE_KEY)
        self.closing = False
        self.closed = asyncio.Event()
        self.rate = _TokenBucket(settings.max_messages_per_sec)

    # -- sending ---------------------------------------------------------------------------------------------

    def send(self, message: Mapping[str, Any], compressible: bool = True) -> None:
        """Queue one server message; JSON >= 512 bytes goes out gzip-compressed in a binary frame when smaller."""
        if self.closing:
            return
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        if compressible and self.compress:
            data = text.encode()
            if len(data) >= self.settings.compression_threshold:
                packed = gzip.compress(data, compresslevel=1)
                if len(packed) < len(data):
                    self.out.put_nowait(packed)
                    return
        self.out.put_nowait(text)

    def error(self, subscription_id: str, code: str, message: str) -> None:
        self.send({"type": "error", "subscription_id": subscription_id, "code": code, "message": message})

    def close(self, code: int, reason: str) -> None:
        if not self.closing:
            self.closing = True
            self.out.put_nowait(_Close(code, reason.encode()[:_CLOSE_REASON_LIMIT].decode(errors="ignore")))

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def last_seen(self) -> float:
        assert self.liveness is not None
        return max(self.last_activity, self.liveness.last_frame)

    # -- tasks -----------------------------------------------------------------------------------------------

    async def writer(self) -> None:
        try:
            while True:
                item = await self.out.get()
                if isinstance(item, _Close):
                    await self.websocket.close(item.code, item.reason)
                    return
                if isinstance(item, bytes):
                    await self.websocket.send_bytes(item)
                else:
                    await self.websocket.send_text(item)
        except Exception as exc:  # noqa: BLE001 - the peer went away; the reader sees the disconnect
            log.debug("websocket writer stopped: %r", exc)
        finally:
            self.closing = True
            self.closed.set()

    async def watchdog(self) -> None:
        interval = max(0.01, self.settings.check_interval)
        while not self.closing:
            await asyncio.sleep(interval)
            now = time.monotonic()
            if (
                self.principal is None
                and not self.auth_started
                and now - self.connected_at > self.settings.auth_timeout
            ):
                self.send({"type": "auth_error", "message": AUTH_TIMEOUT_MESSAGE})
                self.close(1008, "Authentication timeout")
                return
            if self.liveness is None:
                # served without LivenessWebSocketProtocol: ping frames are invisible, and closing a client
                # that only pings would be a false alarm, so the heartbeat timeout is not enforced
                continue
            if now - self.last_seen() > self.settings.client_timeout:
                self.close(1000, "Heartbeat timeout")
                return

    def forget(self, sub: Subscription) -> None:
        """The server ended ``sub`` (its error is sent): unregister it and free its id."""
        if self.subs.get(sub.id) is sub:
            del self.subs[sub.id]
        self.hub.unregister(sub)

    def drop_all(self) -> None:
        for sub in self.subs.values():
            self.hub.unregister(sub)
        self.subs.clear()


# ---------------------------------------------------------------------------------------------------------------
# Client messages


def _field(obj: Mapping[str, Any], name: str, kind: type, what: str, optional: bool = False) -> Any:
    """``obj[name]`` checked against ``kind`` (a JSON bool is never an int); missing -> error unless optional."""
    value = obj.get(name)
    if value is None:
        if optional:
            return None
        if name not in obj:
            raise _InvalidMessage(f"missing field `{name}`")
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _InvalidMessage(f"invalid type: {_json_kind(value)}, expected {what}")
    return value


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, (int, float)):
        return f"number `{value}`"
    if isinstance(value, list):
        return "sequence"
    return "map"


def _nonneg_int(obj: Mapping[str, Any], name: str, optional: bool = True) -> int | None:
    value = _field(obj, name, int, "an unsigned integer", optional=optional)
    if value is not None and value < 0:
        raise _InvalidMessage(f"invalid value: integer `{value}`, expected an unsigned integer")
    return value


_VARIANTS = ("authenticate", "subscribe", "next_batch", "unsubscribe", "ping")


def _parse(text: str) -> dict[str, Any]:
    """Validate one text frame as a ``ClientMessage`` (serde's rules: unknown keys ignored, types checked)."""
    try:
        msg = json.loads(text)
    except ValueError as exc:
        raise _InvalidMessage(str(exc)) from None
    if not isinstance(msg, dict):
        raise _InvalidMessage(
            f"invalid type: {_json_kind(msg)}, expected internally tagged enum ClientMessage"
        )
    kind = _field(msg, "type", str, "a string")
    if kind not in _VARIANTS:
        expected = ", ".join(f"`{v}`" for v in _VARIANTS)
        raise _InvalidMessage(f"unknown variant `{kind}`, expected one of {expected}")
    if kind == "authenticate":
        method = _field(msg, "method", str, "a string")
        if method != "jwt":
            raise _InvalidMessage(f"unknown variant `{method}`, expected `jwt`")
        _field(msg, "token", str, "a string")
        protocol = _field(msg, "protocol", dict, "struct ProtocolOptions")
        serialization = _field(protocol, "serialization", str, "a string")
        compression = _field(protocol, "compression", str, "a string")
        if serialization not in ("json", "msgpack"):
            raise _InvalidMessage(f"unknown variant `{serialization}`, expected `json` or `msgpack`")
        if compression not in ("none", "gzip"):
            raise _InvalidMessage(f"unknown variant `{compression}`, expected `none` or `gzip`")
    elif kind == "subscribe":
        sub = _field(msg, "subscription", dict, "struct SubscriptionRequest")
        _field(sub, "id", str, "a string")
        _field(sub, "sql", str, "a string")
        options = _field(sub, "options", dict, "struct SubscriptionOptions", optional=True)
        if options is not None:
            _nonneg_int(options, "batch_size")
            _nonneg_int(options, "last_rows")
            if "from" in options and "from_seq_id" in options:
                raise _InvalidMessage("duplicate field `from`")
            key = "from" if "from" in options else "from_seq_id"
            _field(options, key, int, "i64", optional=True)
    elif kind == "next_batch":
        _field(msg, "subscription_id", str, "a string")
        _field(msg, "last_seq_id", int, "i64", optional=True)
    elif kind == "unsubscribe":
        _field(msg, "subscription_id", str, "a string")
    return msg


def _batch_control(batch_num: int, has_more: bool, last_seq: int | None) -> dict[str, Any]:
    if has_more:
        status = "loading" if batch_num == 0 else "loading_batch"
    else:
        status = "ready"
    return {"batch_num": batch_num, "has_more": has_more, "status": status, "last_seq_id": last_seq}


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Run an engine hook off the event loop (the engine may block on its own locks or on disk)."""
    return await asyncio.to_thread(fn, *args)


async def _authenticate(conn: _Connection, engine: LiveEngine, token: str, protocol: dict[str, str]) -> None:
    try:
        principal = await _call(engine.verify_token, token)
    except Exception as exc:  # noqa: BLE001 - any refusal is "Invalid credentials", as in KalamDB
        log.debug("websocket authentication refused: %r", exc)
        conn.send({"type": "auth_error", "message": "Invalid credentials"}, compressible=False)
        conn.close(1008, "Authentication failed")
        return
    conn.principal = principal
    conn.protocol = protocol
    _send_auth_success(conn)


def _send_auth_success(conn: _Connection) -> None:
    principal = conn.principal
    assert principal is not None  # sent only once authenticated
    conn.send(
        {
            "type": "auth_success",
            "user": principal.user_id,
            "role": str(principal.role).lower(),
            "protocol": conn.protocol,
        }
    )


async def _subscribe(conn: _Connection, engine: LiveEngine, request: dict[str, Any]) -> None:
    settings = conn.settings
    sub_id: str = request["id"]
    options: dict[str, Any] | None = request.get("options")
    if not sub_id.strip():
        conn.error("invalid_subscription", "INVALID_SUBSCRIPTION_ID", "Subscription ID cannot be empty")
        return
    principal = conn.principal
    assert principal is not None  # _handle_text subscribes only once authenticated
    user_id = principal.user_id
    if conn.hub.user_subscriptions(user_id) >= settings.max_subscriptions_per_user:
        conn.error(sub_id, "SUBSCRIPTION_LIMIT_EXCEEDED", "Maximum subscriptions reached")
        return
    batch_size = MAX_ROWS_PER_BATCH
    if options is not None and options.get("batch_size") is not None:
        batch_size = int(options["batch_size"])
    last_rows = options.get("last_rows") if options is not None else None
    if last_rows is not None and last_rows > batch_size:
        conn.error(
            sub_id,
            "UNSUPPORTED",
            f"last_rows ({last_rows}) cannot exceed batch_size ({batch_size}); "
            "paginated last_rows replay is not supported",
        )
        return
    try:
        plan = await _call(engine.plan_subscription, principal, request["sql"])
    except Exception as exc:  # noqa: BLE001 - LiveError carries its §10.4 code; anything else failed
        code = getattr(exc, "code", None) or "SUBSCRIPTION_FAILED"
        conn.error(sub_id, str(code), str(getattr(exc, "message", exc)))
        return
    if conn.closing:
        return
    if len(conn.subs) >= settings.max_subscriptions_per_connection:
        limit = settings.max_subscriptions_per_connection
        conn.error(sub_id, "UNSUPPORTED", f"Maximum subscriptions ({limit}) per connection exceeded")
        return
    previous = conn.subs.pop(sub_id, None)
    if previous is not None:  # KalamDB replaces a subscription registered again under the same id
        conn.hub.unregister(previous)
    fields = table_fields(engine, plan)
    try:
        sub = Subscription(
            sub_id, conn, plan, user_id, options, batch_size, fields, loading=options is not None
        )
    except FilterError as exc:  # a WHERE the live filter cannot evaluate is refused, never half-served
        conn.error(sub_id, exc.code, str(exc))
        return
    sub.on_stop = conn.forget
    conn.hub.register(sub)
    conn.subs[sub_id] = sub
    if options is None:
        conn.send(_ack(sub, _batch_control(0, False, None)))
        return

    from_seq = options.get("from", options.get("from_seq_id"))
    resume = from_seq is not None  # precedence: from, then last_rows, then plain batches
    if resume and _fault_active("from_seq_replays"):
        from_seq = None  # planted: the resume point is ignored, the rows up to it are sent again
    try:
        rows = await _call(engine.live_rows, plan)
        visible = sub.visible(rows, from_seq, None)
        sub.set_boundary(int(visible[-1]["_seq"]) if visible else 0)
        if not resume and last_rows is not None:
            page = sub.page(rows, None, int(last_rows), fetch_last=True)
        else:
            page = sub.page(rows, from_seq, batch_size)
    except Exception as exc:  # noqa: BLE001 - the engine or a cell failed; the subscription is dropped
        log.warning("initial data of subscription %s failed: %r", sub_id, exc)
        conn.subs.pop(sub_id, None)
        conn.hub.unregister(sub)
        code = (
            "CONVERSION_ERROR" if isinstance(exc, (TypeError, ValueError, decimal.InvalidOperation)) else None
        )
        conn.error(sub_id, code or str(getattr(exc, "code", "SUBSCRIPTION_FAILED")), str(exc))
        return
    if sub.closed:
        return
    control = _batch_control(0, page.has_more, page.last_seq)
    conn.send(_ack(sub, control))
    conn.send(
        {"type": "initial_data_batch", "subscription_id": sub_id, "rows": page.rows, "batch_control": control}
    )
    if not page.has_more:
        sub.complete_initial_load()


def _ack(sub: Subscription, control: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "subscription_ack",
        "subscription_id": sub.id,
        "total_rows": 0,
        "batch_control": control,
        "schema": list(sub.plan.schema or []),
    }


async def _next_batch(conn: _Connection, engine: LiveEngine, sub_id: str, last_seq_id: int | None) -> None:
    sub = conn.subs.get(sub_id)
    if sub is None:
        conn.error(sub_id, "BATCH_FETCH_FAILED", f"Subscription not found: {sub_id}")
        return
    if sub.options is None:
        conn.error(
            sub_id, "BATCH_FETCH_FAILED", f"Subscription {sub_id} was created without initial data loading"
        )
        return
    sub.batch_num += 1
    batch_num = sub.batch_num
    try:
        rows = await _call(engine.live_rows, sub.plan)
        page = sub.page(rows, last_seq_id, sub.batch_size)
    except Exception as exc:  # noqa: BLE001 - reported to the client like KalamDB does
        conn.error(sub_id, "BATCH_FETCH_FAILED", str(exc))
        return
    if sub.closed:
        return
    control = _batch_control(batch_num, page.has_more, page.last_seq)
    conn.send(
        {"type": "initial_data_batch", "subscription_id": sub_id, "rows": page.rows, "batch_control": control}
    )
    if not page.has_more:
        sub.complete_initial_load()


async def _handle_text(conn: _Connection, engine: LiveEngine, text: str) -> None:
    settings = conn.settings
    if len(text) > settings.max_message_size // 4 and len(text.encode()) > settings.max_message_size:
        conn.error(
            "protocol",
            "MESSAGE_TOO_LARGE",
            f"Message exceeds maximum size of {settings.max_message_size} bytes",
        )
        return
    if not conn.rate.take():
        conn.error("rate_limit", "RATE_LIMIT_EXCEEDED", "Too many messages")
        return
    try:
        msg = _parse(text)
    except _InvalidMessage as exc:
        conn.close(1011, f"Invalid message: {exc}")
        return
    kind = msg["type"]
    if kind == "authenticate":
        if conn.principal is not None:
            _send_auth_success(conn)
            return
        conn.auth_started = True
        protocol = msg["protocol"]
        await _authenticate(
            conn,
            engine,
            msg["token"],
            {"serialization": protocol["serialization"], "compression": protocol["compression"]},
        )
    elif kind == "subscribe":
        if conn.principal is None:
            conn.error("subscribe", "AUTH_REQUIRED", "Authentication required before subscribing")
            return
        await _subscribe(conn, engine, msg["subscription"])
    elif conn.principal is None:
        return  # next_batch / unsubscribe / ping before auth are ignored
    elif kind == "next_batch":
        await _next_batch(conn, engine, msg["subscription_id"], msg.get("last_seq_id"))
    elif kind == "unsubscribe":
        sub = conn.subs.pop(msg["subscription_id"], None)
        if sub is not None:
            conn.hub.unregister(sub)


async def _read(conn: _Connection, engine: LiveEngine) -> None:
    websocket = conn.websocket
    while not conn.closing:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        conn.touch()
        if conn.closing:
            return
        text = message.get("text")
        if text is not None:
            await _handle_text(conn, engine, text)
        elif message.get("bytes") is not None:
            conn.error("protocol", "UNSUPPORTED_DATA", "Binary not supported")


def _query_flags(websocket: WebSocket) -> tuple[bool, dict[str, str]]:
    """``compress=false`` turns gzip frames off; ``serialization`` / ``compression`` set the header-auth protocol."""
    raw = websocket.scope.get("query_string", b"").decode("latin-1")
    compress = True
    protocol = {"serialization": "json", "compression": "gzip"}
    for pair in raw.split("&"):
        if pair.lower() == "compress=false":
            compress = False
        key, _, value = pair.partition("=")
        if key == "serialization" and value.lower() == "msgpack":
            protocol["serialization"] = "msgpack"
        elif key == "compression" and value.lower() == "none":
            protocol["compression"] = "none"
    return compress, protocol


async def websocket_endpoint(websocket: WebSocket) -> None:
    """``GET /v1/ws``: authenticate, then serve subscribe / next_batch / unsubscribe / ping (§10)."""
    app = websocket.app
    engine = app.state.engine
    settings = _settings_for(app)
    hub = hub_for(app)
    compress, header_protocol = _query_flags(websocket)
    await websocket.accept()
    conn = _Connection(websocket, settings, hub, compress)
    writer = asyncio.create_task(conn.writer())
    watchdog = asyncio.create_task(conn.watchdog())
    reader: asyncio.Task[None] | None = None
    try:
        authorization = websocket.headers.get("authorization", "")
        if authorization.startswith("Bearer "):
            conn.auth_started = True
            await _authenticate(conn, engine, authorization[len("Bearer ") :], header_protocol)
        if not conn.closing:
            reader = asyncio.create_task(_read(conn, engine))
            closed = asyncio.create_task(conn.closed.wait())
            await asyncio.wait({reader, closed}, return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
        if conn.closing and not conn.closed.is_set():
            # a close was queued (by the reader or the watchdog): let the writer send what precedes it
            await asyncio.wait_for(conn.closed.wait(), timeout=5.0)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        pass
    finally:
        conn.closing = True
        conn.drop_all()
        for task in (reader, watchdog, writer):
            if task is not None and not task.done():
                task.cancel()
        await asyncio.gather(
            *(t for t in (reader, watchdog, writer) if t is not None), return_exceptions=True
        )


# ---------------------------------------------------------------------------------------------------------------
# uvicorn protocol that lets the endpoint see ping frames


if WebSocketsSansIOProtocol is not None:

    class LivenessWebSocketProtocol(WebSocketsSansIOProtocol):
        """uvicorn's WebSocket protocol, noting when any frame (ping included) arrives.

        ASGI hides ping frames from the application, yet KalamDB counts them as liveness (§10.7). Run uvicorn
        with ``ws=LivenessWebSocketProtocol``: only then does the endpoint enforce the heartbeat timeout.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._kalammodel_liveness = _Liveness()

        def data_received(self, data: bytes) -> None:
            self._kalammodel_liveness.last_frame = time.monotonic()
            super().data_received(data)

        def handle_connect(self, event: Any) -> None:
            super().handle_connect(event)
            scope = getattr(self, "scope", None)
            if isinstance(scope, dict):
                scope[LIVENESS_SCOPE_KEY] = self._kalammodel_liveness

else:  # pragma: no cover
    LivenessWebSocketProtocol = None  # type: ignore[assignment,misc]
