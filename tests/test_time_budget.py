"""Time-budgeted runs (``--kalammodel-minutes``, ``run_machine(budget_s=...)``) for long fuzzing sessions."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from kalammodel.generation import run_machine
from kalammodel.runner import Runner

ROOT = Path(__file__).resolve().parents[1]

TINY = settings(
    max_examples=2,
    stateful_step_count=3,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_budget_runs_rounds_until_spent(kalamdb_target, actor_pool, kalammodel_workload):
    """A budget longer than one round of examples runs further rounds with new seeds, then passes.

    derandomize=True in the profile would repeat the same examples every round; the budget turns it off.
    """
    runner = Runner(kalamdb_target, actor_pool)
    assert run_machine(runner, kalammodel_workload, settings=TINY, seed=7, budget_s=3.0) is None
    assert runner.stats.sessions > TINY.max_examples, runner.stats.summary()
    assert runner.stats.steps >= runner.stats.sessions


@pytest.mark.parametrize("budget", [0, -1.0])
def test_budget_must_be_positive(kalamdb_target, actor_pool, kalammodel_workload, budget):
    runner = Runner(kalamdb_target, actor_pool)
    with pytest.raises(ValueError, match="budget_s must be positive"):
        run_machine(runner, kalammodel_workload, settings=TINY, budget_s=budget)
    assert runner.stats.sessions == 0


def test_minutes_option_is_validated_and_stats_are_reported():
    """--kalammodel-minutes rejects a non-positive budget before any server starts."""
    bad = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_stateful.py"),
         "--kalammodel-minutes=0"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert bad.returncode == 4, bad.stdout + bad.stderr
    assert "--kalammodel-minutes must be a positive number of minutes (got 0.0)" in bad.stderr


def test_budgeted_stateful_run_reports_what_it_ran(tmp_path):
    """The stateful test under a budget shorter than one round runs exactly one round and says so."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_stateful.py"),
         "--hypothesis-profile=ci", "--kalammodel-minutes=0.001", f"--kalammodel-cases-dir={tmp_path}"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    ran = re.search(r"kalammodel: test_stateful ran (\d+) examples, (\d+) steps in", done.stdout)
    assert ran is not None, done.stdout
    # the ci profile's 15 examples (Hypothesis may add an invalid one or two), not a second round of 15
    assert 15 <= int(ran.group(1)) < 30 and int(ran.group(2)) > 0, done.stdout
