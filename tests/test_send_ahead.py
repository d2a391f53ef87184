"""``Runner(send_ahead=True)``: the reads verifying a step are answered while the tester goes on, and a
divergence they find still names the step they verify — raised by the next call instead of this one.

The server has ``execute_as_wrong_partition`` planted: an EXECUTE AS USER insert lands in the caller's
partition, so the read-back of the written key by its target user comes back empty.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _support import embedded_server

from kalammodel.errors import Divergence
from kalammodel.model import Column, ColumnType, TableSpec
from kalammodel.runner import Runner
from kalammodel.steps import CreateTable, Insert, Select
from kalammodel.targets import ActorPool, EmbeddedTarget

COLS = (Column("id", ColumnType.BIGINT, primary_key=True), Column("v", ColumnType.TEXT))
TYPES = (ColumnType.BIGINT, ColumnType.TEXT)

CREATE = CreateTable("dba", TableSpec(name="t0", kind="USER", columns=COLS))
GOOD = Insert("user1", "t0", ("id", "v"), TYPES, ((1, "own"),))
MISPLACED = Insert("svc", "t0", ("id", "v"), TYPES, ((2, "for user1"),), as_user="user1")
NEXT = Select("user2", "t0")


@pytest.fixture(scope="module")
def target_pool() -> Iterator[tuple[EmbeddedTarget, ActorPool]]:
    with embedded_server("execute_as_wrong_partition") as running:
        yield running


def test_a_read_back_divergence_is_raised_by_the_next_step_and_names_its_own(target_pool):
    target, pool = target_pool
    session = Runner(target, pool, send_ahead=True).session()
    try:
        for step in (CREATE, GOOD, MISPLACED):
            session.run(step)  # the misplaced write's read-back is still in flight
        with pytest.raises(Divergence) as raised:
            session.run(NEXT)
    finally:
        session.close()
    div = raised.value
    assert div.step_index == 2
    assert "read-back of the written keys" in str(div)
    assert session.steps == [CREATE, GOOD, MISPLACED]  # the failing program ends with the step it verifies
    assert all(entry.step_index <= 2 for entry in session.transcript)  # NEXT sent nothing


def test_the_same_divergence_as_without_sending_ahead(target_pool):
    target, pool = target_pool
    found = {}
    for ahead in (False, True):
        session = Runner(target, pool, send_ahead=ahead).session("km_send_ahead")  # dropped by close()
        try:
            session.run(CREATE)
            session.run(GOOD)
            with pytest.raises(Divergence) as raised:
                session.run(MISPLACED)
                session.settle()
        finally:
            session.close()
        found[ahead] = raised.value
    assert (found[True].invariant, found[True].step_index, found[True].request) == (
        found[False].invariant,
        found[False].step_index,
        found[False].request,
    )


def test_the_final_check_settles_what_the_last_step_sent_ahead(target_pool):
    target, pool = target_pool
    session = Runner(target, pool, send_ahead=True).session()
    try:
        for step in (CREATE, MISPLACED):
            session.run(step)
        with pytest.raises(Divergence) as raised:
            session.check_all()
    finally:
        session.close()
    assert raised.value.step_index == 1


def test_run_steps_reports_it_like_any_divergence(target_pool):
    target, pool = target_pool
    result = Runner(target, pool, send_ahead=True).run_steps([CREATE, GOOD, MISPLACED])
    assert result.divergence is not None and result.divergence.step_index == 2
    assert result.steps_run == 3


def test_closing_with_answers_pending_raises_nothing_and_drops_the_namespace(target_pool):
    target, pool = target_pool
    session = Runner(target, pool, send_ahead=True).session()
    session.run(CREATE)
    session.run(MISPLACED)
    assert session._ahead  # the read-back's answer has not been read
    session.close()
    assert not session._ahead
    namespaces = pool.root.execute("SELECT namespace_id FROM system.namespaces").result.rows
    assert session.ns not in {row[0] for row in namespaces}


def test_a_clean_program_settles_clean(target_pool):
    """No false alarm: every read sent ahead of a correct program compares equal (and is in the transcript)."""
    target, pool = target_pool
    another = Insert("user1", "t0", ("id", "v"), TYPES, ((3, "x"),))
    result = Runner(target, pool, send_ahead=True).run_steps([CREATE, GOOD, NEXT, another])
    assert result.ok, result
    read_backs = [e for e in result.transcript if "WHERE id = " in e.request]
    assert [e.step_index for e in read_backs] == [1, 3]


def test_a_select_is_compared_later_and_still_named():
    """A read-only step's own answer is compared at the next call (user_select_leak: user2's range read also
    returns user1's row), named as the SELECT, with the same invariant as without sending ahead."""
    from kalammodel.model import Cmp

    leak = Select("user2", "t0", None, Cmp("id", ColumnType.BIGINT, ">=", 0), (("id", False),))
    program = [CREATE, GOOD, Insert("user2", "t0", ("id", "v"), TYPES, ((5, "user2's"),)), leak]
    with embedded_server("user_select_leak") as (target, pool):
        found = {}
        for ahead in (False, True):
            session = Runner(target, pool, send_ahead=ahead).session("km_select_later")
            try:
                for step in program[:-1]:
                    session.run(step)
                if ahead:
                    session.run(leak)  # sent, not yet compared
                    assert session._ahead
                    with pytest.raises(Divergence) as raised:
                        session.run(NEXT)
                else:
                    with pytest.raises(Divergence) as raised:
                        session.run(leak)
            finally:
                session.close()
            found[ahead] = raised.value
    assert found[True].step_index == found[False].step_index == 3
    assert (found[True].invariant, found[True].request) == (found[False].invariant, found[False].request)
    assert found[True].invariant == "isolation"


def test_only_single_select_steps_are_read_only():
    from kalammodel.steps import STEP_TYPES

    readers = sorted(kind for kind, cls in STEP_TYPES.items() if cls.reads_only)
    assert readers == ["count", "probe_execute_as", "probe_system_read", "select", "select_deleted", "stream_select"]
