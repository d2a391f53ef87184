"""What a subscription's messages may hold after ALTER TABLE, and when the server may end a subscription.

The live-query contract (PROTOCOL §9, §10; docs/invariants.md "Live queries"):

* **Names bind to the current table.** A subscription gets no schema-change signal and its ack schema goes stale
  (§9), but its query is SQL text: payloads and the filter follow the table as it is now, by column name. So
  each name a subscription shows falls in one of three classes (:class:`SubColumns`): *compared* (the column the
  ack described, still there: its value must agree), *fresh* (a column added after the ack, also a dropped name
  added again: it may be absent from a payload, and when present it is the new column's value — NULL for older
  rows, never the dropped column's old values) and *gone* (a column of the ack the table no longer has: absent, or
  NULL as a server filling rows from the stale ack schema would send it; never a value).
* **The filter is judged by SQL three-valued logic** on the current row (:func:`verdict`). A comparison naming a
  column that is gone, or whose type changed since the subscription started, cannot be evaluated: it is UNKNOWN
  in Kleene logic, so ``n > 0 OR gone = 1`` still admits ``n = 5``. A change whose verdict is UNKNOWN is neither
  admitted nor excluded: the server must tell the client (it cannot deliver it, and it may not drop it
  silently).
* **The server may end a subscription** by telling the client (an ``error`` message for the subscription, or a
  close of the connection) only where the contract lets it give up (:func:`give_up_reason`): a filter outside
  the documented live grammar (§10.5), a column the subscription names dropped under it, its table dropped, or
  changes buffered while its snapshot was pulled (§10.6 buffer limits). Anywhere else an ended subscription is
  a divergence; after being told, nothing more may arrive for it.

Subscribe refusals are families of codes (:data:`REFUSALS`): one code where the contract fixes it, otherwise the
codes KalamDB's ``handle_subscribe`` may map a planning failure to.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ._predicates import And, Cmp, Like, Not, Or, Predicate
from ._types import ColumnType, TableKind, canonical_json

if TYPE_CHECKING:
    from ._state import TableState

__all__ = [
    "REFUSALS",
    "LiveChange",
    "LiveOptions",
    "LiveSub",
    "SubColumns",
    "give_up_reason",
    "outside_live_grammar",
    "sub_columns",
    "unevaluable",
    "verdict",
]

#: Refusal of a subscribe → the codes the contract accepts for it (kalamdb-api ws/events/subscription.rs
#: ``handle_subscribe`` maps LiveError::PermissionDenied → UNAUTHORIZED, NotFound → NOT_FOUND, InvalidSql →
#: INVALID_SQL, InvalidOperation → UNSUPPORTED, anything else → SUBSCRIPTION_FAILED).
REFUSALS: dict[str, tuple[str, ...]] = {
    # §10.3 fixes it: last_rows above batch_size is UNSUPPORTED (validated before the query is planned)
    "last_rows": ("UNSUPPORTED",),
    # §10.5: a role that may not read the SHARED table; the access check is a PermissionDenied
    "access": ("UNAUTHORIZED",),
    # planning failures: the table lookup may fail in KalamDB's own resolver (NOT_FOUND) or in the SQL planner
    # (INVALID_SQL, or SUBSCRIPTION_FAILED for a DataFusion error)
    "table": ("NOT_FOUND", "INVALID_SQL", "SUBSCRIPTION_FAILED"),
    # an unknown column: KalamDB's projection check (INVALID_SQL), the resolver (NOT_FOUND) or DataFusion's
    # planner (SUBSCRIPTION_FAILED; seen on the real 0.4.3-rc.4 for a SHARED table)
    "column": ("INVALID_SQL", "SUBSCRIPTION_FAILED", "NOT_FOUND"),
    # a filter beyond the live grammar (§10.5) refused at subscribe time instead of evaluated (a documented
    # choice of the server: it may also acknowledge and evaluate it, or end the subscription later)
    "filter": ("UNSUPPORTED", "INVALID_SQL", "SUBSCRIPTION_FAILED"),
}


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
    #: the filter cannot be evaluated on it (UNKNOWN on a dropped column): the server must tell the client
    tell: bool = False

    def describe(self) -> str:
        what = f"{self.kind} of key {self.key!r} (write #{self.write_no}, step #{self.group})"
        return what + (", which the filter cannot evaluate" if self.tell else "")


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
    column_ids: dict[str, int]  # name -> column id at subscribe time (which names are compared, fresh, gone)
    boundary: int  # model write number at subscribe: the snapshot holds versions up to it
    resume_from: int | None = None  # write number of the from_seq_id resume point
    resume_seq: int | None = None
    status: str = "loading"  # loading | ready | closed | ended (the server told the client)
    batch_num: int = 0
    delivered: set[Any] = attrs.Factory(set)
    expected: deque[LiveChange] = attrs.Factory(deque)
    view: dict[Any, dict[str, Any]] = attrs.Factory(dict)
    last_seq: int | None = None  # last_seq_id of the last snapshot batch (the next_batch cursor)
    last_seq_seen: int | None = None  # newest _seq received (snapshot row or change): the resume point
    last_write: int | None = None  # the model write number of that version
    disconnected: bool = False
    #: column types at subscribe: a filter column whose type changed cannot be evaluated
    column_types: dict[str, ColumnType] = attrs.Factory(dict)
    #: why the contract lets the server end this subscription by telling the client (sticky; None: it may not)
    may_end: str | None = None
    buffered: bool = False  # changes were queued while its snapshot was being pulled
    table_dropped: bool = False  # its table was dropped: nothing more may arrive
    told: str | None = None  # how the server ended it (an error message, a close): status "ended"

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


@attrs.frozen
class SubColumns:
    """The names a subscription's payloads may carry, by class (see the module docstring)."""

    compared: tuple[str, ...]
    fresh: tuple[str, ...]
    gone: tuple[str, ...]

    def allowed(self) -> set[str]:
        return {*self.compared, *self.fresh, *self.gone, "_seq", "_deleted"}


