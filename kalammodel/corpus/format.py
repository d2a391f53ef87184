"""The case file format (``format_version`` 1): its records, their JSON form, and reading a file.

Every record has ``to_data`` and a ``from_data`` that mirrors it: both walk one list of :class:`~._codec.Key`
entries. :func:`load_case` reads a file and raises :class:`CaseFileError` naming the file, the field, the value
and what to do. The layout is documented in ``docs/shrunk-cases.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from kalammodel._version import __version__
from kalammodel.errors import Divergence, Invariant, UsageError

from . import _codec
from ._codec import DataError, Key, choice, items, optional, optional_text, strings, text, typed
from ._data import display_path, jsonable, public_url, show, slug, text_of

if TYPE_CHECKING:
    from kalammodel.parallel import ParallelProgram
    from kalammodel.steps import Request, Step

FORMAT = "kalammodel-case"
FORMAT_VERSION = 1
CLASSIFICATIONS = ("deterministic", "flaky", "not_reproducible")


class CaseFileError(UsageError):
    """Raised when a case file cannot be used: unreadable, not JSON, truncated, wrong format tag, written by a
    newer kalammodel, a missing or malformed field, or an unknown step kind.

    ``path`` is the file and ``problem`` says what is wrong; the message carries both and what to do.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


# --------------------------------------------------------------------------------------------------- steps


@attrs.frozen
class StepCodec:
    """How steps become JSON data and back, and the known step kinds (tests substitute fake steps here)."""

    to_data: Callable[[Step], dict[str, Any]]
    from_data: Callable[[dict[str, Any]], Step]
    kinds: Mapping[str, type]


def step_codec() -> StepCodec:
    """The step codec of :mod:`kalammodel.steps` (imported lazily: the format does not need the steps loaded)."""
    from kalammodel import steps

    return StepCodec(steps.step_to_data, steps.step_from_data, steps.STEP_TYPES)


def _dump_steps(steps: tuple[Step, ...]) -> list[Any]:
    codec = step_codec()
    return [jsonable(codec.to_data(step)) for step in steps]


def _load_steps(value: Any, where: str) -> tuple[Step, ...]:  # Any: JSON data
    steps_data = typed(list)(value, where)
    if not steps_data:
        raise DataError("has an empty 'steps' list; a case needs at least one step")
    codec = step_codec()
    steps = []
    for index, item in enumerate(steps_data):
        if not isinstance(item, dict):
            raise DataError(f"step #{index} must be a JSON object (got {item!r})")
        kind = item.get("kind")
        if kind not in codec.kinds:
            known = ", ".join(sorted(codec.kinds))
            raise DataError(
                f"step #{index} has unknown kind {kind!r} (known kinds: {known}); the file was written by another "
                "kalammodel version or edited by hand"
            )
        try:
            steps.append(codec.from_data(dict(item)))
        except Exception as exc:  # the step codec's own message says which field is wrong
            raise DataError(f"step #{index} ({kind}) is malformed: {exc}") from None
    return tuple(steps)


def render_request(request: Request | str) -> str:
    """The SQL of a request as sent: wrapped in ``EXECUTE AS USER`` when the request impersonates."""
    if isinstance(request, str):
        return request.strip()
    sql = request.sql.strip()
    if request.as_user:
        return f"EXECUTE AS USER '{request.as_user}' ({sql.rstrip(';').strip()})"
    return sql


# --------------------------------------------------------------------------------------------------- records


def _record(cls: Any) -> _codec.Loader:  # Any: a record class with from_data
    def load(value: Any, where: str) -> Any:
        return cls.from_data(typed(dict)(value, where), prefix=f"{where}.")

    return load


def _is_none(value: object) -> bool:
    return value is None


def _load_parallel(value: Any, where: str) -> ParallelProgram | None:  # Any: JSON data
    """The ``parallel`` section of a parallel case (absent in sequential cases: None)."""
    if value is None:
        return None
    from kalammodel.parallel import ParallelProgram  # imported on use: sequential cases never need it

    try:
        return ParallelProgram.from_data(value)
    except UsageError as exc:
        raise DataError(f"field {where!r}: {exc}; repair the file or delete it") from None


def _dump_parallel(program: ParallelProgram) -> dict[str, Any]:
    return program.to_data()


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
        return _codec.encode(self, _SIGNATURE_KEYS)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], prefix: str = "") -> Signature:
        return cls(**_codec.decode(data, _SIGNATURE_KEYS, prefix))


