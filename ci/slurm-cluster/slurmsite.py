"""Bring containerized Slurm sites up and down on this machine, with no registry and no bridge network.

A site is one controller container (munged + slurmctld) and N compute containers (one slurmd each), all
running with ``--network host`` and talking over 127.0.0.1 on ports that belong to that site alone. Each
site has its own directory, mounted at the same absolute path in its containers and on the host::

    <root>/<name>/site.json        what `up` decided: ports, nodes, image, paths
    <root>/<name>/etc/slurm.conf   the site's configuration; SLURM_CONF for daemons *and* host clients
    <root>/<name>/munge/           the site's own munge key and munged socket (AuthInfo=socket=...)
    <root>/<name>/state/           StateSaveLocation
    <root>/<name>/spool/<node>/    SlurmdSpoolDir per node
    <root>/<name>/log/             slurmctld.log, slurmd-<node>.log, munged.log, jobcomp.log
    <root>/<name>/shared/          the site's shared filesystem (like an HPC scratch directory)
    <root>/<name>/scratch/         mounted at /var/tmp/metasched-scratch in the compute containers of every
                                   site: the same absolute path everywhere, so a task checkpointed at one
                                   site is restored at another with its working directory where it was

The host is every site's login node: ``SLURM_CONF=<root>/<name>/etc/slurm.conf sbatch ...`` submits to
that site, authenticated through the site's munged socket. Two sites have different keys, ports and
cluster names and do not see each other's jobs.

Usage: ``python ci/slurm-cluster/slurmsite.py up|down|status|env NAME [--nodes N] [--cpus C] [--fresh]``.
The root defaults to /var/tmp/metasched-sites (override with METASCHED_SITES_DIR).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import images  # noqa: E402  (ci/images.py)
import sitecontainers as containers  # noqa: E402  (ci/sitecontainers.py: docker-py)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ssh-login"))
import sshlogin  # noqa: E402  (ci/ssh-login/sshlogin.py)

DEFAULT_ROOT = Path("/var/tmp/metasched-sites")
FIRST_PORT = 16800
PORT_BLOCK = 20
MAX_BLOCKS = 200
LABEL = "metasched.site"
SCRATCH = "/var/tmp/metasched-scratch"
COMMAND_TIMEOUT_S = 60.0
SPANK_PBS = "/usr/lib/x86_64-linux-gnu/slurm-wlm/spank_pbs.so"
FLAVORS = ("bookworm", "sid", "torque", "trixie")
SSH_FLAVORS = ("bookworm", "torque", "sid")  # those a site reached over SSH may have (ci/ssh-login)
READY_TIMEOUT_S = 90.0


SiteError = containers.SiteError  # what `up` raises (shared by every test site's script)
Client = Callable[[list[str]], subprocess.CompletedProcess[str]]  # runs a Slurm client command at a site
ENDED_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY")


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteInfo:
    """Everything a client needs to use one site; persisted as site.json."""

    name: str
    directory: str
    slurm_conf: str
    shared_dir: str
    controller_port: int
    node_ports: dict[str, int]
    cpus_per_node: int
    memory_mb_per_node: int
    partition: str
    image: str
    min_job_age: int = 300
    slurmd_timeout: int = 300
    # "bookworm" (Slurm 22.05, host client), "sid" (Slurm 26.05 + Apptainer), "torque" (bookworm plus
    # Debian's Torque-style wrappers, spank_pbs loaded) or "trixie" (Slurm 24.11 with slurmdbd + MariaDB);
    # all but bookworm are reached through the controller container
    flavor: str = "bookworm"
    dbd_port: int = 0  # trixie: slurmdbd, and MariaDB on the next port
    mysql_port: int = 0
    # "host", or "container:<holder>": every container of the site in the holder's network namespace (its
    # own loopback only; ci/netns.py), reached through the controller container
    network: str = "host"
    binds: tuple[str, ...] = ()  # more host paths mounted read-only, at the same path, on the compute nodes
    # reached over SSH (ssh_port > 0): the controller is also a login node (sshd on 127.0.0.1:ssh_port,
    # ci/ssh-login) and the shared directory (remote_dir) is a Docker volume mounted in the site's
    # containers only, not on this machine
    ssh_port: int = 0
    remote_dir: str = ""

    @property
    def volume(self) -> str:
        """The Docker volume holding an ssh site's shared directory."""
        return sshlogin.volume(self.name)

    @property
    def nodes(self) -> list[str]:
        """Node names in port order."""
        return sorted(self.node_ports, key=self.node_ports.__getitem__)

    def client_env(self) -> dict[str, str]:
        """The environment for a host Slurm command aimed at this site (os.environ + SLURM_CONF)."""
        return {**os.environ, "SLURM_CONF": self.slurm_conf}

    @property
    def login(self) -> list[str]:
        """The argv prefix that runs this site's Slurm client: none (the host's 22.05 client) for bookworm
        sites; the controller container for sid sites (a 22.05 client cannot talk to Slurm 26.05) and for
        torque sites (the wrappers are installed there, not on the host) and trixie sites (24.11)."""
        if self.flavor == "bookworm" and self.network == "host":
            return []
        return ["docker", "exec", "-i", _container_name(self.name, "controller")]

    def client(self, argv: list[str]) -> list[str]:
        """The full argv of a Slurm client command for this site (with SLURM_CONF set where it runs)."""
        if not self.login:
            return argv
        return [*self.login, "env", f"SLURM_CONF={self.slurm_conf}", *argv]

    @classmethod
    def load(cls, path: Path) -> SiteInfo:
        """Read a site.json written by `up`."""
        data = json.loads(path.read_text())
        data["binds"] = tuple(data.get("binds", ()))
        return cls(**data)


