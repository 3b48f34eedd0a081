#!/bin/sh
# The SSH test site's roles: those of the Slurm image, and on the controller also sshd (daemonized; it
# logs to SITE_DIR/log/sshd.log) when SITE_DIR/ssh/sshd_config exists.
set -eu
if [ "$1" = controller ] && [ -f "$2/ssh/sshd_config" ]; then
    mkdir -p /run/sshd
    /usr/sbin/sshd -f "$2/ssh/sshd_config" -E "$2/log/sshd.log"
fi
exec /usr/local/bin/metasched-slurm-entrypoint "$@"
