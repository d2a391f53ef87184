"""The shrunk-case corpus: save, load, replay and export minimal failing step lists.

When Hypothesis has shrunk a failing run to a minimal list of steps, :func:`save_case` writes it to
``shrunk_cases/<invariant>-<fingerprint>.json`` together with what diverged. The file is self-describing
(format tag, format version, kalammodel and server versions), written atomically, and named by a fingerprint of
the failure's signature so that the same bug found twice collapses into one file (the shorter program wins).

Case files are replayed without Hypothesis (:func:`replay_case`, :func:`replay_paths`), shown as a program
(:func:`format_failure`) and exported for a KalamDB bug report as a SQL script (:func:`export_sql`), a pytest
file that needs only ``kalammodel.client`` (:func:`export_pytest`) or a curl script (:func:`export_curl`).

A case file that cannot be read is reported with its name and what is wrong (:class:`CaseFileError`); it never
stops the other files and is never deleted. The layout of the file is documented in ``docs/shrunk-cases.md``.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import hashlib
import json
import math
import os
import pprint
import re
import shlex
import tempfile
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from kalammodel._version import __version__
from kalammodel.errors import UsageError

__all__ = [
    "CLASSIFICATIONS",
    "FLAKY_MIN_RUNS",
    "FORMAT",
    "FORMAT_VERSION",
    "Case",
    "CaseFileError",
    "DivergenceRecord",
    "ReplayOutcome",
    "Replays",
    "SavedCase",
    "Signature",
    "case_files",
    "export_curl",
    "export_pytest",
    "export_sql",
    "format_failure",
    "iter_cases",
    "load_case",
    "replay_case",
    "replay_paths",
    "run_sql_script",
    "save_case",
]

FORMAT = "kalammodel-case"
FORMAT_VERSION = 1
CLASSIFICATIONS = ("deterministic", "flaky", "not_reproducible")
#: A case classified flaky counts as fixed only after this many passing replays in a row.
FLAKY_MIN_RUNS = 5

_ROLE_WORDS = ("user", "service", "dba", "system")
_MAX_TEXT = 4000


class CaseFileError(UsageError):
    """Raised when a case file cannot be used: unreadable, not JSON, truncated, wrong format tag, written by a
    newer kalammodel, a missing or malformed field, or an unknown step kind.

    ``path`` is the file and ``problem`` says what is wrong; the message carries both and what to do.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


# --------------------------------------------------------------------------------------------------- records


@attrs.frozen
class Signature:
    """What identifies a bug: the invariant, the kind of the failing step and the kind of its table."""

    invariant: str
    step_kind: str
    table_kind: str | None = None

    @property
    def fingerprint(self) -> str:
        """Short sha256 of the signature: equal signatures give the same case file name."""
        blob = json.dumps([self.invariant, self.step_kind, self.table_kind], separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def to_data(self) -> dict[str, Any]:
        return {"invariant": self.invariant, "step_kind": self.step_kind, "table_kind": self.table_kind}


@attrs.frozen
class DivergenceRecord:
    """A divergence as stored in a case file: every field JSON-safe (values that are not become their repr)."""

    invariant: str
    message: str
    step_index: int | None = None
    request: str | None = None
    actor: str | None = None
    expected: Any = None
    actual: Any = None
    namespace: str | None = None  # the namespace of the run that found it (to re-base ``request`` on export)
    expected_text: str | None = (
        None  # repr of an expected/actual that is not plain data (e.g. ExpectRows(...))
    )
    actual_text: str | None = None

    @property
    def expected_shown(self) -> str:
        return self.expected_text if self.expected_text is not None else _show(self.expected)

    @property
    def actual_shown(self) -> str:
        return self.actual_text if self.actual_text is not None else _show(self.actual)

    @classmethod
    def from_divergence(cls, divergence: Any) -> DivergenceRecord:
        """Build the record from a :class:`kalammodel.errors.Divergence` (or anything with its attributes)."""
        if isinstance(divergence, DivergenceRecord):
            return divergence
        request = getattr(divergence, "request", None)
        actor = getattr(divergence, "actor", None)
        if request is not None and not isinstance(request, str):
            actor = actor or getattr(request, "actor", None)
            request = _render_request(request)
        elif isinstance(request, str):  # ``str(Request)`` reads "[actor] sql": keep the SQL as sent
            match = _ACTOR_PREFIX.match(request)
            if match:
                actor = actor or match.group(1)
                request = match.group(2)
        index = getattr(divergence, "step_index", None)
        expected = getattr(divergence, "expected", None)
        actual = getattr(divergence, "actual", None)
        return cls(
            invariant=str(getattr(divergence, "invariant", None) or "outcome"),
            message=str(getattr(divergence, "message", None) or divergence),
            step_index=index if isinstance(index, int) and not isinstance(index, bool) else None,
            request=request,
            actor=None if actor is None else str(actor),
            expected=_jsonable(expected),
            actual=_jsonable(actual),
            namespace=getattr(divergence, "namespace", None),
            expected_text=_text_of(expected),
            actual_text=_text_of(actual),
        )

    def to_data(self) -> dict[str, Any]:
        data = {
            "invariant": self.invariant,
            "message": self.message,
            "step_index": self.step_index,
            "request": self.request,
            "actor": self.actor,
            "expected": _jsonable(self.expected),
            "actual": _jsonable(self.actual),
        }
        for name in ("namespace", "expected_text", "actual_text"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        return data

    def render(self) -> str:
        """Multi-line human rendering: invariant and message, acting user, request, expected and actual."""
        lines = [f"[{self.invariant}] {self.message}"]
        if self.step_index is not None:
            lines.append(f"  at step #{self.step_index}")
        if self.actor is not None:
            lines.append(f"  acting user: {self.actor}")
        if self.request is not None:
            lines.append(f"  request:  {self.request}")
        lines.append(f"  expected: {self.expected_shown}")
        lines.append(f"  actual:   {self.actual_shown}")
        return "\n".join(lines)


@attrs.frozen
class Replays:
    """How the steps behaved when replayed before saving (``runs`` = 0: not replayed)."""

    runs: int = 0
    failed: int = 0
    passing: tuple[Any, ...] = ()  # transcripts of passing runs (kept for flaky cases)
    failing: tuple[Any, ...] = ()  # transcripts of failing runs (kept for flaky cases)
    errors: tuple[str, ...] = ()  # tool or transport errors met while replaying

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "runs": self.runs,
            "failed": self.failed,
            "transcripts": {"passing": list(self.passing), "failing": list(self.failing)},
        }
        if self.errors:
            data["errors"] = list(self.errors)
        return data


@attrs.frozen
class Case:
    """A loaded (or about to be saved) shrunk case."""

    steps: tuple[Any, ...]
    divergence: DivergenceRecord
    signature: Signature
    classification: str = "deterministic"
    replays: Replays = Replays()
    workload: str | None = None
    server_version: str | None = None
    server_url: str | None = None
    created_at: str = ""
    kalammodel_version: str = __version__
    format_version: int = FORMAT_VERSION
    actors: Mapping[str, str] = attrs.field(factory=dict)  # acting identity -> role
    path: Path | None = attrs.field(default=None, eq=False)

    @property
    def fingerprint(self) -> str:
        return self.signature.fingerprint

    @property
    def name(self) -> str:
        """``<invariant>-<fingerprint>``: the file stem of this case."""
        return f"{_slug(self.signature.invariant)}-{self.fingerprint}"

    def replay_command(self) -> str:
        """The one-line shell command that replays this case."""
        where = self.path if self.path is not None else Path("shrunk_cases") / f"{self.name}.json"
        return f"kalammodel replay {shlex.quote(_display_path(where))}"

    def to_data(self) -> dict[str, Any]:
        codec = _codec()
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kalammodel_version": self.kalammodel_version,
            "server": {"version": self.server_version, "url": _public_url(self.server_url)},
            "workload": self.workload,
            "created_at": self.created_at,
            "fingerprint": self.fingerprint,
            "signature": self.signature.to_data(),
            "classification": self.classification,
            "replays": self.replays.to_data(),
            "actors": dict(self.actors),
            "steps": [_jsonable(codec.to_data(step)) for step in self.steps],
            "divergence": self.divergence.to_data(),
        }


