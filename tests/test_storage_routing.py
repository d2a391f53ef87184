"""Storage routing: after a flush, every cold file of the namespace lies in one of its tables' directories."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from kalammodel.errors import Divergence
from kalammodel.model import Column, ColumnType, TableSpec
from kalammodel.runner import Runner
from kalammodel.steps import CreateTable, Flush, Insert
from kalammodel.targets import ActorPool, EmbeddedTarget

COLS = (Column("id", ColumnType.BIGINT, nullable=False, primary_key=True), Column("v", ColumnType.TEXT))
TYPES = (ColumnType.BIGINT, ColumnType.TEXT)


@pytest.fixture(scope="module")
def runner() -> Iterator[Runner]:
    target = EmbeddedTarget(())
    target.start()
    pool = ActorPool.for_target(target)
    yield Runner(target, pool)
    pool.close()
    target.stop()


def _flushed_session(runner: Runner):
    session = runner.session()
    session.run(CreateTable("dba", TableSpec(name="t0", kind="SHARED", columns=COLS)))
    session.run(Insert("dba", "t0", ("id", "v"), TYPES, ((1, "a"),)))
    session.run(Flush("dba", "t0"))
    return session


def test_files_in_their_tables_directory_pass(runner: Runner) -> None:
    """A flush that writes under its own table's directory passes the routing check."""
    session = _flushed_session(runner)
    try:
        session.run(Flush("dba", "t0"))
    finally:
        session.close()


def test_a_cold_file_outside_every_table_directory_is_a_routing_failure(runner: Runner) -> None:
    """A batch file under the namespace but in no table's directory is reported as storage_routing."""
    session = _flushed_session(runner)
    try:
        base = Path(runner.target.data_dir) / "storage" / session.ns
        batch = next((base / "t0").glob("batch-*.parquet"))
        stray = base / "not_a_table"
        stray.mkdir()
        shutil.copy(batch, stray / batch.name)
        session.run(Insert("dba", "t0", ("id", "v"), TYPES, ((2, "b"),)))
        with pytest.raises(Divergence) as info:
            session.run(Flush("dba", "t0"))
            session.settle()  # the flush's checks were sent ahead (the disk was read as the flush ended)
        assert info.value.invariant == "storage_routing"
        assert info.value.step_index == 4  # the second Flush
        assert "not_a_table" in info.value.message
    finally:
        session.close()
