"""The hub's self-signed TLS certificate: make one, and say what is wrong with an existing one.

Uses the ``cryptography`` package (JupyterHub depends on it through certipy), falling back to the
seed's ``openssl req -x509 -nodes -newkey rsa:2048`` when it is missing. The key is created 0600
from the first byte: it is never briefly readable by others.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass

VALID_DAYS = 365  # the seed's -days 365


class CertError(Exception):
    pass


def _write_private(path: str, data: bytes, mode: int = 0o600) -> None:
    """Atomic and never through a link; the temporary file is MODE from its creation on."""
    from supervisor.unix.safefs import write_trusted

    write_trusted(path, data, mode)


def _subject_names(address: str) -> list[str]:
    """The names a browser may use: the address it was bound to, plus ::1 and localhost."""
    names = ["localhost", "::1"]
    if address not in names and address not in ("", "::"):
        names.append(address)
    return names


def generate(cert_path: str, key_path: str, address: str) -> None:
    """Write a self-signed RSA-2048 certificate for ADDRESS (key 0600, certificate 0644)."""
    try:
        from cryptography import x509  # noqa: F401 (probe)
    except ImportError:
        _generate_openssl(cert_path, key_path, address)
    else:
        _generate_cryptography(cert_path, key_path, address)


def _generate_cryptography(cert_path: str, key_path: str, address: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jupyterhub"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "svctl self-signed")])
    alt_names: list[x509.GeneralName] = []
    for entry in _subject_names(address):
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(entry)))
        except ValueError:
            alt_names.append(x509.DNSName(entry))
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate small clock skew
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.TraditionalOpenSSL,
                                               serialization.NoEncryption()))
    _write_private(cert_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)


def _generate_openssl(cert_path: str, key_path: str, address: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CertError("neither the cryptography package nor openssl is installed")
    alt = ",".join(("IP:" if ":" in entry or entry[:1].isdigit() else "DNS:") + entry
                   for entry in _subject_names(address))
    _write_private(key_path, b"")  # create it 0600 before openssl fills it
    result = subprocess.run(
        [openssl, "req", "-x509", "-nodes", "-days", str(VALID_DAYS), "-newkey", "rsa:2048",
         "-subj", "/CN=jupyterhub", "-addext", f"subjectAltName={alt}",
         "-keyout", key_path, "-out", cert_path],
        capture_output=True, text=True, check=False, timeout=60,
    )
    if result.returncode != 0:
        raise CertError(f"openssl req failed: {result.stderr.strip().splitlines()[-1:]}")
    os.chmod(key_path, 0o600)


@dataclass(frozen=True)
class CertReport:
    """What is known about a certificate/key pair; problems are human sentences."""

    not_after: datetime.datetime | None
    problems: tuple[str, ...]
    warnings: tuple[str, ...]


def inspect(cert_path: str, key_path: str, now: datetime.datetime | None = None) -> CertReport:
    """Expired, not yet valid, unreadable, or not matching the key. Needs ``cryptography``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    now = now or datetime.datetime.now(datetime.UTC)
    try:
        with open(cert_path, "rb") as handle:
            certificate = x509.load_pem_x509_certificate(handle.read())
    except (OSError, ValueError) as exc:
        return CertReport(None, (f"cannot read certificate {cert_path}: {exc}",), ())
    problems: list[str] = []
    warnings: list[str] = []
    not_after, not_before = _validity(certificate)
    if not_after <= now:
        problems.append(f"certificate {cert_path} expired on {not_after:%Y-%m-%d}")
    elif not_after - now < datetime.timedelta(days=30):
        warnings.append(f"certificate {cert_path} expires on {not_after:%Y-%m-%d}")
    if not_before > now:
        problems.append(f"certificate {cert_path} is not valid before {not_before:%Y-%m-%d %H:%M}")
    try:
        with open(key_path, "rb") as handle:
            key = serialization.load_pem_private_key(handle.read(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        problems.append(f"cannot read key {key_path}: {exc}")
    else:
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        if (key.public_key().public_bytes(serialization.Encoding.DER, public)
                != certificate.public_key().public_bytes(serialization.Encoding.DER, public)):
            problems.append(f"certificate {cert_path} does not match key {key_path}")
    return CertReport(not_after, tuple(problems), tuple(warnings))


def _validity(certificate) -> tuple[datetime.datetime, datetime.datetime]:
    """(not after, not before) as aware UTC datetimes; the *_utc properties need cryptography >= 42,
    Debian 12 ships 38."""
    after = getattr(certificate, "not_valid_after_utc", None)
    before = getattr(certificate, "not_valid_before_utc", None)
    if after is None:
        after = certificate.not_valid_after.replace(tzinfo=datetime.UTC)
        before = certificate.not_valid_before.replace(tzinfo=datetime.UTC)
    return after, before
