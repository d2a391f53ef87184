"""The pytest export (``test_*.py``): a regression test that needs only ``kalammodel.client`` and a server.

The generated file holds the case as data (namespace, acting users, requests, the model's expectation) and a
few lines of calls into :mod:`kalammodel.reproduce`, where the setup and the checks live as ordinary code.
"""

from __future__ import annotations

import json
import pprint

from kalammodel._version import __version__

from .._data import display_path, jsonable, slug
from ..format import Case
from ._blocks import all_lines, export_blocks, export_namespace, header, login_actors, role_of

_TEMPLATE = '''"""{title}

Exported by kalammodel {version} from {source}. Needs only ``kalammodel.client`` and a KalamDB server:

    KALAMDB_URL=http://127.0.0.1:8080 KALAMDB_ROOT_PASSWORD=... pytest {filename}

The test passes once the server behaves as expected at the diverging step.

{header}
"""

from __future__ import annotations

import json
import os

import pytest

from kalammodel.client import KalamClient
from kalammodel.errors import SqlError
from kalammodel.reproduce import CaseServer, check_outcome

URL = os.environ.get("KALAMDB_URL")
ROOT_PASSWORD = os.environ.get("KALAMDB_ROOT_PASSWORD")
pytestmark = pytest.mark.skipif(
    not URL or ROOT_PASSWORD is None, reason="set KALAMDB_URL and KALAMDB_ROOT_PASSWORD to run this case"
)

CASE_NAMESPACE = {ns!r}
# identity -> role of the users that send requests with their own token (created or reset by the test)
ACTORS = {actors}
# (step index, step, acting user, EXECUTE AS user or None, SQL, diverged here)
REQUESTS = {requests}
INVARIANT = {invariant!r}
EXPECTED = json.loads({expected!r})
ACTUAL = json.loads({actual!r})


def _send(client: KalamClient, as_user: str | None, sql: str) -> tuple[object, SqlError | None]:
    """(response, None) or (None, SqlError) for one request."""
    try:
        if as_user is not None:
            return client.execute_as(as_user, sql), None
        return client.execute(sql), None
    except SqlError as error:
        return None, error


def test_{func}() -> None:
    """The server agrees with kalammodel's model on the case's diverging request ({invariant})."""
    with CaseServer(str(URL), str(ROOT_PASSWORD), CASE_NAMESPACE, ACTORS) as server:
        for _index, _step, actor, as_user, sql, diverged in REQUESTS:
            response, error = _send(server.client(actor), as_user, server.rebase(sql))
            server.settle(response)
            if diverged:
                check_outcome(EXPECTED, response, error)
                return
'''


def export_pytest(case: Case) -> str:
    """A pytest file that reproduces the case with ``kalammodel.client`` only (env ``KALAMDB_URL`` and
    ``KALAMDB_ROOT_PASSWORD``): it creates the namespace and users, sends every request as the right user and
    asserts the model's expected outcome at the diverging request."""
    ns = export_namespace(case)
    lines = all_lines(export_blocks(case, ns))
    requests = [(ln.step_index, ln.describe, ln.actor, ln.as_user, ln.sql, ln.diverged) for ln in lines]
    actors = {actor: role_of(case, actor) for actor in login_actors(lines)}
    text = "\n".join(header(case, ns)).replace("\\", "\\\\").replace('"""', "'''")
    return _TEMPLATE.format(
        title=f"Regression test for kalammodel case {case.name} [{case.divergence.invariant}].",
        version=__version__,
        source=display_path(case.path) if case.path else case.name + ".json",
        filename=f"test_{slug(case.name)}.py",
        header=text,
        ns=ns,
        actors=pprint.pformat(actors, width=100),
        requests=pprint.pformat(requests, width=110),
        invariant=case.divergence.invariant,
        expected=json.dumps(jsonable(case.divergence.expected)),
        actual=json.dumps(jsonable(case.divergence.actual)),
        func=slug(case.name),
    )
