"""Concurrent histories and their linearizability check against a sequential model.

- :class:`HistoryRecorder` records what several client threads sent and got (:class:`Operation` with a
  :class:`Status`: ok, failed, indeterminate); ``history_to_data`` / ``history_from_data`` with a
  :class:`Codec` make it JSON.
- :class:`SequentialSpec` is what the checker needs of a model (immutable states, a fingerprint, an optional
  partition into independent parts: :func:`connected_parts`).
- :func:`check` decides linearizability (Wing–Gong/Lowe search as in Porcupine) and returns a
  :class:`Verdict`; a non-linearizable one names a minimal set of operations that cannot be ordered.

See docs/concurrency.md.
"""

from __future__ import annotations

from ._checker import Result, Verdict, check
from ._history import Codec, HistoryRecorder, Operation, Status, history_from_data, history_to_data
from ._spec import SequentialSpec, connected_parts, describe_operation, partition_of

__all__ = [
    "Codec",
    "HistoryRecorder",
    "Operation",
    "Result",
    "SequentialSpec",
    "Status",
    "Verdict",
    "check",
    "connected_parts",
    "describe_operation",
    "history_from_data",
    "history_to_data",
    "partition_of",
]
