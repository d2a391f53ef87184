"""How run_machine reports what Hypothesis raised, and the collector settings it runs under (no server needed)."""

from __future__ import annotations

import sys

import pytest
from hypothesis.errors import FlakyFailure

from kalammodel.errors import Divergence
from kalammodel.generation import driver as M

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup


def _raising(group: BaseException, recorded: list[Divergence]):
    def run(machine_cls, settings=None):
        machine_cls.failures.extend(M.Failure([], d) for d in recorded)
        raise group

    return run


def test_a_flaky_failure_beside_a_divergence_is_still_reported(monkeypatch):
    """Against a real KalamDB Hypothesis found two failures, one of them flaky on replay; both are divergences
    and must come back as failures (to be shrunk and saved), not as a raw exception group."""
    live = Divergence("live_query", "snapshot misses a row")
    schema = Divergence("schema_evolution", "parquet batches do not concatenate")
    group = BaseExceptionGroup("2 distinct failures", [live, FlakyFailure("flaky", [schema])])
    monkeypatch.setattr("hypothesis.stateful.run_state_machine_as_test", _raising(group, [live, schema]))
    failure = M._run_once(object(), object(), settings=None, hooks=(), seed=None)
    assert failure is not None
    assert failure.divergence is live
    assert [f.divergence for f in failure.others] == [schema]


def test_a_group_with_a_tool_error_is_raised(monkeypatch):
    """A kalammodel or network error among the failures is not a finding: it propagates."""
    live = Divergence("live_query", "snapshot misses a row")
    group = BaseExceptionGroup("2 distinct failures", [live, FlakyFailure("flaky", [KeyError("bug")])])
    monkeypatch.setattr("hypothesis.stateful.run_state_machine_as_test", _raising(group, [live]))
    with pytest.raises(BaseExceptionGroup):
        M._run_once(object(), object(), settings=None, hooks=(), seed=None)


def test_tuned_gc_restores_the_collector_even_on_failure():
    import gc

    before = gc.get_threshold()
    with pytest.raises(RuntimeError), M.tuned_gc():
        assert gc.get_threshold() == M.GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
        raise RuntimeError("a step failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
