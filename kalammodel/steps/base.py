"""The step base: :class:`Request`, :class:`Step`, :class:`StepFamily` and the registry :data:`STEP_TYPES`.

A concrete step is an ``@attrs.frozen`` subclass of :class:`Step` that declares its own ``kind`` (the stable name
used in case files) and ``family`` (what sort of operation it is), and is registered with :func:`register`
(outermost decorator). Registration fills :data:`STEP_TYPES`, which :mod:`kalammodel.steps.codec` reads.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar, TypeVar

import attrs

from ..errors import InternalError
from ..model import CANONICAL_STYLE, Expectation, Model, Predicate, SqlStyle


class StepFamily(enum.Enum):
    """What sort of operation a step is: one value per module of :mod:`kalammodel.steps`.

    Code that treats steps by sort asks ``step.family is StepFamily.PROBE`` instead of sniffing kind strings.
    """

    #: writes rows: INSERT, UPDATE, DELETE (also the ones the model expects to be refused)
    DML = "dml"
    #: one SELECT of a user table (``reads_only``)
    READ = "read"
    #: changes a table's schema: CREATE TABLE, ALTER TABLE ADD/DROP COLUMN
    DDL = "ddl"
    #: STORAGE FLUSH TABLE and waiting for its job
    FLUSH = "flush"
    #: live queries over WebSocket, run by the live extension (kalammodel.checks.live)
    LIVE = "live"
    #: RBAC probes: an identity tries what its role may or may not do
    PROBE = "probe"
    #: runner actions that send no SQL: restart the server, let time pass
    ACTION = "action"


@attrs.frozen
class Request:
    """One HTTP SQL request: who sends it, the SQL (namespace substituted), and an optional EXECUTE AS target."""

    actor: str
    sql: str
    as_user: str | None = None

    def __str__(self) -> str:
        if self.as_user is None:
            return f"[{self.actor}] {self.sql}"
        return f"[{self.actor}] EXECUTE AS USER '{self.as_user}' ({self.sql})"


class Step:
    """Base of every step: data plus ``requests``, ``apply`` and ``describe``."""

    kind: ClassVar[str] = ""
    #: the sort of operation (set by every registered step class itself, never inherited)
    family: ClassVar[StepFamily]
    #: the step only reads (one SELECT): its answer changes nothing the runner does next, so a runner sending
    #: ahead may compare it later (``Runner(send_ahead=True)``)
    reads_only: ClassVar[bool] = False
    actor: str
    as_user: str | None

    def requests(self, ns: str) -> list[Request]:
        raise NotImplementedError

    def apply(self, model: Model) -> list[Expectation]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def _who(self) -> str:
        who = f"by={self.actor}"
        return who if self.as_user is None else f"{who}, as_user={self.as_user!r}"

    def _request(self, sql: str) -> list[Request]:
        if self.as_user is not None and sql.endswith(";"):
            # the runner wraps the statement in EXECUTE AS USER '...' (...): a semicolon belongs after that
            # wrapper, never inside it (a server splitting on ';' would cut the wrapper in two)
            sql = sql[:-1]
        return [Request(self.actor, sql, self.as_user)]

    def _styled(self) -> str:
        """``, style=...`` for a step whose SQL style is not canonical (steps without SQL have none)."""
        style: SqlStyle = getattr(self, "style", CANONICAL_STYLE)
        return "" if style == CANONICAL_STYLE else f", style=[{style.describe()}]"


#: every registered step class by its kind, in registration order (the order of the family modules)
STEP_TYPES: dict[str, type[Step]] = {}

_S = TypeVar("_S", bound=type[Step])


def register(cls: _S) -> _S:
    """Register a step class in :data:`STEP_TYPES` (use as the outermost decorator, above ``@attrs.frozen``).

    The class must declare its own ``kind`` and ``family`` (a subclass inherits neither silently), and the kind
    must be new: a mistake here is a bug in kalammodel, reported at import time.
    """
    kind = cls.__dict__.get("kind")
    family = cls.__dict__.get("family")
    if not isinstance(kind, str) or not kind:
        raise InternalError(f"step class {cls.__qualname__} declares no 'kind' of its own")
    if not isinstance(family, StepFamily):
        raise InternalError(
            f"step class {cls.__qualname__} ({kind!r}) declares no StepFamily 'family' of its own"
        )
    if "__attrs_attrs__" not in cls.__dict__:  # attrs.has() would narrow cls to type[AttrsInstance]
        raise InternalError(f"step class {cls.__qualname__} ({kind!r}) is not an attrs class")
    if kind in STEP_TYPES:
        raise InternalError(
            f"step kind {kind!r} registered twice: {STEP_TYPES[kind].__qualname__}, {cls.__qualname__}"
        )
    STEP_TYPES[kind] = cls
    return cls


# ---------------------------------------------------------------------- rendering helpers shared by the families


def _show(value: Any) -> str:
    return repr(value)


def _row_text(row: tuple[Any, ...]) -> str:
    return "(" + ", ".join(_show(v) for v in row) + ")"


def _where_text(where: Predicate | None) -> str:
    return "" if where is None else f", where={where.render()!r}"
