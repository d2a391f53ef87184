"""Exports of a case for a KalamDB bug report, one module per format, and the registry the CLI reads.

:data:`EXPORTERS` maps a format name to its :class:`Exporter`: the render function, the file name it is written
under and the file's permissions. A new format is one module here and one entry in the registry.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from ..format import Case
from .curl import export_curl
from .pytest import export_pytest
from .sql import ScriptStatement, export_sql, run_sql_script

__all__ = [
    "EXPORTERS",
    "Exporter",
    "ScriptStatement",
    "export_curl",
    "export_pytest",
    "export_sql",
    "run_sql_script",
]


@attrs.frozen
class Exporter:
    """One export format: ``render(case)`` gives the text, written as ``file_name(case)``; ``mode``: the file's
    permissions (None: the process's default)."""

    name: str
    render: Callable[[Case], str]
    file_name: Callable[[Case], str]
    mode: int | None = None
    description: str = ""


def _sql_name(case: Case) -> str:
    return f"{case.name}.sql"


def _pytest_name(case: Case) -> str:
    return f"test_{case.name.replace('-', '_')}.py"


def _curl_name(case: Case) -> str:
    return f"{case.name}.sh"


#: the export formats by name, in the order ``--format all`` writes them
EXPORTERS: dict[str, Exporter] = {
    exporter.name: exporter
    for exporter in (
        Exporter("sql", export_sql, _sql_name, description="a SQL script with the divergence marked"),
        Exporter("pytest", export_pytest, _pytest_name, description="a regression test for pytest"),
        Exporter("curl", export_curl, _curl_name, 0o755, "a shell script of curl requests"),
    )
}
