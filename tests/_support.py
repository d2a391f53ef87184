"""Helpers shared by tests: an embedded server with planted faults; a pool for sessions that send nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kalammodel.targets import DEFAULT_IDENTITIES, ActorPool, EmbeddedTarget


@contextmanager
def embedded_server(
    *faults: str, server_args: tuple[str, ...] = ()
) -> Iterator[tuple[EmbeddedTarget, ActorPool]]:
    """An embedded server with ``faults`` on and its logged-in default identities; stopped on exit."""
    target = EmbeddedTarget(faults, extra_args=server_args)
    target.start()
    pool = ActorPool.for_target(target, DEFAULT_IDENTITIES)
    try:
        pool.open_all()
        yield target, pool
    finally:
        pool.close()
        target.close()


class _Root:
    def execute(self, sql: str) -> None:
        pass


class SilentPool:
    """Just enough of an ActorPool for a Session that sends nothing (model and policy tests)."""

    names = ("root", "dba", "svc", "user1", "user2")
    root = _Root()

    def role(self, name: str) -> str:
        return {"root": "system", "dba": "dba", "svc": "service"}.get(name, "user")

    def user_id(self, name: str) -> str:
        return name