_SIGNATURE_KEYS = (
    Key("invariant", "invariant", typed(str), required=True),
    Key("step_kind", "step_kind", typed(str), required=True),
    Key("table_kind", "table_kind", optional(str)),
)

_ACTOR_PREFIX = re.compile(r"^\[([A-Za-z0-9_.@-]+)\] (.*)$", re.DOTALL)


@attrs.frozen
class DivergenceRecord:
    """A divergence as stored in a case file: every field JSON-safe (values that are not become their repr)."""

    invariant: str
    message: str
    step_index: int | None = None
    request: str | None = None
    actor: str | None = None
    expected: Any = None  # Any: JSON data (what the model predicted)
    actual: Any = None  # Any: JSON data (what the server answered)
    namespace: str | None = None  # the namespace of the run that found it (to re-base ``request`` on export)
    expected_text: str | None = (
        None  # repr of an expected/actual that is not plain data (e.g. ExpectRows(...))
    )
    actual_text: str | None = None

    @property
    def expected_shown(self) -> str:
        return self.expected_text if self.expected_text is not None else show(self.expected)

    @property
    def actual_shown(self) -> str:
        return self.actual_text if self.actual_text is not None else show(self.actual)

    @classmethod
    def from_divergence(cls, divergence: Divergence | DivergenceRecord) -> DivergenceRecord:
        """The record of a raised :class:`~kalammodel.errors.Divergence` (a record is returned as it is)."""
        if isinstance(divergence, DivergenceRecord):
            return divergence
        request: Any = divergence.request  # Any: a str by its type; older callers passed a Request
        actor = divergence.actor
        if request is not None and not isinstance(request, str):
            actor = actor or request.actor
            request = render_request(request)
        elif isinstance(request, str):  # ``str(Request)`` reads "[actor] sql": keep the SQL as sent
            match = _ACTOR_PREFIX.match(request)
            if match:
                actor = actor or match.group(1)
                request = match.group(2)
        index = divergence.step_index
        return cls(
            invariant=str(divergence.invariant or Invariant.OUTCOME),
            message=str(divergence.message or divergence),
            step_index=index if isinstance(index, int) and not isinstance(index, bool) else None,
            request=request,
            actor=None if actor is None else str(actor),
            expected=jsonable(divergence.expected),
            actual=jsonable(divergence.actual),
            namespace=divergence.namespace,
            expected_text=text_of(divergence.expected),
            actual_text=text_of(divergence.actual),
        )

    def to_data(self) -> dict[str, Any]:
        return _codec.encode(self, _DIVERGENCE_KEYS)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], prefix: str = "") -> DivergenceRecord:
        return cls(**_codec.decode(data, _DIVERGENCE_KEYS, prefix))

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


_DIVERGENCE_KEYS = (
    Key("invariant", "invariant", typed(str), required=True),
    Key("message", "message", typed(str), required=True),
    Key("step_index", "step_index", optional(int)),
    Key("request", "request", optional(str)),
    Key("actor", "actor", optional(str)),
    Key("expected", "expected", dump=jsonable),
    Key("actual", "actual", dump=jsonable),
    Key("namespace", "namespace", optional(str), omit=_is_none),
    Key("expected_text", "expected_text", optional(str), omit=_is_none),
    Key("actual_text", "actual_text", optional(str), omit=_is_none),
)


@attrs.frozen
class Replays:
    """How the steps behaved when replayed before saving (``runs`` = 0: not replayed)."""

    runs: int = 0
    failed: int = 0
    passing: tuple[Any, ...] = ()  # Any: transcripts (JSON data) of passing runs, kept for flaky cases
    failing: tuple[Any, ...] = ()  # Any: transcripts (JSON data) of failing runs, kept for flaky cases
    errors: tuple[str, ...] = ()  # tool or transport errors met while replaying

    def to_data(self) -> dict[str, Any]:
        return _codec.encode(self, _REPLAYS_KEYS)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], prefix: str = "") -> Replays:
        return cls(**_codec.decode(data, _REPLAYS_KEYS, prefix))