def sites_root() -> Path:
    """The directory holding every site's directory."""
    return Path(os.environ.get("METASCHED_SITES_DIR", str(DEFAULT_ROOT)))


def _site_dir(name: str) -> Path:
    if not name.isidentifier() or not name.islower():
        raise SiteError(f"site name {name!r} must be a lowercase identifier (e.g. 'alpha')")
    return sites_root() / name


def _run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = COMMAND_TIMEOUT_S,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        output = proc.stderr.strip() or proc.stdout.strip()
        raise SiteError(f"command {argv!r} failed with exit {proc.returncode}: {output}")
    return proc


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports_taken_by_other_sites(name: str) -> set[int]:
    taken: set[int] = set()
    root = sites_root()
    if not root.is_dir():
        return taken
    for info_file in root.glob("*/site.json"):
        if info_file.parent.name == name:
            continue
        try:
            other = SiteInfo.load(info_file)
        except (OSError, ValueError, TypeError):
            continue
        taken.update([other.controller_port, other.dbd_port, other.mysql_port])
        taken.update(other.node_ports.values())
    return taken


def _allocate_ports(name: str, count: int) -> list[int]:
    """Pick a block of `count` ports no other site uses and nothing listens on."""
    taken = _ports_taken_by_other_sites(name)
    for block in range(MAX_BLOCKS):
        ports = [FIRST_PORT + block * PORT_BLOCK + i for i in range(count)]
        if not taken.intersection(ports) and all(_port_free(p) for p in ports):
            return ports
    raise SiteError(f"no free block of {count} ports on 127.0.0.1 from {FIRST_PORT} for site {name!r}")


