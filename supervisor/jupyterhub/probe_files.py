"""What the doctor may look at, and what it may not: files, programs and certificates, as the caller.

svctl check runs as root, or as anyone. As root a path may lead through a user's directory (a
hostile one): contents are read through the safe file layer (userfiles: as whoever controls the
directory; never a link, FIFO or device). As another user the same path may simply be closed
(the key is 0600, the state directory 0750): that is "not checked", with the directory or mode
that closes it, never "missing", which would send the operator to `init --force` and have it
replace the cert and the cookie secret. Existence and modes are judged by stat, which needs only
search permission on the directories, so a non-root caller sees them wherever it can walk.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat

from supervisor.jupyterhub import certs
from supervisor.jupyterhub.doctor import Program, ProxyTls

PEM_LIMIT = certs.PEM_LIMIT


def caller_name() -> str:
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def closed_reason(path: str) -> str:
    """Why the caller cannot look at PATH: the first directory it may not enter, else the file's mode."""
    current = "/"
    for part in [part for part in path.split("/") if part][:-1]:
        current = os.path.join(current, part)
        try:
            info = os.stat(current)
        except OSError:
            break
        if not os.access(current, os.X_OK):
            return f"{current} (mode {stat.S_IMODE(info.st_mode):04o}, owner {_owner(info.st_uid)}) is closed " \
                   f"to {caller_name()}"
    try:
        info = os.stat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    mode = stat.S_IMODE(info.st_mode)
    if not mode & 0o044:
        return f"{path} is readable only by {_owner(info.st_uid)} (mode {mode:04o})"
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return f"{path} is mode {mode:04o}, owner {_owner(info.st_uid)}, group {group}: closed to {caller_name()}"


def file_mode(path: str) -> tuple[int | None, str]:
    """(permission bits or None when it does not exist, why the caller could not tell or "")."""
    try:
        return os.stat(path).st_mode & 0o777, ""
    except PermissionError:
        return None, closed_reason(path)
    except (OSError, ValueError):  # ValueError: a NUL in the path (values.value_findings names it)
        return None, ""


def read(path: str, limit: int = PEM_LIMIT) -> tuple[bytes | None, str, str]:
    """(content, or None when absent or not read; why the caller may not read it; why nobody should).

    As root through userfiles (as whoever controls the directory); as anyone else through safefs,
    in-process: such a caller reads only what it could read anyway, and userfiles' switch to the
    directory's owner needs root."""
    from supervisor.unix import safefs, userfiles
    from supervisor.unix.asuser import AsUserError

    if "\0" in path:
        return None, "", "the path holds a NUL byte"
    try:
        data = userfiles.read_bytes(path, limit) if os.geteuid() == 0 else safefs.read_bytes(path, limit)
    except PermissionError as exc:  # EACCES on a directory or the file (UnsafePath is no PermissionError)
        if os.geteuid() == 0:
            return None, "", exc.strerror or str(exc)
        return None, closed_reason(path), ""
    except OSError as exc:  # UnsafePath (a link in a user's directory, ...), AsUserError, EISDIR, ELOOP
        owner = getattr(exc, "owner", None)
        if os.geteuid() != 0 and owner not in (None, os.geteuid()):
            # root would read it as that user; this caller cannot become them
            return None, f"{path} is under a directory {_owner(owner)} controls", ""
        text = str(exc) if isinstance(exc, (safefs.UnsafePath, AsUserError)) else exc.strerror or str(exc)
        return None, "", text.replace(f"{path}: ", "")  # the finding names the file once
    return data, "", ""


def cert_report(cert: str, key: str, closed: dict[str, str]) -> certs.CertReport | None:
    """What the pair says, when the certificate can be read; CLOSED gets what the caller could not read."""
    cert_pem, cert_closed, cert_problem = read(cert)
    if cert_closed:
        closed[cert] = cert_closed
    if cert_problem:
        return certs.CertReport(None, (), refused=(f"cannot read certificate {cert}: {cert_problem}",))
    if cert_pem is None:
        return None  # absent (or closed): the presence rule speaks
    key_pem, key_closed, key_problem = read(key)
    if key_closed:
        closed[key] = key_closed
    report = certs.describe(cert_pem, key_pem, cert, key)
    if key_problem:
        report = certs.CertReport(report.not_after, report.problems, (), report.not_before, report.self_signed,
                                  None, (f"cannot read private key {key}: {key_problem}",))
    return report


