"""Durable state: the SQLite hot tier and catalog, and the Parquet cold tier with its ``manifest.json``.

Hot tier: one SQLite database ``<data-dir>/kalammodel.sqlite3`` in WAL mode (``synchronous=NORMAL``: a committed
transaction is in the WAL before the HTTP reply, so it survives ``kill -9``). Table ``hot`` holds one row per
written version: ``(seq, tbl, owner, pk, deleted, vals)`` with ``vals`` a JSON object keyed by *column id* (so a
dropped column's values can never reappear under a re-added column of the same name). Table ``catalog`` holds
namespaces, tables, users, storages, jobs and the list of flushed scopes, as JSON documents.

Cold tier (§7.3, §7.5): per scope a directory with ``batch-N.parquet`` files (written to ``.tmp`` and renamed) and
``manifest.json`` (written the same way). Parquet columns are the table's columns at flush time plus ``_seq``
(Int64) and ``_deleted`` (Boolean); each field carries ``kalam.column_id`` metadata.

**Deliberate difference from KalamDB 0.4.3-rc.4:** real flush drops tombstones, which resurrects a row whose older
version is already cold (a delete after flush, then another flush). This server writes tombstones to Parquet with
``_deleted=true`` and treats them as tombstones when reading, so deletes are never lost. Cold tombstones are never
returned by reads (also not by ``WHERE _deleted = true``), which is what a client of the real server observes for
deleted rows after a flush. The fault ``delete_resurrects_after_flush`` restores the real behaviour.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa
import pyarrow.parquet as pq

from ._values import arrow_type, canonical, to_arrow_value

__all__ = ["ColdSegment", "HotStore", "Version", "read_scope_cold", "write_segment"]


@attrs.frozen(slots=True)
class Version:
    """One written version of a row: ``vals`` maps column id (str) → canonical value."""

    seq: int
    deleted: bool
    vals: dict[str, Any]


#: With the fault ``acknowledged_writes_lost``, the hot tier commits only every this many statements.
LAZY_COMMIT_EVERY = 25


class HotStore:
    """The SQLite file: catalog documents and hot row versions. Not thread-safe: the engine lock guards it."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS hot (seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, owner TEXT NOT NULL,"
            " pk TEXT NOT NULL, deleted INTEGER NOT NULL, vals TEXT NOT NULL)"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS catalog (kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL,"
            " PRIMARY KEY (kind, key))"
        )
        self._in_tx = False  # a BEGIN was sent
        self._want_tx = False  # begin() was called: the next write opens the transaction
        self._stmt = False  # the current statement has written
        self._pending = 0  # statements acknowledged but not committed (fault acknowledged_writes_lost)

    @staticmethod
    def _lazy() -> bool:
        from . import _faults

        return _faults.active("acknowledged_writes_lost")

    def begin(self) -> None:
        """Start a transaction lazily: read-only statements never touch SQLite."""
        self._want_tx = True

    def _write(self) -> None:
        if self._want_tx and not self._stmt:
            if not self._in_tx:
                self.db.execute("BEGIN")
                self._in_tx = True
            if self._lazy():
                self.db.execute("SAVEPOINT km_stmt")
            self._stmt = True

    def commit(self) -> None:
        if self._stmt:
            if self._lazy():
                # The planted defect: the statement is acknowledged, but its transaction stays open until
                # LAZY_COMMIT_EVERY statements have piled up; a SIGKILL loses them.
                self.db.execute("RELEASE km_stmt")
                self._pending += 1
                if self._pending >= LAZY_COMMIT_EVERY:
                    self.db.execute("COMMIT")
                    self._in_tx = False
                    self._pending = 0
            else:
                self.db.execute("COMMIT")  # raises with the transaction still open: the caller rolls back
                self._in_tx = False
            self._stmt = False
        self._want_tx = False

    def rollback(self) -> None:
        self._want_tx = False
        if self._stmt:
            self._stmt = False
            if self._lazy():
                self.db.execute("ROLLBACK TO km_stmt")
                self.db.execute("RELEASE km_stmt")
            else:
                self._in_tx = False
                self.db.execute("ROLLBACK")

    def put_version(self, tbl: str, owner: str, pk: str, v: Version) -> None:
        self._write()
        self.db.execute(
            "INSERT INTO hot (seq, tbl, owner, pk, deleted, vals) VALUES (?, ?, ?, ?, ?, ?)",
            (v.seq, tbl, owner, pk, int(v.deleted), json.dumps(v.vals)),
        )

    def delete_versions(self, seqs: list[int]) -> None:
        self._write()
        for i in range(0, len(seqs), 500):
            chunk = seqs[i : i + 500]
            self.db.execute(f"DELETE FROM hot WHERE seq IN ({','.join('?' * len(chunk))})", chunk)

    def delete_table(self, tbl: str) -> None:
        self._write()
        self.db.execute("DELETE FROM hot WHERE tbl = ?", (tbl,))
        self.db.execute("DELETE FROM catalog WHERE kind = 'scope' AND key LIKE ?", (tbl + "|%",))

    def versions(self) -> list[tuple[str, str, str, Version]]:
        rows = self.db.execute("SELECT tbl, owner, pk, seq, deleted, vals FROM hot ORDER BY seq").fetchall()
        return [(t, o, p, Version(s, bool(d), json.loads(v))) for t, o, p, s, d, v in rows]

    def put_doc(self, kind: str, key: str, body: Any) -> None:
        self._write()
        self.db.execute(
            "INSERT OR REPLACE INTO catalog (kind, key, body) VALUES (?, ?, ?)", (kind, key, json.dumps(body))
        )

    def del_doc(self, kind: str, key: str) -> None:
        self._write()
        self.db.execute("DELETE FROM catalog WHERE kind = ? AND key = ?", (kind, key))

    def docs(self, kind: str) -> list[tuple[str, Any]]:
        rows = self.db.execute(
            "SELECT key, body FROM catalog WHERE kind = ? ORDER BY rowid", (kind,)
        ).fetchall()
        return [(k, json.loads(b)) for k, b in rows]

    def close(self) -> None:
        self.db.close()


