"""Draw functions of the writes: INSERT (plain, duplicate key, re-insert of a deleted key), UPDATE and DELETE
by key or predicate, and the STREAM writes (records of :mod:`kalammodel.generation.operations`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st

from ..model import Cmp, Column, ColumnType, LiveSub, Predicate, Role, SetExpr, TableKind, TableState
from ..steps import Delete, Insert, Step, StreamInsert, StreamUpdate, Update, UpdateExpr
from ._live import live_model
from .strategies import predicates, row_values, values

if TYPE_CHECKING:
    from .machine import KalamStateMachine

__all__ = ["insert_subset", "stream_delete", "stream_update", "update_expr", "write"]

#: upper bound of an index drawn before its candidates are known (taken modulo their number)
_ANY_INDEX = 1 << 16

#: a row an update or delete aims at: (actor, EXECUTE AS user, primary key value)
Aim = tuple[str, str | None, Any]


def write(m: KalamStateMachine, table: str, data: st.DataObject, op: str) -> None:
    state = m.table_state(table)
    if state is None:
        return
    if state.kind is TableKind.STREAM:
        return _stream_write(m, state, data)
    pk = state.pk.column if state.pk is not None else None
    aimed = _aimed_target(m, data, state) if op in ("update_pk", "delete_pk") and pk is not None else None
    key: Any = None
    if aimed is not None:
        actor, as_user, key = aimed
    else:
        actor, as_user = m.who(data, state.kind, write=True, table=state.spec.name)
    owner = m.owner(state, actor, as_user)
    if op in ("insert", "insert_duplicate", "reinsert_deleted") or pk is None:
        _insert(m, state, data, actor, as_user, owner, op)
        return
    if op in ("update_pk", "update_pred"):
        assignments = _assignments(m, state, data)
        if not assignments:
            return
        if op == "update_pk":
            if key is None:
                key = _existing_key(m, data, state, owner, pk)
            step: Step = Update.by_pk(actor, state.spec.name, pk.name, pk.type, key, assignments, as_user)
        else:
            where = data.draw(predicates(m.columns(state)), label="where")
            step = Update(actor, state.spec.name, assignments, where, as_user)
        m.run(step)
        return
    if op == "delete_pk":
        if key is None:
            key = _existing_key(m, data, state, owner, pk)
        m.run(Delete.by_pk(actor, state.spec.name, pk.name, pk.type, key, as_user))
    else:
        where = data.draw(predicates(m.columns(state)), label="where")
        m.run(Delete(actor, state.spec.name, where, as_user))
    return


def _aimed_target(m: KalamStateMachine, data: st.DataObject, state: TableState) -> Aim | None:
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
    writers = m.names_by_role(Role.SERVICE, Role.DBA, Role.SYSTEM) or ["root"]
    # Indexes are drawn with fixed bounds and taken modulo the number of candidates: the candidate lists
    # may grow without changing how later choices are read.
    aim = data.draw(st.sampled_from(("any", "cold", "live")), label="aim")
    if aim == "cold":
        cold = _cold_options(m, state, writers)
        pick = data.draw(st.integers(0, _ANY_INDEX), label="cold target")
        return cold[pick % len(cold)] if cold else None
    if aim == "live":
        subs = _subscribed(m, state)
        pick = data.draw(st.integers(0, _ANY_INDEX), label="subscription")
        if not subs:
            return None
        sub = subs[pick % len(subs)]
        shown = _shown_keys(m, state, sub)
        pick = data.draw(st.integers(0, _ANY_INDEX), label="subscribed row")
        if not shown:
            return None
        key = shown[pick % len(shown)]
        if state.kind is TableKind.SHARED:
            return writers[pick % len(writers)], None, key
        return sub.actor, None, key
    return None


def _cold_options(m: KalamStateMachine, state: TableState, writers: list[str]) -> list[Aim]:
    pairs = m.who_used.get(state.spec.name, [])
    if state.kind is TableKind.SHARED:
        pairs = [(w, None) for w in writers]
    scopes = m.scopes(state)
    options: list[Aim] = []
    for actor, as_user in pairs:
        owner = m.owner(state, actor, as_user)
        if owner in scopes:
            cold = sorted(m.model.cold_pks(state.spec.name, owner), key=repr)
            options += [(actor, as_user, key) for key in cold]
    return options


def _subscribed(m: KalamStateMachine, state: TableState) -> list[LiveSub]:
    """Open subscriptions on the table, by id."""
    live = live_model(m)
    if live is None:
        return []
    return sorted(
        (s for s in live.open_subs(state.spec.name) if s.actor in m.actors),
        key=lambda s: s.id,
    )


def _shown_keys(m: KalamStateMachine, state: TableState, sub: LiveSub) -> list[Any]:
    """Primary keys of the rows ``sub``'s query matches now, by the model."""
    pk = state.pk.column.name if state.pk is not None else None
    owner = None if state.kind is TableKind.SHARED else sub.owner
    if pk is None or owner not in m.scopes(state):
        return []
    rows = m.model.visible_rows(state.spec.name, owner)
    live = live_model(m)
    assert live is not None  # (sub came from it)
    keys = [r[pk] for r in rows if live.admits(state, sub, r) is True]
    return sorted(keys, key=repr)


