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
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._predicates import Predicate
from ._types import ColumnType, TableKind, canonical_json

if TYPE_CHECKING:
    from ._model import Model
    from ._state import TableState

__all__ = [
    "LiveChange",
    "LiveModel",
    "LiveOptions",
    "LiveSub",
]

@attrs.frozen
class LiveOptions:
    """Subscription options (§10.3): no snapshot at all, or a snapshot in batches, optionally the newest N."""

    snapshot: bool = True
    batch_size: int | None = None
    last_rows: int | None = None

    def wire(self, from_seq: int | None = None) -> dict[str, Any] | None:
        """The ``options`` object of the subscribe message (None: omitted, so no snapshot)."""
        if not self.snapshot and from_seq is None:
            return None
        out: dict[str, Any] = {}
        if self.batch_size is not None:
            out["batch_size"] = self.batch_size
        if from_seq is not None:
            out["from_seq_id"] = from_seq
        elif self.last_rows is not None:
            out["last_rows"] = self.last_rows
        return out

    @property
    def limit(self) -> int:
        return self.batch_size if self.batch_size is not None else 1000


@attrs.frozen
class LiveChange:
    """One change the model expects a subscription to receive."""

    kind: str  # insert | update | delete
    key: Any  # primary key (STREAM without PK: the write number)
    row: dict[str, Any]  # new row (delete: the tombstone's values), by current column name
    old: dict[str, Any] | None  # previous row (update)
    write_no: int
    group: int  # step index: changes of one group may arrive in any order
    owner: str | None
    optional: bool = False  # the server may or may not send it (e.g. a STREAM row at its TTL)
    hard: bool = False  # STREAM hard delete: only a row id, no values

    def describe(self) -> str:
        return f"{self.kind} of key {self.key!r} (write #{self.write_no}, step #{self.group})"


@attrs.frozen
class _Candidate:
    write_no: int
    group: int
    key: Any
    row: dict[str, Any]
    maybe: bool


@attrs.define
class LiveSub:
    """The model's view of one subscription."""

    id: str
    actor: str
    table: str
    kind: TableKind
    owner: str | None  # whose rows (USER/STREAM); None for SHARED
    columns: tuple[str, ...] | None
    where: Predicate | None
    options: LiveOptions
    column_ids: dict[str, int]  # name -> column id at subscribe time (ALTER tolerance)
    boundary: int  # model write number at subscribe: the snapshot holds versions up to it
    resume_from: int | None = None  # write number of the from_seq_id resume point
    resume_seq: int | None = None
    status: str = "loading"  # loading | ready | closed | refused
    batch_num: int = 0
    delivered: set[Any] = attrs.Factory(set)
    expected: deque[LiveChange] = attrs.Factory(deque)
    view: dict[Any, dict[str, Any]] = attrs.Factory(dict)
    last_seq: int | None = None  # last_seq_id of the last snapshot batch (the next_batch cursor)
    last_seq_seen: int | None = None  # newest _seq received (snapshot row or change): the resume point
    last_write: int | None = None  # the model write number of that version
    tainted: str | None = None  # why the model stopped predicting this subscription (ALTER of a used column)
    disconnected: bool = False

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def required_pending(self) -> int:
        return sum(1 for c in self.expected if not c.optional)


def _key(value: Any) -> Any:
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    return ("s", str(value))


