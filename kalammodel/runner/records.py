"""What a run leaves behind: its transcript entries, its result, the runner's counters."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import attrs

from ..errors import Divergence
from ..steps import Step

__all__ = ["RunResult", "RunStats", "TranscriptEntry", "iter_steps"]


@attrs.frozen
class TranscriptEntry:
    """One request of a run as it went over the wire, with a short summary of the reply."""

    step_index: int
    request: str
    actor: str
    status: str
    summary: str
    ms: float

    def to_data(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class RunResult:
    """The result of replaying a list of steps: ``ok``, or the divergence / tool error that stopped it."""

    ok: bool
    divergence: Divergence | None = None
    error: str | None = None
    transcript: tuple[TranscriptEntry, ...] = ()
    steps_run: int = 0


@attrs.define
class RunStats:
    """Counters of one runner: how many examples (sessions) and steps it ran, since when (monotonic)."""

    started: float
    sessions: int = 0
    steps: int = 0

    def summary(self) -> str:
        seconds = time.monotonic() - self.started
        rate = self.steps / seconds if seconds > 0 else 0.0
        return f"{self.sessions} examples, {self.steps} steps in {seconds:.0f} s ({rate:.1f} steps/s)"


def iter_steps(steps: Iterable[Step]) -> Iterable[tuple[int, Step]]:
    return enumerate(steps)
