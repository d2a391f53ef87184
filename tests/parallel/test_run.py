"""Parallel sections against the embedded server (which serialises statements: it is linearizable)."""

from __future__ import annotations

import time

import pytest
from _build import count, delete, get, insert, scan, update
from hypothesis import settings

from kalammodel.errors import Divergence, Invariant
from kalammodel.history import Result, Status
from kalammodel.model import Column, ColumnType, TableSpec
from kalammodel.parallel import ParallelProgram, ParallelStats, run_program, run_section
from kalammodel.parallel.generate import run_parallel
from kalammodel.runner import Runner
from kalammodel.steps import CreateTable

B = ColumnType.BIGINT
COLUMNS = [Column("id", B, primary_key=True), Column("v", B)]
TABLE = CreateTable("root", TableSpec("t", "USER", COLUMNS))


@pytest.fixture
def runner(kalamdb_target, actor_pool):
    return Runner(kalamdb_target, actor_pool)


def conflicting_clients(k: int) -> list[list]:
    """K clients over keys 1..2 of user1: inserts of one key by every client, updates, deletes, reads."""
    return [
        [insert(1, 10 + c), update(1, 20 + c), get(1), insert(2, 30 + c), delete(2), scan(), count()]
        for c in range(k)
    ]


def test_a_section_of_four_conflicting_clients_is_linearizable(runner):
    """Four clients fight over two keys at the same time; the checker finds an order; the suffix agrees."""
    program = ParallelProgram([TABLE, insert(2, 0)], conflicting_clients(4), [scan(), count(), scan("user2")])
    stats = ParallelStats()
    started = time.monotonic()
    report = run_program(runner, program, stats=stats)
    assert report is not None and report.verdict.ok, report.verdict.message if report else "undecided"
    ops = [o for o in report.history if o.client < 4]
    assert len(ops) == 28 and {o.client for o in ops} == {0, 1, 2, 3}
    # the closing read of user1's scope joined the history as one more client's operation
    assert [o.op for o in report.history if o.client == 4] == [scan()]
    # several clients inserted key 1 at once: exactly one insert of it was acknowledged before any delete
    inserts = [o for o in ops if o.op.kind == "insert" and o.op.rows[0][0] == 1]
    assert sum(o.status is Status.OK for o in inserts) == 1
    assert any(o.status is Status.FAILED for o in inserts)
    # the clients did overlap in time
    assert any(a.client != b.client and a.invoke < b.ret and b.invoke < a.ret for a in ops for b in ops)
    assert stats.sections == 1 and stats.check_seconds and time.monotonic() - started < 60


def test_a_model_the_server_contradicts_is_a_linearizability_divergence(runner):
    """The model is told of a row the server never got: no order of the section explains the answers."""
    session = runner.session()
    try:
        session.run(TABLE)
        session.model.insert("user1", "t", ["id", "v"], [B, B], [(1, 99)])  # only the model has it
        with pytest.raises(Divergence) as info:
            run_section(session, [[get(1), insert(3, 1)], [insert(1, 5), get(1)]])
        div = info.value
        assert div.invariant is Invariant.LINEARIZABILITY
        assert "cannot be ordered" in div.message or "no order" in div.message.lower()
        assert div.namespace == session.ns
    finally:
        session.close()


def test_the_suffix_checks_the_state_of_the_order_found(runner):
    """After the section the session's model is the state of the order found: a later full check agrees,
    whatever order the server chose for two concurrent updates of one key."""
    session = runner.session()
    try:
        session.run(TABLE)
        session.run(insert(1, 0))
        report = run_section(session, [[update(1, 5)], [update(1, 6)], [update(1, 7)]])
        assert report.verdict.result is Result.OK
        session.run(scan())
        session.check_all()
        assert session.model.select("user1", "t").rows[0][1] in (5, 6, 7)
    finally:
        session.close()


def test_hypothesis_draws_and_runs_parallel_programs(runner):
    """A few drawn programs of up to 4 clients, with a fixed seed: no divergence on the embedded server."""
    stats = ParallelStats()
    failure = run_parallel(runner, 4, settings=settings(max_examples=4, database=None), seed=7, stats=stats)
    assert failure is None, failure and failure.divergence
    assert stats.programs >= 4 and stats.sections == stats.programs and stats.unknown == 0


@pytest.mark.parametrize("applied", [True, False], ids=["answer-lost", "never-sent"])
def test_a_request_without_answer_is_indeterminate_and_the_closing_read_decides(runner, monkeypatch, applied):
    """A write whose answer is lost (or that never left) is indeterminate: the checker allows both, the closing
    read of the scope decides, and the model the suffix checks follows the server."""
    import kalammodel.parallel.run as run_module
    from kalammodel.client import KalamClient
    from kalammodel.errors import TransportError

    class LosesInsertAnswers(KalamClient):
        def execute(self, sql, params=None, namespace=None):
            if "VALUES (7, 70)" in sql:
                if applied:
                    super().execute(sql, params, namespace)
                raise TransportError("connection reset (planted by the test)")
            return super().execute(sql, params, namespace)

    monkeypatch.setattr(run_module, "KalamClient", LosesInsertAnswers)
    session = runner.session()
    try:
        session.run(TABLE)
        report = run_section(session, [[insert(7, 70), get(1)], [insert(1, 1), count()]])
        assert report.verdict.ok, report.verdict.message
        assert [o.status for o in report.history if o.op == insert(7, 70)] == [Status.INDETERMINATE]
        assert report.indeterminate == 1
        keys = [r[0] for r in session.model.select("user1", "t").rows]
        assert keys == ([1, 7] if applied else [1])
        session.check_all()  # the model adopted agrees with the server
    finally:
        session.close()