def sub_columns(table: TableState, sub: LiveSub) -> SubColumns:
    """Which names ``sub`` shows are compared, fresh or gone now (by name against the current table)."""
    current = {s.column.name: s.column_id for s in table.columns}
    if sub.columns is not None:
        names = list(sub.columns)
        gone = [n for n in names if n not in current]
    else:
        names = list(current)
        gone = [n for n in sub.column_ids if n not in current]
        later = [d.column.name for d in table.dropped if d.column.name not in current]
        gone += [n for n in later if n not in gone]
    compared = [n for n in names if n in current and sub.column_ids.get(n) == current[n]]
    fresh = [n for n in names if n in current and sub.column_ids.get(n) != current[n]]
    pk = table.pk
    if pk is not None and pk.column.name not in compared:  # the key is never dropped nor re-added
        compared.insert(0, pk.column.name)
    return SubColumns(tuple(compared), tuple(fresh), tuple(gone))


def unevaluable(table: TableState, sub: LiveSub) -> frozenset[str]:
    """Filter columns the table no longer has, or whose type changed since the subscription started."""
    if sub.where is None:
        return frozenset()
    out = set()
    for name in sub.where.columns():
        state = table.column(name)
        if state is None or state.column.type is not sub.column_types.get(name):
            out.add(name)
    return frozenset(out)


def verdict(pred: Predicate | None, row: Mapping[str, Any], unknown: frozenset[str]) -> bool | None:
    """Whether ``pred`` admits ``row`` (True), excludes it (False), or cannot decide (None).

    A comparison naming an ``unknown`` column (gone, or of another type now) cannot be evaluated: it may stand
    for TRUE, FALSE or UNKNOWN. The row is admitted when the filter is TRUE (by SQL three-valued logic) under
    every choice, excluded when it is TRUE under none (a NULL comparison is UNKNOWN: not admitted), and
    undecided otherwise: ``n > 2 OR gone = 1`` admits n = 5 and cannot decide n = 1.
    """
    if pred is None:
        return True
    if not unknown or not (pred.columns() & unknown):
        return pred.evaluate(row) is True
    atoms = _atoms(pred, unknown)
    outcomes = set()
    for choice in itertools.product((True, False, None), repeat=len(atoms)):
        outcomes.add(_kleene(pred, row, dict(zip(atoms, choice))) is True)
        if len(outcomes) > 1:
            return None
    return outcomes.pop()


def _atoms(pred: Predicate, unknown: frozenset[str]) -> list[int]:
    if isinstance(pred, Not):
        return _atoms(pred.item, unknown)
    if isinstance(pred, (And, Or)):
        return [a for p in pred.items for a in _atoms(p, unknown)]
    return [id(pred)] if pred.columns() & unknown else []


def _kleene(pred: Predicate, row: Mapping[str, Any], chosen: dict[int, bool | None]) -> bool | None:
    if id(pred) in chosen:
        return chosen[id(pred)]
    if isinstance(pred, Not):
        inner = _kleene(pred.item, row, chosen)
        return None if inner is None else not inner
    if isinstance(pred, (And, Or)):
        results = [_kleene(p, row, chosen) for p in pred.items]
        win = isinstance(pred, Or)  # OR: TRUE wins; AND: FALSE wins
        if any(r is win for r in results):
            return win
        return None if any(r is None for r in results) else not win
    return pred.evaluate(row)


def outside_live_grammar(pred: Predicate | None) -> str | None:
    """What ``pred`` uses beyond §10.5's live filter grammar (comparisons, LIKE, AND/OR/NOT); None if nothing."""
    if pred is None:
        return None
    if isinstance(pred, (And, Or)):
        for item in pred.items:
            found = outside_live_grammar(item)
            if found is not None:
                return found
        return None
    if isinstance(pred, Not):
        return outside_live_grammar(pred.item)
    if isinstance(pred, (Cmp, Like)):
        return None
    return type(pred).__name__


def give_up_reason(table: TableState | None, sub: LiveSub) -> str | None:
    """Why the contract lets the server end ``sub`` by telling the client (None: it must keep delivering)."""
    if sub.may_end is not None:
        return sub.may_end
    if table is None:
        return "its table was dropped"
    beyond = outside_live_grammar(sub.where)
    if beyond is not None:
        return f"its filter uses {beyond}, beyond the live filter grammar of §10.5"
    current = {s.column.name: s.column_id for s in table.columns}
    named = set(sub.columns or ()) | set(sub.where.columns() if sub.where is not None else ())
    dropped = sorted(n for n in named if current.get(n) != sub.column_ids.get(n))
    if dropped:
        return f"ALTER TABLE dropped column(s) {dropped} it names"
    if unevaluable(table, sub):
        return f"ALTER TABLE changed the type of filter column(s) {sorted(unevaluable(table, sub))}"
    if sub.buffered:
        return "changes were buffered while its snapshot was pulled (§10.6 buffer limits)"
    return None
