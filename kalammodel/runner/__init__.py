"""The runner: executes steps against a target and the reference model, compares, and names the invariant.

``session.py`` runs steps (:class:`Runner`, :class:`Session`), ``ahead.py`` keeps the reads sent ahead,
``reads.py`` makes the verification reads, ``facts.py`` + ``attribution.py`` attribute a disagreement to an
invariant (a pure function of typed facts), ``seams.py`` holds the Protocols of the target and the actor pool
and the :class:`Extension` base class.
"""

from __future__ import annotations

from .attribution import Facts, StepRole, attribute
from .outcomes import outcome_of_result
from .records import RunResult, RunStats, TranscriptEntry, iter_steps
from .seams import ActorPool, Extension, ExtensionFactory, Target
from .session import Runner, Session

__all__ = [
    "ActorPool",
    "Extension",
    "ExtensionFactory",
    "Facts",
    "RunResult",
    "RunStats",
    "Runner",
    "Session",
    "StepRole",
    "Target",
    "TranscriptEntry",
    "attribute",
    "iter_steps",
    "outcome_of_result",
]
