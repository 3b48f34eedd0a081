"""The containerized Slurm sites behave like two real, independent clusters with the host as login node."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from pathlib import Path

import psutil
import pytest
import slurmsite

pytestmark = pytest.mark.slurm


def _sbatch(site: slurmsite.SiteInfo, *args: str) -> str:
    proc = subprocess.run(
        ["sbatch", "--parsable", *args],
        env=site.client_env(), capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, f"sbatch on {site.name} failed: {proc.stderr}"
    return proc.stdout.strip().split(";")[0]


def _job_state(site: slurmsite.SiteInfo, job_id: str) -> str:
    proc = subprocess.run(
        ["scontrol", "--oneliner", "show", "job", job_id],
        env=site.client_env(), capture_output=True, text=True, timeout=30, check=False,
    )
    match = re.search(r"\bJobState=(\S+)", proc.stdout)
    return match.group(1) if match else f"UNKNOWN({proc.stderr.strip()})"


def _wait_terminal(site: slurmsite.SiteInfo, job_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    state = _job_state(site, job_id)
    while state in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING") and time.monotonic() < deadline:
        time.sleep(0.25)
        state = _job_state(site, job_id)
    return state


@pytest.mark.parametrize("name", ["alpha", "beta"])
def test_wrap_job_completes_with_output_in_shared_dir(
    slurm_sites: dict[str, slurmsite.SiteInfo], name: str
) -> None:
    site = slurm_sites[name]
    workdir = Path(site.shared_dir) / f"wrap-{uuid.uuid4().hex[:8]}"
    workdir.mkdir()
    job_id = _sbatch(
        site,
        f"--chdir={workdir}",
        "--output=out-%j.txt",
        "--wrap", "echo cluster=$SLURM_CLUSTER_NAME node=$SLURMD_NODENAME job=$SLURM_JOB_ID",
    )
    assert _wait_terminal(site, job_id) == "COMPLETED"
    out = (workdir / f"out-{job_id}.txt").read_text()
    assert f"cluster={name} " in out
    assert re.search(rf"node={name}-c\d+ ", out), out
    assert f"job={job_id}" in out
    jobcomp = Path(site.directory, "log", "jobcomp.log").read_text()
    assert re.search(rf"JobId={job_id} .*JobState=COMPLETED", jobcomp)


def test_job_submitted_to_alpha_is_not_seen_or_run_by_beta(
    alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo
) -> None:
    name = f"iso-{uuid.uuid4().hex[:8]}"
    workdir = Path(alpha.shared_dir) / name
    workdir.mkdir()
    job_id = _sbatch(alpha, f"--job-name={name}", f"--chdir={workdir}", "--output=out.txt",
                     "--wrap", "echo $SLURM_CLUSTER_NAME")
    assert _wait_terminal(alpha, job_id) == "COMPLETED"
    assert (workdir / "out.txt").read_text().strip() == "alpha"
    beta_queue = subprocess.run(
        ["squeue", "--all", "--noheader", "--format=%j"],
        env=beta.client_env(), capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    assert name not in beta_queue
    beta_jobcomp = Path(beta.directory, "log", "jobcomp.log")
    assert not beta_jobcomp.exists() or name not in beta_jobcomp.read_text()


def test_client_with_another_sites_munge_key_is_rejected(
    alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, tmp_path: Path
) -> None:
    # alpha's controller, but credentials minted by beta's munged: alpha must refuse them.
    conf = Path(alpha.slurm_conf).read_text()
    hybrid = re.sub(r"AuthInfo=socket=\S+", f"AuthInfo=socket={beta.directory}/munge/munged.sock", conf)
    assert hybrid != conf
    hybrid_conf = tmp_path / "slurm.conf"
    hybrid_conf.write_text(hybrid)
    ctld_log = Path(alpha.directory, "log", "slurmctld.log")
    log_size_before = ctld_log.stat().st_size
    proc = subprocess.run(
        ["squeue", "--noheader"],
        env={**alpha.client_env(), "SLURM_CONF": str(hybrid_conf)},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode != 0, proc.stdout
    # The controller drops the connection; its log says why.
    with ctld_log.open() as log:
        log.seek(log_size_before)
        new_lines = log.read()
    assert "Munge decode failed: Invalid credential" in new_lines, new_lines


def test_daemons_listen_only_on_loopback(slurm_sites: dict[str, slurmsite.SiteInfo]) -> None:
    expected_ports = {
        port for site in slurm_sites.values() for port in (site.controller_port, *site.node_ports.values())
    }
    seen: dict[int, str] = {}
    for conn in psutil.net_connections(kind="inet"):
        if conn.status != psutil.CONN_LISTEN or conn.pid is None:
            continue
        try:
            proc_name = psutil.Process(conn.pid).name()
        except psutil.NoSuchProcess:
            continue
        if proc_name in ("slurmctld", "slurmd", "slurmstepd", "munged"):
            assert conn.laddr.ip == "127.0.0.1", f"{proc_name} (pid {conn.pid}) listens on {conn.laddr}"
            seen[conn.laddr.port] = proc_name
    assert expected_ports <= set(seen), f"expected daemons on {sorted(expected_ports)}, saw {seen}"


def test_no_container_uses_a_bridge_network(slurm_sites: dict[str, slurmsite.SiteInfo]) -> None:
    drivers = subprocess.run(
        ["docker", "network", "ls", "--format", "{{.Driver}}"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.split()
    assert "bridge" not in drivers
    ids = subprocess.run(
        ["docker", "ps", "--quiet", "--filter", "label=metasched.site"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.split()
    assert len(ids) >= 2 * 3  # two sites, each a controller and two compute nodes
    modes = subprocess.run(
        ["docker", "inspect", "--format", "{{.HostConfig.NetworkMode}}", *ids],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.split()
    # Pilot test sites join a holder's namespace (ci/netns.py); the holder itself must have no network.
    holders = sorted({mode.removeprefix("container:") for mode in modes if mode.startswith("container:")})
    held = subprocess.run(
        ["docker", "inspect", "--format", "{{.HostConfig.NetworkMode}}", *holders],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.split() if holders else []
    assert {m for m in modes if not m.startswith("container:")} == {"host"}
    assert set(held) <= {"none"}, f"a site joins a container that has a network: {held}"


def test_site_that_cannot_come_up_fails_with_the_controller_log(
    slurm_sites: dict[str, slurmsite.SiteInfo],
) -> None:
    name = "brokensite"
    slurmsite.down(name, purge=True)
    info = slurmsite.up(name, nodes=1, fresh=True)
    try:
        subprocess.run(["docker", "stop", "--time", "1", f"metasched-slurm-{name}-controller"],
                       capture_output=True, timeout=60, check=True)
        with pytest.raises(slurmsite.SiteError) as excinfo:
            slurmsite.wait_ready(info, timeout=3)
        message = str(excinfo.value)
        assert f"site {name!r}" in message
        assert "slurmctld.log (last" in message
        assert "metasched-slurm-brokensite-controller (exited)" in message
    finally:
        slurmsite.down(name, purge=True)
