"""The hub's certificate pair is never written by a path a user controls (review of issue 11, defect 1).

`svctl init jupyterhub --renew-cert` (and init) write the pair the hub's config names, and the config
may name a directory of the hub's user. The openssl fallback (the .deb only Recommends
python3-cryptography) used to run `openssl req -out CERT`, which opens CERT by path: a symlink the
directory's owner planted there while openssl ran made root overwrite the file it pointed to. Now
the pair is made away from its paths (in memory, or by openssl in a root-only directory) and put in
place by the safe file layer: as the directory's owner, so a planted link is replaced, never followed.
The race is won deterministically here by an `openssl` on PATH that plants the link, as nobody,
just before it runs the real one.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import IS_ROOT, PYTHON, REPO, as_nobody

pytestmark = [pytest.mark.skipif(not IS_ROOT, reason="needs root: the attacker is nobody"),
              pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl (the fallback under test)")]

NOBODY = 65534
BACKENDS = ["cryptography", "openssl"]


@pytest.fixture
def places():
    """(nobody's directory, root's private key directory, root's file the attacker wants overwritten)."""
    made = [Path(tempfile.mkdtemp(prefix="svctl-cert-test-", dir="/tmp")) for _ in range(3)]
    user_dir, key_dir, victim_dir = made
    user_dir.chmod(0o755)
    os.chown(user_dir, NOBODY, NOBODY)
    victim_dir.chmod(0o755)
    victim = victim_dir / "victim"
    victim.write_text("root's file\n")
    victim.chmod(0o644)
    yield user_dir, key_dir, victim
    for directory in made:
        shutil.rmtree(directory, ignore_errors=True)


def use_backend(monkeypatch, backend: str) -> None:
    if backend == "openssl":
        monkeypatch.setitem(sys.modules, "cryptography", None)
    else:
        pytest.importorskip("cryptography.x509")


def assert_new_pair_as_nobody(cert: Path, key: Path, victim: Path) -> None:
    from supervisor.jupyterhub import certs

    assert victim.read_text() == "root's file\n", "root's file was written through the planted link"
    info = os.lstat(cert)
    assert stat.S_ISREG(info.st_mode) and info.st_uid == NOBODY and stat.S_IMODE(info.st_mode) == 0o644
    key_info = os.lstat(key)
    assert key_info.st_uid == 0 and stat.S_IMODE(key_info.st_mode) == 0o600
    report = certs.describe(cert.read_bytes(), key.read_bytes(), str(cert), str(key))
    assert report.self_signed and report.key_matches and report.problems == ()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_link_planted_as_the_certificate_is_replaced_not_followed(places, monkeypatch, backend):
    from supervisor.jupyterhub import certs

    use_backend(monkeypatch, backend)
    user_dir, key_dir, victim = places
    cert, key = user_dir / "hub.crt", key_dir / "hub.key"
    as_nobody(os.symlink, str(victim), str(cert))
    certs.generate(str(cert), str(key), "::1")
    assert_new_pair_as_nobody(cert, key, victim)


def test_openssl_is_never_given_a_final_path(places, monkeypatch):
    """With cryptography blocked, the real openssl runs; its -out/-keyout are in a directory only root
    can enter, made for the run and gone after it."""
    from supervisor.jupyterhub import certs

    use_backend(monkeypatch, "openssl")
    user_dir, key_dir, victim = places
    cert, key = user_dir / "hub.crt", key_dir / "hub.key"
    as_nobody(os.symlink, str(victim), str(cert))
    real_run, seen = subprocess.run, []

    def spy(argv, *args, **kwargs):
        if os.path.basename(str(argv[0])) == "openssl" and "req" in argv:
            outputs = {argv[argv.index(flag) + 1] for flag in ("-out", "-keyout")}
            directory = {os.path.dirname(path) for path in outputs}
            assert len(directory) == 1
            info = os.lstat(directory.pop())
            seen.append((outputs, info.st_uid, stat.S_IMODE(info.st_mode), stat.S_ISDIR(info.st_mode)))
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    certs.generate(str(cert), str(key), "::1")
    [(outputs, owner, mode, is_directory)] = seen
    assert outputs.isdisjoint({str(cert), str(key)}) and is_directory and (owner, mode) == (0, 0o700)
    assert not any(os.path.dirname(path) in (str(user_dir), str(key_dir)) for path in outputs)
    assert not any(os.path.exists(os.path.dirname(path)) for path in outputs)
    assert_new_pair_as_nobody(cert, key, victim)


JUPYTERHUB = Path(sys.executable).with_name("jupyterhub")


@pytest.mark.skipif(not JUPYTERHUB.exists(), reason="jupyterhub is not installed in the venv")
def test_renew_cert_while_nobody_plants_the_link_during_openssl(places, tmp_path):
    """The red team's repro through the CLI: ssl_cert in nobody's directory, the key in root's,
    cryptography blocked, and the link appearing while openssl runs."""
    user_dir, _, victim = places
    cert = user_dir / "hub.crt"
    prefix = Path(tempfile.mkdtemp(prefix="svctl-renew-", dir="/tmp"))
    try:
        prefix.chmod(0o755)
        made = subprocess.run([PYTHON, "-m", "supervisor", "init", "jupyterhub", "--prefix", str(prefix), "--ip", "::1",
                               "--auth", "pam", "--users", "root", "--jupyterhub", str(JUPYTERHUB), "--no-hints"],
                              capture_output=True, text=True, cwd=REPO, timeout=120)
        assert made.returncode == 0, made.stdout + made.stderr
        config = prefix / "etc/jupyterhub/jupyterhub_config.py"
        lines = [f"c.JupyterHub.ssl_cert = {str(cert)!r}" if line.startswith("c.JupyterHub.ssl_cert =") else line
                 for line in config.read_text().splitlines()]
        config.write_text("\n".join(lines) + "\n")
        fake = tmp_path / "bin"
        fake.mkdir()
        (fake / "openssl").write_text(f"#!/bin/sh\nsetpriv --reuid=nobody --regid=nogroup --clear-groups "
                                      f"ln -sf {victim} {cert}\nexec {shutil.which('openssl')} \"$@\"\n")
        (fake / "openssl").chmod(0o755)
        blocked = ("import runpy, sys; sys.modules['cryptography'] = None; sys.argv[0] = 'svctl'; "
                   "runpy.run_module('supervisor', run_name='__main__', alter_sys=True)")
        renewed = subprocess.run([PYTHON, "-c", blocked, "init", "jupyterhub", "--prefix", str(prefix), "--renew-cert"],
                                 capture_output=True, text=True, cwd=REPO, timeout=120,
                                 env={**os.environ, "PATH": f"{fake}:{os.environ.get('PATH', '/usr/bin:/bin')}"})
        assert "Traceback" not in renewed.stderr
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr
        assert_new_pair_as_nobody(cert, prefix / "srv/jupyterhub/ssl/jupyterhub.key", victim)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_renewed_pair_keeps_the_owner_and_mode_the_admin_gave_it(places, monkeypatch, backend):
    """A non-root hub reads its key because the admin chowned it (0640, group of the hub's user):
    a renewal must not hand it back to root:root 0600 and lock the hub out at its restart."""
    from supervisor.jupyterhub import certs

    use_backend(monkeypatch, backend)
    _, key_dir, _ = places
    cert, key = key_dir / "hub.crt", key_dir / "hub.key"
    certs.generate(str(cert), str(key), "::1")
    os.chown(key, 0, NOBODY)
    key.chmod(0o640)
    before = key.read_bytes()
    certs.generate(str(cert), str(key), "::1")
    info = os.lstat(key)
    assert key.read_bytes() != before and (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, NOBODY, 0o640)
    key.chmod(0o644)  # made world-readable by mistake: the new key is not
    certs.generate(str(cert), str(key), "::1")
    assert stat.S_IMODE(os.lstat(key).st_mode) == 0o640
