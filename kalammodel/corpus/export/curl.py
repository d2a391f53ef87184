"""The curl export (``.sh``): a POSIX shell script that logs the acting users in and posts every request."""

from __future__ import annotations

import json
import shlex

from .._data import show
from ..format import Case
from ._blocks import (
    all_lines,
    comment,
    export_blocks,
    export_namespace,
    header,
    login_actors,
    role_of,
    sql_quote,
)

_PRELUDE = r"""set -eu
: "${KALAMDB_URL:?set KALAMDB_URL to the server, e.g. http://127.0.0.1:8080}"
: "${KALAMDB_ROOT_PASSWORD:?set KALAMDB_ROOT_PASSWORD to the root password}"
URL=${KALAMDB_URL%/}

login() {  # login USER PASSWORD: print the access token from /v1/api/auth/login
  body=$(printf '{"user":"%s","password":"%s"}' "$1" "$2")
  curl -sS --max-time 30 -X POST "$URL/v1/api/auth/login" -H "Content-Type: application/json" -d "$body" \
    | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p'
}
sql() {  # sql TOKEN JSON-BODY: POST /v1/api/sql and print the answer
  curl -sS --max-time 60 -X POST "$URL/v1/api/sql" -H "Authorization: Bearer $1" \
    -H "Content-Type: application/json" -d "$2"
  echo
}
wait_job() {  # wait_job JOB-ID: poll system.jobs (as root) until the job ends, at most 60 s
  i=0
  while [ "$i" -lt 600 ]; do
    case "$(sql "$ROOT" "{\"sql\":\"SELECT status FROM system.jobs WHERE job_id = '$1'\"}")" in
      *completed*|*skipped*|*failed*|*cancelled*) return 0 ;;
    esac
    sleep 0.1
    i=$((i + 1))
  done
  echo "flush job $1 did not finish within 60 s" >&2
}
run() {  # run TOKEN JSON-BODY: like sql, and wait for a flush job that the statement started
  answer=$(sql "$1" "$2")
  printf '%s\n' "$answer"
  job=$(printf '%s' "$answer" | sed -n 's/.*Job ID: \(FL-[0-9a-f]*\).*/\1/p')
  if [ -n "$job" ]; then wait_job "$job"; fi
}

ROOT=$(login root "$KALAMDB_ROOT_PASSWORD")
[ -n "$ROOT" ] || { echo "root login failed: check KALAMDB_URL and KALAMDB_ROOT_PASSWORD" >&2; exit 2; }
"""


def _sq_json(sql: str) -> str:
    """The ``/v1/api/sql`` JSON body for ``sql`` as one single-quoted shell word."""
    return shlex.quote(json.dumps({"sql": sql}))


def export_curl(case: Case) -> str:
    """A shell script with curl: log in each acting user via ``/v1/api/auth/login`` for a token, then POST every
    request to ``/v1/api/sql`` in order; the answer to the diverging request is announced."""
    ns = export_namespace(case)
    blocks = export_blocks(case, ns)
    out = ["#!/bin/sh"]
    out += [comment(text, "#") for text in header(case, ns)]
    out += [
        "#",
        f"# Usage: KALAMDB_URL=http://127.0.0.1:8080 KALAMDB_ROOT_PASSWORD=... sh {case.name}.sh",
        "",
    ]
    out.append(_PRELUDE)
    out.append(f'sql "$ROOT" {_sq_json(f"DROP NAMESPACE IF EXISTS {ns}")}')
    out.append(f'sql "$ROOT" {_sq_json(f"CREATE NAMESPACE {ns}")}')
    tokens = {"root": "ROOT"}
    actors = login_actors(all_lines(blocks))
    if actors:
        out += ["", "# acting users: created (or reset) with a fresh random password, then logged in"]
        out.append("PW=\"Km$(od -An -N8 -tx1 /dev/urandom | tr -d ' \\n')aA1\"")
    for n, actor in enumerate(actors, 1):
        var = f"TOKEN_{n}"
        tokens[actor] = var
        role = role_of(case, actor)
        quoted = sql_quote(actor)
        for stmt in (
            f"CREATE USER {quoted} WITH PASSWORD 'PWPLACEHOLDER' ROLE {role}",
            f"ALTER USER {quoted} SET PASSWORD 'PWPLACEHOLDER'",
            f"ALTER USER {quoted} SET ROLE {role}",
        ):
            word = _sq_json(stmt).replace("PWPLACEHOLDER", "'\"$PW\"'")
            out.append(f'sql "$ROOT" {word} >/dev/null')
        out.append(f'{var}=$(login {shlex.quote(actor)} "$PW")')
        out.append(f'[ -n "${var}" ] || {{ echo "login as {actor} failed" >&2; exit 2; }}')
    for block in blocks:
        out.append("")
        out.append(f"# {block.describe}" if block.check else f"# step #{block.step_index}: {block.describe}")
        if not block.lines:
            out.append("#   (no SQL request: a WebSocket or wait step; see `kalammodel show`)")
        for line in block.lines:
            out.append(f"# {line.who}")
            if line.diverged:
                out.append(f"echo '>>> the next answer DIVERGED [{case.divergence.invariant}]'")
            out.append(f'run "${tokens[line.actor]}" {_sq_json(line.wire_sql)}')
            if line.diverged:
                out.append(comment(f"expected: {show(case.divergence.expected_shown, 1000)}", "#"))
                out.append(comment(f"actual:   {show(case.divergence.actual_shown, 1000)}", "#"))
    out += ["", f'sql "$ROOT" {_sq_json(f"DROP NAMESPACE IF EXISTS {ns}")}']
    return "\n".join(out) + "\n"
