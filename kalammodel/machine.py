"""The Hypothesis state machine: one rule that draws a Step and hands it to the runner.

Each rule call draws one operation by its workload weight among those that apply now (``step``), draws the
operation's arguments from the current model state, and runs the step through
:class:`kalammodel.runner.Session`. The ``tables`` bundle holds the tables created so far; keys are drawn from
the model (live, deleted, cold or subscribed rows of an owner's scope), which knows more than a bundle of
written keys could. Swarm testing: each example leaves out a random subset of the workload's operations, so
that some examples hammer a few operations hard.

On a divergence the machine remembers the step list of the run (``KalamStateMachine.last_failure``); because
Hypothesis replays the minimal failing example last, that is the shrunk program the corpus saves.
"""

from __future__ import annotations

import functools
import gc
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import attrs
from hypothesis import event, note
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    multiple,
    rule,
)

from .checks.restart import can_restart
from .errors import Divergence
from .model import And, Cmp, Column, ColumnType, Like, Not, Or, Role, TableKind
from .steps import (
    AlterAddColumn,
    AlterDropColumn,
    AwaitFlush,
    Count,
    CreateTable,
    Delete,
    Flush,
    Insert,
    InsertNamingDroppedColumn,
    NextBatch,
    Pause,
    ProbeCreateShared,
    ProbeExecuteAs,
    ProbeSharedWrite,
    ProbeSystemRead,
    Restart,
    ResubscribeFromSeq,
    Select,
    SelectDeleted,
    StartFlush,
    Step,
    StreamInsert,
    StreamSelect,
    StreamUpdate,
    Subscribe,
    Unsubscribe,
    Update,
)
from .strategies import favour_absent, predicates, row_values, table_spec, values, weighted

_LIVE_NUMERIC = (ColumnType.BIGINT, ColumnType.INT, ColumnType.SMALLINT, ColumnType.DOUBLE)


def live_predicates(columns: list[Column]) -> st.SearchStrategy[Any]:
    """Live filters in the subset where KalamDB's live evaluator and SQL agree (docs/invariants.md):
    ``= != < <= > >=`` on NOT NULL numbers, ``= !=`` on NOT NULL TEXT/BOOLEAN, LIKE on NOT NULL TEXT.

    Cached per column tuple, like :func:`kalammodel.strategies.predicates` (building a recursive strategy
    costs more than drawing from it)."""
    return _live_predicates(tuple(columns))


@functools.lru_cache(maxsize=256)
def _live_predicates(columns: tuple[Column, ...]) -> st.SearchStrategy[Any]:
    numeric = [c for c in columns if c.type in _LIVE_NUMERIC]
    equality = [c for c in columns if c.type in (ColumnType.TEXT, ColumnType.BOOLEAN)]
    texts = [c for c in columns if c.type is ColumnType.TEXT]
    leaves: list[st.SearchStrategy[Any]] = []
    if numeric:
        leaves.append(
            st.sampled_from(numeric).flatmap(
                lambda c: st.builds(
                    Cmp,
                    st.just(c.name),
                    st.just(c.type),
                    st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
                    values(c.type, pk=c.primary_key),
                )
            )
        )
    if equality:
        leaves.append(
            st.sampled_from(equality).flatmap(
                lambda c: st.builds(
                    Cmp,
                    st.just(c.name),
                    st.just(c.type),
                    st.sampled_from(["=", "!="]),
                    values(c.type, pk=c.primary_key),
                )
            )
        )
    if texts:
        leaves.append(
            st.builds(
                Like,
                st.sampled_from([c.name for c in texts]),
                st.text(alphabet="ab%_", min_size=1, max_size=3),
            )
        )
    if not leaves:
        raise ValueError("no NOT NULL column can carry a live filter")
    leaf = st.one_of(leaves)
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.tuples(inner, inner).map(And), st.tuples(inner, inner).map(Or), inner.map(Not)
        ),
        max_leaves=3,
    )


if sys.version_info < (3, 11):  # pragma: no cover - Hypothesis depends on the backport there
    from exceptiongroup import BaseExceptionGroup

__all__ = ["Failure", "KalamStateMachine", "machine_for"]

#: Synthetic user ids reached only through EXECUTE AS USER (they need no CREATE USER, PROTOCOL §6.3).
SYNTHETIC_USERS = ("syn_a", "syn_b")

#: Open subscriptions per example and per identity (KalamDB's default limit is 10 per user).
MAX_OPEN_SUBS = 6
MAX_SUBS_PER_USER = 4

#: Pauses are real time; only STREAM tables with a TTL up to this many seconds get one.
MAX_PAUSE_TTL = 3

_DDL_OPS = ("alter_add", "alter_drop")
#: Slow operations: their workload weight is divided by N in the operation choice (KalamStateMachine.step).
_SLOW_OPS = {"restart": 4, "pause": 2}
#: never left out by the swarm (every other operation needs rows)
_ALWAYS_ON = frozenset({"insert", "stream_insert"})
#: upper bound of an index drawn before its candidates are known (taken modulo their number)
_ANY_INDEX = 1 << 16


@attrs.define
class Failure:
    """The steps of a run that diverged, and the divergence."""

    steps: list[Step]
    divergence: Divergence
    #: further distinct failures Hypothesis found in the same run (each with its own minimal steps)
    others: list[Failure] = attrs.Factory(list)
    #: the step-level reduction applied after (or instead of) Hypothesis's shrinking, if any
    reduction: Any = None


