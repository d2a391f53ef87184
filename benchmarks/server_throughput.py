"""Statements per second of the embedded server over HTTP: single-row INSERT and PK SELECT on a USER table.

Run: /tmp/venv/bin/python benchmarks/server_throughput.py [--n 2000]
Spawns ``python -m kalammodel.server --port 0`` on a temporary data directory and kills it afterwards.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time

import httpx

ROOT_PASSWORD = "BenchRoot123!"


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
                start = time.perf_counter()
                for i in range(args.n):
                    q(f"INSERT INTO bench.notes (id, body, n) VALUES ({i}, 'body {i}', {i})")
                ins = args.n / (time.perf_counter() - start)
                start = time.perf_counter()
                for i in range(args.n):
                    q(f"SELECT id, body, n FROM bench.notes WHERE id = {i}")
                sel = args.n / (time.perf_counter() - start)
            print(f"single-row INSERT: {ins:7.0f} statements/s")
            print(f"PK SELECT:         {sel:7.0f} statements/s")
        finally:
            proc.kill()
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
