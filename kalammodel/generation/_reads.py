"""Draw functions of the reads: SELECT (projection, ORDER BY, LIMIT/OFFSET), COUNT, the deleted rows, STREAM
reads (records of :mod:`kalammodel.generation.operations`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import strategies as st

from ..model import Column, ColumnType, Predicate, TableKind
from ..steps import Count, Select, SelectDeleted, StreamSelect
from .strategies import predicates

if TYPE_CHECKING:
    from .machine import KalamStateMachine

__all__ = ["read"]


def read(m: KalamStateMachine, table: str, data: st.DataObject, op: str) -> None:
    state = m.table_state(table)
    if state is None:
        return
    actor, as_user = m.who(data, state.kind, write=False, table=state.spec.name)
    columns = m.columns(state)
    if state.kind is TableKind.STREAM:
        m.run(StreamSelect(actor, table, None, _maybe_where(m, data, columns), (), None, None, as_user))
        return
    if op == "count":
        m.run(Count(actor, table, _maybe_where(m, data, columns), as_user))
        return
    if op == "select_deleted":
        m.run(SelectDeleted(actor, table, None, as_user))
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
        # half the time under a projection, a column it leaves out: ORDER BY an unselected column is where
        # KalamDB's default ordering took over (docs/kalamdb-findings.md 7)
        hidden = [n for n in orderable if projection is not None and n not in projection]
        if len(hidden) > 0 and data.draw(st.booleans(), label="order by an unselected column?"):
            orderable = hidden
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
    m.run(Select(actor, table, projection, _maybe_where(m, data, columns), order_by, limit, offset, as_user))


def _maybe_where(m: KalamStateMachine, data: st.DataObject, columns: list[Column]) -> Predicate | None:
    if data.draw(st.integers(0, 2), label="where?") == 0:
        return None
    try:
        return data.draw(predicates(columns), label="where")
    except ValueError:
        return None
