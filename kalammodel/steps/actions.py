"""Runner actions (family :attr:`StepFamily.ACTION`): steps that send no SQL — restart the server, let time pass."""

from __future__ import annotations

from typing import ClassVar

import attrs

from ..model import Expectation, Model
from .base import Request, Step, StepFamily, register
from .codec import _seconds


@register
@attrs.frozen
class Pause(Step):
    """Runner action: let ``seconds`` pass (STREAM TTL expiry); sends no SQL."""

    kind: ClassVar[str] = "pause"
    family: ClassVar[StepFamily] = StepFamily.ACTION
    seconds: float = attrs.field(converter=_seconds)
    actor: ClassVar[str] = "root"  # type: ignore[misc]
    as_user: ClassVar[str | None] = None  # type: ignore[misc]

    def requests(self, ns: str) -> list[Request]:
        return []

    def apply(self, model: Model) -> list[Expectation]:
        return [model.pause(self.seconds)]

    def describe(self) -> str:
        return f"{self.kind}({self.seconds:g})"


@register
@attrs.frozen
class Restart(Step):
    """Runner action: kill the server (``hard``: SIGKILL) and start it again; nothing acknowledged may be lost.

    Run by ``kalammodel.checks.restart.RestartExtension``; sends no SQL, changes nothing in the model.
    """

    kind: ClassVar[str] = "restart"
    family: ClassVar[StepFamily] = StepFamily.ACTION
    hard: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    actor: ClassVar[str] = "root"  # type: ignore[misc]
    as_user: ClassVar[str | None] = None  # type: ignore[misc]

    def requests(self, ns: str) -> list[Request]:
        return []

    def apply(self, model: Model) -> list[Expectation]:
        return []

    def describe(self) -> str:
        return f"{self.kind}({'SIGKILL' if self.hard else 'clean stop'})"
