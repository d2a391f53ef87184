"""The stateful test: random programs run against KalamDB (embedded by default) and the reference model.

Run against a real server with ``KALAMDB_URL=... KALAMDB_ROOT_PASSWORD=... pytest tests/test_stateful.py``;
pick the effort with ``--hypothesis-profile=ci|dev|fuzz`` and the workload with ``--kalammodel-workload``.
A failure prints the minimal program, the divergence and the replay command, and is saved in shrunk_cases/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kalammodel.checks.live import live_extension
from kalammodel.corpus import RunContext, format_failure, save_case
from kalammodel.generation import matches_known_bug, run_machine
from kalammodel.plugin import report_line, time_budget
from kalammodel.runner import Runner

CASES = Path(__file__).resolve().parent.parent / "shrunk_cases"


def test_kalamdb_agrees_with_the_model(
    kalamdb_target, actor_pool, kalammodel_workload, kalammodel_known_bugs, pytestconfig
):
    """Every random program gives the same outcomes on the server as in the reference model (with
    --kalammodel-known-bugs=report, the default against a real server: or meets a known KalamDB bug, counted in
    the terminal summary)."""
    clients = pytestconfig.getoption("kalammodel_parallel", 0) or 0
    if clients:
        _run_parallel_programs(kalamdb_target, actor_pool, clients, pytestconfig)
        return
    runner = Runner(kalamdb_target, actor_pool, extensions=[live_extension])
    try:
        failure = run_machine(
            runner,
            kalammodel_workload,
            budget_s=time_budget(pytestconfig),
            shrink=pytestconfig.getoption("kalammodel_shrink"),
            known_bugs=kalammodel_known_bugs,
        )
    finally:
        report_line(pytestconfig, f"test_stateful ran {runner.stats.summary()}")
    if failure is None:
        return
    cases_dir = Path(pytestconfig.getoption("kalammodel_cases_dir", None) or CASES)
    reports = []
    for found in [failure, *failure.others]:
        if found.reduction is not None:
            r = found.reduction
            how = "did not replay (flaky): kept as Hypothesis left it" if not r.reproduced else "reduced"
            report_line(
                pytestconfig, f"step reducer: {how}, {len(found.steps)} steps, {r.replays} replays in {r.seconds:.1f} s"
            )
        saved = save_case(
            cases_dir,
            found.steps,
            found.divergence,
            context=RunContext.collect(kalamdb_target, runner.pool, found.divergence.namespace),
            workload=kalammodel_workload.name,
            runner=runner,
        )
        report = format_failure(found.steps, found.divergence, f"kalammodel replay {saved.path}")
        if found.known_bug is not None:
            report += f"\n{matches_known_bug(found.known_bug)}"
        reports.append(report)
    title = f"{len(reports)} distinct failures\n\n" if len(reports) > 1 else ""
    pytest.fail(title + "\n\n".join(reports), pytrace=False)


def _run_parallel_programs(kalamdb_target, actor_pool, clients, pytestconfig):
    """``--kalammodel-parallel K``: parallel programs of 2..K clients, each section checked for linearizability."""
    from kalammodel.errors import UsageError
    from kalammodel.parallel import ParallelStats
    from kalammodel.parallel.generate import check_parallel, run_parallel

    try:
        check_parallel(clients)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from exc
    runner = Runner(kalamdb_target, actor_pool, extensions=[live_extension])
    stats = ParallelStats()
    try:
        failure = run_parallel(runner, clients, budget_s=time_budget(pytestconfig), stats=stats)
    finally:
        report_line(pytestconfig, f"test_stateful (parallel, up to {clients} clients) ran {stats.summary()}")
    if failure is None:
        return
    from kalammodel.parallel import ProgramCaseRunner

    saved = save_case(
        Path(pytestconfig.getoption("kalammodel_cases_dir", None) or CASES),
        failure.program.steps,
        failure.divergence,
        context=RunContext.collect(kalamdb_target, runner.pool, failure.divergence.namespace),
        workload=f"parallel-{clients}",
        runner=ProgramCaseRunner(runner, failure.program),
        parallel=failure.program,
    )
    race = " (replays disagree: a race)" if saved.case.classification == "flaky" else ""
    pytest.fail(
        f"Failing parallel program{race}, saved as {saved.case.classification}:\n{failure.program.describe()}\n\n"
        f"{failure.divergence}\n\nreplay: kalammodel replay {saved.path}",
        pytrace=False,
    )
