"""How to reach a server under test: spawned embedded server, a remote URL, or a process the tester controls.

```
Target (Protocol)             base_url, data_dir, root_password, start/stop/close, kill/restart, server_version()
└── BaseTarget                base.py: the shared implementation; health, describe, context manager
    ├── EmbeddedTarget        embedded.py: python -m kalammodel.server on a free loopback port; kill/restart
    ├── RemoteTarget          remote.py: KALAMDB_URL + KALAMDB_ROOT_PASSWORD (+ KALAMDB_DATA_DIR); no kill/restart
    └── ProcessTarget         process.py: a command that starts a real server (kalamdb-server server.toml)
ActorPool                     pool.py: one logged-in KalamClient per identity of the model
OPTIONS                       options.py: the one option set of the pytest plugin and the CLI; target_from_config
```

``target_from_config`` / ``target_from_options`` pick one from options and environment. ``ActorPool`` holds one
logged-in ``KalamClient`` per identity of the model ('root', 'dba', 'svc', 'user1', ...), creating the real
users once. A new target: one module here plus its option records (and its branch) in ``options.py``.
"""

from __future__ import annotations

from .base import BaseTarget, OwnedProcess, Target, get_health, run_foreground
from .embedded import EmbeddedTarget, ServePlan, serve_plan
from .options import (
    OPTIONS,
    PROFILES,
    Option,
    add_cli_options,
    add_pytest_options,
    check_faults,
    check_minutes,
    describe_selection,
    fault_names,
    known_bugs_mode,
    remote_version,
    run_command,
    target_arguments,
    target_from_config,
    target_from_options,
    values_from_cli,
    values_from_pytest,
)
from .pool import DEFAULT_IDENTITIES, ActorPool
from .process import ProcessTarget
from .remote import RemoteTarget

__all__ = [
    "ActorPool",
    "BaseTarget",
    "DEFAULT_IDENTITIES",
    "EmbeddedTarget",
    "OPTIONS",
    "Option",
    "OwnedProcess",
    "PROFILES",
    "ProcessTarget",
    "RemoteTarget",
    "ServePlan",
    "Target",
    "add_cli_options",
    "add_pytest_options",
    "check_faults",
    "check_minutes",
    "describe_selection",
    "fault_names",
    "get_health",
    "known_bugs_mode",
    "remote_version",
    "run_command",
    "run_foreground",
    "serve_plan",
    "target_arguments",
    "target_from_config",
    "target_from_options",
    "values_from_cli",
    "values_from_pytest",
]
