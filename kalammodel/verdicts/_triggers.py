"""Facts of a program that known-bug triggers are made of (docs/known-bugs.md).

A *trigger* is a named predicate over a :class:`Focus`: a program (its steps), one table of it, and the index of
the step in question. When a divergence is matched, the focus is the step the divergence names and the table it
is about; when a run asks whether a bug's trigger was exercised, every step of the program is tried as the focus
(for every table). Triggers read steps only (they never replay the model), so they are approximations that err
on the side of "the program did what the bug needs": a DELETE by a predicate counts as deleting any key.

Every trigger is registered in :data:`TRIGGERS` under its function name; the data file names them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeGuard

import attrs

from kalammodel.errors import Divergence
from kalammodel.model import And, Between, Cmp, Column, In, Not, Or, Predicate, TableKind, TableSpec
from kalammodel.steps import (
    AlterAddColumn,
    AlterDropColumn,
    CreateTable,
    Insert,
    ResubscribeFromSeq,
    Select,
    Step,
    Subscribe,
    Unsubscribe,
    Update,
)

__all__ = ["TRIGGERS", "Focus", "Program", "Trigger"]

#: the step kinds of explicit transactions, not generated yet (docs/kalamdb-findings.md #3): a ``begin`` step
#: opens a block that ``commit`` or ``rollback`` ends, or one ``transaction`` step carries its ``steps``
_TX_OPEN = "begin"
_TX_CLOSE = ("commit", "rollback")
_TX_BLOCK = "transaction"
#: step kinds that write a STREAM table's rows
_STREAM_WRITES = ("stream_insert", "stream_update", "insert", "update", "delete")
_INSERTS = ("insert", "stream_insert")


class Program:
    """A program's steps with the per-table facts triggers ask about, indexed once."""

    def __init__(self, steps: Sequence[Step]):
        self.steps: tuple[Step, ...] = tuple(steps)
        self._sub_tables: dict[str, str] = {}
        self._on: dict[str, list[tuple[int, Step]]] = {}
        for index, step in enumerate(self.steps):
            if isinstance(step, Subscribe):
                self._sub_tables[step.sub_id] = step.table
            elif isinstance(step, ResubscribeFromSeq) and step.from_sub in self._sub_tables:
                self._sub_tables[step.sub_id] = self._sub_tables[step.from_sub]
            table = self.table_of(step)
            if table is not None:
                self._on.setdefault(table, []).append((index, step))

    @property
    def tables(self) -> list[str]:
        """Every table a CREATE TABLE step of the program names, sorted."""
        return sorted({s.spec.name for s in self.steps if isinstance(s, CreateTable)})

    def table_of(self, step: Step) -> str | None:
        """The table ``step`` works on: its ``table``, a CREATE's spec name, or a subscription's table."""
        if isinstance(step, CreateTable):
            return step.spec.name
        table = getattr(step, "table", None)
        if isinstance(table, str):
            return table
        sub_id = getattr(step, "sub_id", None)
        return self._sub_tables.get(sub_id) if isinstance(sub_id, str) else None

    def on(self, table: str, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, Step]]:
        """(index, step) of the steps on ``table`` with ``start <= index < stop``."""
        for index, step in self._on.get(table, ()):
            if index >= start and (stop is None or index < stop):
                yield index, step

    def spec(self, table: str, at: int) -> TableSpec | None:
        """The spec of the newest CREATE TABLE of ``table`` at or before ``at``."""
        found = None
        for _, step in self.on(table, 0, at + 1):
            if isinstance(step, CreateTable):
                found = step.spec
        return found

    def kind(self, table: str, at: int) -> TableKind | None:
        spec = self.spec(table, at)
        return None if spec is None else spec.kind

    def columns(self, table: str, at: int) -> dict[str, Column]:
        """The table's columns as the step at ``at`` meets them: the CREATE's, then ADD/DROP COLUMN before it."""
        columns: dict[str, Column] = {}
        for _, step in self.on(table, 0, at):
            if isinstance(step, CreateTable):
                columns = {c.name: c for c in step.spec.columns}
            elif isinstance(step, AlterAddColumn):
                columns[step.column.name] = step.column
            elif isinstance(step, AlterDropColumn):
                columns.pop(step.column, None)
        return columns

    def primary_key(self, table: str, at: int) -> str | None:
        spec = self.spec(table, at)
        pk = None if spec is None else spec.primary_key
        return None if pk is None else pk.name

    def auto_flushed(self, table: str, at: int) -> bool:
        """Whether the table flushes by itself (a FLUSH_POLICY): then any step may be a completed flush."""
        spec = self.spec(table, at)
        return spec is not None and spec.flush_policy is not None

    def flush_starts(self, table: str, stop: int) -> list[int]:
        """Indices below ``stop`` at which a flush of ``table`` began (``flush``, ``start_flush``)."""
        if self.auto_flushed(table, stop - 1):
            return [i for i, _ in self.on(table, 0, stop)]
        return [i for i, s in self.on(table, 0, stop) if s.kind in ("flush", "start_flush")]

    def flush_completions(self, table: str, stop: int) -> list[int]:
        """Indices below ``stop`` at which a flush of ``table`` is known complete: a ``flush`` (the runner
        waits), an ``await_flush`` of a started one, or a ``flush`` after a started one (awaited first)."""
        if self.auto_flushed(table, stop - 1):
            return [i for i, _ in self.on(table, 0, stop)]
        done = []
        started = False
        for index, step in self.on(table, 0, stop):
            if step.kind == "start_flush":
                started = True
            elif step.kind == "flush" or (step.kind == "await_flush" and started):
                done.append(index)
                started = False
        return done


