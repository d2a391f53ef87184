"""Registered checks: each declares, where it is written, the invariant it guards.

    @check(Invariant.COLD_FILES)
    def cold_files(scope, expected) -> Finding | None: ...

A check returns a :class:`Finding` (what is wrong, what was read) or None; calling the registered check with
the session first (``cold_files(session, scope, expected)``) raises the :class:`~kalammodel.errors.Divergence`
the registry builds from the finding, with the declared invariant, the session's step and namespace. Nothing
re-labels it afterwards. :data:`CHECKS` lists every registered check by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, ParamSpec, Protocol

import attrs

from ..errors import Divergence, Invariant
from ..steps import Step

__all__ = ["CHECKS", "Check", "Finding", "Site", "check"]

P = ParamSpec("P")


@attrs.frozen
class Finding:
    """What a check found wrong: the divergence's message, the read it made, the expected and actual values.

    ``based_on``: a divergence that this finding states again under the check's invariant (its step, request,
    actor and values are kept; e.g. whatever disagrees right after a restart is a durability failure).
    """

    message: str
    request: str | None = None
    actor: str | None = None
    expected: Any = None  # Any: what the check compared (rows, file lists, records)
    actual: Any = None
    based_on: Divergence | None = None


class Site(Protocol):
    """Where a check runs: what a divergence is placed by (a :class:`~kalammodel.runner.Session` is one)."""

    step_index: int
    ns: str

    def current_step(self) -> Step | None: ...


@attrs.frozen
class Check(Generic[P]):
    """A registered check: ``check(site, *args)`` raises the divergence of its finding, if any."""

    name: str
    invariant: Invariant
    run: Callable[P, Finding | None]

    def __call__(self, site: Site, *args: P.args, **kwargs: P.kwargs) -> None:
        finding = self.run(*args, **kwargs)
        if finding is None:
            return
        if finding.based_on is not None:
            raise self.divergence(site, finding) from finding.based_on
        raise self.divergence(site, finding)

    def divergence(self, site: Site, finding: Finding) -> Divergence:
        """The divergence of ``finding``, with this check's invariant, placed at ``site``."""
        if finding.based_on is not None:
            return finding.based_on.evolve(
                invariant=self.invariant, message=finding.message, namespace=site.ns
            )
        return Divergence(
            self.invariant,
            finding.message,
            step_index=site.step_index,
            step=site.current_step(),
            request=finding.request,
            actor=finding.actor,
            expected=finding.expected,
            actual=finding.actual,
            namespace=site.ns,
        )


#: every registered check, by name
CHECKS: dict[str, Check[Any]] = {}


def check(invariant: Invariant) -> Callable[[Callable[P, Finding | None]], Check[P]]:
    """Register a check function guarding ``invariant`` (see the module docstring)."""

    def register(func: Callable[P, Finding | None]) -> Check[P]:
        name = func.__name__
        if name in CHECKS:
            raise ValueError(f"a check named {name!r} is registered already ({CHECKS[name]})")
        registered = Check(name, invariant, func)
        CHECKS[name] = registered
        return registered

    return register
