"""Generation: how a program is drawn and run under Hypothesis (docs/ARCHITECTURE.md, "Generation").

- :mod:`.operations`: one record per operation (name, draw function, weight, precondition, flags);
- :mod:`.machine`: the Hypothesis state machine (one rule: draw an operation, draw its step, run it);
- :mod:`.driver`: :func:`run_machine` (budget rounds, exception groups, gc, pinned constants, reduction);
- :mod:`.strategies`: values, schemas, predicates, rows; :mod:`.workloads`: ``models/*.toml``;
- :mod:`.reduce`: the step-level reducer; :mod:`.known_bugs`: how a run treats known KalamDB bugs.
"""

from __future__ import annotations

from .driver import (
    BUDGET_ROUND,
    GC_THRESHOLDS,
    SHRINK_MODES,
    pinned_constants,
    reduce_failure,
    run_machine,
    tuned_gc,
)
from .known_bugs import KNOWN_BUG_MODES, KnownBugPolicy, known_bug_line, matches_known_bug
from .machine import Failure, KalamStateMachine, StepHook, machine_for
from .operations import OPERATIONS, REGISTRY, Operation
from .reduce import Reduction, reduce_steps, simplifications, table_slice
from .strategies import favour_absent
from .workloads import (
    DEFAULTS,
    IntRange,
    Weights,
    Workload,
    list_workloads,
    load_workload,
    models_dir,
    resolve_workload_path,
    workload_from_dict,
)

__all__ = [
    "BUDGET_ROUND",
    "DEFAULTS",
    "GC_THRESHOLDS",
    "KNOWN_BUG_MODES",
    "OPERATIONS",
    "REGISTRY",
    "SHRINK_MODES",
    "Failure",
    "IntRange",
    "KalamStateMachine",
    "KnownBugPolicy",
    "Operation",
    "Reduction",
    "StepHook",
    "Weights",
    "Workload",
    "favour_absent",
    "known_bug_line",
    "list_workloads",
    "load_workload",
    "machine_for",
    "matches_known_bug",
    "models_dir",
    "pinned_constants",
    "reduce_failure",
    "reduce_steps",
    "resolve_workload_path",
    "run_machine",
    "simplifications",
    "table_slice",
    "tuned_gc",
    "workload_from_dict",
]