class KalamStateMachine(RuleBasedStateMachine):
    """Configured by :func:`machine_for` (runner and workload); see the module docstring."""

    runner: ClassVar[Any] = None
    workload: ClassVar[Any] = None
    last_failure: ClassVar[Failure | None] = None
    #: every divergence met, in order (Hypothesis replays each distinct minimal failure last)
    failures: ClassVar[list[Failure]] = []
    #: extra checks run after each step, e.g. live-query subscriptions (kalammodel.live)
    step_hooks: ClassVar[tuple[Any, ...]] = ()

    tables = Bundle("tables")

    def __init__(self) -> None:
        super().__init__()
        if self.runner is None or self.workload is None:
            raise RuntimeError("KalamStateMachine must be configured with machine_for(runner, workload)")
        self.session = self.runner.session()
        self.model = self.session.model
        self.ops = dict(self.workload.operations.items)
        self.enabled: set[str] = {op for op, w in self.ops.items() if w > 0}
        self.failed = False
        self.paused = False
        self.who_used: dict[str, list[tuple[str, str | None]]] = {}  # per table, in order of first use
        self.flushing: set[str] = set()  # tables with a StartFlush not yet awaited (machine's own record)
        self.restarted = False
        self.can_restart = can_restart(self.runner.target)
        self.table_count = 0
        self.actors = {name: Role(self.runner.pool.role(name)) for name in self.runner.pool.names}

    # ------------------------------------------------------------------ helpers

    def _run(self, step: Step) -> None:
        event(f"step: {step.kind}")
        note(f"#{self.session.step_index + 1} {step.describe()}")
        try:
            self.session.run(step)
            if self.step_hooks:
                self.session.settle()  # a hook sees the step verified, as without send_ahead
            for hook in self.step_hooks:
                hook(self, step)
        except Divergence as div:
            self.failed = True
            failure = Failure(list(self.session.steps), div)
            type(self).last_failure = failure
            type(self).failures.append(failure)
            raise

    def _on(self, *ops: str) -> bool:
        return any(op in self.enabled for op in ops)

    def _names_by_role(self, *roles: Role) -> list[str]:
        return sorted(n for n, r in self.actors.items() if r in roles)

    def _who(
        self, data: st.DataObject, kind: TableKind, write: bool, table: str | None = None
    ) -> tuple[str, str | None]:
        """An acting identity and an optional EXECUTE AS target that is allowed for this table kind.

        Sticky per table: three writes in four (one read in two) reuse a (identity, EXECUTE AS) pair already
        used on the table, so that sequences on one owner's rows (insert, flush, delete, flush, read) are
        common, while every pair stays reachable. Bugs live in such sequences; scattering rows over a dozen owners hides them.
        """
        if kind is TableKind.SHARED:
            roles = (Role.SERVICE, Role.DBA, Role.SYSTEM) if write else tuple(Role)
            return data.draw(st.sampled_from(self._names_by_role(*roles) or ["root"]), label="actor"), None
        used = self.who_used.get(table, []) if table is not None else []
        # Reads stick less: a read by another owner than the writers is the basic partition-isolation check
        # (and the full comparisons already read every owner's own scope).
        if used and data.draw(st.integers(0, 3 if write else 1), label="same owner?") > 0:
            return data.draw(st.sampled_from(used), label="actor")
        own = [(n, None) for n in sorted(self.actors)]
        impersonators = self._names_by_role(Role.SERVICE, Role.DBA, Role.SYSTEM)
        users = self._names_by_role(Role.USER)
        via = [(i, s) for i in impersonators for s in SYNTHETIC_USERS]
        via += [(i, u) for i in impersonators for u in users]
        who = data.draw(st.sampled_from(own + via), label="actor")
        # Only writers become the table's owners: a reader registered here would scatter later writes.
        if write and table is not None and who not in used:
            self.who_used.setdefault(table, []).append(who)
        return who

    def _table(self, name: str) -> Any:
        return self.model.tables.get(name)

    def _columns(self, state: Any) -> list[Column]:
        return [s.column for s in state.columns]

    def _shared_levels(self) -> frozenset[str]:
        """ACCESS_LEVELs of the example's SHARED tables."""
        return frozenset(
            t.spec.access_level or "PRIVATE" for t in self.model.tables.values() if t.kind is TableKind.SHARED
        )

    def _owner(self, state: Any, actor: str, as_user: str | None) -> str | None:
        return None if state.kind is TableKind.SHARED else self.model.effective_user(actor, as_user)

    # ------------------------------------------------------------------ tables

    def _create(self, data: st.DataObject) -> Any:
        # A kind the example has no table of yet weighs 4 times its workload weight (the first table's draw is
        # the workload's): faults live between kinds and access levels (a user's write probe needs a PRIVATE
        # SHARED table beside the USER tables), and a third USER table adds less than a first SHARED one.
        present = {t.kind.value for t in self.model.tables.values()}
        kinds = favour_absent([(k, w) for k, w in self.workload.table_kinds.items if w > 0], present)
        kind = TableKind(data.draw(weighted(kinds), label="table kind").upper())
        name = f"t{self.table_count}"
        self.table_count += 1
        schemas = [s for s in self.workload.schemas if s.kind.upper() == kind.value]
        spec = data.draw(table_spec(self.workload, name, kind, self._shared_levels()), label="schema")
        if bool(schemas) and data.draw(st.booleans(), label="workload schema"):
            chosen = data.draw(st.sampled_from(schemas))
            from .model import TableSpec

            spec = TableSpec(
                name=name,
                kind=kind.value,
                columns=tuple(
                    Column(
                        c.name,
                        ColumnType(c.type.upper()),
                        nullable=not (c.not_null or c.primary_key),
                        primary_key=c.primary_key,
                    )
                    for c in chosen.columns
                ),
                ttl_seconds=chosen.ttl_seconds if kind is TableKind.STREAM else None,
                access_level=chosen.access_level if kind is TableKind.SHARED else None,
            )
        if kind is TableKind.SHARED:
            actor = data.draw(
                st.sampled_from(self._names_by_role(Role.SERVICE, Role.DBA, Role.SYSTEM) or ["root"])
            )
        else:
            actor = data.draw(st.sampled_from(sorted(self.actors)), label="creator")
        self._run(CreateTable(actor, spec))
        return name if name in self.model.tables else multiple()

    @initialize(target=tables, data=st.data())
    def first_table(self, data: st.DataObject) -> Any:
        self._draw_swarm(data)
        return self._create(data)

    def _draw_swarm(self, data: st.DataObject) -> None:
        """Swarm testing: each example leaves out some of the workload's operations (each one in four).

        Examples that never flush, or never read, or only write and flush, hammer what remains much harder
        than an even mix does (Groce et al., "Swarm testing", ISSTA 2012). Plain inserts are never left out:
        every other operation needs rows. The draws shrink towards "everything on".
        """
        for op in sorted(self.enabled):
            if op in _ALWAYS_ON:
                continue
            if data.draw(st.integers(0, 3), label=f"swarm: leave out {op}?") == 3:
                self.enabled.discard(op)

    @rule(target=tables, table=tables, data=st.data())
    def step(self, table: str, data: st.DataObject) -> Any:
        """One step: an operation drawn by its workload weight among those that apply now, then its arguments.

        One rule, so that the workload's weights are the operation mix (Hypothesis picks among rules
        uniformly) and every rule call runs a step. ``table`` is drawn from the bundle for the operations that
        act on a table; the others (awaiting a flush, the live-query steps on subscriptions, pause, restart)
        ignore it. The operation draw shrinks towards the first choice, a plain INSERT.
        """
        choices = self._choices(table)
        op = data.draw(_weighted_choice(tuple(choices)), label="operation")
        handler, _ = _OP_HANDLERS[op]
        result = getattr(self, handler)(table, data, op)
        return result if op == "create_table" else multiple()

    def _choices(self, table: str) -> list[tuple[str, float]]:
        """(operation, weight) for every enabled operation whose precondition holds with ``table`` drawn."""
        state = self._table(table)
        stream = state is not None and state.kind is TableKind.STREAM
        out: list[tuple[str, float]] = []
        for op, (_, applies) in _OP_HANDLERS.items():
            weight = self._weight(op)
            if weight > 0 and applies(self, state, stream):
                out.append((op, weight))
        if not out:  # a dropped table with nothing else to do: an insert is refused and checked as such
            out.append(("insert", 1.0))
        return out

    def _weight(self, op: str) -> float:
        if op == "create_table":  # no workload weight of its own: as often as the DDL operations
            return sum(self.ops.get(o, 0) for o in _DDL_OPS if o in self.enabled) or 1.0
        if op == "await_flush":
            return float(self.ops.get("flush_while_active", 0) or 1.0)
        if op == "stream_update":  # an UPDATE on a STREAM table: rejected, and checked as such
            return sum(self.ops.get(o, 0) for o in ("update_pk", "update_pred") if o in self.enabled) / 4
        if op not in self.enabled:
            return 0.0
        return self.ops.get(op, 0) / _SLOW_OPS.get(op, 1)

    def create_table(self, table: str, data: st.DataObject, op: str) -> Any:
        return self._create(data)

    # ------------------------------------------------------------------ writes

    def write(self, table: str, data: st.DataObject, op: str) -> None:
        state = self._table(table)
        if state is None:
            return
        if state.kind is TableKind.STREAM:
            return self._stream_write(state, data)
        pk = state.pk.column if state.pk is not None else None
        aimed = self._aimed_target(data, state) if op in ("update_pk", "delete_pk") and pk is not None else None
        key: Any = None
        if aimed is not None:
            actor, as_user, key = aimed
        else:
            actor, as_user = self._who(data, state.kind, write=True, table=state.spec.name)
        owner = self._owner(state, actor, as_user)
        if op in ("insert", "insert_duplicate", "reinsert_deleted") or pk is None:
            self._insert(state, data, actor, as_user, owner, op)
            return
        if op in ("update_pk", "update_pred"):
            assignments = self._assignments(state, data)
            if not assignments:
                return
            if op == "update_pk":
                if key is None:
                    key = self._existing_key(data, state, owner, pk)
                step: Step = Update.by_pk(actor, state.spec.name, pk.name, pk.type, key, assignments, as_user)
            else:
                where = data.draw(predicates(self._columns(state)), label="where")
                step = Update(actor, state.spec.name, assignments, where, as_user)
            self._run(step)
            return
        if op == "delete_pk":
            if key is None:
                key = self._existing_key(data, state, owner, pk)
            self._run(Delete.by_pk(actor, state.spec.name, pk.name, pk.type, key, as_user))
        else:
            where = data.draw(predicates(self._columns(state)), label="where")
            self._run(Delete(actor, state.spec.name, where, as_user))
        return

    def _aimed_target(self, data: st.DataObject, state: Any) -> tuple[str, str | None, Any] | None:
        """Often an update or delete by PK aims at a row where bugs live: (actor, EXECUTE AS, key), or None.

        Two aims, each drawn as often as an unaimed key (None: the caller draws one):

        - *cold*: a row whose newest version lives in cold storage, as an identity that wrote the table. Rows that
          crossed the hot/cold boundary are where KalamDB's worst bugs were found (a deleted flushed row coming
          back, a flushed key that cannot be inserted again: docs/kalamdb-findings.md 1 and 2); a key drawn from
          all keys of all owners rarely is one.
        - *live*: a row an open subscription on the table shows, as the subscriber (for a USER table: its own
          row; for a SHARED table: a writer role). A change a subscriber must see (an update, a delete) is what
          live-query bugs drop or misroute; random keys of random owners rarely touch a subscribed row.

        Candidates come from the model, never from what the server sent.
        """
        writers = self._names_by_role(Role.SERVICE, Role.DBA, Role.SYSTEM) or ["root"]
        # Indexes are drawn with fixed bounds and taken modulo the number of candidates: the candidate lists
        # may grow without changing how later choices are read.
        aim = data.draw(st.sampled_from(("any", "cold", "live")), label="aim")
        if aim == "cold":
            cold = self._cold_options(state, writers)
            pick = data.draw(st.integers(0, _ANY_INDEX), label="cold target")
            return cold[pick % len(cold)] if cold else None
        if aim == "live":
            subs = self._subscribed(state)
            pick = data.draw(st.integers(0, _ANY_INDEX), label="subscription")
            if not subs:
                return None
            sub = subs[pick % len(subs)]
            shown = self._shown_keys(state, sub)
            pick = data.draw(st.integers(0, _ANY_INDEX), label="subscribed row")
            if not shown:
                return None
            key = shown[pick % len(shown)]
            if state.kind is TableKind.SHARED:
                return writers[pick % len(writers)], None, key
            return sub.actor, None, key
        return None

    def _cold_options(self, state: Any, writers: list[str]) -> list[tuple[str, str | None, Any]]:
        pairs = self.who_used.get(state.spec.name, [])
        if state.kind is TableKind.SHARED:
            pairs = [(w, None) for w in writers]
        scopes = self._scopes(state)
        options = []
        for actor, as_user in pairs:
            owner = self._owner(state, actor, as_user)
            if owner in scopes:
                cold = sorted(self.model.cold_pks(state.spec.name, owner), key=repr)
                options += [(actor, as_user, key) for key in cold]
        return options

    def _subscribed(self, state: Any) -> list[Any]:
        """Open subscriptions on the table that the model still predicts, by id."""
        live = self._live()
        if live is None:
            return []
        return sorted(
            (s for s in live.open_subs(state.spec.name) if not s.tainted and s.actor in self.actors),
            key=lambda s: s.id,
        )

    def _shown_keys(self, state: Any, sub: Any) -> list[Any]:
        """Primary keys of the rows ``sub``'s query matches now, by the model."""
        pk = state.pk.column.name if state.pk is not None else None
        owner = None if state.kind is TableKind.SHARED else sub.owner
        if pk is None or owner not in self._scopes(state):
            return []
        rows = self.model.visible_rows(state.spec.name, owner)
        keys = [r[pk] for r in rows if sub.where is None or sub.where.evaluate(r) is True]
        return sorted(keys, key=repr)

    def _existing_key(self, data: st.DataObject, state: Any, owner: str | None, pk: Column) -> Any:
        known = (
            sorted(self.model.known_pks(state.spec.name, owner), key=repr)
            if owner in self._scopes(state)
            else []
        )
        if known and data.draw(st.integers(0, 4), label="existing key?") > 0:
            return data.draw(st.sampled_from(known), label="key")
        return data.draw(values(pk.type, pk=True), label="key")

    def _scopes(self, state: Any) -> list[str | None]:
        return self.model.scopes(state.spec.name)

    def _insert(
        self, state: Any, data: st.DataObject, actor: str, as_user: str | None, owner: str | None, op: str
    ) -> None:
        columns = self._columns(state)
        pk = state.pk.column if state.pk is not None else None
        n = data.draw(
            st.integers(max(1, self.workload.insert_rows.min), max(1, self.workload.insert_rows.max)),
            label="rows",
        )
        rows = []
        in_scope = owner in self._scopes(state)
        for _ in range(n):
            pk_value = None
            if pk is not None and op == "insert_duplicate" and in_scope:
                known = sorted(self.model.known_pks(state.spec.name, owner), key=repr)
                if known:
                    pk_value = data.draw(st.sampled_from(known), label="existing key")
            if pk is not None and op == "reinsert_deleted" and in_scope:
                deleted = sorted(self.model.deleted_pks(state.spec.name, owner), key=repr)
                if deleted:
                    pk_value = data.draw(st.sampled_from(deleted), label="deleted key")
            rows.append(data.draw(row_values(columns, pk_value), label="row"))
        if (
            op == "insert_duplicate"
            and pk is not None
            and len(rows) == 1
            and data.draw(st.booleans(), label="dup in stmt")
        ):
            rows.append(rows[0])
        step = Insert(
            actor,
            state.spec.name,
            tuple(c.name for c in columns),
            tuple(c.type for c in columns),
            tuple(rows),
            as_user,
        )
        self._run(step)

    def _assignments(self, state: Any, data: st.DataObject) -> tuple[tuple[str, ColumnType, Any], ...]:
        cols = [c for c in self._columns(state) if not c.primary_key]
        if not cols:
            return ()
        chosen = data.draw(
            st.lists(st.sampled_from(cols), min_size=1, max_size=2, unique_by=lambda c: c.name),
            label="set columns",
        )
        out = []
        for c in chosen:
            null = c.nullable and data.draw(st.integers(0, 4), label="null?") == 0
            out.append((c.name, c.type, None if null else data.draw(values(c.type), label="value")))
        return tuple(out)

    def stream_update(self, table: str, data: st.DataObject, op: str) -> None:
        """An UPDATE of a STREAM table's row by PK: KalamDB rejects it, and nothing may change."""
        state = self._table(table)
        if state is None or state.pk is None:
            return
        actor, as_user = self._who(data, state.kind, write=True, table=state.spec.name)
        assignments = self._assignments(state, data)
        if not assignments:
            return
        pk = state.pk.column
        where = Update.by_pk(
            actor, state.spec.name, pk.name, pk.type, data.draw(values(pk.type, pk=True)), assignments
        ).where
        self._run(StreamUpdate(actor, state.spec.name, assignments, where, as_user))

    def _stream_write(self, state: Any, data: st.DataObject) -> None:
        actor, as_user = self._who(data, state.kind, write=True, table=state.spec.name)
        columns = self._columns(state)
        n = data.draw(st.integers(1, max(1, self.workload.insert_rows.max)), label="rows")
        rows = tuple(data.draw(row_values(columns), label="row") for _ in range(n))
        self._run(
            StreamInsert(
                actor,
                state.spec.name,
                tuple(c.name for c in columns),
                tuple(c.type for c in columns),
                rows,
                as_user,
            )
        )
        return

    # ------------------------------------------------------------------ reads

    def read(self, table: str, data: st.DataObject, op: str) -> None:
        state = self._table(table)
        if state is None:
            return
        actor, as_user = self._who(data, state.kind, write=False, table=state.spec.name)
        columns = self._columns(state)
        if state.kind is TableKind.STREAM:
            self._run(
                StreamSelect(actor, table, None, self._maybe_where(data, columns), (), None, None, as_user)
            )
            return
        if op == "count":
            self._run(Count(actor, table, self._maybe_where(data, columns), as_user))
            return
        if op == "select_deleted":
            self._run(SelectDeleted(actor, table, None, as_user))
            return
        names = [c.name for c in columns]
        projection = None
        if data.draw(st.booleans(), label="projection?"):
            projection = tuple(
                data.draw(
                    st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True),
                    label="columns",
                )
            )
        orderable = [c.name for c in columns if c.type is not ColumnType.JSON]
        order_by: tuple[tuple[str, bool], ...] = ()
        if bool(orderable) and data.draw(st.booleans(), label="order by?"):
            order_by = (
                (
                    data.draw(st.sampled_from(orderable), label="order column"),
                    data.draw(st.booleans(), label="desc"),
                ),
            )
        limit = offset = None
        if data.draw(st.integers(0, 3), label="limit?") == 0:
            limit = data.draw(st.integers(0, 10), label="limit")
            if data.draw(st.booleans(), label="offset?"):
                offset = data.draw(st.integers(0, 5), label="offset")
        self._run(
            Select(
                actor, table, projection, self._maybe_where(data, columns), order_by, limit, offset, as_user
            )
        )

    def _maybe_where(self, data: st.DataObject, columns: list[Column]) -> Any:
        if data.draw(st.integers(0, 2), label="where?") == 0:
            return None
        try:
            return data.draw(predicates(columns), label="where")
        except ValueError:
            return None

    # ------------------------------------------------------------------ flush

    def flush(self, table: str, data: st.DataObject, op: str) -> None:
        state = self._table(table)
        if state is None or state.kind is TableKind.STREAM:
            return
        actor = data.draw(
            st.sampled_from(self._names_by_role(Role.SERVICE, Role.DBA, Role.SYSTEM) or ["root"])
        )
        if table in self.flushing:
            # A flush requested while this table's started flush may still run is either skipped or a new
            # job, by timing; the model accepts both, but which rows end up cold would then depend on timing,
            # and generation aims at cold rows. So the started flush is awaited first.
            self.flushing.discard(table)
            self._run(AwaitFlush(table))
            if op == "flush_while_active":
                return
        if op == "flush_while_active":
            # Generation must not depend on the server's answer (a job, or "skipped" where the model accepts
            # either): the machine remembers the flushes it started itself and awaits each one.
            self.flushing.add(table)
            self._run(StartFlush(actor, table))
        else:
            self._run(Flush(actor, table))

    def await_flush(self, table: str, data: st.DataObject, op: str) -> None:
        table = data.draw(st.sampled_from(sorted(self.flushing)), label="table")
        self.flushing.discard(table)
        self._run(AwaitFlush(table))

    # ------------------------------------------------------------------ schema evolution

    def alter(self, table: str, data: st.DataObject, op: str) -> None:
        state = self._table(table)
        if state is None:
            return
        actor = data.draw(
            st.sampled_from(self._names_by_role(Role.SERVICE, Role.DBA, Role.SYSTEM) or ["root"])
        )
        droppable = [c for c in self._columns(state) if not c.primary_key]
        dropped = [s.column for s in state.dropped if state.column(s.column.name) is None]
        if op == "alter_drop" and droppable and len(droppable) > 1:
            self._run(AlterDropColumn(actor, table, data.draw(st.sampled_from([c.name for c in droppable]))))
            return
        if dropped and data.draw(st.integers(0, 3), label="write dropped column?") == 0:
            col = data.draw(st.sampled_from(dropped), label="dropped column")
            columns = [c for c in self._columns(state) if c.primary_key or not c.nullable] + [col]
            row = data.draw(
                row_values(
                    [Column(c.name, c.type, nullable=False, primary_key=c.primary_key) for c in columns]
                )
            )
            who, as_user = self._who(data, state.kind, write=True, table=state.spec.name)
            self._run(
                InsertNamingDroppedColumn(
                    who,
                    table,
                    tuple(c.name for c in columns),
                    tuple(c.type for c in columns),
                    (row,),
                    as_user,
                )
            )
            return
        # A dropped name comes back 3 times in 4: whether the old values stay gone is the question ALTER bugs
        # answer wrong (a new column under an old name must start NULL).
        if bool(dropped) and data.draw(st.integers(0, 3), label="re-add dropped name?") > 0:
            base = data.draw(st.sampled_from(dropped))
            col = Column(base.name, data.draw(st.sampled_from(list(ColumnType))), nullable=True)
        else:
            col = Column(
                f"a{state.next_column_id}", data.draw(st.sampled_from(list(ColumnType))), nullable=True
            )
        self._run(AlterAddColumn(actor, table, col))

    # ------------------------------------------------------------------ RBAC

    def rbac_probe(self, table: str, data: st.DataObject, op: str) -> None:
        users = self._names_by_role(Role.USER)
        if not users:
            return
        actor = data.draw(st.sampled_from(users), label="user")
        # A write to a SHARED table (its access level decides) and an EXECUTE AS on a USER/STREAM table come
        # 3 times in 4 while such tables exist, on the drawn table when it is one, else on another; the
        # table-less probes share the rest.
        shared = sorted(n for n, t in self.model.tables.items() if t.kind is TableKind.SHARED)
        owned = sorted(n for n, t in self.model.tables.items() if t.kind is not TableKind.SHARED)
        choices = [(p, 3.0) for p, ok in (("shared_write", shared), ("execute_as", owned)) if ok]
        probe = data.draw(weighted([*choices, ("system_read", 1.0), ("create_shared", 1.0)]), label="probe")
        if probe == "system_read":
            self._run(ProbeSystemRead(actor, data.draw(st.sampled_from(["users", "jobs", "tables"]))))
        elif probe == "create_shared":
            spec = data.draw(table_spec(self.workload, f"p{self.table_count}", TableKind.SHARED))
            self.table_count += 1
            self._run(ProbeCreateShared(actor, spec))
        elif probe == "execute_as":
            target = table if table in owned else data.draw(st.sampled_from(owned), label="table")
            others = [u for u in sorted(self.actors) if u != actor] + list(SYNTHETIC_USERS)
            self._run(
                ProbeExecuteAs(actor, target, None, None, (), None, None, data.draw(st.sampled_from(others)))
            )
        else:
            # Each access level present is probed alike, however many tables hold it: a fault may let users
            # write one level only (PRIVATE, say) while most SHARED tables are of the other.
            levels = sorted(self._shared_levels())
            level = data.draw(st.sampled_from(levels), label="access level") if len(levels) > 1 else levels[0]
            of_level = [n for n in shared if (self.model.tables[n].spec.access_level or "PRIVATE") == level]
            target = table if table in of_level else data.draw(st.sampled_from(of_level), label="table")
            columns = self._columns(self.model.tables[target])
            row = data.draw(row_values(columns))
            self._run(
                ProbeSharedWrite(
                    actor, target, tuple(c.name for c in columns), tuple(c.type for c in columns), (row,)
                )
            )

    # ------------------------------------------------------------------ time

    def _expiring_streams(self) -> list[Any]:
        """STREAM tables with a short TTL that hold rows: worth one pause to see them expire."""
        return [
            t
            for t in self.model.tables.values()
            if t.kind is TableKind.STREAM and (t.spec.ttl_seconds or 0) <= MAX_PAUSE_TTL and t.scopes
        ]

    def pause(self, table: str, data: st.DataObject, op: str) -> None:
        """Let the shortest TTL run out (once per example: pauses are the only slow step)."""
        ttl = min(t.spec.ttl_seconds or 1 for t in self._expiring_streams())
        self.paused = True
        self._run(Pause(round(ttl + self.model.stream_slack + 0.25, 2)))

    # --- live queries ---
    # Subscriptions are run by the live extension (kalammodel.live); without it these operations never apply.

    def _live(self) -> Any:
        for ext in getattr(self.session, "extensions", ()):
            live = getattr(ext, "live", None)
            if live is not None and hasattr(live, "open_subs"):
                return live
        return None

    def _live_actors(self) -> list[str]:
        """Identities with room for one more subscription (KalamDB's default limit is 10 per user)."""
        live = self._live()
        if live is None or len(live.open_subs()) >= MAX_OPEN_SUBS:
            return []
        count: dict[str, int] = {}
        for sub in live.open_subs():
            count[sub.actor] = count.get(sub.actor, 0) + 1
        return [a for a in sorted(self.actors) if count.get(a, 0) < MAX_SUBS_PER_USER]

    def _next_sub_id(self) -> str:
        self.sub_count = getattr(self, "sub_count", 0) + 1
        sub_id = f"s{self.sub_count}"
        self.sub_opened = {**getattr(self, "sub_opened", {}), sub_id: self.session.step_index + 1}
        return sub_id

    def subscribe(self, table: str, data: st.DataObject, op: str) -> None:
        state = self._table(table)
        if state is None:
            return
        candidates = self._live_actors()
        writers = [a for a in candidates if a in self._scopes(state)]  # owners with rows: changes to see
        if writers and data.draw(st.integers(0, 3), label="a writer subscribes?") > 0:
            candidates = writers
        actor = data.draw(st.sampled_from(candidates), label="subscriber")
        columns = self._columns(state)
        pk = state.pk.column if state.pk is not None else None
        projection = None
        if pk is not None and data.draw(st.integers(0, 3), label="projection?") == 0:
            others = [c.name for c in columns if not c.primary_key]
            chosen = (
                data.draw(st.lists(st.sampled_from(others), unique=True), label="columns") if others else []
            )
            projection = (pk.name, *chosen)
        where = None
        eligible = [c for c in columns if c.primary_key or not c.nullable]
        if data.draw(st.integers(0, 2), label="filter?") > 0:
            try:
                where = data.draw(live_predicates(eligible), label="filter")
            except ValueError:
                where = None
        snapshot = data.draw(st.integers(0, 4), label="snapshot?") > 0
        batch_size = last_rows = None
        # STREAM snapshots shrink as rows expire with the wall clock: one batch, so that whether a next_batch
        # is due never depends on time.
        batched = snapshot and state.kind is not TableKind.STREAM
        if batched and data.draw(st.integers(0, 3), label="batch_size?") > 0:
            batch_size = self._batch_size(data, state, actor, where)
        if batched and data.draw(st.integers(0, 3), label="last_rows?") == 0:
            high = batch_size if batch_size is not None else 20
            last_rows = data.draw(st.integers(1, high + (1 if batch_size is not None else 0)), label="last")
        self._run(
            Subscribe(actor, table, self._next_sub_id(), projection, where, snapshot, batch_size, last_rows)
        )

    def _batch_size(self, data: st.DataObject, state: Any, actor: str, where: Any) -> int:
        """A snapshot batch size, half the time sized against the rows the snapshot will hold.

        Relative sizes make snapshots of two and more batches common, and half of those need exactly two
        (``rows / 2 <= batch_size < rows``): the batch boundaries are where ``has_more`` and the ``next_batch``
        cursor go wrong. Otherwise often tiny batches (at most about four). Only for USER and SHARED tables: a STREAM snapshot
        shrinks as rows expire with the wall clock, and generation must not depend on time.
        """
        sizes = self.workload.live_batch_size
        low, high = max(1, sizes.min), max(1, sizes.min, sizes.max)
        owner = None if state.kind is TableKind.SHARED else actor
        rows = 0
        if owner in self._scopes(state):
            rows, _ = self.model.matching_count(state.spec.name, owner, where)
        # Tiny batches, but never more than about four of them: each further batch is a NextBatch step, and a
        # subscription still loading its snapshot is not checked against the changes that follow.
        tiny = min(high, max(low, -(-rows // 4)))
        small = st.integers(tiny, max(tiny, min(high, 3)))
        choices = [small, st.integers(tiny, high)]
        if rows >= 2 and low <= rows - 1:
            top = min(high, rows - 1)
            choices.append(st.integers(low, top))
            two = max(low, -(-rows // 2))
            if two <= top:
                choices.append(st.integers(two, top))
        if len(choices) > 2 and data.draw(st.booleans(), label="sized to the snapshot?"):
            return data.draw(st.one_of(choices[2:]), label="batch")
        return data.draw(st.one_of(choices[:2]), label="batch")

    def next_batch(self, table: str, data: st.DataObject, op: str) -> None:
        loading = sorted(s.id for s in self._live().open_subs() if s.status == "loading")
        self._run(NextBatch(data.draw(st.sampled_from(loading), label="subscription")))

    def _old_subs(self) -> list[str]:
        """Open subscriptions that saw a step or two (closing at once would leave nothing to check)."""
        live = self._live()
        if live is None:
            return []
        opened = getattr(self, "sub_opened", {})
        now = self.session.step_index
        return sorted(s.id for s in live.open_subs() if now - opened.get(s.id, -100) >= 2)

    def unsubscribe(self, table: str, data: st.DataObject, op: str) -> None:
        open_ids = self._old_subs()
        sub_id = data.draw(st.sampled_from(open_ids), label="subscription")
        self._run(Unsubscribe(sub_id, data.draw(st.booleans(), label="disconnect")))

    def _resumable(self) -> list[str]:
        """Subscriptions to resume from: closed ones, and open ones past their snapshot that saw a step or two
        (the resume step drops their connection first: a reconnect, without waiting for an unsubscribe step).
        Each at most once; only those that received a ``_seq`` to resume from."""
        live = self._live()
        if live is None:
            return []
        room = set(self._live_actors())
        resumed: set[str] = getattr(self, "resumed", set())
        old = set(self._old_subs())
        return sorted(
            s.id
            for s in live.subs.values()
            if (s.status == "closed" or (s.status == "ready" and s.id in old and not s.tainted))
            and s.last_seq_seen is not None
            and s.id not in resumed
            and s.actor in room
            and s.table in self.model.tables
            # whether a STREAM subscription saw any row depends on expiry (the wall clock): generation must not
            and self.model.tables[s.table].kind is not TableKind.STREAM
        )

    def resubscribe_from_seq(self, table: str, data: st.DataObject, op: str) -> None:
        old = data.draw(st.sampled_from(self._resumable()), label="resume")
        self.resumed = getattr(self, "resumed", set()) | {old}
        self._run(ResubscribeFromSeq(self._next_sub_id(), old))

    # ------------------------------------------------------------------ durability

    def restart(self, table: str, data: st.DataObject, op: str) -> None:
        """Kill the server with SIGKILL and start it again (once per example: a restart costs ~1 s)."""
        self.restarted = True
        self._run(Restart(hard=True))

    # ------------------------------------------------------------------ teardown

    def teardown(self) -> None:
        try:
            if not self.failed:
                try:
                    self.session.check_all()
                except Divergence as div:
                    failure = Failure(list(self.session.steps), div)
                    type(self).last_failure = failure
                    type(self).failures.append(failure)
                    raise
        finally:
            self.session.close()


def _has_users(m: KalamStateMachine, state: Any, stream: bool) -> bool:
    return bool(m._names_by_role(Role.USER))


def _on_table(m: KalamStateMachine, state: Any, stream: bool) -> bool:
    return state is not None and not stream


def _on_stream(m: KalamStateMachine, state: Any, stream: bool) -> bool:
    return state is not None and stream


#: operation -> (handler method, whether it applies now: f(machine, drawn table's state, is it STREAM)).
#: The order is the shrink order of the operation draw. Hypothesis draws the first choice more often than its
#: weight says (it favours simple values while generating too), so plain inserts come first: more rows never
#: hurt, while a surplus of reads would crowd out the steps that change state.
_OP_HANDLERS: dict[str, tuple[str, Any]] = {
    "insert": ("write", _on_table),
    "stream_insert": ("write", _on_stream),
    "select": ("read", _on_table),
    "count": ("read", _on_table),
    "select_deleted": ("read", _on_table),
    "stream_select": ("read", _on_stream),
    "insert_duplicate": ("write", _on_table),
    "update_pk": ("write", _on_table),
    "update_pred": ("write", _on_table),
    "delete_pk": ("write", _on_table),
    "delete_pred": ("write", _on_table),
    "reinsert_deleted": ("write", _on_table),
    "stream_update": ("stream_update", lambda m, state, stream: stream and state.pk is not None),
    "flush": ("flush", _on_table),
    "flush_while_active": ("flush", _on_table),
    "await_flush": ("await_flush", lambda m, state, stream: bool(m.flushing)),
    "create_table": (
        "create_table",
        lambda m, state, stream: len(m.model.tables) < m.workload.tables_per_example.max,
    ),
    "alter_add": ("alter", lambda m, state, stream: state is not None),
    "alter_drop": (
        "alter",
        lambda m, state, stream: state is not None and sum(not c.column.primary_key for c in state.columns) > 1,
    ),
    "rbac_probe": ("rbac_probe", _has_users),
    "pause": ("pause", lambda m, state, stream: not m.paused and bool(m._expiring_streams())),
    "subscribe": ("subscribe", lambda m, state, stream: state is not None and bool(m._live_actors())),
    "next_batch": (
        "next_batch",
        lambda m, state, stream: m._live() is not None
        and any(s.status == "loading" for s in m._live().open_subs()),
    ),
    "unsubscribe": ("unsubscribe", lambda m, state, stream: bool(m._old_subs())),
    "resubscribe_from_seq": ("resubscribe_from_seq", lambda m, state, stream: bool(m._resumable())),
    "restart": (
        "restart",
        lambda m, state, stream: m.can_restart and not m.restarted and bool(m.model.tables) and not m.flushing,
    ),
}


@functools.lru_cache(maxsize=512)
def _weighted_choice(choices: tuple[tuple[str, float], ...]) -> st.SearchStrategy[str]:
    """An operation with probability proportional to its weight (quarter-weight resolution), first shrinks best."""
    return weighted([(name, weight * 4) for name, weight in choices])


def machine_for(runner: Any, workload: Any, *, hooks: tuple[Any, ...] = ()) -> type[KalamStateMachine]:
    """A state machine class bound to ``runner`` and ``workload`` (one per test session)."""
    return type(
        "KalamDB",
        (KalamStateMachine,),
        {"runner": runner, "workload": workload, "last_failure": None, "failures": [], "step_hooks": hooks},
    )


def run_machine(
    runner: Any,
    workload: Any,
    *,
    settings: Any = None,
    hooks: tuple[Any, ...] = (),
    seed: int | None = None,
    budget_s: float | None = None,
    shrink: str = "both",
) -> Failure | None:
    """Run the state machine under ``settings`` (default: the loaded Hypothesis profile).

    ``shrink``: how a failure is minimised. ``"hypothesis"``: Hypothesis's shrinking only; ``"steps"``: no
    Hypothesis shrinking, the step-level reducer (:mod:`kalammodel.reduce`) only, which is much faster against a
    server; ``"both"`` (default): Hypothesis first (simpler values), then the reducer (fewer steps, and a
    program proven to replay).

    ``seed`` fixes Hypothesis's random seed (benchmarks and detection tests run several seeds).
    ``budget_s``: a time budget instead of an example count (long fuzzing runs). Hypothesis cannot stop a run
    early without taking the stop for a failure, so the budget runs rounds of :data:`BUDGET_ROUND` examples
    (or the profile's count, if smaller), each with a new seed (``seed + i`` when ``seed`` is given), and starts
    no new round once the budget is spent; a failure ends the run as usual, shrunk in full.

    Returns None when every example agreed with the model, else the :class:`Failure` of Hypothesis's final
    (minimal) example. Errors that are not divergences (tool bugs, a dead target) propagate.
    """
    if shrink not in SHRINK_MODES:
        raise ValueError(f"shrink must be one of {', '.join(SHRINK_MODES)} (got {shrink!r})")
    if shrink == "steps":
        from hypothesis import Phase
        from hypothesis import settings as Settings

        base = settings if settings is not None else Settings()
        settings = Settings(base, phases=[p for p in base.phases if p is not Phase.shrink])
    if budget_s is not None and not budget_s > 0:
        raise ValueError(f"budget_s must be positive (got {budget_s!r})")
    with tuned_gc():
        if budget_s is not None:
            failure = _run_for(runner, workload, settings=settings, hooks=hooks, seed=seed, budget_s=budget_s)
        else:
            failure = _run_once(runner, workload, settings=settings, hooks=hooks, seed=seed)
    if failure is not None and shrink != "hypothesis":
        others = [reduce_failure(runner, f) for f in failure.others]
        failure = reduce_failure(runner, failure)
        failure.others = others
    return failure


#: garbage-collector thresholds while the machine runs (CPython's default is (700, 10, 10))
GC_THRESHOLDS = (50_000, 20, 100)


@contextmanager
def pinned_constants() -> Iterator[None]:
    """Hypothesis draws without the constants it collects from loaded local modules, while inside.

    Hypothesis (6.x) sometimes draws an integer, float or string from the literals of every *local* module that
    is loaded (``hypothesis.internal.conjecture.providers._get_local_constants``), so the same seed generates
    different programs depending on which test modules pytest imported. A seed must mean the same
    program in one test file, in the whole suite and in a benchmark (detection hunts, derandomized tests):
    inside this block the local pool is empty (Hypothesis's global constants still apply). Internal API: if it moves, the
    run is unpinned rather than failing.
    """
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - a future Hypothesis
        yield
        return
    original = getattr(providers, "_get_local_constants", None)
    if original is None or not hasattr(providers, "CONSTANTS_CACHE"):  # pragma: no cover
        yield
        return
    empty = providers.Constants()
    providers.CONSTANTS_CACHE.cache.clear()
    providers._get_local_constants = lambda: empty
    try:
        yield
    finally:
        providers._get_local_constants = original
        providers.CONSTANTS_CACHE.cache.clear()


@contextmanager
def tuned_gc() -> Iterator[None]:
    """Collect garbage less often while the machine runs; restore the collector's settings afterwards.

    Hypothesis and the model allocate many short-lived objects per step, so with CPython's defaults a young
    collection runs every few hundred allocations and older ones keep re-scanning the long-lived heap (the
    imported modules, the model, Hypothesis's example tree): a third of the tester's time went there
    (benchmarks/stateful_throughput.py: 41% -> 52% of the bare loop's request rate). Objects alive on entry
    are frozen (never scanned again until exit); cyclic garbage is still collected, only in larger batches.
    """
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


#: the values of run_machine's ``shrink`` (and of --kalammodel-shrink)
SHRINK_MODES = ("both", "hypothesis", "steps")


def reduce_failure(runner: Any, failure: Failure) -> Failure:
    """``failure`` reduced step by step with :func:`kalammodel.reduce.reduce_steps`, replaying on ``runner``.

    A failure that does not replay (flaky) is returned as it was, with the attempt recorded in ``reduction``.
    """
    from .reduce import reduce_steps

    reduction = reduce_steps(runner.run_steps, failure.steps, failure.divergence)
    return Failure(reduction.steps, reduction.divergence, list(failure.others), reduction)


#: examples per round of a time-budgeted run (:func:`run_machine` with ``budget_s``)
BUDGET_ROUND = 50


def _run_for(
    runner: Any, workload: Any, *, settings: Any, hooks: tuple[Any, ...], seed: int | None, budget_s: float
) -> Failure | None:
    import random

    from hypothesis import settings as Settings

    base = settings if settings is not None else Settings()
    rounds = Settings(base, max_examples=min(BUDGET_ROUND, base.max_examples), derandomize=False)
    first = random.SystemRandom().randrange(2**32) if seed is None else seed
    stop_at = time.monotonic() + budget_s
    i = 0
    while time.monotonic() < stop_at:
        failure = _run_once(runner, workload, settings=rounds, hooks=hooks, seed=first + i)
        if failure is not None:
            return failure
        i += 1
    return None


def _leaf_exceptions(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaf_exceptions(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _run_once(
    runner: Any, workload: Any, *, settings: Any, hooks: tuple[Any, ...], seed: int | None
) -> Failure | None:
    from hypothesis.errors import Flaky
    from hypothesis.stateful import run_state_machine_as_test

    machine = machine_for(runner, workload, hooks=hooks)
    try:
        if seed is None:
            run_state_machine_as_test(machine, settings=settings)
        else:
            from hypothesis import seed as use_seed
            from hypothesis.stateful import get_state_machine_test

            use_seed(seed)(get_state_machine_test(machine, settings=settings))()
    except Divergence:
        failure = machine.last_failure
        if failure is None:  # pragma: no cover - the machine always records before raising
            raise
        return failure
    except BaseExceptionGroup as group:  # Hypothesis found several distinct failures
        # ... some perhaps wrapped in a FlakyFailure (failed once, then passed or failed otherwise on replay):
        # still divergences, to be saved (the corpus classifies them flaky by replaying).
        leaves = _leaf_exceptions(group)
        divergences = [e for e in leaves if isinstance(e, Divergence)]
        if not divergences or len(divergences) != len(leaves):
            raise
        found = [f for d in divergences for f in reversed(machine.failures) if f.divergence is d][
            : len(divergences)
        ]
        if not found:  # pragma: no cover - every raised divergence was recorded
            raise
        first = found[0]
        first.others = found[1:]
        return first
    except Flaky as exc:
        failure = machine.last_failure
        if failure is None:
            from .errors import InternalError

            raise InternalError(
                "Hypothesis saw the state machine draw differently for the same choices, with no divergence "
                "from the model: some operation's applicability or draw depends on server timing or the wall "
                "clock. "
                f"This is a kalammodel bug; please file it with this traceback. ({type(exc).__name__})"
            ) from exc
        return failure
    return None
