"""Replaying saved cases without Hypothesis: ``kalammodel replay`` and ``tests/test_replay.py``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import attrs

from ..verdicts import KnownBug, match
from ._runs import CaseRunner, run_once
from .format import Case, CaseFileError, DivergenceRecord
from .store import iter_cases

#: A case classified flaky counts as fixed only after this many passing replays in a row.
FLAKY_MIN_RUNS = 5


@attrs.frozen
class ReplayOutcome:
    """The result of replaying one case file.

    ``status``: ``fixed`` (the steps now pass), ``failing`` (a divergence again; ``same_invariant`` says whether
    it is the saved one; ``known_bug`` names the known KalamDB bug the divergence matches — still a bug, so still
    failing) or ``error`` (a tool or transport error, or a case file that cannot be read).
    """

    status: str
    message: str
    divergence: DivergenceRecord | None = None
    same_invariant: bool | None = None
    path: Path | None = None
    case: Case | None = attrs.field(default=None, eq=False, repr=False)
    pruned: bool = False
    runs: int = 0
    known_bug: KnownBug | None = None


def _failing_outcome(
    case: Case, record: DivergenceRecord, run: int, total: int, known_bug: KnownBug | None = None
) -> ReplayOutcome:
    same = record.invariant == case.divergence.invariant
    where = f" at step #{record.step_index}" if record.step_index is not None else ""
    again = f"run {run} of {total}: " if total > 1 else ""
    if same:
        message = f"{again}still failing: same invariant [{record.invariant}]{where}: {record.message}"
    else:
        message = (
            f"{again}failing with a different invariant [{record.invariant}] (saved: "
            f"[{case.divergence.invariant}]){where}: {record.message}"
        )
    if known_bug is not None:
        message += f" (matches {known_bug.label}: {known_bug.title} ({known_bug.link}))"
    return ReplayOutcome("failing", message, record, same, case.path, case, runs=run, known_bug=known_bug)


def replay_case(case: Case, runner: CaseRunner, runs: int = 1) -> ReplayOutcome:
    """Replay ``case`` on a fresh namespace: ``fixed`` when it passes (every run; a flaky case at least
    :data:`FLAKY_MIN_RUNS` times), ``failing`` when a divergence comes back, ``error`` on a tool or transport error."""
    if case.parallel is not None:
        from kalammodel.parallel import ProgramCaseRunner
        from kalammodel.runner import Runner

        # a Runner, or a front end's lazy runner that can give one (``as_runner()``: the CLI's)
        as_runner = getattr(runner, "as_runner", None)
        real = runner if isinstance(runner, Runner) else as_runner() if callable(as_runner) else None
        if not isinstance(real, Runner):
            message = "replay error: a parallel case replays on a kalammodel Runner (it runs threads on sessions)"
            return ReplayOutcome("error", message, None, None, case.path, case)
        runner = ProgramCaseRunner(real, case.parallel)
    total = max(1, runs)
    if case.classification == "flaky":
        total = max(total, FLAKY_MIN_RUNS)
    for run in range(1, total + 1):
        outcome = run_once(runner, case.steps)
        if outcome.status == "fail" and outcome.result is not None and outcome.result.divergence is not None:
            divergence = outcome.result.divergence
            record = DivergenceRecord.from_divergence(divergence)
            return _failing_outcome(case, record, run, total, match(divergence, case.steps))
        if outcome.status == "error":
            message = f"replay error: {outcome.error}"
            return ReplayOutcome("error", message, None, None, case.path, case, runs=run)
    passes = "passes" if total == 1 else f"passes {total} runs out of {total}"
    return ReplayOutcome("fixed", f"fixed: the case now {passes}", None, None, case.path, case, runs=total)


def replay_paths(
    paths: Iterable[str | os.PathLike[str]], runner: CaseRunner, prune: bool = False, runs: int = 1
) -> tuple[list[ReplayOutcome], int]:
    """Replay every case file under ``paths``. Returns the outcomes and the exit code: 0 all fixed, 1 some still
    failing, 2 some error (a replay error, a missing or unreadable case file; 2 wins over 1).

    With ``prune`` the files of fixed cases are removed; failing, erroring and unreadable files never are.
    """
    outcomes: list[ReplayOutcome] = []
    for path, loaded in iter_cases(paths):
        if isinstance(loaded, CaseFileError):
            outcomes.append(ReplayOutcome("error", loaded.problem, path=path))
            continue
        outcome = replay_case(loaded, runner, runs=runs)
        if prune and outcome.status == "fixed":
            try:
                path.unlink()
            except OSError as exc:
                outcome = attrs.evolve(outcome, message=f"{outcome.message} (could not prune: {exc})")
            else:
                outcome = attrs.evolve(outcome, pruned=True, message=f"{outcome.message}; pruned")
        outcomes.append(outcome)
    statuses = {o.status for o in outcomes}
    code = 2 if "error" in statuses else 1 if "failing" in statuses else 0
    return outcomes, code
