"""Checks that look at the server's state outside the wire protocol (cold files on disk).

``kalammodel.checks.cold``: read a table scope's ``manifest.json`` and ``batch-*.parquet`` and compare them with
the model (hot + cold consistency, uniqueness in cold files, storage routing).
"""

from __future__ import annotations

from kalammodel.checks.cold import (
    ColdFile,
    ColdScope,
    Problem,
    Segment,
    check_cold_scope,
    find_stray_files,
    read_cold_scope,
    scope_dir,
)

__all__ = [
    "ColdFile",
    "ColdScope",
    "Problem",
    "Segment",
    "check_cold_scope",
    "find_stray_files",
    "read_cold_scope",
    "scope_dir",
]
