"""Live subscriptions (PROTOCOL.md §10): cell encoding, snapshot pages, change payloads, buffering, and the
``LiveHub`` that fans the engine's committed changes out to every subscription.

    engine thread ──ChangeEvent──▶ LiveHub._on_change ──call_soon_threadsafe──▶ LiveHub._dispatch (event loop)
         (numbered under a lock: FIFO)                           │ scope, filter (_live_filter), payload
                                                                 ▼
                                  Subscription.deliver ──▶ buffer (snapshot loading) or connection queue

Snapshot rules (``live:manager/queries_manager.rs``, ``live:helpers/initial_data.rs``): the boundary is the
largest ``_seq`` of the rows the subscription sees when it starts (0 when none); batches are pulled with
``next_batch`` and always read rows with ``since < _seq <= boundary``; while loading, changes at or below the
boundary are dropped and later ones buffered, then sent sorted by ``_seq`` after the last batch.

Change payloads follow ``live:notification.rs``: insert ``rows=[row]``, update ``rows=[delta]`` +
``old_values=[changed old values]``, soft delete ``old_values=[tombstone]``, STREAM hard delete
``old_values=[{"row_id": "<owner>:<seq>"}]`` (``{}`` under a column projection, as in KalamDB).

Never a silent loss: a change that cannot be built for a subscription (its filter no longer fits the row, a
cell cannot be encoded) or a buffer that reaches its bound while a snapshot loads ends that subscription with an
``error`` message (code ``SUBSCRIPTION_FAILED``) instead of dropping the change. Memory stays bounded: at most
``MAX_BUFFERED_PER_SUBSCRIPTION`` changes per subscription, and a connection holds at most
``max_subscriptions_per_connection`` subscriptions.

Faults (``_faults.py``) implemented here: ``live_cross_user``, ``snapshot_has_more_early``,
``live_delete_missing``, ``live_filter_silent_skip``, ``live_buffer_drops_oldest``,
``live_update_lost_after_add_column`` and the snapshot half of ``order_limit_resorted_by_pk``. The connection
side (frames, auth, client messages) is ``_ws.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import logging
import math
import struct
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs
from starlette.applications import Starlette

from ._live_filter import FilterError, RowFilter, compile_filter
from ._types import ChangeEvent, LiveEngine, LivePlan

try:  # written by the engine's author; every fault is off when it is missing
    from ._faults import active as _fault_active
except ImportError:  # pragma: no cover

    def _fault_active(name: str) -> bool:
        return False


try:  # the engine's JSON cell writer (§2.4) over its canonical values: HTTP and WS then agree
    from ._values import cell as _engine_cell
except ImportError:  # pragma: no cover
    _engine_cell = None  # type: ignore[assignment]

__all__ = ["LiveHub", "Page", "Subscription", "encode_cell", "hub_for", "table_fields"]

log = logging.getLogger("kalammodel.server.ws")

#: changes buffered per subscription while its snapshot loads; one more stops the subscription with an error
#: (KalamDB: live:models/connection.rs drops the oldest in silence, the planted fault live_buffer_drops_oldest)
MAX_BUFFERED_PER_SUBSCRIPTION = 1024
#: the bound under the planted fault live_buffer_drops_oldest: small, so that a short program reaches it
FAULT_BUFFER_BOUND = 2


class Outbox(Protocol):
    """Where a subscription's messages go: the connection's send queue."""

    def send(self, message: Mapping[str, Any], compressible: bool = True) -> None: ...


# ---------------------------------------------------------------------------------------------------------------
# Cell encoding (§2.4)


def _f32(value: float) -> float:
    """A FLOAT (f32) widened to f64 the way KalamDB prints it: 45.67 -> 45.66999816894531."""
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return value
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _micros(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, dt.time):
        return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond
    if isinstance(value, dt.date):
        return (value - _EPOCH.date()).days
    return value


def encode_cell(value: Any, data_type: Any) -> Any:
    """One cell as KalamDB writes it in JSON (§2.4), given the column's ``data_type`` (None: guess from value)."""
    if value is None:
        return None
    if data_type is not None and _engine_cell is not None:
        return _engine_cell(data_type, value)
    if isinstance(data_type, Mapping):
        if "Decimal" in data_type:
            scale = int(data_type["Decimal"].get("scale", 0))
            return f"{decimal.Decimal(str(value)):.{scale}f}"
        if "Embedding" in data_type:
            return [_f32(v) for v in value]
        data_type = None
    if data_type == "BigInt":
        return str(int(value))
    if data_type in ("Int", "SmallInt"):
        return int(value)
    if data_type == "Double":
        return float(value)
    if data_type == "Float":
        return _f32(value)
    if data_type == "Boolean":
        return bool(value)
    if data_type in ("Timestamp", "DateTime", "Date", "Time"):
        return _micros(value)
    if data_type == "Json":
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if data_type == "Bytes":
        return list(bytes.fromhex(value) if isinstance(value, str) else bytes(value))
    if data_type in ("Text", "Uuid"):
        return str(value)
    # unknown type: keep what JSON can carry
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return list(bytes(value))
    if isinstance(value, (dt.date, dt.time)):
        return _micros(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    return str(value)


# ---------------------------------------------------------------------------------------------------------------
# Subscriptions


def _is_star(plan: LivePlan) -> bool:
    """``SELECT *``: the ack schema then lists the system columns (which cannot be projected explicitly)."""
    names = [f.get("name") for f in (plan.schema or [])]
    return "_seq" in names or "_seq" in list(plan.columns or [])


def table_fields(engine: LiveEngine, plan: LivePlan) -> list[dict[str, Any]]:
    """Schema fields of every column of the plan's table: types and the PK even when they are not projected.

    Read from ``LivePlan.table_schema`` when the engine provides it, else from the engine's table catalogue
    (``engine.tables[table_id].columns``), else only the ack schema is known.
    """
    fields = getattr(plan, "table_schema", None)
    if fields:
        return list(fields)
    try:
        # not a hook: the embedded Engine's catalogue (Any: another engine may have none, or another shape)
        tables: Any = getattr(engine, "tables", None)
        table = tables.get(plan.table_id)
        return [c.field(i) for i, c in enumerate(table.columns)] if table is not None else []
    except Exception:  # noqa: BLE001 - an engine without that catalogue: fall back to the ack schema
        return []


def _column_types(plan: LivePlan, table_fields: list[dict[str, Any]]) -> dict[str, Any]:
    types: dict[str, Any] = {"_seq": "BigInt", "_deleted": "Boolean"}
    for field in [*table_fields, *(plan.schema or [])]:
        types[field["name"]] = field.get("data_type")
    return types


def _pk_columns(plan: LivePlan, table_fields: list[dict[str, Any]]) -> list[str]:
    explicit = getattr(plan, "pk_columns", None)
    if explicit:
        return list(explicit)
    for source in (table_fields, plan.schema):
        pks = [f["name"] for f in source or [] if "pk" in (f.get("flags") or [])]
        if pks:
            return pks
    return []


@attrs.define(eq=False)
class Page:
    rows: list[dict[str, Any]]
    has_more: bool
    last_seq: int | None


@attrs.define(eq=False)
class Subscription:
    """One live query of one connection (``SubscriptionState`` + its flow control in KalamDB)."""

    id: str
    conn: Outbox
    plan: LivePlan
    user_id: str
    options: dict[str, Any] | None
    batch_size: int
    table_fields: list[dict[str, Any]] = attrs.field(factory=list)
    cutoff: int = 0  # hub events numbered <= cutoff were committed before this subscription existed
    loading: bool = False
    boundary: int | None = None  # snapshot_end_seq
    batch_num: int = 0
    buffer: deque[tuple[int | None, dict[str, Any]]] = attrs.field(factory=deque)
    closed: bool = False
    #: called once when the server ends the subscription (error sent): the connection forgets it
    on_stop: Callable[[Subscription], None] | None = None
    star: bool = attrs.field(init=False)
    types: dict[str, Any] = attrs.field(init=False)
    pk: list[str] = attrs.field(init=False)
    kind: str = attrs.field(init=False)
    row_filter: RowFilter = attrs.field(init=False)
    change_filter: RowFilter = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        """Raises FilterError when the WHERE cannot be evaluated: the subscription is refused."""
        self.star = _is_star(self.plan)
        self.types = _column_types(self.plan, self.table_fields)
        self.pk = _pk_columns(self.plan, self.table_fields)
        self.kind = str(self.plan.kind).upper()
        self.row_filter = compile_filter(self.plan.where, self.types, self.user_id)
        # planted: KalamDB's change-path evaluator (the snapshot is read through SQL there, so it is right)
        self.change_filter = (
            compile_filter(self.plan.where, self.types, self.user_id, kalamdb_subset=True)
            if _fault_active("live_filter_silent_skip")
            else self.row_filter
        )

    # -- filtering and projection ----------------------------------------------------------------------------

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Whether ``row`` satisfies the WHERE (SQL three-valued logic); FilterError when it no longer fits."""
        return self.row_filter.matches(row)

    def _output_columns(self, row: Mapping[str, Any]) -> list[str]:
        if self.star:
            has_deleted = "_deleted" in {f.get("name") for f in self.plan.schema or []}
            return [
                k
                for k in row
                if k != "_commit_seq" and not k.startswith("__") and (k != "_deleted" or has_deleted)
            ]
        cols = [c for c in self.plan.columns if c in row]
        if "_seq" in row and "_seq" not in cols:
            cols.append("_seq")
        return cols

    def encode_row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {c: encode_cell(row[c], self.types.get(c)) for c in self._output_columns(row)}

    def update_delta(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[dict, dict]:
        """``project_update_delta``: new = _seq, PK, non-null user columns; old = _seq, PK, changed columns."""
        new_out: dict[str, Any] = {}
        old_out: dict[str, Any] = {}
        for key in ["_seq", *self.pk]:
            if key in new:
                new_out[key] = encode_cell(new[key], self.types.get(key))
            if key in old:
                old_out[key] = encode_cell(old[key], self.types.get(key))
        names = self._output_columns(new) if self.star else list(self.plan.columns)
        for col in names:
            if col.startswith("_") or col in self.pk:
                continue
            if col in new and new[col] is not None:
                new_out[col] = encode_cell(new[col], self.types.get(col))
            if col in old and col in new and old[col] != new[col]:
                old_out[col] = encode_cell(old[col], self.types.get(col))
        return new_out, old_out

    def change_message(self, event: ChangeEvent) -> tuple[dict[str, Any], int | None] | None:
        """The ``change`` message this subscription gets for ``event`` and its seq, or None when filtered."""
        kind = event.change_type
        if kind == "delete" and _fault_active("live_delete_missing"):
            return None
        if kind == "update" and _fault_active("live_update_lost_after_add_column"):
            if any(k not in self.types for k in event.new_row if not k.startswith("_")):
                return None  # finding 11: a column added after the subscription started
        base: dict[str, Any] = {"type": "change", "subscription_id": self.id, "change_type": kind}
        if kind == "delete" and self.kind == "STREAM":
            # hard delete: KalamDB sends only the storage row id, without _seq; a WHERE clause cannot be
            # evaluated on it (the columns are missing) so filtered subscriptions never see it
            source = event.old_row or event.new_row or {}
            seq = source.get("_seq", event.seq)
            hard = {"row_id": f"{event.owner}:{seq}"}
            if self.plan.where is not None:
                return None
            base["old_values"] = [hard if self.star else {}]
            return base, None
        try:
            if not self.change_filter.matches(event.new_row):
                return None
        except FilterError as exc:
            if not _fault_active("live_filter_silent_skip"):
                raise  # the hub tells the client and stops the subscription
            log.debug("filter of subscription %s skipped a change: %s", self.id, exc)
            return None
        if kind == "insert":
            base["rows"] = [self.encode_row(event.new_row)]
        elif kind == "update":
            new_out, old_out = self.update_delta(event.old_row or event.new_row, event.new_row)
            base["rows"] = [new_out]
            base["old_values"] = [old_out]
        else:
            base["old_values"] = [self.encode_row(event.new_row)]
        return base, event.seq

    # -- snapshot --------------------------------------------------------------------------------------------

    def visible(
        self, rows: list[dict[str, Any]], since: int | None, until: int | None
    ) -> list[dict[str, Any]]:
        out = []
        for row in rows:
            seq = row.get("_seq")
            if seq is None or row.get("_deleted"):
                continue
            if since is not None and seq <= since:
                continue
            if until is not None and seq > until:
                continue
            try:
                if not self.matches(row):
                    continue
            except FilterError:
                self.closed = True  # the caller tells the client (an error message); nothing more is sent
                raise
            out.append(row)
        out.sort(key=lambda r: r["_seq"])
        return out

    def page(
        self, rows: list[dict[str, Any]], since: int | None, limit: int, fetch_last: bool = False
    ) -> Page:
        """One initial-data batch: rows with ``since < _seq <= boundary`` (``fetch_initial_data``)."""
        if limit <= 0:
            return Page([], False, None)
        candidates = self.visible(rows, since, self.boundary)
        pk_resort = bool(self.pk) and _fault_active("order_limit_resorted_by_pk")
        if fetch_last and pk_resort:
            # finding 10: ORDER BY _seq DESC LIMIT last_rows + 1 comes back in key order, is truncated to
            # last_rows (dropping the largest key, not the oldest row) and reversed (initial_data.rs)
            chosen, has_more = self._by_pk(candidates[-(limit + 1) :])[:limit][::-1], False
        elif fetch_last:
            chosen, has_more = candidates[-limit:], False
        else:
            chosen = candidates[:limit]
            if pk_resort:  # finding 10: the batch comes in key order; the next one starts after its last row
                chosen = self._by_pk(chosen)
            has_more = len(candidates) > limit
            if _fault_active("snapshot_has_more_early"):
                has_more = len(candidates) > 2 * limit
        last_seq = int(chosen[-1]["_seq"]) if chosen else None
        return Page([self.encode_row(r) for r in chosen], has_more, last_seq)

    def _by_pk(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``rows`` sorted by the primary key (the planted default ordering of finding 10)."""
        return sorted(
            rows, key=lambda r: tuple((r.get(k) is None, 0 if r.get(k) is None else r.get(k)) for k in self.pk)
        )

    # -- delivery (event loop only) --------------------------------------------------------------------------

    def set_boundary(self, boundary: int) -> None:
        self.boundary = boundary
        self.buffer = deque((s, m) for s, m in self.buffer if s is None or s > boundary)

    def deliver(self, message: dict[str, Any], seq: int | None) -> None:
        if self.closed:
            return
        if self.loading:
            if self.boundary is not None and seq is not None and seq <= self.boundary:
                return  # already part of the snapshot
            if _fault_active("live_buffer_drops_oldest"):
                if len(self.buffer) >= FAULT_BUFFER_BOUND:
                    self.buffer.popleft()  # planted: KalamDB's silent drop of the oldest buffered change
            elif len(self.buffer) >= MAX_BUFFERED_PER_SUBSCRIPTION:
                self.stop(
                    "SUBSCRIPTION_FAILED",
                    f"more than {MAX_BUFFERED_PER_SUBSCRIPTION} changes arrived while the initial data was "
                    "loading; the subscription was stopped (subscribe again, from the last _seq received)",
                )
                return
            self.buffer.append((seq, message))
            return
        self.conn.send(message)

    def stop(self, code: str, message: str) -> None:
        """End the subscription from the server side: the client gets an ``error`` naming it, nothing after."""
        if self.closed:
            return
        self.closed = True
        self.buffer.clear()
        self.conn.send({"type": "error", "subscription_id": self.id, "code": code, "message": message})
        if self.on_stop is not None:
            self.on_stop(self)

    def complete_initial_load(self) -> None:
        self.loading = False
        pending = sorted(self.buffer, key=lambda item: (item[0] is None, item[0] or 0))
        self.buffer.clear()
        for _seq, message in pending:
            self.conn.send(message)


# ---------------------------------------------------------------------------------------------------------------
# Fan-out


class LiveHub:
    """Routes the engine's committed changes to the subscriptions of every connection (one per engine)."""

    def __init__(self, engine: LiveEngine, loop: asyncio.AbstractEventLoop):
        self.engine = engine
        self.loop = loop
        self._lock = threading.Lock()
        self._counter = 0
        self._by_table: dict[str, dict[int, Subscription]] = {}
        self._per_user: dict[str, int] = {}
        engine.add_change_listener(self._on_change)

    def _on_change(self, event: ChangeEvent) -> None:
        """The engine's listener: any thread, right after a commit. Numbers the event and hands it over."""
        with self._lock:
            self._counter += 1
            if not self._by_table.get(event.table_id):
                return
            try:
                self.loop.call_soon_threadsafe(self._dispatch, self._counter, event)
            except RuntimeError:  # the loop is closed: the server is shutting down
                pass

    def _dispatch(self, number: int, event: ChangeEvent) -> None:
        for sub in list(self._by_table.get(event.table_id, {}).values()):
            if sub.closed or number <= sub.cutoff:
                continue
            if sub.kind == "SHARED":
                pass
            elif sub.plan.owner != event.owner and not (
                sub.kind == "USER" and _fault_active("live_cross_user")
            ):
                continue
            try:
                built = sub.change_message(event)
            except FilterError as exc:
                sub.stop("SUBSCRIPTION_FAILED", f"the live filter cannot be evaluated any more: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - one bad row must not stop the fan-out to the others
                log.exception("could not build the change for subscription %s", sub.id)
                sub.stop("SUBSCRIPTION_FAILED", f"a change could not be delivered: {exc!r}")
                continue
            if built is not None:
                sub.deliver(*built)

    def user_subscriptions(self, user_id: str) -> int:
        return self._per_user.get(user_id, 0)

    def register(self, sub: Subscription) -> None:
        with self._lock:
            sub.cutoff = self._counter
            self._by_table.setdefault(sub.plan.table_id, {})[id(sub)] = sub
            self._per_user[sub.user_id] = self._per_user.get(sub.user_id, 0) + 1

    def unregister(self, sub: Subscription) -> None:
        with self._lock:
            sub.closed = True
            subs = self._by_table.get(sub.plan.table_id)
            if subs is not None and subs.pop(id(sub), None) is not None:
                if not subs:
                    del self._by_table[sub.plan.table_id]
                left = self._per_user.get(sub.user_id, 0) - 1
                if left > 0:
                    self._per_user[sub.user_id] = left
                else:
                    self._per_user.pop(sub.user_id, None)


def hub_for(app: Starlette) -> LiveHub:
    """The app's hub, created in the running loop at the first connection (and again for a new engine/loop)."""
    engine = app.state.engine
    loop = asyncio.get_running_loop()
    hub = getattr(app.state, "live_hub", None)
    if not isinstance(hub, LiveHub) or hub.engine is not engine or hub.loop is not loop:
        if isinstance(hub, LiveHub) and hasattr(hub.engine, "remove_change_listener"):
            hub.engine.remove_change_listener(hub._on_change)
        hub = LiveHub(engine, loop)
        app.state.live_hub = hub
    return hub

