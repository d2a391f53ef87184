"""A failure as text: the minimal steps as a numbered program, the divergence, and how to replay it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._steps import describe
from .format import Case, DivergenceRecord

if TYPE_CHECKING:
    from kalammodel.errors import Divergence
    from kalammodel.steps import Step


def format_failure(
    steps: Sequence[Step], divergence: Divergence | DivergenceRecord, replay_command: str | None = None
) -> str:
    """The failure as Hypothesis would print it: the minimal steps as a numbered program (one ``describe()`` a
    line, the diverging one marked), the divergence (expected vs actual) and the one-line replay command."""
    record = DivergenceRecord.from_divergence(divergence)
    lines = [f"Failing test case ({len(steps)} step{'s' if len(steps) != 1 else ''}):"]
    width = len(str(max(len(steps) - 1, 0)))
    for index, step in enumerate(steps):
        mark = "   <-- diverged here" if index == record.step_index else ""
        lines.append(f"  #{index:<{width}}  {describe(step)}{mark}")
    lines.append("")
    lines.append("Divergence " + record.render())
    if replay_command:
        lines.append("")
        lines.append("Reproduce with:")
        lines.append(f"  {replay_command}")
    return "\n".join(lines)


def describe_case(case: Case) -> str:
    """What ``kalammodel show`` prints: the case's signature, classification, server and origin, then the
    failure as a program with its replay command."""
    replays = case.replays
    seen = f" ({replays.failed} of {replays.runs} replays failed)" if replays.runs else ""
    signature = case.signature
    server = f"KalamDB {case.server_version or '(version unknown)'} {case.server_url or ''}".rstrip()
    lines = [
        f"case {case.path}",
        f"  signature:      {signature.invariant} / {signature.step_kind} / {signature.table_kind}",
        f"  classification: {case.classification}{seen}",
        f"  server:         {server}",
        f"  found:          {case.created_at} by kalammodel {case.kalammodel_version}, workload {case.workload}",
    ]
    if replays.errors:
        lines.append(f"  replay errors:  {'; '.join(replays.errors)}")
    lines.append("")
    lines.append(format_failure(case.steps, case.divergence, case.replay_command()))
    return "\n".join(lines)
