"""Draw functions of the tables and their storage: CREATE TABLE, ALTER TABLE, flushes (records of
:mod:`kalammodel.generation.operations`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st
from hypothesis.stateful import multiple

from ..model import Column, ColumnType, Role, TableKind, TableSpec
from ..steps import (
    AlterAddColumn,
    AlterDropColumn,
    AwaitFlush,
    CreateTable,
    Flush,
    InsertNamingDroppedColumn,
    StartFlush,
)
from .strategies import favour_absent, row_values, table_spec, weighted

if TYPE_CHECKING:
    from .machine import KalamStateMachine

__all__ = ["alter", "await_flush", "create_table", "flush"]


def create_table(m: KalamStateMachine, table: str, data: st.DataObject, op: str) -> Any:
    """A new table (``table`` is ignored): its name, or ``multiple()`` when the server refused it."""
    # A kind the example has no table of yet weighs 4 times its workload weight (the first table's draw is
    # the workload's): faults live between kinds and access levels (a user's write probe needs a PRIVATE
    # SHARED table beside the USER tables), and a third USER table adds less than a first SHARED one.
    present = {t.kind.value for t in m.model.tables.values()}
    kinds = favour_absent([(k, w) for k, w in m.wl.table_kinds.items if w > 0], present)
    kind = TableKind(data.draw(weighted(kinds), label="table kind").upper())
    name = f"t{m.table_count}"
    m.table_count += 1
    schemas = [s for s in m.wl.schemas if s.kind.upper() == kind.value]
    spec = data.draw(table_spec(m.wl, name, kind, m.shared_levels()), label="schema")
    if bool(schemas) and data.draw(st.booleans(), label="workload schema"):
        chosen = data.draw(st.sampled_from(schemas))
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
        actor = data.draw(st.sampled_from(m.names_by_role(Role.SERVICE, Role.DBA, Role.SYSTEM) or ["root"]))
    else:
        actor = data.draw(st.sampled_from(sorted(m.actors)), label="creator")
    m.run(CreateTable(actor, spec))
    return name if name in m.model.tables else multiple()


def flush(m: KalamStateMachine, table: str, data: st.DataObject, op: str) -> None:
    state = m.table_state(table)
    if state is None or state.kind is TableKind.STREAM:
        return
    actor = data.draw(st.sampled_from(m.names_by_role(Role.SERVICE, Role.DBA, Role.SYSTEM) or ["root"]))
    if table in m.flushing:
        # A flush requested while this table's started flush may still run is either skipped or a new
        # job, by timing; the model accepts both, but which rows end up cold would then depend on timing,
        # and generation aims at cold rows. So the started flush is awaited first.
        m.flushing.discard(table)
        m.run(AwaitFlush(table))
        if op == "flush_while_active":
            return
    if op == "flush_while_active":
        # Generation must not depend on the server's answer (a job, or "skipped" where the model accepts
        # either): the machine remembers the flushes it started itself and awaits each one.
        m.flushing.add(table)
        m.run(StartFlush(actor, table))
    else:
        m.run(Flush(actor, table))


def await_flush(m: KalamStateMachine, table: str, data: st.DataObject, op: str) -> None:
    table = data.draw(st.sampled_from(sorted(m.flushing)), label="table")
    m.flushing.discard(table)
    m.run(AwaitFlush(table))


def alter(m: KalamStateMachine, table: str, data: st.DataObject, op: str) -> None:
    state = m.table_state(table)
    if state is None:
        return
    actor = data.draw(st.sampled_from(m.names_by_role(Role.SERVICE, Role.DBA, Role.SYSTEM) or ["root"]))
    droppable = [c for c in m.columns(state) if not c.primary_key]
    dropped = [s.column for s in state.dropped if state.column(s.column.name) is None]
    if op == "alter_drop_pk" and state.pk is not None:  # refused (docs/kalamdb-findings.md 6)
        m.run(AlterDropColumn(actor, table, state.pk.column.name))
        return
    if op == "alter_drop" and droppable and len(droppable) > 1:
        m.run(AlterDropColumn(actor, table, data.draw(st.sampled_from([c.name for c in droppable]))))
        return
    if dropped and data.draw(st.integers(0, 3), label="write dropped column?") == 0:
        col = data.draw(st.sampled_from(dropped), label="dropped column")
        columns = [c for c in m.columns(state) if c.primary_key or not c.nullable] + [col]
        row = data.draw(
            row_values([Column(c.name, c.type, nullable=False, primary_key=c.primary_key) for c in columns])
        )
        who, as_user = m.who(data, state.kind, write=True, table=state.spec.name)
        m.run(
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
        col = Column(f"a{state.next_column_id}", data.draw(st.sampled_from(list(ColumnType))), nullable=True)
    m.run(AlterAddColumn(actor, table, col))
