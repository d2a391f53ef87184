"""The reference model as a :class:`~kalammodel.history.SequentialSpec`: what the linearizability checker asks.

A state is a :class:`~kalammodel.model.Model`. States are immutable to the checker, so ``step`` applies the
step to a **copy** and never to the state given. The copy is copy-on-write at the grain a section step
touches: a new ``Model`` sharing every table but the step's, whose table shares every scope but the step's
(table, owner) scope, whose version dict is new and shares every key's list of (never mutated) ``Version``
records except the lists of the keys the step writes (:func:`written_keys`), which are new lists. A DML step
of the model only appends versions to its keys' lists, rebinds ``write_no`` and sets flags of the table's
``FlushState`` (copied too); a read changes nothing and is applied to the state itself. That this behaves
exactly as a deep copy is checked by ``tests/parallel/test_spec.py``.

``key(state)`` is a structural fingerprint: per scope the history touches, the newest version (deleted,
values) of each key some step of the history may write; every other row is the same in every state the
search reaches. Write numbers are left out on purpose: two orders of commuting writes give equal
fingerprints (the search's memo merges them), and nothing a section step answers depends on them (results
are compared as multisets or sorted by the primary key, never in write order). Costs: ``benchmarks/README.md``
("parallel_spec.py").

``partition`` splits a history by (table, owner scope): every section step touches one scope (writes and
reads by primary key; full reads and COUNT(*) of the actor's own scope), so scopes are independent parts;
a step of a missing table gets its own part.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import attrs

from ..history import Operation, Status, connected_parts
from ..model import Cmp, Model, Outcome, TableKind, compare_outcome
from ..steps import Step
from .program import step_table

__all__ = ["ModelSpec", "Scope", "scope_of", "written_keys"]

#: a (table, owner) scope; owner None for SHARED tables
Scope = tuple[str, str | None]


def scope_of(model: Model, step: Step) -> Scope:
    """The (table, owner) scope ``step`` touches in ``model`` (owner None for a SHARED or missing table)."""
    table_name = step_table(step)
    table = model.tables.get(table_name)
    if table is None or table.kind is TableKind.SHARED:
        return (table_name, None)
    return (table_name, model.effective_user(step.actor, getattr(step, "as_user", None)))


_SLOTS: dict[type, tuple[str, ...]] = {}


def _shallow(obj: Any) -> Any:
    """A shallow copy of an attrs record (a tenth of ``copy.copy``'s time on the model's slotted classes)."""
    cls = type(obj)
    names = _SLOTS.get(cls)
    if names is None:
        names = _SLOTS[cls] = tuple(f.name for f in attrs.fields(cls))
    new = object.__new__(cls)
    for name in names:
        object.__setattr__(new, name, getattr(obj, name))
    return new


def written_keys(model: Model, step: Step) -> frozenset[Any] | None:
    """The primary keys ``step`` may write in ``model`` (empty for a read; None: not known, any key)."""
    if step.reads_only:
        return frozenset()
    table = model.tables.get(step_table(step))
    if table is None or table.pk is None:
        return frozenset()
    pk = table.pk.column.name
    columns, rows = getattr(step, "columns", None), getattr(step, "rows", None)
    if step.kind == "insert" and columns is not None and rows is not None:
        return frozenset(r[list(columns).index(pk)] for r in rows) if pk in columns else frozenset()
    where = getattr(step, "where", None)
    if isinstance(where, Cmp) and where.op == "=" and where.column == pk:
        return frozenset({where.value})
    return None


def _cow(model: Model, scope: Scope, keys: frozenset[Any] | None) -> Model:
    """A copy of ``model`` that a DML step writing ``keys`` (None: any) of ``scope`` may mutate without
    touching ``model`` (module docstring)."""
    new = _shallow(model)
    table_name, owner = scope
    table = model.tables.get(table_name)
    if table is None:
        return new
    table_copy = _shallow(table)
    table_copy.flush = _shallow(table.flush)
    table_copy.scopes = dict(table.scopes)
    old = table.scopes.get(owner)
    if old is not None:
        fresh = _shallow(old)
        if keys is None:
            fresh.versions = {pk: list(versions) for pk, versions in old.versions.items()}
        else:
            fresh.versions = dict(old.versions)
            for pk in keys:
                if pk in fresh.versions:
                    fresh.versions[pk] = list(fresh.versions[pk])
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


def _newest(versions: Sequence[Any] | None) -> Hashable:
    """A key's newest version as plain values (None: the key was never written)."""
    if not versions:
        return None
    return (versions[-1].deleted, _frozen(versions[-1].values))


class ModelSpec:
    """The model after the sequential prefix, as a linearizability spec of the steps of ``ops``.

    ``model`` is deep-copied once: the checker's states never share anything with the session's model.
    """

    def __init__(self, model: Model, steps: Iterable[Step]):
        self._initial = copy.deepcopy(model)
        self._scope_of: dict[int, Scope] = {}
        self._keys_of: dict[int, frozenset[Any] | None] = {}
        written: dict[Scope, set[Any] | None] = {}
        for step in steps:
            scope = scope_of(self._initial, step)
            keys = written_keys(self._initial, step)
            self._scope_of[id(step)] = scope
            self._keys_of[id(step)] = keys
            known = written.setdefault(scope, set())
            written[scope] = None if known is None or keys is None else known | keys
        #: the scopes the steps touch, in a fixed order: what :meth:`key` fingerprints
        self.scopes: tuple[Scope, ...] = tuple(sorted(written, key=lambda s: (s[0], s[1] or "")))
        #: per scope, the keys the steps may write (None: not known); the other rows never change
        self._fingerprinted: tuple[tuple[Scope, tuple[Any, ...] | None], ...] = tuple(
            (scope, None if written[scope] is None else tuple(written[scope] or ())) for scope in self.scopes
        )

    def scope(self, step: Step) -> Scope:
        found = self._scope_of.get(id(step))
        return found if found is not None else scope_of(self._initial, step)

    def _copy_for(self, state: Model, step: Step) -> Model:
        keys = self._keys_of[id(step)] if id(step) in self._keys_of else written_keys(self._initial, step)
        return _cow(state, self.scope(step), keys)

    # ------------------------------------------------------------------ SequentialSpec

    def initial(self) -> Model:
        return self._initial

    def step(self, state: Model, op: object, outcome: object, status: Status) -> Model | None:
        assert isinstance(op, Step) and isinstance(outcome, Outcome)
        if op.reads_only:
            expectations = op.apply(state)  # a read changes nothing (module docstring)
            new = state
        else:
            new = self._copy_for(state, op)
            expectations = op.apply(new)
        if len(expectations) != 1 or compare_outcome(expectations[0], outcome) is not None:
            return None
        return state if status is Status.FAILED else new

    def step_unknown(self, state: Model, op: object) -> Model:
        assert isinstance(op, Step)
        if op.reads_only:
            return state
        new = self._copy_for(state, op)
        op.apply(new)
        return new

    def key(self, state: Model) -> Hashable:
        out: list[Hashable] = []
        for (table_name, owner), keys in self._fingerprinted:
            table = state.tables.get(table_name)
            scope = None if table is None else table.scopes.get(owner)
            if scope is None:
                out.append(None)
            elif keys is None:  # any key may have been written: the whole scope
                out.append(frozenset((pk, _newest(vs)) for pk, vs in scope.versions.items()))
            else:
                out.append(tuple(_newest(scope.versions.get(pk)) for pk in keys))
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
