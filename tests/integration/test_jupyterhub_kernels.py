"""Kernels start on a host with no IPv4 (issue 11 item 12), with the config `svctl init jupyterhub` writes.

In a network namespace whose loopback has ::1 only: init (--auth dummy, the hub as root, so the
user server gets both --ServerApp.allow_root and the IPC transport), start the hub with svctl, spawn
a user server through the REST API, start a kernel through the proxy and have it answer 6*7 over
its websocket. Once with a short prefix (the runtime directory is PREFIX/run/jupyterhub/kernels/0)
and once with a deep one (too long for kernel sockets: a private mkdtemp directory in /tmp).
Without the IPC transport jupyter_client binds 127.0.0.1 and the kernel never starts.

The hook that makes the runtime directory is also run on its own, as root for a real account
(LocalProcessSpawner, nobody): a private directory of the user's, never through a planted link.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import stat
import sys
import tempfile
from pathlib import Path

import pytest

PORT, HUB_PORT, API_PORT = 19743, 19781, 19701  # a fresh namespace: nothing else listens there
BASE = f"https://[::1]:{PORT}"

# Runs inside the namespace: one execute_request over the kernel's websocket, print the result.
EXECUTE = """
import asyncio, json, sys, uuid
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

async def main(url, token):
    request = HTTPRequest(url, headers={"Authorization": "token " + token}, validate_cert=False)
    socket = await websocket_connect(request)
    msg_id = uuid.uuid4().hex
    socket.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": "6*7", "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))
    while True:
        raw = await asyncio.wait_for(socket.read_message(), 60)
        if raw is None:
            print("websocket closed")
            return
        message = json.loads(raw)
        if message.get("parent_header", {}).get("msg_id") == msg_id and message["msg_type"] == "execute_result":
            print(message["content"]["data"]["text/plain"])
            return

asyncio.run(main(*sys.argv[1:]))
"""


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespace)"
    try:
        import ipykernel  # noqa: F401
        import jupyterhub  # noqa: F401
        import notebook  # noqa: F401
        import tornado  # noqa: F401
    except ImportError as exc:
        return f"needs jupyterhub, notebook and ipykernel in this Python ({exc.name} is missing)"
    from supervisor.jupyterhub.locate import find_jupyterhub, find_proxy

    repo = str(Path(__file__).resolve().parents[2])
    if find_jupyterhub() is None or find_proxy((repo,)) is None or shutil.which("node") is None:
        return "needs jupyterhub, configurable-http-proxy and node (make jupyterhub-deps)"
    if shutil.which("ip") is None:
        return "needs ip (iproute2)"
    return None


@pytest.fixture
def namespace():
    reason = _missing()
    if reason:
        pytest.skip(reason)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
    try:
        from helpers import Namespace
    finally:
        sys.path.pop(0)
    netns = Namespace(f"svk{os.getpid()}")
    try:
        yield netns
    finally:
        netns.destroy()


def _prefix(deep: bool):
    """A short prefix (kernel sockets fit under it) or a deep one like a CI clone's .run (they do not)."""
    root = tempfile.mkdtemp(prefix="k", dir="/tmp")
    return root, Path(root, "a-rather-deep-checkout/of/svctl/.run") if deep else Path(root)


@pytest.mark.slow
@pytest.mark.parametrize("deep", [False, True], ids=["short-prefix", "deep-prefix"])
def test_a_kernel_answers_without_ipv4(namespace, deep):
    root, prefix = _prefix(deep)
    token = secrets.token_hex(16)
    svctl = [sys.executable, "-m", "supervisor", "--config-dir", str(prefix / "etc/svctl"),
             "--run-dir", str(prefix / "run/svctl")]
    before = set(os.listdir("/tmp"))
    try:
        init = namespace.run(sys.executable, "-m", "supervisor", "init", "jupyterhub", "--prefix", str(prefix),
                             "--ip", "::1", "--port", str(PORT), "--hub-port", str(HUB_PORT),
                             "--api-port", str(API_PORT), "--auth", "dummy", "--users", "alice")
        assert init.returncode == 0, init.stdout + init.stderr
        config = prefix / "etc/jupyterhub/jupyterhub_config.py"
        with open(config, "a") as handle:  # a service token for the test's API calls
            handle.write(f"\nc.JupyterHub.services = [{{'name': 'kernel-test', 'api_token': {token!r}}}]\n"
                         "c.JupyterHub.load_roles = [{'name': 'kernel-test', 'services': ['kernel-test'], "
                         "'scopes': ['admin:servers', 'access:servers', 'admin:users']}]\n")
        start = namespace.run(*svctl, "start", "jupyterhub")
        assert start.returncode == 0, start.stdout + start.stderr + _log(prefix)

        spawn = namespace.request("POST", f"{BASE}/hub/api/users/alice/server", token)
        assert spawn["status"] in (201, 202), spawn
        ready = _wait(namespace, lambda: namespace.request("GET", f"{BASE}/hub/api/users/alice", token)
                      ["body"].get("servers", {}).get("", {}).get("ready"), "alice's server")
        assert ready, _log(prefix)
        kernel = namespace.request("POST", f"{BASE}/user/alice/api/kernels", token, {"name": "python3"})
        assert kernel["status"] == 201, f"{kernel}\n{_log(prefix)}"
        url = f"wss://[::1]:{PORT}/user/alice/api/kernels/{kernel['body']['id']}/channels"
        answer = namespace.run(sys.executable, "-c", EXECUTE, url, token, timeout=120)
        assert answer.stdout.strip() == "42", answer.stdout + answer.stderr + _log(prefix)

        runtime = _runtime_dir(prefix)
        if deep:  # too long for kernel sockets: a fresh private directory in /tmp
            assert os.path.dirname(runtime) == "/tmp" and os.path.basename(runtime).startswith("jupyter-")
        else:
            assert runtime == str(prefix / "run/jupyterhub/kernels/0")
            assert stat.S_IMODE(os.stat(prefix / "run/jupyterhub/kernels").st_mode) == 0o755
        assert os.stat(runtime).st_mode & 0o777 == 0o700  # (jupyter_server adds the sticky bit)
        assert any(name.startswith("kernel-") and name.endswith("-ipc-1") for name in os.listdir(runtime))

        # cleanup_servers = False: stopping the hub leaves alice's server, so stop it first.
        namespace.request("DELETE", f"{BASE}/hub/api/users/alice/server", token)
        namespace.run(*svctl, "stop", "jupyterhub")
    finally:
        for pid in namespace.pids():  # only what this test started lives in its namespace
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(root, ignore_errors=True)
        for name in set(os.listdir("/tmp")) - before:
            if name.startswith("jupyter-"):
                shutil.rmtree(os.path.join("/tmp", name), ignore_errors=True)


