"""How the state machine draws programs (kalammodel/generation/): the workload's weights are the operation mix,
every rule call runs a step, and the swarm leaves operations out of some examples.

How often the aimed operations (cold and subscribed rows, snapshot-sized batches, re-added names) find what
they aim at is measured by the planted faults they catch: tests/detection and benchmarks/detection.py."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import attrs
from hypothesis import HealthCheck, settings

from kalammodel.generation import Weights, load_workload, run_machine
from kalammodel.runner import Runner

ROOT = Path(__file__).resolve().parents[1]


def _settings(examples: int, steps: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )


def _workload(**operations: float) -> Any:
    default = load_workload("default", search_dirs=(ROOT / "models",))
    return attrs.evolve(default, operations=Weights.of(operations), table_kinds=Weights.of({"user": 1}))


class _CountingRunner(Runner):
    """A Runner that records the steps of every session (example) it opens."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.examples: list[list[Any]] = []

    def session(self, namespace: str | None = None) -> Any:
        session = super().session(namespace)
        self.examples.append(session.steps)
        return session


def _run(target: Any, pool: Any, workload: Any, examples: int, steps: int, **kw: Any) -> _CountingRunner:
    runner = _CountingRunner(target, pool, **kw)
    assert run_machine(runner, workload, settings=_settings(examples, steps), shrink="hypothesis") is None
    return runner


def test_weights_are_the_mix_and_every_rule_call_runs_a_step(kalamdb_target, actor_pool):
    """insert 12 : select 1 : flush 1 — the mix follows the weights, and (almost) every rule call is a step.

    Hypothesis picks among rules uniformly; with one rule per operation a select would come as often as an
    insert. The few calls without a step are updates with nothing to set and the like.
    """
    runner = _run(kalamdb_target, actor_pool, _workload(insert=12, select=1, flush=1), 8, 25)
    kinds = collections.Counter(s.kind for ex in runner.examples for s in ex)
    assert kinds["insert"] >= 4 * kinds["select"], kinds
    assert kinds["insert"] >= 4 * (kinds["flush"] + kinds["start_flush"]), kinds
    # 25 rule calls + the first table per example
    assert sum(len(ex) for ex in runner.examples) >= 0.9 * 26 * len(runner.examples), kinds


def test_swarm_leaves_operations_out_of_some_examples(kalamdb_target, actor_pool):
    """With select and count weighed equally, some example has one of them and not the other."""
    runner = _run(kalamdb_target, actor_pool, _workload(insert=2, select=3, count=3), 15, 20)
    mixes = [{s.kind for s in ex} for ex in runner.examples]
    assert any(("select" in m) != ("count" in m) for m in mixes), mixes



def test_kinds_and_levels_the_example_lacks_weigh_four_times_more():
    """The weights the next table's kind (and a SHARED table's access level) are drawn with."""
    from kalammodel.generation import favour_absent

    kinds = [("user", 3.0), ("shared", 1.0), ("stream", 1.0)]
    assert favour_absent(kinds, set()) == [("user", 12.0), ("shared", 4.0), ("stream", 4.0)]  # same odds
    assert favour_absent(kinds, {"USER"}) == [("user", 3.0), ("shared", 4.0), ("stream", 4.0)]
    assert favour_absent([("public", 1), ("private", 1)], {"PUBLIC", "PRIVATE"}) == [("public", 1), ("private", 1)]
