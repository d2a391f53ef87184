"""The embedded KalamDB-compatible server: an independent implementation of PROTOCOL.md for the tester.

Run it with ``python -m kalammodel.server --port 0 --data-dir D``, or in-process with ``create_app``.
"""

from __future__ import annotations

from ._app import create_app
from ._engine import Engine
from ._faults import FAULTS
from ._types import ChangeEvent, LiveError, LivePlan, Principal

__all__ = ["FAULTS", "ChangeEvent", "Engine", "LiveError", "LivePlan", "Principal", "create_app"]
