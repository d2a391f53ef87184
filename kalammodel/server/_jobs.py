"""``system.jobs`` records, STORAGE FLUSH jobs (§7) and the automatic-flush scheduler (§7.4).

A flush job runs on its own thread: it snapshots the hot versions of every scope under the engine lock, writes
the Parquet segment without the lock, and commits (hot rows deleted, cold versions updated) under the lock again.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

from . import _faults
from ._records import Ctx, Scope, Table, now_ms
from ._storage import HotStore, Version, write_segment
from ._values import SqlFailure, denied

if TYPE_CHECKING:
    from ._catalog import Catalog
    from ._rows import Rows

__all__ = ["Flusher", "JobLog"]

log = logging.getLogger("kalammodel.server")

# one scope's share of a running flush: (owner, scope, hot seqs moved, newest hot version per pk)
_Snapshot = tuple[str, Scope, list[int], dict[str, Version]]


class JobLog:
    """The job records of ``system.jobs`` (documents in SQLite); jobs pending at a restart are failed."""

    def __init__(self, store: HotStore):
        self.store = store
        self.jobs: dict[str, dict[str, Any]] = {}

    def load(self) -> None:
        for k, d in self.store.docs("job"):
            if d["status"] in ("new", "queued", "running"):
                d.update(
                    status="failed",
                    message="Server restarted while the job was pending; hot rows kept",
                    finished_at=now_ms(),
                    updated_at=now_ms(),
                )
                self.store.put_doc("job", k, d)
            self.jobs[k] = d

    def new(self, job_type: str, prefix: str, params: dict[str, Any]) -> dict[str, Any]:
        t = now_ms()
        job: dict[str, Any] = {
            "job_id": f"{prefix}-{secrets.token_hex(6)}",
            "job_type": job_type,
            "status": "new",
            "leader_status": None,
            "parameters": json.dumps(params),
            "message": None,
            "exception_trace": None,
            "idempotency_key": f"{job_type}:{params.get('table_id', '')}",
            "queue": None,
            "priority": 0,
            "retry_count": 0,
            "max_retries": 3,
            "memory_used": None,
            "cpu_used": None,
            "created_at": t,
            "updated_at": t,
            "started_at": None,
            "finished_at": None,
            "node_id": "1",
            "leader_node_id": "1",
        }
        self.jobs[job["job_id"]] = job
        self.store.put_doc("job", job["job_id"], job)
        return job

    def set(self, job: dict[str, Any], status: str, message: str | None = None, trace: str | None = None) -> None:
        t = now_ms()
        job.update(status=status, updated_at=t)
        if status == "running":
            job["started_at"] = t
        if status in ("completed", "failed", "skipped", "cancelled"):
            job["finished_at"] = t
        if message is not None:
            job["message"] = message
        if trace is not None:
            job["exception_trace"] = trace
        self.store.put_doc("job", job["job_id"], job)


class Flusher:
    """STORAGE FLUSH TABLE / ALL, the flush job threads and the automatic-flush scheduler."""

    def __init__(
        self,
        lock: threading.RLock,
        catalog: Catalog,
        rows: Rows,
        jobs: JobLog,
        flush_delay_ms: int,
        flush_default_row_limit: int,
    ):
        self.lock = lock
        self.store = rows.store
        self.catalog = catalog
        self.rows = rows
        self.jobs = jobs
        self.flush_delay_ms = flush_delay_ms
        self.flush_default_row_limit = flush_default_row_limit
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._scheduler: threading.Thread | None = None

    def close(self) -> None:
        """Stop the scheduler and wait for running flush jobs."""
        self._stop.set()
        if self._scheduler is not None:
            self._scheduler.join(timeout=10)
        for t in self._threads:
            t.join(timeout=10)

    # ------------------------------------------------------------------ statements
    def _flushable(self, ctx: Ctx, ns: str | None, name: str) -> Table:
        if ctx.role == "user":
            raise denied("Insufficient privileges for STORAGE FLUSH: requires service, dba or system role")
        table = self.catalog.table(f"{(ns or ctx.namespace).lower()}.{name}", ctx.namespace)
        if table.kind == "STREAM":
            raise SqlFailure(f"Cannot flush STREAM table {table.key}: stream tables are not flushable")
        return table

    def _pending(self, table: Table) -> bool:
        return any(sc.hot_seqs for (k, _), sc in self.rows.scopes.items() if k == table.key)

    def _busy(self, table: Table) -> bool:
        return any(
            j["job_type"] == "flush"
            and j["status"] in ("new", "queued", "running")
            and json.loads(j["parameters"]).get("table_id") == table.key
            for j in self.jobs.jobs.values()
        )

    def _start_flush(self, table: Table, threshold: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "table_id": table.key,
            "namespace_id": table.namespace,
            "table_name": table.name,
        }
        if threshold is not None:
            params["flush_threshold"] = threshold
        job = self.jobs.new("flush", "FL", params)
        self.jobs.set(job, "queued")
        th = threading.Thread(
            target=self._flush_job, args=(table.key, job), daemon=True, name=f"flush-{job['job_id']}"
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [th]
        th.start()
        return job

    def flush_table(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        table = self._flushable(ctx, m[0], m[1])
        if self._busy(table):
            return {
                "row_count": 0,
                "message": f"Storage flush skipped: a flush is already queued or running for table '{table.key}'",
            }
        if not self._pending(table):
            return {
                "row_count": 0,
                "message": f"Storage flush skipped: no pending writes for table '{table.key}'",
            }
        job = self._start_flush(table)
        return {
            "row_count": 0,
            "message": f"Storage flush started for table '{table.key}'. Job ID: {job['job_id']}",
        }

    def flush_all(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        if ctx.role == "user":
            raise denied("Insufficient privileges for STORAGE FLUSH: requires service, dba or system role")
        ns = (m[0] or ctx.namespace).lower()
        if ns not in self.catalog.namespaces:
            raise SqlFailure(f"Namespace '{ns}' does not exist")
        tables = [
            t
            for t in self.catalog.tables.values()
            if t.namespace == ns and t.kind != "STREAM" and self._pending(t)
        ]
        for t in tables:
            if self._busy(t):
                raise SqlFailure(
                    f"Idempotent conflict: a flush is already queued or running for table '{t.key}'"
                )
        ids = [self._start_flush(t)["job_id"] for t in tables]
        return {
            "row_count": 0,
            "message": f"Storage flush started for {len(ids)} table(s) in namespace '{ns}'. "
            f"Job IDs: [{', '.join(ids)}]",
        }

    # ------------------------------------------------------------------ automatic flush (§7.4)
    def flush_threshold(self, table: Table) -> int | None:
        """Hot rows that trigger an automatic flush of ``table``; None when it is never auto-flushed."""
        if table.flush_policy is None or table.kind == "STREAM":
            return None
        m = re.search(r"rows\s*:\s*(\d+)", table.flush_policy)
        return int(m.group(1)) if m else self.flush_default_row_limit  # interval-only: the default limit

    def hot_row_count(self, table: Table) -> int:
        """Hot row versions of ``table`` over all its scopes (what KalamDB's pre-validation counts)."""
        return sum(len(sc.hot_seqs) for (k, _), sc in self.rows.scopes.items() if k == table.key)

    def auto_flush(self) -> list[str]:
        """One scheduler pass (§7.4): a flush job for every table WITH a FLUSH_POLICY whose hot rows reach the
        policy's ``rows`` (interval-only policies: ``flush_default_row_limit``); the ``interval`` part is not
        consulted, tables without a policy are never auto-flushed. Returns the new job ids."""
        ids = []
        with self.lock:
            for table in list(self.catalog.tables.values()):
                limit = self.flush_threshold(table)
                if limit is None or self._busy(table) or self.hot_row_count(table) < limit:
                    continue
                ids.append(self._start_flush(table, limit)["job_id"])
        return ids

    def start_scheduler(self, interval_seconds: float) -> None:
        """Run ``auto_flush`` every ``interval_seconds`` on a daemon thread until ``close``."""
        if interval_seconds <= 0 or self._scheduler is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_seconds):
                try:
                    self.auto_flush()
                except Exception:  # noqa: BLE001 - a failed pass must not stop the scheduler
                    log.exception("automatic flush pass failed")

        self._scheduler = threading.Thread(target=loop, daemon=True, name="kalam-flush-scheduler")
        self._scheduler.start()

    def wait_idle(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for t in list(self._threads):
            t.join(timeout=max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ the job
    def _snapshot(self, tkey: str) -> list[_Snapshot]:
        """Under the lock: every scope's hot versions, marked as being flushed."""
        snaps = []
        for (k, owner), sc in self.rows.scopes.items():
            if k != tkey or not sc.hot_seqs:
                continue
            seqs = list(sc.hot_seqs)
            latest = dict(sc.hot)
            sc.flushing = set(latest)
            sc.counter += 1
            snaps.append((owner, sc, seqs, latest))
        return snaps

    def _flush_job(self, tkey: str, job: dict[str, Any]) -> None:
        snaps: list[_Snapshot] = []
        try:
            with self.lock:
                self.jobs.set(job, "running")
                table = self.catalog.tables.get(tkey)
                if table is None:
                    self.jobs.set(job, "failed", f"Table {tkey} no longer exists")
                    return
                snaps = self._snapshot(tkey)
                columns = [(c.id, c.name, c.data_type) for c in table.user_columns()]
                schema_version = table.schema_version
            if self.flush_delay_ms:
                time.sleep(self.flush_delay_ms / 1000)
            total = 0
            for owner, sc, seqs, latest in snaps:
                total += self._flush_scope(table, owner, sc, seqs, latest, columns, schema_version)
            with self.lock:
                self.jobs.set(job, "completed", f"Flushed {total} row(s) from {len(snaps)} scope(s) of {tkey}")
        except Exception as e:  # a failed job is reported in system.jobs; hot rows stay
            with self.lock:
                for _, sc, _, _ in snaps:
                    sc.flushing = set()
                self.jobs.set(job, "failed", f"Flush failed: {e}", trace=repr(e))

    def _flush_scope(
        self,
        table: Table,
        owner: str,
        sc: Scope,
        seqs: list[int],
        latest: dict[str, Version],
        columns: list[tuple[str, str, Any]],
        schema_version: int,
    ) -> int:
        """Write one scope's segment, then move its rows from hot to cold; the number of rows written."""
        tkey = table.key
        keep = [v for v in latest.values() if v.seq not in sc.lost_seqs]
        if _faults.active("delete_resurrects_after_flush"):
            keep = [v for v in keep if not v.deleted]
        keep.sort(key=lambda v: v.seq)
        directory = self.catalog.scope_dir(table, owner)
        if keep:
            write_segment(
                directory,
                tkey,
                owner or None,
                columns,
                keep,
                schema_version,
                missing_file=_faults.active("manifest_missing_file"),
            )
        with self.lock:
            if self.catalog.tables.get(tkey) is not table:
                return 0
            if not _faults.active("flush_keeps_hot"):
                self.store.begin()
                self.store.delete_versions(seqs)
                self.store.put_doc("scope", f"{tkey}|{owner}", {"dir": str(directory)})
                self.store.commit()
                for s in seqs:
                    sc.hot_seqs.pop(s, None)
                for pk, v in latest.items():
                    if sc.hot.get(pk) is v:
                        del sc.hot[pk]
            else:
                self.store.put_doc("scope", f"{tkey}|{owner}", {"dir": str(directory)})
            for v in keep:
                pk = self.rows.pk_of(table, v)
                if pk not in sc.cold or sc.cold[pk].seq < v.seq:
                    sc.cold[pk] = v
            if _faults.active("delete_resurrects_after_flush"):
                pass  # the tombstones are simply gone: older cold versions show again
            sc.lost_seqs.difference_update(seqs)
            sc.flushing = set()
            sc.counter += 1
            return len(keep)