@attrs.frozen
class Focus:
    """What a trigger looks at: the program, the table, the step in question and (when matching) the divergence."""

    program: Program
    table: str
    index: int
    divergence: Divergence | None = None

    @property
    def step(self) -> Step:
        return self.program.steps[self.index]

    @property
    def on_table(self) -> bool:
        """Whether the step in question works on the focus table."""
        return self.program.table_of(self.step) == self.table

    def scope(self, step: Step) -> str | None:
        """Whose rows of the focus table ``step`` touches: its EXECUTE AS user or its actor (None: SHARED)."""
        if self.program.kind(self.table, self.index) is TableKind.SHARED:
            return None
        return step.as_user if step.as_user is not None else step.actor

    def before(self) -> Iterator[tuple[int, Step]]:
        """The steps on the table before the step in question."""
        return self.program.on(self.table, 0, self.index)

    def upto(self) -> Iterator[tuple[int, Step]]:
        """The steps on the table up to and including the step in question."""
        return self.program.on(self.table, 0, self.index + 1)


Trigger = Callable[[Focus], bool]

#: every trigger by name (the names the data file uses)
TRIGGERS: dict[str, Trigger] = {}


def _trigger(fn: Trigger) -> Trigger:
    TRIGGERS[fn.__name__] = fn
    return fn


# ---------------------------------------------------------------------- helpers


def _deletes_after_flush(focus: Focus) -> list[int]:
    """Indices of DELETEs of the table that follow a completed flush of it, before the step in question."""
    completions = focus.program.flush_completions(focus.table, focus.index)
    if not completions:
        return []
    first = completions[0]
    return [i for i, s in focus.before() if s.kind == "delete" and i > first]


def _inserted_keys(step: Step, pk: str) -> list[Any]:
    columns = getattr(step, "columns", ()) or ()
    if pk not in columns:
        return []
    at = list(columns).index(pk)
    return [row[at] for row in getattr(step, "rows", ())]


def _same(a: Any, b: Any) -> bool:
    """Equal key values (``True`` is not the key ``1``)."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _targets(where: Predicate | None, pk: str, key: Any) -> bool:
    """Whether a DELETE's WHERE may delete the row with primary key ``key`` (any other predicate may)."""
    if isinstance(where, Cmp) and where.column == pk and where.op == "=":
        return _same(where.value, key)
    if isinstance(where, In) and where.column == pk:
        return any(_same(v, key) for v in where.values)
    return True


