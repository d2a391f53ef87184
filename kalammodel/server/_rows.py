"""Row versions: hot and cold scopes, visibility (newest ``_seq`` wins), writes with undo, change events.

Row versions are kept in memory (hot: newest version per PK plus every hot ``_seq``; cold: newest flushed
version per PK) and made durable in SQLite before a statement is acknowledged. A request-scoped transaction
collects undo actions and change events; ``commit`` hands the events to the change listeners.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from . import _faults
from ._records import EPOCH_MS, Column, Scope, Table, now_ms, pk_key
from ._storage import HotStore, Version, read_scope_cold
from ._types import ChangeEvent
from ._values import SqlFailure, arrow_type, canonical, to_arrow_value

__all__ = ["Rows"]


class Rows:
    """Every scope's row versions, the ``_seq`` clock, the open transaction's undo log and the listeners."""

    def __init__(self, store: HotStore):
        self.store = store
        self.scopes: dict[tuple[str, str], Scope] = {}
        self.listeners: list[Callable[[ChangeEvent], None]] = []
        self._last_seq = 0
        self._undo: list[Callable[[], None]] | None = None
        self._events: list[ChangeEvent] = []

    def load(self, tables: dict[str, Table]) -> None:
        """Hot versions from SQLite, cold versions from every scope's Parquet segments."""
        for tbl, owner, pk, v in self.store.versions():
            sc = self.scope(tbl, owner)
            sc.hot[pk] = v
            sc.hot_seqs[v.seq] = pk
            self._last_seq = max(self._last_seq, v.seq)
        for key, d in self.store.docs("scope"):
            tkey, owner = key.split("|", 1)
            table = tables.get(tkey)
            if table is None:
                continue
            sc = self.scope(tkey, owner)
            for v in read_scope_cold(Path(d["dir"]), table.types_by_id).values():
                pk = self.pk_of(table, v)
                if pk not in sc.cold or sc.cold[pk].seq < v.seq:
                    sc.cold[pk] = v
                self._last_seq = max(self._last_seq, v.seq)

    # ------------------------------------------------------------------ helpers
    def scope(self, tkey: str, owner: str) -> Scope:
        sc = self.scopes.get((tkey, owner))
        if sc is None:
            sc = self.scopes[(tkey, owner)] = Scope()
        return sc

    def pk_of(self, table: Table, v: Version) -> str:
        pk = table.pk
        return pk_key(v.vals.get(pk.id)) if pk is not None and table.kind != "STREAM" else str(v.seq)

    def next_seq(self) -> int:
        s = (now_ms() - EPOCH_MS) << 22
        if s <= self._last_seq:
            s = self._last_seq + 1
        self._last_seq = s
        return s

    def value(self, table: Table, v: Version, c: Column) -> Any:
        if c.id == "_seq":
            return v.seq
        if c.id == "_deleted":
            return v.deleted
        val = v.vals.get(c.id)
        if val is None and table.dropped and _faults.active("readd_column_old_values"):
            # finding 4: values are matched by column name, so a dropped column's values show under a re-added
            # name; when they do not cast to the new type, every read of the row fails
            for old_id, old_name in table.dropped.items():
                if old_name == c.name and v.vals.get(old_id) is not None:
                    old = v.vals[old_id]
                    try:
                        return canonical(c.data_type, old, c.name)
                    except SqlFailure:
                        raise SqlFailure(
                            f"Failed to coerce column '{c.name}': Cannot cast {old!r} to value of "
                            f"{c.data_type} type"
                        ) from None
        return val

    def row_dict(self, table: Table, v: Version, deleted: bool | None = None) -> dict[str, Any]:
        d = {c.name: self.value(table, v, c) for c in table.columns}
        if deleted is not None:
            d["_deleted"] = deleted
        return d

    # ------------------------------------------------------------------ visible rows
    def visible(self, table: Table, owner: str, include_deleted: bool = False) -> list[Version]:
        sc = self.scopes.get((table.key, owner))
        if sc is None:
            return []
        keeps_hot = _faults.active("flush_keeps_hot")
        gap = _faults.active("flush_read_gap") and bool(sc.flushing)
        out: list[Version] = []
        for pk, v in sc.cold.items():
            h = sc.hot.get(pk)
            if h is not None and h.seq > v.seq:
                continue
            if keeps_hot and h is not None and h.seq == v.seq:
                out.append(v)  # the duplicate of the planted defect
                continue
            if h is not None and h.seq == v.seq:
                continue
            if not v.deleted:
                out.append(v)
        for pk, v in sc.hot.items():
            c = sc.cold.get(pk)
            if c is not None and c.seq > v.seq:
                continue
            if gap and pk in sc.flushing:
                continue
            if v.deleted and not include_deleted:
                continue
            out.append(v)
        if table.kind == "STREAM" and table.ttl_seconds and not _faults.active("stream_never_expires"):
            limit = now_ms() - EPOCH_MS - table.ttl_seconds * 1000
            out = [v for v in out if (v.seq >> 22) > limit]
        out.sort(key=lambda v: v.seq)
        return out

    def live_version(self, table: Table, owner: str, pk: str) -> Version | None:
        sc = self.scopes.get((table.key, owner))
        if sc is None:
            return None
        h, c = sc.hot.get(pk), sc.cold.get(pk)
        v = h if c is None or (h is not None and h.seq > c.seq) else c
        if v is None or v.deleted:
            return None
        if table.kind == "STREAM" and table.ttl_seconds and not _faults.active("stream_never_expires"):
            if (v.seq >> 22) <= now_ms() - EPOCH_MS - table.ttl_seconds * 1000:
                return None
        return v

    def arrow(self, table: Table, versions: list[Version]) -> pa.Table:
        arrays, fields = [], []
        for c in table.columns:
            at = arrow_type(c.data_type)
            fields.append(pa.field(c.name, at))
            arrays.append(
                pa.array([to_arrow_value(c.data_type, self.value(table, v, c)) for v in versions], at)
            )
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

    def scope_arrow(self, table: Table, owners: list[str], include_deleted: bool) -> pa.Table:
        if len(owners) == 1 and table.kind != "STREAM" and not _faults.enabled():
            sc = self.scope(table.key, owners[0])
            key = (sc.counter, table.schema_version, include_deleted)
            if sc.cache is not None and sc.cache[0] == key:
                return sc.cache[1]
            t = self.arrow(table, self.visible(table, owners[0], include_deleted))
            sc.cache = (key, t)
            return t
        versions: list[Version] = []
        for o in owners:
            versions.extend(self.visible(table, o, include_deleted))
        return self.arrow(table, versions)

    # ------------------------------------------------------------------ writes
    def put(self, table: Table, owner: str, pk: str, v: Version, event: ChangeEvent | None) -> None:
        sc = self.scope(table.key, owner)
        prev = sc.hot.get(pk)
        self.store.put_version(table.key, owner, pk, v)
        sc.hot[pk] = v
        sc.hot_seqs[v.seq] = pk
        sc.counter += 1

        def undo() -> None:
            sc.hot_seqs.pop(v.seq, None)
            if prev is None:
                sc.hot.pop(pk, None)
            else:
                sc.hot[pk] = prev
            sc.lost_seqs.discard(v.seq)
            sc.counter += 1

        if self._undo is not None:
            self._undo.append(undo)
        if event is not None:
            self._events.append(event)

    def hard_delete(self, table: Table, owner: str, pk: str, event: ChangeEvent) -> None:
        sc = self.scope(table.key, owner)
        seqs = [s for s, p in sc.hot_seqs.items() if p == pk]
        self.store.delete_versions(seqs)
        prev = sc.hot.pop(pk, None)
        for s in seqs:
            sc.hot_seqs.pop(s, None)
        sc.counter += 1

        def undo() -> None:
            for s in seqs:
                sc.hot_seqs[s] = pk
            if prev is not None:
                sc.hot[pk] = prev
            sc.counter += 1

        if self._undo is not None:
            self._undo.append(undo)
        self._events.append(event)

    # ------------------------------------------------------------------ transactions
    def begin(self) -> None:
        self.store.begin()
        self._undo, self._events = [], []

    def commit(self) -> None:
        self.store.commit()
        events, self._events, self._undo = self._events, [], None
        self._emit(events)

    def rollback(self) -> None:
        self.store.rollback()
        if self._undo:
            for u in reversed(self._undo):
                u()
        self._undo, self._events = None, []

    def _emit(self, events: list[ChangeEvent]) -> None:
        for e in events:
            for cb in list(self.listeners):
                try:
                    cb(e)
                except Exception:  # a broken listener must not fail the write
                    pass
