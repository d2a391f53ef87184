"""Storage routing (``storage_routing``): every cold file under a namespace lies in the directory of one of its
tables (``<storage>/<ns>/<table>[/<user>]``, PROTOCOL §7.3): none in another table's directory, a dropped
table's, or outside any.

The files are listed as the step ends (:func:`list_cold_files`) and checked when the full read that found them
is compared (:data:`storage_routing`, a registered check).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import attrs

from ..errors import Invariant
from .cold import COLD_FILE, Problem
from .registry import Finding, check

__all__ = ["ColdListing", "find_stray_files", "list_cold_files", "storage_routing"]


@attrs.frozen
class ColdListing:
    """The cold files of a namespace outside the directories of its tables, listed at one moment."""

    root: Path  #: the namespace's directory
    allowed: tuple[str, ...]  #: the directories of its tables
    strays: tuple[Problem, ...]  #: the cold files outside them


def list_cold_files(base: Path, ns: str, tables: Iterable[str]) -> ColdListing:
    """List, now, the cold files of namespace ``ns`` under storage ``base`` that lie outside its ``tables``."""
    root = base / ns
    allowed = [root / name for name in tables]
    strays = find_stray_files(root, allowed) if root.is_dir() else []
    return ColdListing(root, tuple(str(a) for a in allowed), tuple(strays))


@check(Invariant.STORAGE_ROUTING)
def storage_routing(listing: ColdListing) -> Finding | None:
    """Every cold file under the namespace lies in the directory of a table it has."""
    if not listing.strays:
        return None
    return Finding(
        f"cold files of namespace {listing.root.name} outside the directories of its tables: "
        + "; ".join(str(p) for p in listing.strays[:5]),
        request=f"list {listing.root}",
        expected=list(listing.allowed),
        actual=[str(p) for p in listing.strays],
    )


def find_stray_files(root: str | Path, allowed_dirs: Iterable[str | Path]) -> list[Problem]:
    """Cold files (``batch-*.parquet``, ``manifest.json``) under ``root`` that lie outside every ``allowed_dirs``.

    Storage routing: a table's cold files belong under its storage's scope directories and nowhere else.
    """
    root = Path(root)
    allowed = [Path(d).resolve() for d in allowed_dirs]
    problems: list[Problem] = []
    if not root.is_dir():
        return problems
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            if not (COLD_FILE.match(name) or name == "manifest.json"):
                continue
            path = (Path(dirpath) / name).resolve()
            if not any(path.is_relative_to(a) for a in allowed):
                problems.append(Problem("stray_file", str(path),
                                        f"cold file outside the table's storage (allowed: "
                                        f"{', '.join(map(str, allowed)) or 'none'})"))  # fmt: skip
    return sorted(problems, key=lambda p: p.path or "")
