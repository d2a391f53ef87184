"""Verdicts on divergences: which known KalamDB bug a divergence is (docs/known-bugs.md).

Layer: imports ``kalammodel.errors``, ``kalammodel.model`` and ``kalammodel.steps`` only.
"""

from __future__ import annotations

from ._triggers import TRIGGERS, Focus, Program, Trigger
from .known_bugs import (
    ANY_STEP,
    FINDINGS_DOC,
    SEVERITIES,
    KnownBug,
    KnownBugLedger,
    KnownBugReport,
    KnownBugs,
    Signature,
    divergence_table,
    load_known_bugs,
    match,
    parse_known_bugs,
)

__all__ = [
    "ANY_STEP",
    "FINDINGS_DOC",
    "Focus",
    "KnownBug",
    "KnownBugLedger",
    "KnownBugReport",
    "KnownBugs",
    "Program",
    "SEVERITIES",
    "Signature",
    "TRIGGERS",
    "Trigger",
    "divergence_table",
    "load_known_bugs",
    "match",
    "parse_known_bugs",
]
