#!/usr/bin/env bash
# A Debian bookworm root filesystem for the systemd container tier (tests/system/systemd/), built once with
# debootstrap and reused: it lives outside the repository, in $TICKBUS_ROOTFS_CACHE (default
# /var/cache/tickbus-test-rootfs), and is rebuilt only when the package list below changes.
#
# debootstrap uses the mirror apt already uses (the first deb.debian.org-style URI of a "debian"
# suite in /etc/apt/sources.list*), so it works wherever `apt-get install` works.
#
# Prints the rootfs path on stdout when it is ready; exit 1 (with the reason on stderr) otherwise.
# The rootfs is built in a temporary directory and renamed into place, so an interrupted build never
# leaves a half-made tree that later runs would trust.
set -euo pipefail

cache="${TICKBUS_ROOTFS_CACHE:-/var/cache/tickbus-test-rootfs}"
suite=bookworm
# systemd as PID 1 with journald and D-Bus (systemctl, machinectl), Python for the operator's venv
packages="systemd,systemd-sysv,dbus,libpam-systemd,python3,python3-venv,procps,ca-certificates"
stamp_text="suite=$suite packages=$packages v1"
rootfs="$cache/$suite"

ready() { [[ -f "$rootfs/.tickbus-rootfs" && "$(cat "$rootfs/.tickbus-rootfs")" == "$stamp_text" ]]; }
if ready; then
    echo "$rootfs"
    exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
    echo "ensure_rootfs: building $rootfs needs root (debootstrap)" >&2
    exit 1
fi
# one builder at a time; a run that waited finds the rootfs ready
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if ready; then
    echo "$rootfs"
    exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    echo "ensure_rootfs: debootstrap is not installed (tests/ensure_system_deps.sh installs it)" >&2
    exit 1
fi

mirror=""
for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f "$file" ]] || continue
    # one-line format: deb [opts] URI suite ...; deb822 format: URIs: URI
    candidate=$(awk '
        /^[[:space:]]*deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { print $i; exit } }
        /^[[:space:]]*URIs:/ { print $2; exit }
    ' "$file" | grep -v -- '-security' | head -n1 || true)
    if [[ -n "$candidate" ]]; then
        mirror="$candidate"
        break
    fi
done
mirror="${mirror:-http://deb.debian.org/debian}"

mkdir -p "$cache"
build=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$build"' EXIT
echo "ensure_rootfs: debootstrap $suite from $mirror into $rootfs (first run only; a few minutes)" >&2
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$build" "$mirror" \
    >"$cache/debootstrap.log" 2>&1; then
    echo "ensure_rootfs: debootstrap failed; see $cache/debootstrap.log" >&2
    tail -n 20 "$cache/debootstrap.log" >&2
    exit 1
fi

# A quiet, fast boot: no login prompts on the console, no network management (the container shares
# nothing it needs to configure), an empty machine-id that systemd fills at first boot.
ln -sf /dev/null "$build/etc/systemd/system/console-getty.service"
ln -sf /dev/null "$build/etc/systemd/system/getty@.service"
ln -sf /dev/null "$build/etc/systemd/system/systemd-networkd.service"
ln -sf /dev/null "$build/etc/systemd/system/systemd-resolved.service"
ln -sf /dev/null "$build/etc/systemd/system/apt-daily.timer"
ln -sf /dev/null "$build/etc/systemd/system/apt-daily-upgrade.timer"
: >"$build/etc/machine-id"
echo tickbus-test >"$build/etc/hostname"
rm -rf "$build/var/cache/apt/archives/"*.deb "$build/var/lib/apt/lists/"*
echo "$stamp_text" >"$build/.tickbus-rootfs"

rm -rf "$rootfs"
mv "$build" "$rootfs"
trap - EXIT
echo "$rootfs"
