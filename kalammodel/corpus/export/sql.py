"""The SQL script export (``.sql``), and :func:`run_sql_script`, which runs such a script as its users."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import attrs

from .._data import show
from ..format import Case
from ._blocks import (
    FLUSH,
    all_lines,
    comment,
    export_blocks,
    export_namespace,
    header,
    login_actors,
    role_of,
    sql_quote,
)

if TYPE_CHECKING:
    from kalammodel.client import KalamClient


def export_sql(case: Case) -> str:
    """A standalone SQL script that reproduces the case: a header with the divergence, ``CREATE NAMESPACE``,
    then every request in order with a comment naming the acting user (``EXECUTE AS USER`` where the request
    impersonates) and a marker with expected and actual after the statement that diverged."""
    ns = export_namespace(case)
    blocks = export_blocks(case, ns)
    out = [comment(text, "--") for text in header(case, ns)]
    out += [
        "--",
        "-- Run the statements in order as root (kalam CLI, or POST /v1/api/sql with root's token). A statement",
        "-- marked 'as <user>' must be sent with that user's own token: log in as that user for it.",
    ]
    actors = login_actors(all_lines(blocks))
    if actors:
        out.append("-- Acting users (create them first if they do not exist; choose the passwords):")
        for actor in actors:
            out.append(
                f"--   CREATE USER {sql_quote(actor)} WITH PASSWORD '<password>' ROLE {role_of(case, actor)};"
            )
    out += ["", f"DROP NAMESPACE IF EXISTS {ns};", f"CREATE NAMESPACE {ns};"]
    for block in blocks:
        out.append("")
        out.append(
            f"-- {block.describe}" if block.check else f"-- step #{block.step_index}: {block.describe}"
        )
        if not block.lines:
            out.append("--   (no SQL request: a WebSocket or wait step; see `kalammodel show`)")
        for line in block.lines:
            out.append(f"-- {line.who}")
            out.append(f"{line.wire_sql};")
            if FLUSH.match(line.sql):
                out.append(
                    "-- (a flush runs as a job: wait until SELECT status FROM system.jobs WHERE job_id = "
                )
                out.append("--  '<job id from the answer>' says completed before the next statement)")
            if line.diverged:
                out.append(f"-- ^^^ DIVERGED [{case.divergence.invariant}]: {case.divergence.message}")
                out.append(comment(f"expected: {show(case.divergence.expected_shown, 1000)}", "--"))
                out.append(comment(f"actual:   {show(case.divergence.actual_shown, 1000)}", "--"))
    out += ["", f"DROP NAMESPACE IF EXISTS {ns};"]
    return "\n".join(out) + "\n"


@attrs.frozen
class ScriptStatement:
    """One statement of an exported SQL script as it ran: who sent it, the SQL, and what came back."""

    actor: str
    sql: str
    ok: bool
    rows: tuple[tuple[Any, ...], ...] = ()  # Any: decoded cell values
    columns: tuple[str, ...] = ()
    message: str | None = None
    code: str | None = None
    diverged: bool = False


_WHO = re.compile(r"^-- as (?P<actor>[A-Za-z0-9_]+)(?:, executing as user '(?P<as_user>[^']*)')?\s*$")
_ACTING = re.compile(
    r"^--\s+CREATE USER '(?P<user>[^']+)' WITH PASSWORD '<password>' ROLE (?P<role>\w+);\s*$"
)
_JOB = re.compile(r"Job ID: ([A-Za-z]+-[0-9A-Za-z]+)")


def _create_users(root: KalamClient, lines: list[str], password: str) -> None:
    """Create (or reset to ``password`` and the role) every acting user the script's header lists."""
    from kalammodel.errors import SqlError

    for line in lines:
        match = _ACTING.match(line)
        if not match:
            continue
        user, role = match.group("user"), match.group("role")
        try:
            root.execute(f"CREATE USER {sql_quote(user)} WITH PASSWORD {sql_quote(password)} ROLE {role}")
        except SqlError as exc:
            if "already exists" not in (exc.message or "").lower():
                raise
            root.execute(f"ALTER USER {sql_quote(user)} SET PASSWORD {sql_quote(password)}")
            root.execute(f"ALTER USER {sql_quote(user)} SET ROLE {role}")


def _send(client: KalamClient, actor: str, sql: str) -> ScriptStatement:
    from kalammodel.errors import SqlError

    try:
        response = client.execute(sql)
    except SqlError as exc:
        return ScriptStatement(actor, sql, ok=False, message=exc.message, code=exc.code)
    first = response.results[0] if response.results else None
    if first is None:
        return ScriptStatement(actor, sql, ok=True)
    rows = tuple(tuple(r) for r in first.rows or ())
    columns = tuple(c.name for c in first.columns or ())
    return ScriptStatement(actor, sql, ok=True, rows=rows, columns=columns, message=first.message)


def run_sql_script(
    script: str, base_url: str, root_password: str, *, timeout: float = 60.0
) -> list[ScriptStatement]:
    """Run a script written by :func:`export_sql` against a server, as the users it names.

    Creates the acting users listed in its header (with a generated password; existing ones get it set),
    sends every statement as its ``-- as <user>`` annotation says (root by default), waits for each flush job,
    and returns what every statement answered; the statement marked ``^^^ DIVERGED`` has ``diverged=True``.
    This is how a KalamDB developer (and kalammodel's own tests) check that an export reproduces its bug.
    """
    import secrets

    from kalammodel.client import KalamClient

    root = KalamClient.bootstrap(base_url, root_password, timeout=timeout)
    clients: dict[str, KalamClient] = {"root": root}
    password = f"Km-{secrets.token_hex(8)}!"
    lines = script.splitlines()
    _create_users(root, lines, password)
    results: list[ScriptStatement] = []
    actor = "root"
    for line in lines:
        stripped = line.strip()
        who = _WHO.match(stripped)
        if who:
            actor = who.group("actor")
            continue
        if stripped.startswith("-- ^^^ DIVERGED") and results:
            results[-1] = attrs.evolve(results[-1], diverged=True)
            continue
        if not stripped or stripped.startswith("--"):
            continue
        sql = stripped.rstrip(";")
        if actor not in clients:
            clients[actor] = KalamClient.login(base_url, actor, password, timeout=timeout)
        results.append(_send(clients[actor], actor, sql))
        job = _JOB.search(results[-1].message or "")
        if results[-1].ok and job and FLUSH.match(sql):
            root.wait_for_job(job.group(1), timeout=timeout)
        actor = "root"
    for client in clients.values():
        client.close()
    return results
