#!/usr/bin/env bash
# Start the Docker engine the way this project needs it: no bridge network, no iptables, so that every
# container runs with --network host and nothing leaves loopback. Idempotent: a running engine is reused,
# but only if it has no bridge network (a bridge-enabled engine would break the loopback-only rule).
set -euo pipefail
LOG=${DOCKERD_LOG:-/var/log/metasched-dockerd.log}

if ! command -v dockerd >/dev/null 2>&1; then
    echo "docker-engine: dockerd not installed (run ci/install-system.sh first)" >&2
    exit 1
fi

if docker info >/dev/null 2>&1; then
    if docker network ls --format '{{.Driver}}' | grep -qx bridge; then
        echo "docker-engine: a running Docker engine has a bridge network; metasched needs one started" >&2
        echo "  with --bridge=none. Stop it (e.g. 'pkill dockerd') and rerun." >&2
        exit 1
    fi
    echo "docker-engine: already running (bridge=none)"
    exit 0
fi

echo "docker-engine: starting dockerd --bridge=none --iptables=false --ip-masq=false (log: $LOG)"
setsid nohup dockerd --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
    --host unix:///var/run/docker.sock >"$LOG" 2>&1 </dev/null &
for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        echo "docker-engine: ready"
        exit 0
    fi
    sleep 0.5
done
echo "docker-engine: dockerd did not become ready in 30 s; last log lines:" >&2
tail -n 20 "$LOG" >&2
exit 1
