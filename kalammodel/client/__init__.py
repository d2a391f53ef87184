"""The wire client of KalamDB: HTTP SQL API, auth, live queries over WebSocket, cell decoding.

```python
from kalammodel.client import KalamClient, LiveConnection

c = KalamClient.bootstrap("http://127.0.0.1:8080", "RootPass123!")
c.execute("CREATE NAMESPACE app")
rows = c.read_all("app.notes", order_by="id").dicts()
conn = LiveConnection.connect(c.base_url, c.token)
ack, batches = conn.subscribe("s1", "SELECT * FROM app.notes", options={}).collect_snapshot()
```

Errors are those of :mod:`kalammodel.errors`: :class:`~kalammodel.errors.SqlError` for an error envelope,
:class:`~kalammodel.errors.RateLimited`, :class:`~kalammodel.errors.AuthError`,
:class:`~kalammodel.errors.TransportError` / :class:`~kalammodel.errors.ConnectionClosed` and
:class:`~kalammodel.errors.DeadlineExceeded`.
"""

from __future__ import annotations

from ._ahead import Pending
from ._http import TERMINAL_JOB_STATUSES, KalamClient, quote_literal, validate_user_id
from ._results import (
    Column,
    QueryResult,
    SqlResponse,
    decode_cell,
    decode_live_row,
    decode_query_result,
    decode_sql_response,
    parse_columns,
)
from ._ws import LiveConnection, LiveMessage, Subscription, ws_url

__all__ = [
    "Column",
    "KalamClient",
    "LiveConnection",
    "LiveMessage",
    "Pending",
    "QueryResult",
    "SqlResponse",
    "Subscription",
    "TERMINAL_JOB_STATUSES",
    "decode_cell",
    "decode_live_row",
    "decode_query_result",
    "decode_sql_response",
    "parse_columns",
    "quote_literal",
    "validate_user_id",
    "ws_url",
]