def runner(user: str | None, service_file: str) -> int | None:
    """The uid the service runs as: its `user`, else the supervisor's; svctl runs a service file
    only as root or as the file's owner, so an unset user means the file's owner. None: unknown."""
    if user is not None:
        try:
            return pwd.getpwnam(user).pw_uid
        except KeyError:
            return None
    try:
        return os.stat(service_file).st_uid
    except OSError:
        return None


def acts_as_service(config) -> str:
    """"" when this caller may do what the service's own user does (run its check, its Python); else
    why not, for the "not checked" line. Root may; anyone else only for a service that runs as them."""
    if os.geteuid() == 0:
        return ""
    uid = runner(config.user, config.path)
    if uid == os.geteuid():
        return ""
    try:
        who = pwd.getpwuid(uid).pw_name if uid is not None else config.user
    except KeyError:
        who = f"uid {uid}"
    return f"the service runs as {who or 'root'}"


def _may_execute(info: os.stat_result, uid: int | None) -> bool:
    """Root runs any file with an x bit; another user needs the bit of its class."""
    mode = stat.S_IMODE(info.st_mode)
    if uid in (None, 0):
        return bool(mode & 0o111)
    if info.st_uid == uid:
        return bool(mode & 0o100)
    try:
        account = pwd.getpwuid(uid)
        groups = os.getgrouplist(account.pw_name, account.pw_gid)
    except KeyError:
        groups = []
    return bool(mode & (0o010 if info.st_gid in groups else 0o001))


def interpreter(program: str, follow_env: bool = True) -> str | None:
    """The program a script runs with, from its #! line (read safely: it may be a user's file);
    with FOLLOW_ENV, ``#!/usr/bin/env python3`` gives the python3 on PATH."""
    import shutil

    head, _, _ = read(program, 512)
    if not head or not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    if follow_env and words and os.path.basename(words[0]) == "env" and len(words) > 1:
        try:
            return shutil.which(words[1])
        except ValueError:  # a NUL in the name
            return None
    return words[0] if words else None


def program(role: str, wanted: str, search_path: str, uid: int | None) -> Program:
    """ROLE's executable as the service finds it: WANTED if absolute, else the first on SEARCH_PATH
    that UID may execute (what execvp does; a directory the caller cannot search is remembered)."""
    if "\0" in wanted:
        return Program(role, wanted, None, "is not a valid path (it holds a NUL byte)")
    candidates = [wanted] if os.path.isabs(wanted) else \
        [os.path.join(directory or ".", wanted) for directory in search_path.split(":")]
    closed = problem = ""
    for candidate in candidates:
        try:
            info = os.stat(candidate)
        except PermissionError:
            closed = closed or closed_reason(candidate)
            continue
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                problem = problem or f"cannot be looked at: {exc.strerror}"
            continue
        if not stat.S_ISREG(info.st_mode):
            problem = problem or "is not a regular file"
        elif not _may_execute(info, uid):
            problem = problem or f"is not executable (mode {stat.S_IMODE(info.st_mode):04o})"
        else:
            return _with_interpreter(Program(role, wanted, candidate), uid)
    if closed:
        return Program(role, wanted, None, "", closed)
    return Program(role, wanted, None, problem or ("does not exist" if os.path.isabs(wanted) else "is not on PATH"))


