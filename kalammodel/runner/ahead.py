"""Sending ahead: reads that verify a step go out as the step ends; their answers are compared later.

A session keeps one :class:`Ahead`: each entry is a pending answer and what compares it. The answers are
compared, oldest first, when the session next sends anything (the next step, ``settle()``, the final
``check_all()``), so the server answers them while the tester draws the next step. Without sending ahead
(``Runner(send_ahead=False)``) every answer is compared at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..client import Pending

__all__ = ["Ahead", "Finish"]

T = TypeVar("T")

#: compares a pending answer: called with the answer's ``result`` (which returns it or raises)
Finish = Callable[[Callable[[], Any]], None]


class Ahead:
    """The reads sent ahead of one session, oldest first. True while any answer waits."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        # Any: each entry's pending answer has its own type, known only to its own finish
        self._entries: list[tuple[Pending[Any], Finish]] = []

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def later(self, pending: Pending[T], finish: Callable[[Callable[[], T]], None]) -> None:
        """Compare ``pending`` with ``finish(pending.result)`` now, or at :meth:`settle` when sending ahead."""
        if self.enabled:
            self._entries.append((pending, finish))
        else:
            finish(pending.result)

    def settle(self) -> None:
        """Compare the answers of every read sent ahead, oldest first; raise the first divergence.

        After a divergence the remaining answers are discarded.
        """
        while self._entries:
            pending, finish = self._entries.pop(0)
            try:
                finish(pending.result)
            except BaseException:
                self.discard()
                raise

    def discard(self) -> None:
        """Drop every answer still pending (their connections are closed)."""
        while self._entries:
            self._entries.pop(0)[0].discard()
