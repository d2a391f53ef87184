"""From a planted bug to a bug report, end to end (issue 5's round trip).

With the first planted fault on (a row deleted after it was flushed reappears after the next flush), the
stateful test fails; the saved case replays to the same failure; its SQL export, run against that server,
reproduces the failure; and with the fault off ``kalammodel replay`` exits 0. A fault that fires at random
(seeded, so the test is deterministic) is classified flaky with a passing and a failing transcript.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, settings

from kalammodel.corpus import (
    RunContext,
    export_sql,
    format_failure,
    load_case,
    replay_case,
    run_sql_script,
    save_case,
)
from kalammodel.generation import load_workload, pinned_constants, run_machine
from kalammodel.model import Cmp, Column, ColumnType, TableSpec
from kalammodel.runner import Runner
from kalammodel.steps import CreateTable, Insert, Select
from kalammodel.targets import ActorPool, EmbeddedTarget

FAULT = "delete_resurrects_after_flush"
#: The work-queue scenario (models/jobs.toml): jobs are inserted, claimed, deleted when done, and tables are
#: flushed while that goes on — where a resurrected deleted row hurts a KalamDB user.
WORKLOAD = "jobs"
#: The invariants a resurrected row may be attributed to: it is a deleted row showing again (soft_delete),
#: seen through a read that merges hot and cold tiers (hot_cold_consistency).
RESURRECTION_INVARIANTS = {"soft_delete", "hot_cold_consistency"}


class _Server:
    def __init__(self, faults: tuple[str, ...] = (), env: dict[str, str] | None = None):
        self.target = EmbeddedTarget(faults, env=env)
        self.target.start()
        self.pool = ActorPool.for_target(self.target)
        self.runner = Runner(self.target, self.pool)

    def close(self) -> None:
        self.pool.close()
        self.target.stop()


@pytest.fixture(scope="module")
def faulty() -> Iterator[_Server]:
    server = _Server((FAULT,))
    yield server
    server.close()


@pytest.fixture(scope="module")
def clean() -> Iterator[_Server]:
    server = _Server()
    yield server
    server.close()


def _without_slow_steps(workload: Any) -> Any:
    """The workload without pauses and restarts: this test is about the path from a failure to a
    report, and each shrinking replay of a pause costs a STREAM TTL of real time."""
    ops = tuple((name, 0.0 if name in ("pause", "restart") else w) for name, w in workload.operations.items)
    return attrs.evolve(workload, operations=attrs.evolve(workload.operations, items=ops))


@pytest.fixture(scope="module")
def found(faulty: _Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    budget = settings(
        max_examples=300,
        stateful_step_count=30,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    # shrink="steps": the step reducer minimises the failure in seconds; Hypothesis's shrinker took ~5 minutes
    # here and is not what this round trip is about (test_detection's flush_keeps_hot runs the default "both").
    # pinned: the same program whether this file runs alone or in the whole suite (other test modules add
    # Hypothesis local constants); the one found here is checked to replay deterministically below.
    with pinned_constants():
        failure = run_machine(
            faulty.runner, _without_slow_steps(load_workload(WORKLOAD)), settings=budget, shrink="steps"
        )
    assert failure is not None, f"the stateful test did not find {FAULT} within {budget.max_examples} examples"
    directory = tmp_path_factory.mktemp("cases")
    context = RunContext.collect(faulty.target, faulty.pool, failure.divergence.namespace)
    saved = save_case(
        directory, failure.steps, failure.divergence, context=context, workload=WORKLOAD,
        runner=faulty.runner, replays=3,
    )  # fmt: skip
    return failure, saved


def test_the_stateful_test_finds_the_resurrected_row(found: tuple[Any, Any]) -> None:
    """The stateful test fails on the resurrection fault, attributed to soft deletes or hot+cold consistency."""
    failure, saved = found
    assert failure.divergence.invariant in RESURRECTION_INVARIANTS
    kinds = [s.kind for s in failure.steps]
    # Two shapes: a deleted flushed row shows again after a second flush, or (shorter) a delete's tombstone
    # vanishes at the flush, so that reading deleted rows misses it. Both need a delete and a flush.
    assert "delete" in kinds and kinds.count("flush") + kinds.count("start_flush") >= 1, kinds
    assert saved.case.classification == "deterministic"
    assert saved.path.name.startswith(f"{failure.divergence.invariant}-")


def test_the_failure_output_is_a_program_with_a_replay_command(found: tuple[Any, Any]) -> None:
    """pytest's failure text lists every step, the expected and actual outcome, and the replay command."""
    failure, saved = found
    text = format_failure(failure.steps, failure.divergence, saved.case.replay_command())
    for step in failure.steps:
        assert step.describe() in text
    assert "kalammodel replay" in text and saved.path.name in text
    assert "expected" in text.lower() and "actual" in text.lower()


