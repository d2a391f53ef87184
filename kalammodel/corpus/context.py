"""What the run that found a failure knows about itself, handed to :func:`~kalammodel.corpus.save_case`.

A :class:`RunContext` carries the namespace of the example, the role of every identity of the actor pool,
the server's version and public URL, and the secrets that must never reach a case file. Nothing in it is
guessed: :meth:`RunContext.collect` reads the typed attributes of the target and the actor pool.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

import attrs

from kalammodel.errors import KalamModelError

from ._data import public_url


class ServerFacts(Protocol):
    """What the corpus reads of a target (:class:`kalammodel.targets.Target` has all of it)."""

    @property
    def base_url(self) -> str: ...

    @property
    def root_password(self) -> str: ...

    def server_version(self) -> str: ...


@runtime_checkable
class SignsTokens(Protocol):
    """A target that signs the server's tokens itself (the embedded one) and so knows the JWT secret."""

    jwt_secret: str


class ActorFacts(Protocol):
    """What the corpus reads of an actor pool (:class:`kalammodel.targets.ActorPool` has all of it)."""

    @property
    def identities(self) -> Mapping[str, str]: ...

    def role(self, name: str) -> str: ...

    def password(self, name: str) -> str: ...


#: secrets shorter than this are not redacted (they would mangle ordinary words)
_MIN_SECRET = 4


def _ordered(found: Iterable[str]) -> tuple[str, ...]:
    """Distinct secrets long enough to redact, longest first (a secret inside another is replaced after it)."""
    return tuple(sorted({s for s in found if s and len(s) >= _MIN_SECRET}, key=len, reverse=True))


@attrs.frozen
class RunContext:
    """The facts of one run: ``namespace`` of the example, ``actors`` identity -> role, the server's
    ``server_version`` and ``public_url`` (without credentials), and ``secrets`` to redact (longest first).
    A field the run does not know is None (or empty); it is never guessed."""

    namespace: str | None = None
    actors: Mapping[str, str] = attrs.field(factory=dict)
    server_version: str | None = None
    public_url: str | None = None
    secrets: tuple[str, ...] = attrs.field(default=(), converter=_ordered)

    @classmethod
    def collect(
        cls,
        target: ServerFacts | None,
        pool: ActorFacts | None,
        namespace: str | None,
        extra_secrets: Iterable[str] = (),
    ) -> RunContext:
        """The context of a run on ``target`` with ``pool`` in ``namespace``. A target that is not started (no
        URL yet) or a server that does not answer ``/health`` leaves the URL or version None."""
        found = list(extra_secrets)
        actors: dict[str, str] = {}
        if pool is not None:
            for name in pool.identities:
                actors[name] = pool.role(name)
                found.append(pool.password(name))
        url = version = None
        if target is not None:
            found.append(target.root_password)
            if isinstance(target, SignsTokens):
                found.append(target.jwt_secret)
            try:
                url = target.base_url
            except KalamModelError:  # not started: no URL yet
                url = None
            if url is not None:
                parts = urllib.parse.urlsplit(url)
                found.extend(v for v in (parts.password, parts.query) if v)
                try:
                    version = target.server_version()
                except (
                    KalamModelError,
                    OSError,
                ):  # an unreachable server must not stop a failure being saved
                    version = None
        return cls(namespace, actors, version or None, public_url(url), tuple(found))
