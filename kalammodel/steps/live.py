"""Live-query steps (family :attr:`StepFamily.LIVE`, PROTOCOL §10).

Run by the live extension (:mod:`kalammodel.checks.live`), not by ``Session.run``: they send WebSocket messages, not SQL.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from ..errors import UsageError
from ..model import CANONICAL_STYLE, Expectation, Model, Predicate, SqlStyle, render_select
from .base import Request, Step, StepFamily, register
from .codec import _actor, _opt_names, _opt_size, _str, _style, _sub_id, _table, _where


def subscription_sql(
    style: SqlStyle, ns: str, table: str, columns: tuple[str, ...] | None, where: Predicate | None
) -> str:
    """``SELECT cols|* FROM ns.table [WHERE]`` as a subscription sends it, written in ``style``."""
    return render_select(style, style.qualified(ns, table), columns, where, end=False)


class _LiveStep(Step):
    """A live-query step: ``requests`` is empty and ``apply`` refuses; the live extension runs it."""

    def requests(self, ns: str) -> list[Request]:
        return []

    def apply(self, model: Model) -> list[Expectation]:
        raise UsageError(
            f"step {self.kind!r} is a live-query step: run it with the live extension "
            "(Runner(..., extensions=[kalammodel.checks.live.live_extension]))"
        )


@register
@attrs.frozen
class Subscribe(_LiveStep):
    """Open a WebSocket subscription ``SELECT cols|* FROM t [WHERE]`` as ``actor`` (one connection each)."""

    kind: ClassVar[str] = "subscribe"
    family: ClassVar[StepFamily] = StepFamily.LIVE
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(converter=_table)
    sub_id: str = attrs.field(converter=_sub_id)
    columns: tuple[str, ...] | None = attrs.field(default=None, converter=_opt_names)
    where: Predicate | None = attrs.field(default=None, converter=_where)
    snapshot: bool = True
    batch_size: int | None = attrs.field(default=None, converter=_opt_size("batch_size"))  # type: ignore[misc]
    last_rows: int | None = attrs.field(default=None, converter=_opt_size("last_rows"))  # type: ignore[misc]
    style: SqlStyle = attrs.field(default=CANONICAL_STYLE, converter=_style, kw_only=True)
    as_user: ClassVar[str | None] = None  # type: ignore[misc]

    def sql(self, ns: str) -> str:
        """The subscription's query in the step's style (never with a trailing semicolon: a subscription is one
        query, not a statement list)."""
        return subscription_sql(self.style, ns, self.table, self.columns, self.where)

    def describe(self) -> str:
        parts = [self.sub_id, self.table, f"by={self.actor}"]
        if self.columns is not None:
            parts.append(f"columns=[{', '.join(self.columns)}]")
        if self.where is not None:
            parts.append(f"where={self.where.render()!r}")
        parts.append(f"snapshot={self.snapshot}")
        if self.batch_size is not None:
            parts.append(f"batch_size={self.batch_size}")
        if self.last_rows is not None:
            parts.append(f"last_rows={self.last_rows}")
        return f"{self.kind}({', '.join(parts)}{self._styled()})"


@register
@attrs.frozen
class NextBatch(_LiveStep):
    """Pull the next snapshot batch of a loading subscription (``next_batch`` with the last ``last_seq_id``)."""

    kind: ClassVar[str] = "next_batch"
    family: ClassVar[StepFamily] = StepFamily.LIVE
    sub_id: str = attrs.field(converter=_sub_id)
    actor: ClassVar[str] = "root"  # type: ignore[misc]
    as_user: ClassVar[str | None] = None  # type: ignore[misc]

    def describe(self) -> str:
        return f"{self.kind}({self.sub_id})"


@register
@attrs.frozen
class Unsubscribe(_LiveStep):
    """End a subscription: ``unsubscribe`` on its connection, or (``disconnect``) close the connection."""

    kind: ClassVar[str] = "unsubscribe"
    family: ClassVar[StepFamily] = StepFamily.LIVE
    sub_id: str = attrs.field(converter=_sub_id)
    disconnect: bool = False
    actor: ClassVar[str] = "root"  # type: ignore[misc]
    as_user: ClassVar[str | None] = None  # type: ignore[misc]

    def describe(self) -> str:
        return f"{self.kind}({self.sub_id}{', disconnect' if self.disconnect else ''})"


@register
@attrs.frozen
class ResubscribeFromSeq(_LiveStep):
    """Subscribe again like ``from_sub`` did, with ``from_seq_id`` = the newest ``_seq`` it received.

    A ``from_sub`` still open loses its connection first (``Unsubscribe(disconnect=True)``): a client resumes
    after a dropped connection.
    """

    kind: ClassVar[str] = "resubscribe_from_seq"
    family: ClassVar[StepFamily] = StepFamily.LIVE
    sub_id: str = attrs.field(converter=_sub_id)
    from_sub: str = attrs.field(converter=_str("from_sub"))  # type: ignore[misc]
    actor: ClassVar[str] = "root"  # type: ignore[misc]
    as_user: ClassVar[str | None] = None  # type: ignore[misc]

    def describe(self) -> str:
        return f"{self.kind}({self.sub_id}, from last _seq of {self.from_sub})"


#: the steps the live extension runs (``isinstance(step, LIVE_STEPS)``): the LIVE family
LIVE_STEPS: tuple[type[Step], ...] = (Subscribe, NextBatch, Unsubscribe, ResubscribeFromSeq)
