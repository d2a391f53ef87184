"""Records shared between the engine and the WebSocket module (`_ws.py`).

These are the engine hooks' argument and result types (docs/ARCHITECTURE.md "Engine hooks"):

- ``Principal``: who a token belongs to (``user_id``, ``role`` in ``user|service|dba|system``).
- ``LivePlan``: a validated live query (§10.5).
- ``LiveError``: a refused subscription, with a §10.4 error code.
- ``ChangeEvent``: one committed row change (one per row, in commit order).
- ``LiveEngine``: the hooks themselves, as ``_ws.py`` and ``_live.py`` call them (``Engine`` provides them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs

__all__ = ["ChangeEvent", "LiveEngine", "LiveError", "LivePlan", "Principal"]


@attrs.frozen
class Principal:
    """The authenticated caller: user id and current role (``user``, ``service``, ``dba``, ``system``)."""

    user_id: str
    role: str


@attrs.frozen
class LivePlan:
    """A subscription the engine accepted (§10.5).

    ``table_id`` is ``"ns.t"``; ``kind`` is ``USER``, ``SHARED`` or ``STREAM``; ``owner`` is the subscriber's user
    id for USER/STREAM tables and None for SHARED; ``schema`` is the list of §2.3 schema field dicts for the ack
    (listed columns, or every column incl. ``_seq``/``_deleted`` for ``*``); ``columns`` are the projected names in
    that order; ``where`` is the sqlglot WHERE expression (without the ``WHERE`` node) or None.
    """

    table_id: str
    kind: str
    owner: str | None
    schema: list[dict[str, Any]]
    columns: list[str]
    where: Any = None
    sql: str = ""


class LiveError(Exception):
    """A subscription the engine refused: ``code`` is one of §10.4 (``INVALID_SQL``, ``NOT_FOUND``,
    ``UNAUTHORIZED``, ``UNSUPPORTED``, ...), ``message`` the human text."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


@attrs.frozen
class ChangeEvent:
    """One committed row change, delivered to every change listener right after the commit.

    ``change_type`` is ``insert``, ``update`` or ``delete``. ``new_row`` is the full row after the change as a dict
    of python values keyed by column name, including ``_seq`` (int) and ``_deleted`` (bool): for a soft delete it
    is the tombstone (all values copied, the new ``_seq``, ``_deleted=True``); for a STREAM hard delete it is the
    deleted row with ``_deleted=True``. ``old_row`` is the previous full row (update, delete) or None (insert).
    ``owner`` is the row's user id for USER/STREAM tables, None for SHARED. ``seq`` equals ``new_row["_seq"]``.
    """

    table_id: str
    owner: str | None
    change_type: str
    new_row: dict[str, Any]
    old_row: dict[str, Any] | None
    seq: int


class LiveEngine(Protocol):
    """The engine hooks of docs/ARCHITECTURE.md ("Engine hooks used by _ws.py")."""

    def verify_token(self, token: str) -> Principal:
        """The principal of a bearer access token; raises on a bad token."""

    def plan_subscription(self, principal: Principal, sql: str) -> LivePlan:
        """A validated live query; raises ``LiveError(code, message)``."""

    def live_rows(self, plan: LivePlan) -> list[dict[str, Any]]:
        """Visible rows of the plan's scope, full dicts incl. ``_seq``/``_deleted``, ascending ``_seq``."""

    def add_change_listener(self, callback: Callable[[ChangeEvent], None]) -> None:
        """Call ``callback(event)`` after each committed row change."""
