"""The public facades list exactly their public names."""

from __future__ import annotations

import kalammodel.model as model
import kalammodel.steps as steps


def test_model_all_is_sorted_and_complete():
    """kalammodel.model.__all__ is sorted and every name in it exists."""
    assert model.__all__ == sorted(model.__all__)
    for name in model.__all__:
        assert hasattr(model, name), name


def test_steps_all_names_every_step_type():
    """kalammodel.steps.__all__ is sorted and exports every registered step class."""
    assert steps.__all__ == sorted(steps.__all__)
    for cls in steps.STEP_TYPES.values():
        assert cls.__name__ in steps.__all__


def test_divergence_is_immutable_and_evolves() -> None:
    """A Divergence refuses changes to its fields; evolve() builds a new one, and pickling keeps every field."""
    import pickle

    import pytest

    from kalammodel.errors import Divergence, Invariant, UsageError

    div = Divergence("outcome", "rows differ", step_index=3, namespace="km_x")
    assert div.invariant is Invariant.OUTCOME and div.namespace == "km_x"
    with pytest.raises(AttributeError, match="read-only"):
        div.invariant = Invariant.ISOLATION  # type: ignore[misc]
    moved = div.evolve(invariant="isolation", message="another user's row")
    assert (moved.invariant, moved.message, moved.step_index) == (Invariant.ISOLATION, "another user's row", 3)
    assert div.invariant is Invariant.OUTCOME and "[isolation]" in str(moved)
    again = pickle.loads(pickle.dumps(moved))
    assert (again.invariant, again.step_index, again.namespace) == (Invariant.ISOLATION, 3, "km_x")
    with pytest.raises(UsageError, match="unknown invariant 'isolaton'"):
        Divergence("isolaton", "typo")
