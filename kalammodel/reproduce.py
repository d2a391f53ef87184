"""The helpers of the regression tests that ``kalammodel export --format pytest`` writes.

An exported test file holds the case's requests as data and a few lines of calls into this module; it needs
only :mod:`kalammodel.client` and a KalamDB server (``KALAMDB_URL``, ``KALAMDB_ROOT_PASSWORD``), not the tester
(no runner, model or corpus). :class:`CaseServer` prepares a fresh namespace and the acting users and cleans up;
:func:`check_outcome` asserts what kalammodel's model expected at the diverging request.

The expectation arrives as JSON data (a ``kalammodel.model`` expectation record with its class under
``type``): ``ExpectRows`` (expected rows present as a multiset, no unexpected rows, row counts), ``ExpectError``
(the error code and HTTP status), ``ExpectCount``, ``ExpectOk`` (the numbers); a plain list of rows is compared
as a multiset.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import pytest

from kalammodel.client import KalamClient, QueryResult, SqlResponse
from kalammodel.errors import SqlError

__all__ = ["CaseServer", "check_outcome", "flush_job"]

_JOB = re.compile(r"Job ID: ([A-Z]{2}-[0-9a-f]+)")


class CaseServer:
    """A fresh namespace ``<case namespace>_<random>`` on the server, with every acting user created (an existing
    user gets a fresh password and its role reset) and logged in; dropped again on exit."""

    def __init__(self, url: str, root_password: str, case_namespace: str, actors: Mapping[str, str]):
        self.url = url
        self.case_namespace = case_namespace
        self.namespace = f"{case_namespace}_{uuid.uuid4().hex[:6]}"
        self.root = KalamClient.bootstrap(url, root_password)
        self._clients: dict[str, KalamClient] = {"root": self.root}
        self._actors = dict(actors)

    def __enter__(self) -> CaseServer:
        try:
            self.root.execute(f"CREATE NAMESPACE {self.namespace}")
            for actor, role in self._actors.items():
                self._clients[actor] = self._user(actor, role)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _user(self, actor: str, role: str) -> KalamClient:
        password = secrets.token_urlsafe(12) + "aA1!"
        try:
            self.root.execute(f"CREATE USER '{actor}' WITH PASSWORD '{password}' ROLE {role}")
        except SqlError:  # the user exists: reset its password and role for this test
            self.root.execute(f"ALTER USER '{actor}' SET PASSWORD '{password}'")
            self.root.execute(f"ALTER USER '{actor}' SET ROLE {role}")
        return KalamClient.login(self.url, actor, password)

    def client(self, actor: str) -> KalamClient:
        """The logged-in client of ``actor`` (``root`` included)."""
        return self._clients[actor]

    def rebase(self, sql: str) -> str:
        """``sql`` with the case's namespace replaced by this test's own."""
        return sql.replace(self.case_namespace, self.namespace)

    def settle(self, response: SqlResponse | None) -> None:
        """Wait (as root) for the flush job that ``response`` started, if any."""
        job = flush_job(response)
        if job is not None:
            self.root.wait_for_job(job)

    def close(self) -> None:
        try:
            self.root.execute(f"DROP NAMESPACE IF EXISTS {self.namespace}")
        finally:
            for client in self._clients.values():
                client.close()


def flush_job(response: SqlResponse | None) -> str | None:
    """The id of the flush job a ``STORAGE FLUSH`` answer names, or None."""
    for result in response.results if response is not None else []:
        match = _JOB.search(result.message or "")
        if match:
            return match.group(1)
    return None


def _key(value: Any) -> str:  # Any: a cell or a row
    return json.dumps(value, sort_keys=True, default=str)


def _last(response: SqlResponse | None) -> QueryResult | None:
    return response.results[-1] if response is not None and response.results else None


def _check_rows(response: SqlResponse | None, expected: Mapping[str, Any]) -> None:
    """ExpectRows: every expected row is there (as a multiset); every other row is one of maybe_rows."""
    result = _last(response)
    names = list(result.column_names) if result is not None else []
    rows = [list(row) for row in result.rows] if result is not None else []
    columns = expected.get("columns") or names
    unchecked = set(expected.get("unchecked") or ())
    keep = [i for i, name in enumerate(columns) if name not in unchecked]
    where = {name: i for i, name in enumerate(names)}
    missing = [columns[i] for i in keep if columns[i] not in where]
    assert not missing, f"the answer lacks columns {missing} (it has {names})"
    actual = Counter(_key([row[where[columns[i]]] for i in keep]) for row in rows)
    wanted = Counter(_key([row[i] for i in keep]) for row in expected.get("rows") or [])
    maybe = {_key([row[i] for i in keep]) for row in expected.get("maybe_rows") or []}
    absent = wanted - actual
    assert not absent, f"rows the model expects are missing: {sorted(absent)}"
    extra = sorted(row for row in (actual - wanted) if row not in maybe)
    assert not extra, f"rows the model does not expect: {extra}"
    if expected.get("exact_size") is not None:
        assert len(rows) == expected["exact_size"], f"expected {expected['exact_size']} rows, got {len(rows)}"
    if expected.get("size_range"):
        low, high = expected["size_range"]
        assert low <= len(rows) <= high, f"expected {low}..{high} rows, got {len(rows)}"


def _check_plain_rows(response: SqlResponse | None, expected: Sequence[Any]) -> None:
    """A plain list of rows (dicts or lists), compared as a multiset."""
    result = _last(response)
    actual: list[Any]
    if expected and all(isinstance(row, dict) for row in expected):
        keys = sorted({key for row in expected for key in row})
        actual = [{key: row.get(key) for key in keys} for row in (result.dicts() if result else [])]
    else:
        actual = [list(row) for row in (result.rows if result else [])]
    assert Counter(map(_key, actual)) == Counter(map(_key, expected)), "the rows differ from the model's"


def _check_error(expected: Mapping[str, Any], response: SqlResponse | None, error: SqlError | None) -> None:
    codes = expected.get("codes") or []
    assert error is not None, f"expected an error {codes}, the server answered {response and response.raw}"
    assert not codes or error.code in codes, f"expected error code {codes}, got {error.code}: {error.message}"
    if expected.get("status") is not None:
        assert error.status == expected["status"], f"expected HTTP {expected['status']}, got {error.status}"


def check_outcome(expected: Any, response: SqlResponse | None, error: SqlError | None) -> None:  # Any: JSON
    """Assert the outcome kalammodel's model expected (``expected``: a model expectation as JSON data)."""
    kind = expected.get("type") if isinstance(expected, dict) else None
    if kind == "ExpectError":
        _check_error(expected, response, error)
        return
    assert error is None, f"expected success, the server answered {error}"
    result = _last(response)
    if kind == "ExpectRows":
        _check_rows(response, expected)
    elif kind == "ExpectCount":
        assert result is not None, "expected a count, the server answered no result"
        value = int(result.rows[0][0])
        low, high = expected["low"], expected["high"]
        assert low <= value <= high, f"expected {low}..{high}, got {value}"
    elif kind == "ExpectOk":
        low, high = expected.get("affected"), expected.get("affected_max")
        if low is not None:
            high = low if high is None else high
            count = result.row_count if result is not None else 0
            assert low <= (count or 0) <= high, f"expected {low}..{high} affected rows, got {count}"
    elif kind in ("ExpectFlush", "ExpectFlushDone", "ExpectPause"):
        pass
    elif isinstance(expected, list):
        _check_plain_rows(response, expected)
    else:
        pytest.skip(f"kalammodel cannot turn the expectation {expected!r} into an assertion; compare by hand")
