"""One record per operation the state machine draws: the single place that says what an operation is.

An :class:`Operation` names the operation as workload files do (``[operations]``), the function that draws its
step(s), how much it weighs, when it applies, its default weight and its flags. Everything else is derived
from :data:`REGISTRY`: the names a workload file may list (:data:`OPERATIONS`), the default mix, the DDL
operations ``create_table`` weighs like, the operations the swarm never leaves out.

Adding an operation: write its step class (``kalammodel/steps``), append one record here (with its draw
function here or beside its family in ``_dml``/``_reads``/``_ddl``/``_live``/``_actions``), and teach the
runner the step if it needs more than the model's expectation.

The order of :data:`REGISTRY` is the order of the operation draw, and so the shrink order (and what a saved
choice sequence means: keep it, append new operations at the end). Hypothesis draws the first choice more
often than its weight says (it favours simple values while generating too), so plain inserts come first: more
rows never hurt, while a surplus of reads would crowd out the steps that change state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from ..model import Role, TableState
from . import _actions, _ddl, _dml, _live, _reads

if TYPE_CHECKING:
    from hypothesis.strategies import DataObject

    from .machine import KalamStateMachine

__all__ = [
    "BY_NAME",
    "DEFAULT_WEIGHTS",
    "DDL_OPERATIONS",
    "FALLBACK",
    "OPERATIONS",
    "REGISTRY",
    "Applies",
    "Draw",
    "Operation",
    "WeightOf",
]

#: draws the operation's arguments and runs its step(s): (machine, drawn table, data, operation name) -> the
#: new table's name for ``create_table`` (or Hypothesis's ``multiple()``), else None
Draw = Callable[["KalamStateMachine", str, "DataObject", str], object]
#: whether the operation applies now: (machine, the drawn table's state or None if dropped, is it STREAM)
Applies = Callable[["KalamStateMachine", "TableState | None", bool], bool]
#: the operation's weight in this example: (machine, the operation)
WeightOf = Callable[["KalamStateMachine", "Operation"], float]


def own_weight(m: KalamStateMachine, op: Operation) -> float:
    """The workload's weight for the operation (0 when the swarm left it out), divided by ``op.divisor``."""
    return m.own_weight(op.name) / op.divisor


@attrs.frozen
class Operation:
    """One operation: see the module docstring."""

    #: as written in a workload's ``[operations]`` (for a derived operation: the name in ``event()`` stats)
    name: str
    draw: Draw
    applies: Applies
    #: weight in the default workload (``workloads.DEFAULTS``); None: derived, no workload weight of its own
    default_weight: float | None
    weight: WeightOf = own_weight
    #: slow operations (real time) weigh their workload weight divided by this
    divisor: int = 1
    #: schema changes: ``create_table`` weighs as much as these together
    ddl: bool = False
    #: never left out by the swarm (every other operation needs rows)
    always_on: bool = False
    #: its draw returns the bundle's new table (the rule's result), not ``multiple()``
    creates_table: bool = False


def _on_table(m: KalamStateMachine, state: TableState | None, stream: bool) -> bool:
    return state is not None and not stream


def _on_stream(m: KalamStateMachine, state: TableState | None, stream: bool) -> bool:
    return state is not None and stream


def _any_table(m: KalamStateMachine, state: TableState | None, stream: bool) -> bool:
    return state is not None


def _has_users(m: KalamStateMachine, state: TableState | None, stream: bool) -> bool:
    return bool(m.names_by_role(Role.USER))


def _stream_with_pk(m: KalamStateMachine, state: TableState | None, stream: bool) -> bool:
    return stream and state is not None and state.pk is not None


def _has_pk(m: KalamStateMachine, state: TableState | None, stream: bool) -> bool:
    return state is not None and state.pk is not None


def _flushing(m: KalamStateMachine, state: TableState | None, stream: bool) -> bool:
    return bool(m.flushing)


def _room_for_table(m: KalamStateMachine, state: TableState | None, stream: bool) -> bool:
    return len(m.model.tables) < m.wl.tables_per_example.max


def _droppable(m: KalamStateMachine, state: TableState | None, stream: bool) -> bool:
    return state is not None and sum(not c.column.primary_key for c in state.columns) > 1


def _can_pause(m: KalamStateMachine, state: TableState | None, stream: bool) -> bool:
    return not m.paused and bool(_actions.expiring_streams(m))


def _can_subscribe(m: KalamStateMachine, state: TableState | None, stream: bool) -> bool:
    return state is not None and bool(_live.live_actors(m))


