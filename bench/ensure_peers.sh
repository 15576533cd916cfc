#!/usr/bin/env bash
# Install the peer servers the benchmark compares against (Debian's nats-server and redis-server).
# Best effort: without root or without the packages, bench.run prints "SKIPPED <system>" and goes on.
set -u

missing=()
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)

if [ ${#missing[@]} -eq 0 ]; then
    echo "ensure_peers: nats-server and redis-server are installed"
    exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure_peers: installing ${missing[*]} from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || echo "ensure_peers: apt-get update failed" >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || echo "ensure_peers: apt-get install ${missing[*]} failed" >&2
else
    echo "ensure_peers: ${missing[*]} missing and not root (or no apt-get): those systems will be skipped" >&2
fi

for server in nats-server redis-server; do
    if ! command -v "$server" >/dev/null 2>&1; then
        echo "ensure_peers: WARNING: $server is still not installed; bench.run will skip it" >&2
    fi
done
# Never fail `make bench` here: the harness reports what it could not run.
exit 0
