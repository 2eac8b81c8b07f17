"""The hub's self-signed TLS certificate: make one, and read what an existing one says.

Uses the ``cryptography`` package (JupyterHub depends on it through certipy), falling back to the
seed's ``openssl req -x509 -nodes -newkey rsa:2048`` when it is missing (the .deb only Recommends
python3-cryptography). Either way the pair is made away from its final paths and put there by the
safe file layer (see "Writing the pair" below); the key file is 0600 from its first byte.
Reading (describe) works on bytes the caller read safely, with the same two backends; the doctor
judges the dates.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass

VALID_DAYS = 365  # the seed's -days 365


class CertError(Exception):
    pass


def _subject_names(address: str) -> list[str]:
    """The names a browser may use: the address it was bound to, plus ::1 and localhost."""
    names = ["localhost", "::1"]
    if address not in names and address not in ("", "::"):
        names.append(address)
    return names


# Writing the pair. The paths come from the hub's config, so either may lie in a directory a user
# controls (docs/security.md F2). Three rules: (1) nothing is ever written by the final path:
# the pair is made in memory (cryptography) or by openssl inside a fresh root-only directory, and
# put in place by userfiles.replace (temporary + rename relative to a directory fd; as the user
# who controls the directory when one does, so a link planted there is replaced, never followed);
# (2) both places are judged before anything is made or written, so a refusal changes nothing;
# (3) a failure writing the key after the certificate puts the old certificate back: the two
# files on disk are always one pair, old or new.


def generate(cert_path: str, key_path: str, address: str) -> None:
    """Write a self-signed RSA-2048 certificate for ADDRESS (key 0600, certificate 0644): both, or
    (on any error, raised as CertError) neither."""
    if os.path.normpath(cert_path) == os.path.normpath(key_path):
        raise CertError(f"the certificate and the key are both {cert_path}: they must be two files")
    for path, what in ((cert_path, "certificate"), (key_path, "key")):
        _judge_place(path, what)
    cert_pem, key_pem = make_pair(address)
    _install_pair(cert_path, cert_pem, key_path, key_pem)


def make_pair(address: str) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for ADDRESS, made without touching any file of the caller's."""
    try:
        from cryptography import x509  # noqa: F401 (probe)
    except ImportError:
        return _pair_openssl(address)
    return _pair_cryptography(address)


