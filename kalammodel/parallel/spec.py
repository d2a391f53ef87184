"""The reference model as a :class:`~kalammodel.history.SequentialSpec`: what the linearizability checker asks.

A state is a :class:`~kalammodel.model.Model`. States are immutable to the checker, so ``step`` applies the
step to a **copy** and never to the state given. The copy is copy-on-write at the grain a section step
touches: a new ``Model`` sharing every table but the step's, whose table shares every scope but the step's
(table, owner) scope, whose per-key version lists are new lists of the same (never mutated) ``Version``
records. A DML step of the model only appends versions, rebinds ``write_no`` and sets flags of the table's
``FlushState`` (copied too); a read changes nothing and is applied to the state itself. This is checked
against a deep copy by ``tests/parallel/test_spec.py``.

``key(state)`` is a structural fingerprint of the scopes the history touches: per scope, the set of (primary
key, deleted, values) of each key's newest version. Write numbers are left out on purpose: two orders of
commuting writes give equal fingerprints (the memo of the search then merges them), and nothing a section step
answers depends on them (results are compared as multisets or sorted by the primary key, never in write
order). Its cost is measured in ``benchmarks/README.md`` ("Parallel programs").

``partition`` splits a history by (table, owner scope): every section step touches one scope (writes and
reads by primary key; full reads and COUNT(*) of the actor's own scope), so scopes are independent parts;
a step of a missing table gets its own part.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

from ..history import Operation, Status, connected_parts
from ..model import Model, Outcome, TableKind, compare_outcome
from ..steps import Step
from .program import step_table

__all__ = ["ModelSpec", "Scope", "scope_of"]

#: a (table, owner) scope; owner None for SHARED tables
Scope = tuple[str, str | None]


def scope_of(model: Model, step: Step) -> Scope:
    """The (table, owner) scope ``step`` touches in ``model`` (owner None for a SHARED or missing table)."""
    table_name = step_table(step)
    table = model.tables.get(table_name)
    if table is None or table.kind is TableKind.SHARED:
        return (table_name, None)
    return (table_name, model.effective_user(step.actor, getattr(step, "as_user", None)))


def _cow(model: Model, scope: Scope) -> Model:
    """A copy of ``model`` that a DML step on ``scope`` may mutate without touching ``model`` (module docstring)."""
    new = copy.copy(model)
    table_name, owner = scope
    table = model.tables.get(table_name)
    if table is None:
        return new
    table_copy = copy.copy(table)
    table_copy.flush = copy.copy(table.flush)
    table_copy.scopes = dict(table.scopes)
    old = table.scopes.get(owner)
    if old is not None:
        fresh = copy.copy(old)
        fresh.versions = {pk: list(versions) for pk, versions in old.versions.items()}
        fresh.stream_rows = list(old.stream_rows)
        fresh.expired = list(old.expired)
        fresh.cold = dict(old.cold)
        table_copy.scopes[owner] = fresh
    tables = dict(model.tables)
    tables[table_name] = table_copy
    new.tables = tables
    return new


def _frozen(values: dict[int, Any]) -> Hashable:
    try:
        return frozenset(values.items())
    except TypeError:  # an unhashable cell (a list, a dict): its repr stands in
        return frozenset((k, repr(v)) for k, v in values.items())


class ModelSpec:
    """The model after the sequential prefix, as a linearizability spec of the steps of ``ops``.

    ``model`` is deep-copied once: the checker's states never share anything with the session's model.
    """

    def __init__(self, model: Model, steps: Iterable[Step]):
        self._initial = copy.deepcopy(model)
        self._scope_of: dict[int, Scope] = {}
        scopes: set[Scope] = set()
        for step in steps:
            scope = scope_of(self._initial, step)
            self._scope_of[id(step)] = scope
            scopes.add(scope)
        #: the scopes the steps touch, in a fixed order: what :meth:`key` fingerprints
        self.scopes: tuple[Scope, ...] = tuple(sorted(scopes, key=lambda s: (s[0], s[1] or "")))

    def scope(self, step: Step) -> Scope:
        found = self._scope_of.get(id(step))
        return found if found is not None else scope_of(self._initial, step)

    # ------------------------------------------------------------------ SequentialSpec

    def initial(self) -> Model:
        return self._initial

    def step(self, state: Model, op: object, outcome: object, status: Status) -> Model | None:
        assert isinstance(op, Step) and isinstance(outcome, Outcome)
        if op.reads_only:
            expectations = op.apply(state)  # a read changes nothing (module docstring)
            new = state
        else:
            new = _cow(state, self.scope(op))
            expectations = op.apply(new)
        if len(expectations) != 1 or compare_outcome(expectations[0], outcome) is not None:
            return None
        return state if status is Status.FAILED else new

    def step_unknown(self, state: Model, op: object) -> Model:
        assert isinstance(op, Step)
        if op.reads_only:
            return state
        new = _cow(state, self.scope(op))
        op.apply(new)
        return new

    def key(self, state: Model) -> Hashable:
        out: list[Hashable] = []
        for table_name, owner in self.scopes:
            table = state.tables.get(table_name)
            scope = None if table is None else table.scopes.get(owner)
            if scope is None:
                out.append(None)
                continue
            out.append(
                frozenset(
                    (pk, versions[-1].deleted, _frozen(versions[-1].values))
                    for pk, versions in scope.versions.items()
                    if versions
                )
            )
        return tuple(out)

    def partition(self, ops: Sequence[Operation]) -> list[list[Operation]]:
        return connected_parts(ops, lambda o: {self.scope(o.op)} if isinstance(o.op, Step) else None)

    def read_only(self, op: object) -> bool:
        return isinstance(op, Step) and op.reads_only

    def describe_op(self, op: object) -> str:
        return op.describe() if isinstance(op, Step) else repr(op)

    def describe_outcome(self, outcome: object, status: Status) -> str:
        if not isinstance(outcome, Outcome):
            return repr(outcome)
        if outcome.ok and outcome.columns:
            shown = ", ".join(repr(r) for r in outcome.rows[:8])
            more = f", ... (+{len(outcome.rows) - 8} more)" if len(outcome.rows) > 8 else ""
            return f"{len(outcome.rows)} row(s) {list(outcome.columns)}: [{shown}{more}]"
        return outcome.brief()

    # ------------------------------------------------------------------ after the check

    def replay(self, orders: Sequence[Sequence[Operation]]) -> Model:
        """The model after the operations of ``orders`` (one linearization per part), applied in that order."""
        state = self._initial
        for order in orders:
            for o in order:
                if o.status is Status.FAILED:
                    continue
                if o.status is Status.INDETERMINATE:
                    state = self.step_unknown(state, o.op)
                    continue
                after = self.step(state, o.op, o.outcome, o.status)
                if after is None:  # the checker admitted it in this order: the model is not deterministic
                    from ..errors import InternalError

                    raise InternalError(
                        f"the model refused {self.describe_op(o.op)} when replaying the order the checker found"
                    )
                state = after
        return state