@attrs.frozen
class ColdSegment:
    path: str
    min_seq: int
    max_seq: int
    row_count: int
    size_bytes: int


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _stat_value(dt: Any, v: Any) -> Any:
    if dt == "BigInt":
        return {"Int64": str(v)}
    if dt == "Int":
        return {"Int32": v}
    if dt == "SmallInt":
        return {"Int16": v}
    if dt in ("Text", "Json", "Uuid"):
        return {"Utf8": v}
    if dt == "Double":
        return {"Float64": v}
    if dt == "Boolean":
        return {"Boolean": v}
    return None


def write_segment(
    directory: Path,
    table_id: str,
    user_id: str | None,
    columns: list[tuple[str, str, Any]],
    versions: list[Version],
    schema_version: int,
    missing_file: bool = False,
) -> ColdSegment:
    """Write ``versions`` (newest per PK, ascending ``_seq``) as the next ``batch-N.parquet`` of ``directory`` and
    append it to ``manifest.json``. ``columns`` = (column id, name, data_type) of the table's user columns.
    ``missing_file`` (fault ``manifest_missing_file``) lists the segment in the manifest without its file."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / "manifest.json"
    now = int(time.time() * 1000)
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
    else:
        manifest = {
            "table_id": table_id,
            "user_id": user_id,
            "version": 0,
            "created_at": now,
            "updated_at": now,
            "segments": [],
            "last_sequence_number": 0,
            "files": None,
            "vector_indexes": {},
        }
    n = len(manifest["segments"])
    while (directory / f"batch-{n}.parquet").exists():
        n += 1
    name = f"batch-{n}.parquet"
    fields, arrays = [], []
    stats: dict[str, Any] = {}
    for cid, cname, dt in columns:
        at = arrow_type(dt)
        vals = [to_arrow_value(dt, v.vals.get(cid)) for v in versions]
        fields.append(
            pa.field(cname, at, metadata={"kalam.column_id": cid, "kalam.data_type": json.dumps(dt)})
        )
        arrays.append(pa.array(vals, type=at))
        present: list[Any] = [v.vals.get(cid) for v in versions if v.vals.get(cid) is not None]
        if present and _stat_value(dt, present[0]) is not None:
            stats[cid] = {
                "min": _stat_value(dt, min(present)),
                "max": _stat_value(dt, max(present)),
                "null_count": len(versions) - len(present),
            }
    fields.append(pa.field("_seq", pa.int64(), nullable=False))
    arrays.append(pa.array([v.seq for v in versions], type=pa.int64()))
    fields.append(pa.field("_deleted", pa.bool_(), nullable=False))
    arrays.append(pa.array([v.deleted for v in versions], type=pa.bool_()))
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    data = sink.getvalue().to_pybytes()
    if not missing_file:
        _atomic_write(directory / name, data)
    seg = ColdSegment(
        name, min(v.seq for v in versions), max(v.seq for v in versions), len(versions), len(data)
    )
    manifest["segments"].append(
        {
            "min_seq": seg.min_seq,
            "max_seq": seg.max_seq,
            "row_count": seg.row_count,
            "size_bytes": seg.size_bytes,
            "created_at": now,
            "id": str(uuid.uuid4()),
            "path": name,
            "column_stats": stats,
            "schema_version": schema_version,
            "status": "committed",
        }
    )
    manifest["version"] += 1
    manifest["updated_at"] = now
    manifest["last_sequence_number"] = seg.max_seq
    _atomic_write(manifest_path, json.dumps(manifest, indent=1).encode())
    return seg


def read_scope_cold(directory: Path, types_by_id: dict[str, Any]) -> dict[str, Version]:
    """Newest cold version per PK key of the scope in ``directory`` (empty when there is no manifest).

    ``types_by_id`` maps every column id the table ever had to its data type; the PK key is computed by the caller
    from the returned versions, so this returns versions keyed by ``_seq`` (as str)."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.exists():
        return {}
    manifest = json.loads(manifest_path.read_text())
    out: dict[str, Version] = {}
    for seg in manifest["segments"]:
        if seg.get("status") != "committed":
            continue
        path = directory / seg["path"]
        if not path.exists():
            continue
        t = pq.read_table(path)
        cols = []
        for f in t.schema:
            if f.name in ("_seq", "_deleted"):
                continue
            cid = (f.metadata or {}).get(b"kalam.column_id", b"").decode()
            cols.append((cid, t.column(f.name).to_pylist()))
        seqs = t.column("_seq").to_pylist()
        dels = t.column("_deleted").to_pylist()
        for i, s in enumerate(seqs):
            vals = {}
            for cid, data in cols:
                dt = types_by_id.get(cid)
                if dt is None:
                    continue
                vals[cid] = canonical(dt, data[i], cid)
            out[str(s)] = Version(s, bool(dels[i]), vals)
    return out