def render_slurm_conf(info: SiteInfo) -> str:
    """The slurm.conf of a site; every address is 127.0.0.1 and every path is inside the site directory."""
    d = info.directory
    lines = [
        f"# Generated by ci/slurm-cluster/slurmsite.py for site {info.name}; rewritten on every `up`.",
        f"ClusterName={info.name}",
        "SlurmctldHost=localhost(127.0.0.1)",
        f"SlurmctldPort={info.controller_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={d}/munge/munged.sock",
        "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny",
        "SlurmdParameters=config_overrides",
        f"StateSaveLocation={d}/state",
        f"SlurmdSpoolDir={d}/spool/%n",
        f"SlurmctldPidFile={d}/run/slurmctld.pid",
        f"SlurmdPidFile={d}/run/slurmd-%n.pid",
        f"SlurmctldLogFile={d}/log/slurmctld.log",
        f"SlurmdLogFile={d}/log/slurmd-%n.log",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={d}/log/jobcomp.log",
        "PropagateResourceLimits=NONE",
        "MpiDefault=none",
        "ReturnToService=2",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        # Without a default, a job that asks for no memory is given the whole node's memory under
        # CR_Core_Memory, and each node runs one job at a time.
        "DefMemPerCPU=100",
        "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",
        f"MinJobAge={info.min_job_age}",
        f"SlurmdTimeout={info.slurmd_timeout}",
        "KillWait=5",
        "InactiveLimit=0",
    ]
    if info.flavor == "torque":
        lines.append(f"PlugStackConfig={d}/etc/plugstack.conf")
    if info.flavor == "trixie":  # accounting in slurmdbd, so sacct answers for purged jobs
        lines = [line for line in lines if not line.startswith("AccountingStorageType=")]
        lines += ["AccountingStorageType=accounting_storage/slurmdbd", "AccountingStorageHost=localhost",
                  f"AccountingStoragePort={info.dbd_port}",
                  # with slurmdbd this names the munge socket clients use to reach it (not a password)
                  f"AccountingStoragePass={d}/munge/munged.sock"]
    for node in info.nodes:
        lines.append(
            f"NodeName={node} NodeHostname=localhost NodeAddr=127.0.0.1 Port={info.node_ports[node]} "
            f"CPUs={info.cpus_per_node} RealMemory={info.memory_mb_per_node} State=UNKNOWN"
        )
    lines.append(
        f"PartitionName={info.partition} Nodes={','.join(info.nodes)} Default=YES MaxTime=INFINITE State=UP"
    )
    return "\n".join(lines) + "\n"


def render_slurmdbd_conf(info: SiteInfo) -> str:
    """slurmdbd.conf of a trixie site: slurmdbd and its MariaDB on 127.0.0.1, files in the site directory."""
    d = info.directory
    return "\n".join([
        f"# Generated by ci/slurm-cluster/slurmsite.py for site {info.name}; rewritten on every `up`.",
        "AuthType=auth/munge",
        f"AuthInfo=socket={d}/munge/munged.sock",
        "DbdHost=localhost",
        "DbdAddr=127.0.0.1",
        f"DbdPort={info.dbd_port}",
        "CommunicationParameters=NoInAddrAny",  # listen on DbdAddr (127.0.0.1), not every interface
        "SlurmUser=root",
        "StorageType=accounting_storage/mysql",
        "StorageHost=127.0.0.1",
        f"StoragePort={info.mysql_port}",
        "StorageUser=root",
        "StorageLoc=slurm_acct_db",
        f"LogFile={d}/log/slurmdbd.log",
        f"PidFile={d}/run/slurmdbd.pid",
        "",
    ])


def _container_name(site: str, role: str) -> str:
    # Compute roles are node names, which already start with the site name.
    return f"metasched-slurm-{role}" if role.startswith(f"{site}-") else f"metasched-slurm-{site}-{role}"


def _site_containers(name: str) -> list[containers.Container]:
    """Containers labelled for this site."""
    return containers.labelled(LABEL, name)