def _nodes(pred: Predicate | None) -> Iterator[Predicate]:
    if pred is None:
        return
    yield pred
    if isinstance(pred, (And, Or)):
        for item in pred.items:
            yield from _nodes(item)
    elif isinstance(pred, Not):
        yield from _nodes(pred.item)


def _in_lists(focus: Focus) -> list[In]:
    if not focus.on_table:
        return []
    return [n for n in _nodes(getattr(focus.step, "where", None)) if isinstance(n, In)]


def _is_select(step: Step) -> TypeGuard[Select]:
    """A SELECT of rows (not ``select_deleted``, not a count)."""
    return isinstance(step, Select)


def _is_insert(step: Step) -> TypeGuard[Insert]:
    """An INSERT of rows (not a probe, not one naming a dropped column)."""
    return isinstance(step, Insert) and step.kind in _INSERTS


def _readded(focus: Focus) -> list[tuple[str, int]]:
    """(column, index of its DROP) for each column dropped and then added again at or before the step."""
    drops: dict[str, int] = {}
    found = []
    for index, step in focus.upto():
        if isinstance(step, AlterDropColumn):
            drops.setdefault(step.column, index)
        elif isinstance(step, AlterAddColumn) and step.column.name in drops:
            found.append((step.column.name, drops[step.column.name]))
    return found


def _adds_while_subscribed(focus: Focus) -> list[int]:
    """Indices of ADD COLUMNs of the table while a subscription on it was open (and stayed open up to the step)."""
    adds = []
    open_since: dict[str, int] = {}
    closed: dict[str, int] = {}
    for index, step in focus.upto():
        if isinstance(step, (Subscribe, ResubscribeFromSeq)):
            open_since.setdefault(step.sub_id, index)
        elif isinstance(step, Unsubscribe):
            closed[step.sub_id] = index
    for index, step in focus.upto():
        if step.kind != "alter_add_column":
            continue
        if any(since < index and sub not in closed for sub, since in open_since.items()):
            adds.append(index)
    return adds


# ---------------------------------------------------------------------- triggers: flush and delete


@_trigger
def deleted_after_flush(focus: Focus) -> bool:
    """A DELETE of the table ran after a flush of it completed, before the step in question."""
    return bool(_deletes_after_flush(focus))


@_trigger
def flushed_after_delete(focus: Focus) -> bool:
    """A flush of the table began after a DELETE that followed a completed flush, at or before the step."""
    deletes = _deletes_after_flush(focus)
    if not deletes:
        return False
    starts = focus.program.flush_starts(focus.table, focus.index + 1)
    return any(s > deletes[0] for s in starts)


@_trigger
def reinserts_deleted_key(focus: Focus) -> bool:
    """The step is an INSERT of a primary key that an earlier DELETE in the same scope may have deleted (the
    key was written in that scope before the DELETE, which names it or deletes by another predicate)."""
    step = focus.step
    pk = focus.program.primary_key(focus.table, focus.index)
    if step.kind != "insert" or not focus.on_table or pk is None:
        return False
    scope = focus.scope(step)
    wanted = _inserted_keys(step, pk)
    written: list[Any] = []
    for _, earlier in focus.before():
        if focus.scope(earlier) != scope:
            continue
        if earlier.kind in _INSERTS:
            written.extend(_inserted_keys(earlier, pk))
        elif earlier.kind == "delete":
            where = getattr(earlier, "where", None)
            for key in wanted:
                if any(_same(key, w) for w in written) and _targets(where, pk, key):
                    return True
    return False


# ---------------------------------------------------------------------- triggers: schema evolution


@_trigger
def column_readded(focus: Focus) -> bool:
    """A column of the table was dropped and a column of the same name added again, at or before the step."""
    return bool(_readded(focus))


@_trigger
def readded_column_had_values(focus: Focus) -> bool:
    """Before a re-added column was dropped, an INSERT or UPDATE of the table wrote a non-NULL value to it."""
    for column, dropped_at in _readded(focus):
        for _, step in focus.program.on(focus.table, 0, dropped_at):
            if _is_insert(step) and column in step.columns:
                at = list(step.columns).index(column)
                if any(row[at] is not None for row in step.rows):
                    return True
            if isinstance(step, Update) and any(
                name == column and value is not None for name, _, value in step.assignments
            ):
                return True
    return False


