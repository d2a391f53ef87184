"""RBAC probes (family :attr:`StepFamily.PROBE`): an identity tries what its role may or may not do.

Three probes are the step they imitate under another kind (a CREATE TABLE, an INSERT, a SELECT under
``EXECUTE AS USER``); :class:`ProbeSystemRead` reads a system table.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from ..model import CANONICAL_STYLE, Expectation, Model, SqlStyle, render_select
from .base import Request, Step, StepFamily, register
from .codec import _actor, _opt_str, _style, _table
from .ddl import CreateTable
from .dml import Insert
from .reads import Select


@register
@attrs.frozen
class ProbeCreateShared(CreateTable):
    """RBAC probe: an identity (typically role ``user``) creates a SHARED table; ``user`` must be denied."""

    kind: ClassVar[str] = "probe_create_shared"
    family: ClassVar[StepFamily] = StepFamily.PROBE


@register
@attrs.frozen
class ProbeSharedWrite(Insert):
    """RBAC probe: an INSERT into a SHARED table; role ``user`` must be denied at every access level."""

    kind: ClassVar[str] = "probe_shared_write"
    family: ClassVar[StepFamily] = StepFamily.PROBE


@register
@attrs.frozen
class ProbeExecuteAs(Select):
    """RBAC probe: a SELECT under ``EXECUTE AS USER``; a ``user`` targeting another id must be denied."""

    kind: ClassVar[str] = "probe_execute_as"
    family: ClassVar[StepFamily] = StepFamily.PROBE


@register
@attrs.frozen
class ProbeSystemRead(Step):
    """RBAC probe: ``SELECT * FROM system.<table> LIMIT 1``; only dba/system may read system tables."""

    kind: ClassVar[str] = "probe_system_read"
    family: ClassVar[StepFamily] = StepFamily.PROBE
    reads_only: ClassVar[bool] = True
    actor: str = attrs.field(converter=_actor)
    table: str = attrs.field(default="users", converter=_table)
    as_user: str | None = attrs.field(default=None, converter=_opt_str)
    style: SqlStyle = attrs.field(default=CANONICAL_STYLE, converter=_style, kw_only=True)

    def requests(self, ns: str) -> list[Request]:
        return self._request(render_select(self.style, self.style.qualified("system", self.table), limit=1))

    def apply(self, model: Model) -> list[Expectation]:
        return [model.read_system_table(self.actor, self.table, self.as_user)]

    def describe(self) -> str:
        return f"{self.kind}(system.{self.table}, {self._who()}{self._styled()})"
