"""The restart step: kill -9 the server mid-program, start it again, and nothing acknowledged is lost."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from kalammodel.checks.restart import can_restart
from kalammodel.model import Column, ColumnType, TableSpec
from kalammodel.runner import Runner
from kalammodel.steps import (
    CreateTable,
    Delete,
    Flush,
    Insert,
    Restart,
    Select,
    StreamInsert,
    Update,
    step_from_data,
    step_to_data,
)
from kalammodel.targets import ActorPool, EmbeddedTarget, RemoteTarget

COLS = (Column("id", ColumnType.BIGINT, nullable=False, primary_key=True), Column("v", ColumnType.TEXT))
TYPES = (ColumnType.BIGINT, ColumnType.TEXT)

#: Hot and cold rows, a deleted flushed row, an update, rows of a synthetic user, then SIGKILL.
PROGRAM = [
    CreateTable("dba", TableSpec(name="t0", kind="USER", columns=COLS)),
    Insert("user1", "t0", ("id", "v"), TYPES, ((1, "a"), (2, "b"))),
    Flush("svc", "t0"),
    Delete.by_pk("user1", "t0", "id", ColumnType.BIGINT, 1),
    Update.by_pk("user1", "t0", "id", ColumnType.BIGINT, 2, (("v", ColumnType.TEXT, "z"),)),
    Insert("svc", "t0", ("id", "v"), TYPES, ((3, "c"),), as_user="syn_a"),
    Restart(hard=True),
    Select("user1", "t0"),
    Insert("user1", "t0", ("id", "v"), TYPES, ((4, "d"),)),
]


def _runner(faults: tuple[str, ...]) -> Iterator[Runner]:
    target = EmbeddedTarget(faults)
    target.start()
    pool = ActorPool.for_target(target)
    try:
        yield Runner(target, pool)
    finally:
        pool.close()
        target.stop()


@pytest.fixture(scope="module")
def clean() -> Iterator[Runner]:
    yield from _runner(())


@pytest.fixture(scope="module")
def lossy() -> Iterator[Runner]:
    yield from _runner(("acknowledged_writes_lost",))


def test_every_acknowledged_write_survives_a_sigkill(clean: Runner) -> None:
    """On a correct server, hot and cold rows, deletes and updates are all there after kill -9 and restart."""
    result = clean.run_steps(PROGRAM)
    assert result.ok, result.divergence or result.error
    assert any("restarted the server (SIGKILL)" in e.request for e in result.transcript)


def test_finds_acknowledged_writes_lost(lossy: Runner) -> None:
    """A server that acknowledges writes before they are durable fails the durability check after SIGKILL."""
    result = lossy.run_steps(PROGRAM)
    assert not result.ok and result.divergence is not None, result.error
    assert result.divergence.invariant == "durability"
    assert result.divergence.step_index == PROGRAM.index(PROGRAM[6])


def test_the_same_program_passes_without_restart_on_the_lossy_server(lossy: Runner) -> None:
    """Without the kill the lossy server answers correctly: only durability distinguishes it."""
    result = lossy.run_steps([s for s in PROGRAM if s.kind != "restart"])
    assert result.ok, result.divergence or result.error


def test_stream_rows_expiring_during_a_slow_restart_are_not_lost(
    clean: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart slower than a STREAM table's TTL: its rows expired meanwhile, and the durability check that
    follows knows the time (a false alarm under load once: the model's clock was the step's start)."""
    target = clean.target
    restart = target.restart

    def slow_restart(hard: bool = False) -> None:
        restart(hard=hard)
        time.sleep(5.0)  # past the TTL and its slack

    monkeypatch.setattr(target, "restart", slow_restart)
    cols = (Column("id", ColumnType.TEXT, nullable=False, primary_key=True),)
    result = clean.run_steps(
        [
            CreateTable("dba", TableSpec(name="s0", kind="STREAM", columns=cols, ttl_seconds=3)),
            StreamInsert("dba", "s0", ("id",), (ColumnType.TEXT,), (("zz",),), as_user="user2"),
            Restart(hard=True),
        ]
    )
    assert result.ok, result.divergence


def test_restart_round_trips_as_data() -> None:
    """A restart step survives the case-file encoding."""
    assert step_from_data(step_to_data(Restart(hard=False))) == Restart(hard=False)


def test_only_targets_owning_their_process_can_restart() -> None:
    """Embedded targets can restart; a remote URL cannot (the machine never draws the step then)."""
    assert can_restart(EmbeddedTarget(()))
    assert not can_restart(RemoteTarget("http://127.0.0.1:1", "pw"))


def test_the_model_clock_moves_past_the_restart():
    """The durability check after a restart judges STREAM TTLs at the time after the restart, not before it
    (a restart takes real time: a row near its TTL may expire meanwhile, and must not be expected)."""
    target = EmbeddedTarget(())
    target.start()
    pool = ActorPool.for_target(target)
    now = [1_000_000.0]
    restart = target.restart

    def slow_restart(hard: bool = False) -> None:
        restart(hard=hard)
        now[0] += 1000.0  # as if the restart took 1000 s

    target.restart = slow_restart  # type: ignore[method-assign]
    try:
        session = Runner(target, pool, clock=lambda: now[0]).session()
        try:
            session.run(PROGRAM[0])
            session.run(PROGRAM[1])
            session.run(Restart(hard=True))
            assert session.model.clock == 1_001_000.0
        finally:
            session.close()
    finally:
        pool.close()
        target.stop()
