"""Targets: the embedded server as a real child process, remote and process targets, their error paths,
target selection from options and environment, the actor pool, and the pytest plugin's wiring."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import sys
import textwrap

import pytest

from kalammodel.errors import DeadlineExceeded, TransportError, UsageError
from kalammodel.targets import (
    ActorPool,
    EmbeddedTarget,
    ProcessTarget,
    RemoteTarget,
    target_from_config,
)

HAS_SERVER = importlib.util.find_spec("kalammodel.server.__main__") is not None
needs_server = pytest.mark.skipif(not HAS_SERVER, reason="kalammodel.server.__main__ is not written yet")

pytest_plugins = ["pytester"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def embedded():
    target = EmbeddedTarget()
    target.start()
    yield target
    target.close()


# ------------------------------------------------------------------------------------------ embedded, real server


@needs_server
def test_embedded_starts_on_a_free_loopback_port(embedded):
    """The embedded server runs as a child process on a loopback port with its own data dir."""
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", embedded.base_url)
    assert embedded.port != 0 and embedded.running and embedded.pid != os.getpid()
    assert embedded.data_dir is not None and embedded.data_dir.is_dir()
    assert embedded.health()["status"] == "healthy"
    assert embedded.server_version()


@needs_server
def test_embedded_restart_keeps_url_data_and_tokens(embedded):
    """A hard restart (SIGKILL) and a graceful one keep the URL, the users and the issued tokens."""
    pool = ActorPool.for_target(embedded, {"root": "system", "user1": "user"}, secret="restart-test")
    try:
        user1 = pool.client("user1")
        assert user1.execute("SELECT 1").results[0].rows == [(1,)]
        url, old_pid = embedded.base_url, embedded.pid
        embedded.restart(hard=True)
        assert embedded.base_url == url and embedded.pid != old_pid and not pid_alive(old_pid)
        assert user1.execute("SELECT 1").results[0].rows == [(1,)]  # same JWT secret after restart
        embedded.restart()
        # A second pool with the same secret meets "already exists" and resets the password instead.
        again = ActorPool.for_target(embedded, {"root": "system", "user1": "user"}, secret="restart-test")
        try:
            assert again.user_id("user1") == pool.user_id("user1")
            assert again.client("user1").execute("SELECT 1").results[0].rows == [(1,)]
        finally:
            again.close()
    finally:
        pool.close()


@needs_server
def test_embedded_stop_ends_the_process_and_close_removes_its_dir():
    """stop() ends the child process; close() removes the temporary data dir."""
    target = EmbeddedTarget()
    try:
        target.start()
        pid, data = target.pid, target.data_dir
        target.stop()
        assert not target.running and not pid_alive(pid)
        assert data.is_dir()  # stop keeps data for a later start
    finally:
        target.close()
    assert not data.exists()


@needs_server
def test_embedded_passes_faults_to_the_server():
    """Faults become --fault arguments and a server with a known fault starts."""
    target = EmbeddedTarget(faults=["user_select_leak", "live_cross_user"])
    argv = target.argv()
    assert argv[argv.index("--fault") + 1] == "user_select_leak" and argv.count("--fault") == 2
    try:
        target.start()
        assert target.health()["status"] == "healthy"
    finally:
        target.close()


@needs_server
def test_embedded_bad_fault_name_is_a_clear_error():
    """An unknown fault makes the server exit; the error quotes its stderr naming the fault."""
    target = EmbeddedTarget(faults=["no_such_fault"])
    try:
        with pytest.raises(UsageError) as info:
            target.start()
    finally:
        target.close()
    assert "exited with code" in str(info.value) and "no_such_fault" in str(info.value)
    assert target.root_password not in str(info.value) and "--root-password REDACTED" in str(info.value)


@needs_server
def test_remote_target_against_a_running_server(embedded, tmp_path):
    """A remote target checks /health, reports the version and accepts an existing data dir."""
    remote = RemoteTarget(embedded.base_url + "/", embedded.root_password, tmp_path)
    remote.start()
    assert remote.base_url == embedded.base_url and remote.server_version() == embedded.server_version()
    assert not remote.can_restart
    with pytest.raises(UsageError, match="cannot restart"):
        remote.restart()
    with pytest.raises(UsageError, match="is not a directory"):
        RemoteTarget(embedded.base_url, "pw", tmp_path / "missing").start()


@needs_server
def test_process_target_runs_kills_and_restarts_a_server_command(tmp_path, embedded):
    """A process target starts a command, waits for /health, and can kill and restart it on the same data."""
    port = free_port()
    cmd = [sys.executable, "-m", "kalammodel.server", "--port", str(port), "--data-dir", str(tmp_path / "d")]
    target = ProcessTarget(cmd, f"http://127.0.0.1:{port}", "Root-Pass-123!", tmp_path / "d")
    try:
        target.start()
        assert target.health()["status"] == "healthy" and target.running
        pid = target._proc.proc.pid
        target.restart(hard=True)
        assert target.running and target._proc.proc.pid != pid and not pid_alive(pid)
        from kalammodel.client import KalamClient

        with KalamClient.bootstrap(target.base_url, "Root-Pass-123!") as root:
            assert root.execute("SELECT 1").results[0].rows == [(1,)]
    finally:
        target.close()
    busy = ProcessTarget(cmd, embedded.base_url, "pw")
    with pytest.raises(UsageError, match="something already answers"):
        busy.start()


# --------------------------------------------------------------------------------------------- error paths


def test_command_that_exits_immediately_reports_its_stderr():
    """A server that exits before it is ready raises UsageError with its exit code and stderr tail."""
    script = "import sys; sys.stderr.write('boom: bad config in server.toml\\n'); sys.exit(3)"
    target = EmbeddedTarget(command=[sys.executable, "-c", script], startup_timeout=20)
    try:
        with pytest.raises(UsageError) as info:
            target.start()
    finally:
        target.close()
    text = str(info.value)
    assert "exited with code 3" in text and "boom: bad config in server.toml" in text and "command:" in text


def test_command_that_never_prints_the_line_hits_the_deadline():
    """A server that never prints the listening line raises DeadlineExceeded and is killed."""
    script = "import os, time; print('pid', os.getpid(), flush=True); time.sleep(60)"
    target = EmbeddedTarget(command=[sys.executable, "-c", script], startup_timeout=1.0)
    try:
        with pytest.raises(DeadlineExceeded) as info:
            target.start()
    finally:
        target.close()
    text = str(info.value)
    assert "did not print 'kalammodel-server listening on" in text and "within 1 s" in text
    pid = int(re.search(r"pid (\d+)", text).group(1))
    assert not pid_alive(pid)


def test_process_command_that_exits_reports_its_stderr():
    """A process target whose command exits raises UsageError naming the URL and quoting stderr."""
    port = free_port()
    cmd = [sys.executable, "-c", "import sys; print('config file not found', file=sys.stderr); sys.exit(1)"]
    target = ProcessTarget(cmd, f"http://127.0.0.1:{port}", "pw", startup_timeout=20)
    try:
        with pytest.raises(UsageError) as info:
            target.start()
    finally:
        target.close()
    assert f"before http://127.0.0.1:{port} answered" in str(info.value)
    assert "config file not found" in str(info.value)


def test_unreachable_remote_names_the_url():
    """An unreachable remote URL raises TransportError naming the URL and what to check."""
    url = f"http://127.0.0.1:{free_port()}"
    target = RemoteTarget(url, "pw", startup_timeout=0.5)
    with pytest.raises(TransportError) as info:
        target.start()
    assert url in str(info.value) and "KALAMDB_URL" in str(info.value)


def test_bad_url_is_a_usage_error():
    """A URL that is not http(s) is refused with the option name."""
    with pytest.raises(UsageError, match=r"must be an http\(s\) URL.*'localhost:8080'"):
        RemoteTarget("localhost:8080", "pw")


# ------------------------------------------------------------------------------------------ target selection


def test_no_url_selects_the_embedded_target():
    """Without a URL the embedded target is chosen, with the faults and root password given."""
    t = target_from_config(faults=["flush_keeps_hot"], root_password="Pw-1!", environ={})
    assert isinstance(t, EmbeddedTarget) and t.faults == ("flush_keeps_hot",) and t.root_password == "Pw-1!"
    assert isinstance(target_from_config(environ={}).root_password, str)


def test_environment_selects_a_remote_target(tmp_path):
    """KALAMDB_URL, KALAMDB_ROOT_PASSWORD and KALAMDB_DATA_DIR select and configure a remote target."""
    env = {
        "KALAMDB_URL": "http://127.0.0.1:9",
        "KALAMDB_ROOT_PASSWORD": "pw",
        "KALAMDB_DATA_DIR": str(tmp_path),
    }
    t = target_from_config(environ=env)
    assert isinstance(t, RemoteTarget)
    assert (t.base_url, t.root_password, t.data_dir) == ("http://127.0.0.1:9", "pw", tmp_path)
    t2 = target_from_config(url="http://127.0.0.1:10", root_password="x", environ=env)
    assert (t2.base_url, t2.root_password) == ("http://127.0.0.1:10", "x")


def test_command_selects_a_process_target():
    """A server command with a URL and password selects a process target."""
    t = target_from_config(url="http://127.0.0.1:9", root_password="pw", command="kalamdb-server server.toml",
                           environ={})  # fmt: skip
    assert isinstance(t, ProcessTarget) and t.argv == ["kalamdb-server", "server.toml"] and t.can_restart


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(url="http://127.0.0.1:9"), "needs the root password: set KALAMDB_ROOT_PASSWORD"),
        (
            dict(url="http://127.0.0.1:9", root_password="p", faults=["x"]),
            "planted in the embedded server only",
        ),
        (dict(command="kalamdb-server s.toml", root_password="p"), "needs --kalamdb-url"),
        (dict(command="kalamdb-server s.toml", url="http://127.0.0.1:9"), "needs --kalamdb-root-password"),
        (
            dict(command="kalamdb-server", url="http://127.0.0.1:9", root_password="p", faults=["x"]),
            "embedded server only",
        ),
        (dict(command="  ", url="http://127.0.0.1:9", root_password="p"), "is empty"),
    ],
)
def test_inconsistent_options_are_usage_errors(kwargs, message):
    """Options that do not fit together raise UsageError saying what is missing."""
    with pytest.raises(UsageError, match=re.escape(message)):
        target_from_config(environ={}, **kwargs)


# ------------------------------------------------------------------------------------------------ actor pool


def test_actor_pool_names_users_and_passwords_deterministically():
    """Real user ids are km_<name>_<suffix>; suffix and passwords derive from the secret."""
    a = ActorPool("http://127.0.0.1:9", "rootpw", secret="s1")
    b = ActorPool("http://127.0.0.1:9", "rootpw", secret="s1")
    c = ActorPool("http://127.0.0.1:9", "rootpw", secret="s2")
    assert a.names == ("root", "dba", "svc", "user1", "user2")
    assert a.user_id("root") == "root" and a.password("root") == "rootpw"
    assert re.fullmatch(r"km_user1_[0-9a-f]{4}", a.user_id("user1"))
    assert a.user_id("user1") == b.user_id("user1") and a.password("user1") == b.password("user1")
    assert a.user_id("user1") != c.user_id("user1") and a.password("dba") != a.password("svc")
    assert re.fullmatch(r"Km-[0-9a-f]{20}!", a.password("user2"))
    assert (a.role("svc"), a.role("dba"), a.role("user2")) == ("service", "dba", "user")
    assert ActorPool("http://x:1", "pw", suffix="ab12").user_id("user1") == "km_user1_ab12"


@pytest.mark.parametrize(
    ("identities", "message"),
    [
        ({"root": "dba"}, "'root' is the server's root user"),
        ({"boss": "system"}, "only 'root' has role 'system'"),
        ({"u": "superuser"}, "role 'superuser'"),
    ],
)
def test_actor_pool_rejects_bad_identities(identities, message):
    """Identities with impossible roles are refused up front."""
    with pytest.raises(UsageError, match=re.escape(message)):
        ActorPool("http://127.0.0.1:9", "pw", identities)


def test_actor_pool_unknown_identity_lists_known_ones():
    """Asking for an identity the pool does not have names the ones it has."""
    pool = ActorPool("http://127.0.0.1:9", "pw", {"user1": "user"})
    with pytest.raises(UsageError, match="no identity 'user9'.*known: user1, root"):
        pool.client("user9")


# ------------------------------------------------------------------------------------------------ plugin


def test_plugin_header_profiles_and_options(pytester, monkeypatch):
    """The plugin adds its options, defaults to the dev profile and prints the target line."""
    pytester.makepyfile(
        textwrap.dedent(
            """
            from hypothesis import settings

            def test_profile(pytestconfig):
                assert settings.get_current_profile_name() == "dev"
                assert settings.default.max_examples == 25 and settings.default.stateful_step_count == 40
                assert settings.default.deadline is None
                assert pytestconfig.getoption("--kalammodel-fault") == []
            """
        )
    )
    monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["kalammodel: target=embedded, *profile=dev, workload=default"])
    result.assert_outcomes(passed=1)


def test_plugin_ci_profile_and_workload_option(pytester, monkeypatch):
    """CI=true selects the derandomized ci profile; --kalammodel-workload loads the named model."""
    pytester.makepyfile(
        textwrap.dedent(
            """
            from hypothesis import settings

            def test_profile(kalammodel_workload):
                assert settings.get_current_profile_name() == "ci"
                assert settings.default.derandomize and settings.default.max_examples == 15
                assert kalammodel_workload.name == "chat"
            """
        )
    )
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_subprocess("--kalammodel-workload", "chat")
    result.stdout.fnmatch_lines(["kalammodel: *profile=ci, workload=chat"])
    result.assert_outcomes(passed=1)


def test_plugin_rejects_unknown_workload_and_fault(pytester):
    """A bad workload name or fault name stops pytest with a usage error naming it."""
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("--kalammodel-workload", "nope")
    result.stderr.fnmatch_lines(["*no workload named 'nope'*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    if HAS_SERVER:
        result = pytester.runpytest_subprocess("--kalammodel-fault", "nope")
        result.stderr.fnmatch_lines(["*--kalammodel-fault nope: no such planted defect*"])
        assert result.ret == pytest.ExitCode.USAGE_ERROR


@needs_server
def test_embedded_server_stops_when_the_tester_is_killed(tmp_path):
    """A tester killed with SIGKILL (a CI timeout, kill -9) cannot stop its embedded server; the server notices
    its parent is gone (``--exit-with-parent``) and stops instead of holding a port and a temp dir forever."""
    import subprocess
    import time

    script = textwrap.dedent(
        """
        import os, signal
        from kalammodel.targets import EmbeddedTarget
        target = EmbeddedTarget()
        target.start()
        print(target.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    tester = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert tester.returncode == -9, tester.stderr
    server_pid = int(tester.stdout.split()[0])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not pid_alive(server_pid):
            return
        time.sleep(0.1)  # poll interval of a condition with a deadline
    os.kill(server_pid, 9)
    pytest.fail(f"the embedded server (pid {server_pid}) outlived its killed tester by 15 s")
