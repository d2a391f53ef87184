"""The shrunk-case corpus: save, load, replay, show and export minimal failing step lists.

When a failing run has been shrunk to a minimal list of steps, :func:`save_case` writes it to
``shrunk_cases/<invariant>-<fingerprint>.json`` together with what diverged and the :class:`RunContext` of the
run. The file is self-describing (format tag, format version, kalammodel and server versions), written
atomically, and named by a fingerprint of the failure's signature so that the same bug found twice collapses
into one file (the shorter program wins).

Case files are replayed without Hypothesis (:func:`replay_case`, :func:`replay_paths`), shown as a program
(:func:`format_failure`, :func:`describe_case`) and exported for a KalamDB bug report by the formats of
:data:`EXPORTERS`: a SQL script, a pytest file that needs only ``kalammodel.client``, or a curl script.

A case file that cannot be read is reported with its name and what is wrong (:class:`CaseFileError`); it never
stops the other files and is never deleted. The layout of the file is documented in ``docs/shrunk-cases.md``.

Modules: ``format`` (records, JSON form, reading), ``context`` (the run's facts), ``store`` (naming, scrubbing,
atomic write, listing), ``replay``, ``show``, ``export/`` (one module per format and the registry).
"""

from __future__ import annotations

from ._runs import CaseRunner
from .context import RunContext
from .export import (
    EXPORTERS,
    Exporter,
    ScriptStatement,
    export_curl,
    export_pytest,
    export_sql,
    run_sql_script,
)
from .format import (
    CLASSIFICATIONS,
    FORMAT,
    FORMAT_VERSION,
    Case,
    CaseFileError,
    DivergenceRecord,
    Replays,
    Signature,
    load_case,
)
from .replay import FLAKY_MIN_RUNS, ReplayOutcome, replay_case, replay_paths
from .show import describe_case, format_failure
from .store import SavedCase, case_files, iter_cases, save_case

__all__ = [
    "CLASSIFICATIONS",
    "EXPORTERS",
    "FLAKY_MIN_RUNS",
    "FORMAT",
    "FORMAT_VERSION",
    "Case",
    "CaseFileError",
    "CaseRunner",
    "DivergenceRecord",
    "Exporter",
    "ReplayOutcome",
    "Replays",
    "RunContext",
    "SavedCase",
    "ScriptStatement",
    "Signature",
    "case_files",
    "describe_case",
    "export_curl",
    "export_pytest",
    "export_sql",
    "format_failure",
    "iter_cases",
    "load_case",
    "replay_case",
    "replay_paths",
    "run_sql_script",
    "save_case",
]
