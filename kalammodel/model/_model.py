"""The reference model: what a correct KalamDB holds and answers (PROTOCOL §3–§9).

The model is pure state. Each request-level method (``insert``, ``select``, ...) checks the request the way
the contract says, predicts the outcome as an expectation, and applies the change **only when it predicts
success**: a denied or failing request changes nothing.

Scopes: USER and STREAM rows belong to an owner user id (the JWT subject, or the EXECUTE AS target, also for
root/dba — PROTOCOL §6.2); SHARED rows live in the scope ``None``. Identities are the pool names the steps use
(``root``, ``dba``, ``svc``, ``user1``, ...) plus synthetic ids reached by EXECUTE AS USER; the runner maps pool
names to server user ids consistently.

Row versions (USER/SHARED) are kept per primary key, oldest first; every version carries the model's write
number, which orders versions the way ``_seq`` does (the runner is sequential). A version is *flushed* once a
completed flush job surely saw it, *maybe flushed* when it was written while a flush was running. Cold files
are predicted exactly only for scopes whose every flush was *quiet* (no write to the scope between the flush
request and the job's completion) and whose schema did not change meanwhile.

Time: ``model.clock`` (seconds, any epoch the runner likes, e.g. ``time.time()``) is set by the runner before
each ``apply``. STREAM rows remember the clock at the INSERT's ``apply`` (``inserted_from``) and the clock at
the next clock update (``inserted_until``): the request happened in between. With TTL ``t`` and slack ``s``, a
row is surely visible while ``clock < inserted_from + t - s``, surely gone once ``clock > inserted_until + t + s``,
and *may* be visible in between.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ..errors import UsageError
from ._core import ModelCore
from ._expect import (
    ExpectCount,
    ExpectError,
    ExpectFlush,
    ExpectFlushDone,
    ExpectOk,
    ExpectPause,
    ExpectRows,
)
from ._expect import (
    compare_rows as _compare_rows,
)
from ._exprs import OVERFLOW, SetExpr
from ._predicates import Predicate
from ._state import (
    _BAD_QUERY,
    _FLUSH_POLICY,
    _IDENT,
    _PK_TYPES,
    PERMISSION_DENIED,
    SQL_EXECUTION_ERROR,
    ColumnState,
    StreamRow,
    TableState,
    Version,
    _can_alter,
    _can_create,
    _clamp,
    _error,
    _same,
    _sort_cmp,
)
from ._types import (
    RESERVED_COLUMNS,
    Column,
    ColumnType,
    Role,
    TableKind,
    TableSpec,
)

__all__ = ["Model"]


@attrs.define
class Model(ModelCore):
    """The reference model of one example's namespace: one method per request, each predicting its outcome
    and applying it only when it predicts success (see the module docstring)."""

    # ------------------------------------------------------------------ DDL

    def create_table(self, actor: str, spec: TableSpec, as_user: str | None = None) -> ExpectOk | ExpectError:
        """``CREATE <kind> TABLE`` (PROTOCOL §4.1, §6.1)."""
        ctx = self._ctx(actor, as_user)
        reasons: list[tuple[str, str]] = []
        if ctx.denied:
            reasons.append((PERMISSION_DENIED, f"{actor} may not EXECUTE AS {as_user!r}"))
        if not _can_create(ctx.role, spec.kind):
            reasons.append(
                (PERMISSION_DENIED, f"role {ctx.role.value} may not create a {spec.kind.value} table")
            )
        if spec.name in self.tables:
            reasons.append((SQL_EXECUTION_ERROR, f"table {spec.name!r} already exists"))
        reasons += self._spec_errors(spec)
        if reasons:
            return _error(reasons)
        columns = [ColumnState(i + 1, c) for i, c in enumerate(spec.columns)]
        self.tables[spec.name] = TableState(spec, columns, next_column_id=len(columns) + 1)
        return ExpectOk()

    def _spec_errors(self, spec: TableSpec) -> list[tuple[str, str]]:
        if not _IDENT.fullmatch(spec.name):
            raise UsageError(f"table name {spec.name!r} must be a lowercase identifier of at most 64 chars")
        reasons: list[tuple[str, str]] = []
        names = [c.name for c in spec.columns]
        for column in spec.columns:
            if not _IDENT.fullmatch(column.name) and column.name not in RESERVED_COLUMNS:
                raise UsageError(
                    f"column name {column.name!r} must be a lowercase identifier of at most 64 chars"
                )
            if column.name in RESERVED_COLUMNS:
                reasons.append((_BAD_QUERY, f"column name {column.name!r} is reserved"))
        if len(set(names)) != len(names):
            reasons.append((_BAD_QUERY, f"duplicate column names in {names}"))
        pks = [c for c in spec.columns if c.primary_key]
        if len(pks) > 1:
            reasons.append((_BAD_QUERY, f"more than one PRIMARY KEY: {[c.name for c in pks]}"))
        if not pks and spec.kind is not TableKind.STREAM:
            reasons.append((_BAD_QUERY, f"{spec.kind.value} tables require a PRIMARY KEY column"))
        for pk in pks:
            if pk.type not in _PK_TYPES:
                raise UsageError(
                    f"PRIMARY KEY {pk.name!r} of type {pk.type.value} is not modelled; use one of "
                    f"{[t.value for t in _PK_TYPES]}"
                )
        if spec.kind is TableKind.STREAM and spec.ttl_seconds is None:
            reasons.append((_BAD_QUERY, "STREAM tables require TTL_SECONDS"))
        if spec.kind is not TableKind.STREAM and spec.ttl_seconds is not None:
            reasons.append(
                (_BAD_QUERY, f"TTL_SECONDS is only valid for STREAM tables, not {spec.kind.value}")
            )
        if spec.access_level is not None and spec.kind is not TableKind.SHARED:
            reasons.append(
                (_BAD_QUERY, f"ACCESS_LEVEL is only valid for SHARED tables, not {spec.kind.value}")
            )
        if spec.storage_id is not None and spec.storage_id not in self.storages:
            reasons.append((SQL_EXECUTION_ERROR, f"storage {spec.storage_id!r} does not exist"))
        if spec.flush_policy is not None:
            if spec.kind is TableKind.STREAM:
                raise UsageError("FLUSH_POLICY on a STREAM table is not modelled")
            if not self._valid_policy(spec.flush_policy):
                reasons.append((_BAD_QUERY, f"FLUSH_POLICY {spec.flush_policy!r} is invalid"))
        return reasons

    @staticmethod
    def _valid_policy(text: str) -> bool:
        match = _FLUSH_POLICY.fullmatch(text)
        if match is None:
            return False
        for part in text.split(","):
            key, _, number = part.partition(":")
            value = int(number)
            if key == "rows" and not 1 <= value <= 999999:
                return False
            if key == "interval" and not 1 <= value <= 86399:
                return False
        return len({p.partition(":")[0] for p in text.split(",")}) == len(text.split(","))

    def alter_add_column(
        self, actor: str, table_name: str, column: Column, as_user: str | None = None
    ) -> ExpectOk | ExpectError:
        """``ALTER TABLE ADD COLUMN``: old rows read NULL; placed after ``_seq``/``_deleted`` (PROTOCOL §9)."""
        ctx = self._ctx(actor, as_user)
        table = self._table(table_name)
        if table is None:
            return self._missing(table_name)
        if column.primary_key or not column.nullable or column.default is not None:
            raise UsageError(
                f"ADD COLUMN {column.render()}: only nullable non-key columns without DEFAULT are modelled"
            )
        reasons: list[tuple[str, str]] = []
        if ctx.denied:
            reasons.append((PERMISSION_DENIED, f"{actor} may not EXECUTE AS {as_user!r}"))
        if not _can_alter(ctx.role, table.kind):
            reasons.append(
                (PERMISSION_DENIED, f"role {ctx.role.value} may not alter a {table.kind.value} table")
            )
        if column.name in RESERVED_COLUMNS:
            reasons.append((_BAD_QUERY, f"column name {column.name!r} is reserved"))
        elif not _IDENT.fullmatch(column.name):
            raise UsageError(f"column name {column.name!r} must be a lowercase identifier")
        if table.column(column.name) is not None:
            reasons.append((SQL_EXECUTION_ERROR, f"column {column.name!r} already exists"))
        if reasons:
            return _error(reasons)
        if any(d.column.name == column.name for d in table.dropped):
            table.reused_names = True
        table.columns.append(ColumnState(table.next_column_id, column, added=True))
        table.next_column_id += 1
        self._schema_changed(table)
        return ExpectOk()

    def alter_drop_column(
        self, actor: str, table_name: str, name: str, as_user: str | None = None
    ) -> ExpectOk | ExpectError:
        """``ALTER TABLE DROP COLUMN``: gone from reads; writes naming it fail (PROTOCOL §9)."""
        ctx = self._ctx(actor, as_user)
        table = self._table(table_name)
        if table is None:
            return self._missing(table_name)
        state = table.column(name)
        reasons: list[tuple[str, str]] = []
        if state is not None and state.column.primary_key:
            # the key identifies every row version: it cannot go (§9 protects system columns the same way;
            # KalamDB answers success and changes nothing: docs/kalamdb-findings.md 6)
            reasons.append((SQL_EXECUTION_ERROR, f"the primary key {name!r} cannot be dropped"))
        if ctx.denied:
            reasons.append((PERMISSION_DENIED, f"{actor} may not EXECUTE AS {as_user!r}"))
        if not _can_alter(ctx.role, table.kind):
            reasons.append(
                (PERMISSION_DENIED, f"role {ctx.role.value} may not alter a {table.kind.value} table")
            )
        if state is None:
            reasons.append((SQL_EXECUTION_ERROR, f"column {name!r} does not exist"))
        elif len(table.columns) == 1 and not state.column.primary_key:
            raise UsageError(f"dropping the last column {table_name}.{name} is not modelled")
        if reasons:
            return _error(reasons)
        assert state is not None
        table.columns.remove(state)
        table.dropped.append(state)
        self._schema_changed(table)
        return ExpectOk()

    def _schema_changed(self, table: TableState) -> None:
        table.schema_version += 1
        self.write_no += 1
        table.schema_changes.append(self.write_no)

    # ------------------------------------------------------------------ DML

    def insert(
        self,
        actor: str,
        table_name: str,
        columns: Sequence[str],
        types: Sequence[ColumnType | str],
        rows: Sequence[Sequence[Any]],
        as_user: str | None = None,
    ) -> ExpectOk | ExpectError:
        """``INSERT INTO t (cols) VALUES ...`` (PROTOCOL §5.1): all rows or none."""
        ctx = self._ctx(actor, as_user)
        table = self._table(table_name)
        if table is None:
            return self._missing(table_name)
        if len(types) != len(columns):
            raise UsageError(f"insert into {table_name}: {len(columns)} column(s) but {len(types)} type(s)")
        for i, row in enumerate(rows):
            if len(row) != len(columns):
                raise UsageError(
                    f"insert into {table_name}: row #{i} has {len(row)} value(s) for {len(columns)} column(s)"
                )
        if not rows:
            raise UsageError(f"insert into {table_name}: at least one row is needed")
        reasons = self._access(ctx, table, write=True)
        if len(set(columns)) != len(columns):
            reasons.append((_BAD_QUERY, f"column list {list(columns)} names a column twice"))
        unknown = [c for c in columns if table.column(c) is None]
        if unknown:
            reasons.append((SQL_EXECUTION_ERROR, f"unknown or dropped column(s) {unknown}"))
        self._check_types(
            table, ((c, t, r[i]) for r in rows for i, (c, t) in enumerate(zip(columns, types))), "insert"
        )
        if reasons:
            return _error(reasons)
        ids = [table.column(c).column_id for c in columns]  # type: ignore[union-attr]
        new_rows = [{cid: v for cid, v in zip(ids, row) if v is not None} for row in rows]
        # an omitted column stores its DEFAULT, or NULL without one (§4.1, §5.1); an explicit NULL stays NULL
        omitted = [s for s in table.columns if s.column_id not in ids and s.column.default is not None]
        for new in new_rows:
            new.update((s.column_id, s.column.default) for s in omitted)
        for state in table.columns:
            if state.column.not_null and any(state.column_id not in r for r in new_rows):
                reasons.append((SQL_EXECUTION_ERROR, f"NOT NULL column {state.column.name!r} gets NULL"))
                break
        owner = self._owner(table, ctx)
        scope = self._scope(table, owner)
        if table.kind is not TableKind.STREAM and not reasons:
            pk = table.pk
            assert pk is not None
            seen: set[Any] = set()
            for new in new_rows:
                key = new[pk.column_id]
                if key in seen:
                    reasons.append((SQL_EXECUTION_ERROR, f"primary key {key!r} twice in one statement"))
                    break
                versions = None if scope is None else scope.versions.get(key)
                if versions and not versions[-1].deleted:
                    reasons.append((SQL_EXECUTION_ERROR, f"primary key {key!r} already exists"))
                    break
                seen.add(key)
        if reasons:
            return _error(reasons)
        scope = self._scope(table, owner, create=True)
        assert scope is not None
        if table.kind is TableKind.STREAM:
            for new in new_rows:
                self.write_no += 1
                scope.stream_rows.append(StreamRow(self.write_no, new, self._clock))
            table.flush.any_write = True
        else:
            pk = table.pk
            assert pk is not None
            for new in new_rows:
                self._write(table, scope, new[pk.column_id], new, deleted=False)
        return ExpectOk(affected=len(rows))

    def update(
        self,
        actor: str,
        table_name: str,
        assignments: Sequence[tuple[str, ColumnType | str, Any]],
        where: Predicate | None,
        as_user: str | None = None,
        expressions: Sequence[SetExpr] = (),
    ) -> ExpectOk | ExpectError:
        """``UPDATE t SET ... WHERE ...`` (PROTOCOL §5.2): count = rows whose values change.

        ``expressions`` compute from the row (``c = c + 1``, :class:`SetExpr`); one whose result leaves the
        column type's range for any matched row fails the statement and changes nothing.
        """
        ctx = self._ctx(actor, as_user)
        table = self._table(table_name)
        if table is None:
            return self._missing(table_name)
        if not assignments and not expressions:
            raise UsageError(f"update of {table_name}: at least one assignment is needed")
        for e in expressions:
            state = table.column(e.column)
            if state is not None and state.column.type is not e.type:
                raise UsageError(f"update of {table_name}: {e.render()} on a {state.column.type.value} column")
        reasons = self._access(ctx, table, write=True)
        if table.kind is TableKind.STREAM:
            reasons.append((SQL_EXECUTION_ERROR, "UPDATE not supported for STREAM tables"))
        if where is None:
            reasons.append((_BAD_QUERY, "UPDATE requires a WHERE clause"))
        names = [a[0] for a in assignments] + [e.column for e in expressions]
        if len(set(names)) != len(names):
            reasons.append((_BAD_QUERY, f"SET names a column twice: {names}"))
        for name in names:
            state = table.column(name)
            if state is None:
                reasons.append((SQL_EXECUTION_ERROR, f"SET names unknown or dropped column {name!r}"))
            elif state.column.primary_key:
                reasons.append((SQL_EXECUTION_ERROR, f"UPDATE cannot modify primary key column {name!r}"))
        reasons += self._check_predicate(table, where, dml=True)
        self._check_types(table, assignments, "update")
        if reasons:
            return _error(reasons)
        scope = self._scope(table, self._owner(table, ctx))
        assert table.pk is not None and where is not None
        matched = self._live_matching(table, scope, where)
        literal = {table.column(n).column_id: v for n, _, v in assignments}  # type: ignore[union-attr]
        for cid, value in literal.items():
            state = next(s for s in table.columns if s.column_id == cid)
            if value is None and state.column.not_null and matched:
                return _error([(SQL_EXECUTION_ERROR, f"NOT NULL column {state.column.name!r} set to NULL")])
        computed = {table.column(e.column).column_id: e for e in expressions}  # type: ignore[union-attr]
        planned: list[tuple[Any, Version, dict[int, Any]]] = []
        for pk, version in matched:
            new_values = dict(literal)
            for cid, e in computed.items():
                new_values[cid] = e.apply(version.values.get(cid))
                if new_values[cid] is OVERFLOW:
                    return _error([(SQL_EXECUTION_ERROR, f"{e.render()}: out of range for {e.type.value}")])
            planned.append((pk, version, new_values))
        sure = unclear = 0
        for pk, version, new_values in planned:
            verdicts = [_same(version.values.get(cid), v) for cid, v in new_values.items()]
            if all(v is True for v in verdicts):
                continue
            if any(v is False for v in verdicts):
                sure += 1
            else:
                unclear += 1
                table.flush.maybe_unflushed = True
            values = dict(version.values)
            for cid, value in new_values.items():
                if value is None:
                    values.pop(cid, None)
                else:
                    values[cid] = value
            assert scope is not None
            self.write_no += 1
            scope.versions[pk].append(Version(self.write_no, values, False))
            table.flush.any_write = True
            if verdicts and any(v is False for v in verdicts):
                table.flush.unflushed = True
        return ExpectOk(affected=sure, affected_max=sure + unclear if unclear else None)

    def delete(
        self, actor: str, table_name: str, where: Predicate | None, as_user: str | None = None
    ) -> ExpectOk | ExpectError:
        """``DELETE FROM t WHERE ...``: tombstones (USER/SHARED) or hard delete (STREAM) (PROTOCOL §5.3, §8)."""
        ctx = self._ctx(actor, as_user)
        table = self._table(table_name)
        if table is None:
            return self._missing(table_name)
        reasons = self._access(ctx, table, write=True)
        if where is None:
            reasons.append((_BAD_QUERY, "DELETE requires a WHERE clause"))
        reasons += self._check_predicate(table, where, dml=True)
        if reasons:
            return _error(reasons)
        assert where is not None
        scope = self._scope(table, self._owner(table, ctx))
        if scope is None:
            return ExpectOk(affected=0)
        if table.kind is TableKind.STREAM:
            ttl = table.spec.ttl_seconds or 0
            sure = maybe = 0
            kept: list[StreamRow] = []
            for row in scope.stream_rows:
                state = self._stream_state(row, ttl)
                if state != "gone" and where.evaluate(self._row(table, row.values)) is True:
                    if state == "sure":
                        sure += 1
                    else:
                        maybe += 1
                    continue  # deleted now or expired anyway
                kept.append(row)
            scope.stream_rows = kept
            return ExpectOk(affected=sure, affected_max=sure + maybe if maybe else None)
        count = 0
        for pk, version in self._live_matching(table, scope, where):
            self._write(table, scope, pk, dict(version.values), deleted=True)
            count += 1
        return ExpectOk(affected=count)

    # ------------------------------------------------------------------ reads

    def select(
        self,
        actor: str,
        table_name: str,
        columns: Sequence[str] | None = None,
        where: Predicate | None = None,
        order_by: Sequence[tuple[str, bool]] = (),
        limit: int | None = None,
        offset: int | None = None,
        as_user: str | None = None,
        unlimited: bool = False,
    ) -> ExpectRows | ExpectError:
        """``SELECT cols FROM t [WHERE] [ORDER BY] [LIMIT] [OFFSET]`` with the server's limits (PROTOCOL §3).

        ``unlimited``: every matching row, as a paged ``client.read_all`` returns them (no query limits).
        """
        ctx = self._ctx(actor, as_user)
        table = self._table(table_name)
        if table is None:
            return self._missing(table_name)
        if offset is not None and limit is None:
            raise UsageError("OFFSET without LIMIT is not modelled; give a LIMIT")
        for name, _ in order_by:
            col_type = table.column_type(name)
            if name in ("_seq", "_deleted") or (col_type is not None and not col_type.orderable):
                raise UsageError(f"ORDER BY {name!r} is not modelled (system or JSON column)")
        reasons = self._access(ctx, table, write=False)
        names = list(columns) if columns is not None else table.star_columns()
        unknown = [n for n in names if table.column_type(n) is None]
        unknown += [n for n, _ in order_by if table.column_type(n) is None]
        if unknown:
            reasons.append((_BAD_QUERY, f"unknown or dropped column(s) {unknown}"))
        reasons += self._check_predicate(table, where, dml=False)
        if reasons:
            return _error(reasons)
        scope = self._scope(table, self._owner(table, ctx))
        sure, maybe = self._candidates(table, scope, where)
        return self._window(table, names, sure, maybe, list(order_by), limit, offset, unlimited=unlimited)

    def _window(
        self,
        table: TableState,
        names: list[str],
        sure: list[dict[str, Any]],
        maybe: list[dict[str, Any]],
        order_by: list[tuple[str, bool]],
        limit: int | None,
        offset: int | None,
        unlimited: bool = False,
    ) -> ExpectRows:
        cap = len(sure) + len(maybe) if unlimited else self.limits.effective(limit)
        skip = offset or 0
        pk = table.pk
        sort_keys: list[tuple[int, bool]] = []
        keys = order_by
        if not keys and self.default_pk_order and pk is not None and pk.column.name in names:
            keys = [(pk.column.name, False)]
        for name, descending in keys:  # the projected prefix of the sort keys can be checked
            if name not in names:
                break
            sort_keys.append((names.index(name), descending))

        def project(row: Mapping[str, Any]) -> tuple[Any, ...]:
            return tuple(row[n] for n in names)

        exact_size: int | None = None
        size_range: tuple[int, int] | None = None
        if maybe:
            if skip == 0 and len(sure) + len(maybe) <= cap:
                rows, maybe_rows = sure, maybe
            else:
                rows, maybe_rows = [], sure + maybe
                size_range = (_clamp(len(sure) - skip, cap), _clamp(len(sure) + len(maybe) - skip, cap))
        elif skip == 0 and len(sure) <= cap:
            rows, maybe_rows = sure, []
        elif not order_by:
            rows, maybe_rows = [], sure
            exact_size = _clamp(len(sure) - skip, cap)
        else:
            ordered = sorted(sure, key=functools.cmp_to_key(_sort_cmp(order_by)))
            window = ordered[skip : skip + cap]
            exact_size = len(window)
            cmp = _sort_cmp(order_by)
            rows, maybe_rows = [], []
            start = 0
            while start < len(ordered):  # groups of rows tied on the sort keys
                end = start + 1
                while end < len(ordered) and cmp(ordered[start], ordered[end]) == 0:
                    end += 1
                inside = max(0, min(end, skip + cap) - max(start, skip))
                if inside:
                    (rows if inside == end - start else maybe_rows).extend(ordered[start:end])
                start = end
        determined = False
        if order_by and len(sort_keys) < len(order_by) and not maybe_rows and size_range is None:
            rows, determined = _determined_order(rows, order_by)
        types = tuple(table.column_type(n) for n in names)
        return ExpectRows(
            columns=tuple(names),
            rows=[project(r) for r in rows],
            maybe_rows=[project(r) for r in maybe_rows],
            exact_size=exact_size,
            size_range=size_range,
            ordered=determined,
            sort_keys=tuple(sort_keys),
            types=types,
        )

    def count(
        self, actor: str, table_name: str, where: Predicate | None = None, as_user: str | None = None
    ) -> ExpectCount | ExpectError:
        """``SELECT COUNT(*) AS n FROM t [WHERE]``: the true count, never capped (PROTOCOL §3)."""
        ctx = self._ctx(actor, as_user)
        table = self._table(table_name)
        if table is None:
            return self._missing(table_name)
        reasons = self._access(ctx, table, write=False) + self._check_predicate(table, where, dml=False)
        if reasons:
            return _error(reasons)
        sure, maybe = self._candidates(table, self._scope(table, self._owner(table, ctx)), where)
        return ExpectCount(len(sure), len(sure) + len(maybe))

    def read_system_table(self, actor: str, name: str, as_user: str | None = None) -> ExpectOk | ExpectError:
        """``SELECT * FROM system.<name>``: dba/system only (PROTOCOL §6.1); rows are not predicted."""
        ctx = self._ctx(actor, as_user)
        reasons: list[tuple[str, str]] = []
        if ctx.denied:
            reasons.append((PERMISSION_DENIED, f"{actor} may not EXECUTE AS {as_user!r}"))
        if not ctx.role.is_admin:
            reasons.append((PERMISSION_DENIED, f"role {ctx.role.value} may not read system.{name}"))
        return _error(reasons) if reasons else ExpectOk()

    def pause(self, seconds: float) -> ExpectPause:
        """Let time pass (the runner sleeps, then sets ``clock``)."""
        return ExpectPause(seconds)

    # ------------------------------------------------------------------ flush

    def flush(
        self, actor: str, table_name: str, wait: bool = True, as_user: str | None = None
    ) -> ExpectFlush | ExpectError:
        """``STORAGE FLUSH TABLE`` (PROTOCOL §7.1): service/dba/system; not for STREAM tables."""
        ctx = self._ctx(actor, as_user)
        table = self._table(table_name)
        if table is None:
            return self._missing(table_name)
        reasons: list[tuple[str, str]] = []
        if ctx.denied:
            reasons.append((PERMISSION_DENIED, f"{actor} may not EXECUTE AS {as_user!r}"))
        if ctx.role is Role.USER:
            reasons.append((PERMISSION_DENIED, "STORAGE FLUSH TABLE requires Service, DBA, or System role"))
        if table.kind is TableKind.STREAM:
            reasons.append((SQL_EXECUTION_ERROR, "STORAGE FLUSH TABLE is not supported for STREAM tables"))
        if reasons:
            return _error(reasons)
        flush = table.flush
        expect_job: bool | None
        if flush.running_job is not None or table.auto_flush or flush.maybe_unflushed:
            expect_job = None
        elif not flush.any_write:
            expect_job = False
        elif flush.unflushed:
            expect_job = True
        else:
            expect_job = None
        flush.requested_at = self.write_no
        return ExpectFlush(table_name, wait=wait, expect_job=expect_job)

    def flush_started(self, table_name: str, job_id: str | None) -> None:
        """Runner: the flush request just sent answered with ``job_id`` (None when it was skipped)."""
        table = self._known(table_name)
        flush = table.flush
        if job_id is None:
            return
        if flush.running_job is not None and flush.running_job != job_id:
            self.flush_completed(table_name)  # the earlier job finished before this one could start
        flush.running_job = job_id
        flush.started_at = flush.requested_at if flush.requested_at is not None else self.write_no

    def await_flush(self, table_name: str) -> ExpectFlushDone:
        """The action of ``AwaitFlush``: wait for the job a ``StartFlush`` began (if any)."""
        table = self._table(table_name)
        job = None if table is None else table.flush.running_job
        return ExpectFlushDone(table_name, job)

    def flush_completed(self, table_name: str) -> None:
        """Runner: the flush job of ``table_name`` completed; applies what the job did to the model.

        Call it after waiting for the job of a ``Flush`` (``flush_started`` is optional there) or of an
        ``AwaitFlush``. Do not call it when a flush was skipped because another one is still running.
        A second call without a new flush request is a no-op.
        """
        table = self._known(table_name)
        flush = table.flush
        if flush.running_job is not None:
            start = flush.started_at if flush.started_at is not None else self.write_no
        elif flush.requested_at is not None:  # a waited flush: the job began at the request
            start = flush.requested_at
        else:
            return
        end = self.write_no
        schema_moved = any(start < w <= end for w in table.schema_changes)
        names = {s.column_id: s.column.name for s in table.columns}
        any_tombstone = False
        for scope in table.scopes.values():
            late = False
            for pk, versions in scope.versions.items():
                batch = [v for v in versions if not v.flushed and v.write_no <= start]
                late = late or any(v.write_no > start and not v.flushed for v in versions)
                for version in versions:
                    if start < version.write_no <= end and not version.flushed:
                        version.maybe_flushed = True
                if not batch:
                    continue
                newest = batch[-1]
                for version in batch:
                    version.flushed = True
                if newest.deleted:
                    any_tombstone = True
                    # The key is dead: an older cold version must not be expected as its newest cold row
                    # (the server may keep the tombstone in cold storage or drop it; either way reads hide it).
                    scope.cold.pop(pk, None)
                else:
                    scope.cold[pk] = {name: newest.values.get(cid) for cid, name in names.items()}
            if late or schema_moved:
                scope.cold_exact = False
        flush.running_job = None
        flush.started_at = None
        flush.requested_at = None
        flush.unflushed = any(
            not v.flushed and not v.maybe_flushed
            for scope in table.scopes.values()
            for vs in scope.versions.values()
            for v in vs
        )
        if end > start or any_tombstone:
            flush.maybe_unflushed = True

    def _known(self, table_name: str) -> TableState:
        table = self._table(table_name)
        if table is None:
            raise UsageError(f"table {table_name!r} is not in the model; known: {sorted(self.tables)}")
        return table

    # ------------------------------------------------------------------ queries for the runner and checks

    def scopes(self, table_name: str) -> list[str | None]:
        """Owners with rows in the table (``[None]`` for a SHARED table that has rows)."""
        return list(self._known(table_name).scopes)

    def matching_count(self, table_name: str, owner: str | None, where: Predicate | None) -> tuple[int, int]:
        """How many rows of ``owner``'s scope match ``where``: (surely, at most). No access checks."""
        table = self._known(table_name)
        sure, maybe = self._candidates(table, self._scope(table, owner), where)
        return len(sure), len(sure) + len(maybe)

    def scope_size(self, table_name: str, owner: str | None) -> int:
        """How many primary keys (live or tombstoned) or STREAM rows a scope holds; O(1), for sizing checks."""
        table = self._known(table_name)
        scope = self._scope(table, owner)
        if scope is None:
            return 0
        return len(scope.stream_rows) if table.kind is TableKind.STREAM else len(scope.versions)

    def known_pks(self, table_name: str, owner: str | None) -> set[Any]:
        """Primary keys whose newest version is live."""
        table = self._known(table_name)
        return set(self._live(table, self._scope(table, owner)))

    def cold_pks(self, table_name: str, owner: str | None) -> set[Any]:
        """Primary keys of live rows whose newest version has surely been flushed to cold storage."""
        table = self._known(table_name)
        return {pk for pk, v in self._live(table, self._scope(table, owner)).items() if v.flushed}

    def deleted_pks(self, table_name: str, owner: str | None) -> set[Any]:
        """Primary keys whose newest version is a tombstone."""
        table = self._known(table_name)
        scope = self._scope(table, owner)
        return set() if scope is None else {pk for pk, v in self._newest(scope).items() if v.deleted}

    def visible_rows(self, table_name: str, owner: str | None) -> list[dict[str, Any]]:
        """Rows a default read of ``owner`` surely returns, keyed by current user column name (no ``_seq``/``_deleted``).

        For STREAM tables only rows surely within their TTL; see :meth:`maybe_rows` for the others.
        """
        table = self._known(table_name)
        sure, _ = self._candidates(table, self._scope(table, owner), None)
        return [self._strip(r) for r in sure]

    def maybe_rows(self, table_name: str, owner: str | None) -> list[dict[str, Any]]:
        """STREAM rows near their TTL that a read may or may not return."""
        table = self._known(table_name)
        _, maybe = self._candidates(table, self._scope(table, owner), None)
        return [self._strip(r) for r in maybe]

    @staticmethod
    def _strip(row: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k not in ("_seq", "_deleted")}

    def expect_full_read(self, table_name: str, owner: str | None) -> ExpectRows:
        """Every visible row of a scope, as ``SELECT *`` columns, sorted by PK, without result limits.

        For ``client.read_all(table, order_by=<pk>)`` (which pages past the limits).
        """
        table = self._known(table_name)
        sure, maybe = self._candidates(table, self._scope(table, owner), None)
        return self._window(table, table.star_columns(), sure, maybe, [], None, None, unlimited=True)

    def rows_for_keys(self, table_name: str, owner: str | None, keys: Iterable[Any]) -> ExpectRows:
        """The rows of ``owner``'s scope whose primary key is in ``keys``, as :meth:`expect_full_read` predicts them.

        For ``SELECT * FROM t WHERE <pk> IN (keys)`` (the runner's read-back of written keys); O(len(keys)), not
        O(scope). Keys are looked up by Python equality, exact for the model's PK types (int and str values).
        USER and SHARED tables only (STREAM rows have no reliable PK).
        """
        table = self._known(table_name)
        if table.kind is TableKind.STREAM:
            raise UsageError(
                f"rows_for_keys: {table_name!r} is a STREAM table; read it with expect_full_read"
            )
        if table.pk is None:
            raise UsageError(f"rows_for_keys: table {table_name!r} has no primary key")
        scope = self._scope(table, owner)
        sure: list[dict[str, Any]] = []
        seen: set[Any] = set()
        for key in keys:
            if key in seen:
                continue
            seen.add(key)
            versions = None if scope is None else scope.versions.get(key)
            if versions and not versions[-1].deleted:
                sure.append(self._row(table, versions[-1].values))
        return self._window(table, table.star_columns(), sure, [], [], None, None, unlimited=True)

    def stream_rows_ever(
        self, table_name: str, owner: str | None, *, expired_only: bool = False
    ) -> list[dict[str, Any]]:
        """A STREAM scope's rows, current and (the last :data:`EXPIRED_KEPT`) surely expired ones (only those
        with ``expired_only``): current user columns plus ``_deleted``. Empty for other tables."""
        table = self._known(table_name)
        scope = self._scope(table, owner)
        if scope is None or table.kind is not TableKind.STREAM:
            return []
        out = []
        for row in scope.expired if expired_only else scope.stream_rows + scope.expired:
            values = self._strip(self._row(table, row.values))
            values["_deleted"] = False
            out.append(values)
        return out

    def known_versions(self, table_name: str, owner: str | None, pk: Any) -> list[dict[str, Any]]:
        """Every version the model knows for ``pk``, oldest first: current user columns plus ``_deleted``."""
        table = self._known(table_name)
        scope = self._scope(table, owner)
        if scope is None:
            return []
        out = []
        for version in scope.versions.get(pk, []):
            row = self._strip(self._row(table, version.values))
            row["_deleted"] = version.deleted
            out.append(row)
        return out

    def expected_cold_rows(self, table_name: str, owner: str | None) -> dict[Any, dict[str, Any]] | None:
        """Newest cold (flushed) row per PK of a scope, or None when the model cannot know it exactly.

        Keys of each row are the table's user columns at the time of the flush that wrote it (dropped columns
        included). None when a flush of this scope was not quiet, the schema changed during a flush, a dropped
        column name was re-added, or the table has a FLUSH_POLICY (automatic flushes).
        """
        table = self._known(table_name)
        if table.kind is TableKind.STREAM:
            return {}
        if table.auto_flush or table.reused_names or table.flush.running_job is not None:
            return None
        scope = self._scope(table, owner)
        if scope is None:
            return {}
        if not scope.cold_exact:
            return None
        return {pk: dict(row) for pk, row in scope.cold.items()}

    def column_names(self, table_name: str) -> list[str]:
        """Current user columns in ``SELECT *`` order (system columns excluded)."""
        return [n for n in self._known(table_name).star_columns() if n not in ("_seq", "_deleted")]

    def primary_key(self, table_name: str) -> str | None:
        """The PK column name of a table (None for a STREAM table without one)."""
        pk = self._known(table_name).pk
        return None if pk is None else pk.column.name

    @staticmethod
    def compare_rows(
        expected: ExpectRows, actual_columns: Sequence[str], actual_rows: Sequence[Sequence[Any]]
    ) -> str | None:
        """See :func:`kalammodel.model.compare_rows`."""
        return _compare_rows(expected, actual_columns, actual_rows)


def _determined_order(
    rows: list[dict[str, Any]], order_by: list[tuple[str, bool]]
) -> tuple[list[dict[str, Any]], bool]:
    """``rows`` sorted by ``order_by`` and whether that order is fully determined (no two rows tie).

    For an ORDER BY with a key that is not projected, whose order ``sort_keys`` cannot check
    (docs/kalamdb-findings.md #7).
    """
    cmp = _sort_cmp(order_by)
    ordered = sorted(rows, key=functools.cmp_to_key(cmp))
    return ordered, all(cmp(a, b) != 0 for a, b in zip(ordered, ordered[1:]))
