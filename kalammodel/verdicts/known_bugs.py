"""The registry of known KalamDB bugs: a data file, a matcher and a ledger (docs/known-bugs.md).

``known_bugs.toml`` (beside this module) lists each finding of ``docs/kalamdb-findings.md`` with the divergence
*signatures* that identify it: the invariant(s), the step kind(s) at which it surfaces, the table kind(s), a
regex over :attr:`Divergence.message` and named *triggers* (facts of the program, ``_triggers.py``).

```python
bugs = load_known_bugs()                      # the packaged file; UsageError naming entry, field, value
bug = bugs.match(divergence, steps)           # the most specific entry, or None
ledger = KnownBugLedger(bugs)
ledger.observe(steps)                         # every example: which bugs' triggers it exercised
ledger.record(divergence, steps)              # every divergence: counted when it is a known bug
print(ledger.report().render())               # bugs seen with counts; "possibly fixed" ones
```
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from kalammodel.errors import Divergence, Invariant, UsageError
from kalammodel.model import TableKind
from kalammodel.steps import STEP_TYPES, Step

from ._triggers import TRIGGERS, Focus, Program

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "ANY_STEP",
    "FINDINGS_DOC",
    "KnownBug",
    "KnownBugLedger",
    "KnownBugReport",
    "KnownBugs",
    "SEVERITIES",
    "Signature",
    "divergence_table",
    "load_known_bugs",
    "match",
    "parse_known_bugs",
]

#: the step kind that stands for any step (a full scope read runs after whatever step came last)
ANY_STEP = "*"
SEVERITIES = ("high", "medium", "low")
#: where the findings are described; every entry's link points into it
FINDINGS_DOC = "docs/kalamdb-findings.md"
_FORMAT = 1
_ANCHOR = re.compile(r"[a-z0-9_-]+")
_FUTURE_KIND = re.compile(r"[a-z][a-z0-9_]*")

# ---------------------------------------------------------------------- records


@attrs.frozen
class Signature:
    """One shape in which a known bug surfaces. Empty ``triggers``: no fact of the program is required."""

    invariants: frozenset[Invariant]
    step_kinds: frozenset[str]
    table_kinds: frozenset[TableKind]
    message: re.Pattern[str]
    triggers: tuple[str, ...]

    @property
    def any_step(self) -> bool:
        return ANY_STEP in self.step_kinds

    @property
    def specificity(self) -> tuple[int, ...]:
        """Larger is more specific: more triggers, then named step kinds, then fewer invariants, step kinds
        and table kinds accepted."""
        return (
            len(self.triggers),
            0 if self.any_step else 1,
            -len(self.invariants),
            0 if self.any_step else -len(self.step_kinds),
            -len(self.table_kinds),
        )

    def holds(self, focus: Focus) -> bool:
        """Whether the program did what this shape needs at ``focus`` (step kind, table kind, triggers)."""
        if not self.any_step and focus.step.kind not in self.step_kinds:
            return False
        if focus.program.kind(focus.table, focus.index) not in self.table_kinds:
            return False
        return all(TRIGGERS[name](focus) for name in self.triggers)

    def matches(self, focus: Focus) -> bool:
        """Whether ``focus.divergence`` has this shape."""
        div = focus.divergence
        if div is None or div.invariant not in self.invariants or not self.message.search(div.message):
            return False
        return self.holds(focus)


@attrs.frozen(repr=False)
class KnownBug:
    """A finding of docs/kalamdb-findings.md and the signatures that identify its divergences.

    ``generated`` is false when kalammodel does not generate the surface the bug lives on yet: its
    signatures name the step kinds that surface will need.
    """

    number: int
    title: str
    link: str
    severity: str
    generated: bool
    signatures: tuple[Signature, ...]

    @property
    def label(self) -> str:
        """How a matched divergence is reported: ``known KalamDB bug N``."""
        return f"known KalamDB bug {self.number}"

    def __repr__(self) -> str:
        return f"KnownBug({self.number}, {self.title!r})"

    def describe(self) -> str:
        return f"{self.label} ({self.severity}): {self.title} — {self.link}"

    def matching_signature(self, divergence: Divergence, program: Program) -> Signature | None:
        """The most specific signature ``divergence`` has (after ``program``), or None."""
        focus = _focus(divergence, program)
        return None if focus is None else self._signature_at(focus)

    def _signature_at(self, focus: Focus) -> Signature | None:
        found = [s for s in self.signatures if s.matches(focus)]
        return max(found, key=lambda s: s.specificity) if found else None

    def matches(self, divergence: Divergence, steps: Sequence[Step]) -> bool:
        return self.matching_signature(divergence, Program(steps)) is not None

    def trigger_exercised(self, steps: Sequence[Step] | Program) -> bool:
        """Whether the program did what the bug needs at some step, on some table (diverging or not)."""
        program = steps if isinstance(steps, Program) else Program(steps)
        for index, step in enumerate(program.steps):
            own = program.table_of(step)
            for table in program.tables:
                focus = Focus(program, table, index)
                # a shape that names step kinds needs such a step on this table (a DELETE of a USER table does
                # not exercise a STREAM table's DELETE bug); "*" shapes read the table after any step
                if any((s.any_step or own == table) and s.holds(focus) for s in self.signatures):
                    return True
        return False


@attrs.frozen
class KnownBugs:
    """The registry: every known bug, by number."""

    bugs: tuple[KnownBug, ...]
    source: str = ""

    def __iter__(self) -> Iterator[KnownBug]:
        return iter(self.bugs)

    def __len__(self) -> int:
        return len(self.bugs)

    def get(self, number: int) -> KnownBug:
        for bug in self.bugs:
            if bug.number == number:
                return bug
        raise KeyError(f"no known bug {number} in {self.source or 'the registry'}")

    def match(self, divergence: Divergence, steps: Sequence[Step] | Program) -> KnownBug | None:
        """The known bug ``divergence`` (raised while running ``steps``) is, or None.

        The most specific matching signature wins (:attr:`Signature.specificity`); equal ones go to the
        lower bug number, so the answer is deterministic.
        """
        program = steps if isinstance(steps, Program) else Program(steps)
        focus = _focus(divergence, program)
        if focus is None:
            return None
        best: tuple[tuple[int, ...], int, KnownBug] | None = None
        for bug in self.bugs:
            signature = bug._signature_at(focus)
            if signature is None:
                continue
            rank = (signature.specificity, -bug.number, bug)
            if best is None or rank[:2] > best[:2]:
                best = rank
        return None if best is None else best[2]


def match(divergence: Divergence, steps: Sequence[Step], bugs: KnownBugs | None = None) -> KnownBug | None:
    """The known bug ``divergence`` is, by ``bugs`` (default: the packaged registry), or None."""
    return (bugs if bugs is not None else _packaged()).match(divergence, steps)


# ---------------------------------------------------------------------- which table a divergence is about

_TABLE_IN_MESSAGE = (
    re.compile(r"^full read of scope (\w+)/"),
    re.compile(r"^subscription \S+ \(\S+ on (\w+)\)"),
    re.compile(r"^cold files of \w+\.(\w+)/"),
    re.compile(r"while a flush of (\w+) runs"),
    re.compile(r"paging \w+\.(\w+) returned"),
)
_SUB_IN_MESSAGE = re.compile(r"SQL read of subscription (\S+?)'s query")
_TABLE_IN_REQUEST = re.compile(r"\b(?:FROM|INTO|UPDATE|TABLE)\s+(\w+)\.(\w+)", re.IGNORECASE)


def divergence_table(divergence: Divergence, steps: Sequence[Step] | Program) -> str | None:
    """The table ``divergence`` is about: the one its message names (a full scope read, a subscription, cold
    files), else the one its request reads or writes, else the one its step works on; None when that is not a
    table the program created."""
    program = steps if isinstance(steps, Program) else Program(steps)
    created = set(program.tables)
    candidates: list[str] = []
    for pattern in _TABLE_IN_MESSAGE:
        found = pattern.search(divergence.message)
        if found:
            candidates.append(found.group(1))
    sub = _SUB_IN_MESSAGE.search(divergence.message)
    if sub:
        candidates.extend(
            t
            for s in program.steps
            if getattr(s, "sub_id", None) == sub.group(1)
            for t in [program.table_of(s)]
            if t is not None
        )
    if candidates:  # the message is about this table, whatever the step was
        return candidates[0] if candidates[0] in created else None
    if divergence.request:
        candidates.extend(
            m.group(2)
            for m in _TABLE_IN_REQUEST.finditer(divergence.request)
            if m.group(1).lower() != "system"
        )
    index = _focus_index(divergence, program)
    if index is not None:
        own = program.table_of(program.steps[index])
        if own is not None:
            candidates.append(own)
    return next((t for t in candidates if t in created), None)


def _focus_index(divergence: Divergence, program: Program) -> int | None:
    if not program.steps:
        return None
    index = divergence.step_index
    if index is None or index >= len(program.steps):
        return len(program.steps) - 1
    return max(index, 0)


def _focus(divergence: Divergence, program: Program) -> Focus | None:
    index = _focus_index(divergence, program)
    table = divergence_table(divergence, program)
    if index is None or table is None:
        return None
    return Focus(program, table, index, divergence)


# ---------------------------------------------------------------------- the ledger


@attrs.frozen
class KnownBugReport:
    """What a run met: known bugs seen with their counts, and bugs whose trigger ran without a match."""

    seen: tuple[tuple[KnownBug, int], ...]
    possibly_fixed: tuple[KnownBug, ...]
    #: the first divergence counted for each bug seen, by number
    first_seen: Mapping[int, Divergence] = attrs.field(factory=dict, eq=False)

    def summary_lines(self) -> list[str]:
        r"""One stable, greppable line per bug (a run's terminal summary prefixes ``kalammodel: ``)::

            known KalamDB bug 1 (<title>) seen 3 times: <link>
              first: [soft_delete] at step #4: <message>
            known KalamDB bug 11 (<title>) possibly fixed: its trigger ran, it never matched: <link>

        (``seen 1 time`` for one; grep ``known KalamDB bug [0-9]+ \(.*\) seen [0-9]+ times?``.)
        """
        lines = []
        for bug, count in self.seen:
            lines.append(
                f"{bug.label} ({bug.title}) seen {count} time{'' if count == 1 else 's'}: {bug.link}"
            )
            first = self.first_seen.get(bug.number)
            if first is not None:
                where = f" at step #{first.step_index}" if first.step_index is not None else ""
                message = first.message if len(first.message) <= 200 else first.message[:199] + "…"
                lines.append(f"  first: [{first.invariant}]{where}: {message}")
        lines.extend(
            f"{bug.label} ({bug.title}) possibly fixed: its trigger ran, it never matched: {bug.link}"
            for bug in self.possibly_fixed
        )
        return lines

    def render(self) -> str:
        lines = []
        if self.seen:
            lines.append("known KalamDB bugs seen:")
            lines.extend(f"  {bug.label} x{count}: {bug.title} ({bug.link})" for bug, count in self.seen)
        if self.possibly_fixed:
            lines.append("possibly fixed (trigger exercised, never seen):")
            lines.extend(f"  {bug.label}: {bug.title} ({bug.link})" for bug in self.possibly_fixed)
        return "\n".join(lines) if lines else "no known KalamDB bug seen or exercised"


class KnownBugLedger:
    """Counts known bugs during a run and remembers which bugs' triggers the run exercised.

    Call :meth:`observe` with every example's program (the steps that ran) and :meth:`record` with every
    divergence; :meth:`report` at the end.
    """

    def __init__(self, bugs: KnownBugs | None = None):
        self.bugs = bugs if bugs is not None else _packaged()
        self._counts: dict[int, int] = {}
        self._first: dict[int, Divergence] = {}
        self._exercised: set[int] = set()

    def observe(self, steps: Sequence[Step]) -> None:
        """Note which bugs' triggers ``steps`` exercised (bugs already noted are not looked at again)."""
        program = Program(steps)
        for bug in self.bugs:
            if bug.number not in self._exercised and bug.trigger_exercised(program):
                self._exercised.add(bug.number)

    def record(self, divergence: Divergence, steps: Sequence[Step]) -> KnownBug | None:
        """Count ``divergence`` when it is a known bug; that bug, or None (a new finding)."""
        bug = self.bugs.match(divergence, steps)
        if bug is not None:
            self._counts[bug.number] = self._counts.get(bug.number, 0) + 1
            self._first.setdefault(bug.number, divergence)
            self._exercised.add(bug.number)
        return bug

    @property
    def counts(self) -> Mapping[int, int]:
        """Matches per bug number so far."""
        return dict(self._counts)

    @property
    def exercised(self) -> frozenset[int]:
        """The numbers of the bugs whose trigger some observed program exercised."""
        return frozenset(self._exercised)

    def possibly_fixed(self) -> tuple[KnownBug, ...]:
        """Bugs whose trigger was exercised in the run and that were never matched."""
        return tuple(b for b in self.bugs if b.number in self._exercised and b.number not in self._counts)

    def report(self) -> KnownBugReport:
        seen = tuple((b, self._counts[b.number]) for b in self.bugs if b.number in self._counts)
        return KnownBugReport(seen=seen, possibly_fixed=self.possibly_fixed(), first_seen=dict(self._first))


# ---------------------------------------------------------------------- loading and validation


def load_known_bugs(path: str | Path | None = None) -> KnownBugs:
    """The registry in ``path`` (default: the packaged ``known_bugs.toml``); UsageError on a malformed file."""
    if path is None:
        text = resources.files(__package__).joinpath("known_bugs.toml").read_text(encoding="utf-8")
        return parse_known_bugs(text, "known_bugs.toml")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the known-bugs file {path}: {exc}") from None
    return parse_known_bugs(text, str(path))


@functools.lru_cache(maxsize=1)
def _packaged() -> KnownBugs:
    return load_known_bugs()


def parse_known_bugs(text: str, source: str = "<known bugs>") -> KnownBugs:
    """The registry the TOML ``text`` describes; UsageError naming the entry, the field and the value."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: not valid TOML: {exc}") from None
    _no_unknown(source, "the file", data, {"format", "bug"})
    if data.get("format") != _FORMAT:
        raise UsageError(f"{source}: field 'format' must be {_FORMAT} (got {data.get('format')!r})")
    entries = data.get("bug")
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{source}: needs at least one [[bug]] entry (got {entries!r})")
    bugs: list[KnownBug] = []
    for position, entry in enumerate(entries):
        bug = _bug(source, position, entry)
        if any(b.number == bug.number for b in bugs):
            raise UsageError(f"{source}: bug {bug.number}: field 'number': {bug.number} is used twice")
        bugs.append(bug)
    return KnownBugs(tuple(sorted(bugs, key=lambda b: b.number)), source)


class _Entry:
    """Reads one [[bug]] table; every error names the entry, the field and the value."""

    def __init__(self, source: str, position: int, data: Mapping[str, Any]):
        self.source = source
        self.data = data
        number = data.get("number")
        self.name = f"bug {number}" if isinstance(number, int) else f"entry #{position + 1}"

    def fail(self, field: str, problem: str, value: Any) -> UsageError:
        return UsageError(f"{self.source}: {self.name}: field {field!r}: {problem} (got {value!r})")

    def get(self, data: Mapping[str, Any], field: str, path: str, kind: type | tuple[type, ...]) -> Any:
        if field not in data:
            raise self.fail(path, "is missing", None)
        value = data[field]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(path, f"must be {_type_name(kind)}", value)
        return value

    def names(self, data: Mapping[str, Any], field: str, path: str) -> list[str]:
        value = self.get(data, field, path, list)
        if not value or not all(isinstance(v, str) and v for v in value):
            raise self.fail(path, "must be a non-empty list of names", value)
        return value


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(
        {int: "an integer", str: "a string", bool: "true or false", list: "a list"}.get(k, k.__name__)
        for k in kinds
    )


def _no_unknown(source: str, where: str, data: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"{source}: {where}: unknown field(s) {unknown}; fields are {sorted(known)}")


_BUG_FIELDS = {"number", "title", "link", "severity", "generated", "signature"}
_SIGNATURE_FIELDS = {"invariants", "step_kinds", "table_kinds", "message", "triggers"}


def _bug(source: str, position: int, data: Any) -> KnownBug:
    if not isinstance(data, dict):
        raise UsageError(f"{source}: entry #{position + 1} must be a table (got {data!r})")
    entry = _Entry(source, position, data)
    _no_unknown(source, entry.name, data, _BUG_FIELDS)
    number = entry.get(data, "number", "number", int)
    if number < 1:
        raise entry.fail("number", "must be a finding number >= 1", number)
    title = entry.get(data, "title", "title", str).strip()
    if not title:
        raise entry.fail("title", "must not be empty", data["title"])
    link = entry.get(data, "link", "link", str)
    doc, _, anchor = link.partition("#")
    if doc != FINDINGS_DOC or not _ANCHOR.fullmatch(anchor):
        raise entry.fail("link", f"must be {FINDINGS_DOC}#<anchor of the finding's heading>", link)
    severity = entry.get(data, "severity", "severity", str)
    if severity not in SEVERITIES:
        raise entry.fail("severity", f"must be one of {list(SEVERITIES)}", severity)
    generated = entry.get(data, "generated", "generated", bool)
    shapes = entry.get(data, "signature", "signature", list)
    if not shapes:
        raise entry.fail("signature", "needs at least one [[bug.signature]]", shapes)
    signatures = tuple(_signature(entry, f"signature[{i}]", s, generated) for i, s in enumerate(shapes))
    return KnownBug(number, title, link, severity, generated, signatures)


def _signature(entry: _Entry, path: str, data: Any, generated: bool) -> Signature:
    if not isinstance(data, dict):
        raise entry.fail(path, "must be a table", data)
    _no_unknown(entry.source, f"{entry.name} {path}", data, _SIGNATURE_FIELDS)
    invariants = set()
    for name in entry.names(data, "invariants", f"{path}.invariants"):
        try:
            invariants.add(Invariant(name))
        except ValueError:
            known = [i.value for i in Invariant]
            raise entry.fail(f"{path}.invariants", f"unknown invariant; known: {known}", name) from None
    step_kinds = set(entry.names(data, "step_kinds", f"{path}.step_kinds"))
    for kind in sorted(step_kinds):
        if kind == ANY_STEP or kind in STEP_TYPES:
            continue
        if generated or not _FUTURE_KIND.fullmatch(kind):
            raise entry.fail(
                f"{path}.step_kinds",
                f"unknown step kind; known: {sorted(STEP_TYPES)} or {ANY_STEP!r} (a bug with generated = false "
                "may name the kinds its surface will need)",
                kind,
            )
    table_kinds = set()
    for name in entry.names(data, "table_kinds", f"{path}.table_kinds"):
        try:
            table_kinds.add(TableKind(name))
        except ValueError:
            raise entry.fail(
                f"{path}.table_kinds", f"unknown table kind; known: {[k.value for k in TableKind]}", name
            ) from None
    pattern = entry.get(data, "message", f"{path}.message", str)
    try:
        message = re.compile(pattern)
    except re.error as exc:
        raise entry.fail(f"{path}.message", f"not a regular expression ({exc})", pattern) from None
    triggers = entry.get(data, "triggers", f"{path}.triggers", list)
    for name in triggers:
        if name not in TRIGGERS:
            raise entry.fail(f"{path}.triggers", f"unknown trigger; known: {sorted(TRIGGERS)}", name)
    return Signature(
        frozenset(invariants), frozenset(step_kinds), frozenset(table_kinds), message, tuple(triggers)
    )
