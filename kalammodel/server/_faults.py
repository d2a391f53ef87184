"""Planted defects of the embedded server, each off by default and switched on by name at startup.

Each fault imitates a realistic KalamDB failure so that the tester can prove it finds it. The engine asks
``active(name)`` at the exact place where the defect lives; ``_ws.py`` implements the live-query ones.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable

__all__ = ["FAULTS", "active", "configure", "enabled", "rng"]

FAULTS: dict[str, str] = {
    "user_select_leak": "a USER-table SELECT whose WHERE has a range predicate also returns another user's rows",
    "live_cross_user": "a live subscription on a USER table also receives other users' change events",
    "flush_keeps_hot": "flush writes Parquet but leaves the versions hot: duplicate primary keys in reads after flush",
    "delete_resurrects_after_flush": "flush drops tombstones: a row deleted after it was flushed reappears after the next flush",
    "cold_update_lost": "an UPDATE of a row that lives only in cold storage is lost at the next flush",
    "flush_read_gap": "reads during a running flush miss the rows being moved",
    "snapshot_has_more_early": "the initial-data batch says has_more=false while rows remain",
    "live_delete_missing": "soft deletes send no change event to live subscriptions",
    "execute_as_wrong_partition": "EXECUTE AS USER writes land in the caller's partition instead of the target's",
    "user_writes_private_shared": "a 'user' role can write a PRIVATE shared table",
    "readd_column_old_values": "after DROP COLUMN and ADD COLUMN of the same name, the old values show again",
    "stream_never_expires": "STREAM-table rows never expire (TTL ignored at read time)",
    "manifest_missing_file": "manifest.json lists a segment whose Parquet file is missing",
    "from_seq_replays": "a subscription with from_seq_id replays the row at from_seq_id itself",
    # twins of docs/kalamdb-findings.md: each imitates a defect that really shipped in KalamDB 0.4.3-rc.4
    "deleted_key_blocked_after_flush": "finding 2: a primary key deleted after a flush cannot be inserted again "
    "(the hot tombstone does not hide the flushed version from the duplicate check)",
    "order_by_unselected_uses_pk": "finding 7: ORDER BY a column that is not selected is overridden by the "
    "default primary-key order",
    "order_limit_resorted_by_pk": "finding 10: ORDER BY <non-key column> ... LIMIT is re-sorted by primary key, "
    "and live snapshot batches (ORDER BY _seq LIMIT n inside) come in primary-key order",
    "live_update_lost_after_add_column": "finding 11: after ALTER TABLE ADD COLUMN, a subscription opened before "
    "it receives no UPDATE events",
    "acknowledged_writes_lost": "writes are acknowledged before they are durable: a SIGKILL loses the last ones",
    "random_flaky_select": "with probability 0.5 a SELECT drops its last row (a flaky failure)",
    # -- KalamDB's own defects the embedded server used to copy (issue 14) --------------------------------
    "live_filter_silent_skip": "a live filter with IN or BETWEEN is acknowledged, then every change is skipped "
    "in silence (KalamDB's live evaluator lacks them)",
    "live_buffer_drops_oldest": "changes buffered while a snapshot is pulled are capped (at 2 here, 1024 in "
    "KalamDB) by dropping the oldest in silence",
    "in_lists_folded_false": "SELECT lets DataFusion's simplifier fold `c IN (a) AND c IN (b)` to FALSE even "
    "when c is NULL (docs/kalamdb-findings.md #12)",
    # twins of docs/kalamdb-findings.md 3, 5, 6, 8, 9 (the DML/DDL surface of issue 14)
    "omitted_not_null_invented": "an INSERT omitting a NOT NULL column without DEFAULT stores the type's zero "
    "value instead of failing (finding 5)",
    "stream_delete_without_pk_noop": "DELETE on a STREAM table without PRIMARY KEY deletes nothing and answers "
    "'Deleted 0 row(s)' (finding 8)",
    "stream_delete_counts_distinct_pks": "DELETE on a STREAM table counts distinct primary-key values, not "
    "deleted rows (finding 9)",
    "drop_pk_column_accepted": "ALTER TABLE DROP COLUMN <primary key> answers success and changes nothing "
    "(finding 6)",
}

_active: frozenset[str] = frozenset()

#: The coin of the faults that fire at random. Seeded from ``KALAMMODEL_FAULT_SEED`` when set, so that a test
#: of flaky-case classification sees the same sequence of coin flips on every run.
rng = random.Random(os.environ.get("KALAMMODEL_FAULT_SEED"))


def configure(names: Iterable[str]) -> None:
    """Switch on exactly ``names`` (raises ValueError naming the valid faults for an unknown one)."""
    global _active
    chosen = [n.strip() for n in names if n and n.strip()]
    unknown = [n for n in chosen if n not in FAULTS]
    if unknown:
        raise ValueError(
            f"unknown fault {', '.join(map(repr, unknown))}; valid faults: {', '.join(sorted(FAULTS))}"
        )
    _active = frozenset(chosen)


def active(name: str) -> bool:
    """True when the planted defect ``name`` is switched on."""
    if name not in FAULTS:
        raise KeyError(f"no fault named {name!r}; valid faults: {', '.join(sorted(FAULTS))}")
    return name in _active


def enabled() -> frozenset[str]:
    """The faults switched on."""
    return _active
