"""The run driver: runs the state machine under Hypothesis and turns what it raised into a :class:`Failure`.

:func:`run_machine` is what the pytest plugin, the CLI, the tests and the benchmarks call: time-budgeted rounds
(``_run_for``), one Hypothesis run with its exception groups unpacked (``_run_once``), the garbage collector
tuned for the run (:func:`tuned_gc`), Hypothesis's local constants pinned (:func:`pinned_constants`), and the
step-level reduction of what Hypothesis found (:func:`reduce_failure`).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..errors import Divergence
from .known_bugs import KnownBugPolicy
from .machine import Failure, StepHook, machine_for

if TYPE_CHECKING:
    from hypothesis import settings as Settings

    from ..runner import Runner
    from .workloads import Workload

if sys.version_info < (3, 11):  # pragma: no cover - Hypothesis depends on the backport there
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "BUDGET_ROUND",
    "GC_THRESHOLDS",
    "SHRINK_MODES",
    "pinned_constants",
    "reduce_failure",
    "run_machine",
    "tuned_gc",
]


def run_machine(
    runner: Runner,
    workload: Workload,
    *,
    settings: Settings | None = None,
    hooks: tuple[StepHook, ...] = (),
    seed: int | None = None,
    budget_s: float | None = None,
    shrink: str = "both",
    known_bugs: KnownBugPolicy | None = None,
) -> Failure | None:
    """Run the state machine under ``settings`` (default: the loaded Hypothesis profile).

    ``shrink``: how a failure is minimised. ``"hypothesis"``: Hypothesis's shrinking only; ``"steps"``: no
    Hypothesis shrinking, the step-level reducer (:mod:`kalammodel.generation.reduce`) only, which is much faster against a
    server; ``"both"`` (default): Hypothesis first (simpler values), then the reducer (fewer steps, and a
    program proven to replay).

    ``seed`` fixes Hypothesis's random seed (benchmarks and detection tests run several seeds).
    ``budget_s``: a time budget instead of an example count (long fuzzing runs). Hypothesis cannot stop a run
    early without taking the stop for a failure, so the budget runs rounds of :data:`BUDGET_ROUND` examples
    (or the profile's count, if smaller), each with a new seed (``seed + i`` when ``seed`` is given), and starts
    no new round once the budget is spent; a failure ends the run as usual, shrunk in full.

    ``known_bugs`` (:mod:`kalammodel.generation.known_bugs`): in ``report`` mode a divergence that matches a
    known KalamDB bug is counted in the policy's ledger and ends its example without failing, and the run goes
    on; in ``fail`` mode it fails as any divergence does. With a policy every example's steps are observed
    (which bugs' triggers ran). Either way each failure returned names the known bug it matches
    (:attr:`Failure.known_bug`; without a policy, by the packaged registry).

    Returns None when every example agreed with the model (or met only known bugs, in ``report`` mode), else
    the :class:`Failure` of Hypothesis's final (minimal) example. Errors that are not divergences (tool bugs, a
    dead target) propagate.
    """
    if shrink not in SHRINK_MODES:
        raise ValueError(f"shrink must be one of {', '.join(SHRINK_MODES)} (got {shrink!r})")
    if shrink == "steps":
        from hypothesis import Phase
        from hypothesis import settings as Settings

        base = settings if settings is not None else Settings()
        settings = Settings(base, phases=[p for p in base.phases if p is not Phase.shrink])
    if budget_s is not None and not budget_s > 0:
        raise ValueError(f"budget_s must be positive (got {budget_s!r})")
    with tuned_gc():
        if budget_s is not None:
            failure = _run_for(
                runner,
                workload,
                settings=settings,
                hooks=hooks,
                seed=seed,
                budget_s=budget_s,
                known_bugs=known_bugs,
            )
        else:
            failure = _run_once(
                runner, workload, settings=settings, hooks=hooks, seed=seed, known_bugs=known_bugs
            )
    if failure is not None and shrink != "hypothesis":
        others = [reduce_failure(runner, f) for f in failure.others]
        failure = reduce_failure(runner, failure)
        failure.others = others
    if failure is not None:
        _name_known_bugs(failure, known_bugs)
    return failure


def _name_known_bugs(failure: Failure, policy: KnownBugPolicy | None) -> None:
    """Set :attr:`Failure.known_bug` of ``failure`` and its others; with a policy, count each match (a known
    bug that failed the run was seen, not "possibly fixed")."""
    from ..verdicts import match

    for found in [failure, *failure.others]:
        if policy is None:
            found.known_bug = match(found.divergence, found.steps)
            continue
        found.known_bug = policy.known_bug(found.divergence, found.steps)
        if found.known_bug is not None:
            policy.ledger.record(found.divergence, found.steps)


#: garbage-collector thresholds while the machine runs (CPython's default is (700, 10, 10))
GC_THRESHOLDS = (50_000, 20, 100)


@contextmanager
def pinned_constants() -> Iterator[None]:
    """Hypothesis draws without the constants it collects from loaded local modules, while inside.

    Hypothesis (6.x) sometimes draws an integer, float or string from the literals of every *local* module that
    is loaded (``hypothesis.internal.conjecture.providers._get_local_constants``), so the same seed generates
    different programs depending on which test modules pytest imported. A seed must mean the same
    program in one test file, in the whole suite and in a benchmark (detection hunts, derandomized tests):
    inside this block the local pool is empty (Hypothesis's global constants still apply). Internal API: if it moves, the
    run is unpinned rather than failing.
    """
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - a future Hypothesis
        yield
        return
    original = getattr(providers, "_get_local_constants", None)
    if original is None or not hasattr(providers, "CONSTANTS_CACHE"):  # pragma: no cover
        yield
        return
    empty = providers.Constants()
    providers.CONSTANTS_CACHE.cache.clear()
    providers._get_local_constants = lambda: empty
    try:
        yield
    finally:
        providers._get_local_constants = original
        providers.CONSTANTS_CACHE.cache.clear()


@contextmanager
def tuned_gc() -> Iterator[None]:
    """Collect garbage less often while the machine runs; restore the collector's settings afterwards.

    Hypothesis and the model allocate many short-lived objects per step, so with CPython's defaults a young
    collection runs every few hundred allocations and older ones keep re-scanning the long-lived heap (the
    imported modules, the model, Hypothesis's example tree): a third of the tester's time went there
    (benchmarks/stateful_throughput.py: 41% -> 52% of the bare loop's request rate). Objects alive on entry
    are frozen (never scanned again until exit); cyclic garbage is still collected, only in larger batches.
    """
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


#: the values of run_machine's ``shrink`` (and of --kalammodel-shrink)
SHRINK_MODES = ("both", "hypothesis", "steps")


def reduce_failure(runner: Runner, failure: Failure) -> Failure:
    """``failure`` reduced step by step with :func:`kalammodel.generation.reduce.reduce_steps`, replaying on ``runner``.

    A failure that does not replay (flaky) is returned as it was, with the attempt recorded in ``reduction``.
    """
    from .reduce import reduce_steps

    reduction = reduce_steps(runner.run_steps, failure.steps, failure.divergence)
    return Failure(reduction.steps, reduction.divergence, list(failure.others), reduction)


#: examples per round of a time-budgeted run (:func:`run_machine` with ``budget_s``)
BUDGET_ROUND = 50


def _run_for(
    runner: Runner,
    workload: Workload,
    *,
    settings: Settings | None,
    hooks: tuple[StepHook, ...],
    seed: int | None,
    budget_s: float,
    known_bugs: KnownBugPolicy | None = None,
) -> Failure | None:
    import random

    from hypothesis import settings as Settings

    base = settings if settings is not None else Settings()
    rounds = Settings(base, max_examples=min(BUDGET_ROUND, base.max_examples), derandomize=False)
    first = random.SystemRandom().randrange(2**32) if seed is None else seed
    stop_at = time.monotonic() + budget_s
    i = 0
    while time.monotonic() < stop_at:
        failure = _run_once(
            runner, workload, settings=rounds, hooks=hooks, seed=first + i, known_bugs=known_bugs
        )
        if failure is not None:
            return failure
        i += 1
    return None


def _leaf_exceptions(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaf_exceptions(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _run_once(
    runner: Runner,
    workload: Workload,
    *,
    settings: Settings | None,
    hooks: tuple[StepHook, ...],
    seed: int | None,
    known_bugs: KnownBugPolicy | None = None,
) -> Failure | None:
    from hypothesis.errors import Flaky
    from hypothesis.stateful import run_state_machine_as_test

    machine = machine_for(runner, workload, hooks=hooks, known_bugs=known_bugs)
    try:
        if seed is None:
            run_state_machine_as_test(machine, settings=settings)
        else:
            from hypothesis import seed as use_seed
            from hypothesis.stateful import get_state_machine_test

            use_seed(seed)(get_state_machine_test(machine, settings=settings))()
    except Divergence:
        failure = machine.last_failure
        if failure is None:  # pragma: no cover - the machine always records before raising
            raise
        return failure
    except BaseExceptionGroup as group:  # Hypothesis found several distinct failures
        # ... some perhaps wrapped in a FlakyFailure (failed once, then passed or failed otherwise on replay):
        # still divergences, to be saved (the corpus classifies them flaky by replaying).
        leaves = _leaf_exceptions(group)
        divergences = [e for e in leaves if isinstance(e, Divergence)]
        if not divergences or len(divergences) != len(leaves):
            raise
        found = [f for d in divergences for f in reversed(machine.failures) if f.divergence is d][
            : len(divergences)
        ]
        if not found:  # pragma: no cover - every raised divergence was recorded
            raise
        first = found[0]
        first.others = found[1:]
        return first
    except Flaky as exc:
        failure = machine.last_failure
        if failure is None:
            from ..errors import InternalError

            raise InternalError(
                "Hypothesis saw the state machine draw differently for the same choices, with no divergence "
                "from the model: some operation's applicability or draw depends on server timing or the wall "
                "clock. "
                f"This is a kalammodel bug; please file it with this traceback. ({type(exc).__name__})"
            ) from exc
        return failure
    return None
