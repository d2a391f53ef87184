"""The state half of the reference model: :class:`ModelCore` holds what :class:`kalammodel.model.Model`'s
requests read and write (time, identities, tables and scopes, row versions per key)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ..errors import UsageError
from ._expect import (
    ExpectError,
)
from ._predicates import Cmp, Predicate
from ._state import (
    _BAD_QUERY,
    EXPIRED_KEPT,
    PERMISSION_DENIED,
    SQL_EXECUTION_ERROR,
    Scope,
    StreamRow,
    TableState,
    Version,
    _can_impersonate,
    _can_read_shared,
    _can_write_shared,
    _Ctx,
    _error,
)
from ._types import (
    ACTOR_ROLES,
    AccessLevel,
    ColumnType,
    Limits,
    Role,
    TableKind,
)

__all__ = ["ModelCore"]


@attrs.define
class ModelCore:
    """The state of :class:`Model` and the lookups its requests share: time, identities, scopes, row versions.

    The reference model of one example's namespace.

    ``actors`` maps pool identities to roles; ``limits`` are the server's result limits; ``storages`` the
    storage ids that exist; ``stream_slack`` (seconds) the tolerance around STREAM TTL boundaries;
    ``default_pk_order``: the server sorts by PK when there is no ORDER BY and the PK is projected (§3).
    """

    actors: dict[str, Role] = attrs.Factory(lambda: dict(ACTOR_ROLES))
    limits: Limits = attrs.Factory(Limits)
    storages: frozenset[str] = frozenset({"local"})
    stream_slack: float = 1.5
    default_pk_order: bool = True
    tables: dict[str, TableState] = attrs.Factory(dict)
    write_no: int = 0
    _clock: float = 0.0

    # ------------------------------------------------------------------ time

    @property
    def clock(self) -> float:
        """Seconds; set by the runner before each ``apply``."""
        return self._clock

    @clock.setter
    def clock(self, now: float) -> None:
        self._clock = float(now)
        for table in self.tables.values():
            for scope in table.scopes.values():
                for row in scope.stream_rows:
                    if row.inserted_until is None:
                        row.inserted_until = self._clock
                ttl = table.spec.ttl_seconds or 0
                kept: list[StreamRow] = []
                gone: list[StreamRow] = []
                for r in scope.stream_rows:
                    (gone if self._stream_state(r, ttl) == "gone" else kept).append(r)
                if gone:
                    scope.stream_rows = kept
                    scope.expired = (scope.expired + gone)[-EXPIRED_KEPT:]

    def _stream_state(self, row: StreamRow, ttl: float) -> str:
        if self._clock < row.inserted_from + ttl - self.stream_slack:
            return "sure"
        if row.inserted_until is not None and self._clock > row.inserted_until + ttl + self.stream_slack:
            return "gone"
        return "maybe"

    # ------------------------------------------------------------------ identities

    def role_of(self, user_id: str) -> Role:
        """The role of a pool identity; any other id counts as role ``user`` (PROTOCOL §6.3)."""
        return self.actors.get(user_id, Role.USER)

    def effective_user(self, actor: str, as_user: str | None = None) -> str:
        """The user id whose USER/STREAM rows a request of ``actor`` (EXECUTE AS ``as_user``) touches."""
        return as_user if as_user is not None else actor

    def _ctx(self, actor: str, as_user: str | None) -> _Ctx:
        if actor not in self.actors:
            raise UsageError(
                f"unknown actor {actor!r}: the pool has {sorted(self.actors)}; add it to Model(actors=...)"
            )
        actor_role = self.actors[actor]
        if as_user is None:
            return _Ctx(actor, actor_role, actor, actor_role, None, False)
        if (
            not isinstance(as_user, str)
            or not as_user
            or any(c in as_user for c in "'/\\\x00")
            or ".." in as_user
        ):
            raise UsageError(f"as_user {as_user!r} is not a valid user id: use letters, digits and '_'")
        allowed = as_user == actor or _can_impersonate(actor_role, self.role_of(as_user))
        return _Ctx(actor, actor_role, as_user, Role.USER, as_user, not allowed)

    def _access(self, ctx: _Ctx, table: TableState, write: bool) -> list[tuple[str, str]]:
        """Errors of the identity checks (EXECUTE AS, SHARED access levels) for a DML/SELECT."""
        reasons: list[tuple[str, str]] = []
        if ctx.denied:
            reasons.append(
                (
                    PERMISSION_DENIED,
                    f"{ctx.actor} ({ctx.actor_role.value}) may not EXECUTE AS {ctx.as_user!r}",
                )
            )
        if table.kind is TableKind.SHARED:
            if ctx.as_user is not None:
                reasons.append((SQL_EXECUTION_ERROR, "EXECUTE AS USER is not allowed on SHARED tables"))
            else:
                level = table.spec.access_level or AccessLevel.PRIVATE
                ok = _can_write_shared(level, ctx.role) if write else _can_read_shared(level, ctx.role)
                if not ok:
                    verb = "write" if write else "read"
                    reasons.append(
                        (
                            PERMISSION_DENIED,
                            f"role {ctx.role.value} may not {verb} a {level.value} SHARED table",
                        )
                    )
        return reasons

    # ------------------------------------------------------------------ lookups

    def _table(self, name: str) -> TableState | None:
        return self.tables.get(name)

    def _missing(self, name: str) -> ExpectError:
        return _error([(SQL_EXECUTION_ERROR, f"table {name!r} does not exist")])

    def _scope(self, table: TableState, owner: str | None, create: bool = False) -> Scope | None:
        key = None if table.kind is TableKind.SHARED else owner
        scope = table.scopes.get(key)
        if scope is None and create:
            scope = table.scopes[key] = Scope(key)
        return scope

    def _owner(self, table: TableState, ctx: _Ctx) -> str | None:
        return None if table.kind is TableKind.SHARED else ctx.user_id

    def _row(self, table: TableState, values: Mapping[int, Any], deleted: bool = False) -> dict[str, Any]:
        row = {s.column.name: values.get(s.column_id) for s in table.columns}
        row["_deleted"] = deleted
        row["_seq"] = None
        return row

    def _check_types(
        self, table: TableState, items: Iterable[tuple[str, ColumnType | str, Any]], what: str
    ) -> None:
        for name, col_type, value in items:
            state = table.column(name)
            if state is None:
                continue
            if ColumnType(col_type) is not state.column.type:
                raise UsageError(
                    f"{what}: column {table.spec.name}.{name} is {state.column.type.value} in the model but the "
                    f"step says {ColumnType(col_type).value}; the step is stale for this model state"
                )
            if value is not None:
                try:
                    state.column.type.check(value)
                except ValueError as exc:
                    raise UsageError(f"{what}: column {table.spec.name}.{name}: {exc}") from None

    def _check_predicate(
        self, table: TableState, where: Predicate | None, dml: bool
    ) -> list[tuple[str, str]]:
        if where is None:
            return []
        names = where.columns()
        if "_seq" in names:
            raise UsageError("predicates on _seq are not modelled: the model does not know _seq values")
        if dml and "_deleted" in names:
            raise UsageError("UPDATE/DELETE predicates naming _deleted are not modelled")
        unknown = sorted(n for n in names if n != "_deleted" and table.column(n) is None)
        if unknown:
            return [(_BAD_QUERY, f"WHERE names unknown column(s) {unknown}")]
        self._check_types(table, self._predicate_literals(where), "WHERE")
        return []

    def _predicate_literals(self, pred: Any) -> list[tuple[str, ColumnType, Any]]:
        out: list[tuple[str, ColumnType, Any]] = []
        if hasattr(pred, "items"):
            for item in pred.items:
                out += self._predicate_literals(item)
        elif hasattr(pred, "item"):
            out += self._predicate_literals(pred.item)
        elif pred.column != "_deleted":
            out.append((pred.column, pred.col_type, None))
        return out

    # ------------------------------------------------------------------ rows per scope

    def _newest(self, scope: Scope) -> dict[Any, Version]:
        return {pk: versions[-1] for pk, versions in scope.versions.items() if versions}

    def _live(self, table: TableState, scope: Scope | None) -> dict[Any, Version]:
        if scope is None:
            return {}
        return {pk: v for pk, v in self._newest(scope).items() if not v.deleted}

    def _pk_literal(self, table: TableState, where: Predicate | None) -> tuple[bool, Any]:
        """``(True, key)`` when ``where`` is ``<pk> = <literal>`` and a dict lookup of ``key`` finds exactly the
        rows the predicate matches (int literal on an integer/TIMESTAMP PK, str on a TEXT PK); else
        ``(False, None)``. Keeps by-PK steps O(1) in the scope's size."""
        pk = table.pk
        if not isinstance(where, Cmp) or where.op != "=" or pk is None or where.column != pk.column.name:
            return False, None
        value = where.value
        if pk.column.type is ColumnType.TEXT:
            exact = isinstance(value, str)
        else:
            exact = isinstance(value, int) and not isinstance(value, bool)
        return (True, value) if exact else (False, None)

    def _newest_matching(
        self, table: TableState, scope: Scope, where: Predicate | None
    ) -> list[tuple[Any, Version]]:
        """``(pk, newest version)`` pairs that may match ``where``: one lookup for ``<pk> = <literal>``, else all.

        Callers still evaluate ``where`` on each row; this only narrows the rows looked at.
        """
        exact, key = self._pk_literal(table, where)
        if not exact:
            return [(pk, versions[-1]) for pk, versions in scope.versions.items() if versions]
        versions = scope.versions.get(key)
        return [(key, versions[-1])] if versions else []

    def _live_matching(
        self, table: TableState, scope: Scope | None, where: Predicate
    ) -> list[tuple[Any, Version]]:
        """Live ``(pk, newest version)`` pairs whose row satisfies ``where``, in write order of first insert."""
        if scope is None:
            return []
        return [
            (pk, v)
            for pk, v in self._newest_matching(table, scope, where)
            if not v.deleted and where.evaluate(self._row(table, v.values)) is True
        ]

    def _write(self, table: TableState, scope: Scope, pk: Any, values: dict[int, Any], deleted: bool) -> None:
        self.write_no += 1
        scope.versions.setdefault(pk, []).append(Version(self.write_no, values, deleted))
        table.flush.any_write = True
        table.flush.unflushed = True

    def _candidates(
        self, table: TableState, scope: Scope | None, where: Predicate | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Rows matching ``where``: (surely present, may be present)."""
        sure: list[dict[str, Any]] = []
        maybe: list[dict[str, Any]] = []
        if scope is None:
            return sure, maybe
        with_deleted = where is not None and "_deleted" in where.columns()
        if table.kind is TableKind.STREAM:
            ttl = table.spec.ttl_seconds or 0
            for row in scope.stream_rows:
                state = self._stream_state(row, ttl)
                if state == "gone":
                    continue
                values = self._row(table, row.values)
                if where is not None and where.evaluate(values) is not True:
                    continue
                (sure if state == "sure" else maybe).append(values)
            return sure, maybe
        for _, version in self._newest_matching(table, scope, where):
            if version.deleted and not with_deleted:
                continue
            values = self._row(table, version.values, version.deleted)
            if where is not None and where.evaluate(values) is not True:
                continue
            if version.deleted and (
                version.flushed or version.maybe_flushed or table.auto_flush or self._in_running_flush(table, version)
            ):
                # a completed or running flush may have discarded the tombstone (PROTOCOL §5.3, §7.3)
                maybe.append(values)
            else:
                sure.append(values)
        return sure, maybe

    def _in_running_flush(self, table: TableState, version: Any) -> bool:
        """Whether ``version`` was written before the table's running flush job began (the job may take it)."""
        flush = table.flush
        if flush.running_job is None:
            return False
        return version.write_no <= (flush.started_at if flush.started_at is not None else self.write_no)
