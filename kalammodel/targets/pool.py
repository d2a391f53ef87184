"""Session identities: one logged-in ``KalamClient`` per identity of the model, real users created once."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from kalammodel.client import KalamClient, quote_literal
from kalammodel.errors import KalamError, SqlError, UsageError

if TYPE_CHECKING:
    from .base import Target

__all__ = ["ActorPool", "DEFAULT_IDENTITIES"]

DEFAULT_IDENTITIES: dict[str, str] = {
    "root": "system",
    "dba": "dba",
    "svc": "service",
    "user1": "user",
    "user2": "user",
}


class ActorPool:
    """One logged-in ``KalamClient`` per identity of the model, real users created once per session.

    'root' is the server's root user. Every other identity ``name`` maps to the real user
    ``km_<name>_<suffix>`` with the identity's role. The suffix and passwords derive from a secret
    (``KALAMMODEL_SECRET``, else the root password), so a later session against the same server finds the same
    users: on "already exists" the pool resets the password with ``ALTER USER ... SET PASSWORD`` (and the role
    with ``SET ROLE``) instead of guessing logins, which would count towards KalamDB's 5-strike lockout.
    """

    def __init__(
        self,
        base_url: str,
        root_password: str,
        identities: Mapping[str, str] | None = None,
        *,
        suffix: str | None = None,
        secret: str | None = None,
        timeout: float = 10.0,
    ):
        ids = dict(DEFAULT_IDENTITIES if identities is None else identities)
        ids.setdefault("root", "system")
        if ids["root"] != "system":
            raise UsageError(
                f"identity 'root' is the server's root user with role 'system' (got role {ids['root']!r})"
            )
        for name, role in ids.items():
            if role not in ("user", "service", "dba", "system"):
                raise UsageError(
                    f"identity {name!r} has role {role!r}; valid roles: user, service, dba, system"
                )
            if role == "system" and name != "root":
                raise UsageError(f"identity {name!r}: only 'root' has role 'system'")
        self.base_url = base_url.rstrip("/")
        self.root_password = root_password
        self.identities = ids
        self.timeout = timeout
        self._secret = (
            secret or os.environ.get("KALAMMODEL_SECRET") or f"kalammodel:{root_password}"
        ).encode()
        self.suffix = suffix or hmac.new(self._secret, b"suffix", hashlib.sha256).hexdigest()[:4]
        if not re.fullmatch(r"[a-z0-9]{1,12}", self.suffix):
            raise UsageError(
                f"actor pool suffix must be 1-12 lowercase letters or digits (got {self.suffix!r})"
            )
        self._clients: dict[str, KalamClient] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_target(
        cls,
        target: Target,
        identities: Mapping[str, str] | None = None,
        *,
        suffix: str | None = None,
        secret: str | None = None,
        timeout: float = 10.0,
    ) -> ActorPool:
        """A pool on ``target``'s URL with its root password."""
        return cls(target.base_url, target.root_password, identities, suffix=suffix, secret=secret, timeout=timeout)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.identities)

    def role(self, name: str) -> str:
        return self.identities[self._known(name)]

    def user_id(self, name: str) -> str:
        """The real user id of identity ``name`` ('root' stays 'root')."""
        return "root" if self._known(name) == "root" else f"km_{name}_{self.suffix}"

    def password(self, name: str) -> str:
        """The deterministic password of identity ``name`` (the root password for 'root')."""
        if self._known(name) == "root":
            return self.root_password
        digest = hmac.new(self._secret, f"password:{self.user_id(name)}".encode(), hashlib.sha256).hexdigest()
        return f"Km-{digest[:20]}!"

    def _known(self, name: str) -> str:
        if name not in self.identities:
            raise UsageError(f"no identity {name!r} in the actor pool; known: {', '.join(self.identities)}")
        return name

    @property
    def root(self) -> KalamClient:
        return self.client("root")

    def client(self, name: str) -> KalamClient:
        """The logged-in client of identity ``name`` (created and logged in on first use)."""
        self._known(name)
        with self._lock:
            if name not in self._clients:
                self._clients[name] = self._open(name)
            return self._clients[name]

    def open_all(self) -> ActorPool:
        """Create and log in every identity now (fails fast at session start)."""
        for name in self.identities:
            self.client(name)
        return self

    def _open(self, name: str) -> KalamClient:
        if name == "root":
            return KalamClient.bootstrap(self.base_url, self.root_password, timeout=self.timeout)
        root = self.client_unlocked_root()
        uid, pw, role = self.user_id(name), self.password(name), self.identities[name]
        try:
            root.create_user(uid, pw, role)
        except SqlError as exc:
            if "already exists" not in (exc.message or "").lower():
                raise
            root.execute(f"ALTER USER {quote_literal(uid)} SET PASSWORD {quote_literal(pw)}")
            root.execute(f"ALTER USER {quote_literal(uid)} SET ROLE {role}")
        return root.client_for(uid, pw)

    def client_unlocked_root(self) -> KalamClient:
        # Called with self._lock held by client(): open root without re-taking the lock.
        if "root" not in self._clients:
            self._clients["root"] = self._open("root")
        return self._clients["root"]

    def relogin(self) -> None:
        """Drop every client and log in again (after a restart that invalidated tokens)."""
        self.close()

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
        for c in clients.values():
            try:
                c.close()
            except (KalamError, OSError):
                pass

    def __enter__(self) -> ActorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
