"""Checks beyond a statement's own answer, each registered with the invariant it guards (``registry.py``).

``cold``: a table scope's ``manifest.json`` and ``batch-*.parquet`` against the model (``cold_files``);
``routing``: every cold file of a namespace in one of its tables' directories (``storage_routing``);
``restart``: the restart extension and its ``durability`` verdict; ``live``: the live-query extension
(it runs the live steps, whose only output is what it checks).
"""

from __future__ import annotations

from kalammodel.checks.cold import (
    ColdFile,
    ColdScope,
    Problem,
    Segment,
    check_cold_scope,
    read_cold_scope,
    scope_dir,
)
from kalammodel.checks.live import LiveExtension, live_extension
from kalammodel.checks.registry import CHECKS, Check, Finding, check
from kalammodel.checks.restart import RestartExtension, can_restart
from kalammodel.checks.routing import find_stray_files

__all__ = [
    "CHECKS",
    "Check",
    "ColdFile",
    "ColdScope",
    "Finding",
    "LiveExtension",
    "Problem",
    "RestartExtension",
    "Segment",
    "can_restart",
    "check",
    "check_cold_scope",
    "find_stray_files",
    "live_extension",
    "read_cold_scope",
    "scope_dir",
]