def _runtime_dir(prefix: Path) -> str:
    """The JUPYTER_RUNTIME_DIR alice's server got: its process environment (the hub does not log it)."""
    import psutil

    for process in psutil.process_iter(["cmdline", "environ"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if "jupyterhub-singleuser" in cmdline and str(prefix) in json.dumps(process.info["environ"] or {}):
            return (process.info["environ"] or {}).get("JUPYTER_RUNTIME_DIR", "")
    raise AssertionError("alice's server is not running")


def _wait(namespace, predicate, what: str, timeout: float = 60):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (AttributeError, KeyError, TypeError):
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _log(prefix: Path) -> str:
    try:
        return "\nhub log:\n" + (prefix / "var/log/jupyterhub.log").read_text()[-4000:]
    except OSError:
        return ""


# ---- the config's pre_spawn_hook on its own: root making nobody's runtime directory -------------------


@pytest.fixture
def hook(tmp_path):
    """The rendered (PAM) config executed as JupyterHub does; returns (namespace, spawner for nobody)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (the hook chowns the directory to the user)")
    config_module = pytest.importorskip("traitlets.config")
    spawner_module = pytest.importorskip("jupyterhub.spawner")
    import pwd
    from types import SimpleNamespace

    from supervisor.jupyterhub import scaffold

    base = tempfile.mkdtemp(prefix="h", dir="/tmp")
    os.chmod(base, 0o755)  # like /run: everyone may pass through
    layout = scaffold.Layout.under(base, "/etc/svctl")
    os.makedirs(os.path.join(base, "run"), mode=0o755)
    options = scaffold.InitOptions(ip="::1", jupyterhub="/opt/jupyterhub/bin/jupyterhub", path_env="/usr/bin",
                                   proxy="/usr/bin/configurable-http-proxy", users=("nobody",))
    namespace = {"get_config": config_module.Config, "__file__": "jupyterhub_config.py"}
    exec(compile(scaffold.render_config(layout, options), "jupyterhub_config.py", "exec"), namespace)  # noqa: S102
    spawner = spawner_module.LocalProcessSpawner(user=SimpleNamespace(name="nobody", url="/user/nobody/"))
    before = set(os.listdir("/tmp"))
    yield namespace, spawner, pwd.getpwnam("nobody"), layout.kernel_runtime_root
    shutil.rmtree(base, ignore_errors=True)
    for name in set(os.listdir("/tmp")) - before:
        if name.startswith("jupyter-"):
            shutil.rmtree(os.path.join("/tmp", name), ignore_errors=True)


def test_hook_makes_a_private_directory_for_the_user(hook):
    namespace, spawner, nobody, root = hook
    namespace["kernel_runtime_dir"](spawner)
    path = spawner.environment["JUPYTER_RUNTIME_DIR"]
    assert path == f"{root}/{nobody.pw_uid}"
    info = os.lstat(path)
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == nobody.pw_uid and info.st_mode & 0o777 == 0o700
    for parent in (root, os.path.dirname(root)):
        assert os.stat(parent).st_uid == 0 and os.stat(parent).st_mode & 0o777 == 0o755
    namespace["kernel_runtime_dir"](spawner)  # the next spawn reuses it
    assert spawner.environment["JUPYTER_RUNTIME_DIR"] == path


def test_hook_refuses_a_planted_symlink(hook, tmp_path):
    namespace, spawner, nobody, root = hook
    os.makedirs(root, mode=0o755)
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o755)
    os.chown(target, nobody.pw_uid, nobody.pw_gid)
    os.symlink(target, f"{root}/{nobody.pw_uid}")
    with pytest.raises(RuntimeError, match=r"refusing to use .* for kernel sockets"):
        namespace["kernel_runtime_dir"](spawner)
    assert os.stat(target).st_mode & 0o777 == 0o755 and "JUPYTER_RUNTIME_DIR" not in spawner.environment


def test_hook_refuses_someone_elses_directory_and_a_writable_parent(hook):
    namespace, spawner, nobody, root = hook
    os.makedirs(f"{root}/{nobody.pw_uid}", mode=0o700)
    os.chown(f"{root}/{nobody.pw_uid}", 12345, 12345)
    with pytest.raises(RuntimeError, match="not a directory of uid"):
        namespace["kernel_runtime_dir"](spawner)
    os.rmdir(f"{root}/{nobody.pw_uid}")
    os.chmod(root, 0o777)
    with pytest.raises(RuntimeError, match="that only it can write"):
        namespace["kernel_runtime_dir"](spawner)


@pytest.mark.parametrize("why", ["too-long", "unreachable"])
def test_hook_falls_back_to_a_fresh_private_directory_in_tmp(hook, why):
    namespace, spawner, nobody, root = hook
    if why == "too-long":
        namespace["KERNEL_RUNTIME_ROOT"] = root + "/" + "d" * 40
    else:
        os.chmod(os.path.dirname(os.path.dirname(root)), 0o700)  # the prefix: nobody cannot pass
    namespace["kernel_runtime_dir"](spawner)
    path = spawner.environment["JUPYTER_RUNTIME_DIR"]
    assert os.path.dirname(path) == "/tmp" and os.path.basename(path).startswith("jupyter-")
    info = os.lstat(path)
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == nobody.pw_uid and info.st_mode & 0o777 == 0o700
    assert len(f"{path}/kernel-{'x' * 36}-ipc-99") <= 107
    (Path(path) / "kernel-x.json").write_text("{}")
    namespace["remove_tmp_runtime_dir"](spawner)  # the server stopped: its directory goes, no leftover
    assert not os.path.lexists(path)
    namespace["kernel_runtime_dir"](spawner)  # the user's next server: a fresh one
    second = spawner.environment["JUPYTER_RUNTIME_DIR"]
    assert second != path and os.path.isdir(second)
    # The user swaps the directory for a link to a root directory: removal refuses to follow it.
    os.rename(second, second + ".moved")
    os.symlink("/etc", second)
    try:
        namespace["remove_tmp_runtime_dir"](spawner)
        assert os.path.islink(second) and os.path.exists("/etc/passwd")
    finally:
        os.unlink(second)
        os.rmdir(second + ".moved")


def test_hook_for_a_hub_that_is_not_root(tmp_path):
    """--auth dummy as `make run` runs it: the hub is an ordinary user (nobody here) and so is the
    server (SimpleLocalProcessSpawner); the directory is the hub user's, no chown needed."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become nobody")
    config_module = pytest.importorskip("traitlets.config")
    spawner_module = pytest.importorskip("jupyterhub.spawner")
    import pwd
    from types import SimpleNamespace

    from conftest import as_nobody

    from supervisor.jupyterhub import scaffold

    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="h", dir="/tmp")
    try:
        os.makedirs(os.path.join(base, "run"))
        for path in (base, os.path.join(base, "run")):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        layout = scaffold.Layout.under(base, "/etc/svctl")
        os.makedirs(layout.state_dir)
        with open(layout.password_file, "w") as handle:
            handle.write("secret\n")
        options = scaffold.InitOptions(ip="::1", jupyterhub="/opt/jupyterhub/bin/jupyterhub", path_env="/usr/bin",
                                       proxy="/usr/bin/configurable-http-proxy", users=("alice",), auth="dummy")
        namespace = {"get_config": config_module.Config, "__file__": "jupyterhub_config.py"}
        exec(compile(scaffold.render_config(layout, options), "jupyterhub_config.py", "exec"), namespace)  # noqa: S102
        spawner = spawner_module.SimpleLocalProcessSpawner(user=SimpleNamespace(name="alice", url="/user/alice/"))

        def spawn_as_the_hub():
            namespace["kernel_runtime_dir"](spawner)
            assert spawner.environment["JUPYTER_RUNTIME_DIR"] == f"{layout.kernel_runtime_root}/{nobody.pw_uid}"

        as_nobody(spawn_as_the_hub)
        info = os.lstat(f"{layout.kernel_runtime_root}/{nobody.pw_uid}")
        assert stat.S_ISDIR(info.st_mode) and info.st_uid == nobody.pw_uid and info.st_mode & 0o777 == 0o700
        assert os.stat(layout.kernel_runtime_root).st_uid == nobody.pw_uid
    finally:
        shutil.rmtree(base, ignore_errors=True)
