"""Steps: every operation the tester performs, as frozen data (docs/ARCHITECTURE.md "Steps").

A step knows how to render itself as requests (:meth:`Step.requests`) and how it changes the model and what
outcome the model predicts (:meth:`Step.apply`, one expectation per request). Steps without a request
(``AwaitFlush``, ``Pause``) return one *runner action* (``ExpectFlushDone``, ``ExpectPause``) instead.

Every step carries its acting identity (``actor``, a pool name such as ``root``, ``dba``, ``svc``, ``user1``)
and an optional ``as_user``: a user id the request runs as via ``EXECUTE AS USER`` (PROTOCOL §6.3). Tables are
named by their short name; ``requests(ns)`` qualifies them.

``step_to_data`` / ``step_from_data`` turn steps into JSON-able dicts and back (``{"kind": "insert", ...}``);
bad data raises :class:`~kalammodel.errors.UsageError` naming the kind and the field.

Layout: :mod:`.base` (``Step``, ``Request``, ``StepFamily``, ``register`` and ``STEP_TYPES``), :mod:`.codec`
(the JSON codec and the field converters), and one module per :class:`StepFamily`: :mod:`.dml`, :mod:`.reads`,
:mod:`.ddl`, :mod:`.flush`, :mod:`.live`, :mod:`.probes`, :mod:`.actions`.
"""

from __future__ import annotations

# The family modules are imported in StepFamily order: registration, hence STEP_TYPES, follows it.
from . import dml, reads, ddl, flush, live, probes, actions  # noqa: I001, F401  # isort: skip
from ..model import render_value
from .actions import Pause, Restart
from .base import STEP_TYPES, Request, Step, StepFamily, register
from .codec import step_from_data, step_to_data
from .ddl import AlterAddColumn, AlterDropColumn, CreateTable
from .dml import Delete, Insert, InsertNamingDroppedColumn, StreamInsert, StreamUpdate, Update, UpdateExpr
from .flush import AwaitFlush, Flush, StartFlush
from .live import LIVE_STEPS, NextBatch, ResubscribeFromSeq, Subscribe, Unsubscribe, subscription_sql
from .probes import ProbeCreateShared, ProbeExecuteAs, ProbeSharedWrite, ProbeSystemRead
from .reads import Count, Select, SelectDeleted, StreamSelect

__all__ = [
    "AlterAddColumn",
    "AlterDropColumn",
    "AwaitFlush",
    "Count",
    "CreateTable",
    "Delete",
    "Flush",
    "Insert",
    "InsertNamingDroppedColumn",
    "LIVE_STEPS",
    "NextBatch",
    "Pause",
    "ProbeCreateShared",
    "ProbeExecuteAs",
    "ProbeSharedWrite",
    "ProbeSystemRead",
    "Request",
    "Restart",
    "ResubscribeFromSeq",
    "STEP_TYPES",
    "Select",
    "SelectDeleted",
    "StartFlush",
    "Step",
    "StepFamily",
    "StreamInsert",
    "StreamSelect",
    "StreamUpdate",
    "Subscribe",
    "Unsubscribe",
    "Update",
    "UpdateExpr",
    "register",
    "render_value",
    "step_from_data",
    "step_to_data",
    "subscription_sql",
]
