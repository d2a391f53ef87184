"""What every export format renders: the case's requests step by step, re-based to the export namespace, with
the diverging request marked, and the header that describes the case."""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs

from .._data import show
from .._steps import describe
from ..format import Case

#: the roles a user can be created with; an identity whose role the case does not record gets the least one
ROLES = ("user", "service", "dba", "system")
FLUSH = re.compile(r"(?i)^\s*storage\s+flush\b")


@attrs.frozen
class Line:
    """One request of an exported case."""

    step_index: int
    describe: str
    actor: str
    as_user: str | None
    sql: str
    diverged: bool = False
    check: bool = False  # kalammodel's own check request, not one of the step's requests

    @property
    def wire_sql(self) -> str:
        """The SQL as sent: wrapped in ``EXECUTE AS USER`` when the request impersonates."""
        if self.as_user:
            return f"EXECUTE AS USER {sql_quote(self.as_user)} ({self.sql})"
        return self.sql

    @property
    def who(self) -> str:
        return f"as {self.actor}" + (f", executing as user {self.as_user!r}" if self.as_user else "")


@attrs.frozen
class Block:
    """The requests of one step (empty for a step that sends no SQL), or kalammodel's final check."""

    step_index: int
    describe: str
    lines: tuple[Line, ...]
    check: bool = False


def export_namespace(case: Case) -> str:
    return f"kmcase_{case.fingerprint}"


def rebase(sql: str, old: str | None, new: str) -> str:
    """``sql`` with the run's namespace ``old`` replaced by the export's ``new``."""
    if not old or old == new:
        return sql
    return re.sub(rf"\b{re.escape(old)}\b", new, sql)


def _clean_sql(sql: str) -> str:
    return str(sql).strip().rstrip(";").strip()


def _mark_last(blocks: list[Block]) -> None:
    for block_index in range(len(blocks) - 1, -1, -1):
        block = blocks[block_index]
        if block.lines:
            lines = list(block.lines)
            lines[-1] = attrs.evolve(lines[-1], diverged=True)
            blocks[block_index] = attrs.evolve(block, lines=tuple(lines))
            return


def export_blocks(case: Case, ns: str) -> list[Block]:
    """The case's requests step by step in namespace ``ns``, with the diverging request marked.

    The diverging request is the step's request whose SQL equals the divergence's ``request``; when it is none
    of them (a check kalammodel ran after the step, e.g. a full read) that request is added after the step; with
    no request recorded, the step's last request is marked.
    """
    record = case.divergence
    wanted = _clean_sql(rebase(record.request, record.namespace, ns)) if record.request else None
    check_line = None
    if wanted:
        actor = (record.actor or "root").split(" as ")[0]  # the runner writes "user1 as <as_user>"
        check_line = Line(record.step_index or 0, "check", actor, None, wanted, True, True)
    blocks: list[Block] = []
    marked = False
    for index, step in enumerate(case.steps):
        text = describe(step)
        lines = [
            Line(index, text, str(r.actor), r.as_user or None, _clean_sql(r.sql)) for r in step.requests(ns)
        ]
        if index == record.step_index:
            hits = [i for i, ln in enumerate(lines) if wanted and wanted in (ln.sql, ln.wire_sql)]
            if hits:
                lines[hits[-1]] = attrs.evolve(lines[hits[-1]], diverged=True)
                marked = True
            elif check_line is None and lines:
                lines[-1] = attrs.evolve(lines[-1], diverged=True)
                marked = True
        blocks.append(Block(index, text, tuple(lines)))
        if index == record.step_index and not marked and check_line is not None:
            blocks.append(Block(index, f"kalammodel's check after step #{index}", (check_line,), True))
            marked = True
    if not marked:
        last = len(case.steps) - 1
        if check_line is not None:
            check_line = attrs.evolve(check_line, step_index=last)
            blocks.append(Block(last, "kalammodel's final check", (check_line,), True))
        else:
            _mark_last(blocks)
    return blocks


def all_lines(blocks: Sequence[Block]) -> list[Line]:
    return [line for block in blocks for line in block.lines]


def comment(text: str, prefix: str) -> str:
    """``text`` as comment lines starting with ``prefix``."""
    return "\n".join(f"{prefix} {line}".rstrip() for line in str(text).splitlines() or [""])


def header(case: Case, ns: str) -> list[str]:
    """The lines that describe the case at the top of every export: divergence, server, origin, classification."""
    record = case.divergence
    replays = case.replays
    seen = (
        f"{case.classification} ({replays.failed} of {replays.runs} replays failed)"
        if replays.runs
        else case.classification
    )
    where = f" at step #{record.step_index}" if record.step_index is not None else ""
    lines = [
        f"kalammodel shrunk case {case.name}",
        f"Divergence [{record.invariant}]{where}: {record.message}",
    ]
    if record.actor:
        lines.append(f"acting user: {record.actor}")
    if record.request:
        lines.append(f"request:  {rebase(record.request, record.namespace, ns)}")
    lines += [
        f"expected: {show(record.expected_shown, 1000)}",
        f"actual:   {show(record.actual_shown, 1000)}",
        f"server: KalamDB {case.server_version or '(version unknown)'}"
        + (f" at {case.server_url}" if case.server_url else ""),
        f"found by kalammodel {case.kalammodel_version}"
        + (f", workload {case.workload}" if case.workload else "")
        + (f", {case.created_at}" if case.created_at else ""),
        f"classification: {seen}",
    ]
    return lines


def sql_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def role_of(case: Case, actor: str) -> str:
    """The role the case recorded for ``actor``; ``user`` (the least) when it recorded none."""
    role = case.actors.get(actor)
    return role if role is not None and role in ROLES else "user"


def login_actors(lines: Sequence[Line]) -> list[str]:
    """The identities other than root that send requests with their own token, in order of appearance."""
    seen: list[str] = []
    for line in lines:
        if line.actor != "root" and line.actor not in seen:
            seen.append(line.actor)
    return seen
