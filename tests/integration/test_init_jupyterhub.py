"""`svctl init jupyterhub` beyond its files (issue 11 items 6 and 7, and --renew-cert).

- Boot files (item 7): in a private mount + PID namespace (init_boot_scenario.py; the host's /etc,
  /run, /var/log and /srv are never touched) init writes the real paths, runs the real update-rc.d,
  and `service jupyterhub status` knows the service right away (3, not "unrecognized service");
  --no-boot and --prefix install none; a hand-written /etc/init.d/jupyterhub is refused before
  anything is written; --proxy external gets both services registered.
  What init reports is what is in effect: --no-boot over boot files installed before names them
  and says `service ... start`; a --proxy the kept config contradicts is exit 6 with nothing
  written, boot files included; a rerun without --proxy keeps an external-proxy deployment's lines.
- Not root (item 6): exit 4 with a reason, never a raw errno.
- The report (red-team finding): `using:` names what the service files on disk run, and a kept file
  that runs another program than the given one says so; a rerun keeps the proxy mode; --force keeps
  the proxy's token (a running proxy keeps the one it started with).
- --renew-cert: a new self-signed pair, everything else kept; a CA's certificate, or a chain, is
  refused; a relative ssl_cert resolves against the hub's working directory; a running service
  that serves it is restarted (real supervisors, with sleep standing in for the hub and proxy,
  which only read the certificate when they start).
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
from conftest import skip_without_boot_tools, svctl_command

from supervisor.config import load

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "init_boot_scenario.py"
TOOLS = ("update-rc.d", "service", "unshare")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    skip_without_boot_tools(TOOLS)
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

    def test_no_boot_over_installed_boot_files_names_them(self, scenario):
        rerun = scenario["rerun_no_boot"]
        assert rerun["code"] == 0, shown(rerun)
        lines = rerun["stdout"].splitlines()
        assert "boot files: /etc/init.d/jupyterhub (installed before; --no-boot leaves them)" in lines
        assert lines[-1] == "next: svctl check jupyterhub; service jupyterhub start; then open https://[::1]:9443"

    def test_external_over_a_kept_hub_config_is_refused_before_anything_is_written(self, scenario):
        refused = scenario["contradiction"]
        assert refused["code"] == 6 and refused["stdout"] == "", shown(refused)
        assert refused["stderr"].splitlines() == [
            "svctl: init jupyterhub: --proxy external: the kept /etc/jupyterhub/jupyterhub_config.py lets the hub "
            "start its own proxy (--proxy hub); nothing was written; rerun with --force to rewrite the files for "
            "--proxy external"]
        assert scenario["contradiction_proxy_files"] == []

    def test_a_rerun_of_an_external_install_keeps_both_services(self, scenario):
        rerun = scenario["external_rerun"]
        assert rerun["code"] == 0, shown(rerun)
        lines = rerun["stdout"].splitlines()
        assert ("boot files: /etc/init.d/jupyterhub-proxy, /etc/init.d/jupyterhub (installed before; --no-boot "
                "leaves them)") in lines
        assert lines[-1] == ("next: svctl check jupyterhub; service jupyterhub start (starts jupyterhub-proxy first); "
                             "then open https://[::1]:9443")

    def test_external_proxy_registers_both_services(self, scenario):
        external = scenario["external"]
        assert external["code"] == 0, shown(external)
        for name in ("jupyterhub-proxy", "jupyterhub"):
            assert f"{name}: wrote /etc/init.d/{name}" in external["stdout"]
            assert scenario["external_status"][name]["code"] == 3, shown(scenario["external_status"][name])
        assert external["stdout"].splitlines()[-1] == ("next: svctl check jupyterhub; service jupyterhub start "
                                                       "(starts jupyterhub-proxy first); then open https://[::1]:9443")


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
            f"renewed: {ssl}/jupyterhub.crt and {ssl}/jupyterhub.key (self-signed for ::1 and localhost, 365 days)",
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
        assert restarts == ["jupyterhub-proxy: restarting, so that it serves the new certificate",
                            "jupyterhub: restarting, so that it puts the user routes back into the new proxy at once "
                            "(the proxy serves the certificate, not the hub)"]
        for name, pid in pids.items():
            assert service_pid(prefix, name) not in (None, pid)


    def test_each_address_is_named_once(self, installed):
        prefix, init, _ = installed
        assert init().returncode == 0
        result = init("--renew-cert", "--ip", "2001:db8::8")
        assert result.returncode == 0, result.stderr
        assert "(self-signed for 2001:db8::8, ::1 and localhost, 365 days)" in result.stdout.splitlines()[0]

    def test_a_relative_certificate_resolves_against_the_working_directory(self, installed):
        """As the doctor resolves it: the hub opens it from its working_directory (srv/jupyterhub)."""
        prefix, init, _ = installed
        assert init().returncode == 0
        config = prefix / "etc/jupyterhub/jupyterhub_config.py"
        config.write_text(config.read_text() + "\nc.JupyterHub.ssl_cert = 'ssl/jupyterhub.crt'\n"
                                               "c.JupyterHub.ssl_key = 'ssl/./jupyterhub.key'\n")
        ssl = prefix / "srv/jupyterhub/ssl"
        before = (ssl / "jupyterhub.crt").read_bytes()
        result = init("--renew-cert")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"renewed: {ssl}/jupyterhub.crt and {ssl}/jupyterhub.key ")
        assert (ssl / "jupyterhub.crt").read_bytes() != before

    def test_a_chain_is_refused_and_kept(self, installed):
        """Judged on the leaf (self-signed here), and refused for holding more than one certificate."""
        prefix, init, _ = installed
        assert init().returncode == 0
        cert = prefix / "srv/jupyterhub/ssl/jupyterhub.crt"
        cert.write_bytes(cert.read_bytes() + ca_issued_certificate())
        before = snapshot(prefix)
        result = init("--renew-cert")
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.splitlines() == [f"svctl: init jupyterhub --renew-cert: {cert} holds 2 certificates, "
                                              "a chain: not svctl's self-signed pair; renew it where it came from "
                                              "(svctl replaces only a single self-signed certificate)"]
        assert snapshot(prefix) == before
        cert.write_bytes(ca_issued_certificate() + cert.read_bytes())  # a CA's leaf first: that is the reason
        assert "was issued by CN=Operator Root CA" in init("--renew-cert").stderr


# ---- what init reports is what the files on disk do (red-team findings 2 and 3) ------------------


def read_token(prefix: Path) -> str:
    return (prefix / "srv/jupyterhub/proxy-auth-token").read_text().strip()


def tokens_in_service_files(prefix: Path) -> set[str]:
    return {load(name, str(prefix / "etc/svctl")).env["CONFIGPROXY_AUTH_TOKEN"]
            for name in ("jupyterhub", "jupyterhub-proxy")}


class TestInEffect:
    def test_a_kept_service_file_is_what_using_names(self, installed):
        prefix, init, _ = installed
        fakes = prefix.parent / "bin"
        assert init().returncode == 0
        other = prefix.parent / "jh2/bin/jupyterhub"
        other.parent.mkdir(parents=True)
        shutil.copy(fakes / "jupyterhub", other)
        result = init("--jupyterhub", str(other))
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert (f"kept: {prefix}/etc/svctl/jupyterhub.toml runs {fakes}/jupyterhub, not the given {other}; "
                "--force rewrites it") in lines
        assert f"using: {fakes}/jupyterhub and {fakes}/configurable-http-proxy" in lines
        forced = init("--jupyterhub", str(other), "--force")
        assert f"using: {other} and {fakes}/configurable-http-proxy" in forced.stdout.splitlines()
        assert "kept: " not in forced.stdout

    def test_a_proxy_mode_the_kept_config_contradicts_is_refused(self, installed):
        prefix, init, _ = installed
        assert init().returncode == 0
        before = snapshot(prefix)
        result = init("--proxy", "external")
        assert result.returncode == 6 and result.stdout == "", result.stderr
        assert result.stderr.splitlines() == [
            f"svctl: init jupyterhub: --proxy external: the kept {prefix}/etc/jupyterhub/jupyterhub_config.py lets the "
            "hub start its own proxy (--proxy hub); nothing was written; rerun with --force to rewrite the files for "
            "--proxy external"]
        assert snapshot(prefix) == before and not (prefix / "etc/svctl/jupyterhub-proxy.toml").exists()
        assert init("--proxy", "external", "--force").returncode == 0
        back = init("--proxy", "hub")
        assert back.returncode == 6 and "leaves the proxy to the jupyterhub-proxy service (--proxy external)" in back.stderr

    def test_a_rerun_keeps_the_external_mode(self, installed):
        prefix, init, _ = installed
        assert init("--proxy", "external").returncode == 0
        for extra in ((), ("--force",)):
            result = init(*extra)
            assert result.returncode == 0, result.stderr
            assert " start jupyterhub (starts jupyterhub-proxy first); " in result.stdout.splitlines()[-1], result.stdout
            assert (prefix / "etc/svctl/jupyterhub-proxy.toml").exists()
        from supervisor.commands.init import config_is_external

        assert config_is_external(str(prefix / "etc/jupyterhub/jupyterhub_config.py")) is True

    def test_force_keeps_the_proxy_token(self, installed):
        """A running proxy keeps the token it started with: a --force rewrite must not change it."""
        prefix, init, _ = installed
        assert init("--proxy", "external").returncode == 0
        token = read_token(prefix)
        result = init("--proxy", "external", "--force")
        assert result.returncode == 0, result.stderr
        assert read_token(prefix) == token and tokens_in_service_files(prefix) == {token}
        assert "note:" not in result.stdout
        (prefix / "srv/jupyterhub/proxy-auth-token").write_text("?\n")  # no token: then a new one, said so
        result = init("--force")
        lines = result.stdout.splitlines()
        assert (f"note: {prefix}/srv/jupyterhub/proxy-auth-token held no valid token, so the proxy's token is new: "
                "restart jupyterhub-proxy, then jupyterhub, so that both use it") in lines
        assert read_token(prefix) not in ("?", token) and tokens_in_service_files(prefix) == {read_token(prefix)}


def test_openssl_reads_the_issuer_as_cryptography_does(installed):
    """The fallback when the cryptography package is missing names the issuer the same way."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    from supervisor.commands import renew_cert as init_command
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
