"""Flush steps: ``STORAGE FLUSH TABLE`` and waiting for its job (family :attr:`StepFamily.FLUSH`)."""

from __future__ import annotations

from typing import ClassVar

import attrs

from ..model import CANONICAL_STYLE, Expectation, Model, SqlStyle, render_flush
from .base import Request, Step, StepFamily, register
from .codec import _actor, _opt_str, _style, _table


@register
@attrs.frozen
class Flush(Step):
    """``STORAGE FLUSH TABLE``; the runner waits for the job, then calls ``model.flush_completed``."""

    kind: ClassVar[str] = "flush"
    family: ClassVar[StepFamily] = StepFamily.FLUSH
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)
    style: SqlStyle = attrs.field(default=CANONICAL_STYLE, converter=_style, kw_only=True)
    wait: ClassVar[bool] = True

    def requests(self, ns: str) -> list[Request]:
        return self._request(render_flush(self.style, self.style.qualified(ns, self.table)))

    def apply(self, model: Model) -> list[Expectation]:
        return [model.flush(self.actor, self.table, wait=self.wait, as_user=self.as_user)]

    def describe(self) -> str:
        return f"{self.kind}({self.table}, {self._who()}{self._styled()})"


@register
@attrs.frozen
class StartFlush(Flush):
    """``STORAGE FLUSH TABLE`` without waiting: later steps run while the job may be active."""

    kind: ClassVar[str] = "start_flush"
    family: ClassVar[StepFamily] = StepFamily.FLUSH
    wait: ClassVar[bool] = False


@register
@attrs.frozen
class AwaitFlush(Step):
    """Runner action: wait for the job of the last ``StartFlush`` of a table (sends no SQL)."""

    kind: ClassVar[str] = "await_flush"
    family: ClassVar[StepFamily] = StepFamily.FLUSH
    table: str = attrs.field(converter=_table)
    actor: str = attrs.field(default="root", converter=_actor)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)

    def requests(self, ns: str) -> list[Request]:
        return []

    def apply(self, model: Model) -> list[Expectation]:
        return [model.await_flush(self.table)]

    def describe(self) -> str:
        return f"{self.kind}({self.table})"
