#!/usr/bin/env bash
# Install the Debian packages the test suite needs, if any is missing. Idempotent and quiet when all
# are present. Runs as root on Debian 12 (the development and CI machine kind).
#   docker.io    Docker engine 20.10 (the image may ship only a client)
#   mmdebstrap   builds the registry-free base image
#   slurm-client host-side Slurm 22.05 commands: the host is every containerized site's login node
#                (pulls libmunge2; no host munged is needed: each site's munged socket is used directly)
#   iproute2     `ss`, used when debugging which addresses daemons listen on
#   redis-server a real Redis for the data layer's Redis store tests (started by the tests on 127.0.0.1;
#                policy-rc.d below keeps the package from starting its own service)
set -euo pipefail
PACKAGES=(docker.io mmdebstrap slurm-client iproute2 util-linux ca-certificates redis-server openssh-client)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-system: all system packages present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-system: missing ${missing[*]} and not root; install them with apt-get" >&2
    exit 1
fi
echo "install-system: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps package scripts from starting daemons with their defaults (docker.io's default
# engine would create the bridge network); ci/docker-engine.sh starts the engine the way we need it.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq "${missing[@]}" >/dev/null
echo "install-system: done"