_REPLAYS_KEYS = (
    Key("runs", "runs", typed(int), default=0),
    Key("failed", "failed", typed(int), default=0),
    Key("passing", "transcripts.passing", items, dump=list, default=()),
    Key("failing", "transcripts.failing", items, dump=list, default=()),
    Key("errors", "errors", strings, dump=list, default=(), omit=lambda errors: not errors),
)


def _actors(value: Any, where: str) -> dict[str, str]:  # Any: JSON data
    actors = value or {}
    if not isinstance(actors, dict) or not all(isinstance(v, str) for v in actors.values()):
        raise DataError(f"field '{where}' must map identities to role names (got {actors!r})")
    return dict(actors)


def _url(value: Any, where: str) -> str | None:  # Any: JSON data
    return public_url(optional_text(value, where))


@attrs.frozen
class Case:
    """A loaded (or about to be saved) shrunk case."""

    steps: tuple[Step, ...]
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
    #: a parallel case's program (``steps`` then lists its steps: prefix, each client's, suffix); None: sequential
    parallel: ParallelProgram | None = None

    @property
    def fingerprint(self) -> str:
        return self.signature.fingerprint

    @property
    def name(self) -> str:
        """``<invariant>-<fingerprint>``: the file stem of this case."""
        return f"{slug(self.signature.invariant)}-{self.fingerprint}"

    def replay_command(self) -> str:
        """The one-line shell command that replays this case."""
        where = self.path if self.path is not None else Path("shrunk_cases") / f"{self.name}.json"
        return f"kalammodel replay {shlex.quote(display_path(where))}"

    def to_data(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **_codec.encode(self, _CASE_KEYS)}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], path: Path | None = None) -> Case:
        """The case held by the JSON object ``data``; :class:`CaseFileError` (naming ``path``) when it does not
        fit the format."""
        where = path if path is not None else Path("<case data>")
        tag = data.get("format")
        if tag != FORMAT:
            raise CaseFileError(
                where, f"has format tag {tag!r}, expected {FORMAT!r}: it is not a kalammodel case file"
            )
        version = data.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise CaseFileError(where, f"has format_version {version!r}; expected a positive integer")
        if version > FORMAT_VERSION:
            raise CaseFileError(
                where,
                f"was written by a newer kalammodel (format_version {version}; this kalammodel {__version__} "
                f"reads up to {FORMAT_VERSION}); upgrade kalammodel to replay it",
            )
        try:
            values = _codec.decode(data, _CASE_KEYS, objects=("server",))
        except DataError as exc:
            raise CaseFileError(where, exc.problem) from None
        return cls(**values, format_version=version, path=path)


_CASE_KEYS = (
    Key("kalammodel_version", "kalammodel_version", text, required=True),
    Key("server_version", "server.version", optional_text),
    Key("server_url", "server.url", _url, dump=public_url),
    Key("workload", "workload", optional_text, required=True),
    Key("created_at", "created_at", text, required=True),
    Key("fingerprint", "fingerprint", required=True, derived=True),
    Key("signature", "signature", _record(Signature), dump=Signature.to_data, required=True),
    Key("classification", "classification", choice("classification", CLASSIFICATIONS), required=True),
    Key("replays", "replays", _record(Replays), dump=Replays.to_data, required=True),
    Key("actors", "actors", _actors, dump=dict, default={}),
    Key("steps", "steps", _load_steps, dump=_dump_steps, required=True),
    Key("parallel", "parallel", _load_parallel, dump=_dump_parallel, omit=_is_none),
    Key("divergence", "divergence", _record(DivergenceRecord), dump=DivergenceRecord.to_data, required=True),
)


# --------------------------------------------------------------------------------------------------- reading


def _read_text(path: Path) -> str:
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
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CaseFileError(path, f"is not UTF-8 text (byte {exc.start}); it is not a case file") from None


def _parse_json(path: Path, text: str) -> Any:  # Any: JSON data
    if not text.strip():
        raise CaseFileError(
            path, "is empty (an interrupted write?); restore it from version control or delete it"
        )
    try:
        return json.loads(text)
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


def load_case(path: str | os.PathLike[str]) -> Case:
    """Read and validate a case file; raise :class:`CaseFileError` naming the file and what is wrong."""
    path = Path(path)
    data = _parse_json(path, _read_text(path))
    if not isinstance(data, dict):
        raise CaseFileError(path, f"holds a JSON {type(data).__name__}, not a kalammodel case object")
    return Case.from_data(data, path)
