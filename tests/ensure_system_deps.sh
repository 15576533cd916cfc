#!/usr/bin/env bash
# System packages the test suite uses as real servers: Prometheus (tests/system/integration/test_metrics.py),
# systemd-nspawn, debootstrap and systemd-analyze (tests/system/systemd), and tmux as a real terminal
# (tests/system/integration/test_top.py).
#
# Installs only what is missing, and only when running as root with apt-get; otherwise it says what
# is missing and exits 0, and the tests that need it skip with that reason. Services are never
# started: a temporary policy-rc.d denies every start during the install, and recommends (the node
# exporter, another service) are not installed. The tests start their own Prometheus on loopback.
set -euo pipefail

missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
# promtool (deploy/prometheus checks, tests/system/integration/test_operator_assets.py) ships in the same package
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# the systemd tier (tests/system/systemd): a container booted with systemd-nspawn on a debootstrap rootfs
command -v systemd-nspawn >/dev/null 2>&1 || missing+=(systemd-container)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# the several-hosts tier (tests/system/netns): network namespaces, veth pairs and a bridge
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
# a real terminal for `tickbus top` (tests/system/integration/test_top.py)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
if [[ ${#missing[@]} == 0 ]]; then
    exit 0
fi
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_system_deps: ${missing[*]} not installed and this is not root with apt-get;" \
        "the tests that need them will skip (install these Debian packages to run them)" >&2
    exit 0
fi

policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# tickbus tests: never start services while installing test dependencies\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
fi
cleanup() { if [[ "$own_policy" == 1 ]]; then rm -f "$policy"; fi; }
trap cleanup EXIT

echo "ensure_system_deps: installing ${missing[*]} (apt-get, services not started)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
    echo "ensure_system_deps: apt-get could not install ${missing[*]}; the tests that need them will skip" >&2
fi
exit 0
