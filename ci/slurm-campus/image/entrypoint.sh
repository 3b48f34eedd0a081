#!/bin/sh
# Roles of a campus container (each runs its own munged, as every node of a real cluster does):
#   controller        munged + slurmctld (as SlurmUser slurm) in the foreground
#   compute NODE      munged + slurmd for NODE in the foreground
set -eu
mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
runuser -u munge -- /usr/sbin/munged
case "${1:-}" in
controller)
    exec slurmctld -D -i
    ;;
compute)
    mkdir -p "/var/lib/slurm/slurmd/$2"
    exec slurmd -D -N "$2"
    ;;
*)
    echo "campus-entrypoint: unknown role '${1:-}' (controller | compute NODE)" >&2
    exit 2
    ;;
esac