def _same(col_type: ColumnType | None, a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if col_type is ColumnType.JSON and isinstance(a, str) and isinstance(b, str):
        try:
            return canonical_json(a) == canonical_json(b)
        except ValueError:
            return a == b
    if col_type is not None:
        try:
            return col_type.normalise(a) == col_type.normalise(b)
        except (TypeError, ValueError):
            return a == b
    return a == b


@attrs.define
class LiveModel:
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
    ) -> tuple[LiveSub | None, str | None]:
        """Register a subscription; returns ``(sub, None)`` or ``(None, expected error code)``.

        Errors, in KalamDB's order: last_rows above batch_size → UNSUPPORTED; unknown table → NOT_FOUND; a role
        that may not read a SHARED table → UNAUTHORIZED; unknown projected or filtered column → INVALID_SQL.
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
            return None, "UNSUPPORTED"
        table = model.tables.get(table_name)
        if table is None:
            return None, "NOT_FOUND"
        role = model.role_of(actor)
        if table.kind is TableKind.SHARED:
            from ._state import AccessLevel, _can_read_shared

            level = table.spec.access_level or AccessLevel.PRIVATE
            if not _can_read_shared(level, role):
                return None, "UNAUTHORIZED"
        names = [s.column.name for s in table.columns]
        used = set(columns or ()) | (set(where.columns()) if where is not None else set())
        if any(n not in names for n in used):
            return None, "INVALID_SQL"
        if (
            resume_from is None
            and options.snapshot
            and options.last_rows is not None
            and options.last_rows > options.limit
        ):
            return None, "UNSUPPORTED"
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
        )
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
            table_subs = [s for s in subs if s.table == table_name]
            if table is None:  # dropped: nothing more is predictable
                for sub in table_subs:
                    sub.tainted = sub.tainted or "the table was dropped"
                continue
            self._check_schema(table, table_subs)
            changes = self._changes(model, table, table_name, watermark, step_index, stream_deletes)
            everything.extend((table_name, c) for c in changes)
            for sub in table_subs:
                if sub.tainted:
                    continue
                for change in changes:
                    if self._admits(sub, change):
                        sub.expected.append(change)
        self._stream_seen.clear()
        return everything

    def _check_schema(self, table: TableState, subs: list[LiveSub]) -> None:
        current = {s.column.name: s.column_id for s in table.columns}
        for sub in subs:
            used = set(sub.columns or ()) | (set(sub.where.columns()) if sub.where is not None else set())
            moved = sorted(n for n in used if current.get(n) != sub.column_ids.get(n))
            if moved and not sub.tainted:
                sub.tainted = f"ALTER TABLE changed column(s) {moved} the subscription uses"
            readded = sorted(
                n for n, cid in current.items() if n in sub.column_ids and sub.column_ids[n] != cid
            )
            if readded and not sub.tainted:  # the stale ack schema now names a different column (§9)
                sub.tainted = f"ALTER TABLE added dropped column name(s) {readded} again"
            if set(current.values()) != set(sub.column_ids.values()) and not sub.tainted:
                # PROTOCOL §9: subscriptions get no schema-change signal and KalamDB's own scenario test
                # tolerates either outcome; the real server (0.4.3-rc.4) stops sending some UPDATE events
                # after ADD COLUMN. Recorded in docs/kalamdb-findings.md; not predicted here.
                sub.tainted = "ALTER TABLE changed the table's columns after the subscription started (§9)"

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

    def _admits(self, sub: LiveSub, change: LiveChange) -> bool:
        if sub.kind is not TableKind.SHARED and change.owner != sub.owner:
            return False
        if change.hard:
            return sub.where is None  # a hard delete carries no values to filter (§10.4)
        return sub.where is None or sub.where.evaluate(change.row) is True

    # ------------------------------------------------------------------ snapshot

    def group_of(self, write_no: int) -> int:
        starts = [g[0] for g in self.groups]
        i = bisect.bisect_right(starts, write_no) - 1
        if i >= 0 and self.groups[i][0] <= write_no <= self.groups[i][1]:
            return self.groups[i][2]
        return -1

    def _candidates(self, model: Model, sub: LiveSub) -> list[_Candidate]:
        """Rows the snapshot may still send: matching, visible, written before the subscription, not sent."""
        table = model.tables[sub.table]
        scope = model._scope(table, sub.owner)
        out: list[_Candidate] = []
        if scope is None:
            return out
        resume_group = None if sub.resume_from is None else self.group_of(sub.resume_from)
        items: list[tuple[int, Any, dict[str, Any], bool]] = []
        if table.kind is TableKind.STREAM:
            ttl = table.spec.ttl_seconds or 0
            for stream_row in scope.stream_rows:
                state = model._stream_state(stream_row, ttl)
                if state != "gone":
                    values = model._row(table, stream_row.values)
                    items.append((stream_row.write_no, stream_row.write_no, values, state != "sure"))
        else:
            for key, version in model._live(table, scope).items():
                items.append((version.write_no, key, model._row(table, version.values), False))
        for w, key, row, maybe in items:
            if w > sub.boundary or _key(key) in sub.delivered:
                continue
            if sub.where is not None and sub.where.evaluate(row) is not True:
                continue
            group = self.group_of(w)
            if sub.resume_from is not None:
                seq = self.seqs.get(w)
                if seq is not None and sub.resume_seq is not None:
                    if seq <= sub.resume_seq:
                        continue
                elif w < sub.resume_from and group != resume_group:
                    continue
                elif group == resume_group and w != sub.resume_from:
                    maybe = True  # same statement as the resume point: its _seq may lie on either side
                elif w == sub.resume_from:
                    continue
            out.append(_Candidate(w, group, key, row, maybe))
        out.sort(key=lambda c: c.write_no)
        return out

    def check_batch(
        self,
        model: Model,
        sub: LiveSub,
        rows: Sequence[Mapping[str, Any]],
        control: Mapping[str, Any] | None,
    ) -> str | None:
        """Check one ``initial_data_batch`` against the model; on success record what it delivered."""
        if sub.tainted:
            return None
        table = model.tables[sub.table]
        candidates = self._candidates(model, sub)
        first_batch = sub.batch_num == 0
        last_rows = (
            sub.options.last_rows
            if first_batch and sub.resume_from is None and sub.options.last_rows
            else None
        )
        limit = last_rows if last_rows is not None else sub.options.limit
        control = dict(control or {})
        has_more = bool(control.get("has_more"))
        if len(rows) > sub.options.limit:
            return f"batch #{sub.batch_num} has {len(rows)} rows, more than batch_size {sub.options.limit}"
        expected_status = "ready" if not has_more else ("loading" if first_batch else "loading_batch")
        if control.get("status") != expected_status or control.get("batch_num") != sub.batch_num:
            return (
                f"batch_control {control} of batch #{sub.batch_num}: expected batch_num {sub.batch_num} and "
                f"status {expected_status!r} for has_more={has_more}"
            )
        if last_rows is not None and has_more:
            return f"a last_rows={last_rows} snapshot must not set has_more (got {control})"
        # Match received rows to candidates, the earliest equal candidate first. Equal writes of one key (a
        # STREAM table keeps each) can be told apart only by the order they were written in, so when that
        # first choice does not explain the batch, an order-aware choice among the equal writes is tried.
        matched, seqs, problem = self._greedy_match(table, sub, rows, candidates)
        if problem is not None:
            return problem
        problem = self._batch_problem(table, sub, control, candidates, matched, seqs, limit, last_rows)
        if problem is not None:
            aligned = self._aligned_match(table, sub, rows, candidates)
            if aligned is None or self._batch_problem(
                table, sub, control, candidates, aligned, seqs, limit, last_rows
            ):
                return problem
            matched = aligned
        # record
        for cand, row in zip(matched, rows):
            self.seqs[cand.write_no] = int(row["_seq"])
            sub.delivered.add(_key(cand.key))
            sub.view[_key(cand.key)] = self._project(table, sub, cand.row)
            self._seen(sub, int(row["_seq"]), cand.write_no)
        if rows:
            sub.last_seq = seqs[-1]
        sub.batch_num += 1
        if not has_more:
            sub.status = "ready"
        return None

    def _greedy_match(
        self, table: TableState, sub: LiveSub, rows: Sequence[Mapping[str, Any]], candidates: list[_Candidate]
    ) -> tuple[list[_Candidate], list[int], str | None]:
        """Each received row matched with the earliest equal candidate left (:meth:`_match_row`), their _seqs,
        and why a row fits no candidate."""
        pool = list(candidates)
        matched: list[_Candidate] = []
        seqs: list[int] = []
        for i, row in enumerate(rows):
            seq = row.get("_seq")
            if not isinstance(seq, int):
                return matched, seqs, f"snapshot row #{i} {dict(row)} has no integer _seq"
            seqs.append(seq)
            cand = self._match_row(table, sub, row, pool)
            if cand is None:
                known = [c.row for c in candidates][:10]
                already = self._row_key(table, row) in sub.delivered
                why = (
                    "was already sent in an earlier batch"
                    if already
                    else "is not a row the snapshot may hold"
                )
                return matched, seqs, f"snapshot row {dict(row)} {why} (model candidates: {known})"
            pool.remove(cand)
            matched.append(cand)
        return matched, seqs, None

    def _batch_problem(
        self,
        table: TableState,
        sub: LiveSub,
        control: Mapping[str, Any],
        candidates: list[_Candidate],
        matched: list[_Candidate],
        seqs: list[int],
        limit: int,
        last_rows: int | None,
    ) -> str | None:
        """Why a batch whose rows are ``matched`` (one candidate per row, in the order received) disagrees with
        the model; None when it agrees."""
        has_more = bool(control.get("has_more"))
        by_key = {_key(c.key): c for c in matched}
        if any(b <= a for a, b in zip(seqs, seqs[1:])):
            return f"snapshot rows are not in ascending _seq order: {seqs}"
        # (write order is only known for rows with a key: equal PK-less rows are interchangeable, and their
        # _seq order is checked above)
        if table.pk is not None and any(b.group < a.group for a, b in zip(matched, matched[1:])):
            return f"snapshot rows out of write order: {[c.row for c in matched]}"
        if sub.batch_num > 0 and sub.last_seq is not None and seqs and seqs[0] <= sub.last_seq:
            return (
                f"batch #{sub.batch_num} starts at _seq {seqs[0]}, not after the last_seq_id {sub.last_seq}"
            )
        last_seq_id = control.get("last_seq_id")
        if seqs and last_seq_id is not None and int(last_seq_id) != seqs[-1]:
            return f"batch_control.last_seq_id {last_seq_id} is not the last row's _seq {seqs[-1]}"
        if seqs and last_seq_id is None:
            return f"batch_control.last_seq_id missing in a batch of {len(seqs)} rows"
        sure = [c for c in candidates if not c.maybe]
        missing: list[_Candidate] = []
        if last_rows is not None:
            low = matched[0].group if matched else None
            missing = [c for c in sure if _key(c.key) not in by_key and (low is None or c.group > low)]
            want = min(limit, len(sure))
        else:
            high = matched[-1].group if matched else None
            if not has_more:
                missing = [c for c in sure if _key(c.key) not in by_key]
            else:
                missing = [
                    c for c in sure if _key(c.key) not in by_key and high is not None and c.group < high
                ]
            want = min(limit, len(sure))
        if missing:
            return (
                f"snapshot batch #{sub.batch_num} misses row(s) {[c.row for c in missing][:5]} "
                f"(got {len(seqs)} rows, has_more={has_more})"
            )
        if len(seqs) < want:
            return f"snapshot batch #{sub.batch_num} has {len(seqs)} rows; the model expects {want}"
        maybe_left = len(candidates) > len(sure)
        if last_rows is None and not maybe_left:
            should_more = len(candidates) > limit
            if has_more != should_more:
                return (
                    f"batch #{sub.batch_num}: has_more={has_more} but {len(candidates)} row(s) were left for a "
                    f"batch_size of {limit}"
                )
        if has_more and len(seqs) != limit:
            return f"batch #{sub.batch_num} says has_more with only {len(seqs)} of batch_size {limit} rows"
        return None

    def _aligned_match(
        self, table: TableState, sub: LiveSub, rows: Sequence[Mapping[str, Any]], candidates: list[_Candidate]
    ) -> list[_Candidate] | None:
        """An assignment of candidates to ``rows`` that keeps write order and covers the most sure candidates,
        choosing among equal candidates (the same key and values, written more than once: a STREAM table
        keeps every write); None when there is no order-keeping assignment or the rows' equal candidates do
        not form classes.

        Rows in ascending _seq come from non-decreasing write groups, so the rows of one group are
        consecutive: a dynamic programme over (rows consumed, groups consumed) gives each group a run of rows,
        each row a candidate of its group equal to it, sure candidates before those that may have expired.
        """
        if table.pk is None:
            return None
        pk = table.pk.column.name
        # the candidates equal to each row (its class); equal rows share one class
        classes: list[tuple[int, ...]] = []
        for row in rows:
            fits = tuple(
                i
                for i, cand in enumerate(candidates)
                if _key(row.get(pk)) == _key(cand.row.get(pk))
                and self.row_problem(table, sub, cand.row, row, full=True) is None
            )
            if not fits:
                return None
            classes.append(fits)
        members = set(classes)
        if sum(len(m) for m in members) != len({i for m in members for i in m}):
            return None  # overlapping classes: not an equivalence, no shortcut
        groups = sorted({c.group for c in candidates})
        in_group: dict[tuple[tuple[int, ...], int], list[int]] = {}
        for cls in members:
            for i in cls:  # sure first, then by write order
                in_group.setdefault((cls, candidates[i].group), []).append(i)
        for ids in in_group.values():
            ids.sort(key=lambda i: (candidates[i].maybe, candidates[i].write_no))
        n, m = len(rows), len(groups)
        NONE = -1
        # best[i][j]: the most sure candidates covered by rows[i:] in groups[j:] (NONE: impossible)
        best = [[NONE] * (m + 1) for _ in range(n + 1)]
        choice = [[0] * (m + 1) for _ in range(n + 1)]
        for j in range(m + 1):
            best[n][j] = 0
        for j in range(m - 1, -1, -1):
            g = groups[j]
            for i in range(n - 1, -1, -1):
                top, run = best[i][j + 1], 0
                used: dict[tuple[int, ...], int] = {}
                covered = 0
                for k in range(i, n):
                    ids = in_group.get((classes[k], g), [])
                    taken = used.get(classes[k], 0)
                    if taken >= len(ids):
                        break
                    used[classes[k]] = taken + 1
                    covered += not candidates[ids[taken]].maybe
                    rest = best[k + 1][j + 1]
                    if rest != NONE and covered + rest > top:
                        top, run = covered + rest, k + 1 - i
                best[i][j], choice[i][j] = top, run
        if best[0][0] == NONE:
            return None
        out: list[_Candidate] = []
        i = j = 0
        while i < n:
            run = choice[i][j]
            used = {}
            for k in range(i, i + run):
                ids = in_group[(classes[k], groups[j])]
                taken = used.get(classes[k], 0)
                used[classes[k]] = taken + 1
                out.append(candidates[ids[taken]])
            i, j = i + run, j + 1
        return out

    def _seen(self, sub: LiveSub, seq: int, write_no: int) -> None:
        if sub.last_seq_seen is None or seq > sub.last_seq_seen:
            sub.last_seq_seen = seq
            sub.last_write = write_no

    def _row_key(self, table: TableState, row: Mapping[str, Any]) -> Any:
        pk = table.pk
        return _key(row.get(pk.column.name)) if pk is not None else None

    def _match_row(
        self, table: TableState, sub: LiveSub, row: Mapping[str, Any], pool: list[_Candidate]
    ) -> _Candidate | None:
        """The candidate ``row`` is, earliest written first. Without a PRIMARY KEY equal rows cannot be told
        apart: a candidate sure to be sent is taken before one near its TTL, so that what is left unmatched is
        what may have expired."""
        pk = table.pk
        maybe: _Candidate | None = None
        for cand in pool:
            if pk is not None and _key(row.get(pk.column.name)) != _key(cand.row.get(pk.column.name)):
                continue
            if self.row_problem(table, sub, cand.row, row, full=True) is None:
                if pk is not None or not cand.maybe:
                    return cand
                maybe = maybe or cand
        return maybe

    # ------------------------------------------------------------------ rows and changes

    def compared_columns(self, table: TableState, sub: LiveSub) -> list[str]:
        """Columns whose values are determined: projected (or all), and unchanged by ALTER since subscribe."""
        current = {s.column.name: s.column_id for s in table.columns}
        names = list(sub.columns) if sub.columns is not None else list(current)
        return [n for n in names if n in current and sub.column_ids.get(n) == current[n]]

    def _allowed_keys(self, table: TableState, sub: LiveSub) -> set[str]:
        allowed = set(self.compared_columns(table, sub)) | {"_seq", "_deleted"}
        if sub.columns is None:  # SELECT *: columns added or dropped by ALTER may show either way
            allowed |= {s.column.name for s in table.columns} | {s.column.name for s in table.dropped}
        pk = table.pk
        if pk is not None:
            allowed.add(pk.column.name)
        return allowed

    def _project(self, table: TableState, sub: LiveSub, row: Mapping[str, Any]) -> dict[str, Any]:
        return {n: row.get(n) for n in self.compared_columns(table, sub)}

    def row_problem(
        self,
        table: TableState,
        sub: LiveSub,
        expected: Mapping[str, Any],
        actual: Mapping[str, Any],
        *,
        full: bool,
        deleted: bool = False,
    ) -> str | None:
        """Why ``actual`` (a row of a message) differs from the model's ``expected`` row; None when it agrees.

        ``full``: every compared column must agree (an absent key counts as NULL); otherwise (update delta)
        absent keys are the NULLed columns.
        """
        allowed = self._allowed_keys(table, sub)
        extra = sorted(k for k in actual if k not in allowed)
        if extra:
            return f"unexpected column(s) {extra}"
        if not isinstance(actual.get("_seq"), int):
            return "no integer _seq"
        if "_deleted" in actual and actual["_deleted"] is not deleted:
            return f"_deleted is {actual['_deleted']!r}, expected {deleted}"
        for name in self.compared_columns(table, sub):
            want = expected.get(name)
            got = actual.get(name)
            if not _same(table.column_type(name), want, got):
                return f"column {name!r} is {got!r}, expected {want!r}"
        return None

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
        if table is None:
            return None, None
        if sub.tainted:
            return None, None
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
            problem = self.row_problem(table, sub, change.row, row, full=False)
            if problem is not None:
                return f"new values: {problem}"
            nulled = [n for n in self.compared_columns(table, sub) if n in row and change.row.get(n) is None]
            if nulled:
                return f"update rows carry NULL column(s) {nulled}; the delta lists only non-null columns"
            if not old_values or len(old_values) != 1:
                return f"an update must carry one old_values entry (got {old_values})"
            old = old_values[0]
            assert change.old is not None
            changed = [
                n
                for n in self.compared_columns(table, sub)
                if not _same(table.column_type(n), change.old.get(n), change.row.get(n))
            ]
            pk_name = pk.column.name if pk is not None else None
            for name in self.compared_columns(table, sub):
                if name == pk_name or name not in old:
                    continue
                if name not in changed:
                    return f"old_values lists unchanged column {name!r}"
                if not _same(table.column_type(name), change.old.get(name), old.get(name)):
                    return f"old_values {name!r} is {old.get(name)!r}, expected {change.old.get(name)!r}"
            lost = [n for n in changed if n != pk_name and n not in old and change.old.get(n) is not None]
            if lost:
                return f"old_values misses changed column(s) {lost}"
            if isinstance(old.get("_seq"), int) and old["_seq"] >= row["_seq"]:
                return f"old_values _seq {old['_seq']} is not below the new _seq {row['_seq']}"
            return None
        # soft delete: the tombstone in old_values
        if rows:
            return f"a delete carries rows {rows}"
        if not old_values or len(old_values) != 1:
            return f"a delete must carry one old_values entry, the tombstone (got {old_values})"
        tomb = old_values[0]
        if pk is not None and _key(tomb.get(pk.column.name)) != _key(change.row.get(pk.column.name)):
            return f"tombstone primary key {tomb.get(pk.column.name)!r}"
        return self.row_problem(table, sub, change.row, tomb, full=True, deleted=True)

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
        if sub.tainted or sub.status != "ready" or sub.expected:
            return None
        table = model.tables.get(sub.table)
        if table is None or table.kind is TableKind.STREAM:
            return None
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
            admits = sub.where is None or sub.where.evaluate(row) is True
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
