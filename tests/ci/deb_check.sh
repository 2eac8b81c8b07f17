#!/bin/bash
# The Debian package, end to end (issue 6): build it, lintian (no errors), install it with dpkg -i
# next to Debian's `supervisor` package, `svctl --version`, then a small service through
# `svctl install`, `service NAME start|status|stop|status`, `svctl uninstall`; purge both packages.
#
# CI only (CI=true): it installs packages and writes to the real /etc. docs/boot.md ("Building and checking the package") is the recipe;
# a policy-rc.d that denies (exit 101) is in place while packages are installed, so no maintainer
# script starts supervisord (same section); `service` does not consult it.
set -euo pipefail

if [ "${CI:-}" != true ]; then
    echo "deb_check: skipped: CI is not 'true' (this script installs packages and writes /etc)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "deb_check: must run as root (CI does)" >&2
    exit 1
fi

cd "$(dirname "$0")/../.."
export DEBIAN_FRONTEND=noninteractive
export PATH=/usr/sbin:/usr/bin:/sbin:/bin   # Debian's python3, not a venv's or pyenv's
APT="apt-get -o DPkg::Lock::Timeout=300 -q -y"
NAME=svctl-ci
POLICY=/usr/sbin/policy-rc.d
RUNTIME_DEPS="python3-daemon python3-lockfile python3-psutil python3-watchdog"
passed=0
failed=0
created_policy=0

check() {  # check DESCRIPTION COMMAND...: run it, count it, show what it said if it failed
    local description=$1
    shift
    local output code=0
    output=$("$@" 2>&1) || code=$?
    if [ "$code" = 0 ]; then
        passed=$((passed + 1))
        echo "ok: $description"
    else
        failed=$((failed + 1))
        echo "FAILED: $description (exit $code)"
        printf '%s\n' "$output" | sed 's/^/    /'
    fi
}

expect_code() {  # expect_code CODE COMMAND...
    local want=$1 got=0
    shift
    "$@" || got=$?
    [ "$got" = "$want" ] || { echo "$* exited $got, expected $want"; return 1; }
}

cleanup() {
    set +e
    if [ -x /usr/bin/svctl ]; then
        /usr/bin/svctl stop "$NAME" >/dev/null 2>&1
        /usr/bin/svctl uninstall "$NAME" >/dev/null 2>&1
    fi
    rm -f "/etc/svctl/$NAME.toml"
    rmdir /etc/svctl 2>/dev/null
    $APT purge svctl supervisor >/dev/null 2>&1
    [ "$created_policy" = 1 ] && rm -f "$POLICY"
}
trap cleanup EXIT

# --- build and lint ---------------------------------------------------------------------------
$APT update >/dev/null
dpkg-query -W -f='${Status}' lintian 2>/dev/null | grep -q 'install ok installed' \
    || $APT install --no-install-recommends lintian >/dev/null
${MAKE:-make} deb
DEB=$(ls build/deb/svctl_*_all.deb)
CHANGES=$(ls build/deb/svctl_*.changes)
check "lintian reports no errors" lintian --fail-on error --display-info "$CHANGES"
check "the code is in /usr/share/svctl" sh -c "dpkg-deb -c '$DEB' | grep -q ' ./usr/share/svctl/supervisor/__init__.py$'"
check "nothing in dist-packages" sh -c "! dpkg-deb -c '$DEB' | grep -q 'dist-packages'"
check "the package has the wrapper and the man page" \
    sh -c "dpkg-deb -c '$DEB' | grep -q ' ./usr/bin/svctl$' && dpkg-deb -c '$DEB' | grep -q ' ./usr/share/man/man8/svctl.8.gz$'"

# --- install beside Debian's supervisor -------------------------------------------------------
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    created_policy=1
fi
# shellcheck disable=SC2086
$APT install --no-install-recommends supervisor $RUNTIME_DEPS >/dev/null
check "dpkg -i installs svctl next to supervisor" dpkg -i "$DEB"
check "svctl --version" sh -c "/usr/bin/svctl --version | grep -qx 'svctl $(dpkg-deb -f "$DEB" Version)'"
check "python3 alone still imports supervisord's supervisor" python3 -P -c \
    'import supervisor, sys; sys.exit(not supervisor.__file__.startswith("/usr/lib/python3/dist-packages/"))'
check "the wrapper's sys.path gives svctl's supervisor from /usr/share/svctl" python3 -I -c \
    'import sys; sys.path.insert(0, "/usr/share/svctl"); import supervisor.boot as b; sys.exit(not b.__file__.startswith("/usr/share/svctl/"))'

# --- a small service through the installed package ----------------------------------------------
mkdir -p /etc/svctl
cat >"/etc/svctl/$NAME.toml" <<EOF
description = "svctl CI check"
command = ["/bin/sleep", "1000"]
stop = "TERM/1/KILL/1"
start_seconds = 0.2
restart = "never"
EOF
check "svctl install $NAME" /usr/bin/svctl install "$NAME" --no-systemd
check "rc links S01 in rc2, K01 in rc0" test -L "/etc/rc2.d/S01$NAME" -a -L "/etc/rc0.d/K01$NAME"
check "the shim calls /usr/bin/svctl" grep -qx 'SVCTL=/usr/bin/svctl' "/etc/init.d/$NAME"
check "service $NAME start" expect_code 0 service "$NAME" start
check "service $NAME status is 0" expect_code 0 service "$NAME" status
check "service $NAME stop" expect_code 0 service "$NAME" stop
check "service $NAME status is 3" expect_code 3 service "$NAME" status
unit_root=$(mktemp -d)
check "svctl install --systemd --root writes a unit" /usr/bin/svctl install "$NAME" --systemd --no-initd --root "$unit_root"
if command -v systemd-analyze >/dev/null; then
    check "systemd-analyze verify accepts the unit" \
        systemd-analyze verify --man=no "$unit_root/etc/systemd/system/$NAME.service"
else
    echo "skipped: systemd-analyze verify (systemd-analyze is not installed)"
fi
rm -rf "$unit_root"
check "svctl uninstall $NAME" /usr/bin/svctl uninstall "$NAME"
check "shim and links are gone" sh -c "[ ! -e /etc/init.d/$NAME ] && ! ls /etc/rc?.d/*$NAME >/dev/null 2>&1"

# --- remove, then purge: what happens to generated boot files (docs/boot.md, "Removing svctl") ----
check "svctl install $NAME again" /usr/bin/svctl install "$NAME" --no-systemd
check "apt-get remove svctl" $APT remove svctl
check "remove keeps the generated shim and its links" test -f "/etc/init.d/$NAME" -a -L "/etc/rc2.d/S01$NAME"
check "the orphaned shim's status is 4 (unknown), never 0" expect_code 4 "/etc/init.d/$NAME" status
check "the orphaned shim's start does nothing, successfully" expect_code 0 "/etc/init.d/$NAME" start
check "dpkg -i svctl again" dpkg -i "$DEB"
check "apt-get purge svctl" $APT purge svctl
check "purge removes the generated shim and its links" \
    sh -c "[ ! -e /etc/init.d/$NAME ] && ! ls /etc/rc?.d/*$NAME >/dev/null 2>&1"
check "purge leaves the administrator's service definition" test -f "/etc/svctl/$NAME.toml"

# --- purge both -----------------------------------------------------------------------------------
check "purge supervisor (svctl was purged above)" $APT purge supervisor
check "nothing of svctl is left" sh -c "[ ! -e /usr/bin/svctl ] && [ ! -e /usr/share/svctl ]"

echo "deb checks: $passed passed, $failed failed"
[ "$failed" = 0 ]
