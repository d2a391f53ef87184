"""The reference model of KalamDB: pure state, predicates and expectations (no I/O, no Hypothesis).

```python
from kalammodel.model import Model, TableSpec, Column, ColumnType, TableKind, Limits
m = Model(actors={"root": Role.SYSTEM, "user1": Role.USER}, limits=Limits(1000, 100000))
m.clock = time.time()
expectation = m.insert("user1", "t1", ["id", "name"], ["BIGINT", "TEXT"], [(1, "a")])
problem = compare_outcome(expectation, Outcome(ok=True, row_count=1))   # None: agrees
```
"""

from __future__ import annotations

from ._expect import (
    Expectation,
    ExpectCount,
    ExpectError,
    ExpectFlush,
    ExpectFlushDone,
    ExpectOk,
    ExpectPause,
    ExpectRows,
    Outcome,
    compare_outcome,
    compare_rows,
    flush_job_id,
    flush_message_kind,
    row_key,
    unexpected_rows,
)
from ._exprs import EXPR_OPS, OVERFLOW, SetExpr
from ._live import REFUSALS, LiveChange, LiveModel, LiveOptions, LiveSub
from ._model import Model
from ._predicates import (
    And,
    Between,
    Cmp,
    In,
    IsNotNull,
    IsNull,
    Like,
    Not,
    Or,
    Predicate,
    pred_from_data,
    pred_to_data,
)
from ._state import TableState
from ._style import CANONICAL as CANONICAL_STYLE
from ._style import (
    SqlStyle,
    render_alter_add,
    render_alter_drop,
    render_column,
    render_create_table,
    render_delete,
    render_flush,
    render_insert,
    render_select,
    render_update,
)
from ._types import (
    ACTOR_ROLES,
    RESERVED_COLUMNS,
    SYSTEM_COLUMNS,
    AccessLevel,
    Column,
    ColumnType,
    Limits,
    Role,
    TableKind,
    TableSpec,
    canonical_json,
    render_timestamp,
    render_value,
)

__all__ = [
    "ACTOR_ROLES",
    "AccessLevel",
    "And",
    "Between",
    "CANONICAL_STYLE",
    "Cmp",
    "Column",
    "ColumnType",
    "EXPR_OPS",
    "ExpectCount",
    "ExpectError",
    "ExpectFlush",
    "ExpectFlushDone",
    "ExpectOk",
    "ExpectPause",
    "ExpectRows",
    "Expectation",
    "In",
    "IsNotNull",
    "IsNull",
    "Like",
    "Limits",
    "LiveChange",
    "LiveModel",
    "LiveOptions",
    "LiveSub",
    "Model",
    "Not",
    "OVERFLOW",
    "Or",
    "Outcome",
    "Predicate",
    "REFUSALS",
    "RESERVED_COLUMNS",
    "Role",
    "SYSTEM_COLUMNS",
    "SetExpr",
    "SqlStyle",
    "TableKind",
    "TableSpec",
    "TableState",
    "canonical_json",
    "compare_outcome",
    "compare_rows",
    "flush_job_id",
    "flush_message_kind",
    "pred_from_data",
    "pred_to_data",
    "render_alter_add",
    "render_alter_drop",
    "render_column",
    "render_create_table",
    "render_delete",
    "render_flush",
    "render_insert",
    "render_select",
    "render_timestamp",
    "render_update",
    "render_value",
    "row_key",
    "unexpected_rows",
]
