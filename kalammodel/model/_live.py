"""The live-query model: what every open subscription must receive (PROTOCOL §10), as pure state.

A :class:`LiveModel` sits next to a :class:`~kalammodel.model.Model` and watches it. Around each step the
runner calls :meth:`LiveModel.begin_step` and :meth:`LiveModel.end_step`; the new row versions the step wrote
become :class:`LiveChange` records (insert, update, delete) and each open subscription whose scope and filter
admit a change queues it as an *expected* change. The runner then compares what arrives, message by message,
with :meth:`LiveModel.check_change` and the snapshot batches with :meth:`LiveModel.check_batch`.

Order: the server's ``_seq`` orders versions; the model's write numbers order them the same way across
steps, but versions written by one statement (one step) may get their ``_seq`` in any order. Such a set is a
*group*; inside a group the model accepts any order, across groups it demands the model's order.

A live filter is any predicate of the query grammar, over nullable columns too; an acknowledged subscription
delivers every change whose new row the filter admits by SQL three-valued logic (``evaluate(row) is True``).

The model never stops predicting a subscription. After ALTER TABLE its names bind to the current table, its
filter is judged by SQL three-valued logic, and where the contract lets the server give up (a filter beyond the
live grammar, a column it names dropped, its table dropped, changes buffered during its snapshot) being told —
an ``error`` message or a close — ends its obligations (:mod:`kalammodel.model._live_rows`, docs/invariants.md).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._live_batch import LiveRows
from ._live_rows import (
    REFUSALS,
    LiveChange,
    LiveOptions,
    LiveSub,
    _key,
    _same,
    give_up_reason,
    sub_columns,
    unevaluable,
)
from ._predicates import Predicate
from ._types import TableKind

if TYPE_CHECKING:
    from ._model import Model
    from ._state import TableState

__all__ = [
    "REFUSALS",
    "LiveChange",
    "LiveModel",
    "LiveOptions",
    "LiveSub",
    "_key",
    "_same",
]


@attrs.define
class LiveModel(LiveRows):
    """Every subscription of one example and the changes each must still receive."""

    subs: dict[str, LiveSub] = attrs.Factory(dict)
    #: (first write number, last write number, step index) of every step that wrote
    groups: list[tuple[int, int, int]] = attrs.Factory(list)
    #: write number -> _seq, learned from snapshot rows and change events
    seqs: dict[int, int] = attrs.Factory(dict)
    _stream_seen: dict[tuple[str, str | None], dict[int, Any]] = attrs.Factory(dict)

    # ------------------------------------------------------------------ subscriptions

    def subscribe(
        self,
        model: Model,
        sub_id: str,
        actor: str,
        table_name: str,
        columns: tuple[str, ...] | None,
        where: Predicate | None,
        options: LiveOptions,
        resume_from: int | None = None,
        resume_seq: int | None = None,
    ) -> tuple[LiveSub | None, tuple[str, ...] | None]:
        """Register a subscription; returns ``(sub, None)`` or ``(None, the codes its refusal may carry)``.

        Refusals, in KalamDB's order (:data:`~kalammodel.model._live_rows.REFUSALS`): last_rows above batch_size
        (UNSUPPORTED); unknown table; a role that may not read a SHARED table (UNAUTHORIZED); unknown projected
        or filtered column. The last two planning failures carry one of a family of codes.
        """
        # KalamDB validates the options before it plans the query (kalamdb-api ws/events/subscription.rs
        # handle_subscribe: validate_subscription_options comes first), so UNSUPPORTED wins over every other
        # refusal.
        if (
            resume_from is None
            and options.snapshot
            and options.last_rows is not None
            and options.last_rows > options.limit
        ):
            return None, REFUSALS["last_rows"]
        table = model.tables.get(table_name)
        if table is None:
            return None, REFUSALS["table"]
        role = model.role_of(actor)
        if table.kind is TableKind.SHARED:
            from ._state import AccessLevel, _can_read_shared

            level = table.spec.access_level or AccessLevel.PRIVATE
            if not _can_read_shared(level, role):
                return None, REFUSALS["access"]
        names = [s.column.name for s in table.columns]
        used = set(columns or ()) | (set(where.columns()) if where is not None else set())
        if any(n not in names for n in used):
            return None, REFUSALS["column"]
        owner = None if table.kind is TableKind.SHARED else actor
        sub = LiveSub(
            id=sub_id,
            actor=actor,
            table=table_name,
            kind=table.kind,
            owner=owner,
            columns=columns,
            where=where,
            options=options,
            column_ids={s.column.name: s.column_id for s in table.columns},
            boundary=model.write_no,
            resume_from=resume_from,
            resume_seq=resume_seq,
            status="loading" if (options.snapshot or resume_from is not None) else "ready",
            column_types={s.column.name: s.column.type for s in table.columns},
        )
        sub.may_end = give_up_reason(table, sub)
        self.subs[sub_id] = sub
        return sub, None

    def open_subs(self, table: str | None = None) -> list[LiveSub]:
        return [
            s
            for s in self.subs.values()
            if s.status in ("loading", "ready") and (table is None or s.table == table)
        ]

    def close(self, sub_id: str, disconnected: bool = False) -> None:
        sub = self.subs.get(sub_id)
        if sub is not None and sub.status in ("loading", "ready"):
            sub.status = "closed"
            sub.disconnected = disconnected
            sub.expected.clear()

    def end(self, sub_id: str, how: str) -> str | None:
        """The server told the client that ``sub_id`` ended (``how``: its error message, or the close).

        Returns None when the contract lets it (the obligations end: status ``ended``), else why it may not.
        """
        sub = self.subs.get(sub_id)
        if sub is None or sub.status not in ("loading", "ready"):
            return None
        if sub.may_end is None:
            return (
                f"the server ended the subscription ({how}) although the contract obliges it to keep "
                "delivering: its filter is in the live grammar, no column it names was dropped, its table "
                "exists and no change was buffered during its snapshot"
            )
        sub.status = "ended"
        sub.told = how
        sub.expected.clear()
        return None

    # ------------------------------------------------------------------ steps

    def begin_step(self, model: Model) -> int:
        """Call before a step: returns the watermark to hand to :meth:`end_step`."""
        for table_name in {s.table for s in self.open_subs()}:
            table = model.tables.get(table_name)
            if table is not None and table.kind is TableKind.STREAM:
                for owner, scope in table.scopes.items():
                    self._stream_seen[(table_name, owner)] = {r.write_no: r for r in scope.stream_rows}
        return model.write_no

    def end_step(
        self, model: Model, watermark: int, step_index: int, *, stream_deletes: bool = True
    ) -> list[tuple[str, LiveChange]]:
        """Call after a step: queue the changes it made on every open subscription that must see them.

        Returns every change of the step in the subscribed tables, as ``(table, change)``, in all scopes.
        """
        if model.write_no > watermark:
            self.groups.append((watermark + 1, model.write_no, step_index))
        subs = self.open_subs()
        everything: list[tuple[str, LiveChange]] = []
        if not subs:
            self._stream_seen.clear()
            return everything
        for table_name in sorted({s.table for s in subs}):
            table = model.tables.get(table_name)
            table_subs = [s for s in subs if s.table == table_name and not s.table_dropped]
            if table is None:  # dropped: nothing more may arrive; the server may tell the client
                for sub in table_subs:
                    sub.table_dropped = True
                    sub.may_end = sub.may_end or "its table was dropped"
                    sub.expected.clear()
                continue
            changes = self._changes(model, table, table_name, watermark, step_index, stream_deletes)
            everything.extend((table_name, c) for c in changes)
            for sub in table_subs:
                for change in changes:
                    admitted = self._admits(table, sub, change)
                    if admitted is False:
                        continue
                    sub.buffered = sub.buffered or sub.status == "loading"
                    sub.expected.append(change if admitted else attrs.evolve(change, tell=True))
                sub.may_end = sub.may_end or give_up_reason(table, sub)
        self._stream_seen.clear()
        return everything

    def _changes(
        self,
        model: Model,
        table: TableState,
        table_name: str,
        watermark: int,
        step_index: int,
        stream_deletes: bool,
    ) -> list[LiveChange]:
        out: list[LiveChange] = []
        if table.kind is TableKind.STREAM:
            for owner, scope in table.scopes.items():
                before = self._stream_seen.get((table_name, owner), {})
                now = {r.write_no: r for r in scope.stream_rows}
                for w, stream_row in sorted(now.items()):
                    if w > watermark:
                        values = model._row(table, stream_row.values)
                        out.append(LiveChange("insert", w, values, None, w, step_index, owner))
                for w, stream_row in sorted(before.items()):
                    if stream_deletes and w not in now:  # removed by this step's DELETE, not by TTL
                        near_ttl = model._stream_state(stream_row, table.spec.ttl_seconds or 0) != "sure"
                        values = model._row(table, stream_row.values)
                        out.append(
                            LiveChange(
                                "delete", w, values, None, w, step_index, owner, optional=near_ttl, hard=True
                            )
                        )
            return out
        from ._state import _same as _model_same

        for owner, scope in table.scopes.items():
            for key, versions in scope.versions.items():
                previous = None
                for version in versions:
                    if version.write_no <= watermark:
                        previous = version
                        continue
                    row = model._row(table, version.values, version.deleted)
                    old = None if previous is None else model._row(table, previous.values, previous.deleted)
                    if version.deleted:
                        kind = "delete"
                    elif previous is None or previous.deleted:
                        kind = "insert"
                    else:
                        kind = "update"
                    optional = False
                    if kind == "update" and previous is not None:
                        cids = set(version.values) | set(previous.values)
                        verdicts = [_model_same(previous.values.get(c), version.values.get(c)) for c in cids]
                        optional = not any(v is False for v in verdicts)  # -0.0 vs 0.0: maybe no change
                    out.append(LiveChange(kind, key, row, old, version.write_no, step_index, owner, optional))
                    previous = version
        out.sort(key=lambda c: c.write_no)
        return out

    def _admits(self, table: TableState, sub: LiveSub, change: LiveChange) -> bool | None:
        """Whether ``sub`` must get ``change``: True, False, or None (the filter cannot evaluate it)."""
        if sub.kind is not TableKind.SHARED and change.owner != sub.owner:
            return False
        if change.hard:
            return sub.where is None  # a hard delete carries no values to filter (§10.4)
        return self.admits(table, sub, change.row)

    def check_change(
        self,
        model: Model,
        sub: LiveSub,
        change_type: str | None,
        rows: Sequence[Mapping[str, Any]] | None,
        old_values: Sequence[Mapping[str, Any]] | None,
    ) -> tuple[LiveChange | None, str | None]:
        """Match one received ``change`` message with the expected queue.

        Returns ``(change, None)`` when it is the next expected change (or one of its group), after skipping
        optional ones it passed; ``(None, problem)`` otherwise. On success the view is updated.
        """
        table = model.tables.get(sub.table)
        if table is None or sub.table_dropped:
            return None, "a change arrived after the subscription's table was dropped"
        queue = list(sub.expected)
        if not queue:
            return None, "no change was expected"
        # candidates: every change up to the first group holding a required one (any order inside a group;
        # optional changes before it may be skipped)
        required = next((c.group for c in queue if not c.optional), None)
        window = [c for c in queue if required is None or c.group <= required]
        problems: list[str] = []
        for change in window:
            problem = self._change_problem(table, sub, change, change_type, rows, old_values)
            if problem is None:
                sub.expected = deque(
                    c for c in queue if c is not change and not (c.optional and c.group < change.group)
                )
                self._apply(table, sub, change, rows)
                return change, None
            problems.append(f"{change.describe()}: {problem}")
        return None, "; ".join(problems[:4])

    def _change_problem(
        self,
        table: TableState,
        sub: LiveSub,
        change: LiveChange,
        change_type: str | None,
        rows: Sequence[Mapping[str, Any]] | None,
        old_values: Sequence[Mapping[str, Any]] | None,
    ) -> str | None:
        if change.tell:
            cols = sorted(unevaluable(table, sub))
            return (
                f"its filter cannot be evaluated on this change (column(s) {cols} are gone): the server must "
                "tell the client (an error or a close), not deliver it"
            )
        if change_type != change.kind:
            return f"change_type {change_type!r}"
        pk = table.pk
        if change.hard:
            if rows:
                return f"a STREAM delete carries rows {rows}"
            if not old_values or len(old_values) != 1:
                return f"a STREAM delete must carry one old_values entry (got {old_values})"
            return None
        if change.kind in ("insert", "update"):
            if not rows or len(rows) != 1:
                return f"expected exactly one row in rows (got {len(rows or [])})"
            row = rows[0]
            if pk is not None and _key(row.get(pk.column.name)) != _key(change.row.get(pk.column.name)):
                return f"primary key {row.get(pk.column.name)!r}"
            if change.kind == "insert":
                if old_values:
                    return f"an insert carries old_values {old_values}"
                return self.row_problem(table, sub, change.row, row, full=True)
            return self._update_problem(table, sub, change, row, old_values)
        # soft delete: the tombstone in old_values
        if rows:
            return f"a delete carries rows {rows}"
        if not old_values or len(old_values) != 1:
            return f"a delete must carry one old_values entry, the tombstone (got {old_values})"
        tomb = old_values[0]
        if pk is not None and _key(tomb.get(pk.column.name)) != _key(change.row.get(pk.column.name)):
            return f"tombstone primary key {tomb.get(pk.column.name)!r}"
        return self.row_problem(table, sub, change.row, tomb, full=True, deleted=True)

    def _update_problem(
        self,
        table: TableState,
        sub: LiveSub,
        change: LiveChange,
        row: Mapping[str, Any],
        old_values: Sequence[Mapping[str, Any]] | None,
    ) -> str | None:
        """An update: ``rows`` = [_seq, PK, every non-NULL column], ``old_values`` = [_seq, PK, the changed
        columns' old values]; a fresh column is held to this when present, a gone one is absent or NULL."""
        problem = self.row_problem(table, sub, change.row, row, full=False)
        if problem is not None:
            return f"new values: {problem}"
        cols = sub_columns(table, sub)
        shown = [*cols.compared, *cols.fresh]
        nulled = [n for n in shown if n in row and change.row.get(n) is None]
        if nulled:
            return f"update rows carry NULL column(s) {nulled}; the delta lists only non-null columns"
        if not old_values or len(old_values) != 1:
            return f"an update must carry one old_values entry (got {old_values})"
        old = old_values[0]
        assert change.old is not None
        changed = [n for n in shown if not _same(table.column_type(n), change.old.get(n), change.row.get(n))]
        pk = table.pk
        pk_name = pk.column.name if pk is not None else None
        extra = sorted(k for k in old if k not in cols.allowed())
        if extra:
            return f"old_values carries unexpected column(s) {extra}"
        for name in shown:
            if name == pk_name or name not in old:
                continue
            if name not in changed:
                return f"old_values lists unchanged column {name!r}"
            if not _same(table.column_type(name), change.old.get(name), old.get(name)):
                return f"old_values {name!r} is {old.get(name)!r}, expected {change.old.get(name)!r}"
        for name in cols.gone:
            if old.get(name) is not None:
                return f"old_values {name!r} (dropped since the subscription started) is {old[name]!r}"
        lost = [
            n
            for n in changed
            if n != pk_name and n not in old and change.old.get(n) is not None and n in cols.compared
        ]
        if lost:
            return f"old_values misses changed column(s) {lost}"
        if isinstance(old.get("_seq"), int) and old["_seq"] >= row["_seq"]:
            return f"old_values _seq {old['_seq']} is not below the new _seq {row['_seq']}"
        return None

    def _apply(
        self, table: TableState, sub: LiveSub, change: LiveChange, rows: Sequence[Mapping[str, Any]] | None
    ) -> None:
        key = _key(change.key)
        if change.kind == "delete":
            sub.view.pop(key, None)
        else:
            sub.view[key] = self._project(table, sub, change.row)
            seq = rows[0].get("_seq") if rows else None
            if isinstance(seq, int):
                self.seqs[change.write_no] = seq
                self._seen(sub, seq, change.write_no)

    def note_delete_seq(self, sub: LiveSub, change: LiveChange, seq: Any) -> None:
        """Learn the tombstone's ``_seq`` (a resume point may be a delete)."""
        if isinstance(seq, int) and not change.hard:
            self.seqs[change.write_no] = seq
            self._seen(sub, seq, change.write_no)

    def view_problem(self, model: Model, sub: LiveSub) -> str | None:
        """Snapshot + changes received == the model's rows matching the filter (stale rows allowed only when
        their newest version left the filter, which sends nothing, §10.5)."""
        if sub.status != "ready" or sub.expected:
            return None
        table = model.tables.get(sub.table)
        if table is None or sub.table_dropped or table.kind is TableKind.STREAM:
            return None
        if unevaluable(table, sub):
            return None  # its query names a column that is gone: no rows are its rows any more
        if sub.resume_from is not None:
            return None  # a resumed subscription starts from a partial snapshot by design
        scope = model._scope(table, sub.owner)
        newest = {} if scope is None else model._newest(scope)
        by_key = {_key(k): v for k, v in newest.items()}
        for key, version in by_key.items():
            if version.write_no <= sub.boundary and not sub.options.snapshot:
                continue  # existed before a subscription without snapshot: never sent
            if sub.options.last_rows is not None and version.write_no <= sub.boundary:
                continue  # last_rows sends only the newest rows of the snapshot
            row = model._row(table, version.values, version.deleted)
            admits = self.admits(table, sub, row) is True
            if version.deleted or not admits:
                if key in sub.view and admits:
                    return f"row {sub.view[key]} is still in the subscription after its delete"
                continue
            want = self._project(table, sub, row)
            got = sub.view.get(key)
            if got is None:
                return f"row {want} never reached the subscription"
            for name, value in want.items():
                if not _same(table.column_type(name), value, got.get(name)):
                    return f"row {got} in the subscription, the model has {want}"
        for key in sub.view:
            if key not in by_key:
                return f"row {sub.view[key]} in the subscription was never written in its scope"
        return None
