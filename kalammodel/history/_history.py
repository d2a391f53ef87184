"""Records of a concurrent history and the thread-safe recorder that builds one.

A history is what K clients saw, Jepsen/Porcupine style: for every request its client, the request itself
(``op``: for kalammodel a step), when it was sent (``invoke``) and when its answer arrived (``ret``), the answer
(``outcome``) and a :class:`Status`:

- ``OK``: the server answered and the operation took effect at one instant between ``invoke`` and ``ret``;
- ``FAILED``: the server answered an error: the operation definitely had no effect (the model still checks that
  the error is one it admits at that point: a duplicate-key error needs the key to exist);
- ``INDETERMINATE``: a timeout or a broken connection (Jepsen's ``:info``): it may have taken effect at any
  instant after ``invoke``, or never. Its ``ret`` is None and its outcome unknown (None).

Times are seconds (floats) since the recorder's origin, read from ``time.monotonic_ns``: invoke is read before
the request is sent and ret after its answer arrived, so the true interval lies inside the recorded one.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from kalammodel.errors import UsageError

__all__ = ["Codec", "HistoryRecorder", "Operation", "Status", "history_from_data", "history_to_data"]


class Status(enum.Enum):
    """How an operation ended: answered ok, answered an error, or unknown (timeout, broken connection)."""

    OK = "ok"
    FAILED = "failed"
    INDETERMINATE = "indeterminate"


def _check_times(instance: Operation, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if not math.isfinite(instance.invoke):
        raise UsageError(f"Operation.invoke must be a finite number of seconds (got {instance.invoke!r})")
    if instance.status is Status.INDETERMINATE:
        if value is not None:
            raise UsageError(
                f"an indeterminate operation has no return time: it may take effect at any time after its "
                f"invocation (got ret={value!r}); pass ret=None"
            )
    elif value is None or not math.isfinite(value) or value < instance.invoke:
        raise UsageError(
            f"Operation.ret of a {instance.status.value} operation must be a finite time >= invoke "
            f"{instance.invoke!r} (got {value!r})"
        )


@attrs.frozen
class Operation:
    """One request of one client in a concurrent history (see the module docstring for the statuses)."""

    client: int
    op: object  # the request: for kalammodel a step; opaque to the checker, given to the spec
    invoke: float
    ret: float | None = attrs.field(validator=_check_times)
    outcome: object  # the answer (rows, an error code...); None when indeterminate
    status: Status

    @property
    def determinate(self) -> bool:
        """True when the server answered (ok or failed): the operation must be placed inside its interval."""
        return self.status is not Status.INDETERMINATE


def _identity(value: Any) -> Any:  # Any: the codec's default passes JSON-able values through unchanged
    return value


@attrs.frozen
class Codec:
    """How requests and outcomes become JSON-able data and back (kalammodel: step_to_data / step_from_data).

    The default passes values unchanged: right for requests and outcomes that are already JSON values.
    """

    op_to_data: Callable[[object], object] = _identity
    op_from_data: Callable[[object], object] = _identity
    outcome_to_data: Callable[[object], object] = _identity
    outcome_from_data: Callable[[object], object] = _identity


_FIELDS = ("client", "op", "invoke", "ret", "outcome", "status")


def history_to_data(history: Sequence[Operation], codec: Codec | None = None) -> list[dict[str, object]]:
    """The history as a list of JSON-able dicts, one per operation (requests and outcomes through ``codec``)."""
    codec = codec or Codec()
    return [
        {
            "client": o.client,
            "op": codec.op_to_data(o.op),
            "invoke": o.invoke,
            "ret": o.ret,
            "outcome": None if o.status is Status.INDETERMINATE else codec.outcome_to_data(o.outcome),
            "status": o.status.value,
        }
        for o in history
    ]


def history_from_data(data: object, codec: Codec | None = None) -> list[Operation]:
    """The history that :func:`history_to_data` wrote; raises UsageError naming the entry and field."""
    codec = codec or Codec()
    if not isinstance(data, list):
        raise UsageError(f"a history is a list of operations (got {type(data).__name__})")
    out: list[Operation] = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or set(item) != set(_FIELDS):
            raise UsageError(f"history entry {i} must be a dict with exactly the keys {list(_FIELDS)} (got {item!r})")
        client, invoke, ret = item["client"], item["invoke"], item["ret"]
        if not isinstance(client, int) or isinstance(client, bool):
            raise UsageError(f"history entry {i}: 'client' must be an int (got {client!r})")
        for name, value in (("invoke", invoke), ("ret", ret)):
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise UsageError(f"history entry {i}: {name!r} must be a number of seconds (got {value!r})")
        try:
            status = Status(item["status"])
        except ValueError:
            known = ", ".join(s.value for s in Status)
            raise UsageError(f"history entry {i}: unknown status {item['status']!r} (known: {known})") from None
        outcome = None if status is Status.INDETERMINATE else codec.outcome_from_data(item["outcome"])
        try:
            op = Operation(
                client,
                codec.op_from_data(item["op"]),
                float(invoke),
                None if ret is None else float(ret),
                outcome,
                status,
            )
        except UsageError as exc:
            raise UsageError(f"history entry {i}: {exc}") from None
        out.append(op)
    return out


@attrs.define
class _Pending:
    client: int
    op: object
    invoke: float
    done: Operation | None = None


class HistoryRecorder:
    """Records the operations of several client threads; one lock guards the list.

    Usage, on each client's thread::

        token = recorder.invoke(client, step)     # just before the request is sent
        ...
        recorder.ok(token, outcome)                # or fail(token, error) / indeterminate(token)

    :meth:`history` returns every operation sorted by invocation time; one still pending is reported
    indeterminate (its client never saw an answer). Completing a token twice raises UsageError.
    """

    def __init__(self, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock_ns = clock_ns
        self._origin = clock_ns()
        self._lock = threading.Lock()
        self._ops: list[_Pending] = []

    def _now(self) -> float:
        return (self._clock_ns() - self._origin) / 1e9

    def invoke(self, client: int, op: object) -> int:
        """Note that ``client`` sends ``op`` now; returns the token to complete it with."""
        now = self._now()
        with self._lock:
            self._ops.append(_Pending(client, op, now))
            return len(self._ops) - 1

    def _complete(self, token: int, outcome: object, status: Status) -> None:
        now = self._now()
        with self._lock:
            if not 0 <= token < len(self._ops):
                raise UsageError(f"unknown history token {token!r}: tokens come from HistoryRecorder.invoke()")
            p = self._ops[token]
            if p.done is not None:
                raise UsageError(f"history token {token} was already completed as {p.done.status.value}")
            ret = None if status is Status.INDETERMINATE else max(now, p.invoke)
            p.done = Operation(p.client, p.op, p.invoke, ret, outcome, status)

    def ok(self, token: int, outcome: object) -> None:
        """The server answered ``outcome``: the operation took effect before now."""
        self._complete(token, outcome, Status.OK)

    def fail(self, token: int, outcome: object) -> None:
        """The server answered an error (``outcome``): the operation had no effect."""
        self._complete(token, outcome, Status.FAILED)

    def indeterminate(self, token: int) -> None:
        """No answer (timeout, broken connection): the operation may or may not take effect, at any later time."""
        self._complete(token, None, Status.INDETERMINATE)

    def history(self) -> list[Operation]:
        """Every operation so far, sorted by invocation time; still-pending ones as indeterminate."""
        with self._lock:
            ops = [
                p.done or Operation(p.client, p.op, p.invoke, None, None, Status.INDETERMINATE) for p in self._ops
            ]
        return sorted(ops, key=lambda o: o.invoke)
