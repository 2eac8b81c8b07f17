"""The hub's self-signed TLS certificate: make one, and read what an existing one says.

Uses the ``cryptography`` package (JupyterHub depends on it through certipy), falling back to the
seed's ``openssl req -x509 -nodes -newkey rsa:2048`` when it is missing. The key is created 0600
from the first byte: it is never briefly readable by others. Reading (describe) works on bytes the
caller read safely, with the same two backends; the doctor judges the dates.
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


# Reading a certificate: what `svctl check` judges (expiry, key match), never trusting the path.
#
# The caller reads the bytes (through the safe file layer: the pair may sit in a user's directory)
# and hands them over; nothing here opens a path, so a link planted there cannot redirect it.
# ``cryptography`` is only Recommended by the .deb and a test extra in setup.cfg, so svctl's own
# Python may lack it; then the bytes go to `openssl x509` / `openssl pkey` on stdin (openssl is
# what generate() falls back on, and it too never sees the path).


@dataclass(frozen=True)
class CertReport:
    """What a certificate/key pair says, without judging dates (the doctor does, with its clock).

    problems are sentences for what no clock changes: an unparsable certificate or key, a key
    that does not belong to the certificate. warnings is kept for older callers and stays empty.
    """

    not_after: datetime.datetime | None
    problems: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    not_before: datetime.datetime | None = None
    self_signed: bool | None = None  # issuer == subject: `init --renew-cert` can replace it
    key_matches: bool | None = None  # None: the key was not given (unreadable to the caller)
    refused: tuple[str, ...] = ()  # files the safe file layer would not read (a link in a user's directory)


@dataclass(frozen=True)
class _Parsed:
    not_before: datetime.datetime
    not_after: datetime.datetime
    self_signed: bool
    public_key: bytes  # the certificate's SubjectPublicKeyInfo, in a form both backends compare


def describe(cert_pem: bytes, key_pem: bytes | None, cert_path: str = "certificate", key_path: str = "key",
             *, backend: str | None = None) -> CertReport:
    """Parse CERT_PEM (and KEY_PEM unless None); BACKEND "cryptography" or "openssl" (tests), else
    the first available. Never raises: what cannot be read becomes a problem."""
    backend = backend or _backend()
    if backend is None:
        return CertReport(None, (f"cannot read certificate {cert_path}: neither the cryptography package "
                                 "nor openssl is installed",))
    parse, public_key_of = (_parse_cryptography, _key_cryptography) if backend == "cryptography" \
        else (_parse_openssl, _key_openssl)
    try:
        parsed = parse(cert_pem)
    except CertError as exc:
        return CertReport(None, (f"certificate {cert_path} is not a PEM certificate: {exc}",))
    problems: list[str] = []
    matches = None
    if key_pem is not None:
        try:
            matches = public_key_of(key_pem) == parsed.public_key
        except CertError as exc:
            problems.append(f"key {key_path} is not an unencrypted PEM private key: {exc}")
        else:
            if not matches:
                problems.append(f"certificate {cert_path} does not match key {key_path}")
    return CertReport(parsed.not_after, tuple(problems), (), parsed.not_before, parsed.self_signed, matches)


def inspect(cert_path: str, key_path: str) -> CertReport:
    """describe() on the files (read as whoever controls their directories); OSError propagates."""
    from supervisor.unix import userfiles

    cert_pem = userfiles.read_bytes(cert_path, PEM_LIMIT)
    if cert_pem is None:
        raise FileNotFoundError(2, "No such file or directory", cert_path)
    return describe(cert_pem, userfiles.read_bytes(key_path, PEM_LIMIT), cert_path, key_path)


PEM_LIMIT = 1 << 20  # a chain of a few certificates is a few KiB; a larger file is not a certificate


def _backend() -> str | None:
    try:
        from cryptography import x509  # noqa: F401 (probe)
    except ImportError:
        return "openssl" if shutil.which("openssl") else None
    return "cryptography"


def _parse_cryptography(cert_pem: bytes) -> _Parsed:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise CertError(_first_sentence(exc)) from None
    # the *_utc properties need cryptography >= 42; Debian 12 ships 38
    after = getattr(certificate, "not_valid_after_utc", None)
    before = getattr(certificate, "not_valid_before_utc", None)
    if after is None or before is None:
        after = certificate.not_valid_after.replace(tzinfo=datetime.UTC)
        before = certificate.not_valid_before.replace(tzinfo=datetime.UTC)
    spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    return _Parsed(before, after, certificate.issuer == certificate.subject, spki)


def _key_cryptography(key_pem: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:  # TypeError: the key is encrypted
        raise CertError(_first_sentence(exc)) from None
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _first_sentence(exc: Exception) -> str:
    """cryptography's messages run on with a FAQ link: keep the first sentence."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
    return text.split(". See ")[0].rstrip(".")


def _openssl(args: list[str], data: bytes) -> str:
    """openssl ARGS with DATA on stdin; its stdout. LC_ALL=C: the dates below are parsed in English."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CertError("openssl is not installed")
    try:
        result = subprocess.run([openssl, *args], input=data, capture_output=True, timeout=30, check=False,
                                env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CertError(f"openssl {args[0]}: {exc}") from None
    if result.returncode != 0:
        lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CertError(f"openssl {args[0]}: {lines[0] if lines else 'failed'}")
    return result.stdout.decode("utf-8", "replace")


def _parse_openssl(cert_pem: bytes) -> _Parsed:
    fields = {}
    for line in _openssl(["x509", "-noout", "-startdate", "-enddate", "-subject", "-issuer",
                          "-nameopt", "RFC2253"], cert_pem).splitlines():
        name, _, value = line.partition("=")
        fields[name.strip()] = value.strip()
    try:
        before, after = _openssl_time(fields["notBefore"]), _openssl_time(fields["notAfter"])
    except (KeyError, ValueError):
        raise CertError("openssl printed no validity dates") from None
    public = _openssl(["x509", "-noout", "-pubkey"], cert_pem)
    return _Parsed(before, after, fields.get("subject") == fields.get("issuer"), _pem_body(public))


def _key_openssl(key_pem: bytes) -> bytes:
    # -passin pass: makes an encrypted key fail at once instead of prompting on the terminal
    return _pem_body(_openssl(["pkey", "-pubout", "-passin", "pass:"], key_pem))


def _pem_body(text: str) -> bytes:
    """The DER inside a PEM block: what cryptography's public_bytes(DER) gives too."""
    import base64

    lines = [line.strip() for line in text.strip().splitlines()]
    try:
        return base64.b64decode("".join(line for line in lines if line and not line.startswith("-----")))
    except ValueError:
        raise CertError("openssl printed no public key") from None


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _openssl_time(text: str) -> datetime.datetime:
    """``Dec  1 14:13:05 2026 GMT`` (ASN1_TIME_print, always English and GMT) as aware UTC."""
    month, day, clock, year, *_ = text.split()
    hour, minute, second = clock.split(":")
    return datetime.datetime(int(year), _MONTHS.index(month) + 1, int(day), int(hour), int(minute),
                             int(float(second)), tzinfo=datetime.UTC)  # GeneralizedTime may have .fff
