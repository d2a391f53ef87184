"""The exceptions kalammodel raises.

```
KalamModelError                 base of everything kalammodel raises
├── UsageError                  misuse of the tool: bad option, bad workload file, corrupt case file
├── KalamError                  the server or the network (raised by kalammodel.client)
│   ├── SqlError                the server answered an error envelope (.status, .code, .message, .sql)
│   │   └── RateLimited         HTTP 429 after the bounded retries
│   ├── AuthError               login, token or WebSocket authentication refused
│   ├── TransportError          connection refused, reset or closed; a reply that is not the protocol
│   │   └── ConnectionClosed    a WebSocket closed (.code, .reason)
│   └── DeadlineExceeded        a wait passed its deadline
├── Divergence                  the server disagrees with the reference model: a finding, not a crash
└── InternalError               a bug in kalammodel itself: please file a bug
```
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = [
    "AuthError",
    "ConnectionClosed",
    "DeadlineExceeded",
    "Divergence",
    "InternalError",
    "Invariant",
    "KalamError",
    "KalamModelError",
    "RateLimited",
    "SqlError",
    "TransportError",
    "UsageError",
]


class KalamModelError(Exception):
    """Base class of every exception kalammodel raises."""


class UsageError(KalamModelError):
    """Raised when the tool is used wrongly: a bad option, workload file or case file.

    The message names the offending value and says what to do instead.
    """


class KalamError(KalamModelError):
    """Raised by the wire client when the server or the network fails a request."""


class SqlError(KalamError):
    """Raised when ``/v1/api/sql`` (or an auth endpoint) answers with an error envelope."""

    def __init__(self, status: int | None, code: str, message: str, sql: str | None = None, body: Any = None):
        self.status = status
        self.code = code
        self.message = message
        self.sql = sql
        self.body = body
        where = f" for {sql!r}" if sql else ""
        origin = f"HTTP {status} " if status else ""
        super().__init__(f"{origin}{code}: {message}{where}")


class RateLimited(SqlError):
    """Raised when the server still answers 429 after the client's bounded retries.

    Likely cause: the server runs with KalamDB's default rate limits (100 queries/s per user). Start it
    with the raised limits of docs/kalamdb-test-server.toml.
    """


class AuthError(KalamError):
    """Raised when a login, a token or a WebSocket authentication is refused."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        self.status = status
        self.code = code
        self.message = message
        super().__init__(message)


class TransportError(KalamError):
    """Raised when the connection fails: refused, reset, closed, or a reply that is not the protocol."""


class ConnectionClosed(TransportError):
    """Raised to every waiter when a WebSocket connection closes."""

    def __init__(self, code: int | None, reason: str = ""):
        self.code = code
        self.reason = reason
        super().__init__(f"WebSocket closed (code={code}, reason={reason!r})")


class DeadlineExceeded(KalamError):
    """Raised when a wait on the network passes its deadline. Nothing in kalammodel waits forever."""


class Invariant(str, enum.Enum):
    """What a :class:`Divergence` says broke; ``docs/invariants.md`` explains each. A ``str``: it compares
    equal to its name and is written to case files as that name."""

    ISOLATION = "isolation"
    UNIQUENESS = "uniqueness"
    HOT_COLD_CONSISTENCY = "hot_cold_consistency"
    SOFT_DELETE = "soft_delete"
    LIVE_QUERY = "live_query"
    RBAC = "rbac"
    SCHEMA_EVOLUTION = "schema_evolution"
    STORAGE_ROUTING = "storage_routing"
    COLD_FILES = "cold_files"
    STREAM_TTL = "stream_ttl"
    READ_ALL_COMPLETE = "read_all_complete"
    DURABILITY = "durability"
    AVAILABILITY = "availability"
    OUTCOME = "outcome"
    #: a concurrent history that no order of its operations explains (kalammodel.history)
    LINEARIZABILITY = "linearizability"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, name: object) -> Invariant:
        """The invariant called ``name``; :class:`UsageError` naming the known ones otherwise."""
        try:
            return cls(name)
        except ValueError:
            known = ", ".join(i.value for i in cls)
            raise UsageError(f"unknown invariant {name!r}: expected one of {known}") from None


#: the fields of a Divergence, in order; each is read-only once it is built
_DIVERGENCE_FIELDS = (
    "invariant",
    "message",
    "step_index",
    "step",
    "request",
    "actor",
    "expected",
    "actual",
    "namespace",
)


class Divergence(KalamModelError):
    """The server disagrees with the reference model. This is a finding, reported as a bug candidate.

    Carries the invariant that broke, the index and record of the step, what went over the wire, the
    acting user, the expected and actual outcomes, and the example's namespace. Immutable: a changed
    divergence is a new one (:meth:`evolve`), so what was raised is what gets reported.
    """

    invariant: Invariant
    message: str
    step_index: int | None
    step: Any  # a kalammodel.steps.Step: errors is the lowest layer and cannot import it
    request: str | None
    actor: str | None
    expected: Any
    actual: Any
    namespace: str | None

    def __init__(
        self,
        invariant: Invariant | str,
        message: str,
        *,
        step_index: int | None = None,
        step: Any = None,
        request: str | None = None,
        actor: str | None = None,
        expected: Any = None,
        actual: Any = None,
        namespace: str | None = None,
    ):
        values = (
            Invariant.parse(invariant),
            message,
            step_index,
            step,
            request,
            actor,
            expected,
            actual,
            namespace,
        )
        for name, value in zip(_DIVERGENCE_FIELDS, values):
            object.__setattr__(self, name, value)
        super().__init__(self.render())

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _DIVERGENCE_FIELDS:
            raise AttributeError(
                f"Divergence.{name} is read-only: build a new one with divergence.evolve({name}=...)"
            )
        super().__setattr__(name, value)

    def __reduce__(self) -> tuple[Any, ...]:  # pickle and copy: rebuilt through the constructor
        fields = {name: getattr(self, name) for name in _DIVERGENCE_FIELDS}
        return (_rebuild_divergence, (fields,))

    def evolve(self, **changes: Any) -> Divergence:
        """A copy with ``changes`` applied (the keyword arguments of the constructor)."""
        unknown = sorted(set(changes) - set(_DIVERGENCE_FIELDS))
        if unknown:
            raise TypeError(f"Divergence has no field(s) {unknown}; fields: {list(_DIVERGENCE_FIELDS)}")
        fields = {name: getattr(self, name) for name in _DIVERGENCE_FIELDS}
        fields.update(changes)
        return Divergence(fields.pop("invariant"), fields.pop("message"), **fields)

    def render(self) -> str:
        lines = [f"[{self.invariant}] {self.message}"]
        if self.step_index is not None:
            lines.append(f"  at step #{self.step_index}: {self.step!r}")
        if self.actor is not None:
            lines.append(f"  acting user: {self.actor}")
        if self.request is not None:
            lines.append(f"  request: {self.request}")
        if self.expected is not None or self.actual is not None:
            lines.append(f"  expected: {self.expected!r}")
            lines.append(f"  actual:   {self.actual!r}")
        return "\n".join(lines)


def _rebuild_divergence(fields: dict[str, Any]) -> Divergence:
    fields = dict(fields)
    return Divergence(fields.pop("invariant"), fields.pop("message"), **fields)


class InternalError(KalamModelError):
    """A bug in kalammodel itself, not in the server under test. Please file a bug with the traceback."""
