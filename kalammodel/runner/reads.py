"""Verification reads: the read-back of written keys, and the full read of a scope (paged, cross-checked with
``COUNT(*)``; STREAM scopes in one bounded SELECT) with its cold files.

Each read is sent as the step ends (:meth:`Session.send_ahead`) and compared when the session settles.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from ..client import Pending, QueryResult, SqlResponse
from ..errors import Divergence, Invariant
from ..model import ExpectRows, Outcome, TableKind, compare_outcome, render_value
from ..steps import Request, Step
from .attribution import incomplete_read_invariant
from .outcomes import outcome_of, outcome_of_result, written_keys

if TYPE_CHECKING:
    from .session import Session

__all__ = ["check_scope", "full_check_due", "read_back", "reader_request"]


def reader_request(session: Session, kind: TableKind, owner: str | None, sql: str) -> Request:
    """Who reads a scope: SHARED as root; USER/STREAM as the owner (own token or EXECUTE AS by root)."""
    if kind is TableKind.SHARED or owner is None:
        return Request("root", sql)
    if owner in session.pool.names:
        return Request(owner, sql)
    return Request("root", sql, as_user=owner)


def read_back(session: Session, step: Step) -> None:
    """After a successful write, read the scope's written keys back by their owner."""
    model = session.model
    table = getattr(step, "table", None)
    if not isinstance(table, str) or table not in model.tables:
        return
    state = model.tables[table]
    if state.kind is TableKind.STREAM:
        return
    pk = model.primary_key(table)
    keys = written_keys(step, pk)
    if not keys or pk is None:
        return
    owner = None if state.kind is TableKind.SHARED else model.effective_user(step.actor, step.as_user)
    # O(written keys), not O(scope): the model looks the keys up; the full scope waits for check_all.
    expected = model.rows_for_keys(table, owner, keys)
    col_type = state.column_type(pk)
    assert col_type is not None  # the primary key is a column of the table
    literals = [render_value(col_type, k) for k in keys]
    ns = session.ns
    if len(literals) == 1:  # a point lookup: the cheapest read on any server (and the usual by-PK write)
        sql = f"SELECT * FROM {ns}.{table} WHERE {pk} = {literals[0]}"
    else:
        sql = f"SELECT * FROM {ns}.{table} WHERE {pk} IN ({', '.join(literals)}) ORDER BY {pk}"
    request = reader_request(session, state.kind, owner, sql)
    exp = ExpectRows(
        expected.columns,
        expected.rows,
        ordered=False,
        maybe_rows=expected.maybe_rows,
        types=expected.types,
    )

    def compare(outcome_of_read: Callable[[], Outcome]) -> None:
        outcome = outcome_of_read()
        problem = compare_outcome(exp, outcome)
        if problem is not None:
            raise session.divergence(step, request, exp, outcome, f"read-back of the written keys: {problem}")

    session._ahead.later(session.send_ahead(request), compare)


def full_check_due(session: Session, table: str, owner: str | None) -> bool:
    """Whether waiting for the next periodic check would leave the scope uncompared for too long."""
    runner = session.runner
    rows = session.model.scope_size(table, owner)
    interval = max(runner.check_every, -(-rows // runner.check_rows_per_step))
    last = session._compared_at.get((table, owner), -1)
    return session.step_index + runner.check_every - last > interval


def check_scope(session: Session, table: str, owner: str | None) -> None:
    """Read one scope in full (paged, cross-checked by COUNT(*)) and compare it with the model."""
    session._dirty.discard((table, owner))
    session._compared_at[(table, owner)] = session.step_index
    model = session.model
    state = model.tables[table]
    pk = model.primary_key(table)
    expected = model.expect_full_read(table, owner)
    request = reader_request(
        session, state.kind, owner, f"SELECT * FROM {session.ns}.{table} ORDER BY {pk or '_seq'}"
    )
    client = session.pool.client(request.actor)
    started = time.perf_counter()
    wire_as = session.wire_user(request.as_user)
    stream = state.kind is TableKind.STREAM
    if stream:
        # STREAM rows expire while a paged read and its COUNT(*) run, so their totals may differ legitimately:
        # one bounded SELECT instead (STREAM scopes are small; the model tolerates rows near their TTL).
        limited = f"{request.sql} LIMIT {session.runner.limits.max_query_limit}"
        pending = cast("Pending[SqlResponse | QueryResult]", client.submit(limited, as_user=wire_as))
    else:
        read_all = client.submit_read_all(f"{session.ns}.{table}", order_by=pk or "_seq", as_user=wire_as)
        pending = cast("Pending[SqlResponse | QueryResult]", read_all)

    def compare(answer: Callable[[], SqlResponse | QueryResult]) -> None:
        def decode(response: SqlResponse | QueryResult) -> Outcome:
            if stream:  # (fakes in tests answer with look-alikes: no isinstance here)
                return outcome_of(cast(SqlResponse, response))
            return outcome_of_result(cast(QueryResult, response))

        try:
            outcome = session.answered(request, started, answer, decode, "full read failed")
        except Divergence as div:  # the paged read and COUNT(*) disagree
            placed = div.evolve(
                step_index=session.step_index, step=session.current_step(), namespace=session.ns
            )
            if div.invariant is Invariant.READ_ALL_COMPLETE:
                invariant = incomplete_read_invariant(state.flush.running_job is not None)
                if invariant is not Invariant.READ_ALL_COMPLETE:  # the flush's, not a paging bug
                    placed = placed.evolve(
                        invariant=invariant, message=f"while a flush of {table} runs: {div.message}"
                    )
            raise placed from None
        problem = compare_outcome(expected, outcome)
        if problem is not None:
            raise session.divergence(
                session.current_step(),
                request,
                expected,
                outcome,
                f"full read of scope {table}/{owner or '<shared>'}: {problem}",
                full=True,
                table=table,
            )
        if cold is not None:
            cold()

    # The cold files are read now, as the step ends (like the SQL read), and compared after the SQL read.
    cold = None
    if session.runner.cold_checks:
        from ..checks.cold import read_cold

        cold = read_cold(session, table, owner)
    session._ahead.later(pending, compare)
