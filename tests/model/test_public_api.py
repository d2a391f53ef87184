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
