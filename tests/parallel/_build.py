"""Builders of hand-made parallel histories over the reference model (tests/parallel)."""

from __future__ import annotations

from typing import Any

from kalammodel.history import Operation, Status
from kalammodel.model import ACTOR_ROLES, Cmp, Column, ColumnType, Model, Outcome, TableSpec
from kalammodel.steps import Count, Delete, Insert, Select, Update

B = ColumnType.BIGINT
STAR = ("id", "v", "_seq", "_deleted")


def model_with(kind: str = "USER", rows: dict[int, int] | None = None, actor: str = "user1") -> Model:
    """A model with table ``t (id BIGINT PK, v BIGINT)`` of ``kind`` holding ``rows`` (id -> v) of ``actor``."""
    model = Model(actors=dict(ACTOR_ROLES))
    model.create_table("root", TableSpec("t", kind, [Column("id", B, primary_key=True), Column("v", B)]))
    for k, v in (rows or {}).items():
        model.insert(actor, "t", ["id", "v"], [B, B], [(k, v)])
    return model


def insert(k: int, v: int, actor: str = "user1", table: str = "t") -> Insert:
    return Insert(actor, table, ("id", "v"), (B, B), ((k, v),))


def update(k: int, v: int, actor: str = "user1") -> Update:
    return Update.by_pk(actor, "t", "id", B, k, [("v", B, v)])


def delete(k: int, actor: str = "user1") -> Delete:
    return Delete.by_pk(actor, "t", "id", B, k)


def get(k: int, actor: str = "user1") -> Select:
    return Select(actor, "t", where=Cmp("id", B, "=", k))


def scan(actor: str = "user1") -> Select:
    return Select(actor, "t", order_by=(("id", False),))


def count(actor: str = "user1") -> Count:
    return Count(actor, "t")


def ok(n: int = 1) -> Outcome:
    return Outcome(ok=True, row_count=n)


def rows(*pairs: tuple[int, int]) -> Outcome:
    return Outcome(
        ok=True, columns=STAR, rows=tuple((k, v, 1000 + k, False) for k, v in pairs), row_count=len(pairs)
    )


def counted(n: int) -> Outcome:
    return Outcome(ok=True, columns=("n",), rows=((n,),), row_count=1)


DUPLICATE = Outcome(ok=False, status=400, code="SQL_EXECUTION_ERROR", message="primary key 1 already exists")


def op(client: int, step: Any, invoke: float, ret: float | None, outcome: Outcome | None) -> Operation:
    """One operation; ``ret`` None: indeterminate; an error outcome: failed."""
    if ret is None:
        return Operation(client, step, invoke, None, None, Status.INDETERMINATE)
    assert outcome is not None
    return Operation(client, step, invoke, ret, outcome, Status.OK if outcome.ok else Status.FAILED)
