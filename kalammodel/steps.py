"""Steps: every operation the tester performs, as frozen data (docs/ARCHITECTURE.md "Steps").

A step knows how to render itself as requests (:meth:`Step.requests`) and how it changes the model and what
outcome the model predicts (:meth:`Step.apply`, one expectation per request). Steps without a request
(``AwaitFlush``, ``Pause``) return one *runner action* (``ExpectFlushDone``, ``ExpectPause``) instead.

Every step carries its acting identity (``actor``, a pool name such as ``root``, ``dba``, ``svc``, ``user1``)
and an optional ``as_user``: a user id the request runs as via ``EXECUTE AS USER`` (PROTOCOL §6.3). Tables are
named by their short name; ``requests(ns)`` qualifies them.

``step_to_data`` / ``step_from_data`` turn steps into JSON-able dicts and back (``{"kind": "insert", ...}``);
bad data raises :class:`~kalammodel.errors.UsageError` naming the kind and the field.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, ClassVar

import attrs

from .errors import UsageError
from .model import (
    And,
    Between,
    Cmp,
    Column,
    ColumnType,
    Expectation,
    In,
    IsNotNull,
    IsNull,
    Like,
    Model,
    Not,
    Or,
    Predicate,
    TableSpec,
    pred_from_data,
    pred_to_data,
    render_value,
)

__all__ = [
    "AlterAddColumn",
    "AlterDropColumn",
    "AwaitFlush",
    "Count",
    "CreateTable",
    "Delete",
    "Flush",
    "Insert",
    "InsertNamingDroppedColumn",
    "LIVE_STEPS",
    "NextBatch",
    "Pause",
    "ProbeCreateShared",
    "ProbeExecuteAs",
    "ProbeSharedWrite",
    "ProbeSystemRead",
    "Request",
    "Restart",
    "ResubscribeFromSeq",
    "STEP_TYPES",
    "Select",
    "SelectDeleted",
    "StartFlush",
    "Step",
    "StreamInsert",
    "StreamSelect",
    "StreamUpdate",
    "Subscribe",
    "Unsubscribe",
    "Update",
    "render_value",
    "step_from_data",
    "step_to_data",
]

_PRED_TYPES = (Cmp, IsNull, IsNotNull, In, Between, Like, And, Or, Not)
_SCALARS = (type(None), bool, int, float, str)


@attrs.frozen
class Request:
    """One HTTP SQL request: who sends it, the SQL (namespace substituted), and an optional EXECUTE AS target."""

    actor: str
    sql: str
    as_user: str | None = None

    def __str__(self) -> str:
        if self.as_user is None:
            return f"[{self.actor}] {self.sql}"
        return f"[{self.actor}] EXECUTE AS USER '{self.as_user}' ({self.sql})"


# ---------------------------------------------------------------------- field converters and validators


def _fail(field: str, message: str) -> ValueError:
    return ValueError(f"field {field!r}: {message}")


def _str(field: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise _fail(field, f"must be a non-empty str (got {value!r})")
        return value

    return convert


def _actor(value: Any) -> str:
    return _str("actor")(value)


def _table(value: Any) -> str:
    return _str("table")(value)


def _column_name(value: Any) -> str:
    return _str("column")(value)


def _column_names(value: Any) -> tuple[str, ...]:
    return _names("columns")(value)


def _limit(value: Any) -> int | None:
    return _opt_count("limit")(value)


def _offset(value: Any) -> int | None:
    return _opt_count("offset")(value)


def _opt_str(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise _fail("as_user", f"must be None or a non-empty str (got {value!r})")
    return value


def _names(field: str) -> Callable[[Any], tuple[str, ...]]:
    def convert(value: Any) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise _fail(field, f"must be a list of column names (got {value!r})")
        for name in value:
            if not isinstance(name, str):
                raise _fail(field, f"column names must be str (got {name!r})")
        return tuple(value)

    return convert


def _opt_names(value: Any) -> tuple[str, ...] | None:
    return None if value is None else _names("columns")(value)


def _types(value: Any) -> tuple[ColumnType, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _fail("types", f"must be a list of column types (got {value!r})")
    try:
        return tuple(v if isinstance(v, ColumnType) else ColumnType(str(v).upper()) for v in value)
    except ValueError as exc:
        raise _fail("types", f"{exc}; known: {[t.value for t in ColumnType]}") from None


def _cell(field: str, value: Any) -> Any:
    if not isinstance(value, _SCALARS):
        raise _fail(field, f"cells must be None, bool, int, float or str (got {value!r})")
    return value


def _rows(value: Any) -> tuple[tuple[Any, ...], ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _fail("rows", f"must be a list of rows (got {value!r})")
    out = []
    for row in value:
        if isinstance(row, str) or not isinstance(row, (list, tuple)):
            raise _fail("rows", f"each row must be a list of cells (got {row!r})")
        out.append(tuple(_cell("rows", c) for c in row))
    return tuple(out)


def _assignments(value: Any) -> tuple[tuple[str, ColumnType, Any], ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _fail("assignments", f"must be a list of [column, type, value] (got {value!r})")
    out = []
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 3 or not isinstance(item[0], str):
            raise _fail("assignments", f"each assignment must be [column, type, value] (got {item!r})")
        try:
            col_type = item[1] if isinstance(item[1], ColumnType) else ColumnType(str(item[1]).upper())
        except ValueError:
            raise _fail("assignments", f"unknown column type {item[1]!r}") from None
        out.append((item[0], col_type, _cell("assignments", item[2])))
    return tuple(out)


def _where(value: Any) -> Predicate | None:
    if value is None or isinstance(value, _PRED_TYPES):
        return value
    try:
        return pred_from_data(value)
    except (ValueError, TypeError) as exc:
        raise _fail("where", str(exc)) from None


def _order_by(value: Any) -> tuple[tuple[str, bool], ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _fail("order_by", f"must be a list of [column, descending] (got {value!r})")
    out = []
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str):
            raise _fail("order_by", f"each key must be [column, descending] (got {item!r})")
        if not isinstance(item[1], bool):
            raise _fail("order_by", f"descending must be a bool (got {item[1]!r})")
        out.append((item[0], item[1]))
    return tuple(out)


def _opt_count(field: str) -> Callable[[Any], int | None]:
    def convert(value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(field, f"must be None or an int >= 0 (got {value!r})")
        return value

    return convert


def _spec(value: Any) -> TableSpec:
    try:
        return TableSpec.from_data(value)
    except (TypeError, ValueError) as exc:
        raise _fail("spec", str(exc)) from None


def _column(value: Any) -> Column:
    try:
        return Column.from_data(value)
    except (TypeError, ValueError) as exc:
        raise _fail("column", str(exc)) from None


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 600:
        raise _fail("seconds", f"must be a number of seconds in [0, 600] (got {value!r})")
    return float(value)


def _show(value: Any) -> str:
    return repr(value)


def _row_text(row: tuple[Any, ...]) -> str:
    return "(" + ", ".join(_show(v) for v in row) + ")"


# ---------------------------------------------------------------------- steps


class Step:
    """Base of every step: data plus ``requests``, ``apply`` and ``describe``."""

    kind: ClassVar[str] = ""
    #: the step only reads (one SELECT): its answer changes nothing the runner does next, so a runner sending
    #: ahead may compare it later (``Runner(send_ahead=True)``)
    reads_only: ClassVar[bool] = False
    actor: str
    as_user: str | None

    def requests(self, ns: str) -> list[Request]:
        raise NotImplementedError

    def apply(self, model: Model) -> list[Expectation]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def _who(self) -> str:
        who = f"by={self.actor}"
        return who if self.as_user is None else f"{who}, as_user={self.as_user!r}"

    def _request(self, sql: str) -> list[Request]:
        return [Request(self.actor, sql, self.as_user)]


@attrs.frozen
class CreateTable(Step):
    """``CREATE <kind> TABLE`` from a generated :class:`TableSpec` (PROTOCOL §4.1)."""

    kind: ClassVar[str] = "create_table"
    actor: str = attrs.field(converter=_actor)
    spec: TableSpec = attrs.field(converter=_spec)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)

    def requests(self, ns: str) -> list[Request]:
        return self._request(self.spec.render(ns))

    def apply(self, model: Model) -> list[Expectation]:
        return [model.create_table(self.actor, self.spec, self.as_user)]

    def describe(self) -> str:
        spec = self.spec
        cols = ", ".join(c.render() for c in spec.columns)
        options = []
        for name in ("ttl_seconds", "access_level", "storage_id", "flush_policy"):
            value = getattr(spec, name)
            if value is not None:
                options.append(f"{name}={value.value if isinstance(value, enum.Enum) else value!r}")
        opts = f", {', '.join(options)}" if options else ""
        return f"{self.kind}({spec.name}, {spec.kind.value}, [{cols}]{opts}, {self._who()})"


@attrs.frozen
class ProbeCreateShared(CreateTable):
    """RBAC probe: an identity (typically role ``user``) creates a SHARED table; ``user`` must be denied."""

    kind: ClassVar[str] = "probe_create_shared"


@attrs.frozen
class Insert(Step):
    """``INSERT INTO t (columns) VALUES (...), ...`` — may carry duplicate or existing PKs on purpose."""

    kind: ClassVar[str] = "insert"
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    columns: tuple[str, ...] = attrs.field(converter=_column_names)
    types: tuple[ColumnType, ...] = attrs.field(converter=_types)
    rows: tuple[tuple[Any, ...], ...] = attrs.field(converter=_rows)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)

    @types.validator
    def _check_shape(self, attribute: attrs.Attribute, value: tuple[ColumnType, ...]) -> None:
        if len(value) != len(self.columns):
            raise _fail("types", f"has {len(value)} type(s) for {len(self.columns)} column(s)")

    @rows.validator
    def _check_rows(self, attribute: attrs.Attribute, value: tuple[tuple[Any, ...], ...]) -> None:
        if not value:
            raise _fail("rows", "needs at least one row")
        for row in value:
            if len(row) != len(self.columns):
                raise _fail("rows", f"row {row!r} has {len(row)} value(s) for {len(self.columns)} column(s)")

    def requests(self, ns: str) -> list[Request]:
        values = ", ".join(
            "(" + ", ".join(render_value(t, v) for t, v in zip(self.types, row)) + ")" for row in self.rows
        )
        return self._request(f"INSERT INTO {ns}.{self.table} ({', '.join(self.columns)}) VALUES {values}")

    def apply(self, model: Model) -> list[Expectation]:
        return [model.insert(self.actor, self.table, self.columns, self.types, self.rows, self.as_user)]

    def describe(self) -> str:
        rows = ", ".join(_row_text(r) for r in self.rows)
        return f"{self.kind}({self.table}, {self._who()}, ({', '.join(self.columns)}) VALUES {rows})"


@attrs.frozen
class InsertNamingDroppedColumn(Insert):
    """An INSERT whose column list names a dropped column: must fail with SQL_EXECUTION_ERROR (PROTOCOL §9)."""

    kind: ClassVar[str] = "insert_dropped_column"


@attrs.frozen
class StreamInsert(Insert):
    """INSERT into a STREAM table (rows expire after the TTL)."""

    kind: ClassVar[str] = "stream_insert"


@attrs.frozen
class ProbeSharedWrite(Insert):
    """RBAC probe: an INSERT into a SHARED table; role ``user`` must be denied at every access level."""

    kind: ClassVar[str] = "probe_shared_write"


def _where_sql(where: Predicate | None) -> str:
    return "" if where is None else f" WHERE {where.render()}"


def _where_text(where: Predicate | None) -> str:
    return "" if where is None else f", where={where.render()!r}"


@attrs.frozen
class Update(Step):
    """``UPDATE t SET ... WHERE ...`` by PK or by any predicate (PROTOCOL §5.2)."""

    kind: ClassVar[str] = "update"
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    assignments: tuple[tuple[str, ColumnType, Any], ...] = attrs.field(converter=_assignments)
    where: Predicate | None = attrs.field(default=None, converter=_where)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)

    @assignments.validator
    def _check_assignments(self, attribute: attrs.Attribute, value: tuple[Any, ...]) -> None:
        if not value:
            raise _fail("assignments", "needs at least one assignment")

    @classmethod
    def by_pk(
        cls,
        actor: str,
        table: str,
        pk: str,
        pk_type: ColumnType,
        pk_value: Any,
        assignments: Any,
        as_user: str | None = None,
    ) -> Update:
        """An UPDATE of the row with primary key ``pk = pk_value``."""
        return cls(actor, table, assignments, Cmp(pk, pk_type, "=", pk_value), as_user)

    def requests(self, ns: str) -> list[Request]:
        sets = ", ".join(f"{c} = {render_value(t, v)}" for c, t, v in self.assignments)
        return self._request(f"UPDATE {ns}.{self.table} SET {sets}{_where_sql(self.where)}")

    def apply(self, model: Model) -> list[Expectation]:
        return [model.update(self.actor, self.table, self.assignments, self.where, self.as_user)]

    def describe(self) -> str:
        sets = ", ".join(f"{c}={_show(v)}" for c, _, v in self.assignments)
        return f"{self.kind}({self.table}, {self._who()}, set=[{sets}]{_where_text(self.where)})"


@attrs.frozen
class StreamUpdate(Update):
    """UPDATE on a STREAM table: always rejected (PROTOCOL §8)."""

    kind: ClassVar[str] = "stream_update"


@attrs.frozen
class Delete(Step):
    """``DELETE FROM t WHERE ...``: a tombstone per live row matched (STREAM: hard delete)."""

    kind: ClassVar[str] = "delete"
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    where: Predicate | None = attrs.field(default=None, converter=_where)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)

    @classmethod
    def by_pk(
        cls, actor: str, table: str, pk: str, pk_type: ColumnType, pk_value: Any, as_user: str | None = None
    ) -> Delete:
        """A DELETE of the row with primary key ``pk = pk_value``."""
        return cls(actor, table, Cmp(pk, pk_type, "=", pk_value), as_user)

    def requests(self, ns: str) -> list[Request]:
        return self._request(f"DELETE FROM {ns}.{self.table}{_where_sql(self.where)}")

    def apply(self, model: Model) -> list[Expectation]:
        return [model.delete(self.actor, self.table, self.where, self.as_user)]

    def describe(self) -> str:
        return f"{self.kind}({self.table}, {self._who()}{_where_text(self.where)})"


@attrs.frozen
class Select(Step):
    """``SELECT cols|* FROM t [WHERE] [ORDER BY] [LIMIT] [OFFSET]`` (``columns`` None means ``*``)."""

    kind: ClassVar[str] = "select"
    reads_only: ClassVar[bool] = True
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    columns: tuple[str, ...] | None = attrs.field(default=None, converter=_opt_names)
    where: Predicate | None = attrs.field(default=None, converter=_where)
    order_by: tuple[tuple[str, bool], ...] = attrs.field(default=(), converter=_order_by)
    limit: int | None = attrs.field(default=None, converter=_limit)
    offset: int | None = attrs.field(default=None, converter=_offset)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)

    def requests(self, ns: str) -> list[Request]:
        cols = "*" if self.columns is None else ", ".join(self.columns)
        sql = f"SELECT {cols} FROM {ns}.{self.table}{_where_sql(self.where)}"
        if self.order_by:
            sql += " ORDER BY " + ", ".join(f"{c} DESC" if d else f"{c} ASC" for c, d in self.order_by)
        if self.limit is not None:
            sql += f" LIMIT {self.limit}"
        if self.offset is not None:
            sql += f" OFFSET {self.offset}"
        return self._request(sql)

    def apply(self, model: Model) -> list[Expectation]:
        return [
            model.select(
                self.actor,
                self.table,
                self.columns,
                self.where,
                self.order_by,
                self.limit,
                self.offset,
                self.as_user,
            )
        ]

    def describe(self) -> str:
        parts = [self.table, self._who()]
        if self.columns is not None:
            parts.append(f"columns=[{', '.join(self.columns)}]")
        if self.where is not None:
            parts.append(f"where={self.where.render()!r}")
        if self.order_by:
            parts.append(
                "order_by=[" + ", ".join(f"{c}{' DESC' if d else ''}" for c, d in self.order_by) + "]"
            )
        if self.limit is not None:
            parts.append(f"limit={self.limit}")
        if self.offset is not None:
            parts.append(f"offset={self.offset}")
        return f"{self.kind}({', '.join(parts)})"


@attrs.frozen
class StreamSelect(Select):
    """SELECT on a STREAM table: rows near their TTL may or may not appear."""

    kind: ClassVar[str] = "stream_select"


@attrs.frozen
class ProbeExecuteAs(Select):
    """RBAC probe: a SELECT under ``EXECUTE AS USER``; a ``user`` targeting another id must be denied."""

    kind: ClassVar[str] = "probe_execute_as"


_DELETED_TRUE = Cmp("_deleted", ColumnType.BOOLEAN, "=", True)


@attrs.frozen
class SelectDeleted(Step):
    """``SELECT cols|* FROM t WHERE _deleted = true``: tombstones still hot (PROTOCOL §5.3)."""

    kind: ClassVar[str] = "select_deleted"
    reads_only: ClassVar[bool] = True
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    columns: tuple[str, ...] | None = attrs.field(default=None, converter=_opt_names)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)

    def _select(self) -> Select:
        return Select(self.actor, self.table, self.columns, _DELETED_TRUE, as_user=self.as_user)

    def requests(self, ns: str) -> list[Request]:
        return self._select().requests(ns)

    def apply(self, model: Model) -> list[Expectation]:
        return self._select().apply(model)

    def describe(self) -> str:
        cols = "" if self.columns is None else f", columns=[{', '.join(self.columns)}]"
        return f"{self.kind}({self.table}, {self._who()}{cols})"


@attrs.frozen
class Count(Step):
    """``SELECT COUNT(*) AS n FROM t [WHERE]``: the true count, never capped."""

    kind: ClassVar[str] = "count"
    reads_only: ClassVar[bool] = True
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    where: Predicate | None = attrs.field(default=None, converter=_where)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)

    def requests(self, ns: str) -> list[Request]:
        return self._request(f"SELECT COUNT(*) AS n FROM {ns}.{self.table}{_where_sql(self.where)}")

    def apply(self, model: Model) -> list[Expectation]:
        return [model.count(self.actor, self.table, self.where, self.as_user)]

    def describe(self) -> str:
        return f"{self.kind}({self.table}, {self._who()}{_where_text(self.where)})"


@attrs.frozen
class Flush(Step):
    """``STORAGE FLUSH TABLE``; the runner waits for the job, then calls ``model.flush_completed``."""

    kind: ClassVar[str] = "flush"
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)
    wait: ClassVar[bool] = True

    def requests(self, ns: str) -> list[Request]:
        return self._request(f"STORAGE FLUSH TABLE {ns}.{self.table}")

    def apply(self, model: Model) -> list[Expectation]:
        return [model.flush(self.actor, self.table, wait=self.wait, as_user=self.as_user)]

    def describe(self) -> str:
        return f"{self.kind}({self.table}, {self._who()})"


@attrs.frozen
class StartFlush(Flush):
    """``STORAGE FLUSH TABLE`` without waiting: later steps run while the job may be active."""

    kind: ClassVar[str] = "start_flush"
    wait: ClassVar[bool] = False


@attrs.frozen
class AwaitFlush(Step):
    """Runner action: wait for the job of the last ``StartFlush`` of a table (sends no SQL)."""

    kind: ClassVar[str] = "await_flush"
    table: str = attrs.field(converter=_table)
    actor: str = attrs.field(default="root", converter=_actor)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)

    def requests(self, ns: str) -> list[Request]:
        return []

    def apply(self, model: Model) -> list[Expectation]:
        return [model.await_flush(self.table)]

    def describe(self) -> str:
        return f"{self.kind}({self.table})"


@attrs.frozen
class AlterAddColumn(Step):
    """``ALTER TABLE t ADD COLUMN c TYPE``: old rows read NULL (PROTOCOL §9)."""

    kind: ClassVar[str] = "alter_add_column"
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    column: Column = attrs.field(converter=_column)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)

    def requests(self, ns: str) -> list[Request]:
        return self._request(f"ALTER TABLE {ns}.{self.table} ADD COLUMN {self.column.render()}")

    def apply(self, model: Model) -> list[Expectation]:
        return [model.alter_add_column(self.actor, self.table, self.column, self.as_user)]

    def describe(self) -> str:
        return f"{self.kind}({self.table}, {self._who()}, {self.column.render()!r})"


@attrs.frozen
class AlterDropColumn(Step):
    """``ALTER TABLE t DROP COLUMN c``: gone from reads, never back with old values (PROTOCOL §9)."""

    kind: ClassVar[str] = "alter_drop_column"
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    column: str = attrs.field(converter=_column_name)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)

    def requests(self, ns: str) -> list[Request]:
        return self._request(f"ALTER TABLE {ns}.{self.table} DROP COLUMN {self.column}")

    def apply(self, model: Model) -> list[Expectation]:
        return [model.alter_drop_column(self.actor, self.table, self.column, self.as_user)]

    def describe(self) -> str:
        return f"{self.kind}({self.table}, {self._who()}, {self.column!r})"


@attrs.frozen
class ProbeSystemRead(Step):
    """RBAC probe: ``SELECT * FROM system.<table> LIMIT 1``; only dba/system may read system tables."""

    kind: ClassVar[str] = "probe_system_read"
    reads_only: ClassVar[bool] = True
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(default="users", converter=_table)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)

    def requests(self, ns: str) -> list[Request]:
        return self._request(f"SELECT * FROM system.{self.table} LIMIT 1")

    def apply(self, model: Model) -> list[Expectation]:
        return [model.read_system_table(self.actor, self.table, self.as_user)]

    def describe(self) -> str:
        return f"{self.kind}(system.{self.table}, {self._who()})"


@attrs.frozen
class Restart(Step):
    """Runner action: kill the server (``hard``: SIGKILL) and start it again; nothing acknowledged may be lost.

    Run by ``kalammodel.durability.RestartExtension``; sends no SQL, changes nothing in the model.
    """

    kind: ClassVar[str] = "restart"
    hard: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    actor: ClassVar[str] = "root"  # type: ignore[misc]
    as_user: ClassVar[str | None] = None  # type: ignore[misc]

    def requests(self, ns: str) -> list[Request]:
        return []

    def apply(self, model: Model) -> list[Expectation]:
        return []

    def describe(self) -> str:
        return f"{self.kind}({'SIGKILL' if self.hard else 'clean stop'})"


@attrs.frozen
class Pause(Step):
    """Runner action: let ``seconds`` pass (STREAM TTL expiry); sends no SQL."""

    kind: ClassVar[str] = "pause"
    seconds: float = attrs.field(converter=_seconds)
    actor: ClassVar[str] = "root"  # type: ignore[misc]
    as_user: ClassVar[str | None] = None  # type: ignore[misc]

    def requests(self, ns: str) -> list[Request]:
        return []

    def apply(self, model: Model) -> list[Expectation]:
        return [model.pause(self.seconds)]

    def describe(self) -> str:
        return f"{self.kind}({self.seconds:g})"


# ---------------------------------------------------------------------- live queries (PROTOCOL §10)
# Run by the live extension (kalammodel.live), not by Session.run: they send WebSocket messages, not SQL.


def _sub_id(value: Any) -> str:
    return _str("sub_id")(value)


def _opt_size(field: str) -> Callable[[Any], int | None]:
    def convert(value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _fail(field, f"must be None or an int >= 1 (got {value!r})")
        return value

    return convert


class _LiveStep(Step):
    """A live-query step: ``requests`` is empty and ``apply`` refuses; the live extension runs it."""

    def requests(self, ns: str) -> list[Request]:
        return []

    def apply(self, model: Model) -> list[Expectation]:
        raise UsageError(
            f"step {self.kind!r} is a live-query step: run it with the live extension "
            "(Runner(..., extensions=[kalammodel.live.live_extension]))"
        )


@attrs.frozen
class Subscribe(_LiveStep):
    """Open a WebSocket subscription ``SELECT cols|* FROM t [WHERE]`` as ``actor`` (one connection each)."""

    kind: ClassVar[str] = "subscribe"
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    sub_id: str = attrs.field(converter=_sub_id)
    columns: tuple[str, ...] | None = attrs.field(default=None, converter=_opt_names)
    where: Predicate | None = attrs.field(default=None, converter=_where)
    snapshot: bool = True
    batch_size: int | None = attrs.field(default=None, converter=_opt_size("batch_size"))  # type: ignore[misc]
    last_rows: int | None = attrs.field(default=None, converter=_opt_size("last_rows"))  # type: ignore[misc]
    as_user: ClassVar[str | None] = None  # type: ignore[misc]

    def sql(self, ns: str) -> str:
        cols = "*" if self.columns is None else ", ".join(self.columns)
        return f"SELECT {cols} FROM {ns}.{self.table}{_where_sql(self.where)}"

    def describe(self) -> str:
        parts = [self.sub_id, self.table, f"by={self.actor}"]
        if self.columns is not None:
            parts.append(f"columns=[{', '.join(self.columns)}]")
        if self.where is not None:
            parts.append(f"where={self.where.render()!r}")
        parts.append(f"snapshot={self.snapshot}")
        if self.batch_size is not None:
            parts.append(f"batch_size={self.batch_size}")
        if self.last_rows is not None:
            parts.append(f"last_rows={self.last_rows}")
        return f"{self.kind}({', '.join(parts)})"


@attrs.frozen
class NextBatch(_LiveStep):
    """Pull the next snapshot batch of a loading subscription (``next_batch`` with the last ``last_seq_id``)."""

    kind: ClassVar[str] = "next_batch"
    sub_id: str = attrs.field(converter=_sub_id)
    actor: ClassVar[str] = "root"  # type: ignore[misc]
    as_user: ClassVar[str | None] = None  # type: ignore[misc]

    def describe(self) -> str:
        return f"{self.kind}({self.sub_id})"


@attrs.frozen
class Unsubscribe(_LiveStep):
    """End a subscription: ``unsubscribe`` on its connection, or (``disconnect``) close the connection."""

    kind: ClassVar[str] = "unsubscribe"
    sub_id: str = attrs.field(converter=_sub_id)
    disconnect: bool = False
    actor: ClassVar[str] = "root"  # type: ignore[misc]
    as_user: ClassVar[str | None] = None  # type: ignore[misc]

    def describe(self) -> str:
        return f"{self.kind}({self.sub_id}{', disconnect' if self.disconnect else ''})"


@attrs.frozen
class ResubscribeFromSeq(_LiveStep):
    """Subscribe again like ``from_sub`` did, with ``from_seq_id`` = the newest ``_seq`` it received.

    A ``from_sub`` still open loses its connection first (``Unsubscribe(disconnect=True)``): a client resumes
    after a dropped connection.
    """

    kind: ClassVar[str] = "resubscribe_from_seq"
    sub_id: str = attrs.field(converter=_sub_id)
    from_sub: str = attrs.field(converter=_str("from_sub"))  # type: ignore[misc]
    actor: ClassVar[str] = "root"  # type: ignore[misc]
    as_user: ClassVar[str | None] = None  # type: ignore[misc]

    def describe(self) -> str:
        return f"{self.kind}({self.sub_id}, from last _seq of {self.from_sub})"


LIVE_STEPS: tuple[type[Step], ...] = (Subscribe, NextBatch, Unsubscribe, ResubscribeFromSeq)


STEP_TYPES: dict[str, type[Step]] = {
    cls.kind: cls
    for cls in (
        CreateTable,
        ProbeCreateShared,
        Insert,
        InsertNamingDroppedColumn,
        StreamInsert,
        ProbeSharedWrite,
        Update,
        StreamUpdate,
        Delete,
        Select,
        StreamSelect,
        ProbeExecuteAs,
        SelectDeleted,
        Count,
        Flush,
        StartFlush,
        AwaitFlush,
        AlterAddColumn,
        AlterDropColumn,
        ProbeSystemRead,
        Pause,
        Restart,
        Subscribe,
        NextBatch,
        Unsubscribe,
        ResubscribeFromSeq,
    )
}


def _to_data(value: Any) -> Any:
    if isinstance(value, _PRED_TYPES):
        return pred_to_data(value)
    if isinstance(value, (TableSpec, Column)):
        return value.to_data()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_to_data(v) for v in value]
    return value


def step_to_data(step: Step) -> dict[str, Any]:
    """A JSON-able dict for ``step``: ``{"kind": ..., <fields>}``."""
    if type(step) not in STEP_TYPES.values():
        raise UsageError(f"{step!r} is not a registered step; known kinds: {sorted(STEP_TYPES)}")
    data: dict[str, Any] = {"kind": step.kind}
    for field in attrs.fields(type(step)):  # type: ignore[arg-type]
        data[field.name] = _to_data(getattr(step, field.name))
    return data


def step_from_data(data: Any) -> Step:
    """The step a :func:`step_to_data` dict describes; raises UsageError naming the kind and field on bad data."""
    if not isinstance(data, dict):
        raise UsageError(f"a step must be a dict with a 'kind' key (got {data!r})")
    kind = data.get("kind")
    cls = STEP_TYPES.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise UsageError(f"unknown step kind {kind!r}; known kinds: {sorted(STEP_TYPES)}")
    fields = {k: v for k, v in data.items() if k != "kind"}
    names = [f.name for f in attrs.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(fields) - set(names))
    if unknown:
        raise UsageError(f"step {kind!r}: unknown field(s) {unknown}; fields are {names}")
    fields_of = attrs.fields(cls)  # type: ignore[arg-type]
    missing = [f.name for f in fields_of if f.default is attrs.NOTHING and f.name not in fields]
    if missing:
        raise UsageError(f"step {kind!r}: missing field(s) {missing}")
    try:
        return cls(**fields)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"step {kind!r}: {exc}") from None