def _judge_place(path: str, what: str) -> None:
    """Raise CertError unless PATH's directory is one root works in (root alone controls it) or
    one whose controlling user the write can run as (root only); a directory at PATH is refused."""
    from supervisor.unix import safefs

    refuse = f"refusing to write the {what} {path}"
    try:
        place = safefs.locate(path)
    except safefs.UserControlled as exc:
        owner = exc.owner
    except (FileNotFoundError, NotADirectoryError):
        raise CertError(f"cannot write the {what} {path}: its directory does not exist") from None
    except safefs.UnsafePath as exc:
        raise CertError(f"{refuse}: {exc}") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise CertError(f"cannot write the {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    else:
        with place:
            if place.shared:
                raise CertError(f"{refuse}: others may add entries to {place.directory}; fix: chmod go-w "
                                f"{place.directory}, or keep the pair in a directory of root's") from None
            owner = place.owner
            try:
                info = os.stat(place.name, dir_fd=place.fd, follow_symlinks=False)
            except FileNotFoundError:
                info = None
            if info is not None and stat.S_ISDIR(info.st_mode):
                raise CertError(f"{refuse}: it is a directory")
    if owner is not None and os.geteuid() != 0:
        raise CertError(f"{refuse}: its directory is controlled by uid {owner}, and only root can write "
                        "there as that user")


def _kept_owner(path: str, mode: int) -> tuple[int, int, int]:
    """(mode, uid, gid) to write PATH with: those of the regular file there now, so a key the admin
    gave to a non-root hub stays readable by it; else MODE and root's (-1: unchanged)."""
    import stat

    try:
        info = os.lstat(path)
    except OSError:
        return mode, -1, -1
    if not stat.S_ISREG(info.st_mode):
        return mode, -1, -1
    return stat.S_IMODE(info.st_mode) & ~0o7000, info.st_uid, info.st_gid


def _install_pair(cert_path: str, cert_pem: bytes, key_path: str, key_pem: bytes) -> None:
    """Certificate first, then key; if the key cannot be written, the old certificate goes back.
    Each keeps the mode and owner of the file it replaces."""
    from supervisor.unix import userfiles

    cert_mode, key_mode = _kept_owner(cert_path, 0o644), _kept_owner(key_path, 0o600)
    key_mode = (key_mode[0] & 0o770, *key_mode[1:])  # a private key is never world-readable
    try:
        old_cert = userfiles.read_bytes(cert_path, PEM_LIMIT)  # None: there is none
        restore = "the old certificate was put back" if old_cert is not None else "the new certificate was removed"
    except OSError:  # not a file that can be read back (a link planted there): it cannot be restored
        old_cert, restore = None, "the new certificate was removed (what was there could not be read back)"
    try:
        userfiles.replace(cert_path, cert_pem, *cert_mode)
    except OSError as exc:
        raise CertError(f"cannot write the certificate {cert_path}: {userfiles.describe(exc)}; nothing "
                        "was changed") from None
    try:
        userfiles.replace(key_path, key_pem, *key_mode)
    except OSError as exc:
        problem = f"cannot write the key {key_path}: {userfiles.describe(exc)}"
        try:
            if old_cert is None:
                userfiles.remove(cert_path)
            else:
                userfiles.replace(cert_path, old_cert, *cert_mode)
        except OSError as again:
            raise CertError(f"{problem}; and putting the old certificate back failed too "
                            f"({userfiles.describe(again)}): {cert_path} no longer matches {key_path}") from None
        raise CertError(f"{problem}; {restore}") from None


def _pair_cryptography(address: str) -> tuple[bytes, bytes]:
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
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def _pair_openssl(address: str) -> tuple[bytes, bytes]:
    """The seed's `openssl req`, writing into a directory only root can enter (never the final paths)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CertError("neither the cryptography package nor openssl is installed")
    alt = ",".join(("IP:" if ":" in entry or entry[:1].isdigit() else "DNS:") + entry
                   for entry in _subject_names(address))
    private = _private_directory()
    try:
        cert_file, key_file = os.path.join(private, "cert.pem"), os.path.join(private, "key.pem")
        try:
            result = subprocess.run(
                [openssl, "req", "-x509", "-nodes", "-days", str(VALID_DAYS), "-newkey", "rsa:2048",
                 "-subj", "/CN=jupyterhub", "-addext", f"subjectAltName={alt}",
                 "-keyout", key_file, "-out", cert_file],
                capture_output=True, text=True, check=False, timeout=60, stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CertError(f"openssl req: {exc}") from None
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines()
            raise CertError(f"openssl req failed: {lines[-1] if lines else f'exit {result.returncode}'}")
        return _read_own(cert_file), _read_own(key_file)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _private_directory() -> str:
    """A new 0700 directory in one whose entries nobody but root can rename: root alone controls the
    way there, and the directory is writable by root alone or sticky (/tmp). TMPDIR only if it is
    such a place: a user who could rename our directory could swap in one where openssl's output
    goes through their links."""
    import tempfile

    from supervisor.unix import safefs

    for parent in dict.fromkeys((tempfile.gettempdir(), "/tmp")):
        try:
            with safefs.locate(os.path.join(parent, "svctl-cert")) as place:
                mode = os.fstat(place.fd).st_mode
                if place.owner is None and (not mode & 0o022 or mode & stat.S_ISVTX):
                    return tempfile.mkdtemp(prefix="svctl-cert-", dir=place.directory)
        except (OSError, ValueError):
            continue
    raise CertError("no directory of root's to run openssl in (TMPDIR and /tmp are not root's)")


def _read_own(path: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise CertError(f"openssl wrote no {os.path.basename(path)}: {exc.strerror}") from None
    try:
        from supervisor.unix.safefs import read_all

        data = read_all(fd, PEM_LIMIT)
    finally:
        os.close(fd)
    if b"-----BEGIN" not in data:
        raise CertError(f"openssl wrote no PEM to {os.path.basename(path)}")
    return data


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

    # The bytes are hostile input (the file may be a user's) and cryptography parses lazily: a
    # date or key it cannot represent raises ValueError, UnsupportedAlgorithm (no ValueError) or
    # others only when asked for. Whatever it raises means "not a certificate svctl can read".
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
        # the *_utc properties need cryptography >= 42; Debian 12 ships 38
        after = getattr(certificate, "not_valid_after_utc", None)
        before = getattr(certificate, "not_valid_before_utc", None)
        if after is None or before is None:
            after = certificate.not_valid_after.replace(tzinfo=datetime.UTC)
            before = certificate.not_valid_before.replace(tzinfo=datetime.UTC)
        spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        return _Parsed(before, after, certificate.issuer == certificate.subject, spki)
    except Exception as exc:  # noqa: BLE001 (see above)
        raise CertError(_first_sentence(exc)) from None


def _key_cryptography(key_pem: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    try:  # TypeError: the key is encrypted; anything else: as in _parse_cryptography
        key = serialization.load_pem_private_key(key_pem, password=None)
        return key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    except Exception as exc:  # noqa: BLE001
        raise CertError(_first_sentence(exc)) from None


def _first_sentence(exc: Exception) -> str:
    """cryptography's messages run on with a FAQ link: keep the first sentence."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
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
    except (KeyError, ValueError, OverflowError):
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
