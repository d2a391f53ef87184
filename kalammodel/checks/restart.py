"""Durability: kill the server (SIGKILL) in the middle of a program, restart it, and check nothing was lost.

The :class:`~kalammodel.steps.Restart` step is run by :class:`RestartExtension`, a runner extension (see
``Runner(extensions=...)``): it kills the target's server process without a shutdown, starts it again on the
same URL and data directory, logs every identity in again, and compares every scope the example touched, in
full, with the model. Every write the server acknowledged before the kill must still be there, hot or cold,
and no deleted row may come back; cold files are checked again.

Only targets that own their server process can do this (the embedded server, or a real server started with
``--kalamdb-server-cmd``). A remote URL cannot be restarted: the machine never draws the step then.

Real KalamDB: RocksDB ``sync_writes`` defaults to false, which leaves the WAL in the OS page cache; that
survives SIGKILL of the process (only a machine crash could lose it), so a write lost here is a real finding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import Divergence, Invariant, KalamError, UsageError
from ..runner.seams import Extension
from ..steps import Restart, Step
from .registry import Finding, check

if TYPE_CHECKING:
    from ..runner import Session

__all__ = ["RestartExtension", "can_restart", "durability"]


def can_restart(target: object) -> bool:
    """Whether ``target`` owns a server process it can kill and start again (its ``can_restart``)."""
    return bool(getattr(target, "can_restart", False))


@check(Invariant.DURABILITY)
def durability(session: Session, hard: bool) -> Finding | None:
    """Right after a restart every touched scope, in full, equals the model: whatever disagrees was
    acknowledged before the restart (a durability failure, whichever check meets it)."""
    try:
        session.check_all()
    except Divergence as div:
        how = "SIGKILL" if hard else "clean stop"
        return Finding(f"after a restart ({how}): {div.message}", based_on=div)
    return None


class RestartExtension(Extension):
    """Runs ``restart`` steps for one session (create one per session: ``RestartExtension.factory``)."""

    def __init__(self, session: Session):
        self.session = session

    @classmethod
    def factory(cls, session: Session) -> RestartExtension:
        return cls(session)

    def run_step(self, session: Session, step: Step) -> bool:
        if not isinstance(step, Restart):
            return False
        target = session.runner.target
        if not can_restart(target):
            raise UsageError(
                f"a restart step needs a target that owns its server process; {target!r} does not "
                "(use the embedded server or --kalamdb-server-cmd)"
            )
        running = sorted(n for n, t in session.model.tables.items() if t.flush.running_job is not None)
        if running:
            raise UsageError(f"restart while flush jobs of {running} run: await them first (AwaitFlush)")
        # Everything the example touched is compared after the restart, not only what changed since the last
        # full check: a lost write can be anywhere.
        for table in list(session.model.tables):
            for owner in session.model.scopes(table):
                session.mark_scope(table, owner)
        how = "SIGKILL" if step.hard else "a clean stop"
        try:
            target.restart(hard=step.hard)
        except KalamError as exc:
            raise Divergence(
                Invariant.AVAILABILITY,
                f"the server did not come back after {how}: {exc}",
                step_index=session.step_index,
                step=step.describe(),
                request="restart",
                namespace=session.ns,
            ) from exc
        session.pool.relogin()
        # the restart took time: STREAM rows whose TTL ran out meanwhile are expired, judged at the clock now
        session.model.clock = session.runner.clock()
        session.transcript_note(f"restarted the server ({'SIGKILL' if step.hard else 'clean stop'})")
        for ext in session.extensions:
            ext.after_restart(session)
        durability(session, session, step.hard)
        return True