def _existing_key(
    m: KalamStateMachine, data: st.DataObject, state: TableState, owner: str | None, pk: Column
) -> Any:
    known = sorted(m.model.known_pks(state.spec.name, owner), key=repr) if owner in m.scopes(state) else []
    if known and data.draw(st.integers(0, 4), label="existing key?") > 0:
        return data.draw(st.sampled_from(known), label="key")
    return data.draw(values(pk.type, pk=True), label="key")


def _insert(
    m: KalamStateMachine,
    state: TableState,
    data: st.DataObject,
    actor: str,
    as_user: str | None,
    owner: str | None,
    op: str,
) -> None:
    columns = m.columns(state)
    pk = state.pk.column if state.pk is not None else None
    n = data.draw(
        st.integers(max(1, m.wl.insert_rows.min), max(1, m.wl.insert_rows.max)),
        label="rows",
    )
    rows = []
    in_scope = owner in m.scopes(state)
    for _ in range(n):
        pk_value = None
        if pk is not None and op == "insert_duplicate" and in_scope:
            known = sorted(m.model.known_pks(state.spec.name, owner), key=repr)
            if known:
                pk_value = data.draw(st.sampled_from(known), label="existing key")
        if pk is not None and op == "reinsert_deleted" and in_scope:
            deleted = sorted(m.model.deleted_pks(state.spec.name, owner), key=repr)
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
    m.run(step)


def _assignments(
    m: KalamStateMachine, state: TableState, data: st.DataObject
) -> tuple[tuple[str, ColumnType, Any], ...]:
    cols = [c for c in m.columns(state) if not c.primary_key]
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


def insert_subset(m: KalamStateMachine, table: str, data: st.DataObject, op: str) -> None:
    """An INSERT naming a subset of the columns: omitted ones get their DEFAULT or NULL, and an omitted NOT NULL
    column without DEFAULT (the primary key one time in eight) fails the statement (PROTOCOL §5.1;
    docs/kalamdb-findings.md 5). STREAM tables too."""
    state = m.table_state(table)
    if state is None:
        return
    actor, as_user = m.who(data, state.kind, write=True, table=state.spec.name)
    columns = m.columns(state)
    chosen = [
        c
        for c in columns
        if data.draw(st.integers(0, 7 if c.primary_key else 1), label=f"name {c.name}?") > 0
    ] or [columns[0]]
    n = data.draw(st.integers(1, max(1, m.wl.insert_rows.max)), label="rows")
    rows = tuple(data.draw(row_values(chosen), label="row") for _ in range(n))
    cls = StreamInsert if state.kind is TableKind.STREAM else Insert
    m.run(cls(actor, state.spec.name, tuple(c.name for c in chosen), tuple(c.type for c in chosen), rows, as_user))


def _set_expr(data: st.DataObject, column: Column) -> SetExpr:
    """``c = c + k`` (k != 0), ``c = c * k`` (k in 2, 3, -1) or ``t = t || 's'`` (s non-empty): never an identity
    (DataFusion plans an identity assignment as none: docs/kalamdb-findings.md surprise B)."""
    if column.type is ColumnType.TEXT:
        suffix = data.draw(st.text(alphabet="ab'z ", min_size=1, max_size=3), label="suffix")
        return SetExpr(column.name, column.type, "||", suffix)
    if data.draw(st.booleans(), label="add?"):
        k = data.draw(st.one_of(st.integers(1, 20), st.integers(-5, -1), st.integers(2**20, 2**40)), label="k")
        return SetExpr(column.name, column.type, "+", k if column.type is ColumnType.BIGINT else max(-5, min(k, 20)))
    return SetExpr(column.name, column.type, "*", data.draw(st.sampled_from((2, 3, -1)), label="factor"))


