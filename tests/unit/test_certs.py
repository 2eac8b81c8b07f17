"""Reading certificates (certs.describe) on real PEM files, with both backends, and judging their
dates with a fixed clock: certificates made at fixed dates (cryptography) and by openssl itself."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys

import pytest

from supervisor.config import from_mapping
from supervisor.jupyterhub import certs
from supervisor.jupyterhub.doctor import ERROR, WARNING, Facts, HostFacts, diagnose, expiry_findings
from supervisor.jupyterhub.pyconfig import parse_config

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

BACKENDS = ["cryptography", pytest.param("openssl", marks=pytest.mark.skipif(not shutil.which("openssl"),
                                                                              reason="no openssl"))]
UTC = datetime.UTC
START, END = datetime.datetime(2030, 1, 1, tzinfo=UTC), datetime.datetime(2030, 2, 1, 12, 30, tzinfo=UTC)


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(key, not_before=START, not_after=END, issuer_key=None, issuer="jupyterhub") -> bytes:
    """A certificate for KEY valid NOT_BEFORE..NOT_AFTER, self-signed unless ISSUER_KEY signs it."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jupyterhub")])
    issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(not_before).not_valid_after(not_after)
                   .sign(issuer_key or key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("backend", BACKENDS)
class TestDescribe:
    def test_dates_self_signed_and_matching_key(self, backend):
        key = _key()
        report = certs.describe(_certificate(key), _pem_key(key), "c.crt", "c.key", backend=backend)
        assert (report.not_before, report.not_after) == (START, END.replace(second=0))
        assert report.self_signed is True and report.key_matches is True and report.problems == ()

    def test_a_key_of_another_pair(self, backend):
        report = certs.describe(_certificate(_key()), _pem_key(_key()), "c.crt", "c.key", backend=backend)
        assert report.key_matches is False and report.problems == ("certificate c.crt does not match key c.key",)

    def test_issued_by_an_authority(self, backend):
        report = certs.describe(_certificate(_key(), issuer_key=_key(), issuer="Some CA"), None, backend=backend)
        assert report.self_signed is False and report.key_matches is None

    def test_garbage_is_a_problem_not_an_exception(self, backend):
        report = certs.describe(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
                                b"junk", "c.crt", "c.key", backend=backend)
        assert report.not_after is None and report.problems[0].startswith("certificate c.crt is not a PEM certificate")

    def test_an_encrypted_key_is_a_problem_without_a_prompt(self, backend):
        key = _key()
        encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"secret"))
        report = certs.describe(_certificate(key), encrypted, "c.crt", "c.key", backend=backend)
        assert report.key_matches is None and report.problems[0].startswith("key c.key is not an unencrypted")

    def test_what_generate_writes(self, backend, tmp_path):
        cert, key = tmp_path / "j.crt", tmp_path / "j.key"
        certs.generate(str(cert), str(key), "2001:db8::5")
        report = certs.describe(cert.read_bytes(), key.read_bytes(), backend=backend)
        assert report.self_signed and report.key_matches and report.problems == ()
        assert report.not_after - report.not_before >= datetime.timedelta(days=certs.VALID_DAYS)


@pytest.mark.skipif(not shutil.which("openssl"), reason="no openssl")
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_openssl_certificate_of_ten_days_warns_and_later_has_expired(backend, tmp_path):
    """openssl req -x509 -days 10, as the seed made its (365-day) certificate."""
    cert, key = tmp_path / "s.crt", tmp_path / "s.key"
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "10", "-newkey", "rsa:2048", "-subj", "/CN=hub",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    report = certs.describe(cert.read_bytes(), key.read_bytes(), backend=backend)
    now = datetime.datetime.now(UTC)
    [warning] = expiry_findings(str(cert), report, now)
    assert warning.severity == WARNING and "expires in 9 days (" in warning.message
    assert "svctl init jupyterhub --renew-cert" in warning.fix
    [expired] = expiry_findings(str(cert), report, now + datetime.timedelta(days=11))
    assert expired.severity == ERROR and "expired 1 day ago" in expired.message


def test_the_doctor_judges_a_real_pair_by_the_clock_it_is_given(tmp_path):
    key = _key()
    report = certs.describe(_certificate(key), _pem_key(key), "/srv/ssl/h.crt", "/srv/ssl/h.key")
    hub = parse_config('c.JupyterHub.bind_url = "https://[::1]:9443"\nc.JupyterHub.ssl_cert = "/srv/ssl/h.crt"\n'
                       'c.JupyterHub.ssl_key = "/srv/ssl/h.key"\n')
    service = from_mapping("jupyterhub", "/etc/svctl/jupyterhub.toml",
                           {"command": ["/usr/bin/jupyterhub"], "working_directory": "/srv", "preset": "jupyterhub"})
    modes = {"/srv/ssl/h.crt": 0o644, "/srv/ssl/h.key": 0o600}

    def dated(now):
        facts = Facts(HostFacts(True, True, True), modes, report, now=now)
        return [(f.severity, f.message) for f in diagnose(service, hub, facts) if f.code.startswith("cert")]

    assert dated(datetime.datetime(2030, 1, 2, tzinfo=UTC)) == []
    assert dated(datetime.datetime(2030, 1, 20, tzinfo=UTC)) == \
        [(WARNING, "certificate /srv/ssl/h.crt expires in 12 days (2030-02-01)")]
    assert dated(datetime.datetime(2030, 3, 1, tzinfo=UTC)) == \
        [(ERROR, "certificate /srv/ssl/h.crt expired 27 days ago (2030-02-01): browsers refuse the hub")]
    assert dated(datetime.datetime(2029, 12, 1, tzinfo=UTC))[0][1].startswith(
        "certificate /srv/ssl/h.crt is not valid before 2030-01-01 00:00 UTC")


