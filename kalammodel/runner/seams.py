"""The runner's seams: what it needs of a target and an actor pool, and what a runner extension is.

``Target`` and ``ActorPool`` here are the minimal Protocols the runner and the checks use (``kalammodel.targets``
implements them; the runner never imports it). An :class:`Extension` is a base class whose hooks do nothing, so
the session calls every hook of every extension without asking whether it exists.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..client import KalamClient
from ..steps import Step

if TYPE_CHECKING:
    from .session import Session

__all__ = ["ActorPool", "Extension", "ExtensionFactory", "Target"]


class Target(Protocol):
    """What the runner uses of a server it tests (``kalammodel.targets.Target`` has all of it)."""

    #: where the server's files are, to read cold files from (None: not readable, cold checks are skipped)
    data_dir: Path | None
    #: whether :meth:`restart` works (the target owns its server process)
    can_restart: bool

    @property
    def base_url(self) -> str: ...

    def restart(self, *, hard: bool = False) -> None: ...


class ActorPool(Protocol):
    """What the runner uses of the pool of identities (``kalammodel.targets.ActorPool``)."""

    @property
    def names(self) -> tuple[str, ...]: ...

    @property
    def root(self) -> KalamClient: ...

    def role(self, name: str) -> str: ...

    def user_id(self, name: str) -> str: ...

    def client(self, name: str) -> KalamClient: ...

    def relogin(self) -> None: ...


class Extension:
    """A runner extension: one per session, built by a factory ``factory(session) -> Extension`` passed as
    ``Runner(extensions=[factory])``. Every hook does nothing by default."""

    def run_step(self, session: Session, step: Step) -> bool:
        """Run ``step`` and return True when this extension runs it (then the session sends nothing)."""
        return False

    def after_step(self, session: Session, step: Step) -> None:
        """After every step (its checks included), whoever ran it."""

    def after_restart(self, session: Session) -> None:
        """The server was restarted and every identity logged in again; before the post-restart checks."""

    def check_all(self, session: Session, final: bool = True) -> None:
        """A full check (``final``: at teardown or after a restart, not a periodic one); raise Divergence."""

    def close(self, session: Session) -> None:
        """The session ends; must not raise on a dead server."""


#: what ``Runner(extensions=...)`` takes: called with each new session
ExtensionFactory = Callable[["Session"], Extension]
