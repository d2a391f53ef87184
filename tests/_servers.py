"""Helpers shared by tests that need their own embedded server (with planted faults)."""

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
