"""Parallel programs: a sequential prefix, K clients at the same time, a sequential suffix (issue 15).

- :mod:`.program`: :class:`ParallelProgram` as data (``to_data`` / ``from_data``), the steps a section allows;
- :mod:`.spec`: the reference model as a linearizability spec (:class:`ModelSpec`, copy-on-write states);
- :mod:`.run`: :func:`run_program` / :func:`run_section` (threads, own HTTP clients, the history, the verdict);
- :mod:`.generate`: the Hypothesis strategy of parallel programs and :func:`run_parallel` (imported on use:
  it needs Hypothesis).

See docs/concurrency.md, "Parallel programs".
"""

from __future__ import annotations

from .program import MAX_CLIENTS, MIN_CLIENTS, SECTION_KINDS, ParallelProgram, section_step_problem
from .run import ParallelStats, ProgramCaseRunner, SectionReport, program_result, run_program, run_section
from .spec import ModelSpec, scope_of

__all__ = [
    "MAX_CLIENTS",
    "MIN_CLIENTS",
    "SECTION_KINDS",
    "ModelSpec",
    "ParallelProgram",
    "ParallelStats",
    "ProgramCaseRunner",
    "SectionReport",
    "program_result",
    "run_program",
    "run_section",
    "scope_of",
    "section_step_problem",
]