def test_the_saved_file_replays_to_the_same_failure(found: tuple[Any, Any], faulty: _Server) -> None:
    """Loading the case file and replaying it on the faulty server fails again with the same invariant."""
    _, saved = found
    case = load_case(saved.path)
    outcome = replay_case(case, faulty.runner)
    assert outcome.status == "failing"
    assert outcome.same_invariant


def test_the_sql_export_reproduces_the_failure_on_that_server(
    found: tuple[Any, Any], faulty: _Server, clean: _Server
) -> None:
    """The exported SQL script shows the deleted row at the diverging statement on the faulty server only."""
    _, saved = found
    script = export_sql(load_case(saved.path))
    bad = run_sql_script(script, faulty.target.base_url, faulty.target.root_password)
    good = run_sql_script(script, clean.target.base_url, clean.target.root_password)
    bad_marked = [s for s in bad if s.diverged]
    good_marked = [s for s in good if s.diverged]
    assert len(bad_marked) == 1 and len(good_marked) == 1, "the export marks exactly one diverging statement"
    assert bad_marked[0].sql == good_marked[0].sql
    assert (bad_marked[0].ok, sorted(map(repr, bad_marked[0].rows))) != (
        good_marked[0].ok,
        sorted(map(repr, good_marked[0].rows)),
    ), "the diverging statement answers the same with and without the fault: the export does not reproduce it"


def test_replay_exits_0_once_the_fault_is_off(found: tuple[Any, Any], clean: _Server) -> None:
    """``kalammodel replay`` against a server without the fault reports the case fixed and exits 0."""
    _, saved = found
    proc = subprocess.run(
        [sys.executable, "-m", "kalammodel.cli", "replay", str(saved.path),
         "--kalamdb-url", clean.target.base_url, "--root-password", clean.target.root_password],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert saved.path.exists(), "replay removes fixed cases only with --prune"


@pytest.fixture(scope="module")
def flaky_server() -> Iterator[_Server]:
    server = _Server(("random_flaky_select",), env={"KALAMMODEL_FAULT_SEED": "7"})
    yield server
    server.close()


def test_a_fault_that_fires_at_random_is_classified_flaky(flaky_server: _Server, tmp_path: Path) -> None:
    """Replays of a case whose SELECT drops its last row at random sometimes pass: classified flaky."""
    cols = (Column("id", ColumnType.BIGINT, nullable=False, primary_key=True), Column("v", ColumnType.TEXT))
    steps = [
        CreateTable("dba", TableSpec(name="t0", kind="USER", columns=cols)),
        Insert("user1", "t0", ("id", "v"), (ColumnType.BIGINT, ColumnType.TEXT), ((1, "a"), (2, "b"), (3, "c"))),
        Select("user1", "t0", None, Cmp("id", ColumnType.BIGINT, ">=", 1), (("id", False),)),
    ]
    # Few SELECTs per run (no read-back), so that some replays meet no coin flip that drops a row.
    runner = Runner(flaky_server.target, flaky_server.pool, read_back=False)
    runs = [runner.run_steps(steps) for _ in range(4)]
    failing = [r for r in runs if not r.ok]
    assert failing, "four runs never met the coin (seeded): the fault did not fire"
    context = RunContext.collect(flaky_server.target, flaky_server.pool, failing[0].divergence.namespace)
    saved = save_case(tmp_path, steps, failing[0].divergence, context=context, workload="default",
                      runner=runner, replays=16)  # fmt: skip
    case = load_case(saved.path)
    assert case.classification == "flaky"
    assert case.replays.passing and case.replays.failing
    assert 0 < case.replays.failed < case.replays.runs == 16


def test_exported_sql_runs_as_the_annotated_users(clean: _Server) -> None:
    """run_sql_script sends each statement as its '-- as <user>' annotation says (isolation stays visible)."""
    ns = "km_script_probe"
    script = "\n".join([
        "-- Acting users (create them first if they do not exist; choose the passwords):",
        "--   CREATE USER 'probe_u1' WITH PASSWORD '<password>' ROLE user;",
        f"DROP NAMESPACE IF EXISTS {ns};",
        f"CREATE NAMESPACE {ns};",
        f"CREATE USER TABLE {ns}.t (id BIGINT PRIMARY KEY, v TEXT);",
        "-- as probe_u1",
        f"INSERT INTO {ns}.t (id, v) VALUES (1, 'mine');",
        f"SELECT id, v FROM {ns}.t ORDER BY id;",
        "-- as probe_u1",
        f"SELECT id, v FROM {ns}.t ORDER BY id;",
        f"DROP NAMESPACE IF EXISTS {ns};",
    ])  # fmt: skip
    results = run_sql_script(script, clean.target.base_url, clean.target.root_password)
    root_read, user_read = results[4], results[5]
    assert root_read.actor == "root" and root_read.rows == ()
    assert user_read.actor == "probe_u1" and user_read.rows == ((1, "mine"),)