def update_expr(m: KalamStateMachine, table: str, data: st.DataObject, op: str) -> None:
    """An UPDATE whose SET computes from the row (``c = c + 1``, ``t = t || 'x'``), maybe beside a literal
    assignment, by primary key or by predicate."""
    state = m.table_state(table)
    if state is None or state.pk is None or state.kind is TableKind.STREAM:
        return
    computable = [
        c
        for c in m.columns(state)
        if not c.primary_key and (c.type.is_integer or c.type is ColumnType.TEXT)
    ]
    if not computable:
        return
    actor, as_user = m.who(data, state.kind, write=True, table=state.spec.name)
    owner = m.owner(state, actor, as_user)
    chosen = data.draw(
        st.lists(st.sampled_from(computable), min_size=1, max_size=2, unique_by=lambda c: c.name),
        label="computed columns",
    )
    expressions = tuple(_set_expr(data, c) for c in chosen)
    literal = tuple(a for a in _assignments(m, state, data) if a[0] not in {c.name for c in chosen})
    if data.draw(st.booleans(), label="literal too?") is False:
        literal = ()
    pk = state.pk.column
    if data.draw(st.booleans(), label="by key?"):
        key = _existing_key(m, data, state, owner, pk)
        where: Predicate = Cmp(pk.name, pk.type, "=", key)
    else:
        where = data.draw(predicates(m.columns(state)), label="where")
    m.run(UpdateExpr(actor, state.spec.name, expressions, literal, where, as_user))


def stream_update(m: KalamStateMachine, table: str, data: st.DataObject, op: str) -> None:
    """An UPDATE of a STREAM table's row by PK: KalamDB rejects it, and nothing may change."""
    state = m.table_state(table)
    if state is None or state.pk is None:
        return
    actor, as_user = m.who(data, state.kind, write=True, table=state.spec.name)
    assignments = _assignments(m, state, data)
    if not assignments:
        return
    pk = state.pk.column
    where = Update.by_pk(
        actor, state.spec.name, pk.name, pk.type, data.draw(values(pk.type, pk=True)), assignments
    ).where
    m.run(StreamUpdate(actor, state.spec.name, assignments, where, as_user))


def stream_delete(m: KalamStateMachine, table: str, data: st.DataObject, op: str) -> None:
    """DELETE on a STREAM table, with or without PRIMARY KEY: a hard delete of every row matched, counted
    per row (PROTOCOL §8; docs/kalamdb-findings.md 8, 9). Aims at a value a row of the scope holds (by the
    model) one time in two, at the primary key when there is one, else at any column; else any predicate."""
    state = m.table_state(table)
    if state is None or state.kind is not TableKind.STREAM:
        return
    actor, as_user = m.who(data, state.kind, write=True, table=state.spec.name)
    owner = m.owner(state, actor, as_user)
    columns = m.columns(state)
    rows: list[dict[str, Any]] = []
    if owner in m.scopes(state):
        rows = m.model.visible_rows(state.spec.name, owner)
    where: Predicate | None = None
    aim = bool(rows) and bool(data.draw(st.booleans(), label="aim at a row?"))
    if aim:
        row = rows[data.draw(st.integers(0, _ANY_INDEX), label="row") % len(rows)]
        keyed = [c for c in columns if c.primary_key] or columns
        column = keyed[data.draw(st.integers(0, _ANY_INDEX), label="column") % len(keyed)]
        if row.get(column.name) is not None:
            where = Cmp(column.name, column.type, "=", row[column.name])
    if where is None:
        where = data.draw(predicates(columns), label="where")
    m.run(Delete(actor, state.spec.name, where, as_user))


def _stream_write(m: KalamStateMachine, state: TableState, data: st.DataObject) -> None:
    actor, as_user = m.who(data, state.kind, write=True, table=state.spec.name)
    columns = m.columns(state)
    n = data.draw(st.integers(1, max(1, m.wl.insert_rows.max)), label="rows")
    rows = tuple(data.draw(row_values(columns), label="row") for _ in range(n))
    m.run(
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
