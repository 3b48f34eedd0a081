#!/bin/sh
# Roles as in metasched-slurm-entrypoint; a controller whose site has etc/slurmdbd.conf first starts, all
# inside SITE_DIR and on 127.0.0.1 only: munged, MariaDB (data in SITE_DIR/mysql, port = StoragePort of
# slurmdbd.conf, --skip-grant-tables: a throw-away test database reached only over loopback) and slurmdbd.
set -eu
role=$1
site_dir=$2
conf="$site_dir/etc/slurmdbd.conf"
if [ "$role" != controller ] || [ ! -f "$conf" ]; then
    exec /usr/local/bin/metasched-slurm-entrypoint "$@"
fi
export SLURM_CONF="$site_dir/etc/slurm.conf"
munged --force --socket="$site_dir/munge/munged.sock" --key-file="$site_dir/munge/munge.key" \
    --pid-file="$site_dir/munge/munged.pid" --log-file="$site_dir/log/munged.log" \
    --seed-file="$site_dir/munge/munged.seed"
port=$(sed -n 's/^StoragePort=//p' "$conf")
data="$site_dir/mysql"
if [ ! -d "$data/mysql" ]; then
    mariadb-install-db --user=root --datadir="$data" --skip-test-db --auth-root-authentication-method=normal \
        > "$site_dir/log/mariadb-install.log" 2>&1
fi
mariadbd --user=root --datadir="$data" --socket="$site_dir/run/mysqld.sock" --port="$port" \
    --bind-address=127.0.0.1 --skip-grant-tables --pid-file="$site_dir/run/mysqld.pid" \
    --log-error="$site_dir/log/mariadb.log" &
tries=0
until mariadb-admin --socket="$site_dir/run/mysqld.sock" ping > /dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -lt 300 ] || { echo "MariaDB did not start: see $site_dir/log/mariadb.log" >&2; exit 1; }
    sleep 0.1
done
LD_LIBRARY_PATH=/opt/bookworm-libmariadb slurmdbd  # see the Dockerfile: trixie's client library fails
tries=0
until sacctmgr --noheader --parsable2 show cluster > /dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -lt 300 ] || { echo "slurmdbd did not answer: see $site_dir/log/slurmdbd.log" >&2; exit 1; }
    sleep 0.1
done
exec slurmctld -D -i
