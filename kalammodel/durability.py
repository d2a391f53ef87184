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

from typing import Any

from .errors import Divergence, Invariant, KalamError, UsageError

__all__ = ["RestartExtension", "can_restart"]


def can_restart(target: Any) -> bool:
    """Whether ``target`` owns a server process it can kill and start again."""
    from .targets import BaseTarget as Target  # the shared base whose restart refuses

    restart = getattr(type(target), "restart", None)
    return restart is not None and restart is not Target.restart


class RestartExtension:
    """Runs ``restart`` steps for one session (create one per session: ``RestartExtension.factory``)."""

    def __init__(self, session: Any):
        self.session = session

    @classmethod
    def factory(cls, session: Any) -> RestartExtension:
        return cls(session)

    def run_step(self, session: Any, step: Any) -> bool:
        if getattr(step, "kind", None) != "restart":
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
        # Everything the example touched is compared after the restart, not only what changed since the
        # last full check: a lost write can be anywhere.
        for table in list(session.model.tables):
            for owner in session.model.scopes(table):
                session._dirty.add((table, owner))
        try:
            target.restart(hard=step.hard)
        except KalamError as exc:
            raise Divergence(
                "availability",
                f"the server did not come back after {'SIGKILL' if step.hard else 'a clean stop'}: {exc}",
                step_index=session.step_index,
                step=step.describe(),
                request="restart",
            ) from exc
        session.pool.relogin()
        session.transcript_note(f"restarted the server ({'SIGKILL' if step.hard else 'clean stop'})")
        for ext in session.extensions:
            hook = getattr(ext, "after_restart", None)
            if hook is not None:
                hook(session)
        try:
            session.check_all()
        except Divergence as div:
            # Whatever disagrees right after a restart was acknowledged before it: a durability failure.
            raise div.evolve(
                invariant=Invariant.DURABILITY,
                message=f"after a restart ({'SIGKILL' if step.hard else 'clean stop'}): {div.message}",
            ) from div
        return True
