"""`svctl init jupyterhub` beyond its files (issue 11 items 6 and 7, and --renew-cert).

- Boot files (item 7): in a private mount + PID namespace (init_boot_scenario.py; the host's /etc,
  /run, /var/log and /srv are never touched) init writes the real paths, runs the real update-rc.d,
  and `service jupyterhub status` knows the service right away (3, not "unrecognized service");
  --no-boot and --prefix install none; a hand-written /etc/init.d/jupyterhub is refused before
  anything is written; --proxy external gets both services registered.
- Not root (item 6): exit 4 with a reason, never a raw errno.
- --renew-cert: a new self-signed pair, everything else kept; a CA's certificate is refused; a
  running service that serves it is restarted (real supervisors, with sleep standing in for the
  hub and proxy, which only read the certificate when they start).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.config import load

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "init_boot_scenario.py"
TOOLS = ("update-rc.d", "service", "unshare")


def svctl_command() -> Path:
    program = Path(sys.executable).parent / "svctl"
    if not program.exists():
        pytest.skip(f"no svctl console script next to {sys.executable} (pip install -e . first)")
    return program


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root for mount/PID namespaces")
    missing = [tool for tool in TOOLS if not shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (Debian: init-system-helpers, util-linux)")
    pytest.importorskip("cryptography", reason="init writes the certificate with the cryptography package")
    work = tmp_path_factory.mktemp("initboot")
    result_path = work / "result.json"
    # bash stays PID 1 of the namespace: when it exits, the kernel kills whatever is left.
    command = ["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private",
               "bash", "-c", '"$@"; exit $?', "scenario", sys.executable, str(SCENARIO), str(svctl_command()),
               str(result_path), str(work / "mnt")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True, cwd=HERE)
    try:
        output, _ = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"scenario timed out; output:\n{output}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, f"scenario failed (exit {process.returncode}):\n{output}"
    return json.loads(result_path.read_text())


def shown(result: dict) -> str:
    return f"{result['argv']} -> {result['code']}\nstdout: {result['stdout']}\nstderr: {result['stderr']}"


class TestBootFiles:
    def test_init_registers_the_service_so_service_knows_it(self, scenario):
        init = scenario["init"]
        assert init["code"] == 0, shown(init)
        assert "jupyterhub: wrote /etc/init.d/jupyterhub" in init["stdout"]
        assert sorted(scenario["links"]) == sorted([f"rc{level}.d/S01jupyterhub" for level in "2345"]
                                                   + [f"rc{level}.d/K01jupyterhub" for level in "016"])
        status = scenario["status"]
        assert status["code"] == 3, shown(status)  # LSB "not running": known, and stopped
        assert "unrecognized service" not in status["stdout"] + status["stderr"]

    def test_next_line_says_service_start(self, scenario):
        lines = scenario["init"]["stdout"].splitlines()
        assert lines[-1] == "next: svctl check jupyterhub; service jupyterhub start; then open https://[::1]:9443"

    def test_no_boot_installs_nothing_and_says_svctl_start(self, scenario):
        no_boot = scenario["no_boot"]
        assert no_boot["code"] == 0, shown(no_boot)
        assert scenario["no_boot_initd"] is False
        assert "boot files: not installed (--no-boot)" in no_boot["stdout"]
        assert no_boot["stdout"].splitlines()[-1].startswith("next: svctl check jupyterhub; svctl start jupyterhub;")

    def test_prefix_writes_nothing_outside_it(self, scenario):
        prefix = scenario["prefix"]
        assert prefix["code"] == 0, shown(prefix)
        assert scenario["after_prefix"] == scenario["before"] and scenario["prefix_outside"] == []
        assert "boot files: none (--prefix writes nothing outside /run/init-test/prefix)" in prefix["stdout"]

    def test_hand_written_initd_script_is_refused_before_anything_is_written(self, scenario):
        foreign = scenario["foreign"]
        assert foreign["code"] == 1, shown(foreign)
        assert foreign["stdout"] == "" and len(foreign["stderr"].splitlines()) == 1
        assert "/etc/init.d/jupyterhub exists and was not generated by svctl" in foreign["stderr"]
        assert "--no-boot" in foreign["stderr"] and scenario["foreign_written"] == []

    def test_external_proxy_registers_both_services(self, scenario):
        external = scenario["external"]
        assert external["code"] == 0, shown(external)
        for name in ("jupyterhub-proxy", "jupyterhub"):
            assert f"{name}: wrote /etc/init.d/{name}" in external["stdout"]
            assert scenario["external_status"][name]["code"] == 3, shown(scenario["external_status"][name])
        assert external["stdout"].splitlines()[-1] == ("next: svctl check jupyterhub; service jupyterhub-proxy start; "
                                                       "service jupyterhub start; then open https://[::1]:9443")


def test_not_root_is_exit_4_with_a_reason(sandbox):
    """Item 6: no raw errno; nothing written."""
    result = sandbox.cli("init", "jupyterhub", "--ip", "::1", "--no-boot", user="nobody")
    assert result.returncode == 4, result.stderr
    assert result.stderr.splitlines() == ["svctl: init jupyterhub: it writes /etc/jupyterhub, /srv/jupyterhub, "
                                          "/etc/svctl and the boot files: run it as root (or with --prefix DIR in "
                                          "a directory of yours)"]


# ---- --renew-cert --------------------------------------------------------------------------------


@pytest.fixture
def installed(tmp_path):
    """An init --prefix install whose services are sleep (real processes; no hub needed to see a restart)."""
    pytest.importorskip("cryptography", reason="init writes the certificate with the cryptography package")
    fakes = tmp_path / "bin"
    fakes.mkdir()
    for name in ("jupyterhub", "configurable-http-proxy"):
        (fakes / name).write_text("#!/bin/sh\nexit 0\n")
        (fakes / name).chmod(0o755)
    prefix = tmp_path / "root"

    def init(*extra):
        """init, or with --renew-cert first, only what --renew-cert takes (and EXTRA)."""
        renew = extra[:1] == ("--renew-cert",)
        programs = [] if renew else ["--auth", "dummy", "--jupyterhub", str(fakes / "jupyterhub"),
                                     "--proxy-command", str(fakes / "configurable-http-proxy")]
        return subprocess.run([sys.executable, "-m", "supervisor", "init", "jupyterhub", "--prefix", str(prefix),
                               "--ip", "::1", *programs, *extra],
                              capture_output=True, text=True, timeout=120, check=False)

    svctl = [sys.executable, "-m", "supervisor", "--config-dir", str(prefix / "etc/svctl"),
             "--run-dir", str(prefix / "run/svctl")]
    yield prefix, init, svctl
    for name in ("jupyterhub", "jupyterhub-proxy"):
        if (prefix / f"etc/svctl/{name}.toml").exists():
            subprocess.run([*svctl, "stop", name], capture_output=True, timeout=60, check=False)


def stand_in(prefix: Path, name: str) -> None:
    """Replace NAME's service file by a sleep with the same PID file and logs (no hub, no readiness)."""
    config = load(name, str(prefix / "etc/svctl"))
    (prefix / f"etc/svctl/{name}.toml").write_text(
        f'command = ["/bin/sleep", "1000"]\npidfile = {json.dumps(config.pidfile)}\n'
        f'log_file = {json.dumps(config.log_file)}\nevents_file = {json.dumps(config.events_file)}\n'
        'stop = "TERM/1/KILL/1"\nstart_seconds = 0.2\n')
    os.chmod(prefix / f"etc/svctl/{name}.toml", 0o600)