def _prepare_directory(info: SiteInfo, *, fresh: bool) -> None:
    d = Path(info.directory)
    if fresh:
        for sub in ("state", "spool", "log", "run", "shared", "scratch", "mysql"):
            shutil.rmtree(d / sub, ignore_errors=True)
    for sub in ("etc", "munge", "state", "spool", "log", "run", "shared", "scratch"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    sites_root().chmod(0o755)
    d.chmod(0o755)
    (d / "munge").chmod(0o700)  # munged refuses a key directory others can read
    key = d / "munge" / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    (d / "etc" / "slurm.conf").write_text(render_slurm_conf(info))
    if info.flavor == "trixie":
        dbd = d / "etc" / "slurmdbd.conf"
        dbd.write_text(render_slurmdbd_conf(info))
        dbd.chmod(0o600)  # slurmdbd refuses a configuration others can read
    if info.flavor == "torque":  # PBS_JOBID, PBS_O_WORKDIR... in every job (slurm-wlm-basic-plugins)
        (d / "etc" / "plugstack.conf").write_text(f"required {SPANK_PBS}\n")
    if info.ssh_port:
        sshlogin.prepare(d, info.name, info.ssh_port)
    (d / "site.json").write_text(json.dumps(asdict(info), indent=2) + "\n")


def _start_container(info: SiteInfo, role: str, *args: str) -> None:
    compute = role != "controller"
    try:
        containers.run(
            _container_name(info.name, role), info.image, args,
            labels={LABEL: info.name, "metasched.role": role},
            volumes=[f"{info.directory}:{info.directory}",
                     # the same absolute path on every site, for checkpointed tasks' working directories
                     *([f"{info.directory}/scratch:{SCRATCH}"] if compute else []),
                     *(f"{path}:{path}:ro" for path in (info.binds if compute else ())),
                     *([f"{info.volume}:{info.remote_dir}"] if info.remote_dir else [])],
            network=info.network,
            # CRIU (checkpointing command tasks) needs only these, with `criu --unprivileged`; Docker 20.10
            # rejects CAP_CHECKPOINT_RESTORE and --privileged fails on this host.
            cap_add=["SYS_ADMIN"] if compute else [],
            security_opt=["seccomp=unconfined"] if compute else [],
            # Apptainer mounts SIF images with squashfuse (in a user namespace: `exec --userns`)
            devices=["/dev/fuse"] if compute and info.flavor == "sid" else [])
    except containers.ContainerError as exc:
        raise SiteError(str(exc)) from exc


def _log_tail(info: SiteInfo, lines: int = 25) -> str:
    chunks = []
    for log in sorted(Path(info.directory, "log").glob("*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        chunks.append(f"--- {log} (last {len(text)} lines)\n" + "\n".join(text))
    for c in _site_containers(info.name):
        if c.state != "running":
            chunks.append(f"--- docker logs {c.name} ({c.state})\n{containers.logs(c.name, tail=lines)}")
    return "\n".join(chunks)


def idle_nodes(client: Client) -> list[str]:
    """The nodes sinfo lists as idle (none while it does not answer)."""
    proc = client(["sinfo", "--noheader", "--Node", "--format=%N %t"])
    if proc.returncode != 0:
        return []
    return [line.split()[0] for line in proc.stdout.splitlines() if line.split()[1:] == ["idle"]]


def readiness_job(client: Client, deadline: float) -> tuple[str, subprocess.CompletedProcess[str]]:
    """Submit a job that runs `true` and follow it until it ends or `deadline`: (its last state, sbatch)."""
    probe = client(["sbatch", "--parsable", "--job-name=metasched-ready", "--output=/dev/null", "--wrap",
                    "true"])
    job_id = probe.stdout.strip().split(";")[0]
    state = "NOT SUBMITTED"
    while probe.returncode == 0 and time.monotonic() < deadline:
        # Poll quickly ourselves: `sbatch --wait` backs off to ~10 s between checks.
        shown = client(["scontrol", "--oneliner", "show", "job", job_id])
        found = re.search(r"\bJobState=(\S+)", shown.stdout)
        state = found.group(1) if found else "UNKNOWN"
        if state in ENDED_STATES:
            break
        time.sleep(0.2)
    return state, probe


def wait_ready(info: SiteInfo, timeout: float = READY_TIMEOUT_S) -> float:
    """Wait until every node is idle and a trivial job completes; return the seconds it took."""
    start = time.monotonic()
    deadline = start + timeout

    def client(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return _run(info.client(argv), env=info.client_env(), check=False)

    idle = idle_nodes(client)
    while sorted(idle) != sorted(info.nodes):
        if time.monotonic() > deadline:
            raise SiteError(
                f"site {info.name!r}: nodes not idle after {timeout:.0f} s "
                f"(idle: {idle}, expected {info.nodes}).\n{_log_tail(info)}"
            )
        time.sleep(0.5)
        idle = idle_nodes(client)
    state, probe = readiness_job(client, deadline)
    if state == "COMPLETED":
        return time.monotonic() - start
    raise SiteError(
        f"site {info.name!r}: the readiness job did not complete (sbatch exit {probe.returncode}, "
        f"state {state}): {probe.stderr.strip()}\n{_log_tail(info)}"
    )


def repair(info: SiteInfo) -> SiteInfo:
    """What an admin does after a controller crash: cancel every job, resume drained nodes, wait ready.

    A controller that lost its state can stay confused (jobs it thinks run, launches it requeues); if
    the site is not ready after that, it is rebuilt from scratch (same name and shape, fresh state).
    """
    try:
        _skip_used_job_ids(info)
        _resume_nodes(info)
        wait_ready(info)
        return info
    except SiteError as exc:
        print(f"slurmsite: site {info.name} not ready after repair, rebuilding it: {str(exc)[:200]}",
              file=sys.stderr)
    return up(info.name, nodes=len(info.node_ports), cpus=info.cpus_per_node,
              memory_mb=info.memory_mb_per_node, fresh=True, min_job_age=info.min_job_age,
              slurmd_timeout=info.slurmd_timeout, flavor=info.flavor)


def _skip_used_job_ids(info: SiteInfo) -> None:
    """Make the controller's next job id higher than any id the site ever used.

    A controller restarted from old state hands out ids its nodes already ran; a late kill or
    completion of the old job then ends the new one (seen in CI: a later test's job CANCELLED).
    FirstJobId only raises the counter, on `scontrol reconfigure`.
    """
    used = [0]
    for log in Path(info.directory, "log").glob("*.log"):
        used.extend(int(n) for n in re.findall(r"\b(?:JobId|StepId)=(\d+)", log.read_text(errors="replace")))
    conf = Path(info.slurm_conf)
    lines = [line for line in conf.read_text().splitlines() if not line.startswith("FirstJobId=")]
    conf.write_text("\n".join([*lines, f"FirstJobId={max(used) + 1}"]) + "\n")
    _run(info.client(["scontrol", "reconfigure"]), env=info.client_env(), check=False)


def _resume_nodes(info: SiteInfo) -> None:
    env = info.client_env()
    _run(info.client(["scancel", f"--user={getpass.getuser()}"]), env=env, check=False)
    nodes = _run(info.client(["sinfo", "--noheader", "--Node", "--format=%N %t"]), env=env, check=False)
    for line in nodes.stdout.splitlines():
        node, state = (line.split() + [""])[:2]
        if state.rstrip("*~#!%$@^-+") in ("drain", "drng", "down", "fail", "failg"):
            _run(info.client(["scontrol", "update", f"NodeName={node}", "State=RESUME"]), env=env,
                 check=False)


def up(name: str, *, nodes: int = 2, cpus: int = 8, memory_mb: int = 8000, fresh: bool = False,
       min_job_age: int = 300, slurmd_timeout: int = 300, flavor: str = "bookworm", network: str = "host",
       binds: tuple[str, ...] = (), ssh: bool = False) -> SiteInfo:
    """Bring a site up (or confirm it is up) and return its description once a job can run.

    `min_job_age` (how long finished jobs stay in squeue) and `slurmd_timeout` (how soon a silent node
    is declared down) can be shortened for fault-injection tests. `flavor` "sid" makes a Slurm 26.05
    site whose nodes run Apptainer, "torque" a 22.05 site with Debian's Torque-style wrappers (their
    clients run in the controller container: see SiteInfo.login). `network` "container:<holder>" puts
    the site in a holder's loopback-only namespace (ci/netns.py); `binds` are host paths the compute nodes
    see read-only (e.g. this machine's Python and virtualenv, for pilot nodes that join its Ray). `ssh`
    makes the site reachable only over SSH (ci/ssh-login), its shared directory a Docker volume.
    """
    directory = _site_dir(name)
    if flavor not in FLAVORS:
        raise SiteError(f"site {name!r}: flavor must be one of {', '.join(FLAVORS)}, got {flavor!r}")
    image = {"bookworm": images.ensure_slurm, "sid": images.ensure_slurm_sid,
             "torque": images.ensure_torque_wrappers, "trixie": images.ensure_slurm_trixie}[flavor]().tag
    if ssh:
        if flavor not in SSH_FLAVORS:
            raise SiteError(f"site {name!r}: a site reached over SSH has flavor {', '.join(SSH_FLAVORS)}")
        image = images.ensure_ssh_login(image).tag
    existing = directory / "site.json"
    info: SiteInfo | None = SiteInfo.load(existing) if existing.exists() else None
    running = [c for c in _site_containers(name) if c.state == "running"]
    if (
        not fresh
        and info is not None
        and info.image == image
        and len(info.node_ports) == nodes
        and (info.min_job_age, info.slurmd_timeout, info.flavor) == (min_job_age, slurmd_timeout, flavor)
        and bool(info.ssh_port) == ssh
        and (info.network, info.binds) == (network, tuple(binds))
        and len(running) == nodes + 1
        and all(c.image == image for c in running)
    ):
        wait_ready(info)
        return info
    down(name)
    extra = (2 if flavor == "trixie" else 0) + (1 if ssh else 0)  # slurmdbd and MariaDB; sshd
    ports = _allocate_ports(name, nodes + 1 + extra)
    info = SiteInfo(
        name=name,
        directory=str(directory),
        slurm_conf=str(directory / "etc" / "slurm.conf"),
        shared_dir=str(directory / "shared"),
        controller_port=ports[0],
        node_ports={f"{name}-c{i + 1}": port for i, port in enumerate(ports[1:nodes + 1])},
        cpus_per_node=cpus,
        memory_mb_per_node=memory_mb,
        partition="debug",
        image=image,
        min_job_age=min_job_age,
        slurmd_timeout=slurmd_timeout,
        flavor=flavor,
        dbd_port=ports[nodes + 1] if flavor == "trixie" else 0,
        mysql_port=ports[nodes + 2] if flavor == "trixie" else 0,
        ssh_port=ports[-1] if ssh else 0,
        remote_dir=sshlogin.remote_dir(name) if ssh else "",
        network=network,
        binds=tuple(binds),
    )
    _prepare_directory(info, fresh=fresh)
    _start_container(info, "controller", "controller", info.directory)
    for node in info.nodes:
        _start_container(info, node, "compute", info.directory, node)
    wait_ready(info)
    return info


def down(name: str, *, purge: bool = False) -> None:
    """Remove a site's containers; with purge, its directory too (logs, state, shared files)."""
    directory = _site_dir(name)
    containers.remove([c.name for c in _site_containers(name)])
    containers.remove_volume(sshlogin.volume(name))  # an ssh site's shared directory (if it has one)
    if purge and directory.exists():
        shutil.rmtree(directory)


def status(name: str) -> str:
    """A human-readable status: containers, and sinfo from the login node."""
    directory = _site_dir(name)
    lines = [f"site {name}: {directory}"]
    running = _site_containers(name)
    if not running:
        lines.append("  no containers (site is down)")
    for c in running:
        lines.append(f"  {c.name}: {c.state} ({c.image})")
    info_file = directory / "site.json"
    if info_file.exists() and running:
        info = SiteInfo.load(info_file)
        lines.append(f"  SLURM_CONF={info.slurm_conf}  controller 127.0.0.1:{info.controller_port}")
        proc = _run(info.client(["sinfo", "--Node", "--long"]), env=info.client_env(), check=False)
        lines.extend("  " + line for line in (proc.stdout or proc.stderr).splitlines())
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="slurmsite", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "status", "env"])
    parser.add_argument("name")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=8, help="CPUs each node claims")
    parser.add_argument("--memory-mb", type=int, default=8000, help="memory each node claims")
    parser.add_argument("--fresh", action="store_true", help="up: wipe state, logs and shared files")
    parser.add_argument("--purge", action="store_true", help="down: delete the site directory too")
    parser.add_argument("--flavor", choices=FLAVORS, default="bookworm",
                        help="up: Slurm 22.05 (bookworm), Slurm 26.05 with Apptainer (sid), 22.05 with the "
                             "Torque-style wrappers (torque), or 24.11 with slurmdbd + MariaDB (trixie)")
    parser.add_argument("--ssh", action="store_true",
                        help="up: reached only over SSH, with a shared directory only its containers see "
                             "(bookworm, torque or sid; ci/ssh-login)")
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            start = time.monotonic()
            info = up(args.name, nodes=args.nodes, cpus=args.cpus, memory_mb=args.memory_mb,
                      fresh=args.fresh, flavor=args.flavor, ssh=args.ssh)
            print(f"site {info.name} ready in {time.monotonic() - start:.1f} s: "
                  f"nodes {', '.join(info.nodes)}; shared dir {info.shared_dir}")
            print(f"export SLURM_CONF={info.slurm_conf}")
        elif args.action == "down":
            down(args.name, purge=args.purge)
            print(f"site {args.name} down" + (" and purged" if args.purge else ""))
        elif args.action == "status":
            print(status(args.name))
        else:
            info = SiteInfo.load(_site_dir(args.name) / "site.json")
            print(f"export SLURM_CONF={info.slurm_conf}")
    except (SiteError, images.ImageBuildError, FileNotFoundError) as exc:
        print(f"slurmsite {args.action} {args.name}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
