"""Draw functions of the actions around the data: RBAC probes by users, pauses that let STREAM rows expire, a
server restart (records of :mod:`kalammodel.generation.operations`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import strategies as st

from ..model import Role, TableKind, TableState
from ..steps import (
    Pause,
    ProbeCreateShared,
    ProbeExecuteAs,
    ProbeSharedWrite,
    ProbeSystemRead,
    Restart,
)
from .strategies import SYNTHETIC_USERS, row_values, table_spec, weighted

if TYPE_CHECKING:
    from .machine import KalamStateMachine

__all__ = ["MAX_PAUSE_TTL", "expiring_streams", "pause", "rbac_probe", "restart"]

#: Pauses are real time; only STREAM tables with a TTL up to this many seconds get one.
MAX_PAUSE_TTL = 3


def rbac_probe(m: KalamStateMachine, table: str, data: st.DataObject, op: str) -> None:
    users = m.names_by_role(Role.USER)
    if not users:
        return
    actor = data.draw(st.sampled_from(users), label="user")
    # A write to a SHARED table (its access level decides) and an EXECUTE AS on a USER/STREAM table come
    # 3 times in 4 while such tables exist, on the drawn table when it is one, else on another; the
    # table-less probes share the rest.
    shared = sorted(n for n, t in m.model.tables.items() if t.kind is TableKind.SHARED)
    owned = sorted(n for n, t in m.model.tables.items() if t.kind is not TableKind.SHARED)
    choices = [(p, 3.0) for p, ok in (("shared_write", shared), ("execute_as", owned)) if ok]
    probe = data.draw(weighted([*choices, ("system_read", 1.0), ("create_shared", 1.0)]), label="probe")
    if probe == "system_read":
        m.run(ProbeSystemRead(actor, data.draw(st.sampled_from(["users", "jobs", "tables"]))))
    elif probe == "create_shared":
        spec = data.draw(table_spec(m.wl, f"p{m.table_count}", TableKind.SHARED))
        m.table_count += 1
        m.run(ProbeCreateShared(actor, spec))
    elif probe == "execute_as":
        target = table if table in owned else data.draw(st.sampled_from(owned), label="table")
        others = [u for u in sorted(m.actors) if u != actor] + list(SYNTHETIC_USERS)
        m.run(ProbeExecuteAs(actor, target, None, None, (), None, None, data.draw(st.sampled_from(others))))
    else:
        # Each access level present is probed alike, however many tables hold it: a fault may let users
        # write one level only (PRIVATE, say) while most SHARED tables are of the other.
        levels = sorted(m.shared_levels())
        level = data.draw(st.sampled_from(levels), label="access level") if len(levels) > 1 else levels[0]
        of_level = [n for n in shared if (m.model.tables[n].spec.access_level or "PRIVATE") == level]
        target = table if table in of_level else data.draw(st.sampled_from(of_level), label="table")
        columns = m.columns(m.model.tables[target])
        row = data.draw(row_values(columns))
        m.run(
            ProbeSharedWrite(
                actor, target, tuple(c.name for c in columns), tuple(c.type for c in columns), (row,)
            )
        )


def expiring_streams(m: KalamStateMachine) -> list[TableState]:
    """STREAM tables with a short TTL that hold rows: worth one pause to see them expire."""
    return [
        t
        for t in m.model.tables.values()
        if t.kind is TableKind.STREAM and (t.spec.ttl_seconds or 0) <= MAX_PAUSE_TTL and t.scopes
    ]


def pause(m: KalamStateMachine, table: str, data: st.DataObject, op: str) -> None:
    """Let the shortest TTL run out (once per example: pauses are the only slow step)."""
    ttl = min(t.spec.ttl_seconds or 1 for t in expiring_streams(m))
    m.paused = True
    m.run(Pause(round(ttl + m.model.stream_slack + 0.25, 2)))


def restart(m: KalamStateMachine, table: str, data: st.DataObject, op: str) -> None:
    """Kill the server with SIGKILL and start it again (once per example: a restart costs ~1 s)."""
    m.restarted = True
    m.run(Restart(hard=True))
