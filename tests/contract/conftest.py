"""The contract every site kind must satisfy, run through the public API against real sites.

`site_campaign` is parametrized over site kinds: `local` (Ray on this machine), `local-docker` (the
same site running every task in the containers/task image on the Docker engine), `slurm-batch` (the
containerized Slurm site alpha, one job per attempt) and `slurm-apptainer` (the Slurm 26.05 site delta
running every task in the same image as a SIF with Apptainer), `globus-compute-local` and
`globus-compute-slurm` (a Globus Compute site served by an offline endpoint: a real GlobusComputeEngine
whose workers run on this machine, or in a Slurm job at alpha) and `gridengine` (the Grid Engine 8.1.9
site epsilon, one job per attempt) and `torque-wrappers` (the PBS agent's Torque dialect against the
site zeta: Slurm 22.05 behind Debian's Torque-style wrappers, which is a compatibility layer, not Torque)
and `slurm-24.11` (the site eta: Slurm 24.11 from trixie with slurmdbd + MariaDB, reached through its
controller container) and `slurm-campus` (the site iota: a Slurm 22.05 cluster built by hand, not by
metasched's recipe, whose commands run as another user than this process: ci/slurm-campus) and
`slurm-ssh` (the site omicron, reached only over SSH, its shared directory a Docker volume this machine
does not see: ci/ssh-login; its `workdir`, where tests watch what tasks do, is in the site's own
directory, which its nodes and this machine both mount) and `torque-ssh` (the site xi: the Torque-style
wrappers over SSH, the PBS agent's Torque dialect) and `gridengine-ssh` (epsilon over SSH: sshd runs per
connection in its network-less container, through the client's ProxyCommand), and the
pilot-mode variants `slurm-pilot` (site kappa; `slurm-ssh-pilot`: kappa reached over SSH) and `torque-pilot`
(site mu: the Torque-style wrappers) and
`gridengine-pilot` (site nu), whose tasks run in Ray worker nodes inside blocks of batch jobs; those run in
the loopback-only network namespace (``make test-pilot``; see tests/conftest.py).
Later site kinds add a parameter here.

With METASCHED_CONTRACT_SITES=CAMPAIGN_FILE (what `metasched testmatrix --sites FILE` sets) the suite runs
against that file's [[sites]] instead, one parameter `user-<name>` per site.
`workdir` is a directory the site's tasks can see (for Slurm: inside the site's shared filesystem).
"""

from __future__ import annotations

import itertools
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import metasched as ms
from metasched.attempt_dir import group_writable

_names = itertools.count()
USER_SITES = os.environ.get("METASCHED_CONTRACT_SITES")
BUILT_IN_KINDS = ["local", pytest.param("local-docker", marks=pytest.mark.docker),
              pytest.param("slurm-batch", marks=pytest.mark.slurm),
              pytest.param("slurm-apptainer", marks=[pytest.mark.slurm, pytest.mark.docker]),
              "globus-compute-local", pytest.param("globus-compute-slurm", marks=pytest.mark.slurm),
              pytest.param("gridengine", marks=pytest.mark.docker),
              pytest.param("torque-wrappers", marks=pytest.mark.docker),
              pytest.param("slurm-24.11", marks=pytest.mark.docker),
              pytest.param("slurm-campus", marks=pytest.mark.docker),
              pytest.param("slurm-ssh", marks=pytest.mark.docker),
              pytest.param("torque-ssh", marks=pytest.mark.docker),
              pytest.param("gridengine-ssh", marks=pytest.mark.docker),
              pytest.param("slurm-pilot", marks=[pytest.mark.slurm, pytest.mark.pilot]),
              pytest.param("slurm-ssh-pilot", marks=[pytest.mark.slurm, pytest.mark.pilot]),
              pytest.param("torque-pilot", marks=[pytest.mark.slurm, pytest.mark.pilot]),
              pytest.param("gridengine-pilot", marks=[pytest.mark.docker, pytest.mark.pilot])]
