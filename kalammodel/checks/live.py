"""Live queries in the runner: subscriptions checked event by event against the model (PROTOCOL §10).

``Runner(target, pool, extensions=[live_extension])`` adds a :class:`LiveExtension` to every session. It runs
the live steps (:class:`~kalammodel.steps.Subscribe`, ``NextBatch``, ``Unsubscribe``, ``ResubscribeFromSeq``)
itself, one WebSocket connection per subscription, and after every other step it hands the model's new row
versions to :class:`~kalammodel.model.LiveModel`, which queues the change each open subscription must get.

Event wait strategy (cost per step, see benchmarks/live_wait.py):

* after a step, a subscription whose snapshot is complete and that expects required changes waits for
  exactly those messages, with a deadline (``event_timeout``, 5 s by default); changes of one (table, owner)
  arrive in order (§10.6), so an extra or a missing change shows as a mismatch as soon as a later change
  arrives;
* every other open subscription is drained without blocking (messages already received are checked);
* at the final ``check_all`` (teardown, after a restart) one quiescence window (``quiet``, 0.15 s) shared by all
  subscriptions catches late extras, then each subscription's accumulated rows are compared with the model
  and with a SQL read of the same query.

Being told: where the contract lets the server give up on a subscription (its filter beyond the live grammar, a
column it names dropped, its table dropped, changes buffered during its snapshot; ``LiveModel.end``), an
``error`` message for it or a close of its connection ends its obligations: recorded (``stats["told"]``), not a
divergence, and nothing more may arrive for it. Anywhere else it is a divergence: a change is never dropped in
silence, and a subscription is never dropped without cause.

Divergences carry the invariant ``live_query``, or ``isolation`` when another user's row arrives (in a change or
a snapshot batch).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import attrs

from ..client import (
    TERMINAL_JOB_STATUSES,
    Column,
    LiveConnection,
    LiveMessage,
    QueryResult,
    Subscription,
    decode_live_row,
)
from ..errors import (
    ConnectionClosed,
    DeadlineExceeded,
    Divergence,
    Invariant,
    KalamError,
    SqlError,
    TransportError,
)
from ..model import (
    CANONICAL_STYLE,
    REFUSALS,
    ColumnType,
    ExpectRows,
    LiveChange,
    LiveModel,
    LiveOptions,
    LiveSub,
    Predicate,
    SqlStyle,
    TableKind,
    compare_outcome,
)
from ..runner.outcomes import outcome_of_result
from ..runner.records import TranscriptEntry
from ..runner.seams import Extension
from ..steps import (
    LIVE_STEPS,
    NextBatch,
    Request,
    Restart,
    ResubscribeFromSeq,
    Step,
    Subscribe,
    Unsubscribe,
    subscription_sql,
)

if TYPE_CHECKING:
    from ..runner import Session

__all__ = ["LiveExtension", "live_extension"]


class LiveExtension(Extension):
    """The live side of one session; see the module docstring."""

    def __init__(self, session: Session, *, event_timeout: float = 5.0, quiet: float = 0.15):
        self.session = session
        self.live = LiveModel()
        self.event_timeout = event_timeout
        self.quiet = quiet
        self.conns: dict[str, LiveConnection] = {}
        self.handles: dict[str, Subscription] = {}
        self.retired: list[tuple[LiveConnection, int]] = []  # unsubscribed connections and the seq floor
        #: subscriptions the server ended by telling the client: nothing more may arrive for them
        self.ended: list[tuple[LiveSub, LiveConnection, Subscription]] = []
        self._watermark: int | None = None
        self._recent: list[
            tuple[str, LiveChange]
        ] = []  # changes of the last steps in every scope (cross-user attribution)
        #: what was checked: subscriptions, batches, changes, quiet windows, SQL cross-checks
        self.stats: Counter[str] = Counter()
        #: the SQL style each subscription's query is written in (a resume writes it as its first subscribe did)
        self.styles: dict[str, SqlStyle] = {}

    # ------------------------------------------------------------------ runner hooks

    def run_step(self, session: Session, step: Step) -> bool:
        if isinstance(step, LIVE_STEPS):
            self._drain_all(session, step)
            started = time.perf_counter()
            if isinstance(step, Subscribe):
                self._subscribe(session, step)
            elif isinstance(step, NextBatch):
                self._next_batch(session, step)
            elif isinstance(step, Unsubscribe):
                self._unsubscribe(session, step)
            elif isinstance(step, ResubscribeFromSeq):
                self._resubscribe(session, step)
            self._record(session, step, started)
            self._collect(session, step)
            return True
        if isinstance(
            step, Restart
        ):  # the server goes down: close first, the subscriptions count as disconnected
            self._drain_all(session, step)
            self._lost_all()
        self._watermark = self.live.begin_step(session.model)
        return False

    def after_step(self, session: Session, step: Step) -> None:
        if self._watermark is None:
            return
        watermark, self._watermark = self._watermark, None
        changes = self.live.end_step(
            session.model, watermark, session.step_index, stream_deletes=step.kind == "delete"
        )
        self._recent = (self._recent + changes)[-200:]
        if self.handles:
            self._collect(session, step)

    def _lost_all(self) -> None:
        """The server restarted: every connection is gone; the subscriptions count as disconnected."""
        for sub_id, conn in list(self.conns.items()):
            self.live.close(sub_id, disconnected=True)
            conn.close(timeout=1.0)
        for conn in [c for c, _ in self.retired] + [c for _, c, _ in self.ended]:
            conn.close(timeout=1.0)
        self.conns.clear()
        self.handles.clear()
        self.retired.clear()
        self.ended.clear()

    def check_all(self, session: Session, final: bool = True) -> None:
        """Every open subscription agrees with the model and with a SQL read of its query.

        ``final`` (teardown, or after a restart): first a quiescence window in which no unexpected change may
        arrive. A periodic check (``final=False``) only takes what has already arrived: an extra change that
        comes later is still caught, by the next step's collection or by the final window, so waiting here
        would only report it a few steps earlier, at 0.15 s per check.
        """
        subs = [s for s in self.live.open_subs() if s.id in self.handles]
        if not subs and not self.retired and not self.ended:
            return
        step = session.current_step()
        deadline = time.monotonic() + (self.quiet if final else 0.0)
        if final:
            self.stats["quiet_windows"] += 1
        for sub in subs:
            handle = self.handles[sub.id]
            while sub.id in self.handles:
                try:
                    msg = handle.get(max(0.0, deadline - time.monotonic()))
                except DeadlineExceeded:
                    break
                except ConnectionClosed as exc:
                    self._told(session, sub, step, f"the connection closed: {exc}")
                    break
                self._process(session, sub, step, msg)
        for sub in subs:
            if sub.id not in self.handles:
                continue  # the server ended it
            if sub.ready and sub.required_pending():
                self._await(session, sub, step)
            problem = self.live.view_problem(session.model, sub)
            if problem is not None:
                raise self._div(session, sub, step, f"after every change arrived: {problem}")
            self._sql_check(session, sub, step)
        self._check_retired(session, step)
        self._check_ended(session, step, deadline)

    def close(self, session: Session) -> None:
        for conn in list(self.conns.values()) + [c for c, _ in self.retired] + [c for _, c, _ in self.ended]:
            try:
                conn.close(timeout=1.0)
            except Exception:  # noqa: BLE001 - closing must not hide the real failure
                pass
        self.conns.clear()
        self.handles.clear()
        self.retired.clear()
        self.ended.clear()

    # ------------------------------------------------------------------ live steps

    def _connect(self, session: Session, actor: str) -> LiveConnection:
        token = cast(str, session.pool.client(actor).token)  # (the pool's clients are logged in)
        try:
            return LiveConnection.connect(session.runner.target.base_url, token, timeout=5.0)
        except (KalamError, OSError) as exc:
            step = session.current_step()
            raise Divergence(
                Invariant.AVAILABILITY,
                f"could not open a live connection as {actor}: {exc}",
                step_index=session.step_index,
                step=step.describe() if step is not None else None,
                request="GET /v1/ws",
                actor=actor,
                namespace=session.ns,
            ) from exc

    def _subscribe(self, session: Session, step: Subscribe) -> None:
        options = LiveOptions(step.snapshot, step.batch_size, step.last_rows if step.snapshot else None)
        self.styles[step.sub_id] = step.style
        self._open(session, step, step.sub_id, step.actor, step.table, step.columns, step.where, options)

    def _resubscribe(self, session: Session, step: ResubscribeFromSeq) -> None:
        old = self.live.subs.get(step.from_sub)
        if old is None:
            return  # nothing to resume (a replayed case whose subscribe step was removed)
        if step.from_sub in self.conns:
            # still open: its connection drops first (what a client resumes from), after the changes of the
            # writes made so far arrived, so that the resume point does not depend on timing
            self._unsubscribe(session, Unsubscribe(step.from_sub, disconnect=True))
        options = LiveOptions(True, old.options.batch_size, None)
        self.styles[step.sub_id] = self.styles.get(step.from_sub, CANONICAL_STYLE)  # resumed as first written
        seq = old.last_seq_seen if old.last_seq_seen is not None else 0
        resume_w = old.last_write if old.last_write is not None else 0
        self._open(
            session, step, step.sub_id, old.actor, old.table, old.columns, old.where, options, resume_w, seq
        )

    def _open(
        self,
        session: Session,
        step: Step,
        sub_id: str,
        actor: str,
        table: str,
        columns: tuple[str, ...] | None,
        where: Predicate | None,
        options: LiveOptions,
        resume_w: int | None = None,
        resume_seq: int | None = None,
    ) -> None:
        if sub_id in self.live.subs:
            return
        sub, refusal = self.live.subscribe(
            session.model, sub_id, actor, table, columns, where, options, resume_w, resume_seq
        )
        sql = subscription_sql(self.styles.get(sub_id, CANONICAL_STYLE), session.ns, table, columns, where)
        conn = self._connect(session, actor)
        wire = options.wire(resume_seq)
        try:
            handle = conn.subscribe(sub_id, sql, wire)
            first = handle.get(self.event_timeout)
        except (KalamError, OSError) as exc:
            conn.close(timeout=1.0)
            self.live.close(sub_id)
            raise self._div(
                session, sub, step, f"subscribe {sql!r} got no reply: {exc}", actor=actor
            ) from exc
        if refusal is not None:  # the model's family of codes for this refusal
            conn.close(timeout=1.0)
            if first.type != "error" or first.code not in refusal:
                raise self._div(
                    session,
                    sub,
                    step,
                    f"subscribe {sql!r} must be refused with {'|'.join(refusal)}, got {first.type} "
                    f"{first.code or ''} {first.message or ''}".strip(),
                    actor=actor,
                    expected=f"error {'|'.join(refusal)}",
                    actual=first.raw,
                )
            return
        assert sub is not None
        if first.type == "error" and sub.may_end is not None and first.code in REFUSALS["filter"]:
            # a filter beyond the live grammar refused at subscribe time: a documented choice (§10.5)
            conn.close(timeout=1.0)
            self.live.end(sub_id, _error_text(first))
            self.stats["told"] += 1
            return
        self.conns[sub_id] = conn
        self.handles[sub_id] = handle
        self.stats["subscriptions"] += 1
        if first.type != "subscription_ack":
            self.live.close(sub_id)
            raise self._div(
                session,
                sub,
                step,
                f"subscribe {sql!r}: expected subscription_ack, got {first.raw}",
                actor=actor,
            )
        self._check_ack(session, sub, step, first, snapshot=wire is not None)
        if wire is not None:
            self._take_batch(session, sub, step, ack=first)

    def _check_ack(self, session: Session, sub: LiveSub, step: Step, ack: LiveMessage, snapshot: bool) -> None:
        """The ack's schema lists the projection (or ``SELECT *``'s columns); without a snapshot it says ready."""
        state = session.model.tables[sub.table]
        want = list(sub.columns) if sub.columns is not None else state.star_columns()
        got = [c.name for c in ack.schema or []]
        if got != want:
            raise self._div(
                session, sub, step, f"ack schema lists {got}, expected {want}", expected=want, actual=got
            )
        control = ack.batch_control or {}
        if not snapshot and (control.get("has_more") or control.get("status") != "ready"):
            raise self._div(
                session, sub, step, f"ack without snapshot must say ready, not {control}", actual=ack.raw
            )

    def _take_batch(self, session: Session, sub: LiveSub, step: Step, ack: LiveMessage | None = None) -> None:
        handle = self.handles[sub.id]
        try:
            msg = handle.get(self.event_timeout)
        except DeadlineExceeded as exc:
            raise self._div(session, sub, step, f"no initial_data_batch #{sub.batch_num}: {exc}") from exc
        except ConnectionClosed as exc:
            self._told(session, sub, step, f"the connection closed instead of batch #{sub.batch_num}: {exc}")
            return
        if msg.type == "error":
            self._told(session, sub, step, _error_text(msg))
            return
        if msg.type != "initial_data_batch":
            raise self._div(
                session,
                sub,
                step,
                f"expected initial_data_batch #{sub.batch_num}, got {msg.raw}",
                actual=msg.raw,
            )
        msg = self._decoded(session, sub, step, msg)
        if ack is not None and ack.batch_control != msg.batch_control:
            raise self._div(
                session,
                sub,
                step,
                f"ack batch_control {ack.batch_control} differs from batch 0's {msg.batch_control}",
            )
        self.stats["batches"] += 1
        problem = self.live.check_batch(session.model, sub, msg.rows or [], msg.batch_control)
        if problem is not None:
            if self._foreign_rows(session, sub, msg.rows or []):
                invariant = Invariant.ISOLATION
            elif self._flush_gap(session, sub, msg.rows or [], problem):
                invariant = Invariant.HOT_COLD_CONSISTENCY
            elif self._readded_column_values(session, sub, msg.rows or []):
                invariant = Invariant.SCHEMA_EVOLUTION
            elif sub.kind is TableKind.STREAM and "not a row the snapshot may hold" in problem:
                # The model dropped only rows surely past their TTL: an extra STREAM row outlived it.
                invariant = Invariant.STREAM_TTL
            else:
                invariant = Invariant.LIVE_QUERY
            raise self._div(session, sub, step, problem, invariant=invariant, actual=msg.raw)

    @staticmethod
    def _readded_column_values(session: Session, sub: LiveSub, rows: list[dict[str, Any]]) -> bool:
        """Whether every snapshot row is one of the subscriber's rows but for columns dropped and added again.

        A re-added column showing the dropped one's old values is named as a SELECT showing them would be
        (``schema_evolution``; KalamDB 0.4.3 does it, docs/kalamdb-findings.md #4).
        """
        model = session.model
        state = model.tables.get(sub.table)
        if state is None or not rows:
            return False
        readded = {d.column.name for d in state.dropped} & set(model.column_names(sub.table))
        if not readded:
            return False

        def without(row: Mapping[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in row.items() if k not in readded}

        own = [
            without(o)
            for o in model.visible_rows(sub.table, sub.owner) + model.maybe_rows(sub.table, sub.owner)
        ]
        return all(any(_same_values(without(r), o) for o in own) for r in rows)

    @staticmethod
    def _flush_gap(session: Session, sub: LiveSub, rows: list[dict[str, Any]], problem: str) -> bool:
        """Whether a snapshot batch short of rows came while the table's flush was running.

        A snapshot is a read of the table's hot and cold rows; rows on their way from one to the other are the
        flush's (named as a SELECT missing them would be: ``hot_cold_consistency``). A full batch that says
        ``has_more=false`` too early may be the batching's own failure as well: it is the flush's only when the
        job is still running now, right after the batch arrived (the model's "running" means only "not awaited
        yet": without a flush delay the job is long done).
        """
        state = session.model.tables.get(sub.table)
        if state is None or state.flush.running_job is None:
            return False
        if "misses row" not in problem and "the model expects" not in problem:
            return False
        if len(rows) < sub.options.limit:
            return True
        try:
            job = session.pool.root.job_status(state.flush.running_job)
        except KalamError:
            return False
        return job is not None and job.get("status") not in TERMINAL_JOB_STATUSES

    def _next_batch(self, session: Session, step: NextBatch) -> None:
        sub = self.live.subs.get(step.sub_id)
        if sub is None or sub.status != "loading" or step.sub_id not in self.conns:
            return
        try:
            self.conns[step.sub_id].next_batch(step.sub_id, sub.last_seq)
        except (KalamError, OSError) as exc:
            raise self._div(session, sub, step, f"next_batch could not be sent: {exc}") from exc
        self._take_batch(session, sub, step)

    def _unsubscribe(self, session: Session, step: Unsubscribe) -> None:
        sub = self.live.subs.get(step.sub_id)
        if sub is not None and step.sub_id in self.handles and sub.ready:
            # Changes of writes made before the unsubscribe may still be in flight: take them first, so that
            # the floor below (the newest _seq seen) covers them and they are not "changes after unsubscribe".
            if sub.required_pending():
                self._await(session, sub, step)
        conn = self.conns.pop(step.sub_id, None)
        self.handles.pop(step.sub_id, None)
        if sub is None or conn is None:
            return
        self.live.close(step.sub_id, disconnected=step.disconnect)
        if step.disconnect:
            conn.close(timeout=1.0)
            return
        try:
            conn.unsubscribe(step.sub_id)
        except (KalamError, OSError):
            conn.close(timeout=1.0)
            return
        floor = max(self.live.seqs.values(), default=0)
        self.retired.append((conn, floor))

    # ------------------------------------------------------------------ events

    def _collect(self, session: Session, step: Step) -> None:
        """Wait for the required changes of ready subscriptions; check whatever else has arrived."""
        for sub in self.live.open_subs():
            if sub.id not in self.handles:
                continue
            if sub.ready and sub.required_pending():
                self._await(session, sub, step)
            else:
                self._drain(session, sub, step)

    def _drain_all(self, session: Session, step: Step) -> None:
        for sub in self.live.open_subs():
            if sub.id in self.handles:
                self._drain(session, sub, step)

    def _drain(self, session: Session, sub: LiveSub, step: Step) -> None:
        for msg in self.handles[sub.id].pending():
            self._process(session, sub, step, msg)
            if sub.id not in self.handles:
                return  # the server ended it
        conn = self.conns[sub.id]
        if conn.closed:
            self._told(
                session,
                sub,
                step,
                f"the live connection closed (code={conn.close_code}, {conn.close_reason!r})",
            )

    def _await(self, session: Session, sub: LiveSub, step: Step | None) -> None:
        handle = self.handles[sub.id]
        deadline = time.monotonic() + self.event_timeout
        while sub.required_pending():
            try:
                msg = handle.get(max(0.0, deadline - time.monotonic()))
            except DeadlineExceeded:
                missing = [c.describe() for c in sub.expected if not c.optional]
                raise self._div(
                    session,
                    sub,
                    step,
                    f"expected change(s) did not arrive within {self.event_timeout:g} s: {missing[:5]}",
                    expected=[_change_data(c) for c in sub.expected][:5],
                    actual="nothing",
                ) from None
            except ConnectionClosed as exc:
                self._told(session, sub, step, f"the connection closed: {exc}")
                return
            self._process(session, sub, step, msg)

    def _told(self, session: Session, sub: LiveSub, step: Step | None, how: str) -> None:
        """The server ended ``sub`` (``how``): the end of its obligations where the contract allows it."""
        problem = self.live.end(sub.id, how)
        if problem is not None:
            raise self._div(
                session,
                sub,
                step,
                problem,
                expected=[_change_data(c) for c in sub.expected][:5],
                actual=how,
            )
        self.stats["told"] += 1
        conn, handle = self.conns.pop(sub.id, None), self.handles.pop(sub.id, None)
        if conn is not None and handle is not None:
            self.ended.append((sub, conn, handle))

    def _decoded(self, session: Session, sub: LiveSub, step: Step | None, msg: LiveMessage) -> LiveMessage:
        """``msg`` with its rows decoded against the table as it is now (§9: the ack schema goes stale).

        Columns added or re-added since the ack are decoded by their current type, dropped ones as given
        (they must be absent or NULL), the others by the ack's types; a cell that does not decode is a
        divergence."""
        state = session.model.tables.get(sub.table)
        schema = self.handles[sub.id].schema if sub.id in self.handles else None
        if state is None or schema is None:
            if msg.decode_error is None:
                return msg
            state_cols: list[Column] = list(schema or [])
        else:
            cols = self.live.columns_of(state, sub)
            if not cols.fresh and not cols.gone and msg.decode_error is None:
                return msg
            state_cols = [c for c in schema if c.name in cols.compared or c.name.startswith("_")]
            for name in cols.fresh:
                col_type = state.column_type(name)
                wire = _WIRE_TYPES.get(col_type) if col_type is not None else None
                if wire is not None:
                    state_cols.append(Column(name, wire, len(state_cols), ()))
        try:
            rows = _decode_rows(msg.raw.get("rows"), state_cols)
            old = _decode_rows(msg.raw.get("old_values"), state_cols)
        except KalamError as exc:
            raise self._div(
                session, sub, step, f"{msg.type} cells do not match the table's types: {exc}", actual=msg.raw
            ) from exc
        return attrs.evolve(msg, rows=rows, old_values=old, decode_error=None)

    def _process(self, session: Session, sub: LiveSub, step: Step | None, msg: LiveMessage) -> None:
        if msg.type == "error":
            self._told(session, sub, step, _error_text(msg))
            return
        if msg.type != "change":
            raise self._div(session, sub, step, f"unexpected {msg.type} message: {msg.raw}", actual=msg.raw)
        msg = self._decoded(session, sub, step, msg)
        if sub.status == "loading":
            raise self._div(
                session,
                sub,
                step,
                "a change arrived before the last snapshot batch (changes during a snapshot are buffered "
                f"until it completes, §10.6): {msg.raw}",
                actual=msg.raw,
            )
        change, problem = self.live.check_change(
            session.model, sub, msg.change_type, msg.rows, msg.old_values
        )
        if problem is not None:
            invariant = Invariant.ISOLATION if self._foreign(sub, msg) else Invariant.LIVE_QUERY
            raise self._div(
                session,
                sub,
                step,
                f"change message disagrees with the model: {problem}",
                invariant=invariant,
                expected=[_change_data(c) for c in sub.expected][:5],
                actual=msg.raw,
            )
        self.stats["changes"] += 1
        if change is not None and change.kind == "delete" and msg.old_values:
            self.live.note_delete_seq(sub, change, msg.old_values[0].get("_seq"))

    def _foreign(self, sub: LiveSub, msg: LiveMessage) -> bool:
        """Whether ``msg`` looks like a change of another user's row (isolation rather than live_query)."""
        if sub.kind is TableKind.SHARED:
            return False
        values = (msg.rows or msg.old_values or [{}])[0]
        for table, change in self._recent:
            if table != sub.table or change.owner == sub.owner or change.kind != msg.change_type:
                continue
            if _same_values(values, change.row):
                return True
        return False

    def _foreign_rows(self, session: Session, sub: LiveSub, rows: list[dict[str, Any]]) -> bool:
        """Whether a snapshot row the subscriber does not own is, by the model, another owner's row."""
        if sub.kind is TableKind.SHARED or sub.table not in session.model.tables:
            return False
        model = session.model
        own = model.visible_rows(sub.table, sub.owner) + model.maybe_rows(sub.table, sub.owner)
        strangers = [r for r in rows if not any(_same_values(r, o) for o in own)]
        for other in model.scopes(sub.table):
            if other == sub.owner:
                continue
            theirs = model.visible_rows(sub.table, other) + model.maybe_rows(sub.table, other)
            if any(_same_values(r, t) for r in strangers for t in theirs):
                return True
        return False

    # ------------------------------------------------------------------ full checks

    def _sql_check(self, session: Session, sub: LiveSub, step: Step | None) -> None:
        """The rows the subscription holds agree with a SQL read of its query by the subscriber."""
        model = session.model
        table = model.tables.get(sub.table)
        if (
            table is None
            or sub.table_dropped
            or table.kind is TableKind.STREAM
            or not sub.ready
            or sub.expected
            or sub.resume_from is not None
            or not sub.options.snapshot
            or sub.options.last_rows is not None
            or table.pk is None
            or self.live.unanswerable(table, sub)
        ):
            return  # (unanswerable: its query names a column that is gone, so SQL would refuse it)
        pk = table.pk.column.name
        cols = self.live.compared_columns(table, sub)
        self.stats["sql_checks"] += 1
        client = session.pool.client(sub.actor)
        try:
            result = client.read_all(
                f"{session.ns}.{sub.table}",
                order_by=pk,
                columns=", ".join(cols),
                where=None if sub.where is None else sub.where.render(),
            )
        except (SqlError, TransportError, DeadlineExceeded) as exc:
            raise self._div(
                session, sub, step, f"SQL read of the subscription's query failed: {exc}"
            ) from exc
        self._sql_agrees_with_model(session, sub, cols, result)
        from ..model._live_rows import _key, _same

        seen = set()
        for row in result.dicts():
            key = _key(row[pk])
            seen.add(key)
            held = sub.view.get(key)
            if held is None:
                raise self._div(
                    session, sub, step, f"SQL returns {row} but the subscription never received that row"
                )
            for name in cols:
                if not _same(table.column_type(name), row.get(name), held.get(name)):
                    raise self._div(session, sub, step, f"SQL returns {row}, the subscription holds {held}")
        scope = model._scope(table, sub.owner)
        newest = {} if scope is None else {_key(k): v for k, v in model._newest(scope).items()}
        for key, held in sub.view.items():
            if key in seen:
                continue
            version = newest.get(key)
            newest_row = None if version is None else model._row(table, version.values, version.deleted)
            left_filter = (
                newest_row is not None
                and self.live.admits(table, sub, newest_row) is not True
            )
            if not left_filter:
                raise self._div(
                    session, sub, step, f"the subscription holds {held} which a SQL read no longer returns"
                )

    def _check_retired(self, session: Session, step: Step | None) -> None:
        for conn, floor in self.retired:
            for msg in conn.unrouted.pending():
                if msg.type != "change":
                    continue
                seqs = [r.get("_seq") for r in (msg.rows or []) + (msg.old_values or [])]
                if any(isinstance(s, int) and s > floor for s in seqs):
                    raise Divergence(
                        Invariant.LIVE_QUERY,
                        f"subscription {msg.subscription_id!r} got a change after unsubscribe: {msg.raw}",
                        step_index=session.step_index,
                        step=step.describe() if step is not None else None,
                        request="unsubscribe",
                        actual=msg.raw,
                        namespace=session.ns,
                    )

    def _check_ended(self, session: Session, step: Step | None, deadline: float) -> None:
        """Nothing arrives for a subscription after the server told the client it ended (up to ``deadline``:
        the quiet window of a final check)."""
        for sub, _conn, handle in self.ended:
            while True:
                try:
                    msg = handle.get(max(0.0, deadline - time.monotonic()))
                except (DeadlineExceeded, ConnectionClosed):
                    break
                raise self._div(
                    session,
                    sub,
                    step,
                    f"a {msg.type} message arrived after the server ended the subscription ({sub.told})",
                    actual=msg.raw,
                )

    # ------------------------------------------------------------------ reporting

    def _record(self, session: Session, step: Step, started: float) -> None:
        session.transcript.append(
            TranscriptEntry(
                step_index=session.step_index,
                request=f"[ws] {step.describe()}",
                actor=getattr(step, "actor", "root"),
                status="ok",
                summary="",
                ms=round((time.perf_counter() - started) * 1000, 3),
            )
        )

    def _sql_agrees_with_model(
        self, session: Session, sub: LiveSub, cols: list[str], result: QueryResult
    ) -> None:
        """The SQL read that the subscription is cross-checked with must itself agree with the model; if it
        does not, the read path is at fault (e.g. it leaks another user's rows), not the subscription, and the
        divergence is attributed as the runner attributes a wrong SELECT."""
        expected = session.model.select(sub.actor, sub.table, cols, sub.where, unlimited=True)
        if not isinstance(expected, ExpectRows):
            return
        outcome = outcome_of_result(result)
        problem = compare_outcome(expected, outcome)
        if problem is None:
            return
        where = "" if sub.where is None else f" WHERE {sub.where.render()}"
        request = Request(sub.actor, f"SELECT {', '.join(cols)} FROM {session.ns}.{sub.table}{where} (paged)")
        raise session.divergence(
            session.current_step(),
            request,
            expected,
            outcome,
            f"SQL read of subscription {sub.id}'s query by {sub.actor}: {problem}",
            table=sub.table,
        )

    def _div(
        self,
        session: Session,
        sub: LiveSub | None,
        step: Step | None,
        message: str,
        *,
        invariant: Invariant = Invariant.LIVE_QUERY,
        actor: str | None = None,
        expected: Any = None,  # Any: what the message shows (rows, changes, raw frames)
        actual: Any = None,
    ) -> Divergence:
        where = ""
        request = None
        if sub is not None:
            cols = "*" if sub.columns is None else ", ".join(sub.columns)
            filt = "" if sub.where is None else f" WHERE {sub.where.render()}"
            request = f"[ws {sub.id}] SELECT {cols} FROM {session.ns}.{sub.table}{filt} options={sub.options}"
            where = f"subscription {sub.id} ({sub.actor} on {sub.table}): "
        return Divergence(
            invariant,
            where + message,
            step_index=session.step_index,
            step=step.describe() if step is not None else None,
            request=request,
            actor=actor or (sub.actor if sub is not None else None),
            expected=expected,
            actual=actual,
            namespace=session.ns,
        )


def _same_values(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two rows agree on every user column both carry (at least one; ``_seq``/``_deleted`` aside)."""
    shared = [k for k in a if k in b and not k.startswith("_")]
    return bool(shared) and all(a[k] == b[k] for k in shared)


def _change_data(change: LiveChange) -> dict[str, Any]:
    data = {"kind": change.kind, "key": change.key, "row": change.row, "optional": change.optional}
    if change.tell:
        data["tell"] = True  # the filter cannot evaluate it: the server must tell the client
    return data


#: the wire type of each model column type (PROTOCOL §2.4), to decode columns the stale ack does not describe
_WIRE_TYPES = {
    ColumnType.BIGINT: "BigInt",
    ColumnType.INT: "Int",
    ColumnType.SMALLINT: "SmallInt",
    ColumnType.DOUBLE: "Double",
    ColumnType.BOOLEAN: "Boolean",
    ColumnType.TEXT: "Text",
    ColumnType.TIMESTAMP: "Timestamp",
    ColumnType.JSON: "Json",
}


def _error_text(msg: LiveMessage) -> str:
    return f"error {msg.code or '?'}: {msg.message or ''}".strip()


def _decode_rows(value: Any, columns: list[Column]) -> list[dict[str, Any]] | None:  # Any: raw JSON
    if value is None:
        return None
    if not isinstance(value, list):
        raise TransportError(f"a live message carries rows that are not an array: {value!r}")
    return [decode_live_row(r, columns) for r in value]


def live_extension(session: Session) -> LiveExtension:
    """The extension factory for ``Runner(..., extensions=[live_extension])``."""
    return LiveExtension(session)
