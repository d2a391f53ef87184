"""``python -m kalammodel.server --port N --data-dir D ...``: run the embedded KalamDB-compatible server."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import uvicorn

from ._app import DEFAULT_FLUSH_CHECK_INTERVAL, DEFAULT_MAX_QUERIES_PER_SEC
from ._faults import FAULTS


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m kalammodel.server",
        description="Embedded KalamDB 0.4.3-rc.4-compatible server for kalammodel.",
    )
    p.add_argument("--port", type=int, required=True, help="TCP port (0 = pick a free one)")
    p.add_argument("--data-dir", required=True, help="data directory (created if missing)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--root-password", default=None, help="root password at first boot (env KALAMDB_ROOT_PASSWORD)"
    )
    p.add_argument(
        "--jwt-secret",
        default=os.environ.get("KALAMDB_JWT_SECRET", "kalammodel-test-secret-at-least-32-characters"),
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME",
        help=f"switch on a planted defect (repeatable; env KALAMMODEL_FAULTS): {', '.join(sorted(FAULTS))}",
    )
    p.add_argument(
        "--flush-delay-ms",
        type=int,
        default=None,
        help="delay every flush job (env KALAMMODEL_FLUSH_DELAY_MS)",
    )
    p.add_argument("--default-query-limit", type=int, default=1000)
    p.add_argument("--max-query-limit", type=int, default=100000)
    p.add_argument(
        "--max-queries-per-sec",
        type=int,
        default=DEFAULT_MAX_QUERIES_PER_SEC,
        help="per-user /v1/api/sql rate limit; beyond it HTTP 429 RATE_LIMIT_EXCEEDED (default %(default)s)",
    )
    p.add_argument(
        "--flush-check-interval-seconds",
        type=float,
        default=DEFAULT_FLUSH_CHECK_INTERVAL,
        help="automatic flush of tables WITH (FLUSH_POLICY=...) checked this often; 0 = off "
        "(default %(default)s)",
    )
    p.add_argument(
        "--exit-with-parent",
        type=int,
        default=None,
        metavar="PID",
        help="stop when process PID is gone (the tester that spawned this server, killed without stopping it)",
    )
    return p.parse_args(argv)


#: how often the server looks for the process of --exit-with-parent
PARENT_POLL_S = 1.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _checked(args: argparse.Namespace) -> tuple[list[str], int] | int:
    """(faults, flush delay in ms) from the flags and the environment, or the exit status 2 after the message."""
    faults = list(args.fault)
    env_faults = os.environ.get("KALAMMODEL_FAULTS", "")
    faults += [f.strip() for f in env_faults.split(",") if f.strip()]
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        print(
            f"error: unknown fault {', '.join(map(repr, unknown))}; valid faults: {', '.join(sorted(FAULTS))}",
            file=sys.stderr,
        )
        return 2
    delay = args.flush_delay_ms
    if delay is None:
        try:
            delay = int(os.environ.get("KALAMMODEL_FLUSH_DELAY_MS", "0") or 0)
        except ValueError:
            print(
                "error: KALAMMODEL_FLUSH_DELAY_MS must be an integer number of milliseconds", file=sys.stderr
            )
            return 2
    if delay < 0 or not 0 <= args.port <= 65535:
        print("error: --flush-delay-ms must be >= 0 and --port within 0..65535", file=sys.stderr)
        return 2
    if args.default_query_limit > args.max_query_limit or args.max_query_limit <= 0:
        print("error: need 0 < --default-query-limit <= --max-query-limit", file=sys.stderr)
        return 2
    if args.max_queries_per_sec <= 0 or args.flush_check_interval_seconds < 0:
        print(
            "error: --max-queries-per-sec must be > 0 and --flush-check-interval-seconds >= 0 (0 = off)",
            file=sys.stderr,
        )
        return 2
    return faults, delay


async def _serve(server: uvicorn.Server, args: argparse.Namespace, spawned_by: int) -> None:
    """Serve; print the listening line once started; stop when ``--exit-with-parent``'s process is gone."""
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            return
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    print(f"kalammodel-server listening on http://{args.host}:{port}", flush=True)
    if args.exit_with_parent is not None:
        while not task.done():
            # the parent's pid could be reused after it died; its children's parent pid changes at once
            pid = args.exit_with_parent
            if not _alive(pid) or (pid == spawned_by and os.getppid() != pid):
                print(f"process {args.exit_with_parent} is gone: stopping", file=sys.stderr, flush=True)
                server.should_exit = True
                break
            await asyncio.wait({task}, timeout=PARENT_POLL_S)
    await task


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    checked = _checked(args)
    if isinstance(checked, int):
        return checked
    faults, delay = checked
    root_pw = (
        args.root_password if args.root_password is not None else os.environ.get("KALAMDB_ROOT_PASSWORD")
    )
    from ._app import create_app

    try:
        app = create_app(
            args.data_dir,
            root_password=root_pw,
            faults=faults,
            flush_delay_ms=delay,
            jwt_secret=args.jwt_secret,
            default_query_limit=args.default_query_limit,
            max_query_limit=args.max_query_limit,
            max_queries_per_sec=args.max_queries_per_sec,
            flush_check_interval_seconds=args.flush_check_interval_seconds,
        )
    except OSError as e:
        print(f"error: cannot open data directory {args.data_dir!r}: {e}", file=sys.stderr)
        return 2
    from ._ws import LivenessWebSocketProtocol

    ws_protocol: dict[str, object] = {}
    if LivenessWebSocketProtocol is not None:
        # ASGI hides ping frames; this protocol notes them so the heartbeat timeout counts them as liveness.
        ws_protocol["ws"] = LivenessWebSocketProtocol
    config = uvicorn.Config(
        app,
        **ws_protocol,  # type: ignore[arg-type]
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        ws_ping_interval=None,
    )
    server = uvicorn.Server(config)
    spawned_by = os.getppid()
    try:
        asyncio.run(_serve(server, args, spawned_by))
    except KeyboardInterrupt:
        pass
    if not server.started:
        print(f"error: could not listen on {args.host}:{args.port}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
