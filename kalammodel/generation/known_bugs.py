"""How a run treats a divergence that matches a known KalamDB bug (docs/known-bugs.md, "In a run").

A :class:`KnownBugPolicy` goes to :func:`kalammodel.generation.run_machine` (``known_bugs=``):

- ``report`` (the default against a real server): a divergence that matches a known bug is recorded in the
  ledger, noted as "known KalamDB bug N: <title> (<link>)", and its example ends without failing — the machine
  runs no further step of it — so the run goes on. A divergence that matches no known bug fails as always.
- ``fail`` (the default against the embedded server, where no known bug may occur): every divergence fails;
  the failure names the known bug it matches (:attr:`Failure.known_bug`, :func:`matches_known_bug`).

Either way every example's steps are observed, so that the ledger knows which bugs' triggers ran ("possibly
fixed": exercised, never matched).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ..errors import Divergence
from ..steps import Step
from ..verdicts import KnownBug, KnownBugLedger

__all__ = ["KNOWN_BUG_MODES", "KnownBugPolicy", "known_bug_line", "matches_known_bug"]

#: the values of ``KnownBugPolicy.mode`` (and of --kalammodel-known-bugs)
KNOWN_BUG_MODES = ("report", "fail")


def _check_mode(_: object, __: object, mode: str) -> None:
    if mode not in KNOWN_BUG_MODES:
        raise ValueError(f"known-bugs mode must be one of {', '.join(KNOWN_BUG_MODES)} (got {mode!r})")


@attrs.define
class KnownBugPolicy:
    """``mode`` (``report`` or ``fail``) and the ledger the run counts known bugs in."""

    mode: str = attrs.field(default="fail", validator=_check_mode)
    ledger: KnownBugLedger = attrs.Factory(KnownBugLedger)

    @property
    def goes_past(self) -> bool:
        """Whether a known-bug divergence ends its example without failing (``report``)."""
        return self.mode == "report"

    def known_bug(self, divergence: Divergence, steps: Sequence[Step]) -> KnownBug | None:
        """The known bug ``divergence`` (after ``steps``) is, not counted; None for a new finding."""
        return self.ledger.bugs.match(divergence, steps)

    def go_past(self, divergence: Divergence, steps: Sequence[Step]) -> KnownBug | None:
        """In ``report`` mode: the known bug ``divergence`` is, counted in the ledger (the example ends there);
        None when it must fail (``fail`` mode, or a new finding)."""
        if not self.goes_past:
            return None
        return self.ledger.record(divergence, steps)

    def observe(self, steps: Sequence[Step]) -> None:
        """Note which known bugs' triggers the example's ``steps`` exercised."""
        self.ledger.observe(steps)


def known_bug_line(bug: KnownBug) -> str:
    """How a known-bug divergence is reported: ``known KalamDB bug N: <title> (<link>)``."""
    return f"{bug.label}: {bug.title} ({bug.link})"


def matches_known_bug(bug: KnownBug) -> str:
    """The line a failure report adds when its divergence is a known bug (``fail`` mode)."""
    return f"matches {known_bug_line(bug)}"