@_trigger
def drops_primary_key(focus: Focus) -> bool:
    """The step is an ALTER TABLE DROP COLUMN of the table's primary key."""
    step = focus.step
    pk = focus.program.primary_key(focus.table, focus.index)
    return isinstance(step, AlterDropColumn) and focus.on_table and pk is not None and step.column == pk


@_trigger
def omits_not_null_column(focus: Focus) -> bool:
    """The step is an INSERT whose column list leaves out a NOT NULL column without DEFAULT (or the primary
    key)."""
    step = focus.step
    if not _is_insert(step) or not focus.on_table:
        return False
    named = set(step.columns)
    columns = focus.program.columns(focus.table, focus.index)
    return any(c.not_null and c.default is None and name not in named for name, c in columns.items())


# ---------------------------------------------------------------------- triggers: ordering


@_trigger
def reads_provably_nothing(focus: Focus) -> bool:
    """The step is a SELECT of the table whose answer is empty whatever the table holds (``LIMIT 0``): a
    planner may answer it without scanning the table."""
    step = focus.step
    return _is_select(step) and focus.on_table and step.limit == 0


@_trigger
def orders_by_non_key_column(focus: Focus) -> bool:
    """The step is a SELECT of the table whose ORDER BY starts with a column other than the primary key."""
    step = focus.step
    if not _is_select(step) or not focus.on_table or not step.order_by:
        return False
    first = step.order_by[0][0]
    return first not in (focus.program.primary_key(focus.table, focus.index), "_seq")


@_trigger
def orders_by_key_descending(focus: Focus) -> bool:
    """The step is a SELECT of the table whose ORDER BY starts with the primary key, descending."""
    step = focus.step
    if not _is_select(step) or not focus.on_table or not step.order_by:
        return False
    first, descending = step.order_by[0]
    return descending and first == focus.program.primary_key(focus.table, focus.index)


@_trigger
def orders_by_unselected_column(focus: Focus) -> bool:
    """The step is a SELECT of the table that orders by a column its projection does not select."""
    step = focus.step
    if not _is_select(step) or not focus.on_table or step.columns is None:
        return False
    return any(name not in step.columns for name, _ in step.order_by)


@_trigger
def limits_ordered_select(focus: Focus) -> bool:
    """The step is a SELECT of the table with ORDER BY and a LIMIT or OFFSET."""
    step = focus.step
    return (
        _is_select(step)
        and focus.on_table
        and bool(step.order_by)
        and (step.limit is not None or step.offset is not None)
    )


@_trigger
def seq_order_differs_from_key_order(focus: Focus) -> bool:
    """Before the step, rows of the table were written out of primary-key order (a key below one written
    earlier) or updated (an update gives a row a newer ``_seq``): ``_seq`` order is not key order."""
    pk = focus.program.primary_key(focus.table, focus.index)
    if pk is None:
        return False
    highest: Any = None
    for _, step in focus.before():
        if step.kind == "update":
            return True
        if step.kind not in _INSERTS:
            continue
        for key in _inserted_keys(step, pk):
            if key is None:
                continue
            try:
                if highest is not None and key < highest:
                    return True
                highest = key if highest is None or key > highest else highest
            except TypeError:  # keys of different types: no order to compare
                continue
    return False


@_trigger
def subscribes_with_last_rows(focus: Focus) -> bool:
    """The step subscribes to the table asking for the newest ``last_rows`` rows as its snapshot."""
    step = focus.step
    return isinstance(step, Subscribe) and focus.on_table and step.last_rows is not None


# ---------------------------------------------------------------------- triggers: STREAM tables


@_trigger
def table_has_no_primary_key(focus: Focus) -> bool:
    """The table was created without a PRIMARY KEY (allowed for STREAM tables)."""
    spec = focus.program.spec(focus.table, focus.index)
    return spec is not None and spec.primary_key is None


@_trigger
def table_has_primary_key(focus: Focus) -> bool:
    """The table was created with a PRIMARY KEY."""
    spec = focus.program.spec(focus.table, focus.index)
    return spec is not None and spec.primary_key is not None