def test_inspect_reads_the_files(tmp_path):
    """The older entry point (the scaffold tests use it) reads through the safe file layer."""
    cert, key = tmp_path / "j.crt", tmp_path / "j.key"
    certs.generate(str(cert), str(key), "::1")
    report = certs.inspect(str(cert), str(key))
    assert report.problems == () and report.key_matches
    with pytest.raises(FileNotFoundError):
        certs.inspect(str(tmp_path / "absent.crt"), str(key))


class TestGenerate:
    """generate() writes both files or neither (issue 11 review, defect 1); the places are judged first."""

    def test_the_openssl_fallback_makes_the_same_kind_of_pair(self, tmp_path, monkeypatch):
        if not shutil.which("openssl"):
            pytest.skip("no openssl")
        monkeypatch.setitem(sys.modules, "cryptography", None)  # the .deb only Recommends it
        cert, key = tmp_path / "j.crt", tmp_path / "j.key"
        certs.generate(str(cert), str(key), "2001:db8::5")
        report = certs.describe(cert.read_bytes(), key.read_bytes(), backend="openssl")
        assert report.self_signed and report.key_matches and report.problems == ()
        assert (cert.stat().st_mode & 0o777, key.stat().st_mode & 0o777) == (0o644, 0o600)

    def test_a_refused_certificate_place_leaves_the_key_alone(self, tmp_path):
        """The key used to be written before the certificate's place was judged: a new key, the old cert."""
        shared = tmp_path / "shared"
        shared.mkdir()
        shared.chmod(0o777)  # world-writable, not sticky: refused for anyone
        key = tmp_path / "j.key"
        key.write_bytes(b"the old key\n")
        with pytest.raises(certs.CertError, match=f"refusing to write the certificate {shared}/j.crt: "):
            certs.generate(str(shared / "j.crt"), str(key), "::1")
        assert key.read_bytes() == b"the old key\n" and list(shared.iterdir()) == []

    def test_a_refused_key_place_leaves_the_certificate_alone(self, tmp_path):
        shared = tmp_path / "shared"
        shared.mkdir()
        shared.chmod(0o777)
        cert = tmp_path / "j.crt"
        cert.write_bytes(b"the old certificate\n")
        with pytest.raises(certs.CertError, match="refusing to write the key"):
            certs.generate(str(cert), str(shared / "j.key"), "::1")
        assert cert.read_bytes() == b"the old certificate\n"

    def test_a_key_that_cannot_be_written_puts_the_old_certificate_back(self, tmp_path, monkeypatch):
        from supervisor.unix import userfiles

        cert, key = tmp_path / "j.crt", tmp_path / "j.key"
        cert.write_bytes(b"the old certificate\n")
        key.write_bytes(b"the old key\n")
        real_replace = userfiles.replace

        def full_disk_for_the_key(path, data, mode, *rest):
            if path == str(key):
                raise OSError(28, "No space left on device", path)
            return real_replace(path, data, mode, *rest)

        monkeypatch.setattr(userfiles, "replace", full_disk_for_the_key)
        with pytest.raises(certs.CertError) as raised:
            certs.generate(str(cert), str(key), "::1")
        assert str(raised.value) == (f"cannot write the key {key}: {key}: No space left on device; the old "
                                     "certificate was put back")
        assert cert.read_bytes() == b"the old certificate\n" and key.read_bytes() == b"the old key\n"
        cert.unlink()  # no certificate before: none after
        with pytest.raises(certs.CertError):
            certs.generate(str(cert), str(key), "::1")
        assert not cert.exists() and key.read_bytes() == b"the old key\n"

    def test_one_line_errors_for_impossible_places(self, tmp_path):
        with pytest.raises(certs.CertError, match="both .*: they must be two files"):
            certs.generate(str(tmp_path / "x.pem"), str(tmp_path / "x.pem"), "::1")
        with pytest.raises(certs.CertError, match="its directory does not exist"):
            certs.generate(str(tmp_path / "no" / "j.crt"), str(tmp_path / "j.key"), "::1")
        (tmp_path / "dir.crt").mkdir()
        with pytest.raises(certs.CertError, match="it is a directory"):
            certs.generate(str(tmp_path / "dir.crt"), str(tmp_path / "j.key"), "::1")
        assert not (tmp_path / "j.key").exists()


def test_hostile_bytes_never_raise_from_describe():
    """A user's file may hold anything: describe() turns every parse failure into a problem."""
    for data in (b"", b"\0" * 100, b"-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n",
                 b"-----BEGIN PRIVATE KEY-----\nMA==\n-----END PRIVATE KEY-----\n"):
        report = certs.describe(data, data, "c", "k", backend="cryptography")
        assert report.problems and report.not_after is None


def test_openssl_runs_only_in_a_directory_nobody_else_can_rename(tmp_path, monkeypatch):
    """TMPDIR group-writable without the sticky bit: another user could swap the private directory."""
    import tempfile

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    private = certs._private_directory()
    try:
        assert os.path.dirname(private) == "/tmp" and os.stat(private).st_mode & 0o777 == 0o700
    finally:
        os.rmdir(private)
    (tmp_path / "own").mkdir(mode=0o755)  # root's alone: used
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "own"))
    private = certs._private_directory()
    try:
        assert os.path.dirname(private) == str(tmp_path / "own")
    finally:
        os.rmdir(private)