def _loading(m: KalamStateMachine, state: TableState | None, stream: bool) -> bool:
    live = _live.live_model(m)
    return live is not None and any(s.status == "loading" for s in live.open_subs())


def _old_subs(m: KalamStateMachine, state: TableState | None, stream: bool) -> bool:
    return bool(_live.old_subs(m))


def _resumable(m: KalamStateMachine, state: TableState | None, stream: bool) -> bool:
    return bool(_live.resumable(m))


def _can_restart(m: KalamStateMachine, state: TableState | None, stream: bool) -> bool:
    return m.can_restart and not m.restarted and bool(m.model.tables) and not m.flushing


def _ddl_weight(m: KalamStateMachine, op: Operation) -> float:
    """``create_table`` has no workload weight of its own: as often as the DDL operations."""
    return sum(m.own_weight(o) for o in DDL_OPERATIONS) or 1.0


def _await_weight(m: KalamStateMachine, op: Operation) -> float:
    """``await_flush`` weighs as much as ``flush_while_active``, which starts what it awaits."""
    return float(m.ops.get("flush_while_active", 0) or 1.0)


def _stream_update_weight(m: KalamStateMachine, op: Operation) -> float:
    """An UPDATE on a STREAM table (rejected, and checked as such): a quarter of the update weights."""
    return sum(m.own_weight(o) for o in ("update_pk", "update_pred")) / 4


Op = Operation

#: every operation, in the order of the operation draw (see the module docstring)
REGISTRY: tuple[Operation, ...] = (
    Op("insert", _dml.write, _on_table, 10, always_on=True),
    Op("stream_insert", _dml.write, _on_stream, 3, always_on=True),
    Op("select", _reads.read, _on_table, 5),
    Op("count", _reads.read, _on_table, 2),
    Op("select_deleted", _reads.read, _on_table, 1),
    Op("stream_select", _reads.read, _on_stream, 2),
    Op("insert_duplicate", _dml.write, _on_table, 1),
    Op("update_pk", _dml.write, _on_table, 4),
    Op("update_pred", _dml.write, _on_table, 2),
    Op("delete_pk", _dml.write, _on_table, 3),
    Op("delete_pred", _dml.write, _on_table, 1),
    Op("reinsert_deleted", _dml.write, _on_table, 2),
    Op("stream_update", _dml.stream_update, _stream_with_pk, None, weight=_stream_update_weight),
    Op("flush", _ddl.flush, _on_table, 2),
    Op("flush_while_active", _ddl.flush, _on_table, 1),
    Op("await_flush", _ddl.await_flush, _flushing, None, weight=_await_weight),
    Op("create_table", _ddl.create_table, _room_for_table, None, weight=_ddl_weight, creates_table=True),
    Op("alter_add", _ddl.alter, _any_table, 1, ddl=True),
    Op("alter_drop", _ddl.alter, _droppable, 1, ddl=True),
    Op("rbac_probe", _actions.rbac_probe, _has_users, 2),
    Op("pause", _actions.pause, _can_pause, 1, divisor=2),
    Op("subscribe", _live.subscribe, _can_subscribe, 2),
    Op("next_batch", _live.next_batch, _loading, 2),
    Op("unsubscribe", _live.unsubscribe, _old_subs, 1),
    Op("resubscribe_from_seq", _live.resubscribe_from_seq, _resumable, 1),
    Op("restart", _actions.restart, _can_restart, 1, divisor=4),
    # issue 14: the surface where KalamDB's defects live (docs/kalamdb-findings.md 3, 5, 6, 8, 9)
    Op("insert_subset", _dml.insert_subset, _any_table, 2),
    Op("update_expr", _dml.update_expr, _on_table, 2),
    Op("stream_delete", _dml.stream_delete, _on_stream, 2),
    Op("alter_drop_pk", _ddl.alter, _has_pk, 1),
)

BY_NAME: dict[str, Operation] = {op.name: op for op in REGISTRY}
#: the operations a workload's ``[operations]`` may weigh (the derived ones have no weight of their own)
OPERATIONS: tuple[str, ...] = tuple(op.name for op in REGISTRY if op.default_weight is not None)
#: the default workload's operation weights
DEFAULT_WEIGHTS: dict[str, float] = {
    op.name: op.default_weight for op in REGISTRY if op.default_weight is not None
}
DDL_OPERATIONS: tuple[str, ...] = tuple(op.name for op in REGISTRY if op.ddl)
#: drawn when nothing applies (a dropped table with nothing else to do: an insert is refused, checked as such)
FALLBACK = "insert"
