"""Debian roots for the real-boot harness, cached under build/boot-roots/.

    base-RELEASE/          debootstrap --variant=minbase RELEASE (the configured Debian mirror)
    prep-RELEASE-INIT/     a copy of it with the init system and python3 installed; its recipe in
                           prep-RELEASE-INIT.recipe (rebuilt when the recipe changes)
    apt-cache/RELEASE/     /var/cache/apt/archives of every install, kept across runs
    run/RELEASE-INIT/      one case's root: an overlay (upper/, work/, root/) on its prep root, so
                           a case never changes the cache and starts from the same state each time
                           (and a container's root is never a host directory: see Workspace.mount)

A directory is built as NAME.tmp and renamed when complete, so an interrupted build is redone.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from rb_machine import CLEAN_ENV, HarnessError, run, run_in_root

RECIPE_VERSION = 2
DEFAULT_MIRROR = "http://deb.debian.org/debian"
INIT_PACKAGES = {"sysvinit": ["sysvinit-core"], "systemd": ["systemd-sysv"]}
# python3 runs the test service; procps so that a person debugging a kept root has ps.
COMMON_PACKAGES = ["python3", "procps"]
HOST_TOOLS = {"debootstrap": "debootstrap", "systemd-nspawn": "systemd-container",
              "nsenter": "util-linux", "dpkg-deb": "dpkg", "mount": "mount"}
APT_CONF = '''// realboot: the host's mirror may be a dated snapshot (as the host's own apt is told)
Acquire::Check-Valid-Until "false";
Acquire::Languages "none";
Acquire::Retries "3";
'''
POLICY_RC_D = "#!/bin/sh\n# realboot: no service starts while packages are installed\nexit 101\n"


def ensure_host_tools(say) -> None:
    """CI starts from a fresh machine: install what is missing, with apt-get."""
    missing = sorted({package for tool, package in HOST_TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    say(f"installing host packages: {' '.join(missing)}")
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "-q", "-y"]
    env = {**CLEAN_ENV, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (apt + ["update"], apt + ["install", "--no-install-recommends", *missing]):
        result = run(argv, timeout=900, env=env)
        if not result.ok:
            raise HarnessError(f"{' '.join(argv)} failed ({result.code}):\n{result.tail()}")


def configured_mirror() -> str:
    """The host's Debian mirror (its deb822 or one-line sources), else deb.debian.org."""
    sources = Path("/etc/apt/sources.list.d")
    for path in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        for line in path.read_text().splitlines():
            if line.startswith("URIs:"):
                for uri in line.split()[1:]:
                    if uri.rstrip("/").endswith("/debian"):
                        return uri.rstrip("/")
    listing = Path("/etc/apt/sources.list")
    for line in listing.read_text().splitlines() if listing.exists() else []:
        words = line.split()
        if len(words) >= 3 and words[0] == "deb" and words[1].rstrip("/").endswith("/debian"):
            return words[1].rstrip("/")
    return DEFAULT_MIRROR