def _with_interpreter(found: Program, uid: int | None) -> Program:
    """A venv moved or deleted leaves console scripts whose #! Python is gone: exec says ENOENT."""
    python = interpreter(found.found or "", follow_env=False)
    if python is None or not os.path.isabs(python):
        return found
    try:
        info = os.stat(python)
    except PermissionError:
        return found  # not ours to tell; the program itself was found
    except ValueError:  # the #! line holds a NUL: the kernel would cut the name there
        return Program(found.role, found.wanted, None, "has a #! line that holds a NUL byte")
    except OSError:
        return Program(found.role, found.wanted, None, f"runs with #!{python}, which does not exist "
                       "(was its venv moved or deleted?)")
    if not _may_execute(info, uid):
        return Program(found.role, found.wanted, None, f"runs with #!{python}, which is not executable")
    return found


def proxy_tls(config, closed: dict[str, str]) -> ProxyTls | None:
    """--proxy external: the pair the proxy service's command serves (--ssl-cert/--ssl-key), or None
    when there is no such service file (a proxy run some other way is not ours to judge)."""
    from supervisor.config import load
    from supervisor.errors import ConfigError
    from supervisor.jupyterhub.external_proxy import PROXY_SERVICE, tls_files

    directory = os.path.dirname(config.path)
    path = os.path.join(directory, f"{PROXY_SERVICE}.toml")
    if os.geteuid() != 0:  # it holds the proxy's token, so it is 0600: say so rather than "invalid"
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW))
        except PermissionError:
            return ProxyTls(path, None, None, None, closed_reason(path))
        except OSError:
            return None
    try:
        proxy = load(PROXY_SERVICE, directory)
    except ConfigError:
        return None  # `svctl check jupyterhub-proxy` says what is wrong with it
    cert, key = tls_files(proxy.command, proxy.working_directory)
    report = cert_report(cert, key, closed) if cert and key else None
    return ProxyTls(path, cert, key, report)


# ---- what a root hub runs: the root trust rule (docs/security.md X2), as `svctl start` applies it --


def root_trust_problem(path: str) -> str | None:
    """Why someone other than root could change PATH, a program a root hub runs, or None; one line
    ending with the fix. trustchain's rule (the file, every directory to it, every symlink on the
    way); a non-root caller's own files pass that rule (it trusts its caller), so they are named too."""
    from supervisor.unix import trustchain

    try:
        reason, info, resolved = trustchain.walk(path)
    except ValueError:
        return f"{path!r} is not a valid path (it holds a NUL byte)"
    if reason or info is None:
        return reason
    return trustchain.file_problem(info, resolved) or _callers_own(resolved)


def path_directory_problem(directory: str) -> str | None:
    """Why a directory on a root hub's PATH lets others choose what it runs, or None. Stricter than a
    file's chain: a sticky bit does not help (a new name is enough: the hub looks programs up by name)."""
    from supervisor.unix import trustchain

    if not os.path.isabs(directory):
        return (f"the PATH entry {directory!r} is relative: programs are looked up in whatever the working "
                "directory is; fix: remove it from environment.PATH")
    try:
        reason, info, resolved = trustchain.walk(directory)
    except ValueError:
        return f"the PATH entry {directory!r} holds a NUL byte; fix: remove it from environment.PATH"
    if reason or info is None:
        return reason  # missing: only root could create it (its parents were checked)
    if not stat.S_ISDIR(info.st_mode):
        return None  # execvp skips it
    if info.st_uid != 0 and info.st_uid != os.geteuid():
        return f"{resolved} is owned by {_owner(info.st_uid)}, not root; fix: chown root {resolved}"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "world" if info.st_mode & stat.S_IWOTH else "group"
        return (f"{resolved} is {who}-writable (mode {stat.S_IMODE(info.st_mode):04o}): others can put a program "
                f"there under a name the hub looks up; fix: chmod go-w {resolved}")
    return _callers_own(resolved)


def _callers_own(resolved: str) -> str | None:
    """For a non-root caller: the first part of RESOLVED (no symlinks left) that the caller owns."""
    uid = os.geteuid()
    if uid == 0:
        return None
    current = "/"
    for part in [part for part in resolved.split("/") if part]:
        current = os.path.join(current, part)
        try:
            info = os.lstat(current)
        except OSError:
            return None
        if info.st_uid == uid:
            return f"{current} is owned by {_owner(uid)}, not root; fix: chown root {current}"
    return None
