"""One replay of a step list, and the classification of a failure by replaying it before it is saved."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

import attrs

from ._data import jsonable
from .format import Replays

if TYPE_CHECKING:
    from kalammodel.runner import RunResult
    from kalammodel.steps import Step


class CaseRunner(Protocol):
    """What replays a step list on a fresh namespace (:class:`kalammodel.runner.Runner` is one)."""

    def run_steps(self, steps: Sequence[Step]) -> RunResult: ...


@attrs.frozen
class _Run:
    """One replay: ``status`` pass, fail or error; the runner's result (None when it raised); the error text."""

    status: Literal["pass", "fail", "error"]
    result: RunResult | None = None
    error: str | None = None

    @property
    def transcript(self) -> Any:  # Any: the transcript as JSON data
        return jsonable(self.result.transcript if self.result is not None else [])


def run_once(runner: CaseRunner, steps: Sequence[Step]) -> _Run:
    """Run the steps once; a runner that raises is an error outcome, never a crash of the caller."""
    try:
        result = runner.run_steps(list(steps))
    except Exception as exc:  # any runner bug becomes this replay's error, reported with its type
        return _Run("error", None, f"{type(exc).__name__}: {exc}")
    if result.divergence is not None:
        return _Run("fail", result)
    if result.error is not None:
        return _Run("error", result, str(result.error))
    if result.ok:
        return _Run("pass", result)
    return _Run("error", result, "the runner reported neither success, a divergence nor an error")


def classify(runner: CaseRunner, steps: Sequence[Step], invariant: str, runs: int) -> tuple[str, Replays]:
    """Replay ``runs`` times: ``deterministic`` (every run fails with ``invariant``), ``not_reproducible`` (none
    fails) or ``flaky`` (one passing and one failing transcript are kept)."""
    passing: list[Any] = []
    failing: list[Any] = []
    errors: list[str] = []
    failed = same = 0
    for _ in range(runs):
        run = run_once(runner, steps)
        if run.status == "fail":
            failed += 1
            divergence = run.result.divergence if run.result is not None else None
            if divergence is not None and str(divergence.invariant) == invariant:
                same += 1
            if not failing:
                failing.append(run.transcript)
        elif run.status == "pass":
            if not passing:
                passing.append(run.transcript)
        else:
            errors.append(run.error or "unknown error")
    if failed == runs and same == runs:
        classification = "deterministic"
    elif failed == 0:
        classification = "not_reproducible"
    else:
        classification = "flaky"
    keep = classification == "flaky"
    replays = Replays(
        runs=runs,
        failed=failed,
        passing=tuple(passing) if keep else (),
        failing=tuple(failing) if keep else (),
        errors=tuple(errors[:5]),
    )
    return classification, replays
