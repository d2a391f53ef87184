"""Registered checks build their divergence with the invariant they declare, placed at the session's step."""

from __future__ import annotations

from pathlib import Path

import pytest

from kalammodel.checks import CHECKS
from kalammodel.checks.registry import Check, Finding
from kalammodel.checks.routing import ColdListing, storage_routing
from kalammodel.errors import Divergence, Invariant
from kalammodel.steps import Flush


class _Site:
    step_index = 3
    ns = "km_site"

    def current_step(self) -> Flush:
        return Flush("dba", "t0")


def test_the_shipped_checks_declare_their_invariants():
    """cold_files, storage_routing and durability are registered with their own invariant."""
    assert CHECKS["cold_files"].invariant is Invariant.COLD_FILES
    assert CHECKS["storage_routing"].invariant is Invariant.STORAGE_ROUTING
    assert CHECKS["durability"].invariant is Invariant.DURABILITY


def test_a_finding_becomes_a_divergence_with_the_declared_invariant_step_and_namespace():
    """The routing check's finding is raised as storage_routing at the site's step, in its namespace."""
    listing = ColdListing(Path("/s/km_site"), ("/s/km_site/t0",), ())
    storage_routing(_Site(), listing)  # nothing stray: nothing raised
    from kalammodel.checks.cold import Problem

    stray = ColdListing(Path("/s/km_site"), ("/s/km_site/t0",), (Problem("stray_file", "/s/km_site/x", "m"),))
    with pytest.raises(Divergence) as raised:
        storage_routing(_Site(), stray)
    div = raised.value
    assert div.invariant is Invariant.STORAGE_ROUTING
    assert (div.step_index, div.namespace, div.request) == (3, "km_site", "list /s/km_site")
    assert div.step == Flush("dba", "t0")


def test_a_finding_based_on_a_divergence_keeps_its_place_under_the_new_invariant():
    """A restated divergence keeps step, request and values; only invariant, message and namespace change."""
    inner = Divergence("outcome", "lost a row", step_index=1, step="s", request="SELECT 1", actual=[1])
    restate = Check(
        "restate", Invariant.DURABILITY, lambda: Finding("after a restart: lost a row", based_on=inner)
    )
    with pytest.raises(Divergence) as raised:
        restate(_Site())
    div = raised.value
    assert div.invariant is Invariant.DURABILITY and div.message == "after a restart: lost a row"
    assert (div.step_index, div.step, div.request, div.actual, div.namespace) == (
        1,
        "s",
        "SELECT 1",
        [1],
        "km_site",
    )
    assert raised.value.__cause__ is inner
