"""The rows half of the live-query model: payload rows judged column by column, and the snapshot batches.

:class:`LiveRows` is the base of :class:`~kalammodel.model.LiveModel`; it holds what needs no step bookkeeping:
which columns of a row are compared (:mod:`kalammodel.model._live_rows`), the snapshot candidates a subscription
may still receive, and the check of one ``initial_data_batch`` (PROTOCOL §10.3, §10.4).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._live_rows import LiveSub, SubColumns, _Candidate, _key, _same, sub_columns, unevaluable, verdict
from ._types import TableKind

if TYPE_CHECKING:
    from ._model import Model
    from ._state import TableState

__all__ = ["LiveRows"]


class LiveRows:
    """Row and snapshot checks shared by the live model (a base class; the state lives in LiveModel)."""

    groups: list[tuple[int, int, int]]
    seqs: dict[int, int]

    # ------------------------------------------------------------------ rows

    def columns_of(self, table: TableState, sub: LiveSub) -> SubColumns:
        """The names ``sub``'s payloads may carry now: compared, fresh (added since) and gone (dropped since)."""
        return sub_columns(table, sub)

    def compared_columns(self, table: TableState, sub: LiveSub) -> list[str]:
        """Columns whose values are determined: projected (or all), and the ones the ack described."""
        return list(sub_columns(table, sub).compared)

    def _project(self, table: TableState, sub: LiveSub, row: Mapping[str, Any]) -> dict[str, Any]:
        return {n: row.get(n) for n in self.compared_columns(table, sub)}

    def admits(self, table: TableState, sub: LiveSub, row: Mapping[str, Any]) -> bool | None:
        """Whether the filter admits ``row`` (a model row of the current table): True, False, or None when it
        cannot decide (a comparison on a column that is gone decides it): the server must tell the client."""
        return verdict(sub.where, row, unevaluable(table, sub))

    def unanswerable(self, table: TableState, sub: LiveSub) -> bool:
        """Whether ``sub``'s query names a column that is gone (a SQL read of it would be refused)."""
        return bool(unevaluable(table, sub)) or any(table.column(n) is None for n in sub.columns or ())

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
        absent keys are the NULLed columns. A fresh column (added after the subscription) may be absent and,
        when present, holds the current column's value; a gone column (dropped since) is absent or NULL.
        """
        cols = sub_columns(table, sub)
        allowed = cols.allowed()
        extra = sorted(k for k in actual if k not in allowed)
        if extra:
            return f"unexpected column(s) {extra}"
        if not isinstance(actual.get("_seq"), int):
            return "no integer _seq"
        if "_deleted" in actual and actual["_deleted"] is not deleted:
            return f"_deleted is {actual['_deleted']!r}, expected {deleted}"
        for name in cols.compared:
            want = expected.get(name)
            got = actual.get(name)
            if not _same(table.column_type(name), want, got):
                return f"column {name!r} is {got!r}, expected {want!r}"
        for name in cols.fresh:
            if name in actual and not _same(table.column_type(name), expected.get(name), actual[name]):
                return (
                    f"column {name!r} (added after the subscription started) is {actual[name]!r}, "
                    f"expected {expected.get(name)!r} or no value"
                )
        for name in cols.gone:
            if actual.get(name) is not None:
                return (
                    f"column {name!r}, dropped since the subscription started, carries {actual[name]!r} "
                    "(expected absent or NULL)"
                )
        return None

    # ------------------------------------------------------------------ snapshot

    def group_of(self, write_no: int) -> int:
        starts = [g[0] for g in self.groups]
        i = bisect.bisect_right(starts, write_no) - 1
        if i >= 0 and self.groups[i][0] <= write_no <= self.groups[i][1]:
            return self.groups[i][2]
        return -1

    def _candidates(
        self, model: Model, sub: LiveSub, undecided: list[dict[str, Any]] | None = None
    ) -> list[_Candidate]:
        """Rows the snapshot may still send: matching, visible, written before the subscription, not sent.

        Rows the filter cannot decide (UNKNOWN on a gone column) go to ``undecided``."""
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
            admitted = self.admits(table, sub, row)
            if admitted is False:
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
            if admitted is None:
                if undecided is not None and not maybe:
                    undecided.append(row)
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
        """Check one ``initial_data_batch`` against the model; on success record what it delivered.

        A last batch may not leave out rows the filter cannot decide: the server must tell the client instead."""
        table = model.tables.get(sub.table)
        if table is None:
            return "an initial_data_batch arrived after the table was dropped"
        undecided: list[dict[str, Any]] = []
        candidates = self._candidates(model, sub, undecided)
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
        if undecided and not has_more:
            return (
                f"the snapshot ended without telling the client about row(s) {undecided[:5]} its filter cannot "
                f"evaluate (it names column(s) {sorted(unevaluable(table, sub))} that are gone)"
            )
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