@attrs.frozen
class SavedCase:
    """What :func:`save_case` did: ``action`` is ``created``, ``replaced`` (the new program is shorter) or
    ``kept`` (an existing file with the same signature has a program at most as long; it was left as it is)."""

    path: Path
    case: Case
    action: str
    note: str = ""


@attrs.frozen
class ReplayOutcome:
    """The result of replaying one case file.

    ``status``: ``fixed`` (the steps now pass), ``failing`` (a divergence again; ``same_invariant`` says whether
    it is the saved one) or ``error`` (a tool or transport error, or a case file that cannot be read).
    """

    status: str
    message: str
    divergence: DivergenceRecord | None = None
    same_invariant: bool | None = None
    path: Path | None = None
    case: Case | None = attrs.field(default=None, eq=False, repr=False)
    pruned: bool = False
    runs: int = 0


# --------------------------------------------------------------------------------------------------- steps


@attrs.frozen
class _Codec:
    to_data: Callable[[Any], dict[str, Any]]
    from_data: Callable[[dict[str, Any]], Any]
    kinds: Mapping[str, Any]


def _codec() -> _Codec:
    """The step codec of :mod:`kalammodel.steps` (imported lazily; unit tests substitute fake steps here)."""
    from kalammodel import steps

    return _Codec(steps.step_to_data, steps.step_from_data, steps.STEP_TYPES)


def _step_kind(step: Any) -> str:
    kind = getattr(step, "kind", None)
    return str(kind) if kind else type(step).__name__


def _describe(step: Any) -> str:
    try:
        return str(step.describe())
    except Exception as exc:  # a describe() bug must not hide the failure being reported
        return f"{_step_kind(step)}(<describe() failed: {exc!r}>)"


def _failing_step(steps: Sequence[Any], record: DivergenceRecord, divergence: Any = None) -> Any:
    step = getattr(divergence, "step", None)
    if step is not None and hasattr(step, "requests"):
        return step
    if record.step_index is not None and 0 <= record.step_index < len(steps):
        return steps[record.step_index]
    return steps[-1] if steps else None


_TABLE_KIND_ATTRS = ("table_kind", "table_type")
_ACTOR_PREFIX = re.compile(r"^\[([A-Za-z0-9_.@-]+)\] (.*)$", re.DOTALL)


def _declared_kind(step: Any) -> tuple[str | None, Any]:
    """(table name, table kind) a step declares: a ``spec`` record (CREATE TABLE) or ``table_kind`` fields."""
    spec = getattr(step, "spec", None)
    if spec is not None and getattr(spec, "name", None):
        return spec.name, getattr(spec, "kind", None)
    for name in _TABLE_KIND_ATTRS:
        value = getattr(step, name, None)
        if value:
            table = getattr(step, "table", None)
            return getattr(table, "name", table), value
    return None, None


def _table_kind(steps: Sequence[Any], failing: Any) -> str | None:
    """The kind (USER, SHARED, STREAM) of the failing step's table, read from the step itself or from the last
    earlier step that declares that table (its CREATE TABLE); None when the steps do not say."""
    if failing is None:
        return None
    _, kind = _declared_kind(failing)
    if kind:
        return _kind_text(kind)
    table = getattr(failing, "table", None)
    if table is None:
        return None
    if not isinstance(table, str):  # a table record carried by the step
        for name in (*_TABLE_KIND_ATTRS, "kind"):
            value = getattr(table, name, None)
            if value:
                return _kind_text(value)
        table = getattr(table, "name", None)
    found = None
    for step in steps:
        if step is failing:
            break
        declared, kind = _declared_kind(step)
        if declared == table and kind:
            found = kind
    return None if found is None else _kind_text(found)


def _kind_text(value: Any) -> str:
    value = getattr(value, "value", value)
    return str(value).upper()


def _render_request(request: Any) -> str:
    sql = str(getattr(request, "sql", request)).strip()
    as_user = getattr(request, "as_user", None)
    if as_user:
        return f"EXECUTE AS USER '{as_user}' ({sql.rstrip(';').strip()})"
    return sql


# --------------------------------------------------------------------------------------------------- JSON


def _jsonable(value: Any, _depth: int = 0) -> Any:
    """``value`` as JSON-safe data: attrs records become dicts (with their class name under ``type``), tuples
    and sets lists, Decimal and non-finite floats strings; anything else its repr."""
    if _depth > 40:
        return repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, _depth + 1)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return {"bytes_hex": bytes(value).hex()}
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, _depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v, _depth + 1) for v in value), key=repr)
    if attrs.has(type(value)):
        data: dict[str, Any] = {}
        for field in attrs.fields(type(value)):
            data[field.name] = _jsonable(getattr(value, field.name), _depth + 1)
        data.setdefault("type", type(value).__name__)
        return data
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return repr(value)


def _text_of(value: Any) -> str | None:
    """The repr of a value that is not plain JSON data (an expectation record, an outcome), else None."""
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return None
    text = repr(value)
    return (
        text
        if len(text) <= _MAX_TEXT
        else text[:_MAX_TEXT] + f"... ({len(text) - _MAX_TEXT} more characters)"
    )


