"""Statements per second of the embedded server over HTTP: single-row INSERT and PK SELECT on a USER table.

Run: /tmp/venv/bin/python benchmarks/server_throughput.py [--n 2000]
Spawns ``python -m kalammodel.server --port 0`` on a temporary data directory and kills it afterwards. Besides
the rates it prints the server's CPU time per request (load-independent, from /proc on Linux), bare ``/health``
as the HTTP floor, and the 1-minute load average: on a shared machine the rates move with the load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

import httpx

ROOT_PASSWORD = "BenchRoot123!"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` (None where /proc is missing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="statements per measurement")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kalammodel.server",
                "--port",
                "0",
                "--data-dir",
                data,
                "--root-password",
                ROOT_PASSWORD,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            found: list[str] = []

            def read() -> None:
                assert proc.stdout is not None
                for line in proc.stdout:
                    if line.startswith("kalammodel-server listening on "):
                        found.append(line.split(" on ", 1)[1].strip())
                        return

            t = threading.Thread(target=read, daemon=True)
            t.start()
            t.join(30)
            if not found:
                print("server did not start within 30 s", file=sys.stderr)
                return 1
            url = found[0]
            with httpx.Client(base_url=url, timeout=30) as c:
                tok = c.post("/v1/api/auth/login", json={"user": "root", "password": ROOT_PASSWORD}).json()[
                    "access_token"
                ]
                c.headers["Authorization"] = f"Bearer {tok}"

                def q(sql: str) -> None:
                    r = c.post("/v1/api/sql", json={"sql": sql})
                    if r.status_code != 200:
                        raise SystemExit(f"{sql}: {r.text}")

                q("CREATE NAMESPACE bench")
                q("CREATE USER TABLE bench.notes (id BIGINT PRIMARY KEY, body TEXT, n INT)")
                load = os.getloadavg()[0]
                cases = [
                    ("bare /health", lambda i: c.get("/health")),
                    (
                        "single-row INSERT",
                        lambda i: q(f"INSERT INTO bench.notes (id, body, n) VALUES ({i}, 'body {i}', {i})"),
                    ),
                    ("PK SELECT", lambda i: q(f"SELECT id, body, n FROM bench.notes WHERE id = {i}")),
                ]
                lines = []
                for name, run in cases:
                    cpu0, start = cpu_seconds(proc.pid), time.perf_counter()
                    for i in range(args.n):
                        run(i)
                    wall, cpu1 = time.perf_counter() - start, cpu_seconds(proc.pid)
                    cpu = (
                        ""
                        if cpu0 is None or cpu1 is None
                        else f"   server CPU {(cpu1 - cpu0) / args.n * 1e6:5.0f} us/request"
                    )
                    lines.append(f"{name + ':':19s}{args.n / wall:7.0f} statements/s{cpu}")
            print("\n".join(lines))
            print(
                f"load average (1 min): {load:.2f} before, {os.getloadavg()[0]:.2f} after; {os.cpu_count()} CPUs"
            )
        finally:
            proc.kill()
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
