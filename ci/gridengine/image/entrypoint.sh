#!/bin/bash
# Start a one-host Grid Engine cell: qmaster and execd in this container, whose network is its own
# loopback only (docker --network none). Clients run inside it (docker exec). Arguments: SLOTS.
# The cell is configured from scratch at every start (the container's spool is not kept).
set -euo pipefail
slots=${1:-4}
host=$(hostname)
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default SGE_QMASTER_PORT=6444 SGE_EXECD_PORT=6445
grep -q " ${host}\$" /etc/hosts || echo "127.0.0.1 ${host}" >> /etc/hosts
echo "${host}" > ${SGE_ROOT}/${SGE_CELL}/common/act_qmaster
chown sgeadmin:sgeadmin ${SGE_ROOT}/${SGE_CELL}/common/act_qmaster
cat > ${SGE_ROOT}/${SGE_CELL}/common/host_aliases <<HOSTS
${host} localhost
HOSTS
if [ ! -e /var/spool/gridengine/spooldb/sge ]; then
    su -s /bin/sh -c "/usr/share/gridengine/scripts/init_cluster ${SGE_ROOT} ${SGE_CELL} /var/spool/gridengine/spooldb sgeadmin" sgeadmin >/dev/null
fi
cat > /etc/profile.d/sge-ports.sh <<ENV
export SGE_ROOT=${SGE_ROOT} SGE_CELL=${SGE_CELL} SGE_QMASTER_PORT=${SGE_QMASTER_PORT} SGE_EXECD_PORT=${SGE_EXECD_PORT}
ENV
/usr/sbin/sge_qmaster
for _ in $(seq 1 100); do qstat >/dev/null 2>&1 && break; sleep 0.1; done
qconf -am root >/dev/null 2>&1 || true
qconf -ah "${host}" >/dev/null
qconf -as "${host}" >/dev/null
tmp=$(mktemp -d)
cat > "${tmp}/exec" <<CONF
hostname              ${host}
load_scaling          NONE
complex_values        NONE
user_lists            NONE
xuser_lists           NONE
projects              NONE
xprojects             NONE
usage_scaling         NONE
report_variables      NONE
CONF
qconf -Ae "${tmp}/exec" >/dev/null
cat > "${tmp}/smp" <<CONF
pe_name            smp
slots              ${slots}
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    \$pe_slots
control_slaves     FALSE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
CONF
qconf -Ap "${tmp}/smp" >/dev/null
# One queue on this host with SLOTS slots and the smp parallel environment (multi-core jobs: -pe smp N).
cat > "${tmp}/edit-queue" <<EDIT
#!/bin/sh
sed -i -e 's/^hostlist .*/hostlist ${host}/' -e 's/^slots .*/slots ${slots}/' -e 's/^pe_list .*/pe_list smp/' \
    -e 's/^load_thresholds .*/load_thresholds NONE/' "\$1"
EDIT
chmod +x "${tmp}/edit-queue"
EDITOR="${tmp}/edit-queue" qconf -aq all.q >/dev/null
# Jobs run as the submitting user, root here (as on the Slurm test sites); write accounting (qacct) at once.
cat > "${tmp}/edit-conf" <<'EDIT'
#!/bin/sh
sed -i -e 's/^min_uid .*/min_uid 0/' -e 's/^min_gid .*/min_gid 0/' \
    -e 's/^reporting_params .*/reporting_params accounting=true reporting=false flush_time=00:00:01 joblog=false sharelog=00:00:00 accounting_flush_time=00:00:00/' "$1"
EDIT
chmod +x "${tmp}/edit-conf"
EDITOR="${tmp}/edit-conf" qconf -mconf global >/dev/null
# Schedule every second and at once on submit/finish (the default waits up to 15 s). Dispatch by slots
# only: the host's load (the whole test machine's, shared by every site) must not put all.q in alarm
# (load_thresholds NONE above) nor count each dispatched job as extra load (job_load_adjustments): on a
# loaded 2-core machine that held jobs in qw for minutes and dispatched one per second.
cat > "${tmp}/edit-sched" <<'EDIT'
#!/bin/sh
sed -i -e 's/^schedule_interval .*/schedule_interval 0:0:1/' -e 's/^flush_submit_sec .*/flush_submit_sec 1/' \
    -e 's/^flush_finish_sec .*/flush_finish_sec 1/' -e 's/^job_load_adjustments .*/job_load_adjustments NONE/' \
    -e 's/^load_adjustment_decay_time .*/load_adjustment_decay_time 0:0:0/' "$1"
EDIT
chmod +x "${tmp}/edit-sched"
EDITOR="${tmp}/edit-sched" qconf -msconf >/dev/null
/usr/sbin/sge_execd
for _ in $(seq 1 200); do qstat -f 2>/dev/null | grep -q "^all.q@" && ! qstat -f | grep -q "au\b" && break; sleep 0.1; done
echo "gridengine: ready, ${slots} slots on ${host}"
exec sleep infinity
