"""Hunts draw the same program for a seed whatever local modules are loaded (``kalammodel.generation.pinned_constants``)."""

from __future__ import annotations

import importlib.util
import sys

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from kalammodel.generation import pinned_constants

#: in the module loaded mid-test only: a pinned draw must never produce it
PLANTED = 987_654_321_123


def _draws() -> list[int]:
    drawn: list[int] = []

    @seed(12345)
    @settings(max_examples=150, database=None, derandomize=False, suppress_health_check=list(HealthCheck))
    @given(st.integers())
    def collect(value: int) -> None:
        drawn.append(value)

    collect()
    return drawn


def test_pinned_draws_ignore_constants_of_newly_loaded_local_modules(tmp_path, monkeypatch):
    with pinned_constants():
        before = _draws()
    module = tmp_path / "km_planted_constants.py"
    module.write_text(f"VALUES = [{PLANTED}, {PLANTED + 1}, -{PLANTED}]\n")
    spec = importlib.util.spec_from_file_location("km_planted_constants", module)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "km_planted_constants", loaded)
    spec.loader.exec_module(loaded)
    with pinned_constants():
        after = _draws()
    assert before == after
    assert not {PLANTED, PLANTED + 1, -PLANTED} & set(after)
