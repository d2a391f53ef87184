"""The restart step: kill -9 the server mid-program, start it again, and nothing acknowledged is lost."""

from __future__ import annotations

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


def test_restart_round_trips_as_data() -> None:
    """A restart step survives the case-file encoding."""
    assert step_from_data(step_to_data(Restart(hard=False))) == Restart(hard=False)


def test_only_targets_owning_their_process_can_restart() -> None:
    """Embedded targets can restart; a remote URL cannot (the machine never draws the step then)."""
    assert can_restart(EmbeddedTarget(()))
    assert not can_restart(RemoteTarget("http://127.0.0.1:1", "pw"))


def test_stream_rows_that_expire_during_a_restart_are_not_missed(clean: Runner, monkeypatch) -> None:
    """The durability check after a restart judges STREAM rows at the time after the restart: rows whose TTL ran
    out while the server was down expired, they were not lost (a false alarm of the fuzz: TTL 2 s, SIGKILL)."""
    import time

    target = clean.target
    real = target.restart

    def slow_restart(hard: bool = False) -> None:
        real(hard=hard)
        time.sleep(5.0)  # the restart outlasts TTL + slack: every row written before it has expired

    monkeypatch.setattr(target, "restart", slow_restart)
    spec = TableSpec(name="s0", kind="STREAM", columns=(Column("c0", ColumnType.BIGINT),), ttl_seconds=3)
    steps = [
        CreateTable("dba", spec),
        Insert("dba", "s0", ("c0",), (ColumnType.BIGINT,), ((1,), (2,))),
        Restart(hard=True),
    ]
    result = clean.run_steps(steps)
    assert result.ok, result.divergence or result.error