@_trigger
def stream_key_written_twice(focus: Focus) -> bool:
    """Before the step, STREAM inserts wrote one primary-key value twice (STREAM tables keep both rows)."""
    pk = focus.program.primary_key(focus.table, focus.index)
    if pk is None:
        return False
    seen: list[Any] = []
    for _, step in focus.before():
        if step.kind != "stream_insert":
            continue
        for key in _inserted_keys(step, pk):
            if any(_same(key, s) for s in seen):
                return True
            seen.append(key)
    return False


@_trigger
def stream_write_in_transaction(focus: Focus) -> bool:
    """At or before the step, a write of the STREAM table ran inside an explicit transaction: between a
    ``begin`` step and its ``commit``/``rollback``, or inside a ``transaction`` step's ``steps``.

    Transactions are not generated yet (docs/kalamdb-findings.md #3): the step kinds named here are the ones
    that surface will need.
    """
    if focus.program.kind(focus.table, focus.index) is not TableKind.STREAM:
        return False
    open_block = False
    for step in focus.program.steps[: focus.index + 1]:
        if step.kind == _TX_OPEN:
            open_block = True
        elif step.kind in _TX_CLOSE:
            open_block = False
        elif step.kind == _TX_BLOCK:
            inner = getattr(step, "steps", ())
            if any(s.kind in _STREAM_WRITES and focus.program.table_of(s) == focus.table for s in inner):
                return True
        elif open_block and step.kind in _STREAM_WRITES and focus.program.table_of(step) == focus.table:
            return True
    return False


# ---------------------------------------------------------------------- triggers: live queries


@_trigger
def subscription_open_across_add_column(focus: Focus) -> bool:
    """A subscription on the table was open when a column was added to it, and still open at the step."""
    return bool(_adds_while_subscribed(focus))


@_trigger
def updated_after_add_column(focus: Focus) -> bool:
    """An UPDATE of the table ran after an ADD COLUMN of it, at or before the step."""
    adds = [i for i, s in focus.upto() if s.kind == "alter_add_column"]
    return bool(adds) and any(i > adds[0] and s.kind == "update" for i, s in focus.upto())


# ---------------------------------------------------------------------- triggers: predicates


@_trigger
def two_in_lists_on_one_column(focus: Focus) -> bool:
    """The step's WHERE holds two IN lists on one column (DataFusion folds them, NULL or not)."""
    columns = [n.column for n in _in_lists(focus)]
    return len(columns) != len(set(columns))


@_trigger
def in_list_on_nullable_column(focus: Focus) -> bool:
    """The step's WHERE holds an IN list on a column that may be NULL."""
    columns = focus.program.columns(focus.table, focus.index)
    return any(n.column in columns and not columns[n.column].not_null for n in _in_lists(focus))


# ---------------------------------------------------------------------- triggers: literals


def _literals(pred: Predicate | None) -> Iterator[Any]:
    for node in _nodes(pred):
        if isinstance(node, Cmp):
            yield node.value
        elif isinstance(node, In):
            yield from node.values
        elif isinstance(node, Between):
            yield node.low
            yield node.high


def _negative_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and (
        value < 0 or (isinstance(value, float) and value == 0.0 and math.copysign(1.0, value) < 0)
    )


@_trigger
def live_filter_has_negative_literal(focus: Focus) -> bool:
    """A subscription on the table, open at the step, filters with a negative number (``c0 > -5``: KalamDB's
    live evaluator has no unary minus)."""
    for _, step in focus.upto():
        if isinstance(step, Subscribe) and any(_negative_number(v) for v in _literals(step.where)):
            return True
    return False


@_trigger
def compares_with_negative_zero(focus: Focus) -> bool:
    """The step's WHERE compares a DOUBLE column with ``-0.0``, which equals ``0.0`` in SQL."""
    where = getattr(focus.step, "where", None)
    return focus.on_table and any(
        isinstance(v, float) and v == 0.0 and math.copysign(1.0, v) < 0 for v in _literals(where)
    )