def _show(value: Any, limit: int = _MAX_TEXT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
_PASSWORD = re.compile(r"(?i)\b(password)(\s*[=:]?\s*)'(?:[^']|'')*'")


def _scrub(value: Any, secrets: Sequence[str]) -> Any:
    """Remove credentials from free text (transcripts, messages, requests): the given secrets, JWTs, bearer
    tokens and ``PASSWORD '...'`` literals."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "<redacted>")
        value = _JWT.sub("<token>", value)
        value = _BEARER.sub(r"\1 <token>", value)
        return _PASSWORD.sub(r"\1\2'<redacted>'", value)
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    return value


def _remove_secrets(value: Any, secrets: Sequence[str]) -> Any:
    """Replace exact secrets only (used on step data, whose SQL literals must otherwise stay replayable)."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "<redacted>")
        return value
    if isinstance(value, list):
        return [_remove_secrets(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: _remove_secrets(v, secrets) for k, v in value.items()}
    return value


def _public_url(url: Any) -> str | None:
    """``url`` without user info, query or fragment (a case file never carries credentials or tokens)."""
    if url is None:
        return None
    parts = urllib.parse.urlsplit(str(url))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "divergence"


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(path)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------------- atomic write


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, never a part: a temp file in
    the same directory, fsync, then ``os.replace``. On any failure the temp file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable (POSIX); best effort elsewhere
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# --------------------------------------------------------------------------------------------------- save


def _attr(obj: Any, name: str) -> Any:
    """``getattr`` that treats a property raising (e.g. ``base_url`` of a target not started) as absent."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _server_info(target: Any) -> tuple[str | None, str | None]:
    """(version, public url) of the target's server; the version is read from ``/health`` when needed."""
    if target is None:
        return None, None
    url = None
    for name in ("base_url", "url"):
        value = _attr(target, name)
        if isinstance(value, str) and value:
            url = value
            break
    version = None
    for name in ("server_version", "version"):
        value = _attr(target, name)
        try:
            value = value() if callable(value) else value
        except Exception:  # an unreachable server must not stop a failure from being saved
            value = None
        if isinstance(value, str) and value:
            version = value
            break
    if version is None:
        try:
            health = target.health() if callable(_attr(target, "health")) else _health(url)
            version = str(health.get("version")) if isinstance(health, Mapping) else None
        except Exception:
            version = None
    return version, _public_url(url)


def _health(url: str | None) -> Any:
    if not url:
        return None
    import httpx

    parts = urllib.parse.urlsplit(url)
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    response = httpx.get(base.rstrip("/") + "/health", timeout=5.0)
    response.raise_for_status()
    return response.json()


def _target_secrets(target: Any, runner: Any, extra: Iterable[str]) -> list[str]:
    """Every secret the target, the runner and its actor pool know of (passwords, JWT secret, URL userinfo)."""
    found: list[str] = [s for s in extra if s]
    for obj in (target, _attr(runner, "target"), _attr(runner, "pool")):
        if obj is None:
            continue
        for name in ("root_password", "password", "token", "jwt_secret"):
            value = _attr(obj, name)
            if isinstance(value, str):
                found.append(value)
        password_of = _attr(obj, "password")
        identities = _attr(obj, "identities")
        if callable(password_of) and isinstance(identities, Mapping):
            for name in identities:
                try:
                    found.append(password_of(name))
                except Exception:
                    continue
        for name in ("base_url", "url"):
            url = _attr(obj, name)
            if isinstance(url, str):
                parts = urllib.parse.urlsplit(url)
                found.extend(v for v in (parts.password, parts.query) if v)
    return sorted({s for s in found if isinstance(s, str) and len(s) >= 4}, key=len, reverse=True)


def _actor_roles(steps: Sequence[Any], namespace: str, pool: Any) -> dict[str, str]:
    actors: dict[str, str] = {}
    for step in steps:
        try:
            requests = step.requests(namespace)
        except Exception:
            continue
        for request in requests:
            actor = getattr(request, "actor", None)
            if actor and actor not in actors:
                actors[actor] = _pool_role(pool, actor) or _guess_role(actor)
    return actors


def _pool_role(pool: Any, actor: str) -> str | None:
    if pool is None:
        return None
    roles = getattr(pool, "roles", None)
    if isinstance(roles, Mapping) and isinstance(roles.get(actor), str):
        return roles[actor]
    role_of = getattr(pool, "role", None)
    if callable(role_of):
        try:
            role = role_of(actor)
        except Exception:
            return None
        return role if isinstance(role, str) else None
    return None


def _guess_role(actor: str) -> str:
    """The role of a pool identity by its conventional name: root → system, dba → dba, svc → service."""
    name = actor.lower()
    if name == "root" or name.startswith("system"):
        return "system"
    if name.startswith(("dba", "admin")):
        return "dba"
    if name.startswith(("svc", "service")):
        return "service"
    return "user"


def _infer_namespace(steps: Sequence[Any], request: str | None) -> str | None:
    """The namespace the failing request ran in, recovered by rendering the steps with a sentinel namespace."""
    if not request:
        return None
    sentinel = "kmnssentinel"
    tables: set[str] = set()
    for step in steps:
        try:
            rendered = step.requests(sentinel)
        except Exception:
            continue
        for req in rendered:
            sql = _render_request(req)
            pattern = re.escape(sql).replace(sentinel, r"([A-Za-z][A-Za-z0-9_]*)")
            match = re.fullmatch(pattern, request.strip())
            if match and match.groups():
                return match.group(1)
            tables.update(re.findall(rf"\b{sentinel}\.([A-Za-z0-9_]+)", sql))
    if tables:
        alternatives = "|".join(sorted(map(re.escape, tables), key=len, reverse=True))
        for match in re.finditer(rf"\b([A-Za-z][A-Za-z0-9_]*)\.({alternatives})\b", request):
            if match.group(1).lower() != "system":
                return match.group(1)
    return None


def _result_error(result: Any) -> str | None:
    error = getattr(result, "error", None)
    return None if error is None else str(error)


def _run_once(runner: Any, steps: Sequence[Any]) -> tuple[str, Any, str | None]:
    """Run the steps once: ("pass" | "fail" | "error", RunResult or None, error text)."""
    try:
        result = runner.run_steps(list(steps))
    except Exception as exc:  # a replay that crashes is an error outcome, never a crash of the caller
        return "error", None, f"{type(exc).__name__}: {exc}"
    error = _result_error(result)
    if getattr(result, "divergence", None) is not None:
        return "fail", result, None
    if error is not None:
        return "error", result, error
    if getattr(result, "ok", False):
        return "pass", result, None
    return "error", result, "the runner reported neither success, a divergence nor an error"


def _classify(runner: Any, steps: Sequence[Any], invariant: str, runs: int) -> tuple[str, Replays]:
    passing: list[Any] = []
    failing: list[Any] = []
    errors: list[str] = []
    failed = same = 0
    for _ in range(runs):
        status, result, error = _run_once(runner, steps)
        if status == "fail":
            failed += 1
            if getattr(result.divergence, "invariant", None) == invariant:
                same += 1
            if not failing:
                failing.append(_jsonable(getattr(result, "transcript", [])))
        elif status == "pass":
            if not passing:
                passing.append(_jsonable(getattr(result, "transcript", [])))
        else:
            errors.append(error or "unknown error")
    if failed == runs and same == runs:
        classification = "deterministic"
    elif failed == 0:
        classification = "not_reproducible"
    else:
        classification = "flaky"
    keep = classification == "flaky"
    replays = Replays(
        runs=runs,
        failed=failed,
        passing=tuple(passing) if keep else (),
        failing=tuple(failing) if keep else (),
        errors=tuple(errors[:5]),
    )
    return classification, replays


def save_case(
    directory: str | os.PathLike[str],
    steps: Sequence[Any],
    divergence: Any,
    *,
    target: Any = None,
    workload: Any = None,
    runner: Any = None,
    replays: int = 3,
    namespace: str | None = None,
    secrets: Iterable[str] = (),
) -> SavedCase:
    """Save a shrunk failing step list as ``<directory>/<invariant>-<fingerprint>.json``.

    With a ``runner`` the steps are first replayed ``replays`` times on fresh namespaces and the case is
    classified ``deterministic`` (every replay fails with the same invariant), ``flaky`` (some pass: one passing
    and one failing transcript are kept) or ``not_reproducible`` (none fails). Without a runner the case is
    ``deterministic``: Hypothesis's own final replay of the minimal example failed.

    If a readable file with the same signature exists and its program is not longer, it is kept as it is;
    otherwise it is replaced. An unreadable file is never overwritten: the new case goes to a numbered name.
    Credentials never reach the file: the URL loses user info and query, and known secrets, JWTs and
    ``PASSWORD '...'`` literals in free text are redacted.
    """
    steps = tuple(steps)
    if not steps:
        raise UsageError("save_case needs at least one step; got an empty step list")
    if divergence is None:
        raise UsageError("save_case needs the divergence that the steps produce; got None")
    directory = Path(directory)
    record = DivergenceRecord.from_divergence(divergence)
    if record.namespace is None:
        record = attrs.evolve(record, namespace=namespace or _infer_namespace(steps, record.request))
    failing = _failing_step(steps, record, divergence)
    signature = Signature(
        record.invariant,
        _step_kind(failing) if failing is not None else "unknown",
        _table_kind(steps, failing),
    )
    path = directory / f"{_slug(signature.invariant)}-{signature.fingerprint}.json"

    note = ""
    action = "created"
    if path.exists():
        try:
            existing = load_case(path)
        except CaseFileError as exc:
            path = _free_path(path)
            note = (
                f"kept the unreadable file with the same signature ({exc.problem}); wrote {path.name} instead"
            )
        else:
            if len(existing.steps) <= len(steps):
                return SavedCase(
                    path,
                    existing,
                    "kept",
                    f"{path.name} already holds this failure with {len(existing.steps)} step(s) "
                    f"(this run found {len(steps)})",
                )
            action = "replaced"
            note = f"replaced {len(existing.steps)} step(s) with a shorter program of {len(steps)}"

    pool = getattr(runner, "pool", None)
    if runner is not None and replays > 0:
        classification, replay_record = _classify(runner, steps, record.invariant, replays)
    else:
        classification, replay_record = "deterministic", Replays()
    version, url = _server_info(target if target is not None else getattr(runner, "target", None))
    workload_name = getattr(workload, "name", workload)
    case = Case(
        steps=steps,
        divergence=record,
        signature=signature,
        classification=classification,
        replays=replay_record,
        workload=None if workload_name is None else str(workload_name),
        server_version=version,
        server_url=url,
        created_at=_now(),
        actors=_actor_roles(steps, record.namespace or "ns", pool),
        path=path,
    )
    data = case.to_data()
    secret_values = _target_secrets(target, runner, secrets)
    steps_data = _remove_secrets(data.pop("steps"), secret_values)
    data = _scrub(data, secret_values)
    data["steps"] = steps_data
    _atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")
    return SavedCase(path, case, action, note)


def _free_path(path: Path) -> Path:
    for n in range(2, 1000):
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise UsageError(f"too many unreadable case files named like {path}; remove or repair them")


# --------------------------------------------------------------------------------------------------- load


_REQUIRED = (
    "kalammodel_version",
    "server",
    "workload",
    "created_at",
    "fingerprint",
    "signature",
    "classification",
    "replays",
    "steps",
    "divergence",
)


def _expect(path: Path, value: Any, types: type | tuple[type, ...], where: str) -> Any:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        names = names.replace("NoneType", "null").replace("str", "string").replace("dict", "object")
        raise CaseFileError(
            path, f"field {where} must be {names} (got {value!r}); repair the file or delete it"
        )
    return value


def load_case(path: str | os.PathLike[str]) -> Case:
    """Read and validate a case file; raise :class:`CaseFileError` naming the file and what is wrong."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CaseFileError(
            path, "no such file; give the path of a case file such as shrunk_cases/<name>.json"
        ) from None
    except IsADirectoryError:
        raise CaseFileError(path, "is a directory, not a case file") from None
    except OSError as exc:
        raise CaseFileError(path, f"cannot be read ({exc.strerror or exc}); check its permissions") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CaseFileError(path, f"is not UTF-8 text (byte {exc.start}); it is not a case file") from None
    if not text.strip():
        raise CaseFileError(
            path, "is empty (an interrupted write?); restore it from version control or delete it"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        stripped = text.strip()
        near_end = exc.pos >= len(text.rstrip()) - 1 or exc.msg.startswith("Unterminated string")
        if stripped.startswith("{") and not stripped.endswith("}") and near_end:
            problem = (
                f"is truncated: the JSON stops at line {exc.lineno} column {exc.colno} ({exc.msg}); "
                "restore it from version control or delete it"
            )
        else:
            problem = (
                f"is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); it is not a case file"
            )
        raise CaseFileError(path, problem) from None
    if not isinstance(data, dict):
        raise CaseFileError(path, f"holds a JSON {type(data).__name__}, not a kalammodel case object")
    tag = data.get("format")
    if tag != FORMAT:
        raise CaseFileError(
            path, f"has format tag {tag!r}, expected {FORMAT!r}: it is not a kalammodel case file"
        )
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CaseFileError(path, f"has format_version {version!r}; expected a positive integer")
    if version > FORMAT_VERSION:
        raise CaseFileError(
            path,
            f"was written by a newer kalammodel (format_version {version}; this kalammodel {__version__} reads "
            f"up to {FORMAT_VERSION}); upgrade kalammodel to replay it",
        )
    for name in _REQUIRED:
        if name not in data:
            raise CaseFileError(path, f"is missing field {name!r}; repair the file or delete it")

    server = _expect(path, data["server"], dict, "'server'")
    signature_data = _expect(path, data["signature"], dict, "'signature'")
    for name in ("invariant", "step_kind"):
        if name not in signature_data:
            raise CaseFileError(path, f"is missing field 'signature.{name}'; repair the file or delete it")
        _expect(path, signature_data[name], str, f"'signature.{name}'")
    _expect(path, signature_data.get("table_kind"), (str, type(None)), "'signature.table_kind'")
    signature = Signature(
        signature_data["invariant"], signature_data["step_kind"], signature_data.get("table_kind")
    )

    classification = data["classification"]
    if classification not in CLASSIFICATIONS:
        raise CaseFileError(
            path, f"has classification {classification!r}; expected one of {', '.join(CLASSIFICATIONS)}"
        )
    replays_data = _expect(path, data["replays"], dict, "'replays'")
    runs = _expect(path, replays_data.get("runs", 0), int, "'replays.runs'")
    failed = _expect(path, replays_data.get("failed", 0), int, "'replays.failed'")
    transcripts = _expect(path, replays_data.get("transcripts", {}), dict, "'replays.transcripts'")
    replays = Replays(
        runs=runs,
        failed=failed,
        passing=tuple(_expect(path, transcripts.get("passing", []), list, "'replays.transcripts.passing'")),
        failing=tuple(_expect(path, transcripts.get("failing", []), list, "'replays.transcripts.failing'")),
        errors=tuple(str(e) for e in _expect(path, replays_data.get("errors", []), list, "'replays.errors'")),
    )

    div = _expect(path, data["divergence"], dict, "'divergence'")
    for name in ("invariant", "message"):
        if name not in div:
            raise CaseFileError(path, f"is missing field 'divergence.{name}'; repair the file or delete it")
        _expect(path, div[name], str, f"'divergence.{name}'")
    for name in ("request", "actor", "namespace", "expected_text", "actual_text"):
        _expect(path, div.get(name), (str, type(None)), f"'divergence.{name}'")
    _expect(path, div.get("step_index"), (int, type(None)), "'divergence.step_index'")
    record = DivergenceRecord(
        invariant=div["invariant"],
        message=div["message"],
        step_index=div.get("step_index"),
        request=div.get("request"),
        actor=div.get("actor"),
        expected=div.get("expected"),
        actual=div.get("actual"),
        namespace=div.get("namespace"),
        expected_text=div.get("expected_text"),
        actual_text=div.get("actual_text"),
    )

    steps_data = _expect(path, data["steps"], list, "'steps'")
    if not steps_data:
        raise CaseFileError(path, "has an empty 'steps' list; a case needs at least one step")
    codec = _codec()
    steps = []
    for index, item in enumerate(steps_data):
        if not isinstance(item, dict):
            raise CaseFileError(path, f"step #{index} must be a JSON object (got {item!r})")
        kind = item.get("kind")
        if kind not in codec.kinds:
            known = ", ".join(sorted(codec.kinds))
            raise CaseFileError(
                path,
                f"step #{index} has unknown kind {kind!r} (known kinds: {known}); the file was written by another "
                "kalammodel version or edited by hand",
            )
        try:
            steps.append(codec.from_data(dict(item)))
        except Exception as exc:
            raise CaseFileError(path, f"step #{index} ({kind}) is malformed: {exc}") from None

    actors_data = data.get("actors") or {}
    if not isinstance(actors_data, dict) or not all(isinstance(v, str) for v in actors_data.values()):
        raise CaseFileError(path, f"field 'actors' must map identities to role names (got {actors_data!r})")
    workload = data["workload"]
    return Case(
        steps=tuple(steps),
        divergence=record,
        signature=signature,
        classification=classification,
        replays=replays,
        workload=None if workload is None else str(workload),
        server_version=None if server.get("version") is None else str(server.get("version")),
        server_url=_public_url(server.get("url")),
        created_at=str(data["created_at"]),
        kalammodel_version=str(data["kalammodel_version"]),
        format_version=version,
        actors=dict(actors_data),
        path=path,
    )


def case_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand ``paths``: a directory gives its ``*.json`` files (sorted, hidden temp files skipped); a file is kept
    as given (missing files are kept too, so that the caller reports them)."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found.extend(p for p in sorted(path.glob("*.json")) if not p.name.startswith(".") and p.is_file())
        else:
            found.append(path)
    return found


def iter_cases(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[Path, Case | CaseFileError]]:
    """Yield ``(path, Case)`` or ``(path, CaseFileError)`` for every case file under ``paths``.

    A bad file is reported, never deleted, and never stops the others.
    """
    for path in case_files(paths):
        try:
            yield path, load_case(path)
        except CaseFileError as exc:
            yield path, exc


# --------------------------------------------------------------------------------------------------- replay


def replay_case(case: Case, runner: Any, runs: int = 1) -> ReplayOutcome:
    """Replay ``case`` on a fresh namespace: ``fixed`` when it passes (every run; a flaky case at least
    :data:`FLAKY_MIN_RUNS` times), ``failing`` when a divergence comes back, ``error`` on a tool or transport error."""
    total = max(1, runs)
    if case.classification == "flaky":
        total = max(total, FLAKY_MIN_RUNS)
    for run in range(1, total + 1):
        status, result, error = _run_once(runner, case.steps)
        if status == "fail":
            record = DivergenceRecord.from_divergence(result.divergence)
            same = record.invariant == case.divergence.invariant
            where = f" at step #{record.step_index}" if record.step_index is not None else ""
            again = f"run {run} of {total}: " if total > 1 else ""
            if same:
                message = (
                    f"{again}still failing: same invariant [{record.invariant}]{where}: {record.message}"
                )
            else:
                message = (
                    f"{again}failing with a different invariant [{record.invariant}] (saved: "
                    f"[{case.divergence.invariant}]){where}: {record.message}"
                )
            return ReplayOutcome("failing", message, record, same, case.path, case, runs=run)
        if status == "error":
            return ReplayOutcome("error", f"replay error: {error}", None, None, case.path, case, runs=run)
    passes = "passes" if total == 1 else f"passes {total} runs out of {total}"
    return ReplayOutcome("fixed", f"fixed: the case now {passes}", None, None, case.path, case, runs=total)


def replay_paths(
    paths: Iterable[str | os.PathLike[str]], runner: Any, prune: bool = False, runs: int = 1
) -> tuple[list[ReplayOutcome], int]:
    """Replay every case file under ``paths``. Returns the outcomes and the exit code: 0 all fixed, 1 some still
    failing, 2 some error (a replay error, a missing or unreadable case file; 2 wins over 1).

    With ``prune`` the files of fixed cases are removed; failing, erroring and unreadable files never are.
    """
    outcomes: list[ReplayOutcome] = []
    for path, loaded in iter_cases(paths):
        if isinstance(loaded, CaseFileError):
            outcomes.append(ReplayOutcome("error", loaded.problem, path=path))
            continue
        outcome = replay_case(loaded, runner, runs=runs)
        if prune and outcome.status == "fixed":
            try:
                path.unlink()
            except OSError as exc:
                outcome = attrs.evolve(outcome, message=f"{outcome.message} (could not prune: {exc})")
            else:
                outcome = attrs.evolve(outcome, pruned=True, message=f"{outcome.message}; pruned")
        outcomes.append(outcome)
    statuses = {o.status for o in outcomes}
    code = 2 if "error" in statuses else 1 if "failing" in statuses else 0
    return outcomes, code


# --------------------------------------------------------------------------------------------------- show


def format_failure(steps: Sequence[Any], divergence: Any, replay_command: str | None = None) -> str:
    """The failure as Hypothesis would print it: the minimal steps as a numbered program (one ``describe()`` a
    line, the diverging one marked), the divergence (expected vs actual) and the one-line replay command."""
    record = DivergenceRecord.from_divergence(divergence)
    lines = [f"Failing test case ({len(steps)} step{'s' if len(steps) != 1 else ''}):"]
    width = len(str(max(len(steps) - 1, 0)))
    for index, step in enumerate(steps):
        mark = "   <-- diverged here" if index == record.step_index else ""
        lines.append(f"  #{index:<{width}}  {_describe(step)}{mark}")
    lines.append("")
    lines.append("Divergence " + record.render().replace("\n", "\n", -1))
    if replay_command:
        lines.append("")
        lines.append("Reproduce with:")
        lines.append(f"  {replay_command}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- export


@attrs.frozen
class _Line:
    """One request of an exported case."""

    step_index: int
    describe: str
    actor: str
    as_user: str | None
    sql: str
    diverged: bool = False
    check: bool = False  # kalammodel's own check request, not one of the step's requests

    @property
    def wire_sql(self) -> str:
        """The SQL as sent: wrapped in ``EXECUTE AS USER`` when the request impersonates."""
        if self.as_user:
            return f"EXECUTE AS USER {_sql_quote(self.as_user)} ({self.sql})"
        return self.sql

    @property
    def who(self) -> str:
        return f"as {self.actor}" + (f", executing as user {self.as_user!r}" if self.as_user else "")


@attrs.frozen
class _Block:
    """The requests of one step (empty for a step that sends no SQL), or kalammodel's final check."""

    step_index: int
    describe: str
    lines: tuple[_Line, ...]
    check: bool = False


def _export_namespace(case: Case) -> str:
    return f"kmcase_{case.fingerprint}"


def _rebase(sql: str, old: str | None, new: str) -> str:
    if not old or old == new:
        return sql
    return re.sub(rf"\b{re.escape(old)}\b", new, sql)


def _clean_sql(sql: Any) -> str:
    return str(sql).strip().rstrip(";").strip()


def _export_blocks(case: Case, ns: str) -> list[_Block]:
    """The case's requests step by step in namespace ``ns``, with the diverging request marked.

    The diverging request is the step's request whose SQL equals the divergence's ``request``; when it is none
    of them (a check kalammodel ran after the step, e.g. a full read) that request is added after the step; with
    no request recorded, the step's last request is marked.
    """
    record = case.divergence
    wanted = _clean_sql(_rebase(record.request, record.namespace, ns)) if record.request else None
    check_line = None
    if wanted:
        actor = (record.actor or "root").split(" as ")[0]  # the runner writes "user1 as <as_user>"
        check_line = _Line(record.step_index or 0, "check", actor, None, wanted, True, True)
    blocks: list[_Block] = []
    marked = False
    for index, step in enumerate(case.steps):
        describe = _describe(step)
        lines = [
            _Line(index, describe, str(r.actor), getattr(r, "as_user", None) or None, _clean_sql(r.sql))
            for r in step.requests(ns)
        ]
        if index == record.step_index:
            hits = [i for i, ln in enumerate(lines) if wanted and wanted in (ln.sql, ln.wire_sql)]
            if hits:
                lines[hits[-1]] = attrs.evolve(lines[hits[-1]], diverged=True)
                marked = True
            elif check_line is None and lines:
                lines[-1] = attrs.evolve(lines[-1], diverged=True)
                marked = True
        blocks.append(_Block(index, describe, tuple(lines)))
        if index == record.step_index and not marked and check_line is not None:
            blocks.append(_Block(index, f"kalammodel's check after step #{index}", (check_line,), True))
            marked = True
    if not marked:
        last = len(case.steps) - 1
        if check_line is not None:
            check_line = attrs.evolve(check_line, step_index=last)
            blocks.append(_Block(last, "kalammodel's final check", (check_line,), True))
        else:
            for block_index in range(len(blocks) - 1, -1, -1):
                block = blocks[block_index]
                if block.lines:
                    lines = list(block.lines)
                    lines[-1] = attrs.evolve(lines[-1], diverged=True)
                    blocks[block_index] = attrs.evolve(block, lines=tuple(lines))
                    break
    return blocks


def _all_lines(blocks: Sequence[_Block]) -> list[_Line]:
    return [line for block in blocks for line in block.lines]


def _comment(text: str, prefix: str) -> str:
    return "\n".join(f"{prefix} {line}".rstrip() for line in str(text).splitlines() or [""])


def _header(case: Case, ns: str) -> list[str]:
    record = case.divergence
    replays = case.replays
    seen = (
        f"{case.classification} ({replays.failed} of {replays.runs} replays failed)"
        if replays.runs
        else case.classification
    )
    where = f" at step #{record.step_index}" if record.step_index is not None else ""
    lines = [
        f"kalammodel shrunk case {case.name}",
        f"Divergence [{record.invariant}]{where}: {record.message}",
    ]
    if record.actor:
        lines.append(f"acting user: {record.actor}")
    if record.request:
        lines.append(f"request:  {_rebase(record.request, record.namespace, ns)}")
    lines += [
        f"expected: {_show(record.expected_shown, 1000)}",
        f"actual:   {_show(record.actual_shown, 1000)}",
        f"server: KalamDB {case.server_version or '(version unknown)'}"
        + (f" at {case.server_url}" if case.server_url else ""),
        f"found by kalammodel {case.kalammodel_version}"
        + (f", workload {case.workload}" if case.workload else "")
        + (f", {case.created_at}" if case.created_at else ""),
        f"classification: {seen}",
    ]
    return lines


def _sql_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _role_of(case: Case, actor: str) -> str:
    role = case.actors.get(actor) or _guess_role(actor)
    return role if role in _ROLE_WORDS else "user"


def _login_actors(lines: Sequence[_Line]) -> list[str]:
    """The identities other than root that send requests with their own token, in order of appearance."""
    seen: list[str] = []
    for line in lines:
        if line.actor != "root" and line.actor not in seen:
            seen.append(line.actor)
    return seen


_FLUSH = re.compile(r"(?i)^\s*storage\s+flush\b")


def export_sql(case: Case) -> str:
    """A standalone SQL script that reproduces the case: a header with the divergence, ``CREATE NAMESPACE``,
    then every request in order with a comment naming the acting user (``EXECUTE AS USER`` where the request
    impersonates) and a marker with expected and actual after the statement that diverged."""
    ns = _export_namespace(case)
    blocks = _export_blocks(case, ns)
    out = [_comment(text, "--") for text in _header(case, ns)]
    out += [
        "--",
        "-- Run the statements in order as root (kalam CLI, or POST /v1/api/sql with root's token). A statement",
        "-- marked 'as <user>' must be sent with that user's own token: log in as that user for it.",
    ]
    actors = _login_actors(_all_lines(blocks))
    if actors:
        out.append("-- Acting users (create them first if they do not exist; choose the passwords):")
        for actor in actors:
            out.append(
                f"--   CREATE USER {_sql_quote(actor)} WITH PASSWORD '<password>' ROLE {_role_of(case, actor)};"
            )
    out += ["", f"DROP NAMESPACE IF EXISTS {ns};", f"CREATE NAMESPACE {ns};"]
    for block in blocks:
        out.append("")
        out.append(
            f"-- {block.describe}" if block.check else f"-- step #{block.step_index}: {block.describe}"
        )
        if not block.lines:
            out.append("--   (no SQL request: a WebSocket or wait step; see `kalammodel show`)")
        for line in block.lines:
            out.append(f"-- {line.who}")
            out.append(f"{line.wire_sql};")
            if _FLUSH.match(line.sql):
                out.append(
                    "-- (a flush runs as a job: wait until SELECT status FROM system.jobs WHERE job_id = "
                )
                out.append("--  '<job id from the answer>' says completed before the next statement)")
            if line.diverged:
                out.append(f"-- ^^^ DIVERGED [{case.divergence.invariant}]: {case.divergence.message}")
                out.append(_comment(f"expected: {_show(case.divergence.expected_shown, 1000)}", "--"))
                out.append(_comment(f"actual:   {_show(case.divergence.actual_shown, 1000)}", "--"))
    out += ["", f"DROP NAMESPACE IF EXISTS {ns};"]
    return "\n".join(out) + "\n"


@attrs.frozen
class ScriptStatement:
    """One statement of an exported SQL script as it ran: who sent it, the SQL, and what came back."""

    actor: str
    sql: str
    ok: bool
    rows: tuple[tuple[Any, ...], ...] = ()
    columns: tuple[str, ...] = ()
    message: str | None = None
    code: str | None = None
    diverged: bool = False


_WHO = re.compile(r"^-- as (?P<actor>[A-Za-z0-9_]+)(?:, executing as user '(?P<as_user>[^']*)')?\s*$")
_ACTING = re.compile(r"^--\s+CREATE USER '(?P<user>[^']+)' WITH PASSWORD '<password>' ROLE (?P<role>\w+);\s*$")
_JOB = re.compile(r"Job ID: ([A-Za-z]+-[0-9A-Za-z]+)")


def run_sql_script(script: str, base_url: str, root_password: str, *, timeout: float = 60.0) -> list[ScriptStatement]:
    """Run a script written by :func:`export_sql` against a server, as the users it names.

    Creates the acting users listed in its header (with a generated password; existing ones get it set),
    sends every statement as its ``-- as <user>`` annotation says (root by default), waits for each flush job,
    and returns what every statement answered; the statement marked ``^^^ DIVERGED`` has ``diverged=True``.
    This is how a KalamDB developer (and kalammodel's own tests) check that an export reproduces its bug.
    """
    import secrets as _secrets

    from .client import KalamClient
    from .errors import SqlError

    root = KalamClient.bootstrap(base_url, root_password, timeout=timeout)
    clients: dict[str, Any] = {"root": root}
    password = f"Km-{_secrets.token_hex(8)}!"
    lines = script.splitlines()
    for line in lines:
        match = _ACTING.match(line)
        if match:
            user, role = match.group("user"), match.group("role")
            try:
                root.execute(f"CREATE USER {_sql_quote(user)} WITH PASSWORD {_sql_quote(password)} ROLE {role}")
            except SqlError as exc:
                if "already exists" not in (exc.message or "").lower():
                    raise
                root.execute(f"ALTER USER {_sql_quote(user)} SET PASSWORD {_sql_quote(password)}")
                root.execute(f"ALTER USER {_sql_quote(user)} SET ROLE {role}")
    results: list[ScriptStatement] = []
    actor = "root"
    for line in lines:
        stripped = line.strip()
        who = _WHO.match(stripped)
        if who:
            actor = who.group("actor")
            continue
        if stripped.startswith("-- ^^^ DIVERGED") and results:
            results[-1] = attrs.evolve(results[-1], diverged=True)
            continue
        if not stripped or stripped.startswith("--"):
            continue
        sql = stripped.rstrip(";")
        if actor not in clients:
            clients[actor] = KalamClient.login(base_url, actor, password, timeout=timeout)
        try:
            response = clients[actor].execute(sql)
        except SqlError as exc:
            results.append(ScriptStatement(actor, sql, ok=False, message=exc.message, code=exc.code))
        else:
            first = response.results[0] if response.results else None
            message = getattr(first, "message", None)
            results.append(
                ScriptStatement(
                    actor,
                    sql,
                    ok=True,
                    rows=tuple(tuple(r) for r in getattr(first, "rows", ()) or ()),
                    columns=tuple(c.name for c in getattr(first, "columns", ()) or ()),
                    message=message,
                )
            )
            job = _JOB.search(message or "")
            if job and _FLUSH.match(sql):
                root.wait_for_job(job.group(1), timeout=timeout)
        actor = "root"
    for client in clients.values():
        client.close()
    return results


_PYTEST_TEMPLATE = '''"""{title}

Exported by kalammodel {version} from {source}. Needs only ``kalammodel.client`` and a KalamDB server:

    KALAMDB_URL=http://127.0.0.1:8080 KALAMDB_ROOT_PASSWORD=... pytest {filename}

The test passes once the server behaves as expected at the diverging step.

{header}
"""

from __future__ import annotations

import json
import os
import re
import secrets
import uuid
from collections import Counter

import pytest

from kalammodel.client import KalamClient
from kalammodel.errors import SqlError

URL = os.environ.get("KALAMDB_URL")
ROOT_PASSWORD = os.environ.get("KALAMDB_ROOT_PASSWORD")
pytestmark = pytest.mark.skipif(
    not URL or ROOT_PASSWORD is None, reason="set KALAMDB_URL and KALAMDB_ROOT_PASSWORD to run this case"
)

CASE_NAMESPACE = {ns!r}
# identity -> role of the users that send requests with their own token (created or reset by the test)
ACTORS = {actors}
# (step index, step, acting user, EXECUTE AS user or None, SQL, diverged here)
REQUESTS = {requests}
INVARIANT = {invariant!r}
EXPECTED = json.loads({expected!r})
ACTUAL = json.loads({actual!r})


def _outcome(client, as_user, sql):
    """(response, None) or (None, SqlError) for one request."""
    try:
        if as_user is not None:
            return client.execute_as(as_user, sql), None
        return client.execute(sql), None
    except SqlError as error:
        return None, error


def _key(value):
    return json.dumps(value, sort_keys=True, default=str)


def _last(response):
    return response.results[-1] if response is not None and response.results else None


def _check_rows(response, expected):
    """ExpectRows: every expected row is there (as a multiset); every other row is one of maybe_rows."""
    result = _last(response)
    names = list(result.column_names) if result is not None else []
    rows = [list(row) for row in result.rows] if result is not None else []
    columns = expected.get("columns") or names
    unchecked = set(expected.get("unchecked") or ())
    keep = [i for i, name in enumerate(columns) if name not in unchecked]
    where = {{name: i for i, name in enumerate(names)}}
    missing = [columns[i] for i in keep if columns[i] not in where]
    assert not missing, f"the answer lacks columns {{missing}} (it has {{names}})"
    actual = Counter(_key([row[where[columns[i]]] for i in keep]) for row in rows)
    wanted = Counter(_key([row[i] for i in keep]) for row in expected.get("rows") or [])
    maybe = {{_key([row[i] for i in keep]) for row in expected.get("maybe_rows") or []}}
    absent = wanted - actual
    assert not absent, f"rows the model expects are missing: {{sorted(absent)}}"
    extra = sorted(row for row in (actual - wanted) if row not in maybe)
    assert not extra, f"rows the model does not expect: {{extra}}"
    if expected.get("exact_size") is not None:
        assert len(rows) == expected["exact_size"], f"expected {{expected['exact_size']}} rows, got {{len(rows)}}"
    if expected.get("size_range"):
        low, high = expected["size_range"]
        assert low <= len(rows) <= high, f"expected {{low}}..{{high}} rows, got {{len(rows)}}"


def _check_plain_rows(response, expected):
    """A plain list of rows (dicts or lists), compared as a multiset."""
    result = _last(response)
    if expected and all(isinstance(row, dict) for row in expected):
        keys = sorted({{key for row in expected for key in row}})
        actual = [{{key: row.get(key) for key in keys}} for row in (result.dicts() if result else [])]
    else:
        actual = [list(row) for row in (result.rows if result else [])]
    assert Counter(map(_key, actual)) == Counter(map(_key, expected)), "the rows differ from the model's"


def _check(response, error):
    """Assert the outcome kalammodel's model expected (EXPECTED, a kalammodel.model expectation as data)."""
    kind = EXPECTED.get("type") if isinstance(EXPECTED, dict) else None
    if kind == "ExpectError":
        codes = EXPECTED.get("codes") or []
        assert error is not None, f"expected an error {{codes}}, the server answered {{response.raw}}"
        assert not codes or error.code in codes, f"expected error code {{codes}}, got {{error.code}}: {{error.message}}"
        if EXPECTED.get("status") is not None:
            assert error.status == EXPECTED["status"], f"expected HTTP {{EXPECTED['status']}}, got {{error.status}}"
        return
    assert error is None, f"expected success, the server answered {{error}}"
    result = _last(response)
    if kind == "ExpectRows":
        _check_rows(response, EXPECTED)
    elif kind == "ExpectCount":
        value = int(result.rows[0][0])
        assert EXPECTED["low"] <= value <= EXPECTED["high"], f"expected {{EXPECTED['low']}}..{{EXPECTED['high']}}, got {{value}}"
    elif kind == "ExpectOk":
        low, high = EXPECTED.get("affected"), EXPECTED.get("affected_max")
        if low is not None:
            high = low if high is None else high
            assert low <= (result.row_count or 0) <= high, f"expected {{low}}..{{high}} affected rows, got {{result.row_count}}"
    elif kind in ("ExpectFlush", "ExpectFlushDone", "ExpectPause"):
        pass
    elif isinstance(EXPECTED, list):
        _check_plain_rows(response, EXPECTED)
    else:
        pytest.skip(f"kalammodel cannot turn the expectation {{EXPECTED!r}} into an assertion; compare by hand")


def _flush_job(response):
    for result in response.results if response else []:
        match = re.search(r"Job ID: ([A-Z]{{2}}-[0-9a-f]+)", result.message or "")
        if match:
            return match.group(1)
    return None


def test_{func}():
    """The server agrees with kalammodel's model on the case's diverging request ({invariant})."""
    ns = f"{{CASE_NAMESPACE}}_{{uuid.uuid4().hex[:6]}}"
    root = KalamClient.bootstrap(URL, ROOT_PASSWORD)
    clients = {{"root": root}}
    try:
        root.execute(f"CREATE NAMESPACE {{ns}}")
        for actor, role in ACTORS.items():
            password = secrets.token_urlsafe(12) + "aA1!"
            try:
                root.execute(f"CREATE USER '{{actor}}' WITH PASSWORD '{{password}}' ROLE {{role}}")
            except SqlError:  # the user exists: reset its password and role for this test
                root.execute(f"ALTER USER '{{actor}}' SET PASSWORD '{{password}}'")
                root.execute(f"ALTER USER '{{actor}}' SET ROLE {{role}}")
            clients[actor] = KalamClient.login(URL, actor, password)
        for index, step, actor, as_user, sql, diverged in REQUESTS:
            response, error = _outcome(clients[actor], as_user, sql.replace(CASE_NAMESPACE, ns))
            job = _flush_job(response)
            if job is not None:
                root.wait_for_job(job)
            if diverged:
                _check(response, error)
                return
    finally:
        try:
            root.execute(f"DROP NAMESPACE IF EXISTS {{ns}}")
        finally:
            for client in clients.values():
                client.close()
'''


def export_pytest(case: Case) -> str:
    """A pytest file that reproduces the case with ``kalammodel.client`` only (env ``KALAMDB_URL`` and
    ``KALAMDB_ROOT_PASSWORD``): it creates the namespace and users, sends every request as the right user and
    asserts the model's expected outcome at the diverging request."""
    ns = _export_namespace(case)
    lines = _all_lines(_export_blocks(case, ns))
    requests = [(ln.step_index, ln.describe, ln.actor, ln.as_user, ln.sql, ln.diverged) for ln in lines]
    actors = {actor: _role_of(case, actor) for actor in _login_actors(lines)}
    header = "\n".join(_header(case, ns)).replace("\\", "\\\\").replace('"""', "'''")
    return _PYTEST_TEMPLATE.format(
        title=f"Regression test for kalammodel case {case.name} [{case.divergence.invariant}].",
        version=__version__,
        source=_display_path(case.path) if case.path else case.name + ".json",
        filename=f"test_{_slug(case.name)}.py",
        header=header,
        ns=ns,
        actors=pprint.pformat(actors, width=100),
        requests=pprint.pformat(requests, width=110),
        invariant=case.divergence.invariant,
        expected=json.dumps(_jsonable(case.divergence.expected)),
        actual=json.dumps(_jsonable(case.divergence.actual)),
        func=_slug(case.name),
    )


_CURL_PRELUDE = r"""set -eu
: "${KALAMDB_URL:?set KALAMDB_URL to the server, e.g. http://127.0.0.1:8080}"
: "${KALAMDB_ROOT_PASSWORD:?set KALAMDB_ROOT_PASSWORD to the root password}"
URL=${KALAMDB_URL%/}

login() {  # login USER PASSWORD: print the access token from /v1/api/auth/login
  body=$(printf '{"user":"%s","password":"%s"}' "$1" "$2")
  curl -sS --max-time 30 -X POST "$URL/v1/api/auth/login" -H "Content-Type: application/json" -d "$body" \
    | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p'
}
sql() {  # sql TOKEN JSON-BODY: POST /v1/api/sql and print the answer
  curl -sS --max-time 60 -X POST "$URL/v1/api/sql" -H "Authorization: Bearer $1" \
    -H "Content-Type: application/json" -d "$2"
  echo
}
wait_job() {  # wait_job JOB-ID: poll system.jobs (as root) until the job ends, at most 60 s
  i=0
  while [ "$i" -lt 600 ]; do
    case "$(sql "$ROOT" "{\"sql\":\"SELECT status FROM system.jobs WHERE job_id = '$1'\"}")" in
      *completed*|*skipped*|*failed*|*cancelled*) return 0 ;;
    esac
    sleep 0.1
    i=$((i + 1))
  done
  echo "flush job $1 did not finish within 60 s" >&2
}
run() {  # run TOKEN JSON-BODY: like sql, and wait for a flush job that the statement started
  answer=$(sql "$1" "$2")
  printf '%s\n' "$answer"
  job=$(printf '%s' "$answer" | sed -n 's/.*Job ID: \(FL-[0-9a-f]*\).*/\1/p')
  if [ -n "$job" ]; then wait_job "$job"; fi
}

ROOT=$(login root "$KALAMDB_ROOT_PASSWORD")
[ -n "$ROOT" ] || { echo "root login failed: check KALAMDB_URL and KALAMDB_ROOT_PASSWORD" >&2; exit 2; }
"""


def _sq_json(sql: str) -> str:
    """The ``/v1/api/sql`` JSON body for ``sql`` as one single-quoted shell word."""
    return shlex.quote(json.dumps({"sql": sql}))


def export_curl(case: Case) -> str:
    """A shell script with curl: log in each acting user via ``/v1/api/auth/login`` for a token, then POST every
    request to ``/v1/api/sql`` in order; the answer to the diverging request is announced."""
    ns = _export_namespace(case)
    blocks = _export_blocks(case, ns)
    out = ["#!/bin/sh"]
    out += [_comment(text, "#") for text in _header(case, ns)]
    out += [
        "#",
        f"# Usage: KALAMDB_URL=http://127.0.0.1:8080 KALAMDB_ROOT_PASSWORD=... sh {case.name}.sh",
        "",
    ]
    out.append(_CURL_PRELUDE)
    out.append(f'sql "$ROOT" {_sq_json(f"DROP NAMESPACE IF EXISTS {ns}")}')
    out.append(f'sql "$ROOT" {_sq_json(f"CREATE NAMESPACE {ns}")}')
    tokens = {"root": "ROOT"}
    actors = _login_actors(_all_lines(blocks))
    if actors:
        out += ["", "# acting users: created (or reset) with a fresh random password, then logged in"]
        out.append("PW=\"Km$(od -An -N8 -tx1 /dev/urandom | tr -d ' \\n')aA1\"")
    for n, actor in enumerate(actors, 1):
        var = f"TOKEN_{n}"
        tokens[actor] = var
        role = _role_of(case, actor)
        quoted = _sql_quote(actor)
        for stmt in (
            f"CREATE USER {quoted} WITH PASSWORD 'PWPLACEHOLDER' ROLE {role}",
            f"ALTER USER {quoted} SET PASSWORD 'PWPLACEHOLDER'",
            f"ALTER USER {quoted} SET ROLE {role}",
        ):
            word = _sq_json(stmt).replace("PWPLACEHOLDER", "'\"$PW\"'")
            out.append(f'sql "$ROOT" {word} >/dev/null')
        out.append(f'{var}=$(login {shlex.quote(actor)} "$PW")')
        out.append(f'[ -n "${var}" ] || {{ echo "login as {actor} failed" >&2; exit 2; }}')
    for block in blocks:
        out.append("")
        out.append(f"# {block.describe}" if block.check else f"# step #{block.step_index}: {block.describe}")
        if not block.lines:
            out.append("#   (no SQL request: a WebSocket or wait step; see `kalammodel show`)")
        for line in block.lines:
            out.append(f"# {line.who}")
            if line.diverged:
                out.append(f"echo '>>> the next answer DIVERGED [{case.divergence.invariant}]'")
            out.append(f'run "${tokens[line.actor]}" {_sq_json(line.wire_sql)}')
            if line.diverged:
                out.append(_comment(f"expected: {_show(case.divergence.expected_shown, 1000)}", "#"))
                out.append(_comment(f"actual:   {_show(case.divergence.actual_shown, 1000)}", "#"))
    out += ["", f'sql "$ROOT" {_sq_json(f"DROP NAMESPACE IF EXISTS {ns}")}']
    return "\n".join(out) + "\n"