def service_pid(prefix: Path, name: str) -> int | None:
    try:
        state = json.loads((prefix / "run/svctl" / name / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return (state.get("service") or {}).get("pid")


def snapshot(prefix: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in sorted(prefix.rglob("*"))
            if path.is_file() and "run" not in path.relative_to(prefix).parts[:1]
            and "var" not in path.relative_to(prefix).parts[:1]}


class TestRenewCert:
    def test_new_pair_everything_else_kept(self, installed):
        prefix, init, _ = installed
        assert init().returncode == 0
        ssl = prefix / "srv/jupyterhub/ssl"
        before = snapshot(prefix)
        result = init("--renew-cert")
        assert result.returncode == 0, result.stderr
        after = snapshot(prefix)
        changed = sorted(path for path in after if after[path] != before.get(path))
        assert changed == [str(ssl / "jupyterhub.crt"), str(ssl / "jupyterhub.key")]
        assert os.stat(ssl / "jupyterhub.key").st_mode & 0o777 == 0o600
        from supervisor.jupyterhub.certs import inspect

        assert inspect(str(ssl / "jupyterhub.crt"), str(ssl / "jupyterhub.key")).problems == ()
        assert result.stdout.splitlines() == [
            f"renewed: {ssl}/jupyterhub.crt and {ssl}/jupyterhub.key (self-signed for ::1, ::1 and localhost, 365 days)",
            "jupyterhub: not running; it uses the new certificate when it starts"]

    def test_a_ca_issued_certificate_is_refused_and_kept(self, installed):
        prefix, init, _ = installed
        assert init().returncode == 0
        cert = prefix / "srv/jupyterhub/ssl/jupyterhub.crt"
        cert.write_bytes(ca_issued_certificate())
        before = snapshot(prefix)
        result = init("--renew-cert")
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.splitlines() == [f"svctl: init jupyterhub --renew-cert: {cert} was issued by "
                                              "CN=Operator Root CA, not self-signed: renew it with that CA "
                                              "(svctl replaces only a self-signed certificate)"]
        assert snapshot(prefix) == before

    def test_other_options_are_refused(self, installed):
        _, init, _ = installed
        result = init("--renew-cert", "--force", "--users", "x")
        assert result.returncode == 2
        assert result.stderr.splitlines()[0] == ("svctl: init: --renew-cert keeps everything else, so it takes only "
                                                 "--prefix and --ip, not --force, --users")

    def test_running_hub_is_restarted(self, installed):
        prefix, init, svctl = installed
        assert init().returncode == 0
        stand_in(prefix, "jupyterhub")
        assert subprocess.run([*svctl, "start", "jupyterhub"], capture_output=True, timeout=60).returncode == 0
        before = service_pid(prefix, "jupyterhub")
        result = init("--renew-cert")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "jupyterhub: restarting, so that it serves the new certificate" in result.stdout
        assert service_pid(prefix, "jupyterhub") not in (None, before)

    def test_external_mode_restarts_the_proxy_then_the_hub(self, installed):
        prefix, init, svctl = installed
        assert init("--proxy", "external").returncode == 0
        pids = {}
        for name in ("jupyterhub-proxy", "jupyterhub"):
            stand_in(prefix, name)
            assert subprocess.run([*svctl, "start", name], capture_output=True, timeout=60).returncode == 0
            pids[name] = service_pid(prefix, name)
        result = init("--renew-cert")
        assert result.returncode == 0, result.stdout + result.stderr
        restarts = [line for line in result.stdout.splitlines() if "restarting" in line]
        assert [line.split(":")[0] for line in restarts] == ["jupyterhub-proxy", "jupyterhub"]
        for name, pid in pids.items():
            assert service_pid(prefix, name) not in (None, pid)


def test_openssl_reads_the_issuer_as_cryptography_does(installed):
    """The fallback when the cryptography package is missing names the issuer the same way."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    from supervisor.commands import init as init_command
    from supervisor.errors import SvctlError

    prefix, init, _ = installed
    assert init().returncode == 0
    refusal = SvctlError("not a certificate")
    self_signed = (prefix / "srv/jupyterhub/ssl/jupyterhub.crt").read_bytes()
    for data in (ca_issued_certificate(), self_signed):
        assert (init_command._issuer_and_subject_openssl(data, refusal)
                == init_command._issuer_and_subject("cert", data))
    with pytest.raises(SvctlError, match="not a certificate"):
        init_command._issuer_and_subject_openssl(b"garbage", refusal)


def ca_issued_certificate() -> bytes:
    """A leaf certificate signed by another name's key: what an operator's CA would hand out."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub.example.org")]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Operator Root CA")]))
                   .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=90))
                   .sign(ca_key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM)