def sources_for(release: str, mirror: str) -> str:
    """main, updates and security, as a Debian 12/13 install has them."""
    security = mirror[: -len("/debian")] + "/debian-security"
    return (f"Types: deb\nURIs: {mirror}\nSuites: {release} {release}-updates\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
            f"Types: deb\nURIs: {security}\nSuites: {release}-security\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


class Roots:
    def __init__(self, directory: Path, mirror: str, say, refresh: bool = False):
        self.directory, self.mirror, self.say, self.refresh = directory, mirror, say, refresh
        directory.mkdir(parents=True, exist_ok=True)

    def apt_cache(self, release: str) -> Path:
        cache = self.directory / "apt-cache" / release
        (cache / "partial").mkdir(parents=True, exist_ok=True)
        return cache

    def base(self, release: str) -> Path:
        root = self.directory / f"base-{release}"
        if root.is_dir():
            return root
        temporary = root.with_name(root.name + ".tmp")
        shutil.rmtree(temporary, ignore_errors=True)
        self.say(f"debootstrap --variant=minbase {release} ({self.mirror}), once")
        argv = ["debootstrap", "--variant=minbase", f"--cache-dir={self.apt_cache(release)}",
                release, str(temporary), self.mirror]
        result = run(argv, timeout=1800)
        (self.directory / f"base-{release}.log").write_text(result.out)
        if not result.ok:
            raise HarnessError(f"debootstrap {release} failed ({result.code}):\n{result.tail()}")
        temporary.rename(root)
        return root

    def prepared(self, release: str, init: str) -> Path:
        """The base plus the init system and python3; nothing of svctl."""
        name = f"prep-{release}-{init}"
        root, stamp = self.directory / name, self.directory / f"{name}.recipe"
        packages = INIT_PACKAGES[init] + COMMON_PACKAGES
        script = f"""
apt-get -q update
apt-get -q -y install --no-install-recommends {' '.join(packages)}
rm -f /usr/sbin/policy-rc.d
"""
        if init == "sysvinit":
            # A container has no virtual consoles: getty on tty1-6 would respawn "too fast".
            script += "sed -i 's,^\\([1-6]:[0-9]*:respawn:/sbin/getty\\),#\\1,' /etc/inittab\n"
        # Any change to how a root is made makes a new one.
        recipe = {"version": RECIPE_VERSION, "mirror": self.mirror, "packages": packages,
                  "script": script, "apt_conf": APT_CONF, "sources": sources_for(release, self.mirror)}
        if root.is_dir() and not self.refresh and stamp.exists():
            if json.loads(stamp.read_text()) == recipe:
                return root
        base = self.base(release)
        self.say(f"preparing {name}: {' '.join(packages)}")
        temporary = root.with_name(name + ".tmp")
        shutil.rmtree(temporary, ignore_errors=True)
        result = run(["cp", "-a", "--reflink=auto", str(base), str(temporary)], timeout=600)
        if not result.ok:
            raise HarnessError(f"copying {base} failed:\n{result.tail()}")
        sources = temporary / "etc/apt/sources.list"
        if sources.exists():
            sources.unlink()
        write(temporary / "etc/apt/sources.list.d/debian.sources", sources_for(release, self.mirror))
        write(temporary / "etc/apt/apt.conf.d/99realboot", APT_CONF)
        write(temporary / "usr/sbin/policy-rc.d", POLICY_RC_D, 0o755)
        write(temporary / "etc/hostname", f"rb-{release}-{init}\n")
        result = run_in_root(temporary, f"rb-prep-{release}-{init}", script, network=True,
                             binds=(f"{self.apt_cache(release)}:/var/cache/apt/archives",), timeout=1800)
        (self.directory / f"{name}.log").write_text(result.out)
        if not result.ok:
            raise HarnessError(f"preparing {name} failed ({result.code}):\n{result.tail()}")
        if root.exists():
            shutil.rmtree(root)
        temporary.rename(root)
        stamp.write_text(json.dumps(recipe))
        return root


class Workspace:
    """One case's root: an overlay on the prepared root, mounted while the case runs."""

    def __init__(self, roots: Roots, release: str, init: str):
        self.lower = roots.prepared(release, init)
        self.directory = roots.directory / "run" / f"{release}-{init}"
        self.root = self.directory / "root"
        self.mounted = False

    def __enter__(self) -> Workspace:
        remove_stale_mounts(self.directory)
        shutil.rmtree(self.directory, ignore_errors=True)
        for part in ("upper", "work", "root"):
            (self.directory / part).mkdir(parents=True)
        self.mount()
        return self

    def __exit__(self, *_exc) -> None:
        self.unmount()

    def mount(self) -> None:
        """Overlayfs, never a plain directory: sysvinit's umountroot runs `mount -o remount,ro /`
        at halt, and in a container that keeps CAP_SYS_ADMIN this remounts the *superblock* of the
        container's root. Only an overlay of its own keeps that away from the host's filesystem."""
        options = (f"lowerdir={self.lower},upperdir={self.directory / 'upper'},"
                   f"workdir={self.directory / 'work'}")
        result = run(["mount", "-t", "overlay", "overlay", "-o", options, str(self.root)], timeout=60)
        if not result.ok:
            raise HarnessError(f"cannot mount an overlay on {self.root} ({result.tail(2)}): the "
                               "harness needs overlayfs (a container's root is never a host directory)")
        self.mounted = True

    def remount(self) -> list[str]:
        """A fresh overlay superblock after a boot (the halt left it read-only)."""
        problems = self.unmount()
        if not problems:
            self.mount()
        return problems

    def unmount(self) -> list[str]:
        if not self.mounted:
            return []
        result = run(["umount", str(self.root)], timeout=60)
        if not result.ok:
            return [f"umount {self.root} failed: {result.tail(3)}"]
        self.mounted = False
        return []

    def discard(self) -> None:
        if not self.mounted:
            shutil.rmtree(self.directory, ignore_errors=True)


def remove_stale_mounts(under: Path) -> list[str]:
    """Mounts an interrupted run left under `under` (deepest first)."""
    prefix = str(under.resolve()) + "/"
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mountpoint = line.split(" ")[4].replace("\\040", " ")
        if (mountpoint + "/").startswith(prefix):
            mounts.append(mountpoint)
    problems = []
    for mountpoint in sorted(mounts, key=len, reverse=True):
        result = run(["umount", mountpoint], timeout=60)
        if not result.ok:
            problems.append(f"cannot unmount stale {mountpoint}: {result.tail(2)}")
    return problems


def dpkg_versions(root: Path, packages: list[str]) -> dict[str, str]:
    """Installed versions, read from the root's dpkg database (no process needed)."""
    versions, package, status = {}, None, ""
    text = (root / "var/lib/dpkg/status").read_text(errors="replace")
    for line in text.splitlines() + [""]:
        if line.startswith("Package: "):
            package = line.split(": ", 1)[1]
        elif line.startswith("Status: "):
            status = line
        elif line.startswith("Version: ") and package in packages and status.endswith(" installed"):
            versions[package] = line.split(": ", 1)[1]
    return versions


def clear(directory: Path) -> None:
    if directory.exists():
        for child in directory.iterdir():
            child.unlink()
    os.makedirs(directory, exist_ok=True)