PILOT_HEAD_IP = "127.0.0.2"  # the campaign's Ray head inside the loopback-only namespace


def _user_sites() -> dict[str, object]:
    from metasched.config import load_campaign_file

    assert USER_SITES is not None
    return {f"user-{site.name}": site for site in load_campaign_file(USER_SITES).sites}


SITE_KINDS = list(_user_sites()) if USER_SITES else BUILT_IN_KINDS


@dataclass
class SiteUnderTest:
    kind: str
    campaign: ms.Campaign
    workdir: Path


@pytest.fixture(params=SITE_KINDS, scope="module")
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteUnderTest]:
    """One campaign per site kind, shared by the suite's tests (pilot blocks start once per kind)."""
    kind = request.param
    tmp_path = tmp_path_factory.mktemp(f"contract-{kind}")
    if not kind.endswith("-pilot"):
        request.getfixturevalue("ray_local")
    defaults: dict[str, object] = {}
    head_ip = None
    if kind.startswith("user-"):
        site_config = _user_sites()[kind]
        sites: list[object] = [site_config]
        shared = getattr(site_config, "shared_dir", None)
        workdir = Path(shared) / f"contract-{uuid.uuid4().hex[:8]}" if shared else tmp_path
        workdir.mkdir(exist_ok=True)
        group_writable(workdir)  # the site's commands may run as another user of shared_dir's group
        kind = f"{getattr(site_config, 'kind', 'user')}:{kind}"
    elif kind == "local":
        sites = [ms.LocalSite("local", cores=2)]
        workdir = tmp_path
    elif kind == "local-docker":
        image = request.getfixturevalue("task_image")
        sites = [ms.LocalSite("local", cores=2, container_runtimes=("docker",),
                              container_binds=(str(tmp_path),), work_dir=str(tmp_path / "site"))]
        defaults = {"container": ms.Image(image)}
        workdir = tmp_path
    elif kind == "slurm-apptainer":
        delta = request.getfixturevalue("delta")
        sif = request.getfixturevalue("task_sif")
        sites = [ms.SlurmSite("delta", slurm_conf=delta.slurm_conf, shared_dir=delta.shared_dir,
                              poll_interval=0.3, login=tuple(delta.login), container_runtimes=("apptainer",),
                              apptainer=("apptainer", "--quiet", "exec", "--userns"))]
        defaults = {"container": ms.Image("metasched/task", sif=sif)}
        workdir = Path(delta.shared_dir) / f"contract-{uuid.uuid4().hex[:8]}"
        workdir.mkdir()
    elif kind == "slurm-campus":
        iota = request.getfixturevalue("iota")
        sites = [ms.SlurmSite("iota", shared_dir=iota.shared_dir, login=tuple(iota.login), poll_interval=0.3)]
        workdir = Path(iota.shared_dir) / f"contract-{uuid.uuid4().hex[:8]}"
        workdir.mkdir()
        group_writable(workdir)  # the tasks run as alice, of the project directory's group
    elif kind == "slurm-ssh":
        from tests.integration.ssh_sites import slurm_ssh_site

        omicron = request.getfixturevalue("omicron")
        sites = [slurm_ssh_site(omicron)]
        workdir = Path(omicron.directory) / "watched" / f"contract-{uuid.uuid4().hex[:8]}"
        workdir.mkdir(parents=True)
    elif kind == "torque-ssh":
        from tests.integration.ssh_sites import torque_ssh_site

        xi = request.getfixturevalue("xi")
        sites = [torque_ssh_site(xi, poll_interval=0.3)]
        workdir = Path(xi.directory) / "watched" / f"contract-{uuid.uuid4().hex[:8]}"
        workdir.mkdir(parents=True)
    elif kind == "gridengine-ssh":
        from tests.integration.ssh_sites import gridengine_ssh_site

        epsilon = request.getfixturevalue("epsilon")
        sites = [gridengine_ssh_site(epsilon)]
        workdir = Path(epsilon.directory) / "watched" / f"contract-{uuid.uuid4().hex[:8]}"
        workdir.mkdir(parents=True)
    elif kind == "gridengine":
        epsilon = request.getfixturevalue("epsilon")
        sites = [ms.GridEngineSite("epsilon", shared_dir=epsilon.shared_dir, login=tuple(epsilon.login),
                                   poll_interval=0.3)]
        workdir = Path(epsilon.shared_dir) / f"contract-{uuid.uuid4().hex[:8]}"
        workdir.mkdir()
    elif kind == "slurm-24.11":
        eta = request.getfixturevalue("eta")
        sites = [ms.SlurmSite("eta", slurm_conf=eta.slurm_conf, shared_dir=eta.shared_dir, poll_interval=0.3,
                              login=tuple(eta.login), python="python3.11")]
        workdir = Path(eta.shared_dir) / f"contract-{uuid.uuid4().hex[:8]}"
        workdir.mkdir()
    elif kind == "torque-wrappers":
        from tests.integration.pbs_sites import torque_site

        zeta = request.getfixturevalue("zeta")
        sites = [torque_site(zeta, poll_interval=0.3)]
        workdir = Path(zeta.shared_dir) / f"contract-{uuid.uuid4().hex[:8]}"
        workdir.mkdir()
    elif kind.endswith("-pilot"):
        from tests.integration.pbs_sites import torque_site

        info = request.getfixturevalue({"slurm-pilot": "kappa", "slurm-ssh-pilot": "kappa",
                                        "torque-pilot": "mu", "gridengine-pilot": "nu"}[kind])
        options: dict[str, object] = {
            "mode": "pilot", "python": f"{sys.prefix}/bin/python", "cores_per_node": 2, "init_blocks": 1,
            "max_blocks": 2, "block_object_store_mb": 100, "poll_interval": 0.3}
        workdir = Path(info.shared_dir) / f"contract-{uuid.uuid4().hex[:8]}"
        if kind == "slurm-pilot":
            sites = [ms.SlurmSite(info.name, slurm_conf=info.slurm_conf, shared_dir=info.shared_dir,
                                  login=tuple(info.login), **options)]
        elif kind == "slurm-ssh-pilot":  # the same site reached over SSH: its shared directory a volume
            from tests.integration.ssh_sites import slurm_ssh_site

            sites = [slurm_ssh_site(info, **options)]
            workdir = Path(info.directory) / "watched" / f"contract-{uuid.uuid4().hex[:8]}"
        elif kind == "torque-pilot":
            sites = [torque_site(info, **options)]
        else:
            sites = [ms.GridEngineSite(info.name, shared_dir=info.shared_dir, login=tuple(info.login),
                                       **options)]
        workdir.mkdir(parents=True)
        head_ip = PILOT_HEAD_IP
    elif kind.startswith("globus-compute"):
        endpoint = request.getfixturevalue("gc_local" if kind.endswith("local") else "gc_alpha")
        sites = [ms.GlobusComputeSite("gc", offline_endpoint=endpoint.address,
                                      authkey_file=endpoint.authkey_file, cores=4, poll_interval=0.2)]
        workdir = tmp_path
        if kind.endswith("slurm"):
            alpha_dir = request.getfixturevalue("slurm_sites")["alpha"].shared_dir
            workdir = Path(alpha_dir) / f"contract-{uuid.uuid4().hex[:8]}"
            workdir.mkdir()
    else:
        alpha = request.getfixturevalue("slurm_sites")["alpha"]
        sites = [ms.SlurmSite("alpha", slurm_conf=alpha.slurm_conf, shared_dir=alpha.shared_dir,
                              poll_interval=0.3)]
        workdir = Path(alpha.shared_dir) / f"contract-{uuid.uuid4().hex[:8]}"
        workdir.mkdir()
    name = f"contract-{os.getpid()}-{next(_names)}"
    with ms.Campaign(name, sites=sites, journal=tmp_path / "c.db", defaults=defaults,
                     ray_node_ip=head_ip) as campaign:
        yield SiteUnderTest(kind=kind, campaign=campaign, workdir=workdir)
