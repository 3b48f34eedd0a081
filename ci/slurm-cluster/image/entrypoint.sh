#!/bin/sh
# Roles of a containerized Slurm site (every container runs with --network host and --init):
#   controller SITE_DIR            munged (socket inside SITE_DIR) + slurmctld in the foreground
#   compute SITE_DIR NODE_NAME     slurmd for one node in the foreground
# SITE_DIR is mounted at the same absolute path as on the host, so paths in slurm.conf hold everywhere.
set -eu
role=$1
site_dir=$2
export SLURM_CONF="$site_dir/etc/slurm.conf"
case "$role" in
controller)
    munged --force --socket="$site_dir/munge/munged.sock" --key-file="$site_dir/munge/munge.key" \
        --pid-file="$site_dir/munge/munged.pid" --log-file="$site_dir/log/munged.log" \
        --seed-file="$site_dir/munge/munged.seed"
    exec slurmctld -D -i
    ;;
compute)
    node=$3
    mkdir -p "$site_dir/spool/$node"
    exec slurmd -D -N "$node"
    ;;
*)
    echo "metasched-slurm-entrypoint: unknown role '$role' (controller|compute)" >&2
    exit 2
    ;;
esac
